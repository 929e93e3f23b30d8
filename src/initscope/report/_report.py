"""The result of :func:`initscope.diagnose`: per-layer statistics and a verdict (the records).

A :class:`Report` holds numbers only; the views in :mod:`initscope.report.views` (a rich table,
plain text, a matplotlib figure, HTML, :func:`compare`) read them and compute nothing new; they are
loaded, with matplotlib and rich, when a view is asked for. The thresholds live in
:mod:`initscope.report._rules`.

Which rows judge depth. The weight layers (Linear, Conv*, ConvTranspose*, Bilinear) split into
the **body** and the **head** (``LayerStats.role``, set by :func:`initscope.diagnose`): the head
is what reads the model out, not its depth: the rows after pooling or a token pick to one vector
per example, and a last Linear whose width differs from the layer before it (a classifier or
vocabulary projection). Embeddings are their own kind. Head and embedding rows are reported on
their own rows but never fitted into a trend: global average pooling over ``H W`` positions
divides the per-element gradient by ``H W`` (``dL/dx[c, h, w] = dL/dy[c] / (H W)``), a step of
``log2(H W)`` bits that depends on the resolution, not on the depth. A weight row whose output
feeds a normalization directly (``chained``: the norm's input is that output, unchanged) is
judged by the norm's output and gradient (``judged_at``): a pre-BatchNorm convolution's own scale
is undone by the norm. Exact zeros are by design, not a trend: a row whose judged output std or
gradient std is exactly 0 (a zero-initialized layer, and the rows whose gradient flows only
through it) is left out of that fit and says so in ``note``, never clamped. A row whose output does
not reach the objective has no gradient (``grad_out_std`` None) and says why. Fewer than
``TREND_MIN = 3`` usable body rows: the trend is n/a (nan).

Trends within like layers. A repeated block's layers differ on purpose (small q/k gradients
through a near-uniform softmax, branch ends scaled by ``1/sqrt(L)`` or LayerScale, a stage's
first convolution at another resolution), so the trends compare like layers: rows with the same
path less its numeric components, type and ``form`` form a group with its own intercept; slopes
are pooled within groups, ``forward_log2`` / ``backward_log2`` are the pooled end-to-end rate
times the body's span. A body that does not repeat blocks (groups of 2 or more hold fewer than
3 rows) is one group: the plain end points and slope. Grouped, the backward values are gradient
norms per example, ``grad_out_std * sqrt(elements)``: a fan-in-scaled layer carries
``E||W^T d||^2 = fan_in Var(W) ||d||^2`` unchanged across a change of width or stride, the
per-element std does not. Squeeze-excitation gates (``role == "gate"``) are reported, not fitted.

Verdict rules (the first rule that fires wins, for the model and for each row):

1. ``symmetric``: a row has a group of identical units (``identical_groups > 0``): identical
   non-zero weight rows (weight layers; Embedding columns) or identical non-constant outputs across
   the batch (activation, attention and recurrent rows whose input is not the unchanged output of
   the row before, where the weight rows of that row already show it; norms map identical units
   to identical units and are not checked). Constant initialization: the units receive the same
   gradients and stay copies of each other (the symmetry problem).
2. ``exploding`` / ``vanishing`` (the model needs ``DEPTH_MIN = 10`` body weight layers): the model
   when ``forward_log2 = log2(out_std[last] / out_std[first])`` over the body lies beyond
   ``+-LOG2_LIMIT = 2`` (a factor 4), else when the least-squares trend of ``log2(grad_out_std)``
   across the body, toward the input, changes by more than ``+-2`` over the stack (a trend, not the
   end points, so that one width change is not read as a trend). A body row gets this verdict when
   its own ``log2(out_std / out_std[first])`` lies beyond ``+-2``. A non-finite (inf/nan)
   ``out_std`` or gradient std of any weight layer is ``exploding`` at any depth.
3. ``dead``: an activation row with ``dead_fraction > DEAD_LIMIT = 0.5`` (more than half its units
   are exactly zero for the whole batch). Weight layers report ``dead_fraction`` (outputs
   identically zero, e.g. a zero-initialized last layer of a residual branch) without it setting
   their verdict.
4. ``saturated``: an activation row with ``saturated_fraction > SATURATED_LIMIT = 0.5``: the
   fraction of its outputs within ``SATURATION_MARGIN = 1%`` of the output range ``hi - lo`` from
   a bound (tanh, sigmoid, hardtanh, softsign, ...: ``Activation.bounds``, both finite; the lower
   bound 0 of ReLU6 is its off state, counted as dead instead).
5. ``healthy``: no rule fired.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from initscope.report._format import signed
from initscope.report._rules import (
    DEAD_LIMIT,
    DEPTH_MIN,
    LOG2_LIMIT,
    SATURATED_LIMIT,
    TREND_MIN,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from initscope.init import Fans

_STAT_FIELDS = (
    "weight_std",
    "in_mean",
    "in_std",
    "out_mean",
    "out_std",
    "grad_out_std",
    "weight_grad_std",
    "dead_fraction",
    "saturated_fraction",
    "identical_groups",
    "predicted_std",
    "ratio",
    "predicted_grad_std",
    "grad_ratio",
)


@dataclass
class LayerStats:
    """Statistics of one module call, in execution order.

    One row per call of a weight-bearing module (Linear, Conv*, ConvTranspose*, Embedding,
    MultiheadAttention, norms, RNNs) and of an activation module. A module called twice gives two
    rows (the second path ends in ``#2``). Means and stds are over all elements of the tensor
    (population std); ``nan`` where a statistic does not exist (the mean of integer token inputs).

    ``predicted_std`` is theory's std of the output from the measured input: a weight layer
    ``sqrt(fan_in * Var(W) * E[x^2] + Var(b))`` (zero-mean weights independent of the input;
    ``Var(b)`` the spread of the biases across units), an Embedding its weight std, an activation
    ``sqrt(Var f(z))`` for ``z ~ N(in_mean, in_std^2)`` (``initscope.theory.moments``); ``ratio`` is
    ``out_std / predicted_std``. ``predicted_grad_std`` (weight layers) is the backward equation of
    Glorot & Bengio (2010) one step down from the next weight layer ``l+1``:
    ``grad_out_std[l+1] * sqrt(fan_out[l+1] * Var(W[l+1]) * prod E[f'(z)^2])`` over the activation
    modules in between, given only when the rows between form a chain (each input is the previous
    output); ``grad_ratio`` is ``grad_out_std / predicted_grad_std``.

    ``role``: ``"body"``, ``"head"`` or ``"gate"`` (weight rows; see the module docstring);
    ``chained``: the input is the previous row's output, unchanged; ``judged_at``: the path of
    the normalization whose output judges this weight row; ``note``: why a row is left out of a
    trend (``head``, ``gate``, ``zero-initialized (by design)``, no gradient). ``elements``: the
    size of one example's output; ``form``: kernel, depthwise and width change of a weight row
    (with the path less its block indices, the key of its like layers).
    """

    index: int
    path: str
    type: str
    kind: str
    fans: Fans | None
    weight_std: float | None
    in_mean: float
    in_std: float
    out_mean: float
    out_std: float
    grad_out_std: float | None
    weight_grad_std: float | None
    dead_fraction: float | None
    saturated_fraction: float | None
    identical_groups: int
    predicted_std: float | None
    ratio: float | None
    verdict: str
    predicted_grad_std: float | None = None
    grad_ratio: float | None = None
    role: str = "body"
    chained: bool = False
    elements: int | None = None
    form: str = ""
    judged_at: str | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain Python values (``fans`` as a dict or None)."""
        return dataclasses.asdict(self)


@dataclass(repr=False)
class Report:
    """What one forward and backward pass showed, layer by layer, with a verdict.

    ``forward_log2 = log2(out_std[last] / out_std[first])`` over the body's weight layers (their
    outputs are pre-activations; judged after a normalization that follows directly);
    ``backward_log2 = log2(grad_out_std[first] / grad_out_std[last])`` (positive when gradients
    grow toward the input). ``forward_slope`` / ``backward_slope`` are least-squares slopes of
    ``log2(out_std)`` and ``log2(grad_out_std)`` per body weight layer (the backward one counted
    toward the input). Rows with an exact zero or no gradient are left out of the fit, never
    clamped; fewer than 3 usable rows give nan (printed ``n/a``); an infinite body output gives
    ``forward_log2 = inf``. ``forward_gains[l] = out_std[l] / out_std[l-1]`` and
    ``backward_gains[l] = grad_out_std[l-1] / grad_out_std[l]`` per weight layer, raw (None for
    the first). See the module docstring for the verdict rules. Build one with
    :func:`initscope.diagnose`.
    """

    layers: list[LayerStats]
    verdict: str
    reason: str
    forward_log2: float
    backward_log2: float
    forward_slope: float
    backward_slope: float
    forward_gains: list[float | None] = field(default_factory=list)
    backward_gains: list[float | None] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_measurements(cls, rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> Report:
        """Judge measured rows (LayerStats fields except ``verdict``, ``judged_at`` and ``note``)
        and build the report."""
        stats = [LayerStats(**row, verdict="healthy") for row in rows]
        weights = [s for s in stats if s.kind == "weight"]
        body = [s for s in weights if s.role == "body"]
        judged = {id(s): _judge(stats, k) for k, s in enumerate(stats) if s.kind == "weight"}
        out = [judged[id(s)][0] for s in body]
        grads = [judged[id(s)][1] for s in body]
        keys = _group_keys(body, out)
        grad_keys = _group_keys(body, grads)
        if any(grad_keys):
            grads = [_per_example(s, g) for s, g in zip(body, grads, strict=True)]
        forward_log2 = _end_to_end(out, keys, forward=True)
        backward_log2 = _end_to_end(grads, grad_keys, forward=False)
        forward_slope = _slope(out, keys)
        backward_slope = -_slope(grads, grad_keys)
        deep = len(body) >= DEPTH_MIN
        first_of: dict[str, float] = {}
        for key, v in zip(keys, out, strict=True):
            if v is not None and _positive(v):
                first_of.setdefault(key, v)
        first = {id(s): first_of.get(key, math.nan) for s, key in zip(body, keys, strict=True)}
        for s in stats:
            s.note = _note(s, judged.get(id(s)))
            s.verdict = _layer_verdict(s, judged.get(id(s)), first.get(id(s), math.nan), deep)
        verdict, reason = _model_verdict(stats, body, forward_log2, backward_slope, deep)
        raw_out = [s.out_std for s in weights]
        raw_grads = [s.grad_out_std for s in weights]
        return cls(
            layers=stats,
            verdict=verdict,
            reason=reason,
            forward_log2=forward_log2,
            backward_log2=backward_log2,
            forward_slope=forward_slope,
            backward_slope=backward_slope,
            forward_gains=[
                None,
                *(_ratio(b, a) for a, b in zip(raw_out, raw_out[1:], strict=False)),
            ],
            backward_gains=[
                None,
                *(_ratio(a, b) for a, b in zip(raw_grads, raw_grads[1:], strict=False)),
            ],
            meta=dict(meta),
        )

    def body_layers(self) -> list[LayerStats]:
        """The weight rows whose trend the depth verdicts judge (``role == "body"``)."""
        return [s for s in self.layers if s.kind == "weight" and s.role == "body"]

    def weight_layers(self) -> list[LayerStats]:
        """The rows of kind ``"weight"`` (Linear, Conv*, ConvTranspose*, Bilinear), in order."""
        return [s for s in self.layers if s.kind == "weight"]

    def to_dict(self) -> dict[str, Any]:
        """The summary, one dict per row (``layers``) and long-form ``records``.

        ``records`` has one row per layer and statistic, as mup's coord check stores them:
        ``{"index", "path", "type", "kind", "stat", "value"}`` for every statistic that exists.
        """
        records = [
            {
                "index": s.index,
                "path": s.path,
                "type": s.type,
                "kind": s.kind,
                "stat": name,
                "value": value,
            }
            for s in self.layers
            for name, value in _stat_items(s)
        ]
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "forward_log2": self.forward_log2,
            "backward_log2": self.backward_log2,
            "forward_slope": self.forward_slope,
            "backward_slope": self.backward_slope,
            "forward_gains": list(self.forward_gains),
            "backward_gains": list(self.backward_gains),
            "meta": dict(self.meta),
            "layers": [s.to_dict() for s in self.layers],
            "records": records,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """Strict JSON of :meth:`to_dict` (``nan`` as null, infinities as ``"inf"`` / ``"-inf"``).

        Writes the text to ``path`` when given; returns it either way.
        """
        text = json.dumps(_json_safe(self.to_dict()), indent=2, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def plot(
        self, path: str | Path | None = None, ax: Axes | Sequence[Axes] | None = None
    ) -> Figure:
        """Forward std and gradient std of the weight layers against depth, measured and predicted.

        Log2 scale. ``ax``: a pair of Axes (forward, backward), one Axes (both on it), or None for a
        new two-panel figure. Saves to ``path`` when given. Returns the Figure.
        """
        from initscope.report.views import plot_reports

        return plot_reports([self], [None], path=path, ax=ax)

    def to_html(self, path: str | Path) -> Path:
        """Write one self-contained HTML file (summary, the plot as an inline PNG, the table)."""
        from initscope.report.views import html_report

        out = Path(path)
        out.write_text(html_report(self), encoding="utf-8")
        return out

    def __rich__(self) -> Any:
        from initscope.report.views import rich_report

        return rich_report(self)

    def __str__(self) -> str:
        from initscope.report.views import text_report

        return text_report(self)

    def __repr__(self) -> str:
        return (
            f"Report(verdict={self.verdict!r}, layers={len(self.layers)}, "
            f"forward_log2={self.forward_log2:.3g}, backward_log2={self.backward_log2:.3g})"
        )


def compare(
    reports: Sequence[Report], labels: Sequence[str], path: str | Path | None = None
) -> Figure:
    """One figure with the forward and gradient std of several reports (e.g. default init vs He).

    Measured curves solid, predicted as open circles, one color per report. Saves to ``path``
    when given.
    """
    if isinstance(reports, Report) or not all(isinstance(r, Report) for r in reports):
        raise TypeError("reports: expected a sequence of Report")
    if isinstance(labels, str) or not all(isinstance(label, str) for label in labels):
        raise TypeError("labels: expected a sequence of str")
    if not reports:
        raise ValueError("reports: expected at least one Report")
    if len(labels) != len(reports):
        raise ValueError(
            f"labels: expected {len(reports)} labels (one per report), got {len(labels)}"
        )
    from initscope.report.views import plot_reports

    return plot_reports(list(reports), list(labels), path=path, ax=None)


def _stat_items(s: LayerStats) -> list[tuple[str, float]]:
    items: list[tuple[str, float]] = []
    if s.fans is not None:
        items += [("fan_in", float(s.fans.fan_in)), ("fan_out", float(s.fans.fan_out))]
    for name in _STAT_FIELDS:
        value = getattr(s, name)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            items.append((name, float(value)))
    return items


def _judge(stats: list[LayerStats], k: int) -> tuple[float, float | None]:
    """(out std, gradient std) that judge weight row ``k``: those of a normalization that reads
    its output directly, else its own; records the norm's path in ``judged_at``."""
    s = stats[k]
    nxt = stats[k + 1] if k + 1 < len(stats) else None
    if nxt is not None and nxt.kind == "norm" and nxt.chained:
        s.judged_at = nxt.path
        grad = nxt.grad_out_std if nxt.grad_out_std is not None else s.grad_out_std
        return nxt.out_std, grad
    return s.out_std, s.grad_out_std


def _positive(v: float | None) -> bool:
    return v is not None and math.isfinite(v) and v > 0


def _points(values: Sequence[float | None]) -> list[tuple[int, float]]:
    """``(position, log2 value)`` of the usable values: finite and > 0 (exact zeros left out)."""
    return [(i, math.log2(v)) for i, v in enumerate(values) if v is not None and _positive(v)]


def _like(path: str, type_name: str, form: str = "") -> str:
    """The key of a row's like layers: its path with every numeric component (a block or stage
    index) and any call suffix replaced by ``#``, and its type (``blocks.3.attn.qkv`` and
    ``blocks.7.attn.qkv`` are like layers; ``attn.qkv`` and ``attn.proj`` are not)."""
    parts = path.split("#")[0].split(".")
    return ".".join("#" if part.isdigit() else part for part in parts) + f":{type_name} {form}"


def _group_keys(body: Sequence[LayerStats], values: Sequence[float | None]) -> list[str]:
    """Each body row's group for the trends: its like layers (:func:`_like`) when the groups with
    2 or more usable values hold at least ``TREND_MIN`` values, else one group for all rows (a
    stack whose layers are not repeated blocks: the plain end-to-end trend)."""
    keys = [_like(s.path, s.type, s.form) for s in body]
    counts: dict[str, int] = {}
    for key, v in zip(keys, values, strict=True):
        if _positive(v):
            counts[key] = counts.get(key, 0) + 1
    if sum(n for n in counts.values() if n >= 2) >= TREND_MIN and len(counts) > 1:
        return keys
    return [""] * len(keys)


def _grouped(values: Sequence[float | None], keys: Sequence[str]) -> list[list[tuple[int, float]]]:
    """The usable points of each group that has 2 or more of them."""
    groups: dict[str, list[tuple[int, float]]] = {}
    for i, y in _points(values):
        groups.setdefault(keys[i], []).append((i, y))
    return [g for g in groups.values() if len(g) >= 2]


def _per_example(s: LayerStats, grad: float | None) -> float | None:
    """The gradient's norm per example, ``grad_std * sqrt(elements)``, ``elements`` the size of
    one example's output (channels x positions): the quantity a weight layer with fan-in scaling
    carries backward unchanged across a change of width or resolution, ``E||W^T d||^2 = fan_in
    Var(W) ||d||^2`` (the per-element std changes by ``sqrt(fan_out / fan_in)`` there)."""
    if grad is None or s.elements is None:
        return grad
    return grad * math.sqrt(s.elements)


def _end_to_end(values: Sequence[float | None], keys: Sequence[str], forward: bool) -> float:
    """The change of log2 over the body: ``log2(last / first)`` forward, ``log2(first / last)``
    backward, within like layers: ``sum_g (y_last - y_first) / sum_g (x_last - x_first)`` over
    the groups, times the span of the body (one group: exactly ``y_last - y_first``). inf when
    a value is infinite (forward), nan when one is nan or fewer than TREND_MIN are usable."""
    if any(v is not None and math.isnan(v) for v in values):
        return math.nan
    if any(v is not None and math.isinf(v) for v in values):
        return math.inf if forward else math.nan
    points = _points(values)
    groups = _grouped(values, keys)
    if len(points) < TREND_MIN or sum(len(g) for g in groups) < TREND_MIN:
        return math.nan
    rise = sum(g[-1][1] - g[0][1] for g in groups)
    run = sum(g[-1][0] - g[0][0] for g in groups)
    change = rise / run * (points[-1][0] - points[0][0])
    return change if forward else -change


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


def _slope(values: Sequence[float | None], keys: Sequence[str]) -> float:
    """Least-squares slope of log2 per body row, pooled within the groups of like layers (each
    group its own intercept: ``sum_g sum (x - mean_g x)(y - mean_g y) / sum_g sum (x - mean_g
    x)^2``); one group is the ordinary slope."""
    groups = _grouped(values, keys)
    if sum(len(g) for g in groups) < TREND_MIN:
        return math.nan
    sxy = sxx = 0.0
    for g in groups:
        mx = sum(i for i, _ in g) / len(g)
        my = sum(y for _, y in g) / len(g)
        sxx += sum((i - mx) ** 2 for i, _ in g)
        sxy += sum((i - mx) * (y - my) for i, y in g)
    return sxy / sxx


def _finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


def _note(s: LayerStats, judged: tuple[float, float | None] | None) -> str:
    if judged is None:
        return ""
    out, grad = judged
    notes = []
    if s.role == "head":
        notes.append("head: reported, not fitted")
    elif s.role == "gate":
        notes.append("gate on a pooled map: reported, not fitted")
    if s.weight_std == 0:
        notes.append("zero-initialized (by design): weights all 0, left out of the fit")
    elif out == 0:
        notes.append("output exactly 0: left out of the forward fit")
    if grad is None:
        notes.append("no gradient: its output does not reach the objective")
    elif grad == 0 and s.weight_std != 0:
        notes.append("gradient exactly 0 (behind a zero-initialized layer): left out of the fit")
    return "; ".join(notes)


def _layer_verdict(
    s: LayerStats, judged: tuple[float, float | None] | None, first: float, deep: bool
) -> str:
    if s.identical_groups > 0:
        return "symmetric"
    if judged is not None:
        if not (math.isfinite(s.out_std) and _finite(s.grad_out_std)):
            return "exploding"
        out = judged[0]
        if deep and s.role == "body" and _positive(out) and _positive(first):
            drift = math.log2(out / first)
            if drift > LOG2_LIMIT:
                return "exploding"
            if drift < -LOG2_LIMIT:
                return "vanishing"
    if s.kind == "activation":
        if s.dead_fraction is not None and s.dead_fraction > DEAD_LIMIT:
            return "dead"
        if s.saturated_fraction is not None and s.saturated_fraction > SATURATED_LIMIT:
            return "saturated"
    return "healthy"


def _left_out(stats: list[LayerStats]) -> str:
    """The rows left out of the fits, as a parenthetical for the reason."""
    parts = []
    for label, rows in (
        ("head", [s for s in stats if s.kind == "weight" and s.role == "head"]),
        ("gate", [s for s in stats if s.kind == "weight" and s.role == "gate"]),
        ("zero-initialized", [s for s in stats if s.weight_std == 0 and s.kind == "weight"]),
        ("no gradient", [s for s in stats if "no gradient" in s.note]),
        ("zero gradient", [s for s in stats if "gradient exactly 0" in s.note]),
    ):
        if rows:
            shown = ", ".join(repr(s.path) for s in rows[:3]) + (", ..." if len(rows) > 3 else "")
            parts.append(f"{label}: {shown}")
    return f"; not fitted: {'; '.join(parts)}" if parts else ""


def _model_verdict(
    stats: list[LayerStats],
    body: list[LayerStats],
    forward_log2: float,
    backward_slope: float,
    deep: bool,
) -> tuple[str, str]:
    symmetric = [s for s in stats if s.verdict == "symmetric"]
    if symmetric:
        s = symmetric[0]
        return "symmetric", (
            f"{len(symmetric)} row(s) have groups of identical units, first {s.path!r} "
            f"({s.type}) with {s.identical_groups} group(s): the units compute and learn the same"
        )
    bad = [
        s
        for s in stats
        if s.kind == "weight" and not (math.isfinite(s.out_std) and _finite(s.grad_out_std))
    ]
    if bad:
        s = bad[0]
        return "exploding", f"{s.path!r} ({s.type}) has a non-finite output or gradient std"
    n = len(body)
    left_out = _left_out(stats)
    trend = backward_slope * (n - 1)
    if deep:
        rule = f"rule: beyond +-{LOG2_LIMIT:g} at >= {DEPTH_MIN} body weight layers"
        if abs(forward_log2) > LOG2_LIMIT:
            word = "exploding" if forward_log2 > 0 else "vanishing"
            return word, (
                f"log2 of the pre-activation std changes by {forward_log2:+.2f} from "
                f"{body[0].path!r} to {body[-1].path!r} over {n} body weight layers "
                f"({rule}){left_out}"
            )
        if math.isfinite(trend) and abs(trend) > LOG2_LIMIT:
            word = "exploding" if trend > 0 else "vanishing"
            return word, (
                f"the fitted log2 of the gradient std changes by {trend:+.2f} toward the input "
                f"over {n} body weight layers ({rule}){left_out}"
            )
    for word, attr, limit, what in (
        ("dead", "dead_fraction", DEAD_LIMIT, "units zero for the whole batch"),
        ("saturated", "saturated_fraction", SATURATED_LIMIT, "outputs near a bound"),
    ):
        rows = [s for s in stats if s.verdict == word]
        if rows:
            s = max(rows, key=lambda r: getattr(r, attr))
            return word, (
                f"{len(rows)} activation row(s) are {word}, worst {s.path!r} ({s.type}) with "
                f"{getattr(s, attr):.0%} of its {what} (rule: > {limit:.0%})"
            )
    depth_note = (
        "" if deep else f" (the depth rules need >= {DEPTH_MIN} body weight layers, found {n})"
    )
    return "healthy", (
        f"no rule fired: forward log2 {signed(forward_log2)}, gradient trend "
        f"{signed(trend if n > 1 else math.nan)} over {n} body weight layer{'' if n == 1 else 's'}"
        f"{depth_note}"
        f"{left_out}"
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
