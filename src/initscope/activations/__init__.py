"""Activations as scalar functions: the bridge between PyTorch and the Gaussian-moment theory.

:func:`resolve` turns a name (``"gelu"``, ``"leaky_relu"`` with ``param=0.2``), an ``nn.Module``
activation instance (reading its parameters) or any elementwise callable on tensors into one
:class:`Activation`: a vectorized float64 NumPy function ``f``, its derivative ``df`` and the points
where ``f`` or ``f'`` is not smooth (``kinks``), which is what :mod:`initscope.theory` integrates.
Named activations are closed-form NumPy code; callables are evaluated through torch in float64 and
differentiated by autograd. :func:`from_module` and :func:`from_function` recognise activations
met while walking a model (modules, ``torch.nn.functional`` calls, ``Tensor`` methods).
"""

from __future__ import annotations

import difflib
import functools
import logging
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from initscope._torch import check_real
from initscope.activations._table import ALIASES, POSITIVE_PARAMS, REGISTRY, clip_parts

__all__ = [
    "Activation", "NotDifferentiableError", "resolve", "from_module", "from_function", "names",
    "torch_gain",
]  # fmt: skip

logger = logging.getLogger(__name__)

ArrayFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Activation:
    """An elementwise activation ``f`` as the theory sees it.

    Attributes:
        name: canonical name (``"relu"``, ``"leaky_relu"``, ``"gelu_tanh"``, ...) or
            ``"custom:<name>"`` for a callable.
        param: the slope (leaky ReLU), alpha (ELU, CELU), beta (softplus) or symmetric bound
            (hardtanh) where the activation has one; ``None`` otherwise.
        f: vectorized float64 NumPy function.
        df: its derivative (almost everywhere).
        kinks: points where ``f`` or ``f'`` (for softsign ``f''``) jumps; quadrature splits there.
        bounds: output range of saturating activations (tanh ``(-1, 1)``, relu6 ``(0, 6)``, ...),
            ``(None, None)`` where unbounded.
        scale: length scale of the features of ``f`` around 0 (softplus(beta): ``1/beta``); it sets
            the quadrature panel width.
    """

    name: str
    param: float | None
    f: ArrayFn
    df: ArrayFn
    kinks: tuple[float, ...] = ()
    bounds: tuple[float | None, float | None] = (None, None)
    scale: float = 1.0

    def label(self) -> str:
        """Short display name: ``"relu"``, ``"leaky_relu(0.2)"``, ``"hardtanh(-1, 3)"``."""
        if self.name == "hardtanh" and self.param is None:
            return f"hardtanh({self.bounds[0]:g}, {self.bounds[1]:g})"
        if self.param is None:
            return self.name
        return f"{self.name}({self.param:g})"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Evaluate ``f`` on a float64 array."""
        return self.f(np.asarray(x, dtype=np.float64))


def names() -> tuple[str, ...]:
    """The canonical activation names :func:`resolve` accepts (aliases not included)."""
    return tuple(REGISTRY)


@functools.cache
def _named(name: str, param: float | None) -> Activation:
    builder, _, _ = REGISTRY[name]
    f, df, kinks, bounds, scale = builder(param)
    return Activation(name, param, f, df, kinks, bounds, scale)


@functools.cache
def _hardtanh_range(lo: float, hi: float) -> Activation:
    if not lo < hi:
        raise ValueError(f"hardtanh: min_val must be < max_val, got ({lo}, {hi})")
    if lo == -hi:
        return _named("hardtanh", hi)
    f, df, kinks, bounds, scale = clip_parts(lo, hi)
    return Activation("hardtanh", None, f, df, kinks, bounds, scale)


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in REGISTRY:
        close = difflib.get_close_matches(
            key, sorted(set(REGISTRY) | set(ALIASES)), n=4, cutoff=0.5
        )
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise ValueError(
            f"unknown activation {name!r}; {hint}valid names: "
            f"{', '.join(sorted(REGISTRY))} (aliases: {', '.join(sorted(ALIASES))})"
        )
    return key


def _from_name(name: str, param: Any) -> Activation:
    key = _canonical(name)
    _, default, what = REGISTRY[key]
    if default is None:
        if param is not None:
            raise ValueError(f"activation {key!r} takes no parameter, got param={param!r}")
        return _named(key, None)
    value = default if param is None else check_real(f"param ({what} of {key})", param)
    if key in POSITIVE_PARAMS and value <= 0:
        raise ValueError(f"param ({what} of {key}) must be > 0, got {value}")
    return _named(key, value)


# --------------------------------------------------------------------------- nn.Module bridge

_SIMPLE_MODULES: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.ReLU, "relu"),
    (nn.ReLU6, "relu6"),
    (nn.SELU, "selu"),
    (nn.SiLU, "silu"),
    (nn.Mish, "mish"),
    (nn.Sigmoid, "sigmoid"),
    (nn.Tanh, "tanh"),
    (nn.Hardsigmoid, "hardsigmoid"),
    (nn.Hardswish, "hardswish"),
    (nn.Softsign, "softsign"),
    (nn.LogSigmoid, "logsigmoid"),
    (nn.Identity, "linear"),
)


def from_module(module: nn.Module) -> Activation | None:
    """The :class:`Activation` an ``nn.Module`` computes, ``None`` if it is not one (``nn.Linear``).

    Parameters are read from the instance: ``nn.LeakyReLU(0.2)`` -> ``leaky_relu(0.2)``,
    ``nn.ELU(alpha=0.5)``, ``nn.CELU``, ``nn.Softplus(beta=2)`` (its ``threshold`` linearization
    is ignored: it changes ``f`` only where ``beta * x > threshold``, by less than
    ``exp(-threshold) / beta``), ``nn.GELU(approximate="tanh")`` -> ``gelu_tanh``,
    ``nn.Hardtanh(-2, 2)``. ``nn.PReLU`` uses its slope (the root mean square over channels when
    they differ, which keeps ``E[f^2]`` and ``E[f'^2]`` exact averaged over channels);
    ``nn.RReLU`` in training mode uses the root mean square of its uniform slope,
    ``sqrt((l^2 + l u + u^2) / 3)``, in eval mode ``(l + u) / 2``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected an nn.Module, got {type(module).__name__}")
    for cls, name in _SIMPLE_MODULES:  # nn.ReLU6 before its base class nn.Hardtanh
        if isinstance(module, cls):
            return _named(name, None)
    if isinstance(module, nn.Hardtanh):
        return _hardtanh_range(float(module.min_val), float(module.max_val))
    if isinstance(module, nn.LeakyReLU):
        return _from_name("leaky_relu", module.negative_slope)
    if isinstance(module, nn.ELU):
        return _from_name("elu", module.alpha)
    if isinstance(module, nn.CELU):
        return _from_name("celu", module.alpha)
    if isinstance(module, nn.Softplus):
        return _from_name("softplus", module.beta)
    if isinstance(module, nn.GELU):
        return _named("gelu_tanh" if module.approximate == "tanh" else "gelu", None)
    if isinstance(module, nn.PReLU):
        slopes = module.weight.detach().double().flatten()
        if bool((slopes == slopes[0]).all()):
            return _from_name("leaky_relu", float(slopes[0]))
        rms = float(slopes.square().mean().sqrt())
        logger.debug("PReLU with per-channel slopes: using their RMS %.6g", rms)
        return _from_name("leaky_relu", rms)
    if isinstance(module, nn.RReLU):
        lo, hi = float(module.lower), float(module.upper)
        slope = math.sqrt((lo * lo + lo * hi + hi * hi) / 3.0) if module.training else (lo + hi) / 2
        return _from_name("leaky_relu", slope)
    return None


# --------------------------------------------------------------------------- functional bridge

# parameters of a functional: (keyword, position in args where the input is 0, default)
_P_SLOPE = [("negative_slope", 1, 0.01)]
_P_ALPHA = [("alpha", 1, 1.0)]
_P_BETA = [("beta", 1, 1.0)]
_P_HARDTANH = [("min_val", 1, -1.0), ("max_val", 2, 1.0)]
_P_GELU = [("approximate", 1, "none")]


def _functional_table() -> dict[Any, tuple[str, list]]:
    table: dict[Any, tuple[str, list]] = {}
    groups: list[tuple[str, list, tuple[str, ...]]] = [
        ("relu", [], ("F.relu", "F.relu_", "torch.relu", "torch.relu_")),
        ("leaky_relu", _P_SLOPE, ("F.leaky_relu", "F.leaky_relu_")),
        ("elu", _P_ALPHA, ("F.elu", "F.elu_")),
        ("celu", _P_ALPHA, ("F.celu", "F.celu_", "torch.celu", "torch.celu_")),
        ("selu", [], ("F.selu", "F.selu_", "torch.selu", "torch.selu_")),
        ("gelu", _P_GELU, ("F.gelu",)),
        ("silu", [], ("F.silu",)),
        ("mish", [], ("F.mish",)),
        ("softplus", _P_BETA, ("F.softplus",)),
        ("sigmoid", [], ("F.sigmoid", "torch.sigmoid", "torch.sigmoid_", "torch.special.expit")),
        ("tanh", [], ("F.tanh", "torch.tanh", "torch.tanh_")),
        ("hardtanh", _P_HARDTANH, ("F.hardtanh", "F.hardtanh_")),
        ("relu6", [], ("F.relu6",)),
        ("hardsigmoid", [], ("F.hardsigmoid",)),
        ("hardswish", [], ("F.hardswish",)),
        ("softsign", [], ("F.softsign",)),
        ("logsigmoid", [], ("F.logsigmoid",)),
        ("sin", [], ("torch.sin", "torch.sin_")),
    ]
    roots = {"F": F, "torch": torch}
    for name, params, paths in groups:
        for path in paths:
            obj: Any = roots[path.split(".")[0]]
            for part in path.split(".")[1:]:
                obj = getattr(obj, part, None)
            if obj is not None:
                table[obj] = (name, params)
    return table


_FUNCTIONALS = _functional_table()
_TENSOR_METHODS = {
    "relu": "relu",
    "relu_": "relu",
    "tanh": "tanh",
    "tanh_": "tanh",
    "sigmoid": "sigmoid",
    "sigmoid_": "sigmoid",
    "sin": "sin",
    "sin_": "sin",
}


def from_function(
    fn: Callable | str, args: tuple = (), kwargs: dict | None = None
) -> Activation | None:
    """The :class:`Activation` a functional call computes, ``None`` if ``fn`` is not an activation.

    ``fn`` is a function met in a graph (``F.relu``, ``torch.tanh``, ``F.gelu``, ``F.leaky_relu``,
    ``torch.sigmoid``, ``F.silu``, ``F.elu``, ``F.selu``, ``F.softplus``, ``F.mish``,
    ``F.hardtanh``, in-place variants ...) or a ``Tensor`` method name (``"relu"``, ``"tanh"``,
    ``"sigmoid"``, ``"sin"``). ``args`` and ``kwargs`` are the call's arguments, input first:
    ``from_function(F.leaky_relu, (x, 0.2))`` -> ``leaky_relu(0.2)``. Returns ``None`` too when a
    parameter is not a constant number (e.g. a graph node).
    """
    kwargs = kwargs or {}
    if isinstance(fn, str):
        name = _TENSOR_METHODS.get(fn)
        return None if name is None else _named(name, None)
    try:
        entry = _FUNCTIONALS.get(fn)
    except TypeError:  # unhashable callable
        return None
    if entry is None:
        return None
    name, params = entry
    values = []
    for key, position, default in params:
        if key in kwargs:
            values.append(kwargs[key])
        else:
            values.append(args[position] if len(args) > position else default)
    if name == "gelu":
        return _named("gelu_tanh" if values[0] == "tanh" else "gelu", None)
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        return None
    if name == "hardtanh":
        return _hardtanh_range(float(values[0]), float(values[1]))
    return _from_name(name, values[0] if values else None)


# --------------------------------------------------------------------------- callables on tensors


class NotDifferentiableError(ValueError):
    """Autograd cannot differentiate a callable activation, so ``f'`` is unknown."""


_NO_GRAD = (
    "autograd cannot differentiate it (its output does not depend on the input through torch "
    "operations: detached, or computed with NumPy), so f'(z) and E[f'(z)^2] are unknown; write "
    "it with differentiable torch operations"
)


def _custom(fn: Callable[[torch.Tensor], torch.Tensor]) -> Activation:
    label = getattr(fn, "__qualname__", None) or repr(fn)
    name = f"custom:{label}"

    def call(x: np.ndarray, grad: bool) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
        with torch.set_grad_enabled(grad):
            t.requires_grad_(grad)
            y = fn(t.clone())
            if not isinstance(y, torch.Tensor):
                raise ValueError(f"returned {type(y).__name__}, expected a torch.Tensor")
            if y.shape != t.shape:
                raise ValueError(
                    f"not elementwise: input shape {tuple(t.shape)}, output shape {tuple(y.shape)}"
                )
            if not grad:
                return y.detach().double().numpy()
            if not y.requires_grad:
                if bool((y == y.flatten()[0]).all()):  # a constant: f' = 0 indeed
                    return np.zeros_like(x, dtype=np.float64)
                raise NotDifferentiableError(f"{name}: {_NO_GRAD}")
            (g,) = torch.autograd.grad(y.sum(), t, allow_unused=True)
        if g is None:
            raise NotDifferentiableError(f"{name}: {_NO_GRAD}")
        return g.double().numpy()

    return Activation(name, None, lambda x: call(x, False), lambda x: call(x, True))


# --------------------------------------------------------------------------- resolver


def resolve(act: str | nn.Module | Callable | Activation, param: float | None = None) -> Activation:
    """Turn ``act`` into an :class:`Activation`.

    Accepts a name (see :func:`names`; aliases ``"swish"`` = silu, ``"identity"`` = linear;
    ``param`` sets the leaky slope, ELU/CELU alpha, softplus beta or hardtanh bound), an
    ``nn.Module``
    activation instance (its parameters are read, see :func:`from_module`), a torch function or
    any elementwise callable on tensors (float64, derivative by autograd: a callable autograd
    cannot differentiate, such as ``lambda x: x.detach() * 2`` or one computed with NumPy, has an
    ``Activation.df`` that raises :class:`NotDifferentiableError`), or an
    :class:`Activation` (returned as is).

    Raises:
        ValueError: unknown name (close matches listed), a bad parameter, or ``param`` given with
            something that carries its own parameters.
        TypeError: an ``nn.Module`` that is not an activation, or an object that is not callable.
    """
    if isinstance(act, Activation):
        if param is not None:
            raise ValueError(f"param: {act.label()} is already an Activation; pass param=None")
        return act
    if isinstance(act, str):
        return _from_name(act, param)
    if isinstance(act, nn.Module):
        if param is not None:
            raise ValueError(
                f"param: {type(act).__name__} carries its own parameters; pass param=None"
            )
        found = from_module(act)
        if found is None:
            raise TypeError(
                f"act: {type(act).__name__} is not a known activation module; pass a name, or "
                "`lambda x: module(x)` to treat it as an elementwise function"
            )
        return found
    if callable(act):
        found = from_function(act)
        if found is not None:
            return found if param is None else _from_name(found.name, param)
        if param is not None:
            raise ValueError("param: only names and torch activation functions take param=")
        return _custom(act)
    raise TypeError(
        f"act: expected a name, an nn.Module, a callable or an Activation, got {type(act).__name__}"
    )


# The activations in torch's gain table that take no parameter, as torch spells them.
_TorchTableName = Literal["linear", "sigmoid", "tanh", "relu", "selu"]
_TORCH_TABLE: dict[str, _TorchTableName] = {
    "linear": "linear",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
    "selu": "selu",
}


def torch_gain(
    act: str | nn.Module | Callable | Activation, param: float | None = None
) -> float | None:
    """``torch.nn.init.calculate_gain`` for this activation, ``None`` where torch's table lacks it.

    torch's table: linear (and convolutions) and sigmoid 1, tanh 5/3, relu sqrt(2),
    leaky_relu sqrt(2 / (1 + slope^2)), selu 3/4.
    """
    a = resolve(act, param)
    if a.name in _TORCH_TABLE:
        return float(torch.nn.init.calculate_gain(_TORCH_TABLE[a.name]))
    if a.name == "leaky_relu":
        return float(torch.nn.init.calculate_gain("leaky_relu", a.param))
    return None
