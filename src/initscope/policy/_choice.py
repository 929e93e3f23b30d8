"""Choices: one initialization step (scheme, kwargs, fans, rows) with its std, formula and why."""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from initscope.init._fans import Fans, fans
from initscope.graph import Layer
from initscope.init import SCHEMES, calculate_gain, get_scheme

SHORTHANDS: Mapping[str, str] = {
    "he": "kaiming_normal",
    "xavier": "xavier_normal",
    "glorot": "xavier_normal",
    "lecun": "lecun_normal",
}
_VALUE_SCHEMES = frozenset(
    {"uniform", "normal", "trunc_normal", "constant", "ones", "zeros", "truncated_normal"}
)
_MATRIX_ONLY = frozenset({"eye", "sparse"})
_KERNEL_ONLY = frozenset({"dirac", "delta_orthogonal"})
_FAN_SCHEMES = frozenset(
    {
        "xavier_uniform",
        "xavier_normal",
        "glorot_uniform",
        "glorot_normal",
        "kaiming_uniform",
        "kaiming_normal",
        "he_uniform",
        "he_normal",
        "lecun_normal",
        "lecun_uniform",
        "variance_scaling",
    }
)


_ALIAS = {
    "he_normal": "kaiming_normal",
    "he_uniform": "kaiming_uniform",
    "glorot_normal": "xavier_normal",
    "glorot_uniform": "xavier_uniform",
}


def num(x: float) -> str:
    """Short display of a number: 4 significant digits."""
    return f"{x:.4g}"


@dataclass(frozen=True)
class Choice:
    """One initialization step for a parameter (or a block of its rows).

    Attributes:
        scheme: an :data:`initscope.init.SCHEMES` name.
        params: keyword arguments for the scheme (JSON-serializable), without ``fans`` and
            ``generator``.
        std: standard deviation of the values it produces (0 for constants).
        formula: how ``std`` follows from the fans, e.g. ``"Var = 2 / fan_in = 2/256"``.
        why: the reason, e.g. ``"He normal: relu follows (fc1 -> relu)"``.
        fans: passed to fan-based schemes as ``fans=`` (layout-aware fans from
            :func:`initscope.fans.fans`); ``None``: the tensor's own (torch's rule).
        rows: apply to ``param[rows[0]:rows[1]]`` only (an LSTM gate, a q/k/v block).
    """

    scheme: str
    params: Mapping[str, Any] = field(default_factory=dict)
    std: float = 0.0
    formula: str = ""
    why: str = ""
    fans: Fans | None = None
    rows: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict; :meth:`from_dict` rebuilds the choice."""
        return {
            "scheme": self.scheme,
            "params": dict(self.params),
            "std": self.std,
            "formula": self.formula,
            "why": self.why,
            "fans": None if self.fans is None else self.fans.to_dict(),
            "rows": None if self.rows is None else list(self.rows),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Choice:
        """Inverse of :meth:`to_dict`."""
        f = d.get("fans")
        rows = d.get("rows")
        return cls(
            scheme=d["scheme"],
            params=dict(d.get("params") or {}),
            std=float(d.get("std", 0.0)),
            formula=d.get("formula", ""),
            why=d.get("why", ""),
            fans=None
            if f is None
            else Fans(**{k: f[k] for k in ("fan_in", "fan_out", "receptive_field")}),
            rows=None if rows is None else (int(rows[0]), int(rows[1])),
        )

    def apply(self, tensor: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Run the scheme in place on ``tensor`` (its ``rows`` block when set)."""
        fn = get_scheme(self.scheme)
        names = accepted(self.scheme)
        kwargs = dict(self.params)
        if self.fans is not None and "fans" in names:
            kwargs["fans"] = self.fans
        if "generator" in names:
            kwargs["generator"] = generator
        target = tensor.detach()
        if self.rows is not None:
            target = target[self.rows[0] : self.rows[1]]
        fn(target, **kwargs)


@functools.cache
def accepted(scheme: str) -> frozenset[str]:
    """The parameter names of ``scheme``'s function."""
    return frozenset(inspect.signature(get_scheme(scheme)).parameters)


def scheme_name(name: Any, what: str = "scheme") -> str:
    """The :data:`SCHEMES` name for ``name`` (also ``"he"``, ``"xavier"``, ``"glorot"``,
    ``"lecun"``); ``ValueError`` listing the valid names, close matches first."""
    if not isinstance(name, str):
        raise TypeError(f"{what}: expected a scheme name (str), got {type(name).__name__}")
    key = name[:-1] if name.endswith("_") else name
    if key in SHORTHANDS:
        return SHORTHANDS[key]
    if key in SCHEMES:
        return key
    valid = sorted(set(SCHEMES) | set(SHORTHANDS))
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    rest = [v for v in valid if v not in close]
    raise ValueError(f"{what}: unknown scheme {name!r}; valid names: {', '.join(close + rest)}")


def applicable(scheme: str, ndim: int) -> bool:
    """Whether ``scheme`` can fill a tensor with ``ndim`` dims (fan-based schemes need 2+)."""
    if scheme in _VALUE_SCHEMES:
        return True
    if scheme in _MATRIX_ONLY:
        return ndim == 2
    if scheme in _KERNEL_ONLY:
        return 3 <= ndim <= 5
    return ndim >= 2


def _std_formula(
    scheme: str, p: Mapping[str, Any], f: Fans, shape: tuple[int, ...]
) -> tuple[float, str]:
    """The standard deviation ``scheme`` produces on ``shape`` and how it follows."""
    scheme = _ALIAS.get(scheme, scheme)
    numel = math.prod(shape)
    if scheme in ("zeros", "ones", "constant"):
        value = {"zeros": 0.0, "ones": 1.0}.get(scheme, p.get("val"))
        return 0.0, f"= {value:g}"
    if scheme == "normal":
        s = float(p.get("std", 1.0))
        return s, f"N({float(p.get('mean', 0.0)):g}, {num(s)}^2)"
    if scheme == "uniform":
        a, b = float(p.get("a", 0.0)), float(p.get("b", 1.0))
        return (b - a) / math.sqrt(12), f"U({num(a)}, {num(b)})"
    if scheme == "trunc_normal":
        from initscope.init._sampling import truncated_std

        mean, s = float(p.get("mean", 0.0)), float(p.get("std", 1.0))
        a, b = float(p.get("a", -2.0)), float(p.get("b", 2.0))
        t = s * truncated_std((a - mean) / s, (b - mean) / s) if s > 0 else 0.0
        return t, f"N({mean:g}, {num(s)}^2) truncated to [{num(a)}, {num(b)}]"
    if scheme == "truncated_normal":
        s = float(p.get("std", 1.0))
        return s, f"std = {num(s)} (truncated, variance corrected)"
    if scheme in ("xavier_normal", "xavier_uniform"):
        g = float(p.get("gain", 1.0))
        var = g * g * 2.0 / (f.fan_in + f.fan_out)
        lead = "" if g == 1 else f"{num(g * g)} * "
        return math.sqrt(var), (
            f"Var = {lead}2 / (fan_in + fan_out) = {lead}2/({f.fan_in} + {f.fan_out})"
        )
    if scheme in ("kaiming_normal", "kaiming_uniform"):
        nl = p.get("nonlinearity", "leaky_relu")
        a = p.get("a", 0)
        g = calculate_gain(nl, a if nl == "leaky_relu" else None)
        mode = p.get("mode", "fan_in")
        fan = f.fan(mode)
        return g / math.sqrt(fan), f"Var = {num(g * g)} / {mode} = {num(g * g)}/{fan:g}"
    if scheme in ("lecun_normal", "lecun_uniform"):
        return 1 / math.sqrt(f.fan_in), f"Var = 1 / fan_in = 1/{f.fan_in}"
    if scheme == "variance_scaling":
        scale, mode = float(p.get("scale", 1.0)), p.get("mode", "fan_in")
        fan = f.fan(mode)
        return math.sqrt(scale / fan), f"Var = {num(scale)} / {mode} = {num(scale)}/{fan:g}"
    if scheme == "orthogonal":
        g = float(p.get("gain", 1.0))
        rows = shape[0]
        cols = numel // rows
        return g / math.sqrt(max(rows, cols)), (
            f"orthogonal {rows}x{cols}, Var = {num(g * g)} / max(rows, cols) = "
            f"{num(g * g)}/{max(rows, cols)}"
        )
    if scheme == "delta_orthogonal":
        g = float(p.get("gain", 1.0))
        rf = numel // (shape[0] * shape[1])
        return g / math.sqrt(shape[0] * rf), (
            f"orthogonal {shape[0]}x{shape[1]} at the kernel centre, gain {num(g)}"
        )
    if scheme == "sparse":
        s, sparsity = float(p.get("std", 0.01)), float(p.get("sparsity", 0.0))
        keep = 1 - math.ceil(sparsity * shape[0]) / shape[0]
        return s * math.sqrt(keep), f"N(0, {num(s)}^2) with {sparsity:g} of each column zero"
    # eye, dirac: 0/1 patterns
    ones = (
        min(shape[0], shape[1])
        if scheme == "eye"
        else min(shape[0] // int(p.get("groups", 1)), shape[1]) * int(p.get("groups", 1))
    )
    frac = ones / numel
    return math.sqrt(frac * (1 - frac)), "identity"


def choice(
    layer: Layer,
    param: str,
    scheme: str,
    *,
    why: str = "",
    rows: tuple[int, int] | None = None,
    fans: Fans | None | Literal["layout"] = "layout",
    formula: str | None = None,
    **params: Any,
) -> Choice:
    """Build a :class:`Choice` for ``layer``'s parameter ``param``, with its std and formula.

    ``fans="layout"`` (default) uses :func:`initscope.fans.fans` (``layer.module``, ``param``)
    for fan-based schemes (fused attention, transposed and grouped conv, recurrent gates);
    ``None`` keeps the tensor's own fans (torch's rule); a :class:`~initscope.fans.Fans`
    overrides. Handy in callable rules::

        def my_rule(layer, name):
            if layer.kind == "conv" and name == "weight":
                return choice(layer, name, "orthogonal", gain=2 ** 0.5, why="orthogonal convs")
            return None
    """
    scheme = scheme_name(scheme)
    tensor = getattr(layer.module, param)
    shape = tuple(tensor.shape)
    if rows is not None:
        shape = (rows[1] - rows[0], *shape[1:])
    used: Fans | None = None
    if len(shape) >= 2 and (scheme in _FAN_SCHEMES or "fans" in accepted(scheme)):
        if fans == "layout":
            used = layout_fans(layer, param)
        elif fans is not None:
            used = fans
    shown = used if used is not None else (_torch_fans(shape) if len(shape) >= 2 else Fans(1, 1))
    std, auto_formula = _std_formula(scheme, params, shown, shape)
    return Choice(
        scheme=scheme,
        params=dict(params),
        std=std,
        formula=auto_formula if formula is None else formula,
        why=why,
        fans=used,
        rows=rows,
    )


def _torch_fans(shape: tuple[int, ...]) -> Fans:
    rf = math.prod(shape[2:])
    return Fans(shape[1] * rf, shape[0] * rf, rf)


def layout_fans(layer: Layer, param: str) -> Fans:
    """The fans a policy uses: the ones the graph read from the op consuming the parameter
    (``layer.param_fans``, e.g. a ``(in, out)`` weight used as ``x @ W``), else
    :func:`initscope.fans.fans`; per block for a fused q/k/v Linear."""
    f = layer.param_fans.get(param) or fans(layer.module, param)
    if (
        layer.attention_role == "qkv"
        and not isinstance(layer.module, nn.MultiheadAttention)
        and param == "weight"
        and f.fan_out % 3 == 0
    ):
        return Fans(f.fan_in, f.fan_out // 3, f.receptive_field)  # fused q, k, v: per block
    return f
