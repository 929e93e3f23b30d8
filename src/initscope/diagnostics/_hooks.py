"""Forward and tensor hooks that measure one pass for :func:`initscope.diagnose` (private).

Every statistic stays a 0-dim float32 tensor on its device until :func:`gather` moves them all to
the host at once (one ``tolist()`` per device): no host sync per layer. Stds travel as a mean and a
2-norm and are formed on the host (:func:`host_std`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from initscope.activations import Activation, from_module
from initscope.report._report import SATURATION_MARGIN

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
WEIGHT = (nn.Linear, nn.Bilinear, *CONV)
EMBEDDING = (nn.Embedding, nn.EmbeddingBag)
CHANNEL_NORM = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.GroupNorm,
)
NORM = (*CHANNEL_NORM, nn.LayerNorm, nn.RMSNorm)
RECURRENT = (nn.RNNBase, nn.RNNCellBase)

# Per-call raw statistics, in this order: means and 2-norms (the std is formed on the host).
IN_MEAN, IN_L2, OUT_MEAN, OUT_L2, GRAD_MEAN, GRAD_L2, DEAD, SATURATED, GROUPS = range(9)
N_STATS = 9


@dataclass(frozen=True)
class Spec:
    """What is known about a hooked module before the pass."""

    path: str
    module: nn.Module
    kind: str
    act: Activation | None
    saturation: (
        tuple[float, float] | None
    )  # (low, high) thresholds; outputs beyond them are saturated


def classify(module: nn.Module) -> tuple[str, Activation | None] | None:
    """``(kind, activation)`` for a module that gets a row, else None."""
    if isinstance(module, WEIGHT):
        return "weight", None
    if isinstance(module, EMBEDDING):
        return "embedding", None
    if isinstance(module, NORM):
        return "norm", None
    if isinstance(module, nn.MultiheadAttention):
        return "attention", None
    if isinstance(module, RECURRENT):
        return "recurrent", None
    act = from_module(module)
    if act is None or act.name in ("identity", "linear"):
        return None
    return "activation", act


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


class Call:
    """One call of a hooked module: its raw statistics (0-dim tensors or None) and their sizes."""

    __slots__ = ("spec", "index", "path", "in_shape", "in_float", "stats", "sizes", "chained")

    def __init__(self, spec: Spec, index: int, path: str, x: torch.Tensor | None) -> None:
        self.spec = spec
        self.index = index
        self.path = path
        self.in_shape = None if x is None else tuple(x.shape)
        self.in_float = x is not None and x.is_floating_point()
        self.stats: list[torch.Tensor | None] = [None] * N_STATS
        self.sizes = {
            IN_MEAN: 0,
            OUT_MEAN: 0,
            GRAD_MEAN: 0,
        }  # numel behind each (mean, 2-norm) pair
        self.chained = False  # the input is the previous row's output, unchanged since


class Collector:
    """Receives the hooks' calls; keeps the statistics as device tensors."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.open: list[Call] = []
        self._counts: Counter[str] = Counter()
        self._tensor_handles: list[Any] = []
        self._units_from_end = 1
        self._last: tuple[torch.Tensor, int, Call] | None = (
            None  # last output, its version, its call
        )
        self._keys: dict[tuple[int, int, torch.device], torch.Tensor] = {}

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
                call.stats[IN_MEAN], call.stats[IN_L2] = (
                    last[2].stats[OUT_MEAN],
                    last[2].stats[OUT_L2],
                )
                call.sizes[IN_MEAN] = last[2].sizes[OUT_MEAN]
            else:
                moments_into(call.stats, call.sizes, IN_MEAN, x.detach().float())
        self.calls.append(call)
        self.open.append(call)

    def post(self, spec: Spec, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        call = self.open.pop()
        y = first_tensor(output)
        if y is None or not y.is_floating_point() or y.numel() == 0:
            return
        yf = y.detach().float()
        moments_into(call.stats, call.sizes, OUT_MEAN, yf)
        self._last = (y, y._version, call)
        unit = self._unit_dim(spec, y)
        if spec.kind != "activation":
            self._units_from_end = y.ndim - unit
        if spec.saturation is not None:
            low, high = spec.saturation
            call.stats[SATURATED] = ((yf <= low) | (yf >= high)).float().mean()
        if spec.kind in ("weight", "activation", "attention", "recurrent") and yf.ndim >= 2:
            dims = tuple(d for d in range(yf.ndim) if d != unit)
            high, low = torch.amax(yf, dim=dims), torch.amin(yf, dim=dims)
            if spec.kind in ("weight", "activation"):
                call.stats[DEAD] = ((high == 0) & (low == 0)).float().mean()
            if spec.kind != "weight" and not call.chained:
                call.stats[GROUPS] = self.identical_groups(yf, unit, high != low)
        elif spec.kind in ("weight", "activation"):
            call.stats[DEAD] = (yf == 0).float().mean()
        if y.requires_grad:
            self._tensor_handles.append(y.register_hook(partial(self._grad, call)))

    def _grad(self, call: Call, grad: torch.Tensor) -> None:
        moments_into(call.stats, call.sizes, GRAD_MEAN, grad.detach().float())

    def _unit_dim(self, spec: Spec, y: torch.Tensor) -> int:
        nd = y.ndim
        if nd <= 1:
            return 0
        if isinstance(spec.module, CONV):
            return max(nd - len(spec.module.kernel_size) - 1, 0)
        if isinstance(spec.module, CHANNEL_NORM):
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
        if t.ndim < 2 or units < 2:
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

    def row_groups(self, rows: torch.Tensor) -> torch.Tensor:
        """Number of groups (size >= 2) of identical non-zero rows of a contiguous (units, M)
        matrix.

        Rows are compared through their sum and a weighted sum with fixed quasi-random weights:
        identical rows give bit-identical sums (the row-wise reduction runs over contiguous memory).
        """
        units, width = rows.shape
        if units < 2 or width == 0:
            return rows.new_zeros(())
        h1 = rows.sum(1)
        h2 = (rows * self._key_weights(1, width, rows.device).reshape(width)).sum(1)
        ok = torch.isfinite(h1 + h2) & ((h1 != 0) | (h2 != 0))
        key = torch.where(ok, h2, float("nan"))
        order = torch.argsort(key)
        k2, k1 = key[order], h1[order]
        return _runs((k2[1:] == k2[:-1]) & (k1[1:] == k1[:-1]))

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
    """Number of runs of True in ``same`` (neighbour i equals neighbour i + 1): the groups."""
    return (same.sum() - (same[1:] & same[:-1]).sum()).float()


def moments_into(stats: list, sizes: dict[int, int], slot: int, t: torch.Tensor) -> None:
    """Store ``t``'s mean and 2-norm at ``slot`` and ``slot + 1`` (two reductions, no temporary)."""
    stats[slot], stats[slot + 1] = t.mean(), torch.linalg.vector_norm(t)
    sizes[slot] = t.numel()


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
    handles = []
    try:
        for spec in specs:
            handles.append(
                spec.module.register_forward_pre_hook(
                    partial(collector.pre, spec), with_kwargs=True
                )
            )
            handles.append(
                spec.module.register_forward_hook(partial(collector.post, spec), with_kwargs=True)
            )
        yield collector
    finally:
        for handle in handles:
            handle.remove()
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

    handles = []
    try:
        handles = [spec.module.register_forward_pre_hook(stop) for spec in specs]
        yield
    finally:
        for handle in handles:
            handle.remove()


def gather(tensors: list[torch.Tensor | None]) -> list[float | None]:
    """Move all statistics to the host at once (one ``tolist()`` per device); None stays None."""
    by_device: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        if t is not None:
            by_device.setdefault(t.device, []).append(i)
    out: list[float | None] = [None] * len(tensors)
    for indices in by_device.values():
        values = torch.stack([tensors[i].reshape(()).float() for i in indices]).tolist()
        for i, v in zip(indices, values, strict=True):
            out[i] = v
    return out
