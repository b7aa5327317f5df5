"""Reading a daemon's YAML config file: one top-level section, its keys, and the line of each.

PyYAML keeps the last of two equal keys silently; here a repeated key is a problem, like a file
that is not YAML, holds no mapping, or names no daemon. Messages never quote the file's values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rbee.common.config_schema import DAEMONS


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration: where it came from, the dotted key, what is wrong."""

    where: str
    key: str
    message: str

    def __str__(self) -> str:
        return ": ".join(part for part in (self.where, self.key, self.message) if part)


@dataclass(frozen=True)
class Section:
    """The daemon section of a config file: its keys, their values and the line of each key."""

    daemon: str
    values: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)
    """The line of each key; keys of nested mappings (the model table's) by their dotted path."""
    problems: list[Problem] = field(default_factory=list)


class FileUnusable(Exception):
    """The file cannot be read as a config file at all (the reason is a Problem)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _top_level(path: Path, root: yaml.Node | None, daemon: str | None) -> tuple[str, yaml.Node]:
    where = str(path)
    names = f"`{daemon}:`" if daemon else "`queen:`, `hive:` or `worker:`"
    if not isinstance(root, yaml.MappingNode) or len(root.value) != 1:
        raise FileUnusable(Problem(where, "", f"a config file holds exactly one top-level section, {names}"))
    key, value = root.value[0]
    name = key.value if isinstance(key, yaml.ScalarNode) else None
    if name in DAEMONS and daemon and name != daemon:
        raise FileUnusable(Problem(f"{where}:{_line(key)}", "", f"this file configures the {name}, "
                                   f"not the {daemon} (whose file has a `{daemon}:` section)"))
    if name not in DAEMONS:
        raise FileUnusable(Problem(f"{where}:{_line(key)}", "", f"the top-level section must be {names}"))
    return name, value


def read_section(path: Path, daemon: str | None = None) -> Section:
    """The section of `daemon` (or of whichever daemon the file names) in the YAML file at `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a UTF-8 text file"
        raise FileUnusable(Problem(str(path), "", f"cannot read it: {reason}")) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        reason = getattr(exc, "problem", None) or type(exc).__name__
        raise FileUnusable(Problem(where, "", f"not valid YAML: {reason}")) from None
    name, node = _top_level(path, root, daemon)
    if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
        return Section(name, {})
    if not isinstance(node, yaml.MappingNode):
        raise FileUnusable(Problem(f"{path}:{_line(node)}", name, "must be a mapping of keys to values"))
    section = Section(name, {str(key): value for key, value in data[name].items()})
    for key, value in node.value:
        text_key = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
        if text_key in section.lines:
            section.problems.append(Problem(f"{path}:{_line(key)}", f"{name}.{text_key}",
                                            f"repeated key (first on line {section.lines[text_key]})"))
        else:
            section.lines[text_key] = _line(key)
            if isinstance(value, yaml.MappingNode):
                section.lines.update(_nested_lines(text_key, value))
    return section


def _nested_lines(prefix: str, node: yaml.MappingNode) -> dict[str, int]:
    """The line of every key below `prefix`, by dotted path."""
    lines: dict[str, int] = {}
    for key, value in node.value:
        dotted = f"{prefix}.{key.value}" if isinstance(key, yaml.ScalarNode) else f"{prefix}.?"
        if dotted in lines:
            continue
        lines[dotted] = _line(key)
        if isinstance(value, yaml.MappingNode):
            lines.update(_nested_lines(dotted, value))
    return lines
