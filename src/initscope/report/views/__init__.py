"""Views of a :class:`initscope.report.Report`: rich table, plain text, matplotlib figure, HTML.

They format what the report holds and compute nothing new. matplotlib and rich load here, lazily.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from initscope.report._format import num, pct, signed
from initscope.report._report import LayerStats, Report
from initscope.report._rules import (
    DEAD_LIMIT,
    DEPTH_MIN,
    LOG2_LIMIT,
    SATURATED_LIMIT,
    SATURATION_MARGIN,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
_VERDICT_STYLE = {
    "healthy": "green",
    "exploding": "bold red",
    "vanishing": "bold red",
    "dead": "bold magenta",
    "saturated": "bold yellow",
    "symmetric": "bold cyan",
}
_COLUMNS = (
    "#",
    "layer",
    "type",
    "fans",
    "w std",
    "in std",
    "out std",
    "pred",
    "ratio",
    "grad",
    "pred grad",
    "w grad",
    "dead",
    "sat",
    "ident",
    "verdict",
    "note",
)


def _cells(s: LayerStats) -> list[str]:
    fans = "-" if s.fans is None else f"{s.fans.fan_in}->{s.fans.fan_out}"
    return [
        str(s.index),
        s.path,
        s.type,
        fans,
        num(s.weight_std),
        num(s.in_std),
        num(s.out_std),
        num(s.predicted_std),
        num(s.ratio),
        num(s.grad_out_std),
        num(s.predicted_grad_std),
        num(s.weight_grad_std),
        pct(s.dead_fraction),
        pct(s.saturated_fraction),
        str(s.identical_groups),
        s.verdict,
        s.note,
    ]


def _summary_lines(report: Report) -> list[str]:
    meta = report.meta
    lines = [
        f"forward log2 {signed(report.forward_log2)} "
        f"(slope {signed(report.forward_slope, 3)} per body weight layer) · backward log2 "
        f"{signed(report.backward_log2)} (slope {signed(report.backward_slope, 3)}) · "
        f"{len(report.body_layers())} body weight layers of {len(report.weight_layers())}",
    ]
    if meta:
        lines.append(" · ".join(f"{k}: {v}" for k, v in meta.items() if k != "model"))
    return lines


def _title(report: Report) -> str:
    return f"initscope diagnose: {report.meta.get('model', 'model')}"


def rich_report(report: Report) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text(_title(report) + " · verdict ", style="bold")
    head.append(report.verdict, style=_VERDICT_STYLE.get(report.verdict, ""))
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for name in _COLUMNS:
        left = name in ("layer", "type", "verdict", "note")
        table.add_column(name, justify="left" if left else "right", overflow="fold")
    for s in report.layers:
        cells = _cells(s)
        cells[-2] = f"[{_VERDICT_STYLE.get(s.verdict, '')}]{s.verdict}[/]"
        table.add_row(*cells)
    return Group(
        head,
        Text(report.reason),
        *(Text(line, style="dim") for line in _summary_lines(report)),
        table,
    )


def text_report(report: Report) -> str:
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(
        file=buffer, width=220, force_terminal=False, color_system=None, highlight=False
    )
    console.print(rich_report(report))
    return buffer.getvalue()


def _series(values: Sequence[float | None]) -> list[float]:
    return [v if v is not None and math.isfinite(v) and v > 0 else math.nan for v in values]


def plot_reports(
    reports: list[Report],
    labels: list[str | None],
    path: str | Path | None,
    ax: Axes | Sequence[Axes] | None,
) -> Figure:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=(11, 4.3), layout="constrained")
        fwd_ax, bwd_ax = fig.subplots(1, 2)
    elif isinstance(ax, Axes):
        fwd_ax = bwd_ax = ax
        fig = _root_figure(ax)
    else:
        pair = list(np.ravel(np.asarray(ax, dtype=object)))
        if len(pair) != 2 or not all(isinstance(a, Axes) for a in pair):
            raise TypeError("ax: expected a matplotlib Axes or a pair of Axes (forward, backward)")
        fwd_ax, bwd_ax = pair
        fig = _root_figure(fwd_ax)
    shared = fwd_ax is bwd_ax
    for i, (report, label) in enumerate(zip(reports, labels, strict=True)):
        color = _COLORS[i % len(_COLORS)]
        rows = report.weight_layers()
        xs = list(range(1, len(rows) + 1))
        prefix = "" if label is None else f"{label} ({report.verdict}): "
        curves: tuple[tuple[Axes, str, list[float | None], list[float | None]], ...] = (
            (
                fwd_ax,
                "forward " if shared else "",
                [s.out_std for s in rows],
                [s.predicted_std for s in rows],
            ),
            (
                bwd_ax,
                "gradient " if shared else "",
                [s.grad_out_std for s in rows],
                [s.predicted_grad_std for s in rows],
            ),
        )
        for j, (axis, what, measured, predicted) in enumerate(curves):
            tint = color if not shared or j == 0 else _COLORS[(i + 3) % len(_COLORS)]
            axis.plot(
                xs,
                _series(measured),
                "-o",
                ms=3,
                lw=1.6,
                color=tint,
                label=f"{prefix}{what}measured",
            )
            axis.plot(
                xs,
                _series(predicted),
                ":",
                lw=1.0,
                marker="o",
                ms=5,
                mfc="none",
                color=tint,
                alpha=0.8,
                label=f"{prefix}{what}predicted",
            )
    for axis, title, ylabel in (
        (fwd_ax, "Forward: std of weight-layer outputs", "std of pre-activation"),
        (bwd_ax, "Backward: std of dL/d(output)", "std of gradient"),
    ):
        _log2_axis(axis)
        axis.set_xlabel("weight layer (execution order)")
        axis.set_ylabel(ylabel if not shared else "std")
        axis.set_title(title if not shared else "Forward and gradient std per weight layer")
        axis.grid(True, which="major", alpha=0.3)
        axis.legend(fontsize=8)
        if shared:
            break
    if ax is None and len(reports) == 1:
        fig.suptitle(f"{_title(reports[0])}: {reports[0].verdict}")
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig


def _root_figure(axis: Axes) -> Figure:
    """The top-level figure of ``axis`` (the one that saves; a subfigure cannot)."""
    from matplotlib.figure import SubFigure

    fig = axis.figure
    return fig.figure if isinstance(fig, SubFigure) else fig


MIN_LOG2_SPAN = 4.0  # bits: a y axis spans at least a factor 16, so 1-2% noise looks flat


def _log2_axis(axis: Axes) -> None:
    """A log2 y axis of at least ``MIN_LOG2_SPAN`` bits around the data, a labelled tick
    (``2^k``) at every power of two it can hold legibly."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_yscale("log", base=2)
    values = [
        float(v)
        for line in axis.get_lines()
        for v in np.asarray(line.get_ydata(), dtype=float)
        if math.isfinite(v) and v > 0
    ]
    if values:
        lo, hi = math.log2(min(values)), math.log2(max(values))
        if hi - lo < MIN_LOG2_SPAN:
            mid = (lo + hi) / 2
            lo, hi = mid - MIN_LOG2_SPAN / 2, mid + MIN_LOG2_SPAN / 2
        pad = 0.05 * (hi - lo)
        axis.set_ylim(2.0 ** (lo - pad), 2.0 ** (hi + pad))
    axis.yaxis.set_major_locator(LogLocator(base=2, subs=(1.0,), numticks=10))
    axis.yaxis.set_major_formatter(FuncFormatter(_power_of_two))
    axis.yaxis.set_minor_formatter(NullFormatter())


def _power_of_two(value: float, _pos: int) -> str:
    k = round(math.log2(value)) if value > 0 else 0
    return f"$2^{{{k}}}$"


def _png_base64(report: Report) -> str:
    buffer = io.BytesIO()
    report.plot().savefig(buffer, format="png", dpi=110)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif;
       margin: 24px; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 4px; }
.verdict { font-size: 1.2em; }
.v-healthy { color: #2a7d2a; } .v-exploding, .v-vanishing { color: #c62828; }
.v-dead { color: #8e24aa; } .v-saturated { color: #b8860b; } .v-symmetric { color: #00838f; }
.muted { color: #666; }
img { max-width: 100%; border: 1px solid #ddd; margin: 12px 0; }
table.layers { border-collapse: collapse; font-size: 12px; font-variant-numeric: tabular-nums; }
table.layers th, table.layers td {
  border-bottom: 1px solid #e4e4e4; padding: 3px 8px; text-align: right;
}
table.layers th { background: #f4f4f4; position: sticky; top: 0; }
table.layers td.l { text-align: left; }
"""


def html_report(report: Report) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in _COLUMNS)
    body = []
    for s in report.layers:
        cells = _cells(s)
        tds = [
            f'<td class="l">{esc(c)}</td>' if name in ("layer", "type") else f"<td>{esc(c)}</td>"
            for name, c in zip(_COLUMNS[:-2], cells[:-2], strict=True)
        ]
        tds.append(f'<td class="l v-{esc(s.verdict)}">{esc(s.verdict)}</td>')
        tds.append(f'<td class="l">{esc(s.note)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    rules = (
        f"Rules (first that fires): symmetric: identical units; exploding/vanishing: log2 "
        f"change beyond &plusmn;{LOG2_LIMIT:g} at &ge; {DEPTH_MIN} weight layers; "
        f"dead: &gt; {DEAD_LIMIT:.0%} of an "
        f"activation's units zero for the whole batch; saturated: &gt; {SATURATED_LIMIT:.0%} of an "
        f"activation's outputs within {SATURATION_MARGIN:.0%} of its range from a bound."
    )
    summary = "".join(f'<p class="muted">{esc(line)}</p>' for line in _summary_lines(report))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(_title(report))}</title>
<style>{_CSS}</style></head>
<body>
<h1>{esc(_title(report))}</h1>
<p class="verdict">verdict: <b class="v-{esc(report.verdict)}">{esc(report.verdict)}</b></p>
<p>{esc(report.reason)}</p>
{summary}
<img alt="forward and gradient std per weight layer"
     src="data:image/png;base64,{_png_base64(report)}">
<h2>Layers</h2>
<table class="layers"><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
<p class="muted">{rules}</p>
</body></html>
"""
