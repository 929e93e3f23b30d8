"""The ``initscope`` command.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to a ``run(args) -> int``. Library errors (``ValueError``,
``TypeError``) and :class:`CLIError` end the command with their message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from initscope.cli._common import CLIError

_COMMANDS: tuple[str, ...] = ("demo", "diagnose", "gain", "guide", "init")


def build_parser() -> argparse.ArgumentParser:
    from initscope import __version__

    parser = argparse.ArgumentParser(
        prog="initscope",
        description="Weight initialization and signal propagation for PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"initscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"initscope.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = int(args.func(args) or 0)
        except (CLIError, ValueError, TypeError) as exc:
            print(f"initscope {args.command}: error: {exc}", file=sys.stderr)
            code = 2
        except BrokenPipeError:
            # The reader (e.g. `| head`) went away: stop quietly, as Unix tools do.
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115
            return 0
    for warning in caught:
        print(f"initscope {args.command}: warning: {warning.message}", file=sys.stderr)
    return code
