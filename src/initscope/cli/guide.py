"""``initscope guide``: the selection guide with exact gains and depth predictions."""

from __future__ import annotations

import argparse
import json
from typing import Any

from initscope.theory import guide


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "guide",
        help="the initialization selection guide with exact gains",
        description="Per activation: the recommended scheme and variance, exact gains at q = 1 "
        "next to torch's calculate_gain, and the predicted log2 change of the forward and "
        "gradient std over 50 plain layers, under the recommendation and at the critical point "
        "(q* = 1).",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def _num(value: float | None, fmt: str = ".4g") -> str:
    return "-" if value is None else format(value, fmt)


def _bits(forward: float | None, backward: float | None) -> str:
    if forward is None or backward is None:
        return "none"
    return f"{forward:+.1f} / {backward:+.1f}"


def run(args: argparse.Namespace) -> int:
    rows = guide()
    if args.json:
        print(json.dumps([row.to_dict() for row in rows], indent=2))
        return 0

    from rich.console import Console
    from rich.table import Table

    depth = rows[0].depth
    table = Table(title="Initialization selection guide (exact gains at q = 1)")
    table.add_column("activation")
    table.add_column("scheme")
    table.add_column("variance")
    table.add_column("gain fwd", justify="right")
    table.add_column("gain bwd", justify="right")
    table.add_column("torch", justify="right")
    table.add_column(f"{depth} layers fwd/bwd bits", justify="right")
    table.add_column("critical (sw2, sb2)", justify="right")
    table.add_column("slope", justify="right")
    table.add_column("critical bits", justify="right")
    for r in rows:
        critical = (
            "none"
            if r.critical_sigma_w2 is None
            else f"({r.critical_sigma_w2:.3f}, {r.critical_sigma_b2:.3f})"
        )
        table.add_row(
            r.activation,
            r.scheme,
            r.formula.removeprefix("Var = "),
            _num(r.forward_gain),
            _num(r.backward_gain),
            _num(r.torch_gain),
            _bits(r.forward_log2, r.backward_log2),
            critical,
            _num(r.critical_slope, ".3f"),
            _bits(r.critical_forward_log2, r.critical_backward_log2),
        )
    console = Console(width=max(Console().width, 200))
    console.print(table)
    console.print(
        "bits: predicted log2 change of the forward (pre-activation) std and of the gradient std "
        f"over {depth} equal-width layers from q0 = 1. critical: chi1 = 1 with fixed point q* = 1 "
        "(stable when the variance map's slope there is < 1).",
        highlight=False,
    )
    return 0
