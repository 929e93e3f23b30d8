"""Which tensors must widen together: the units of one layer, followed through the model's graph.

Widening the output units of a layer changes the width of every tensor that carries those units:
through elementwise ops, activations, dropout, pooling and per-channel normalizations, across
residual ``add`` s and gating products (both operands carry the same units) and into every
weight layer that reads them. :func:`trace_units` walks the data-flow graph that
:mod:`initscope.graph` builds (``torch.fx``, else one recorded forward) in both directions until
that set is closed, and returns the layers whose outputs (producers) and inputs (consumers)
widen, and the normalizations in between. Anything it cannot follow is an error that names the
op, before the caller changes anything.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd
from torch.nn.modules.pooling import (
    _AdaptiveAvgPoolNd,
    _AdaptiveMaxPoolNd,
    _AvgPoolNd,
    _MaxPoolNd,
)

from initscope import graph as gb
from initscope.activations import from_function, from_module

__all__ = ["Units", "GrowthError", "trace_units", "graph_nodes"]

_JOIN = frozenset(
    {"add", "add_", "__add__", "__radd__", "__iadd__", "iadd", "sub", "sub_", "__sub__",
     "__rsub__", "mul", "mul_", "__mul__", "__rmul__", "__imul__", "imul"}
)  # fmt: skip
_SCALAR_OK = _JOIN | frozenset({"div", "div_", "__truediv__", "truediv", "__itruediv__"})
_PASS_CALLS = frozenset(
    {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
     "contiguous", "clone", "to", "float", "double", "half", "bfloat16", "detach"}
)  # fmt: skip
_POOL_CALLS = frozenset(
    {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
     "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
     "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d"}
)  # fmt: skip
_PASS_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                 nn.FeatureAlphaDropout, nn.Identity)  # fmt: skip
_POOL_MODULES = (_MaxPoolNd, _AvgPoolNd, _AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd)


class GrowthError(ValueError):
    """The requested growth cannot keep the model's function (raised before any change)."""


@dataclass
class Units:
    """The layers that widen with one layer's output units.

    Attributes:
        width: the current number of units.
        producers: module paths whose outputs carry the units (rows of a Linear, output channels
            of a Conv, columns of an Embedding).
        consumers: module paths whose inputs carry them, with the block size of each unit in
            the input (> 1 after a ``flatten`` of a conv map: a unit is ``block`` columns).
        channel_norms: per-unit normalizations (BatchNorm): their parameters and running
            statistics widen by copying.
        feature_norms: normalizations over the units (LayerNorm, RMSNorm): they keep the
            function only when every unit is copied equally often.
        modules: path -> module for all of the above.
    """

    width: int
    producers: list[str] = field(default_factory=list)
    consumers: dict[str, int] = field(default_factory=dict)
    channel_norms: list[str] = field(default_factory=list)
    feature_norms: list[str] = field(default_factory=list)
    modules: dict[str, nn.Module] = field(default_factory=dict)


def graph_nodes(model: nn.Module, example_input: Any) -> list[gb.Node]:
    """The data-flow graph: ``torch.fx`` when it traces, else one recorded forward."""
    try:
        return gb.from_fx(model)
    except Exception as exc:
        if example_input is None:
            raise GrowthError(
                f"torch.fx cannot trace {type(model).__name__} ({type(exc).__name__}: {exc}); "
                "pass example_input= (a batch the model accepts) so that one forward can be "
                "recorded"
            ) from exc
    return gb.from_recording(model, example_input)


def is_transposed_linear(m: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2): a Linear that stores its weight as ``(in, out)``."""
    w = getattr(m, "weight", None)
    return (
        type(m).__name__ == "Conv1D"
        and isinstance(getattr(m, "nf", None), int)
        and isinstance(w, torch.Tensor)
        and w.dim() == 2
        and w.shape[1] == m.nf
    )


def in_width(m: nn.Module) -> int:
    """Input features of a Linear, Conv or transposed Linear."""
    if isinstance(m, nn.Linear):
        return m.in_features
    if is_transposed_linear(m):
        return int(getattr(m, "weight").shape[0])  # noqa: B009 (typed as Tensor | Module)
    return int(getattr(m, "in_channels"))  # noqa: B009


def out_width(module: nn.Module) -> int | None:
    """Output units of a layer that can be widened (Linear, Conv, Embedding, Hugging Face's
    ``Conv1D``), else ``None``."""
    if is_transposed_linear(module):
        return int(getattr(module, "nf"))  # noqa: B009
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, _ConvNd) and not isinstance(module, _ConvTransposeNd):
        return module.out_channels
    if isinstance(module, nn.Embedding):
        return module.embedding_dim
    return None


def _is_weight(m: nn.Module) -> bool:
    return (
        isinstance(m, nn.Linear)
        or is_transposed_linear(m)
        or (isinstance(m, _ConvNd) and not isinstance(m, _ConvTransposeNd))
    )


def _columnwise(m: nn.Module) -> bool:
    """A parameter-free module whose output unit ``j`` depends only on input unit ``j`` (along
    the last dim), checked on a fixed probe: copying units commutes with it."""
    if next(m.parameters(), None) is not None or next(m.buffers(), None) is not None:
        return False
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, generator=g, dtype=torch.float64)
    idx = torch.tensor([0, 1, 2, 3, 4, 0, 3])
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            a, b = m(x[:, idx]), m(x)
    except Exception:
        return False
    return (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.shape == (3, 7)
        and bool(torch.allclose(a, b[:, idx], rtol=1e-12, atol=1e-12))
    )


def _arg(n: gb.Node, i: int, key: str, default: Any) -> Any:
    if key in n.kwargs:
        return n.kwargs[key]
    return n.args[i] if len(n.args) > i else default


class _Walk:
    def __init__(self, model: nn.Module, nodes: list[gb.Node], start: str) -> None:
        self.model = model
        self.nodes = nodes
        self.users: list[list[int]] = [[] for _ in nodes]
        for n in nodes:
            for i in n.inputs:
                self.users[i].append(n.index)
        self.calls: dict[int, list[int]] = {}
        for n in nodes:
            if n.op == "module":
                self.calls.setdefault(id(n.module), []).append(n.index)
        self.start = start
        self.axis: dict[int, str] = {}  # carrier node -> "last", "channel" or "flat"
        self.stack: list[int] = []

    def fail(self, what: str) -> GrowthError:
        return GrowthError(f"cannot widen {self.start!r}: {what}")

    def where(self, n: gb.Node) -> str:
        return (
            f"module {n.name!r} ({type(n.module).__name__})"
            if n.op == "module"
            else (f"op {n.name!r}")
        )

    def carry(self, i: int, axis: str) -> None:
        old = self.axis.get(i)
        if old is None:
            self.axis[i] = axis
            self.stack.append(i)
        elif old != axis:
            raise self.fail(f"the units reach {self.where(self.nodes[i])} along two different dims")


def trace_units(model: nn.Module, nodes: list[gb.Node], path: str) -> Units:
    """Close the set of tensors carrying the output units of the layer at ``path``.

    Raises :class:`GrowthError` naming the op when the units reach the model's input or output
    (the width is tied to the data), or an op whose effect on them is not known (attention
    heads, concatenation, reshapes other than a ``flatten`` of conv channels, a tensor the graph
    does not see such as a parameter added to them, a normalization over another width).
    """
    modules = dict(model.named_modules())
    target = modules[path]
    width = out_width(target)
    assert width is not None
    units = Units(width)
    w = _Walk(model, nodes, path)
    starts = w.calls.get(id(target), [])
    if not starts:
        raise w.fail("the module never runs in the model's forward")
    paths = {id(m): p for p, m in model.named_modules()}
    producers: set[int] = set()  # module ids
    consumers: dict[int, int] = {}
    norms: set[int] = set()

    def add_producer(m: nn.Module) -> None:
        if id(m) in producers:
            return
        if out_width(m) != width:
            raise w.fail(f"{paths[id(m)]!r} writes {out_width(m)} units into the same tensor")
        producers.add(id(m))
        ax = "channel" if isinstance(m, _ConvNd) else "last"
        for j in w.calls[id(m)]:
            w.carry(j, ax)

    def add_consumer(m: nn.Module, block: int) -> None:
        if isinstance(m, _ConvNd) and m.groups != 1:
            raise w.fail(f"{paths[id(m)]!r} is a grouped convolution (groups={m.groups})")
        fan = in_width(m)
        if fan != width * block:
            raise w.fail(f"{paths[id(m)]!r} reads {fan} inputs, not {width} units x {block}")
        if consumers.setdefault(id(m), block) != block:
            raise w.fail(f"{paths[id(m)]!r} reads the units in two layouts")
        for j in w.calls[id(m)]:
            src = w.nodes[j].inputs
            if len(src) != 1:
                raise w.fail(f"{paths[id(m)]!r} takes several tensor inputs")
            w.carry(src[0], _axis_for(m, block))

    add_producer(target)
    while w.stack:
        i = w.stack.pop()
        n = w.nodes[i]
        ax = w.axis[i]
        _backward(w, n, ax, add_producer, norms, width)
        for u in w.users[i]:
            _forward(w, w.nodes[u], i, ax, add_consumer, norms, width)

    order = [p for p, m in model.named_modules() if id(m) in producers | set(consumers) | norms]
    for p in order:
        m = modules[p]
        if id(m) in producers:
            units.producers.append(p)
        if id(m) in consumers:
            units.consumers[p] = consumers[id(m)]
        if id(m) in norms:
            (units.channel_norms if isinstance(m, _BatchNorm) else units.feature_norms).append(p)
        units.modules[p] = m
    return units


def _axis_for(m: nn.Module, block: int) -> str:
    if block > 1:
        return "flat"
    return "channel" if isinstance(m, _ConvNd) else "last"


def _norm_role(w: _Walk, n: gb.Node, ax: str, width: int) -> str | None:
    """``"channel"`` / ``"feature"`` for a normalization module over the units, ``None`` if
    ``n`` is not a normalization; raises for one the growth cannot keep."""
    m = n.module
    if isinstance(m, _BatchNorm):
        if m.num_features != width or ax == "flat":
            raise w.fail(f"{w.where(n)} normalizes {m.num_features} features, not the units")
        return "channel"
    rms = getattr(nn, "RMSNorm", None)
    if isinstance(m, nn.LayerNorm) or (rms is not None and isinstance(m, rms)):
        if tuple(m.normalized_shape) != (width,) or ax != "last":
            raise w.fail(f"{w.where(n)} normalizes over {tuple(m.normalized_shape)}, not the units")
        return "feature"
    if isinstance(m, (nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm)):
        raise w.fail(f"{w.where(n)} mixes units within groups; it is not supported")
    return None


def _passes(w: _Walk, n: gb.Node, ax: str) -> str | None:
    """The axis after ``n`` if ``n`` maps each unit to itself (elementwise, pooling over
    positions, flatten of conv channels), else ``None``."""
    if n.op == "module":
        m = n.module
        assert m is not None
        if isinstance(m, _PASS_MODULES):
            return ax
        if isinstance(m, _POOL_MODULES):
            return ax if ax == "channel" else None
        if isinstance(m, nn.Flatten):
            return "flat" if ax == "channel" and m.start_dim == 1 else None
        if isinstance(m, nn.PReLU):
            return ax if m.weight.numel() == 1 else None
        if from_module(m) is not None and next(m.parameters(), None) is None:
            return ax
        if ax == "last" and _columnwise(m):
            return ax
        return None
    if n.op != "call" or len(n.inputs) != 1:
        return None
    if n.name in _SCALAR_OK:
        # a None argument is a tensor the graph does not see (a parameter, a buffer)
        others = [a for a in n.args if not isinstance(a, gb.Ref)]
        return ax if all(isinstance(a, numbers.Number) for a in others) else None
    if n.name in _PASS_CALLS:
        return ax
    if n.name in _POOL_CALLS:
        return ax if ax == "channel" else None
    if n.name == "flatten":
        return "flat" if ax == "channel" and _arg(n, 1, "start_dim", 0) == 1 else None
    if n.name == "mean" and ax == "channel":
        dims = _arg(n, 1, "dim", None)
        dims = (dims,) if isinstance(dims, int) else dims
        # spatial dims of an (N, C, ...) map: 2, 3, ... or -1, -2
        ok = (
            isinstance(dims, (tuple, list))
            and len(dims) > 0
            and all(isinstance(d, int) and (d >= 2 or d in (-1, -2)) for d in dims)
        )
        return ax if ok else None
    if from_function(n.fn, n.args, n.kwargs) is not None:
        return ax
    return None


def _join(n: gb.Node) -> bool:
    return (
        n.op == "call"
        and n.name in _JOIN
        and len(n.inputs) == 2
        and all(isinstance(a, gb.Ref) for a in n.args[:2])
    )


def _forward(w, u: gb.Node, src: int, ax: str, add_consumer, norms: set, width: int) -> None:
    if u.op == "output":
        raise w.fail("its units reach the model's output (the output width is fixed)")
    if u.op == "module":
        m = u.module
        assert m is not None
        if _is_weight(m):
            if u.inputs and u.inputs[0] == src and len(u.inputs) == 1:
                if ax == "flat":
                    if not isinstance(m, nn.Linear) or m.in_features % width:
                        raise w.fail(f"{w.where(u)} reads the flattened units; only a Linear can")
                    add_consumer(m, m.in_features // width)
                else:
                    if (ax == "channel") != isinstance(m, _ConvNd):
                        raise w.fail(f"{w.where(u)} reads the units along another dim")
                    add_consumer(m, 1)
                return
            raise w.fail(f"{w.where(u)} takes the units with other inputs")
        role = _norm_role(w, u, ax, width)
        if role is not None:
            norms.add(id(m))
            w.carry(u.index, ax)
            return
    if _join(u):
        w.carry(u.index, ax)
        for j in u.inputs:
            w.carry(j, ax)
        return
    nxt = _passes(w, u, ax)
    if nxt is None:
        raise w.fail(
            f"its units reach {w.where(u)}, whose effect on them cannot be followed "
            "(only elementwise ops, activations, dropout, pooling, flatten of conv channels, "
            "per-unit norms, residual adds and products, Linear and Conv layers)"
        )
    w.carry(u.index, nxt)


def _backward(w, n: gb.Node, ax: str, add_producer, norms: set, width: int) -> None:
    """Where the tensor of carrier ``n`` comes from: a producer, or inputs that carry too."""
    if n.op == "input":
        raise w.fail("its units are tied to the model's input (through a residual add)")
    if n.op == "module":
        m = n.module
        assert m is not None
        if _is_weight(m) or isinstance(m, nn.Embedding):
            add_producer(m)
            return
        role = _norm_role(w, n, ax, width)
        if role is not None:
            norms.add(id(m))
            for j in n.inputs[:1]:
                w.carry(j, ax)
            return
    if _join(n):
        for j in n.inputs:
            w.carry(j, ax)
        return
    if ax == "flat" and (n.name == "flatten" or isinstance(n.module, nn.Flatten)):
        for j in n.inputs:
            if j not in w.axis:
                w.carry(j, "channel")
        return
    if _passes(w, n, ax) is None:
        raise w.fail(f"the units come out of {w.where(n)}, whose effect on them cannot be followed")
    for j in n.inputs:
        w.carry(j, ax)
