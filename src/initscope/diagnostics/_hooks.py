"""Forward and tensor hooks that measure one pass for :func:`initscope.diagnose` (private).

Every statistic stays a 0-dim float32 tensor on its device, in a named field, until
:func:`gather` moves them all to the host at once (one ``tolist()`` per device): no host sync
per layer. Stds travel as a mean and a 2-norm (:class:`Moments`) and are formed on the host.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn

from initscope._torch import removing
from initscope.activations import Activation, from_module
from initscope.graph import LayerKind, layer_kind, norm_kind
from initscope.report import SATURATION_MARGIN

RowKind = Literal["weight", "activation", "norm", "embedding", "attention", "recurrent"]
_ROW_KIND: dict[str, RowKind] = {
    "linear": "weight",
    "conv": "weight",
    "conv_transpose": "weight",
    "bilinear": "weight",
    "embedding": "embedding",
    "norm": "norm",
    "attention": "attention",
    "recurrent": "recurrent",
}
# statistics a norm computes per channel (dim 1) rather than over the trailing features
_CHANNEL_NORMS = ("batch_norm", "instance_norm", "group_norm")

# Device value: a 0-dim float32 tensor during the pass, a float after gather(), None if absent.
Value = Any


@dataclass(frozen=True)
class Spec:
    """What is known about a hooked module before the pass: its path, its kind in the graph's
    taxonomy (:func:`initscope.graph.layer_kind`), the row kind; for a convolution its number of
    spatial dimensions, for a norm whether it normalizes per channel (dim 1); for an activation
    its function and the ``(low, high)`` thresholds beyond which an output is saturated."""

    path: str
    module: nn.Module
    layer: LayerKind
    kind: RowKind
    act: Activation | None = None
    saturation: tuple[float, float] | None = None
    spatial: int = 0
    channel_norm: bool = False


def classify(path: str, module: nn.Module) -> Spec | None:
    """The :class:`Spec` of a module that gets a row, else None."""
    layer = layer_kind(module)
    kind = _ROW_KIND.get(layer)
    if kind is not None:
        kernel = getattr(module, "kernel_size", ()) if layer in ("conv", "conv_transpose") else ()
        spatial = len(kernel) if isinstance(kernel, tuple) else 0
        channel_norm = layer == "norm" and norm_kind(module) in _CHANNEL_NORMS
        return Spec(path, module, layer, kind, spatial=spatial, channel_norm=channel_norm)
    act = from_module(module)
    if act is None or act.name in ("identity", "linear"):
        return None
    return Spec(path, module, layer, "activation", act, saturation_thresholds(act))


def saturation_thresholds(act: Activation) -> tuple[float, float] | None:
    """Outputs ``<= low`` or ``>= high`` count as saturated: within 1% of the range from a bound.

    A lower bound of 0 above which the activation is the identity (ReLU6) is its off state, which
    ``dead_fraction`` counts; only the upper bound saturates there.
    """
    lo, hi = act.bounds
    if lo is None or hi is None:
        return None
    margin = SATURATION_MARGIN * (hi - lo)
    relu_like = lo == 0 and float(act.f(np.array([0.5]))[0]) == 0.5
    return (float("-inf") if relu_like else lo + margin), hi - margin


def first_tensor(obj: Any) -> torch.Tensor | None:
    """The first tensor in a tensor, tuple/list (an LSTM's ``(output, (h, c))``) or mapping."""
    if isinstance(obj, torch.Tensor):
        return obj
    items = (
        obj.values() if isinstance(obj, Mapping) else obj if isinstance(obj, (tuple, list)) else ()
    )
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


@dataclass
class Moments:
    """Mean and 2-norm of ``n`` elements; the population std is formed on the host. ``n`` is an
    int, or a device tensor until :func:`gather` where it was summed across ranks."""

    mean: Value = None
    l2: Value = None
    n: Value = 0

    @classmethod
    def of(cls, t: torch.Tensor) -> Moments:
        """Two reductions on the device, no temporary."""
        return cls(t.mean(), torch.linalg.vector_norm(t), t.numel())

    def std(self) -> float | None:
        return host_std(self.mean, self.l2, self.n)


@dataclass
class CallStats:
    """Raw statistics of one module call: input, output and output-gradient moments; the fraction
    of units zero for the whole batch (``dead``), of outputs near a bound (``saturated``), and the
    number of groups of identical units (``groups``)."""

    inp: Moments = field(default_factory=Moments)
    out: Moments = field(default_factory=Moments)
    grad: Moments = field(default_factory=Moments)
    dead: Value = None
    saturated: Value = None
    groups: Value = None


@dataclass
class ModuleStats:
    """Raw statistics of one module's parameters: weight and bias moments, identical weight rows,
    moments of the weight's gradient."""

    weight: Moments = field(default_factory=Moments)
    bias: Moments = field(default_factory=Moments)
    groups: Value = None
    grad: Moments = field(default_factory=Moments)


class Call:
    """One call of a hooked module: its raw statistics and where it sits in the pass."""

    __slots__ = ("spec", "index", "path", "in_shape", "out_shape", "in_float", "stats", "chained")

    def __init__(self, spec: Spec, index: int, path: str, x: torch.Tensor | None) -> None:
        self.spec = spec
        self.index = index
        self.path = path
        self.in_shape = None if x is None else tuple(x.shape)
        self.out_shape: tuple[int, ...] | None = None
        self.in_float = x is not None and x.is_floating_point()
        self.stats = CallStats()
        self.chained = False  # the input is the previous row's output, unchanged since


class Collector:
    """Receives the hooks' calls; keeps the statistics as device tensors. With ``units`` the
    dead statistic of a multi-dimensional output is kept per unit (1.0 dead, 0.0 alive), for a
    reduction across ranks, instead of the fraction."""

    def __init__(self, units: bool = False) -> None:
        self.units = units
        self.calls: list[Call] = []
        self.open: list[Call] = []
        self._counts: Counter[str] = Counter()
        self._tensor_handles: list[Any] = []
        self._units_from_end = 1
        self._last: tuple[torch.Tensor, int, Call] | None = (
            None  # last output, its version, its call
        )
        self._keys: dict[tuple[int, int, torch.device], torch.Tensor] = {}
        # per-unit max and min of outputs awaiting settle_dead(), by (units, device)
        self._extremes: dict[
            tuple[torch.Size, torch.device], list[tuple[CallStats, torch.Tensor, torch.Tensor]]
        ] = {}
        # row sums awaiting count_row_groups, by (rows, device): (where to put the count, sums)
        self._row_sums: dict[
            tuple[int, torch.device], list[tuple[ModuleStats, torch.Tensor, torch.Tensor]]
        ] = {}

    def pre(self, spec: Spec, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = first_tensor(args)
        if x is None:
            x = first_tensor(kwargs)
        self._counts[spec.path] += 1
        n = self._counts[spec.path]
        call = Call(spec, len(self.calls), spec.path if n == 1 else f"{spec.path}#{n}", x)
        if x is not None and x.is_floating_point() and x.numel() > 0:
            last = self._last
            if last is not None and last[0] is x and last[1] == x._version:
                call.chained = True
                call.stats.inp = last[2].stats.out
            else:
                call.stats.inp = Moments.of(x.detach().float())
        self.calls.append(call)
        self.open.append(call)

    def post(self, spec: Spec, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        call = self.open.pop()
        y = first_tensor(output)
        if y is None or not y.is_floating_point() or y.numel() == 0:
            return
        call.out_shape = tuple(y.shape)
        yf = y.detach().float()
        call.stats.out = Moments.of(yf)
        self._last = (y, y._version, call)
        unit = self._unit_dim(spec, y)
        if spec.kind != "activation":
            self._units_from_end = y.ndim - unit
        if spec.saturation is not None:
            floor, ceiling = spec.saturation
            call.stats.saturated = ((yf <= floor) | (yf >= ceiling)).float().mean()
        if spec.kind in ("weight", "activation", "attention", "recurrent") and yf.ndim >= 2:
            dims = tuple(d for d in range(yf.ndim) if d != unit)
            high, low = torch.amax(yf, dim=dims), torch.amin(yf, dim=dims)
            if spec.kind in ("weight", "activation"):
                # a unit is dead when its max and min are both 0; counted in settle_dead(), batched
                self._extremes.setdefault((high.shape, high.device), []).append(
                    (call.stats, high, low)
                )
            if spec.kind != "weight" and not call.chained:
                call.stats.groups = self.identical_groups(yf, unit, high != low)
        elif spec.kind in ("weight", "activation"):
            call.stats.dead = (yf == 0).float().mean()
        if y.requires_grad:
            self._tensor_handles.append(y.register_hook(partial(self._grad, call)))

    def _grad(self, call: Call, grad: torch.Tensor) -> None:
        call.stats.grad = Moments.of(grad.detach().float())

    def _unit_dim(self, spec: Spec, y: torch.Tensor) -> int:
        nd = y.ndim
        if nd <= 1:
            return 0
        if spec.spatial:
            return max(nd - spec.spatial - 1, 0)
        if spec.channel_norm:
            return 1
        if spec.kind == "activation" and 1 <= self._units_from_end <= nd:
            return nd - self._units_from_end
        return nd - 1

    def identical_groups(self, t: torch.Tensor, unit: int, eligible: torch.Tensor) -> torch.Tensor:
        """Number of groups (size >= 2) of identical eligible units of ``t`` along ``unit``.

        The units are sorted by a projection of their values on fixed quasi-random weights, then
        each unit is compared exactly with its neighbour in that order (``max`` and ``min`` of the
        difference both 0). All on the device; no data-dependent shapes.
        """
        units = t.shape[unit]
        if t.ndim < 2 or units < 2 or t.numel() // units < 3:
            # two values per unit cannot tell copies from chance: a batch normalization over 2
            # values maps them to exactly -1 and +1, so its units coincide by pigeonhole
            return t.new_zeros(())
        before = math.prod(t.shape[:unit])
        t3 = t.reshape(before, units, -1)
        key = (t3 * self._key_weights(before, t3.shape[2], t.device)).sum((0, 2))
        key = torch.where(eligible & torch.isfinite(key), key, float("nan"))
        order = torch.argsort(key)
        s = t3.index_select(1, order)
        diff = s[:, 1:] - s[:, :-1]
        same = (diff.amax((0, 2)) == 0) & (diff.amin((0, 2)) == 0)
        ok = eligible[order]
        return _runs(same & ok[1:] & ok[:-1])

    def row_groups(self, rows: torch.Tensor, into: ModuleStats) -> None:
        """Count the groups (size >= 2) of identical non-zero rows of a contiguous (units, M)
        matrix into ``into.groups``, at the latest in :meth:`count_row_groups`.

        Rows are compared through their sum and a weighted sum with fixed quasi-random weights:
        identical rows give bit-identical sums (the row-wise reduction runs over contiguous memory).
        The sums are taken here, matrix by matrix; the comparison of the sums, a few small ops,
        waits to run once for all matrices with as many rows on one device.
        """
        units, width = rows.shape
        if units < 2 or width == 0:
            into.groups = rows.new_zeros(())
            return
        h1 = rows.sum(1)
        h2 = (rows * self._key_weights(1, width, rows.device).reshape(width)).sum(1)
        self._row_sums.setdefault((units, rows.device), []).append((into, h1, h2))

    def settle_dead(self) -> None:
        """The dead fraction of every call: units whose max and min over the batch are both 0
        (a mean of 0/1 values, exact in any order); the 0/1 flags per unit with ``units``, for
        the ranks to agree on (a unit is dead only if dead on every rank)."""
        for pending in self._extremes.values():
            high = torch.stack([p[1] for p in pending])
            low = torch.stack([p[2] for p in pending])
            dead = ((high == 0) & (low == 0)).float()
            values = dead if self.units else dead.flatten(1).mean(1)
            for (stats, _, _), value in zip(pending, values, strict=True):
                stats.dead = value
        self._extremes.clear()

    def count_row_groups(self) -> None:
        """The comparison for every matrix :meth:`row_groups` received: sort each matrix's rows by
        the weighted sum (a batched sort orders each row of the batch as a sort of that row
        alone), count runs of neighbours with both sums equal."""
        for pending in self._row_sums.values():
            h1 = torch.stack([p[1] for p in pending])
            h2 = torch.stack([p[2] for p in pending])
            ok = torch.isfinite(h1 + h2) & ((h1 != 0) | (h2 != 0))
            key = torch.where(ok, h2, float("nan"))
            k2, order = torch.sort(key, dim=1)
            k1 = h1.gather(1, order)
            counts = _runs((k2[:, 1:] == k2[:, :-1]) & (k1[:, 1:] == k1[:, :-1]))
            for (stats, _, _), count in zip(pending, counts, strict=True):
                stats.groups = count
        self._row_sums.clear()

    def _key_weights(self, before: int, after: int, device: torch.device) -> torch.Tensor:
        key = (before, after, device)
        if key not in self._keys:
            k = torch.arange(before * after, dtype=torch.float32, device=device)
            self._keys[key] = ((k * 0.6180339887).frac() + 0.5).reshape(before, 1, after)
        return self._keys[key]

    def remove_tensor_hooks(self) -> None:
        for handle in self._tensor_handles:
            handle.remove()
        self._tensor_handles.clear()
        self._last = None


def _runs(same: torch.Tensor) -> torch.Tensor:
    """Number of runs of True along the last dimension of ``same`` (neighbour i equals neighbour
    i + 1): the groups."""
    return (same.sum(-1) - (same[..., 1:] & same[..., :-1]).sum(-1)).float()


def host_std(mean: float | None, l2: float | None, n: int) -> float | None:
    """Population std from a float32 mean and 2-norm: ``sqrt(l2^2 / n - mean^2)`` in float64.

    Relative error about ``1e-7 * (mean / std)^2``. Elements beyond about ``1e19`` in magnitude
    make the float32 sum of squares inf, elements below about ``1e-19`` underflow in it.
    """
    if mean is None or l2 is None or n == 0:
        return None
    if math.isnan(mean) or math.isnan(l2):
        return math.nan
    if math.isinf(mean) or math.isinf(l2):
        return math.inf
    return math.sqrt(max(l2 * l2 / n - mean * mean, 0.0))


@contextmanager
def hooked(specs: list[Spec], collector: Collector) -> Iterator[Collector]:
    """Forward pre/post hooks on every spec'd module and the collector's tensor hooks, all removed
    in ``finally`` (also when the forward or backward raises)."""
    with removing() as handles:
        try:
            for spec in specs:
                pre, post = partial(collector.pre, spec), partial(collector.post, spec)
                handles.append(spec.module.register_forward_pre_hook(pre, with_kwargs=True))
                handles.append(spec.module.register_forward_hook(post, with_kwargs=True))
            yield collector
        finally:
            collector.remove_tensor_hooks()


class FirstModule(Exception):
    """Raised by the probe's pre-hook to stop the forward at the first module that runs."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__(type(module).__name__)
        self.module = module


@contextmanager
def probing(specs: list[Spec]) -> Iterator[None]:
    """Pre-hooks that raise :class:`FirstModule` at the first spec'd module to run."""

    def stop(module: nn.Module, args: tuple) -> None:
        raise FirstModule(module)

    with removing() as handles:
        for spec in specs:
            handles.append(spec.module.register_forward_pre_hook(stop))
        yield


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    """A dataclass's field names, read once per class (``dataclasses.fields`` is slow)."""
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def gather(records: list[Any]) -> None:
    """Move every tensor field of ``records`` (dataclasses, nested) to the host at once, one
    ``tolist()`` per device, replacing each by its float in place; None stays None."""
    slots: list[tuple[Any, str, torch.Tensor]] = []
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for name in _field_names(type(obj)):
            value = getattr(obj, name)
            if isinstance(value, torch.Tensor):
                slots.append((obj, name, value))
            elif dataclasses.is_dataclass(value):
                visit(value)

    for record in records:
        visit(record)
    by_device: dict[torch.device, list[tuple[Any, str, torch.Tensor]]] = {}
    for slot in slots:
        by_device.setdefault(slot[2].device, []).append(slot)
    for group in by_device.values():
        values = torch.stack([t.reshape(()).float() for _, _, t in group]).tolist()
        for (obj, name, _), v in zip(group, values, strict=True):
            setattr(obj, name, v)
