"""Mean-field signal propagation: the variance map, its fixed point, chi_1, the edge of chaos.

A plain equal-width stack ``z_{l+1} = W f(z_l) + b`` with ``Var(W_ij) = sigma_w2 / width`` and
``Var(b) = sigma_b2`` carries pre-activations of variance ``q_l`` with
``q_{l+1} = sigma_w2 E[f(sqrt(q_l) z)^2] + sigma_b2`` (Poole et al. 2016) and gradients whose
variance changes per layer by ``sigma_w2 E[f'(sqrt(q_l) z)^2]`` (Schoenholz et al. 2017).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

from initscope._torch import check_int
from initscope.activations import Activation, resolve
from initscope.theory._moments import _nonnegative, _positive, raw_moments

# Fixed points below _Q_ZERO are reported as the degenerate q* = 0 (the map is then q -> ~q and
# cannot resolve them); beyond _Q_MAX as q* = inf. Limits at 0 and inf are taken at these q.
_Q_ZERO = 1e-12
_Q_TINY = 1e-30
_Q_MAX = 1e100
_STEP = math.log(4.0)
_Q_EDGE_MAX = 1e12


def _second(a: Activation, q: float) -> float:
    return raw_moments(a, q, derivative=False)[1]


def _deriv_second(a: Activation, q: float) -> float:
    q = _Q_TINY if q == 0 else _Q_MAX if math.isinf(q) else q
    return raw_moments(a, q)[3]


def variance_map(
    act: Any, q: float, sigma_w2: float, sigma_b2: float, *, param: float | None = None
) -> float:
    """The length map ``q -> sigma_w2 E[f(sqrt(q) z)^2] + sigma_b2`` (Poole et al. 2016).

    It uses the second moment ``E[f^2]``, not the variance of ``f``, since the next layer sums
    ``f(z)`` with zero-mean weights.
    """
    q = _positive(q, "q")
    sigma_w2 = _positive(sigma_w2, "sigma_w2")
    sigma_b2 = _nonnegative(sigma_b2, "sigma_b2")
    return sigma_w2 * _second(resolve(act, param), q) + sigma_b2


def _fixed_point(a: Activation, w: float, b: float, q0: float) -> float:
    def gap(u: float) -> float:  # V(q) / q - 1 at q = e^u: scale-free, so tiny and huge q work
        q = math.exp(u)
        return (w * _second(a, q) + b) / q - 1.0

    u0 = math.log(q0)
    g0 = gap(u0)
    if abs(g0) <= 1e-13:
        return q0
    # The map is increasing, so iterating from q0 moves monotonically to the nearest fixed point
    # in the direction of V(q0) - q0: bracket it by steps of 4 in q.
    lo = hi = u0
    if g0 > 0:
        while gap(hi) > 0:
            lo, hi = hi, hi + _STEP
            if hi > math.log(_Q_MAX):
                return math.inf
    else:
        floor = math.log(min(_Q_ZERO, b / 4.0) if b > 0 else _Q_ZERO)
        while gap(lo) < 0:
            lo, hi = lo - _STEP, lo
            if lo < floor:
                return 0.0
    return math.exp(brentq(gap, lo, hi, xtol=1e-14, rtol=1e-15))


def fixed_point(
    act: Any, sigma_w2: float, sigma_b2: float, *, param: float | None = None, q0: float = 1.0
) -> float:
    """The fixed point ``q*`` that iterating the variance map from ``q0`` converges to.

    ``q* = sigma_w2 E[f(sqrt(q*) z)^2] + sigma_b2`` (Poole et al. 2016). Returns ``0.0`` when the
    variance decays to zero (e.g. tanh with ``sigma_w2 <= 1, sigma_b2 = 0``; fixed points below
    1e-12 count as 0), ``inf`` when it grows without bound (ReLU with ``sigma_w2 > 2``), and ``q0``
    itself when ``q0`` is already fixed (ReLU with ``sigma_w2 = 2``: every q is). Assumes the map
    is increasing in ``q``, as it is for every named activation.
    """
    sigma_w2 = _positive(sigma_w2, "sigma_w2")
    sigma_b2 = _nonnegative(sigma_b2, "sigma_b2")
    q0 = _positive(q0, "q0")
    return _fixed_point(resolve(act, param), sigma_w2, sigma_b2, q0)


def chi1(
    act: Any, sigma_w2: float, sigma_b2: float, *, param: float | None = None, q0: float = 1.0
) -> float:
    """``chi_1 = sigma_w2 E[f'(sqrt(q*) z)^2]`` at the fixed point ``q*`` reached from ``q0``.

    The per-layer factor of the gradient variance and of the growth of small perturbations
    (Poole et al. 2016; Schoenholz et al. 2017): ``< 1`` ordered, ``> 1`` chaotic, ``= 1`` the
    edge of chaos. At ``q* = 0`` it is ``sigma_w2 f'(0)^2``; at ``q* = inf`` the large-q limit.
    """
    sigma_w2 = _positive(sigma_w2, "sigma_w2")
    sigma_b2 = _nonnegative(sigma_b2, "sigma_b2")
    q0 = _positive(q0, "q0")
    a = resolve(act, param)
    return sigma_w2 * _deriv_second(a, _fixed_point(a, sigma_w2, sigma_b2, q0))


def _edge_bias(a: Activation, q: float) -> float:
    """The sigma_b2 for which q is a fixed point with chi_1 = 1: q - E[f^2] / E[f'^2]."""
    _, ef2, _, edf2, _ = raw_moments(a, q)
    return q - ef2 / edf2 if edf2 > 0 else -math.inf


def critical_sigma_w2(act: Any, sigma_b2: float = 0.0, *, param: float | None = None) -> float:
    """The weight variance on the edge of chaos at bias variance ``sigma_b2``.

    Schoenholz et al. 2017; solved as in Hayou et al. 2019: the smallest fixed point ``q* >= 0``
    with ``chi_1 = 1`` satisfies ``q* - E[f^2] / E[f'^2] = sigma_b2`` (both at ``q*``), and then
    ``sigma_w2 = 1 / E[f'(sqrt(q*) z)^2]``. With ``sigma_b2 = 0`` and ``f(0) = 0`` that fixed point
    is ``q* = 0`` and ``sigma_w2 = 1 / f'(0)^2``: tanh 1, ReLU 2 (the one-sided slopes averaged),
    GELU 4. The critical fixed point need not attract: for GELU and SiLU it is unstable, see
    :func:`critical_point`.

    Raises:
        ValueError: no such fixed point with ``q*`` up to 1e12 (ReLU with ``sigma_b2 > 0``).
    """
    sigma_b2 = _nonnegative(sigma_b2, "sigma_b2")
    a = resolve(act, param)
    if sigma_b2 == 0 and a.f(np.zeros(1))[0] == 0:
        return 1.0 / _deriv_second(a, 0.0)
    lo = sigma_b2 if sigma_b2 > 0 else _Q_ZERO  # E[f^2] >= 0 makes every root q* >= sigma_b2
    hi = lo
    while _edge_bias(a, hi) < sigma_b2:
        lo, hi = hi, 2.0 * hi
        if hi > _Q_EDGE_MAX * max(1.0, sigma_b2):
            raise ValueError(
                f"activation {a.label()}: no fixed point with chi1 = 1 at "
                f"sigma_b2={sigma_b2:g}; no edge of chaos"
            )
    if hi > lo:
        u = brentq(
            lambda v: _edge_bias(a, math.exp(v)) - sigma_b2,
            math.log(lo),
            math.log(hi),
            xtol=1e-14,
            rtol=1e-15,
        )
        hi = math.exp(u)
    return 1.0 / raw_moments(a, hi)[3]


@dataclass(frozen=True)
class CriticalPoint:
    """A point on the edge of chaos with a chosen fixed point ``q*``.

    Attributes:
        sigma_w2: ``1 / E[f'(sqrt(q*) z)^2]``, so that ``chi_1 = 1``.
        sigma_b2: ``q* - sigma_w2 E[f(sqrt(q*) z)^2]``, so that ``q*`` is fixed (negative when
            no such point exists).
        q_star: the fixed point asked for.
        chi1: ``chi_1`` at this point (1 up to rounding).
        slope: derivative of the variance map at ``q*``, ``sigma_w2 d E[f(sqrt(q) z)^2] / dq``.
        stable: ``slope < 1``: the variance returns to ``q*`` after a perturbation.
        exists: ``sigma_b2 >= 0``.
        note: one sentence on what was found.
    """

    sigma_w2: float
    sigma_b2: float
    q_star: float
    chi1: float
    slope: float
    stable: bool
    exists: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def critical_point(act: Any, q_star: float = 1.0, *, param: float | None = None) -> CriticalPoint:
    """``(sigma_w2, sigma_b2)`` with ``chi_1 = 1`` and fixed point ``q*`` at once.

    Beyond Poole et al. 2016 / Schoenholz et al. 2017, who trace the edge of chaos as a curve in
    ``(sigma_w2, sigma_b2)``, this picks the point of that curve whose fixed point is ``q*``:
    ``sigma_w2 = 1 / E[f'(sqrt(q*) z)^2]``, ``sigma_b2 = q* - sigma_w2 E[f(sqrt(q*) z)^2]``.
    It exists only if ``sigma_b2 >= 0`` (sigmoid has none near ``q* = 1``: its mean of 1/2
    dominates ``E[f^2]``), and is stable if the slope of the variance map at ``q*`` is below 1.
    """
    q_star = _positive(q_star, "q_star")
    a = resolve(act, param)
    ef, ef2, _, edf2, dq = raw_moments(a, q_star)
    if edf2 <= 0:
        raise ValueError(
            f"activation {a.label()}: E[f'^2] = 0 at q={q_star:g}; chi1 cannot reach 1"
        )
    w = 1.0 / edf2
    b = q_star - w * ef2
    if -1e-12 * q_star < b < 0:
        b = 0.0
    slope = w * dq
    exists = b >= 0
    stable = exists and slope < 1 - 1e-9
    if not exists:
        note = (
            f"no critical point with q* = {q_star:g}: chi1 = 1 needs sigma_w2 = {w:.4g}, "
            f"which maps q* to sigma_w2 E[f^2] = {w * ef2:.4g} > q*, so sigma_b2 would be "
            f"{b:.4g} < 0"
        )
        if ef * ef >= 0.5 * ef2:
            note += f"; the mean dominates: E[f]^2 = {ef * ef:.4g} of E[f^2] = {ef2:.4g}"
    elif abs(slope - 1) <= 1e-9:
        note = (
            "marginal: the variance map has slope 1 at q* (positively homogeneous activation: "
            "every q is a fixed point)"
        )
    elif stable:
        note = f"stable: the variance map has slope {slope:.4g} < 1 at q* = {q_star:g}"
    else:
        note = (
            f"unstable: the variance map has slope {slope:.4g} > 1 at q* = {q_star:g}; "
            "the variance drifts away from q*"
        )
    return CriticalPoint(w, b, q_star, w * edf2, slope, stable, exists, note)


@dataclass(frozen=True)
class DepthProfile:
    """The predicted forward and backward signal scales through a plain equal-width stack.

    Attributes:
        q: pre-activation variance at layers 1..depth (``q[0] = q0``).
        forward_log2: ``0.5 log2(q[-1] / q[0])``, the log2 change of the forward std.
        backward_log2: ``log2`` of (std of dL/dz at layer 1) / (std at layer depth)
            ``= 0.5 sum_{l < depth} log2(sigma_w2 E[f'(sqrt(q_l) z)^2])``.
        forward_log2_per_layer: cumulative forward change, starts at 0.
        backward_log2_per_layer: cumulative backward change counted from the top, ends at 0.
    """

    q: np.ndarray
    forward_log2: float
    backward_log2: float
    forward_log2_per_layer: np.ndarray
    backward_log2_per_layer: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "q": self.q.tolist(),
            "forward_log2": self.forward_log2,
            "backward_log2": self.backward_log2,
            "forward_log2_per_layer": self.forward_log2_per_layer.tolist(),
            "backward_log2_per_layer": self.backward_log2_per_layer.tolist(),
        }


def _depth_profile(a: Activation, w: float, b: float, depth: int, q0: float) -> DepthProfile:
    q = np.empty(depth)
    q[0] = q0
    for layer in range(1, depth):
        q[layer] = w * _second(a, float(q[layer - 1])) + b
        if not 0 < q[layer] < math.inf:
            raise ValueError(
                f"activation {a.label()}: the predicted variance leaves the float "
                f"range at layer {layer + 1} (q = {q[layer]:g}); use fewer layers"
            )
    chi = np.array([w * raw_moments(a, float(v))[3] for v in q[:-1]])
    forward = 0.5 * np.log2(q / q0)
    half_bits = 0.5 * np.log2(chi)
    backward = np.concatenate([np.cumsum(half_bits[::-1])[::-1], [0.0]])
    return DepthProfile(q, float(forward[-1]), float(backward[0]), forward, backward)


def depth_profile(
    act: Any,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    q0: float = 1.0,
    *,
    param: float | None = None,
) -> DepthProfile:
    """Predicted log2 change of the forward std and the gradient std over ``depth`` layers.

    The stack is ``z_{l+1} = W f(z_l) + b``, equal widths, ``Var(W_ij) = sigma_w2 / width``,
    ``Var(b) = sigma_b2``, ``Var(z_1) = q0``; ``q_{l+1} = sigma_w2 E[f(sqrt(q_l) z)^2] + sigma_b2``
    and ``Var(dL/dz_l) = sigma_w2 E[f'(sqrt(q_l) z)^2] Var(dL/dz_{l+1})``. Example: 50 GELU layers
    under He (``sigma_w2 = 2``) lose about 22 bits of forward std (GELU is about ``x/2`` near 0).

    Raises:
        TypeError: ``depth`` not an integer.
        ValueError: ``depth < 1``, bad variances, or a variance that leaves the float range.
    """
    depth = check_int("depth", depth, low=1)
    sigma_w2 = _positive(sigma_w2, "sigma_w2")
    sigma_b2 = _nonnegative(sigma_b2, "sigma_b2")
    q0 = _positive(q0, "q0")
    return _depth_profile(resolve(act, param), sigma_w2, sigma_b2, int(depth), q0)
