"""What a module does, read from the torch ops it runs rather than from its class name.

:func:`behaviour` traces one module alone (``torch.fx``; when that fails, one small forward on a
synthetic input under a ``TorchFunctionMode``) and reads the ops that touch its parameters:

* a parameter consumed by a matmul-like op (``F.linear``, ``addmm``, ``matmul``/``@``, ``mm``,
  ``bmm``, ``baddbmm``, ``einsum``, convolutions) is a weight; the op and the argument it fills
  give its layout and so its fans: ``F.linear(x, W)`` reads ``W`` as ``(out, in)``,
  ``addmm(b, x, W)`` and ``x @ W`` as ``(in, out)`` (Hugging Face's ``Conv1D``), a stacked
  ``(experts, in, out)`` weight under ``matmul``/``bmm`` (mixture of experts) per expert;
* a module that calls ``layer_norm``/``rms_norm``/``group_norm``/``batch_norm``/``instance_norm``
  or computes ``x * rsqrt(mean(x^2) + eps)`` (``LlamaRMSNorm``, ``T5LayerNorm``) is a norm;
* a module whose only parameter multiplies its input elementwise is a per-channel scale
  (LayerScale, Touvron et al. 2021);
* a parameter-free module that returns its input unchanged in eval mode (dropout, DropPath,
  StochasticDepth) or only rearranges it (``Permute``) is seen through; one that maps its input
  elementwise is an activation: the torch activation it calls when its output is that function
  (``GELUActivation`` is GELU, ``SiLUActivation`` SiLU), else the named activation it equals
  numerically (``NewGELUActivation`` is tanh-GELU), else the module itself as a callable
  (:func:`initscope.activations.resolve`, exact theory by quadrature).

Results are cached per module instance (weakly).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.fx as fx
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from initscope.activations import Activation, from_function, names, resolve
from initscope.init import Fans

__all__ = ["Behaviour", "ParamUse", "behaviour"]

Role = Literal["weight", "bias", "scale", "norm_weight", "norm_bias", "token", "position"]
Layout = Literal["out_in", "in_out", "conv", "conv_transpose", "einsum"]
Category = Literal["weight", "norm", "scale", "act", "shape", "other"]

_LINEAR_OPS = frozenset({"linear", "addmm", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm"})
_LINEAR_OPS |= frozenset({"baddbmm", "einsum", "addbmm", "addmv", "mv", "bilinear"})
_CONV_OPS = frozenset({"conv1d", "conv2d", "conv3d"})
_CONV_T_OPS = frozenset({"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"})
_NORM_OPS = {
    "layer_norm": "layer_norm",
    "rms_norm": "rms_norm",
    "group_norm": "group_norm",
    "batch_norm": "batch_norm",
    "instance_norm": "instance_norm",
}
_MUL = frozenset({"mul", "mul_", "__mul__", "__rmul__", "__imul__"})
_ADD = frozenset({"add", "add_", "__add__", "__radd__", "__iadd__"})


@dataclass(frozen=True)
class ParamRef:
    """A parameter of the traced module, by its attribute name, in an op's arguments."""

    name: str


@dataclass(frozen=True)
class ParamUse:
    """How a module uses one of its parameters: ``role`` in the op ``op``; ``fans`` for a
    weight (from the op's layout), ``layout`` the layout read."""

    role: Role
    op: str
    layout: Layout | None = None
    fans: Fans | None = None


@dataclass(frozen=True)
class Behaviour:
    """What a module does (see the module docstring).

    Attributes:
        category: ``"weight"`` (a matmul-like op consumes a parameter), ``"norm"``, ``"scale"``
            (per-channel scale), ``"act"``, ``"shape"`` (identity in eval mode, or a
            rearrangement) or ``"other"``.
        kind: the layer kind for modules holding parameters (``"linear"``, ``"conv"``,
            ``"norm"``, ``"scale"``, ``"other"``).
        norm: the normalization computed (``"rms_norm"`` ...), or ``None``.
        activation: the activation computed, for ``category == "act"``.
        uses: parameter name -> how the module uses it.
    """

    category: Category
    kind: str = "other"
    norm: str | None = None
    activation: Activation | None = None
    uses: dict[str, ParamUse] = field(default_factory=dict)


@dataclass
class _Op:
    name: str
    fn: Any
    args: tuple
    kwargs: dict


_CACHE: weakref.WeakKeyDictionary[nn.Module, Behaviour] = weakref.WeakKeyDictionary()


def behaviour(module: nn.Module) -> Behaviour:
    """What ``module`` does, from the ops it runs (cached per instance). Changes nothing: the
    probe runs without gradients, in eval mode, under a forked random state."""
    found = _CACHE.get(module)
    if found is None:
        found = _behaviour(module)
        _CACHE[module] = found
    return found


def _fn_name(fn: Any) -> str:
    if isinstance(fn, str):
        return fn
    return getattr(fn, "__name__", type(fn).__name__)


# ----------------------------------------------------------------------------- collecting ops


def _fx_ops(module: nn.Module) -> list[_Op] | None:
    """The ops of ``module``'s forward, traced symbolically; ``None`` when fx cannot."""
    try:
        graph = fx.Tracer().trace(module)
    except Exception:
        return None
    params = {name for name, _ in module.named_parameters()}
    value: dict[fx.Node, Any] = {}

    def conv(a: Any) -> Any:
        if isinstance(a, fx.Node):
            return value.get(a)
        if isinstance(a, (tuple, list)):
            return type(a)(conv(x) for x in a)
        if isinstance(a, dict):
            return {k: conv(v) for k, v in a.items()}
        return a

    ops: list[_Op] = []
    for n in graph.nodes:
        if n.op == "get_attr":
            value[n] = ParamRef(str(n.target)) if str(n.target) in params else None
        elif n.op in ("call_function", "call_method"):
            op = _Op(_fn_name(n.target), n.target, conv(n.args), conv(dict(n.kwargs)))
            ops.append(op)
            value[n] = _Derived(len(ops) - 1)
        elif n.op == "call_module":
            return None  # a child module: not a leaf behaviour
        elif n.op == "placeholder":
            value[n] = _INPUT
    return ops


@dataclass(frozen=True)
class _Derived:
    op: int


_INPUT = _Derived(-1)


class _Spy(TorchFunctionMode):
    def __init__(self, params: dict[int, str]) -> None:
        super().__init__()
        self.params = params
        self.ops: list[_Op] = []
        self.made: dict[int, int] = {}
        self.keep: list[Any] = []

    def __torch_function__(
        self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = _fn_name(func)
        if name in ("__get__", "size", "dim", "shape", "numel"):
            return out

        def conv(a: Any) -> Any:
            if isinstance(a, torch.Tensor):
                if id(a) in self.params:
                    return ParamRef(self.params[id(a)])
                i = self.made.get(id(a))
                return _Derived(i) if i is not None else _INPUT
            if isinstance(a, (tuple, list)):
                return type(a)(conv(x) for x in a)
            return a

        self.ops.append(_Op(name, func, conv(args), {k: conv(v) for k, v in kwargs.items()}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.keep.append(t)
                self.made[id(t)] = len(self.ops) - 1
        return out


@contextlib.contextmanager
def _quiet(module: nn.Module) -> Iterator[None]:
    """Eval mode, no gradients, forked random state; modes and buffers restored."""
    modes = [(m, m.training) for m in module.modules()]
    buffers = [(b, b.detach().clone()) for b in module.buffers()]
    try:
        devices = sorted({p.device.index or 0 for p in module.parameters() if p.is_cuda})
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            module.eval()
            yield
    finally:
        for m, mode in modes:
            m.training = mode
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def _probe_inputs(module: nn.Module) -> list[torch.Tensor]:
    """Small inputs that the forward of a parameter-holding module may accept."""
    p = next(module.parameters(), None)
    if p is None:
        return [torch.linspace(-4.0, 4.0, 2 * 4 * 6 * 6).reshape(2, 4, 6, 6)]
    dtype = p.dtype if p.dtype.is_floating_point else torch.float32
    sizes = []
    for q in module.parameters():
        for s in (q.shape[-1:] + q.shape[:1]) if q.dim() else ():
            if s not in sizes:
                sizes.append(int(s))
    g = torch.Generator().manual_seed(0)
    out = []
    for s in sizes:
        out.append(torch.randn(2, 3, s, generator=g).to(device=p.device, dtype=dtype))
        out.append(torch.randn(2, s, 3, 3, generator=g).to(device=p.device, dtype=dtype))
    return out


def _run_ops(module: nn.Module, x: torch.Tensor) -> tuple[list[_Op], Any] | None:
    if next(module.parameters(), torch.empty(0)).device.type == "meta":
        return None
    spy = _Spy({id(p): n for n, p in module.named_parameters()})
    try:
        with _quiet(module), spy:
            out = module(x)
    except Exception:
        return None
    return spy.ops, out


# ----------------------------------------------------------------------------- reading ops


def _refs(op: _Op) -> list[tuple[int | str, ParamRef]]:
    found: list[tuple[int | str, ParamRef]] = []
    for i, a in enumerate(op.args):
        if isinstance(a, ParamRef):
            found.append((i, a))
    for k, a in op.kwargs.items():
        if isinstance(a, ParamRef):
            found.append((k, a))
    return found


def _einsum_fans(op: _Op, pos: int, shape: tuple[int, ...]) -> Fans | None:
    eq = op.args[0] if op.args and isinstance(op.args[0], str) else None
    if eq is None or "->" not in eq or "." in eq:
        return None
    lhs, out = eq.replace(" ", "").split("->")
    terms = lhs.split(",")
    k = pos - 1
    if not 0 <= k < len(terms) or len(terms[k]) != len(shape):
        return None
    mine = terms[k]
    others = "".join(t for i, t in enumerate(terms) if i != k)
    # a leading index that is kept in the output of a 3+-dim weight indexes experts (stacked
    # weights, one per expert): per expert, it is neither an input nor an output unit
    batch = mine[0] if len(shape) >= 3 and mine[0] in out else ""
    pairs = list(zip(mine, shape, strict=True))
    fan_in = math.prod(s for c, s in pairs if c not in out)
    fan_out = math.prod(s for c, s in pairs if c in out and c not in others and c != batch)
    return Fans(int(fan_in), int(fan_out), 1)


_BIAS_POS = {"linear": 2, "addmm": 0, "baddbmm": 0, "addbmm": 0, "addmv": 0, "bilinear": 3}
_LEFT_RIGHT = {"addmm": (1, 2), "baddbmm": (1, 2), "addbmm": (1, 2), "addmv": (1, 2)}


def _weight_use(op: _Op, pos: int | str, shape: tuple[int, ...]) -> ParamUse | None:
    """The role of a parameter at argument ``pos`` of a matmul-like or conv op."""
    name = op.name
    if name in _CONV_OPS | _CONV_T_OPS:
        if pos in (2, "bias"):
            return ParamUse("bias", name)
        if pos not in (1, "weight") or len(shape) < 3:
            return None
        at = 7 if name in _CONV_T_OPS else 6  # conv_transpose has output_padding before groups
        groups = op.args[at] if len(op.args) > at else op.kwargs.get("groups", 1)
        groups = groups if isinstance(groups, int) and groups > 0 else 1
        rf = math.prod(shape[2:])
        if name in _CONV_T_OPS:
            t = Fans(shape[0] // groups * rf, shape[1] * rf, rf)
            return ParamUse("weight", name, "conv_transpose", t)
        return ParamUse("weight", name, "conv", Fans(shape[1] * rf, shape[0] // groups * rf, rf))
    bias_kw = "bias" if name in ("linear", "bilinear") else "input"
    if name in _BIAS_POS and pos in (_BIAS_POS[name], bias_kw):
        return ParamUse("bias", name)
    if len(shape) < 2:
        return None
    if name == "einsum":
        f = _einsum_fans(op, pos, shape) if isinstance(pos, int) else None
        return None if f is None else ParamUse("weight", name, "einsum", f)
    if name == "bilinear":
        return ParamUse("weight", name, "out_in", Fans(shape[1] * shape[2], shape[0], 1))
    if name == "linear":
        if pos not in (1, "weight"):
            return None
        return ParamUse("weight", name, "out_in", Fans(shape[-1], shape[-2], 1))
    left, right = _LEFT_RIGHT.get(name, (0, 1))
    if name == "__rmatmul__":
        left, right = 1, 0
    if pos == right:
        return ParamUse("weight", name, "in_out", Fans(shape[-2], shape[-1], 1))
    if pos == left:
        return ParamUse("weight", name, "out_in", Fans(shape[-1], shape[-2], 1))
    return None


def _read_params(module: nn.Module, ops: list[_Op]) -> Behaviour:
    shapes = {n: tuple(p.shape) for n, p in module.named_parameters()}
    uses: dict[str, ParamUse] = {}
    names_seen = {op.name for op in ops}
    norm = next((_NORM_OPS[n] for n in _NORM_OPS if n in names_seen), None)
    if norm is None and "rsqrt" in names_seen and "mean" in names_seen:
        norm = "rms_norm"
    for op in ops:
        for pos, ref in _refs(op):
            if ref.name in uses or ref.name not in shapes:
                continue
            shape = shapes[ref.name]
            if op.name in _LINEAR_OPS | _CONV_OPS | _CONV_T_OPS:
                use = _weight_use(op, pos, shape)
                if use is not None:
                    uses[ref.name] = use
            elif norm is not None and op.name in _NORM_OPS:
                uses[ref.name] = ParamUse(
                    "norm_weight" if pos in (2, "weight") else "norm_bias", op.name
                )
            elif norm is not None and op.name in _MUL:
                uses[ref.name] = ParamUse("norm_weight", op.name)
            elif norm is not None and op.name in _ADD:
                uses[ref.name] = ParamUse("norm_bias", op.name)
            elif op.name in _MUL and len(shape) <= 1:
                uses[ref.name] = ParamUse("scale", op.name)
    if any(u.role == "weight" for u in uses.values()):
        conv = any(u.layout in ("conv", "conv_transpose") for u in uses.values())
        transposed = any(u.layout == "conv_transpose" for u in uses.values())
        kind = "conv_transpose" if transposed else "conv" if conv else "linear"
        return Behaviour("weight", kind, uses=uses)
    if norm is not None:
        return Behaviour("norm", "norm", norm=norm, uses=uses)
    if uses and len(shapes) == 1 and all(u.role == "scale" for u in uses.values()):
        return Behaviour("scale", "scale", uses=uses)
    return Behaviour("weight", "other", uses=uses)


# ----------------------------------------------------------------------------- parameter-free


def _close(act: Activation, x: torch.Tensor, y: torch.Tensor) -> bool:
    xs = x.detach().double().flatten().numpy()
    ys = y.detach().double().flatten().numpy()
    return float(abs(act(xs) - ys).max()) <= 1e-5 * max(1.0, float(abs(ys).max()))


def _named_match(x: torch.Tensor, y: torch.Tensor) -> Activation | None:
    """The named activation (default parameter) equal to ``x -> y`` on the probe grid."""
    for name in names():
        act = resolve(name)
        if _close(act, x, y):
            return act
    return None


def _parameter_free(module: nn.Module) -> Behaviour:
    x = torch.linspace(-4.0, 4.0, 2 * 4 * 6 * 6, dtype=torch.float64).reshape(2, 4, 6, 6)
    ran = _run_ops(module, x)
    if ran is None:
        x = x.float()
        ran = _run_ops(module, x)
    if ran is None:
        return Behaviour("other")
    ops, y = ran
    if not isinstance(y, torch.Tensor):
        return Behaviour("other")
    if y is x or (y.shape == x.shape and torch.equal(y, x)):
        return Behaviour("shape")
    if y.numel() == x.numel() and y.dtype == x.dtype:
        if torch.equal(y.flatten().sort().values, x.flatten().sort().values):
            return Behaviour("shape")  # a rearrangement (permute, reshape)
    if y.shape != x.shape or not y.dtype.is_floating_point:
        return Behaviour("other")
    perm = torch.randperm(x.numel(), generator=torch.Generator().manual_seed(0))
    shuffled = _run_ops(module, x.flatten()[perm].reshape(x.shape))
    if shuffled is None or not isinstance(shuffled[1], torch.Tensor):
        return Behaviour("other")
    if not torch.allclose(shuffled[1].flatten(), y.flatten()[perm], rtol=1e-6, atol=1e-7):
        return Behaviour("other")  # not elementwise (softmax, pooling, ...)
    for op in ops:  # the torch activation it calls, when its output is that function
        act = from_function(op.fn, (None, *op.args[1:]), op.kwargs)
        if act is not None and _close(act, x, y):
            return Behaviour("act", activation=act)
    act = _named_match(x, y)
    if act is None:
        act = resolve(_AsCallable(module))
    return Behaviour("act", activation=act)


class _AsCallable:
    """A parameter-free elementwise module as a callable on tensors (eval mode)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.__qualname__ = type(module).__name__

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        training = self.module.training
        try:
            self.module.eval()
            return self.module(x)
        finally:
            self.module.train(training)


def _behaviour(module: nn.Module) -> Behaviour:
    if next(module.parameters(), None) is None:
        return _parameter_free(module)
    ops = _fx_ops(module)
    if ops is not None:
        found = _read_params(module, ops)
        if found.uses:
            return found
    for x in _probe_inputs(module):
        ran = _run_ops(module, x)
        if ran is not None:
            return _read_params(module, ran[0])
    return Behaviour("weight", "other")
