"""Gaussian moments, gains, mean-field theory and the guide, against independent references."""

import cmath
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, special

from initscope import theory
from initscope.activations import names

SELU_L = 1.0507009873554804934193349852946
SELU_A = 1.6732632423543772848170429916717


def _pos(x):
    return x.real > 0


# Reference activations written independently of initscope, on complex numbers so that the
# derivative comes from the complex step f'(x) = Im f(x + ih) / h (exact to rounding, no
# hand-written derivative). name -> (f(x, p), kinks(p), param used).
REFERENCE = {
    "relu": (lambda x, p: x if _pos(x) else 0 * x, lambda p: [0.0], None),
    "leaky_relu": (lambda x, p: x if _pos(x) else p * x, lambda p: [0.0], 0.2),
    "elu": (lambda x, p: x if _pos(x) else p * (cmath.exp(x) - 1), lambda p: [0.0], 0.5),
    "celu": (lambda x, p: x if _pos(x) else p * (cmath.exp(x / p) - 1), lambda p: [0.0], 2.0),
    "selu": (
        lambda x, p: SELU_L * (x if _pos(x) else SELU_A * (cmath.exp(x) - 1)),
        lambda p: [0.0],
        None,
    ),
    "gelu": (lambda x, p: x * 0.5 * (1 + special.erf(x / math.sqrt(2))), lambda p: [], None),
    "gelu_tanh": (
        lambda x, p: 0.5 * x * (1 + cmath.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
        lambda p: [],
        None,
    ),
    "silu": (lambda x, p: x / (1 + cmath.exp(-x)), lambda p: [], None),
    "mish": (lambda x, p: x * cmath.tanh(cmath.log(1 + cmath.exp(x))), lambda p: [], None),
    "softplus": (lambda x, p: cmath.log(1 + cmath.exp(p * x)) / p, lambda p: [], 2.0),
    "sigmoid": (lambda x, p: 1 / (1 + cmath.exp(-x)), lambda p: [], None),
    "tanh": (lambda x, p: cmath.tanh(x), lambda p: [], None),
    "hardtanh": (
        lambda x, p: x if -p < x.real < p else complex(math.copysign(p, x.real)),
        lambda p: [-p, p],
        1.5,
    ),
    "hardsigmoid": (
        lambda x, p: 0j if x.real <= -3 else (1 + 0j if x.real >= 3 else x / 6 + 0.5),
        lambda p: [-3.0, 3.0],
        None,
    ),
    "hardswish": (
        lambda x, p: 0j if x.real <= -3 else (x if x.real >= 3 else x * (x + 3) / 6),
        lambda p: [-3.0, 3.0],
        None,
    ),
    "relu6": (
        lambda x, p: 0j if x.real <= 0 else (6 + 0j if x.real >= 6 else x),
        lambda p: [0.0, 6.0],
        None,
    ),
    "softsign": (lambda x, p: x / (1 + x) if _pos(x) else x / (1 - x), lambda p: [0.0], None),
    "logsigmoid": (lambda x, p: -cmath.log(1 + cmath.exp(-x)), lambda p: [], None),
    "sin": (lambda x, p: cmath.sin(x), lambda p: [], None),
    "linear": (lambda x, p: x, lambda p: [], None),
}
H = 1e-30


def reference_moments(name, q, mean):
    """(E f, E f^2, Var f, E f'^2) by adaptive QUADPACK, split at the kinks, tight tolerances."""
    f, kinks, p = REFERENCE[name]
    s = math.sqrt(q)
    lo, hi = mean - 30 * s, mean + 30 * s
    pts = sorted(k for k in kinks(p) if lo < k < hi)
    dens = 1 / math.sqrt(2 * math.pi * q)

    def expect(g):
        def integrand(x):
            return g(x) * dens * math.exp(-((x - mean) ** 2) / (2 * q))

        value, _ = integrate.quad(
            integrand, lo, hi, points=pts or None, epsabs=1e-15, epsrel=1e-12, limit=400
        )
        return value

    ef = expect(lambda x: f(complex(x), p).real)
    ef2 = expect(lambda x: f(complex(x), p).real ** 2)
    var = expect(lambda x: (f(complex(x), p).real - ef) ** 2)
    edf2 = expect(lambda x: (f(complex(x, H), p).imag / H) ** 2)
    return ef, ef2, var, edf2


def test_reference_table_covers_every_name():
    assert set(REFERENCE) == set(names())


CASES = (
    [(n, q, 0.0) for n in REFERENCE for q in (0.25, 1.0, 4.0)]
    + [
        (n, q, 0.7)
        for n in ("relu", "elu", "gelu", "tanh", "sigmoid", "hardswish", "softplus")
        for q in (0.25, 4.0)
    ]
    + [("selu", 1.0, -1.3), ("relu6", 4.0, 5.0), ("hardtanh", 1.0, 1.2)]
)


@pytest.mark.parametrize(("name", "q", "mean"), CASES, ids=[f"{n}-q{q}-m{m}" for n, q, m in CASES])
def test_moments_match_independent_reference(name, q, mean):
    got = theory.moments(name, q, mean, param=REFERENCE[name][2])
    ref = reference_moments(name, q, mean)
    for field, value, expected in zip(
        ("mean", "second", "variance", "deriv_second"),
        (got.mean, got.second, got.variance, got.deriv_second),
        ref,
        strict=True,
    ):
        if abs(expected) < 1e-12:  # odd activations at mean 0: E f = 0
            assert abs(value) < 1e-12, field
        else:
            assert value == pytest.approx(expected, rel=1e-9, abs=0), field


@pytest.mark.parametrize("q", [0.25, 1.0, 4.0, 1e-6, 1e6])
def test_closed_forms(q):
    relu = theory.moments("relu", q)
    assert relu.second == pytest.approx(q / 2, rel=1e-14)
    assert relu.deriv_second == pytest.approx(0.5, rel=1e-14)
    assert relu.mean == pytest.approx(math.sqrt(q / (2 * math.pi)), rel=1e-13)
    a = 0.2
    leaky = theory.moments("leaky_relu", q, param=a)
    assert leaky.second == pytest.approx((1 + a * a) * q / 2, rel=1e-14)
    assert leaky.deriv_second == pytest.approx((1 + a * a) / 2, rel=1e-14)
    assert theory.moments("linear", q).second == pytest.approx(q, rel=1e-14)
    assert theory.moments("linear", q).deriv_second == pytest.approx(1.0, rel=1e-14)
    # E[z Phi(z)] = q / sqrt(2 pi (1 + q)) for z ~ N(0, q)
    assert theory.moments("gelu", q).mean == pytest.approx(
        q / math.sqrt(2 * math.pi * (1 + q)), rel=1e-12
    )


@pytest.mark.parametrize(("q", "mean"), [(0.5, 0.0), (2.0, 0.4), (30.0, -1.0)])
def test_sin_closed_form(q, mean):
    m = theory.moments("sin", q, mean)
    decay = math.exp(-2 * q) * math.cos(2 * mean)
    assert m.mean == pytest.approx(math.sin(mean) * math.exp(-q / 2), rel=1e-10, abs=1e-15)
    assert m.second == pytest.approx((1 - decay) / 2, rel=1e-12)
    assert m.deriv_second == pytest.approx((1 + decay) / 2, rel=1e-12)


def test_cached_call_returns_the_same_values():
    first = theory.moments("gelu", 1.7)
    assert theory.moments("gelu", 1.7) == first
    assert theory.moments("gelu", 1.7) is not theory.moments("gelu", 1.8)


def test_c_forward_c_backward_and_gains():
    assert theory.c_forward("relu") == pytest.approx(0.5, rel=1e-14)
    assert theory.c_backward("relu") == pytest.approx(0.5, rel=1e-14)
    assert theory.gain("relu") == pytest.approx(math.sqrt(2), rel=1e-14)
    assert theory.gain("leaky_relu", param=0.2) == pytest.approx(math.sqrt(2 / 1.04), rel=1e-14)
    assert theory.gain("linear", "backward") == pytest.approx(1.0, rel=1e-14)
    assert theory.gain("selu") == pytest.approx(1.0, rel=1e-12)
    ref = reference_moments("tanh", 1.0, 0.0)
    assert theory.gain("tanh") == pytest.approx(1 / math.sqrt(ref[1]), rel=1e-10)
    assert theory.gain("tanh") == pytest.approx(1.5925374197, rel=1e-9)
    assert theory.gain("tanh", "backward") == pytest.approx(1 / math.sqrt(ref[3]), rel=1e-10)
    fwd, bwd = theory.gain("gelu", "forward", 2.0), theory.gain("gelu", "backward", 2.0)
    assert theory.gain("gelu", "average", 2.0) == pytest.approx(math.sqrt(fwd * bwd), rel=1e-14)
    assert theory.c_forward("tanh", 4.0) == pytest.approx(theory.moments("tanh", 4.0).second / 4)


def test_calculate_gain_exact_path():
    from initscope.init import calculate_gain

    assert calculate_gain("tanh", exact=True) == theory.gain("tanh")
    assert calculate_gain("tanh") == pytest.approx(5 / 3)
    assert calculate_gain("gelu") == theory.gain("gelu")
    assert calculate_gain("leaky_relu", 0.2, exact=True) == theory.gain("leaky_relu", param=0.2)
    assert calculate_gain("selu", exact=True) == pytest.approx(1.0, rel=1e-12)
    assert calculate_gain("conv2d", exact=True) == pytest.approx(1.0, rel=1e-14)
    assert calculate_gain("softplus", 2.0) == theory.gain("softplus", param=2.0)
    assert calculate_gain(torch.nn.Mish()) == theory.gain("mish")


# ----------------------------------------------------------------- mean field


def test_selu_fixed_point_under_lecun_normal():
    m = theory.moments("selu", 1.0)
    assert abs(m.mean) < 1e-9  # mean preserved: E selu(z) = 0
    assert m.second == pytest.approx(1.0, abs=1e-9)  # second moment preserved
    assert m.variance == pytest.approx(1.0, abs=1e-9)
    for q0 in (0.3, 1.0, 3.0):
        assert theory.fixed_point("selu", 1.0, 0.0, q0=q0) == pytest.approx(1.0, abs=1e-9)
    assert theory.variance_map("selu", 1.0, 1.0, 0.0) == pytest.approx(1.0, abs=1e-9)


def test_tanh_edge_of_chaos_at_zero_bias():
    assert theory.critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, abs=1e-12)
    assert theory.fixed_point("tanh", 1.0, 0.0) == 0.0  # the degenerate fixed point
    assert theory.chi1("tanh", 1.0, 0.0) == pytest.approx(1.0, abs=1e-12)
    assert theory.chi1("tanh", 0.5, 0.0) == pytest.approx(0.5, abs=1e-12)
    q_star = theory.fixed_point("tanh", 2.0, 0.0)
    assert q_star > 0.5 and theory.chi1("tanh", 2.0, 0.0) > 1  # chaotic phase


def test_relu_edge_of_chaos():
    assert theory.critical_sigma_w2("relu") == pytest.approx(2.0, rel=1e-12)
    assert theory.fixed_point("relu", 2.0, 0.0, q0=3.0) == pytest.approx(3.0, rel=1e-12)
    assert theory.fixed_point("relu", 2.1, 0.0) == math.inf
    assert theory.fixed_point("relu", 1.9, 0.0) == 0.0
    assert theory.chi1("relu", 1.9, 0.0) == pytest.approx(0.95, rel=1e-12)
    assert theory.chi1("relu", 2.0, 0.0, q0=5.0) == pytest.approx(1.0, rel=1e-12)
    cp = theory.critical_point("relu")
    assert (cp.sigma_w2, cp.sigma_b2) == (pytest.approx(2.0), pytest.approx(0.0, abs=1e-12))
    assert cp.exists and not cp.stable and "marginal" in cp.note


@pytest.mark.parametrize("sigma_b2", [0.05, 0.3])
def test_critical_sigma_w2_with_bias_has_chi1_one(sigma_b2):
    w = theory.critical_sigma_w2("tanh", sigma_b2)
    assert w > 1
    assert theory.chi1("tanh", w, sigma_b2) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    ("act", "sigma_b2"),
    [("tanh", 0.1), ("gelu", 0.1), ("gelu", 0.3), ("selu", 0.2), ("sigmoid", 0.0)],
)
def test_critical_sigma_w2_has_a_fixed_point_with_chi1_one(act, sigma_b2):
    w = theory.critical_sigma_w2(act, sigma_b2)
    # find q with w E[f'^2](q) = 1 independently, then check that it is a fixed point
    grid = np.geomspace(1e-3, 1e4, 200)
    gap = np.array([w * theory.c_backward(act, q) - 1 for q in grid])
    i = int(np.flatnonzero(np.sign(gap[:-1]) != np.sign(gap[1:]))[0])
    q_star = optimize.brentq(
        lambda q: w * theory.c_backward(act, q) - 1, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-14
    )
    assert theory.variance_map(act, q_star, w, sigma_b2) == pytest.approx(q_star, rel=1e-9)


def test_edge_of_chaos_at_zero_bias_is_one_over_slope_at_zero_squared():
    assert theory.critical_sigma_w2("gelu") == pytest.approx(4.0, rel=1e-12)  # GELU'(0) = 1/2
    assert theory.critical_sigma_w2("leaky_relu", param=0.2) == pytest.approx(2 / 1.04, rel=1e-12)
    with pytest.raises(ValueError, match="no edge of chaos"):
        theory.critical_sigma_w2("relu", 0.1)


def test_fixed_point_solves_the_variance_map():
    for act, w, b in [("tanh", 1.5, 0.1), ("gelu", 1.8, 0.2), ("sigmoid", 1.0, 0.0)]:
        q = theory.fixed_point(act, w, b)
        assert theory.variance_map(act, q, w, b) == pytest.approx(q, rel=1e-12)


@pytest.mark.parametrize(
    ("act", "q_star"), [("tanh", 1.0), ("tanh", 2.0), ("gelu", 2.0), ("selu", 1.0), ("elu", 0.5)]
)
def test_critical_point_is_a_fixed_point_with_chi1_one(act, q_star):
    cp = theory.critical_point(act, q_star)
    assert cp.exists and cp.sigma_b2 >= 0
    assert theory.variance_map(act, q_star, cp.sigma_w2, cp.sigma_b2) == pytest.approx(
        q_star, rel=1e-12
    )
    assert cp.sigma_w2 * theory.c_backward(act, q_star) == pytest.approx(1.0, rel=1e-12)
    eps = 1e-5 * q_star
    up = theory.variance_map(act, q_star + eps, cp.sigma_w2, cp.sigma_b2)
    down = theory.variance_map(act, q_star - eps, cp.sigma_w2, cp.sigma_b2)
    assert cp.slope == pytest.approx((up - down) / (2 * eps), rel=1e-6)
    assert cp.stable == (cp.slope < 1)


def test_stable_critical_point_attracts_from_elsewhere():
    cp = theory.critical_point("tanh", 2.0)
    assert cp.stable
    assert theory.fixed_point("tanh", cp.sigma_w2, cp.sigma_b2, q0=0.5) == pytest.approx(
        2.0, rel=1e-10
    )
    assert theory.chi1("tanh", cp.sigma_w2, cp.sigma_b2) == pytest.approx(1.0, rel=1e-10)


def test_gelu_critical_point_near_2_05_0_1():
    cp = theory.critical_point("gelu", 2.0)
    assert cp.sigma_w2 == pytest.approx(2.0429, abs=1e-3)
    assert cp.sigma_b2 == pytest.approx(0.1163, abs=1e-3)
    assert not cp.stable  # slope 1.026: the variance drifts away from q* = 2


def test_sigmoid_has_no_critical_point_near_one():
    cp = theory.critical_point("sigmoid", 1.0)
    assert not cp.exists and not cp.stable and cp.sigma_b2 < 0
    assert "mean dominates" in cp.note


# ----------------------------------------------------------------- depth


def test_depth_profile_structure():
    p = theory.depth_profile("tanh", 1.5, 0.1, 7, q0=0.8)
    assert p.q.shape == p.forward_log2_per_layer.shape == p.backward_log2_per_layer.shape == (7,)
    assert p.q[0] == 0.8 and p.forward_log2_per_layer[0] == 0.0
    assert p.backward_log2_per_layer[-1] == 0.0
    assert p.forward_log2 == p.forward_log2_per_layer[-1]
    assert p.backward_log2 == p.backward_log2_per_layer[0]
    assert p.q[1] == pytest.approx(theory.variance_map("tanh", 0.8, 1.5, 0.1), rel=1e-15)
    chi = [1.5 * theory.c_backward("tanh", q) for q in p.q[:-1]]
    assert p.backward_log2 == pytest.approx(0.5 * sum(math.log2(c) for c in chi), rel=1e-12)
    single = theory.depth_profile("relu", 2.0, 0.0, 1)
    assert single.forward_log2 == single.backward_log2 == 0.0


def test_relu_he_preserves_both_passes():
    p = theory.depth_profile("relu", 2.0, 0.0, 50)
    assert abs(p.forward_log2) < 1e-12 and abs(p.backward_log2) < 1e-12


def test_gelu_he_loses_about_22_bits_and_its_critical_point_keeps_them():
    he = theory.depth_profile("gelu", 2.0, 0.0, 50)
    assert -23.0 < he.forward_log2 < -21.0
    assert -23.0 < he.backward_log2 < -20.5
    cp = theory.critical_point("gelu", 2.0)  # near (2.05, 0.1)
    crit = theory.depth_profile("gelu", cp.sigma_w2, cp.sigma_b2, 50, q0=2.0)
    assert abs(crit.forward_log2) < 0.5 and abs(crit.backward_log2) < 0.5


def test_tanh_xavier_loses_about_3_bits_and_its_critical_point_keeps_them():
    xavier = theory.depth_profile("tanh", 1.0, 0.0, 50)
    assert -3.6 < xavier.forward_log2 < -2.6
    assert -3.6 < xavier.backward_log2 < -2.6
    cp = theory.critical_point("tanh", 1.0)
    for q0 in (0.5, 1.0, 2.0):  # stable, so it holds even from another starting variance
        crit = theory.depth_profile("tanh", cp.sigma_w2, cp.sigma_b2, 50, q0=q0)
        assert abs(crit.forward_log2) < 1 and abs(crit.backward_log2) < 1


def _simulate(fn, sigma_w2, sigma_b2, depth, width=256, batch=64, seed=0):
    """Measured (forward_log2, backward_log2) of a random plain MLP, float64."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, width, generator=g, dtype=torch.float64).requires_grad_(True)
    zs = [z]
    for _ in range(depth - 1):
        w = torch.randn(width, width, generator=g, dtype=torch.float64)
        w *= math.sqrt(sigma_w2 / width)
        b = torch.randn(width, generator=g, dtype=torch.float64) * math.sqrt(sigma_b2)
        zs.append(fn(zs[-1]) @ w.T + b)
        zs[-1].retain_grad()
    (zs[-1] * torch.randn(zs[-1].shape, generator=g, dtype=torch.float64)).sum().backward()
    forward = 0.5 * math.log2(zs[-1].pow(2).mean().item() / zs[0].pow(2).mean().item())
    backward = 0.5 * math.log2(zs[0].grad.pow(2).mean().item() / zs[-1].grad.pow(2).mean().item())
    return forward, backward


# width 256: finite-width fluctuations are about 0.1 bit (tanh) and 1 bit (GELU, 22 bits down)
@pytest.mark.parametrize(
    ("fn", "name", "sigma_w2", "tol"),
    [(torch.tanh, "tanh", 1.0, 0.3), (torch.nn.functional.gelu, "gelu", 2.0, 1.5)],
)
def test_depth_profile_predicts_a_real_network(fn, name, sigma_w2, tol):
    forward, backward = _simulate(fn, sigma_w2, 0.0, 50)
    p = theory.depth_profile(name, sigma_w2, 0.0, 50)
    assert forward == pytest.approx(p.forward_log2, abs=tol)
    assert backward == pytest.approx(p.backward_log2, abs=tol)


# ----------------------------------------------------------------- guide


def test_recommend_is_the_seed_guide():
    he = theory.recommend("relu")
    assert (he.scheme, he.mode, he.scale, he.formula) == (
        "kaiming_normal",
        "fan_in",
        2.0,
        "Var = 2 / fan_in",
    )
    leaky = theory.recommend("leaky_relu", param=0.2)
    assert leaky.scheme == "kaiming_normal" and leaky.scale == pytest.approx(2 / 1.04)
    for act in ("tanh", "sigmoid", "softsign", "hardtanh", "linear"):
        r = theory.recommend(act)
        assert (r.scheme, r.mode, r.scale) == ("xavier_normal", "fan_avg", 1.0)
    selu = theory.recommend(torch.nn.SELU())
    assert (selu.scheme, selu.mode, selu.scale) == ("lecun_normal", "fan_in", 1.0)
    for act in ("gelu", "swish", "mish", "elu", "softplus"):
        r = theory.recommend(act)
        assert (r.scheme, r.mode, r.scale) == ("kaiming_normal", "fan_in", 2.0)
        assert "robust" in r.source


def test_recommended_schemes_exist_in_init():
    from initscope.init import SCHEMES

    for entry in theory.guide():
        assert entry.scheme in SCHEMES


def test_guide_rows():
    rows = {r.activation: r for r in theory.guide()}
    assert list(rows) == [
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu(0.01)",
        "leaky_relu(0.2)",
        "selu",
        "gelu",
        "silu",
        "mish",
        "elu(1)",
        "softplus(1)",
    ]
    assert rows["relu"].torch_gain == pytest.approx(math.sqrt(2))
    assert rows["relu"].forward_gain == pytest.approx(math.sqrt(2), rel=1e-14)
    assert rows["tanh"].torch_gain == pytest.approx(5 / 3)
    assert rows["tanh"].forward_gain == pytest.approx(1.5925374197, rel=1e-9)
    assert rows["selu"].torch_gain == pytest.approx(0.75)
    assert rows["gelu"].torch_gain is None
    assert rows["sigmoid"].critical_sigma_w2 is None
    assert rows["sigmoid"].critical_forward_log2 is None
    he = theory.depth_profile("gelu", 2.0, 0.0, 50)
    assert rows["gelu"].forward_log2 == he.forward_log2
    assert rows["gelu"].backward_log2 == he.backward_log2
    assert rows["tanh"].critical_sigma_w2 == theory.critical_point("tanh").sigma_w2
    assert rows["tanh"].critical_slope < 1 < rows["gelu"].critical_slope
    assert set(rows["gelu"].to_dict()) >= {"activation", "scheme", "formula", "forward_gain"}


# ----------------------------------------------------------------- depth scales


@pytest.mark.parametrize("q", [0.5, 2.0])
@pytest.mark.parametrize("c", [0.0, 0.3, 0.9, 0.999])
def test_pair_expectation_closed_forms(q, c):
    from initscope.activations import resolve
    from initscope.theory._depthscales import _pair_expectation

    sin, relu = resolve("sin"), resolve("relu")
    arc = math.pi - math.acos(c)
    for got, expected in [
        (_pair_expectation(sin, q, c, False), math.exp(-q) * math.sinh(q * c)),
        (_pair_expectation(sin, q, c, True), math.exp(-q) * math.cosh(q * c)),
        (
            _pair_expectation(relu, q, c, False),
            q / (2 * math.pi) * (math.sqrt(1 - c * c) + arc * c),
        ),
        (_pair_expectation(relu, q, c, True), arc / (2 * math.pi)),  # arc-cosine kernels
    ]:
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_depth_scales_ordered_phase():
    ds = theory.depth_scales("relu", 1.5, 0.1)
    assert ds.q_star == pytest.approx(0.1 / (1 - 0.75), rel=1e-12)
    assert ds.c_star == 1.0 and ds.chi_c == ds.chi1 == pytest.approx(0.75, rel=1e-12)
    assert ds.slope_q == pytest.approx(0.75, rel=1e-12)  # ReLU's map is linear: q -> 0.75 q + 0.1
    assert ds.xi_q == pytest.approx(-1 / math.log(0.75), rel=1e-10)
    assert ds.xi_c == pytest.approx(-1 / math.log(0.75), rel=1e-10)


def test_depth_scales_slope_is_the_variance_maps_derivative():
    ds = theory.depth_scales("tanh", 1.5, 0.05)
    h = 1e-5
    v = [theory.variance_map("tanh", ds.q_star + d, 1.5, 0.05) for d in (-h, h)]
    assert ds.slope_q == pytest.approx((v[1] - v[0]) / (2 * h), rel=1e-7)
    assert ds.xi_q == pytest.approx(-1 / math.log(ds.slope_q), rel=1e-12)
    assert ds.chi1 == pytest.approx(theory.chi1("tanh", 1.5, 0.05), rel=1e-12) and ds.chi1 < 1


def test_depth_scales_chaotic_phase_has_a_correlation_fixed_point():
    ds = theory.depth_scales("tanh", 4.0, 0.05)
    assert ds.chi1 > 1 and 0 < ds.c_star < 1 and ds.chi_c < 1
    # c* is a fixed point of the correlation map: check it by an independent Monte-Carlo integral
    gen = np.random.default_rng(0)
    z1, z2 = gen.standard_normal((2, 2_000_000))
    s, c = math.sqrt(ds.q_star), ds.c_star
    u1, u2 = s * z1, s * (c * z1 + math.sqrt(1 - c * c) * z2)
    mapped = (4.0 * np.mean(np.tanh(u1) * np.tanh(u2)) + 0.05) / ds.q_star
    assert mapped == pytest.approx(c, abs=5e-3)
    assert ds.xi_c == pytest.approx(-1 / math.log(ds.chi_c), rel=1e-12)
    odd = theory.depth_scales("sin", 4.0, 0.0, q0=2.0)  # odd f, no bias: c* = 0
    assert odd.c_star == 0.0
    assert odd.chi_c == pytest.approx(4.0 * math.exp(-odd.q_star), rel=1e-9)  # 4 E[cos u]^2


def test_depth_scale_xi_c_diverges_at_the_edge_of_chaos():
    w = theory.critical_sigma_w2("tanh", 0.05)
    assert theory.depth_scales("tanh", w, 0.05).xi_c > 1e6
    below, above = (theory.depth_scales("tanh", w * f, 0.05).xi_c for f in (0.97, 1.03))
    assert 10 < below < 1e6 and 10 < above < 1e6


def test_depth_scales_need_a_finite_fixed_point():
    with pytest.raises(ValueError, match="finite q"):
        theory.depth_scales("relu", 2.5, 0.1)
    with pytest.raises(ValueError, match="finite q"):
        theory.depth_scales("tanh", 0.5, 0.0)
    with pytest.raises(ValueError, match="sigma_b2"):
        theory.depth_scales("tanh", 1.0, -0.1)


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("q", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_q(q):
    with pytest.raises(ValueError, match="q"):
        theory.moments("relu", q)
    with pytest.raises(ValueError, match="q"):
        theory.gain("relu", q=q)


def test_bad_arguments():
    with pytest.raises(TypeError, match="q"):
        theory.moments("relu", "1")
    with pytest.raises(ValueError, match="mode: expected one of forward, backward, average"):
        theory.gain("relu", "sideways")
    with pytest.raises(ValueError, match="sigma_w2"):
        theory.fixed_point("tanh", -1.0, 0.0)
    with pytest.raises(ValueError, match="sigma_b2"):
        theory.chi1("tanh", 1.0, -0.1)
    with pytest.raises(ValueError, match="sigma_b2"):
        theory.critical_sigma_w2("tanh", -0.1)
    with pytest.raises(ValueError, match="sigma_w2"):
        theory.variance_map("tanh", 1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="depth"):
        theory.depth_profile("tanh", 1.0, 0.0, 0)
    with pytest.raises(TypeError, match="depth"):
        theory.depth_profile("tanh", 1.0, 0.0, 2.5)
    with pytest.raises(ValueError, match="q_star"):
        theory.critical_point("tanh", 0.0)
    with pytest.raises(ValueError, match="did you mean"):
        theory.moments("tanhh")
    with pytest.raises(ValueError, match="float range"):
        theory.depth_profile("relu", 1e30, 0.0, 20)


def test_import_theory_loads_no_plotting_or_rich():
    code = (
        "import sys, initscope.theory; "
        "print(sorted(m for m in ('matplotlib', 'rich') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


def test_moments_is_pure_numpy():
    assert isinstance(theory.moments("gelu").mean, float)
    assert isinstance(theory.depth_profile("gelu", 2.0, 0.0, 3).q, np.ndarray)
