"""The scheme registry: one record per scheme, read by drawing and by planning alike.

A :class:`SchemeRecord` holds the in-place function, the names it answers to, the tensor ranks it
accepts and the standard deviation it produces as a function of the arguments and the fans, with
the formula that shows how. :data:`SCHEMES` and :func:`get_scheme` (drawing) and
:mod:`initscope.policy` (planning: a Choice's ``std`` and ``formula``) read the same records, as
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
from typing import Any

from torch import Tensor

from initscope.init import _extended as e
from initscope.init import _schemes as s
from initscope.init._fans import Fans
from initscope.init._sampling import check_groups, check_real, check_sparsity, truncated_std

StdFormula = Callable[[Mapping[str, Any], Fans, tuple[int, ...]], tuple[float, str]]


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
    """

    name: str
    fn: Callable[..., Tensor]
    std: StdFormula
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


# ----------------------------------------------------------------------------- the records

_ANY = (None, None)
_KERNEL = (3, 5)
_RECORDS = (
    SchemeRecord("uniform", s.uniform_, _uniform, ndim=_ANY),
    SchemeRecord("normal", s.normal_, _normal, ndim=_ANY),
    SchemeRecord("trunc_normal", s.trunc_normal_, _trunc_normal, ndim=_ANY),
    SchemeRecord("constant", s.constant_, _constant(None), ndim=_ANY),
    SchemeRecord("ones", s.ones_, _constant(1.0), ndim=_ANY),
    SchemeRecord("zeros", s.zeros_, _constant(0.0), ndim=_ANY),
    SchemeRecord("eye", s.eye_, _eye, ndim=(2, 2)),
    SchemeRecord("dirac", s.dirac_, _dirac, ndim=_KERNEL),
    SchemeRecord("xavier_uniform", s.xavier_uniform_, _xavier, aliases=("glorot_uniform",)),
    SchemeRecord(
        "xavier_normal", s.xavier_normal_, _xavier, aliases=("glorot_normal",),
        shorthands=("xavier", "glorot"),
    ),
    SchemeRecord("kaiming_uniform", s.kaiming_uniform_, _kaiming, aliases=("he_uniform",)),
    SchemeRecord(
        "kaiming_normal", s.kaiming_normal_, _kaiming, aliases=("he_normal",), shorthands=("he",)
    ),
    SchemeRecord("orthogonal", s.orthogonal_, _orthogonal),
    SchemeRecord("sparse", s.sparse_, _sparse, ndim=(2, 2)),
    SchemeRecord("lecun_normal", e.lecun_normal_, _lecun, shorthands=("lecun",)),
    SchemeRecord("lecun_uniform", e.lecun_uniform_, _lecun),
    SchemeRecord("variance_scaling", e.variance_scaling_, _variance_scaling),
    SchemeRecord("truncated_normal", e.truncated_normal_, _truncated_normal, ndim=_ANY),
    SchemeRecord("delta_orthogonal", e.delta_orthogonal_, _delta_orthogonal, ndim=_KERNEL),
    SchemeRecord("he_truncated_normal", e.he_truncated_normal_, _fixed_scale(2.0, "fan_in")),
    SchemeRecord(
        "glorot_truncated_normal", e.glorot_truncated_normal_, _fixed_scale(1.0, "fan_avg")
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
