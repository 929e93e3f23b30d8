"""The initialization selection guide as data, with exact gains and predicted depth behaviour."""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any, Literal

from initscope.activations import Activation, resolve, torch_gain
from initscope.theory._meanfield import _depth_profile, critical_point
from initscope.theory._moments import gain

FanMode = Literal["fan_in", "fan_out", "fan_avg"]

_XAVIER_FAMILY = {"tanh", "sigmoid", "softsign", "hardtanh", "hardsigmoid", "sin", "linear"}
GUIDE_DEPTH = 50


@dataclass(frozen=True)
class Recommendation:
    """An initialization scheme for the weights feeding an activation.

    Attributes:
        scheme: an :data:`initscope.init.SCHEMES` name (``"kaiming_normal"``, ``"xavier_normal"``,
            ``"lecun_normal"``).
        mode: the fan the variance divides by.
        scale: ``Var(W) = scale / fan_<mode>``.
        formula: the variance as text, e.g. ``"Var = 2 / fan_in"``.
        source: where the rule comes from.
    """

    scheme: str
    mode: FanMode
    scale: float
    formula: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _recommend(a: Activation) -> Recommendation:
    if a.name == "relu":
        return Recommendation("kaiming_normal", "fan_in", 2.0, "Var = 2 / fan_in", "He et al. 2015")
    if a.name == "leaky_relu":
        slope = a.param
        assert slope is not None, "resolve() gives leaky_relu its slope"
        return Recommendation(
            "kaiming_normal",
            "fan_in",
            2.0 / (1.0 + slope * slope),
            f"Var = 2 / ((1 + a^2) fan_in), a = {slope:g}",
            "He et al. 2015",
        )
    if a.name == "selu":
        return Recommendation(
            "lecun_normal",
            "fan_in",
            1.0,
            "Var = 1 / fan_in",
            "LeCun et al. 1998; Klambauer et al. 2017",
        )
    if a.name in _XAVIER_FAMILY:
        return Recommendation(
            "xavier_normal", "fan_avg", 1.0, "Var = 2 / (fan_in + fan_out)", "Glorot & Bengio 2010"
        )
    return Recommendation(
        "kaiming_normal",
        "fan_in",
        2.0,
        "Var = 2 / fan_in",
        "He et al. 2015; He or Xavier, empirically robust to either",
    )


def recommend(act: Any, *, param: float | None = None) -> Recommendation:
    """The classic selection guide: the scheme and variance for the weights feeding ``act``.

    ReLU: He, ``Var = 2 / fan_in``; leaky ReLU(a): ``2 / ((1 + a^2) fan_in)``; sigmoid, tanh and
    other bounded symmetric-style activations (softsign, hardtanh, hardsigmoid, sin) and linear:
    Xavier, ``2 / (fan_in + fan_out)``; SELU: LeCun normal, ``1 / fan_in``; GELU, Swish, Mish,
    ELU, softplus and everything else: He (``2 / fan_in``), empirically robust to either.
    """
    return _recommend(resolve(act, param))


@dataclass(frozen=True)
class GuideEntry:
    """One row of :func:`guide`.

    Attributes:
        activation: the activation's label.
        scheme, formula, source: the recommendation (:func:`recommend`).
        forward_gain, backward_gain: exact gains at ``q = 1`` (:func:`gain`).
        torch_gain: ``torch.nn.init.calculate_gain``, ``None`` where torch has no entry.
        depth: number of layers of the depth figures (50).
        forward_log2, backward_log2: predicted log2 change of the forward and gradient std over
            ``depth`` equal-width layers under the recommendation (``sigma_w2 = scale``,
            ``sigma_b2 = 0``, ``q0 = 1``), see :func:`depth_profile`.
        critical_sigma_w2, critical_sigma_b2: :func:`critical_point` at ``q* = 1``, ``None`` where
            none exists.
        critical_slope: slope of the variance map at that fixed point (< 1: the variance returns
            to ``q*`` after a perturbation; 1 for ReLU-like activations), ``None`` likewise.
        critical_forward_log2, critical_backward_log2: the depth figures there, ``None`` likewise.
    """

    activation: str
    scheme: str
    formula: str
    source: str
    forward_gain: float
    backward_gain: float
    torch_gain: float | None
    depth: int
    forward_log2: float
    backward_log2: float
    critical_sigma_w2: float | None
    critical_sigma_b2: float | None
    critical_slope: float | None
    critical_forward_log2: float | None
    critical_backward_log2: float | None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


GUIDE_ACTIVATIONS: tuple[tuple[str, float | None], ...] = (
    ("sigmoid", None),
    ("tanh", None),
    ("relu", None),
    ("leaky_relu", 0.01),
    ("leaky_relu", 0.2),
    ("selu", None),
    ("gelu", None),
    ("silu", None),
    ("mish", None),
    ("elu", None),
    ("softplus", None),
)


def _entry(a: Activation) -> GuideEntry:
    rec = _recommend(a)
    rec_profile = _depth_profile(a, rec.scale, 0.0, GUIDE_DEPTH, 1.0)
    cp = critical_point(a, 1.0)
    crit = _depth_profile(a, cp.sigma_w2, cp.sigma_b2, GUIDE_DEPTH, 1.0) if cp.exists else None
    return GuideEntry(
        activation=a.label(),
        scheme=rec.scheme,
        formula=rec.formula,
        source=rec.source,
        forward_gain=gain(a, "forward"),
        backward_gain=gain(a, "backward"),
        torch_gain=torch_gain(a),
        depth=GUIDE_DEPTH,
        forward_log2=rec_profile.forward_log2,
        backward_log2=rec_profile.backward_log2,
        critical_sigma_w2=cp.sigma_w2 if cp.exists else None,
        critical_sigma_b2=cp.sigma_b2 if cp.exists else None,
        critical_slope=cp.slope if cp.exists else None,
        critical_forward_log2=crit.forward_log2 if crit else None,
        critical_backward_log2=crit.backward_log2 if crit else None,
    )


@functools.lru_cache(maxsize=1)
def _guide() -> tuple[GuideEntry, ...]:
    return tuple(_entry(resolve(name, param)) for name, param in GUIDE_ACTIVATIONS)


def guide() -> list[GuideEntry]:
    """The selection guide with exact numbers, one :class:`GuideEntry` per activation.

    Rows: sigmoid, tanh, ReLU, leaky ReLU (0.01 and 0.2), SELU, GELU, Swish (silu), Mish, ELU,
    softplus. Each gives the guide's recommended scheme and variance, the exact forward and
    backward gains at ``q = 1`` next to torch's ``calculate_gain``, and the predicted 50-layer
    forward and backward log2 changes under the recommendation and at the critical point
    (:func:`critical_point` with ``q* = 1``) where one exists.
    """
    return list(_guide())
