"""initscope.init: drop-in parity with torch.nn.init, exact distributions, bad input."""

import inspect
import math

import numpy as np
import pytest
import torch
from helpers import gen
from scipy import stats
from torch import nn

import initscope
from initscope import Fans, fans, init
from initscope.init._sampling import truncated_std

DROP_INS = [
    "calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
    "eye_", "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
    "orthogonal_", "sparse_",
]  # fmt: skip
EXTRA_PARAMS = {"calculate_gain": ["exact"]}
FAN_BASED = ["xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"]
SHAPES = [(7, 5), (64, 32), (16, 8, 5), (32, 16, 3, 3), (8, 4, 3, 2, 2)]
N = 10**6


def same_draw(ours, theirs, shape, dtype=torch.float32, seed=0):
    a, b = torch.empty(shape, dtype=dtype), torch.empty(shape, dtype=dtype)
    ours(a, generator=gen(seed))
    theirs(b, generator=gen(seed))
    return torch.equal(a, b)


def ks_pvalue(x, dist):
    return stats.kstest(x.double().ravel().numpy(), dist.cdf).pvalue


# ----------------------------------------------------------------------------- drop-in parity


@pytest.mark.parametrize("name", DROP_INS)
def test_signature_extends_torch(name):
    ours = list(inspect.signature(getattr(init, name)).parameters.values())
    theirs = list(inspect.signature(getattr(nn.init, name)).parameters.values())
    assert [(p.name, p.kind, p.default) for p in ours[: len(theirs)]] == [
        (p.name, p.kind, p.default) for p in theirs
    ]
    extra = [(p.name, p.default) for p in ours[len(theirs) :]]
    if name in FAN_BASED:
        assert extra == [("fans", None)]
        assert ours[-1].kind is inspect.Parameter.KEYWORD_ONLY
    else:
        assert [n for n, _ in extra] == EXTRA_PARAMS.get(name, [])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("uniform_", {}),
        ("uniform_", {"a": -0.3, "b": 0.7}),
        ("normal_", {}),
        ("normal_", {"mean": 0.5, "std": 0.02}),
        ("xavier_uniform_", {}),
        ("xavier_uniform_", {"gain": 5 / 3}),
        ("xavier_normal_", {}),
        ("xavier_normal_", {"gain": 2.0**0.5}),
        ("kaiming_uniform_", {}),
        ("kaiming_uniform_", {"nonlinearity": "relu", "mode": "fan_out"}),
        ("kaiming_uniform_", {"a": math.sqrt(5)}),  # nn.Linear's default
        ("kaiming_normal_", {"nonlinearity": "relu"}),
        ("kaiming_normal_", {"a": 0.2, "mode": "FAN_OUT"}),
        ("kaiming_normal_", {"nonlinearity": "tanh"}),
        ("kaiming_normal_", {"nonlinearity": "selu"}),
    ],
)
def test_bit_identical_to_torch(name, kwargs, shape):
    def ours(t, generator):
        return getattr(init, name)(t, generator=generator, **kwargs)

    def theirs(t, generator):
        return getattr(nn.init, name)(t, generator=generator, **kwargs)

    assert same_draw(ours, theirs, shape)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex64])
def test_bit_identical_other_dtypes(dtype):
    for name in ["uniform_", "normal_", "xavier_normal_", "kaiming_uniform_"]:
        assert same_draw(getattr(init, name), getattr(nn.init, name), (12, 6, 3), dtype)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (6, 6), (8, 2, 3, 3), (4, 3, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_orthogonal_bit_identical(shape, dtype):
    def ours(t, generator):
        return init.orthogonal_(t, gain=1.7, generator=generator)

    def theirs(t, generator):
        return nn.init.orthogonal_(t, gain=1.7, generator=generator)

    assert same_draw(ours, theirs, shape, dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_orthogonal_half_precision(dtype):
    t = init.orthogonal_(torch.empty(24, 40, dtype=dtype), gain=2.0, generator=gen())
    assert t.dtype == dtype
    rows = t.float() @ t.float().T
    torch.testing.assert_close(rows, 4 * torch.eye(24), atol=0.1, rtol=0)
    ref = init.orthogonal_(torch.empty(24, 40), gain=2.0, generator=gen())
    torch.testing.assert_close(t.float(), ref, atol=2e-2, rtol=2e-2)


def test_fill_schemes_match_torch():
    for ours, theirs, args in [
        (init.constant_, nn.init.constant_, (0.3,)),
        (init.ones_, nn.init.ones_, ()),
        (init.zeros_, nn.init.zeros_, ()),
    ]:
        for dtype in (torch.float32, torch.int64):
            a, b = torch.full((4, 5), 7, dtype=dtype), torch.full((4, 5), 7, dtype=dtype)
            assert torch.equal(ours(a, *args), theirs(b, *args))
    for shape in [(3, 5), (5, 3), (4, 4)]:
        assert torch.equal(init.eye_(torch.empty(shape)), nn.init.eye_(torch.empty(shape)))


@pytest.mark.parametrize(
    ("shape", "groups"),
    [((6, 4, 3), 1), ((4, 6, 3, 3), 1), ((6, 2, 3, 4), 3), ((8, 8, 3, 3, 3), 2), ((9, 2, 5), 3)],
)
def test_dirac_matches_torch(shape, groups):
    a, b = torch.randn(shape), torch.randn(shape)
    assert torch.equal(init.dirac_(a, groups), nn.init.dirac_(b, groups))


TORCH_NAMES = [
    "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu",
]  # fmt: skip
TORCH_GAIN_CASES = [(name, None) for name in TORCH_NAMES] + [
    ("leaky_relu", 0.2), ("leaky_relu", 0), ("leaky_relu", 1), ("leaky_relu", 0.01), ("selu", 3),
]  # fmt: skip


@pytest.mark.parametrize(("name", "param"), TORCH_GAIN_CASES)
def test_calculate_gain_matches_torch(name, param):
    assert init.calculate_gain(name, param) == nn.init.calculate_gain(name, param)


@pytest.mark.parametrize("param", [True, "0.2", [0.2]])
def test_calculate_gain_bad_slope_like_torch(param):
    with pytest.raises(ValueError) as theirs:
        nn.init.calculate_gain("leaky_relu", param)
    with pytest.raises(ValueError) as ours:
        init.calculate_gain("leaky_relu", param)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize(
    ("fn", "shape"),
    [
        (init.kaiming_normal_, (5,)),
        (init.kaiming_uniform_, (5,)),
        (init.xavier_normal_, (5,)),
        (init.orthogonal_, (5,)),
        (init.eye_, (3, 3, 3)),
        (init.dirac_, (3, 3)),
        (init.sparse_, (3, 3, 3)),
    ],
)
def test_dimension_errors_like_torch(fn, shape):
    args = (0.1,) if fn is init.sparse_ else ()
    with pytest.raises(ValueError) as theirs:
        getattr(nn.init, fn.__name__)(torch.empty(shape), *args)
    t = torch.randn(shape)
    before = t.clone()
    with pytest.raises(ValueError) as ours:
        fn(t, *args)
    assert torch.equal(t, before)
    if fn not in (init.kaiming_normal_, init.kaiming_uniform_, init.xavier_normal_):
        assert str(ours.value) == str(theirs.value)


def test_dirac_groups_error_like_torch():
    with pytest.raises(ValueError, match="divisible by groups"):
        init.dirac_(torch.empty(5, 2, 3), groups=2)


@pytest.mark.parametrize("name", ["kaiming_normal_", "kaiming_uniform_"])
def test_zero_element_warns_like_torch(name):
    for mod in (nn.init, init):
        t = torch.empty(0, 3)
        with pytest.warns(UserWarning, match="zero-element tensors is a no-op"):
            assert getattr(mod, name)(t) is t


@pytest.mark.parametrize(
    "fn",
    [
        init.xavier_uniform_,
        init.xavier_normal_,
        init.lecun_normal_,
        init.lecun_uniform_,
        init.variance_scaling_,
        init.delta_orthogonal_,
    ],
)
def test_zero_element_warns_and_returns(fn):
    t = torch.empty(4, 0, 3)
    with pytest.warns(UserWarning, match="zero-element tensors is a no-op"):
        assert fn(t) is t


def test_zero_element_silent_where_torch_is():
    for fn in (init.uniform_, init.normal_, init.trunc_normal_, init.truncated_normal_):
        t = torch.empty(0, 4)
        assert fn(t) is t
    assert init.orthogonal_(torch.empty(0, 4)).shape == (0, 4)
    assert init.sparse_(torch.empty(0, 4), 0.5).shape == (0, 4)


# ----------------------------------------------------------------------------- fans= override


def test_fans_override_uses_layout_aware_fans():
    conv_t = nn.ConvTranspose2d(8, 4, 3)
    f = fans(conv_t)
    t = torch.empty_like(conv_t.weight)
    init.kaiming_normal_(t, nonlinearity="relu", fans=f, generator=gen())
    expected = torch.empty_like(t).normal_(0, math.sqrt(2.0) / math.sqrt(f.fan_in), generator=gen())
    assert torch.equal(t, expected)
    init.xavier_uniform_(t, fans=Fans(10, 30), generator=gen())
    bound = math.sqrt(3.0) * math.sqrt(2.0 / 40)
    assert torch.equal(t, torch.empty_like(t).uniform_(-bound, bound, generator=gen()))
    init.variance_scaling_(t, 2.0, "fan_avg", "normal", fans=Fans(10, 30), generator=gen())
    assert torch.equal(t, torch.empty_like(t).normal_(0, math.sqrt(2.0 / 20), generator=gen()))


# ----------------------------------------------------------------------------- truncated normals


def test_truncated_std_constant():
    assert truncated_std(-2.0, 2.0) == pytest.approx(0.87962566103423978, rel=1e-15)
    assert truncated_std(-math.inf, math.inf) == 1.0
    for lo, hi in [(-1.0, 3.0), (3.0, 5.0), (0.1, 0.2), (0.0, math.inf)]:
        assert truncated_std(lo, hi) == pytest.approx(stats.truncnorm.std(lo, hi), rel=1e-8)
    # far in the tail scipy's closed form loses digits (1e-7 at 40): 80-digit references
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 80
    for lo in (31.0, 40.0, 1e3, 1e8):
        a = mpmath.mpf(lo)
        mills = mpmath.npdf(a) / (mpmath.erfc(a / mpmath.sqrt(2)) / 2)
        exact = float(mpmath.sqrt(1 + a * mills - mills**2))
        assert truncated_std(-lo - 1.0, -lo) == pytest.approx(exact, rel=1e-11)
        assert truncated_std(lo, math.inf) == pytest.approx(exact, rel=1e-11)
    assert truncated_std(1e17, 1e17) == 0.0  # an interval below float resolution
    assert truncated_std(0.0, 1e-20) == pytest.approx(1e-20 / math.sqrt(12), rel=1e-12)


@pytest.mark.parametrize(
    ("mean", "std", "a", "b", "n"),
    [
        (0.0, 1.0, -2.0, 2.0, N),  # torch's default: rejection of 4.6%
        (0.5, 2.0, -1.0, 4.0, N),  # asymmetric
        (0.0, 1.0, 0.0, math.inf, N),  # half-normal
        (0.0, 1.0, 3.0, 5.0, N),  # far tail: inverse CDF
        (0.0, 1.0, -8.0, -3.0, N),  # far lower tail (reflected)
        (1.0, 0.5, 1.05, 1.1, N),  # narrow interval
        (0.0, 1.0, 40.0, 41.0, 10**5),  # beyond the float64 CDF: exponential proposal
    ],
)
def test_trunc_normal_distribution(mean, std, a, b, n):
    x = init.trunc_normal_(torch.empty(n, dtype=torch.float64), mean, std, a, b, generator=gen(1))
    assert x.min() >= a and x.max() <= b
    dist = stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)
    assert ks_pvalue(x, dist) > 1e-3


def test_trunc_normal_float32_bounds_and_layouts():
    x = init.trunc_normal_(torch.empty(1000, 1000), std=0.02, a=-0.04, b=0.04, generator=gen())
    assert x.min() >= -0.04 and x.max() <= 0.04
    assert x.std().item() == pytest.approx(0.02 * truncated_std(-2, 2), rel=0.01)
    base = torch.zeros(300, 400)
    view = base.t()  # not contiguous
    init.trunc_normal_(view, generator=gen())
    assert (base != 0).all() and base.abs().max() <= 2
    for dtype in (torch.float16, torch.bfloat16):
        h = init.trunc_normal_(torch.empty(400, 500, dtype=dtype), generator=gen())
        assert h.dtype == dtype and h.abs().max() <= 2 and h.float().std() > 0.85
    meta = torch.empty(10, 10, device="meta")
    assert init.trunc_normal_(meta) is meta


def test_truncated_normals_on_parameters():
    layer = nn.Linear(300, 200)
    init.trunc_normal_(layer.weight, std=0.02, a=-0.04, b=0.04, generator=gen())
    init.truncated_normal_(layer.bias.unsqueeze(0), std=0.1, generator=gen())
    assert layer.weight.requires_grad and layer.weight.grad_fn is None
    assert layer.weight.abs().max() <= 0.04 and layer.bias.abs().max() <= 0.2 / 0.87962566103


def test_trunc_normal_degenerate_interval():
    assert torch.equal(init.trunc_normal_(torch.empty(3, 3), a=0.5, b=0.5), torch.full((3, 3), 0.5))


@pytest.mark.parametrize(
    ("kwargs", "method"),
    [({}, "rejection"), ({"a": 3.0, "b": 5.0}, "inverse CDF"), ({"a": 40.0, "b": 41.0}, "exp")],
)
def test_trunc_normal_reproducible(kwargs, method):
    a = init.trunc_normal_(torch.empty(300, 300), generator=gen(5), **kwargs)
    b = init.trunc_normal_(torch.empty(300, 300), generator=gen(5), **kwargs)
    c = init.trunc_normal_(torch.empty(300, 300), generator=gen(6), **kwargs)
    assert torch.equal(a, b) and not torch.equal(a, c), method


@pytest.mark.parametrize(("std", "lower", "upper"), [(1.0, -2.0, 2.0), (0.05, -1.0, 3.0)])
def test_truncated_normal_std_is_the_std_asked_for(std, lower, upper):
    x = torch.empty(N, dtype=torch.float64)
    init.truncated_normal_(x, std, lower, upper, generator=gen(2))
    assert x.std().item() == pytest.approx(std, rel=0.01)
    s = std / truncated_std(lower, upper)
    assert x.min() >= lower * s and x.max() <= upper * s
    assert ks_pvalue(x, stats.truncnorm(lower, upper, scale=s)) > 1e-3


def test_truncated_normal_reproducible():
    a = init.truncated_normal_(torch.empty(200, 300), 0.1, generator=gen(3))
    b = init.truncated_normal_(torch.empty(200, 300), 0.1, generator=gen(3))
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------- extended schemes


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_variance_scaling_truncated_std_within_one_percent(mode):
    t = torch.empty(1000, 112, 3, 3)  # fan_in 1008, fan_out 9000: 1.008e6 samples
    init.variance_scaling_(t, 2.0, mode, generator=gen(4))
    target = math.sqrt(2.0 / fans(t).fan(mode))
    assert t.std().item() == pytest.approx(target, rel=0.01)
    s = target / 0.87962566103423978
    assert t.abs().max() <= 2 * s * (1 + 1e-6)
    assert ks_pvalue(t, stats.truncnorm(-2, 2, scale=s)) > 1e-3


def test_variance_scaling_normal_and_uniform():
    t = torch.empty(1000, 1000)
    init.variance_scaling_(t, 3.0, "fan_out", "normal", generator=gen())
    assert torch.equal(t, torch.empty_like(t).normal_(0, math.sqrt(3e-3), generator=gen()))
    assert ks_pvalue(t, stats.norm(scale=math.sqrt(3e-3))) > 1e-3
    init.variance_scaling_(t, 3.0, "fan_in", "uniform", generator=gen())
    limit = math.sqrt(9e-3)
    assert t.abs().max() <= limit
    assert ks_pvalue(t, stats.uniform(-limit, 2 * limit)) > 1e-3


def test_lecun_schemes():
    a, b = torch.empty(500, 2000), torch.empty(500, 2000)
    init.lecun_normal_(a, generator=gen())
    init.variance_scaling_(b, 1.0, "fan_in", "truncated_normal", generator=gen())
    assert torch.equal(a, b)
    assert a.std().item() == pytest.approx(math.sqrt(1 / 2000), rel=0.01)
    init.lecun_uniform_(a, generator=gen())
    init.variance_scaling_(b, 1.0, "fan_in", "uniform", generator=gen())
    assert torch.equal(a, b)
    assert a.abs().max() <= math.sqrt(3 / 2000)
    init.lecun_normal_(a, fans=Fans(8, 1), generator=gen())
    assert a.std().item() == pytest.approx(math.sqrt(1 / 8), rel=0.01)


def test_distributions_of_drop_ins():
    t = torch.empty(N)
    assert ks_pvalue(init.uniform_(t, -1, 3, generator=gen()), stats.uniform(-1, 4)) > 1e-3
    assert ks_pvalue(init.normal_(t, 1, 2, generator=gen()), stats.norm(1, 2)) > 1e-3
    w = init.kaiming_normal_(torch.empty(1000, 1000), nonlinearity="relu", generator=gen())
    assert ks_pvalue(w, stats.norm(scale=math.sqrt(2 / 1000))) > 1e-3


@pytest.mark.parametrize("shape", [(16, 8, 3), (16, 16, 3, 3), (12, 5, 3, 3, 3), (8, 8, 2, 4)])
def test_delta_orthogonal(shape):
    t = init.delta_orthogonal_(torch.randn(shape), gain=1.5, generator=gen())
    centre = tuple(k // 2 for k in shape[2:])
    h = t[(slice(None), slice(None), *centre)]
    torch.testing.assert_close(h.T @ h, 2.25 * torch.eye(shape[1]), atol=1e-5, rtol=0)
    rest = t.clone()
    rest[(slice(None), slice(None), *centre)] = 0
    assert not rest.any()
    again = init.delta_orthogonal_(torch.empty(shape), gain=1.5, generator=gen())
    assert torch.equal(t, again)


def test_delta_orthogonal_errors():
    for shape, match in [((4, 8, 3, 3), "out_channels >= in_channels"), ((4, 4), "3-, 4- or 5-D")]:
        t = torch.randn(shape)
        before = t.clone()
        with pytest.raises(ValueError, match=match):
            init.delta_orthogonal_(t)
        assert torch.equal(t, before)


# ----------------------------------------------------------------------------- sparse_


def test_sparse_zeros_per_column_and_values():
    rows, cols, sparsity = 50, 400, 0.13
    t = init.sparse_(torch.empty(rows, cols), sparsity, std=0.5, generator=gen())
    assert ((t == 0).sum(0) == math.ceil(sparsity * rows)).all()
    ref = torch.empty(rows, cols).normal_(0, 0.5, generator=gen())
    assert torch.equal(t[t != 0], ref[t != 0])  # non-zeros are torch's draws


def test_sparse_mask_from_generator_and_uniform():
    state = torch.get_rng_state()
    a = init.sparse_(torch.empty(40, 20000), 0.1, generator=gen(9))
    b = init.sparse_(torch.empty(40, 20000), 0.1, generator=gen(9))
    assert torch.equal(torch.get_rng_state(), state)  # torch's sparse_ draws the mask globally
    assert torch.equal(a, b)
    counts = (a == 0).sum(1).double().numpy()  # per row: Binomial(20000, 0.1) if uniform
    assert stats.chisquare(counts).pvalue > 1e-3
    assert np.isclose(counts.sum(), 4 * 20000)


@pytest.mark.parametrize(("sparsity", "zeros"), [(0.3, 2), (0.6, 4)])  # 0.6: the non-zeros drawn
def test_sparse_zero_sets_uniform(sparsity, zeros):
    t = init.sparse_(torch.empty(6, 30000), sparsity, generator=gen(11))
    zero = (t == 0).T
    assert (zero.sum(1) == zeros).all()
    codes = (zero.long() << torch.arange(6)).sum(1)  # one code per subset of the 6 rows
    counts = torch.bincount(codes, minlength=64)
    counts = counts[counts > 0].numpy()
    assert len(counts) == math.comb(6, zeros)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_sparse_edge_sparsities():
    t = init.sparse_(torch.empty(10, 6), 0.0, generator=gen())
    assert (t != 0).all()
    t = init.sparse_(torch.empty(10, 6), 0.95, generator=gen())
    assert ((t == 0).sum(0) == 10).all()


# ----------------------------------------------------------------------------- bad input

INT = torch.arange(12).reshape(3, 4)
BOOL = torch.ones(3, 4, dtype=torch.bool)
BAD_INPUT = [
    (init.uniform_, (INT,), {}, TypeError, "floating-point or complex"),
    (init.normal_, (BOOL,), {}, TypeError, "floating-point or complex"),
    (init.trunc_normal_, (INT,), {}, TypeError, "floating-point"),
    (init.truncated_normal_, (BOOL,), {}, TypeError, "floating-point"),
    (init.xavier_uniform_, (INT,), {}, TypeError, "dtype"),
    (init.kaiming_normal_, (INT,), {}, TypeError, "dtype"),
    (init.orthogonal_, (INT,), {}, TypeError, "dtype"),
    (init.sparse_, (INT, 0.1), {}, TypeError, "dtype"),
    (init.lecun_normal_, (BOOL,), {}, TypeError, "dtype"),
    (init.variance_scaling_, (INT,), {}, TypeError, "dtype"),
    (init.delta_orthogonal_, (INT.reshape(3, 2, 2),), {}, TypeError, "dtype"),
    (init.normal_, (None,), {"std": -1.0}, ValueError, "std must be >= 0"),
    (init.trunc_normal_, (None,), {"std": -0.1}, ValueError, "std must be > 0"),
    (init.trunc_normal_, (None,), {"std": 0.0}, ValueError, "std must be > 0"),
    (init.trunc_normal_, (None,), {"a": 1.0, "b": -1.0}, ValueError, "a <= b"),
    (init.trunc_normal_, (None,), {"mean": math.nan}, ValueError, "mean must be a finite number"),
    (init.truncated_normal_, (None,), {"std": -1.0}, ValueError, "std must be > 0"),
    (init.trunc_normal_, (None,), {"std": math.inf}, ValueError, "std must be a finite number"),
    (init.truncated_normal_, (None,), {"std": math.inf}, ValueError, "std must be a finite"),
    (init.truncated_normal_, (None,), {"lower": 2.0, "upper": 2.0}, ValueError, "lower < upper"),
    (init.sparse_, (None, 0.1), {"std": -1.0}, ValueError, "std must be >= 0"),
    (init.sparse_, (None, 1.5), {}, ValueError, "sparsity must be in \\[0, 1\\]"),
    (init.sparse_, (None, -0.1), {}, ValueError, "sparsity must be >= 0"),
    (init.kaiming_uniform_, (None,), {"mode": "fan_avg"}, ValueError, "mode must be one of"),
    (init.variance_scaling_, (None,), {"mode": "fan_sum"}, ValueError, "mode must be one of"),
    (init.variance_scaling_, (None,), {"distribution": "gauss"}, ValueError, "distribution"),
    (init.variance_scaling_, (None,), {"scale": 0.0}, ValueError, "scale must be > 0"),
    (init.variance_scaling_, (None,), {"scale": math.inf}, ValueError, "scale must be a finite"),
    (init.kaiming_normal_, (None,), {"nonlinearity": "no_such_act"}, ValueError, "no_such_act"),
    (init.kaiming_normal_, (None,), {"a": True}, TypeError, "a must be a real number"),
    (init.xavier_normal_, (None,), {"fans": (3, 4)}, TypeError, "fans must be"),
    (init.lecun_normal_, (None,), {"fans": Fans(0, 4)}, ValueError, "fan_in > 0"),
    (init.lecun_uniform_, (torch.randn(5),), {}, ValueError, "at least 2 dims"),
    (init.variance_scaling_, (torch.randn(5),), {}, ValueError, "at least 2 dims"),
    (init.xavier_uniform_, (torch.randn(5),), {}, ValueError, "at least 2 dims"),
]


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "exc", "match"),
    BAD_INPUT,
    ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(BAD_INPUT)],
)
def test_bad_input_raises_before_touching(fn, args, kwargs, exc, match):
    if args[0] is not None:
        tensor = args[0].clone()
    else:
        tensor = torch.randn(6, 4) if fn is init.sparse_ else torch.randn(6, 4, 3)
    before = tensor.clone()
    with pytest.raises(exc, match=match):
        fn(tensor, *args[1:], **kwargs)
    assert torch.equal(tensor.view(torch.uint8), before.view(torch.uint8))


def test_not_a_tensor():
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        init.normal_([1.0, 2.0])


# ----------------------------------------------------------------------------- registry


def test_registry():
    expected = {
        "uniform", "normal", "trunc_normal", "constant", "ones", "zeros", "eye", "dirac",
        "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal",
        "sparse", "lecun_normal", "lecun_uniform", "variance_scaling", "truncated_normal",
        "delta_orthogonal", "he_normal", "he_uniform", "glorot_normal", "glorot_uniform",
        "he_truncated_normal", "glorot_truncated_normal",
    }  # fmt: skip
    assert set(init.SCHEMES) == expected
    for name, fn in init.SCHEMES.items():
        assert init.get_scheme(name) is fn
    assert init.get_scheme("he_normal") is init.kaiming_normal_
    assert init.get_scheme("glorot_uniform") is init.xavier_uniform_
    assert init.get_scheme("kaiming_normal_") is init.kaiming_normal_
    with pytest.raises(ValueError, match="valid names: kaiming_normal, ") as err:
        init.get_scheme("kaimng_normal")
    assert "delta_orthogonal" in str(err.value)
    with pytest.raises(TypeError, match="name must be a str"):
        init.get_scheme(3)
    with pytest.raises(TypeError):
        init.SCHEMES["mine"] = init.normal_


def test_package_exports():
    for name in init.__all__:
        if name not in ("he_truncated_normal_", "glorot_truncated_normal_"):  # init.* only
            assert getattr(initscope, name) is getattr(init, name)
    assert initscope.init is init


def test_textbook_init_weights_example():
    """The textbook ``init_weights`` loop, written with initscope instead of torch.nn.init."""

    def init_weights(module):
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            initscope.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                initscope.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            initscope.ones_(module.weight)
            initscope.zeros_(module.bias)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU())
    model.apply(init_weights)
    assert model[0].weight.std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.02)
    assert not model[2].bias.any()
