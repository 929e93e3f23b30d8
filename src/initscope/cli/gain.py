"""``initscope gain ACT``: exact Gaussian moments and gains of an activation, next to torch's."""

from __future__ import annotations

import argparse
import json
from typing import Any

from initscope.activations import resolve, torch_gain
from initscope.theory import gain, moments, recommend


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gain",
        help="exact Gaussian moments and gains of an activation",
        description="Print E f, E f^2, Var f, E f'^2 for z ~ N(0, q), the forward, backward and "
        "average gains, and torch.nn.init.calculate_gain side by side.",
    )
    parser.add_argument("activation", metavar="ACT", help="activation name, e.g. gelu, leaky_relu")
    parser.add_argument(
        "--param",
        type=float,
        default=None,
        help="leaky slope, ELU/CELU alpha, softplus beta, hardtanh bound",
    )
    parser.add_argument("--q", type=float, default=1.0, help="pre-activation variance (default 1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def gain_summary(activation: str, param: float | None = None, q: float = 1.0) -> dict[str, Any]:
    """Everything ``initscope gain`` shows, as a JSON-ready dict."""
    act = resolve(activation, param)
    m = moments(act, q)
    return {
        "activation": act.label(),
        "q": q,
        "moments": m.to_dict(),
        "c_forward": m.second / q,
        "c_backward": m.deriv_second,
        "gain": {mode: gain(act, mode, q) for mode in ("forward", "backward", "average")},
        "torch_gain": torch_gain(act),
        "recommendation": recommend(act).to_dict(),
    }


def run(args: argparse.Namespace) -> int:
    data = gain_summary(args.activation, args.param, args.q)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    m, g, tg = data["moments"], data["gain"], data["torch_gain"]
    table = Table(title=f"{data['activation']}, z ~ N(0, q = {data['q']:g})")
    table.add_column("quantity")
    table.add_column("initscope (exact)", justify="right")
    table.add_column("torch calculate_gain", justify="right")
    rows = [
        ("E[f(z)]", m["mean"]),
        ("E[f(z)^2]", m["second"]),
        ("Var f(z)", m["variance"]),
        ("E[f'(z)^2]", m["deriv_second"]),
        ("c_fwd = E[f^2] / q", data["c_forward"]),
        ("c_bwd = E[f'^2]", data["c_backward"]),
    ]
    for name, value in rows:
        table.add_row(escape(name), f"{value:.10g}", "")
    torch_text = "not in its table" if tg is None else f"{tg:.10g}"
    table.add_row("gain forward = 1/sqrt(c_fwd)", f"{g['forward']:.10g}", torch_text)
    table.add_row("gain backward = 1/sqrt(c_bwd)", f"{g['backward']:.10g}", "")
    table.add_row("gain average = geometric mean", f"{g['average']:.10g}", "")
    console = Console(width=max(Console().width, 100))
    console.print(table)
    rec = data["recommendation"]
    console.print(
        escape(f"recommended: {rec['scheme']}, {rec['formula']} ({rec['source']})"), highlight=False
    )
    return 0
