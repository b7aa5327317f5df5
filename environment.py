"""behave reads its hooks from the repository root; they live in steps/hooks.py."""

from steps.hooks import after_all, after_scenario, before_all, before_scenario  # noqa: F401
