"""The scheme registry: one record per scheme, read by drawing and by planning alike.

A :class:`SchemeRecord` holds the in-place function, the names it answers to, the tensor ranks it
accepts, the standard deviation it produces as a function of the arguments and the fans, with
the formula that shows how, and the :class:`Law` it draws from, which follows from that standard
deviation and the arguments. :data:`SCHEMES` and :func:`get_scheme` (drawing),
:mod:`initscope.policy` (planning: a Choice's ``std`` and ``formula``) and
:mod:`initscope.init.counter` (layout-invariant drawing: the law) read the same records, as
JAX's named initializers are thin cases of one ``variance_scaling``.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from initscope.init import _extended as e
from initscope.init import _schemes as s
from initscope.init._fans import Fans
from initscope.init._sampling import (
    check_choice,
    check_groups,
    check_real,
    check_sparsity,
    resolve_fans,
    truncated_std,
)

StdFormula = Callable[[Mapping[str, Any], Fans, tuple[int, ...]], tuple[float, str]]

LawFamily = Literal[
    "uniform", "normal", "truncated", "constant", "orthogonal", "delta_orthogonal", "sparse",
    "eye", "dirac",
]  # fmt: skip


@dataclass(frozen=True)
class Law:
    """The distribution a scheme draws on one tensor, resolved from its arguments and fans.

    ``family`` and its ``args``: ``"uniform"`` (``a``, ``b``), ``"normal"`` (``mean``, ``std``),
    ``"truncated"`` (``N(mean, std^2)`` conditioned on ``[mean + alpha std, mean + beta std]``:
    ``mean``, ``std``, ``alpha``, ``beta``), ``"constant"`` (``value``), ``"orthogonal"`` and
    ``"delta_orthogonal"`` (``gain``), ``"sparse"`` (``sparsity``, ``std``), ``"eye"`` (none),
    ``"dirac"`` (``groups``).
    """

    family: LawFamily
    args: Mapping[str, float]


#: ``(arguments, std) -> Law``: the law from the function's keyword arguments (defaults applied)
#: and the standard deviation the record's :data:`StdFormula` gives.
LawFormula = Callable[[Mapping[str, Any], float], Law]


def num(x: float) -> str:
    """Short display of a number: 4 significant digits."""
    return f"{x:.4g}"


@dataclass(frozen=True)
class SchemeRecord:
    """Everything known about one scheme.

    Attributes:
        name: the canonical name, the function's name without its trailing underscore.
        fn: the in-place function.
        aliases: other names :func:`get_scheme` accepts (``"he_normal"`` for Kaiming normal).
        shorthands: short names that plans and rules accept as well (``"he"``, ``"xavier"``).
        ndim: the smallest and largest tensor rank the scheme fills (``None``: no bound).
        std: ``(params, fans, shape) -> (std, formula)``: the standard deviation of the values
            the function writes on a tensor of ``shape`` with keyword arguments ``params`` and
            ``fans`` (torch's rule or the layout-aware fans the plan passes), and how it follows.
        draws: ``(arguments, std) -> Law``: the distribution the function draws, from its
            arguments and the ``std`` above (:meth:`law`); ``None`` for a scheme no law describes
            (:meth:`law` refuses it by name).
    """

    name: str
    fn: Callable[..., Tensor]
    std: StdFormula
    draws: LawFormula | None
    aliases: tuple[str, ...] = ()
    shorthands: tuple[str, ...] = ()
    ndim: tuple[int | None, int | None] = (2, None)

    @functools.cached_property
    def params(self) -> frozenset[str]:
        """The parameter names of :attr:`fn`."""
        return frozenset(inspect.signature(self.fn).parameters)

    @property
    def fan_based(self) -> bool:
        """Whether the function takes ``fans=`` (its std depends on the fans)."""
        return "fans" in self.params

    def applicable(self, ndim: int) -> bool:
        """Whether the scheme can fill a tensor with ``ndim`` dims."""
        lo, hi = self.ndim
        return (lo is None or ndim >= lo) and (hi is None or ndim <= hi)

    def law(self, params: Mapping[str, Any], fans: Fans | None, shape: tuple[int, ...]) -> Law:
        """The :class:`Law` :attr:`fn` draws on a tensor of ``shape`` with keyword arguments
        ``params`` and ``fans`` (``None``: torch's rule on ``shape``).

        Raises:
            TypeError: an argument :attr:`fn` does not take.
            ValueError: a bad argument, or a scheme whose record has no law (``draws=None``).
        """
        if self.draws is None:
            raise ValueError(f"scheme {self.name!r}: no distribution law is recorded for it")
        bound = inspect.signature(self.fn).bind_partial(None, **params)
        bound.apply_defaults()
        args = bound.arguments
        used = resolve_fans(torch.empty(shape, device="meta"), fans) if self.fan_based else None
        sd, _ = self.std(args, used if used is not None else Fans(1, 1), shape)
        return self.draws(args, sd)


# ----------------------------------------------------------------------------- std formulas


def _constant(value: float | None) -> StdFormula:
    def std(p: Mapping[str, Any], f: Fans, shape: tuple[int, ...]) -> tuple[float, str]:
        return 0.0, f"= {check_real('val', p.get('val')) if value is None else value:g}"

    return std


def _normal(p, f, shape):
    sd = check_real("std", p.get("std", 1.0), low=0)
    return sd, f"N({check_real('mean', p.get('mean', 0.0)):g}, {num(sd)}^2)"


def _uniform(p, f, shape):
    a, b = check_real("a", p.get("a", 0.0)), check_real("b", p.get("b", 1.0))
    if a > b:
        raise ValueError(f"need a <= b, got a={a}, b={b}")
    return (b - a) / math.sqrt(12), f"U({num(a)}, {num(b)})"


def _trunc_normal(p, f, shape):
    mean = check_real("mean", p.get("mean", 0.0))
    sd = check_real("std", p.get("std", 1.0), low=0, strict=True)
    a = check_real("a", p.get("a", -2.0), infinite=True)
    b = check_real("b", p.get("b", 2.0), infinite=True)
    if not a <= b:
        raise ValueError(f"need a <= b, got a={a}, b={b}")
    t = sd * truncated_std((a - mean) / sd, (b - mean) / sd) if sd > 0 else 0.0
    return t, f"N({mean:g}, {num(sd)}^2) truncated to [{num(a)}, {num(b)}]"


def _truncated_normal(p, f, shape):
    sd = check_real("std", p.get("std", 1.0), low=0, strict=True)
    return sd, f"std = {num(sd)} (truncated, variance corrected)"


def _xavier(p, f, shape):
    g = check_real("gain", p.get("gain", 1.0), low=0)
    var = g * g * 2.0 / (f.fan_in + f.fan_out)
    lead = "" if g == 1 else f"{num(g * g)} * "
    text = f"Var = {lead}2 / (fan_in + fan_out) = {lead}2/({f.fan_in} + {f.fan_out})"
    return math.sqrt(var), text


def _kaiming(p, f, shape):
    g = s.kaiming_gain(p.get("a", 0), p.get("nonlinearity", "leaky_relu"))
    mode = p.get("mode", "fan_in")
    mode = mode.lower() if isinstance(mode, str) else mode
    fan = f.fan(mode)
    return g / math.sqrt(fan), f"Var = {num(g * g)} / {mode} = {num(g * g)}/{fan:g}"


def _lecun(p, f, shape):
    return 1 / math.sqrt(f.fan_in), f"Var = 1 / fan_in = 1/{f.fan_in}"


def _variance_scaling(p, f, shape):
    scale = check_real("scale", p.get("scale", 1.0), low=0, strict=True)
    mode = p.get("mode", "fan_in")
    fan = f.fan(mode)
    return math.sqrt(scale / fan), f"Var = {num(scale)} / {mode} = {num(scale)}/{fan:g}"


def _orthogonal(p, f, shape):
    g = check_real("gain", p.get("gain", 1.0))
    rows = shape[0]
    cols = math.prod(shape) // rows
    return g / math.sqrt(max(rows, cols)), (
        f"orthogonal {rows}x{cols}, Var = {num(g * g)} / max(rows, cols) = "
        f"{num(g * g)}/{max(rows, cols)}"
    )


def _delta_orthogonal(p, f, shape):
    g = check_real("gain", p.get("gain", 1.0))
    rf = math.prod(shape) // (shape[0] * shape[1])
    return g / math.sqrt(shape[0] * rf), (
        f"orthogonal {shape[0]}x{shape[1]} at the kernel centre, gain {num(g)}"
    )


def _sparse(p, f, shape):
    sd = check_real("std", p.get("std", 0.01), low=0)
    sparsity = check_sparsity(p.get("sparsity", 0.0))
    keep = 1 - math.ceil(sparsity * shape[0]) / shape[0]
    return sd * math.sqrt(keep), f"N(0, {num(sd)}^2) with {sparsity:g} of each column zero"


def _fixed_scale(scale: float, mode: str) -> StdFormula:
    def std(p: Mapping[str, Any], f: Fans, shape: tuple[int, ...]) -> tuple[float, str]:
        return _variance_scaling({"scale": scale, "mode": mode}, f, shape)

    return std


def _identity_pattern(ones: int, shape: tuple[int, ...]) -> tuple[float, str]:
    frac = ones / math.prod(shape)
    return math.sqrt(frac * (1 - frac)), "identity"


def _eye(p, f, shape):
    return _identity_pattern(min(shape[0], shape[1]), shape)


def _dirac(p, f, shape):
    groups = check_groups(p.get("groups", 1))
    return _identity_pattern(min(shape[0] // groups, shape[1]) * groups, shape)


# ----------------------------------------------------------------------------- laws


def _centred_uniform(p: Mapping[str, Any], sd: float) -> Law:
    """``U(-sqrt(3) sd, sqrt(3) sd)``, whose std is ``sd``."""
    limit = math.sqrt(3.0) * sd
    return Law("uniform", {"a": -limit, "b": limit})


def _centred_normal(p: Mapping[str, Any], sd: float) -> Law:
    return Law("normal", {"mean": 0.0, "std": sd})


def _corrected_truncated(lower: float, upper: float, sd: float) -> Law:
    """Zero-mean normal conditioned on ``[lower, upper]`` (in its own std units), scaled so
    that its std after truncation is ``sd``."""
    return Law(
        "truncated",
        {"mean": 0.0, "std": sd / truncated_std(lower, upper), "alpha": lower, "beta": upper},
    )


def _keras_truncated(p: Mapping[str, Any], sd: float) -> Law:
    """Keras/JAX ``truncated_normal``: truncated at 2 of its std, variance corrected."""
    return _corrected_truncated(-2.0, 2.0, sd)


def _uniform_law(p: Mapping[str, Any], sd: float) -> Law:
    return Law("uniform", {"a": float(p["a"]), "b": float(p["b"])})


def _normal_law(p: Mapping[str, Any], sd: float) -> Law:
    return Law("normal", {"mean": float(p["mean"]), "std": sd})


def _trunc_normal_law(p: Mapping[str, Any], sd: float) -> Law:
    mean, scale, a, b = (float(p[k]) for k in ("mean", "std", "a", "b"))
    if a == b:
        return Law("constant", {"value": a})
    return Law(
        "truncated",
        {"mean": mean, "std": scale, "alpha": (a - mean) / scale, "beta": (b - mean) / scale},
    )


def _truncated_normal_law(p: Mapping[str, Any], sd: float) -> Law:
    return _corrected_truncated(float(p["lower"]), float(p["upper"]), sd)


def _variance_scaling_law(p: Mapping[str, Any], sd: float) -> Law:
    dist = p["distribution"]
    check_choice("distribution", dist, get_args(s.Distribution))
    if dist == "uniform":
        return _centred_uniform(p, sd)
    if dist in ("normal", "untruncated_normal"):
        return _centred_normal(p, sd)
    return _keras_truncated(p, sd)


def _constant_law(value: float | None) -> LawFormula:
    def law(p: Mapping[str, Any], sd: float) -> Law:
        return Law("constant", {"value": float(p["val"]) if value is None else value})

    return law


def _arguments(family: LawFamily, *names: str) -> LawFormula:
    """The law of ``family`` with the function's arguments ``names`` as its parameters."""

    def law(p: Mapping[str, Any], sd: float) -> Law:
        return Law(family, {k: float(p[k]) for k in names})

    return law


# ----------------------------------------------------------------------------- the records

_ANY = (None, None)
_KERNEL = (3, 5)
_RECORDS = (
    SchemeRecord("uniform", s.uniform_, _uniform, _uniform_law, ndim=_ANY),
    SchemeRecord("normal", s.normal_, _normal, _normal_law, ndim=_ANY),
    SchemeRecord("trunc_normal", s.trunc_normal_, _trunc_normal, _trunc_normal_law, ndim=_ANY),
    SchemeRecord("constant", s.constant_, _constant(None), _constant_law(None), ndim=_ANY),
    SchemeRecord("ones", s.ones_, _constant(1.0), _constant_law(1.0), ndim=_ANY),
    SchemeRecord("zeros", s.zeros_, _constant(0.0), _constant_law(0.0), ndim=_ANY),
    SchemeRecord("eye", s.eye_, _eye, _arguments("eye"), ndim=(2, 2)),
    SchemeRecord("dirac", s.dirac_, _dirac, _arguments("dirac", "groups"), ndim=_KERNEL),
    SchemeRecord(
        "xavier_uniform", s.xavier_uniform_, _xavier, _centred_uniform,
        aliases=("glorot_uniform",),
    ),
    SchemeRecord(
        "xavier_normal", s.xavier_normal_, _xavier, _centred_normal, aliases=("glorot_normal",),
        shorthands=("xavier", "glorot"),
    ),
    SchemeRecord(
        "kaiming_uniform", s.kaiming_uniform_, _kaiming, _centred_uniform,
        aliases=("he_uniform",),
    ),
    SchemeRecord(
        "kaiming_normal", s.kaiming_normal_, _kaiming, _centred_normal, aliases=("he_normal",),
        shorthands=("he",),
    ),
    SchemeRecord("orthogonal", s.orthogonal_, _orthogonal, _arguments("orthogonal", "gain")),
    SchemeRecord(
        "sparse", s.sparse_, _sparse, _arguments("sparse", "sparsity", "std"), ndim=(2, 2)
    ),
    SchemeRecord(
        "lecun_normal", e.lecun_normal_, _lecun, _keras_truncated, shorthands=("lecun",)
    ),
    SchemeRecord("lecun_uniform", e.lecun_uniform_, _lecun, _centred_uniform),
    SchemeRecord(
        "variance_scaling", e.variance_scaling_, _variance_scaling, _variance_scaling_law
    ),
    SchemeRecord(
        "truncated_normal", e.truncated_normal_, _truncated_normal, _truncated_normal_law,
        ndim=_ANY,
    ),
    SchemeRecord(
        "delta_orthogonal", e.delta_orthogonal_, _delta_orthogonal,
        _arguments("delta_orthogonal", "gain"), ndim=_KERNEL,
    ),
    SchemeRecord(
        "he_truncated_normal", e.he_truncated_normal_, _fixed_scale(2.0, "fan_in"),
        _keras_truncated,
    ),
    SchemeRecord(
        "glorot_truncated_normal", e.glorot_truncated_normal_, _fixed_scale(1.0, "fan_avg"),
        _keras_truncated,
    ),
)  # fmt: skip

#: Every name :func:`get_scheme` accepts (canonical names and aliases) to its record.
RECORDS: Mapping[str, SchemeRecord] = MappingProxyType(
    {**{r.name: r for r in _RECORDS}, **{a: r for r in _RECORDS for a in r.aliases}}
)
#: Short names plans and rules accept as well, to the canonical name.
SHORTHANDS: Mapping[str, str] = MappingProxyType(
    {short: r.name for r in _RECORDS for short in r.shorthands}
)

SCHEMES: Mapping[str, Callable[..., Tensor]] = MappingProxyType(
    {name: r.fn for name, r in RECORDS.items()}
)
"""Scheme name (the function name without its trailing underscore, plus the aliases ``he_*`` and
``glorot_*``) to the in-place function. The aliases are torch's untruncated Kaiming/Xavier."""


def _unknown(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    rest = sorted(v for v in valid if v not in close)
    return ", ".join(close + rest)


def get_scheme(name: str) -> Callable[..., Tensor]:
    """The in-place function of a scheme name (a trailing underscore is accepted).

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: an unknown name; the message lists the valid names, close matches first.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name[:-1] if name.endswith("_") else name
    if key in RECORDS:
        return RECORDS[key].fn
    raise ValueError(f"unknown scheme name {name!r}; valid names: {_unknown(key, list(RECORDS))}")


def scheme_name(name: Any, what: str = "scheme") -> str:
    """The :data:`SCHEMES` name for ``name``, a shorthand (``"he"``, ``"xavier"``, ``"glorot"``,
    ``"lecun"``) resolved; ``ValueError`` listing the valid names, close matches first."""
    if not isinstance(name, str):
        raise TypeError(f"{what}: expected a scheme name (str), got {type(name).__name__}")
    key = name[:-1] if name.endswith("_") else name
    if key in SHORTHANDS:
        return SHORTHANDS[key]
    if key in RECORDS:
        return key
    valid = sorted(set(RECORDS) | set(SHORTHANDS))
    raise ValueError(f"{what}: unknown scheme {name!r}; valid names: {_unknown(key, valid)}")


def record(name: str) -> SchemeRecord:
    """The record of a :data:`SCHEMES` name or shorthand."""
    return RECORDS[scheme_name(name)]
