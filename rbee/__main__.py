"""`python -m rbee` is the `rbee` command."""

from rbee.cli.main import main

raise SystemExit(main())
