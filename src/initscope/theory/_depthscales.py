"""Depth scales of signal propagation (Schoenholz et al. 2017): how many layers a plain stack
needs to forget the input's variance (``xi_q``) and the correlation between two inputs (``xi_c``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

from initscope.activations import Activation, resolve
from initscope.theory._meanfield import _fixed_point
from initscope.theory._moments import _GL_W, _GL_X, _T, _nonnegative, _positive, _rule, raw_moments

_INNER_PANELS = 32  # Gauss-Legendre panels per smooth piece of the inner integral (width <= 1)


@dataclass(frozen=True)
class DepthScales:
    """Fixed points, their slopes and the depth scales of a plain stack (Schoenholz et al. 2017).

    Attributes:
        q_star: fixed point of the variance map reached from ``q0``.
        c_star: fixed point of the correlation map at ``q*`` (1 in the ordered phase).
        chi1: ``sigma_w2 E[f'(sqrt(q*) z)^2]``: < 1 ordered, > 1 chaotic.
        slope_q: slope of the variance map at ``q*``, ``chi1 + sigma_w2 E[f f'']``.
        chi_c: slope of the correlation map at ``c*``, ``sigma_w2 E[f'(u1) f'(u2)]`` with
            ``corr(u1, u2) = c*``; equals ``chi1`` when ``c* = 1``.
        xi_q: ``-1 / ln(slope_q)``: the variance approaches ``q*`` like ``exp(-l / xi_q)``;
            ``inf`` when ``slope_q >= 1``.
        xi_c: ``-1 / ln(chi_c)``: the correlation approaches ``c*`` like ``exp(-l / xi_c)``;
            it diverges on the edge of chaos (``chi1 = 1``), so that signals (and gradients)
            propagate through arbitrarily deep networks only there.
    """

    q_star: float
    c_star: float
    chi1: float
    slope_q: float
    chi_c: float
    xi_q: float
    xi_c: float

    def to_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _depth(slope: float) -> float:
    return -1.0 / math.log(slope) if 0 < slope < 1 else (0.0 if slope <= 0 else math.inf)


def _pair_expectation(a: Activation, q: float, c: float, deriv: bool) -> float:
    """``E[g(u1) g(u2)]``, ``u ~ N(0, q [[1, c], [c, 1]])``, ``g = f`` or ``f'``, ``0 <= c < 1``.

    Outer integral over ``u1 = sqrt(q) t1`` by the moments' rule (split at the kinks); inner over
    ``u2 = sqrt(q) (c t1 + r t2)``, ``r = sqrt(1 - c^2)``, by Gauss-Legendre panels split, row by
    row, where ``u2`` crosses a kink.
    """
    g = a.df if deriv else a.f
    s, r = math.sqrt(q), math.sqrt(1.0 - c * c)
    t1, w1 = _rule(a, s, 0.0)
    cuts = [np.full(t1.shape, -_T)]
    cuts += [np.clip((k / s - c * t1) / r, -_T, _T) for k in sorted(a.kinks)]
    cuts.append(np.full(t1.shape, _T))
    nodes, weights = [], []
    frac = (np.arange(_INNER_PANELS)[:, None] + 0.5 * (1.0 + _GL_X)) / _INNER_PANELS
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        width = (hi - lo)[:, None]
        nodes.append(lo[:, None] + width * frac.ravel())
        weights.append(width * np.tile(0.5 * _GL_W, _INNER_PANELS) / _INNER_PANELS)
    t2, w2 = np.concatenate(nodes, axis=1), np.concatenate(weights, axis=1)
    w2 = w2 * np.exp(-0.5 * t2 * t2) / math.sqrt(2.0 * math.pi)
    with np.errstate(over="ignore", invalid="ignore"):
        inner = np.sum(w2 * g(s * (c * t1[:, None] + r * t2)), axis=1)
        return float(w1 @ (g(s * t1) * inner))


def depth_scales(
    act: Any, sigma_w2: float, sigma_b2: float, *, param: float | None = None, q0: float = 1.0
) -> DepthScales:
    """The depth scales ``xi_q`` and ``xi_c`` of a plain stack (Schoenholz et al. 2017).

    With ``q*`` the fixed point of the variance map (:func:`fixed_point`, from ``q0``), two inputs
    whose pre-activations have correlation ``c`` map to
    ``c' = (sigma_w2 E[f(u1) f(u2)] + sigma_b2) / q*``, ``u ~ N(0, q* [[1, c], [c, 1]])``
    (Poole et al. 2016). Near the fixed points ``q*`` and ``c*`` the deviations shrink by
    ``slope_q`` and ``chi_c`` per layer, so ``xi_q = -1 / ln(slope_q)`` and
    ``xi_c = -1 / ln(chi_c)`` layers. ``c* = 1`` in the ordered phase (``chi1 <= 1``), where
    ``chi_c = chi1``; in the chaotic phase ``c* < 1`` is found by root finding on the
    two-dimensional Gaussian integral. ``xi_c`` diverges at ``chi1 = 1``: the edge of chaos.

    Raises:
        ValueError: bad variances, or a variance map whose fixed point is 0 or infinite (no
            finite ``q*``, e.g. ReLU with ``sigma_w2 >= 2`` or tanh with ``sigma_w2 <= 1,
            sigma_b2 = 0``).
    """
    sigma_w2 = _positive(sigma_w2, "sigma_w2")
    sigma_b2 = _nonnegative(sigma_b2, "sigma_b2")
    q0 = _positive(q0, "q0")
    a = resolve(act, param)
    q = _fixed_point(a, sigma_w2, sigma_b2, q0)
    if not 0 < q < math.inf:
        raise ValueError(
            f"activation {a.label()}: the variance map at sigma_w2={sigma_w2:g}, "
            f"sigma_b2={sigma_b2:g} has fixed point q* = {q:g} from q0={q0:g}; depth scales "
            "need a finite q* > 0"
        )
    _, _, _, edf2, dq = raw_moments(a, q)
    chi1, slope_q = sigma_w2 * edf2, sigma_w2 * dq
    c_star, chi_c = 1.0, chi1
    if chi1 > 1:

        def gap(c: float) -> float:
            return (sigma_w2 * _pair_expectation(a, q, c, False) + sigma_b2) / q - c

        hi = next((1.0 - d for d in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6) if gap(1.0 - d) < 0), None)
        if hi is not None:
            c_star = 0.0 if gap(0.0) <= 0 else brentq(gap, 0.0, hi, xtol=1e-12)
            chi_c = sigma_w2 * _pair_expectation(a, q, c_star, True)
    return DepthScales(q, c_star, chi1, slope_q, chi_c, _depth(slope_q), _depth(chi_c))
