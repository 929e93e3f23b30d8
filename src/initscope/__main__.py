"""``python -m initscope``: the command-line interface."""

from initscope.cli import main

raise SystemExit(main())
