"""PyTorch's own contract for ``torch.nn.init`` (its ``TestNNInit`` suite), held against
``initscope.init``: names, signatures, warnings, errors and statistics, case by case.

Written from the contract, not copied: random sizes come from a seeded ``random.Random``, values
from seeded generators, and every statistical check is a KS test at p > 1e-4 as in torch's suite.
"""

import inspect
import math
import random
import string

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from initscope import init

P_MIN = 1e-4
TORCH_PUBLIC = [
    "calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
    "eye_", "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
    "orthogonal_", "sparse_", "uniform", "normal", "constant", "eye", "dirac", "xavier_uniform",
    "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "sparse",
]  # fmt: skip


@pytest.fixture
def rng():
    return random.Random(123)


def sized(rng, dims, low, high, dtype=torch.float32):
    return torch.zeros([rng.randint(low, high) for _ in range(dims)], dtype=dtype)


def ks(tensor, dist):
    return stats.kstest(tensor.double().ravel().numpy(), dist.cdf).pvalue


def fans_of(t):
    rf = t[0, 0].numel() if t.dim() > 2 else 1
    return t.size(1) * rf, t.size(0) * rf


# ----------------------------------------------------------------------------- names, signatures


@pytest.mark.parametrize("name", TORCH_PUBLIC)
def test_every_torch_name_exists_with_torch_parameters(name):
    ours, theirs = getattr(init, name), getattr(torch.nn.init, name)
    if name.endswith("_") or name == "calculate_gain":
        a = list(inspect.signature(ours).parameters.values())
        b = list(inspect.signature(theirs).parameters.values())
        assert [(p.name, p.kind, p.default) for p in a[: len(b)]] == [
            (p.name, p.kind, p.default) for p in b
        ]
        assert all(p.default is not inspect.Parameter.empty for p in a[len(b) :])


# ----------------------------------------------------------------------------- calculate_gain


@pytest.mark.parametrize(
    "name",
    ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
     "conv_transpose3d"],
)  # fmt: skip
def test_calculate_gain_linear(name):
    assert init.calculate_gain(name) == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [("sigmoid", 1), ("tanh", 1.6666666666666667), ("relu", 1.4142135623730951),
     ("leaky_relu", 1.4141428569978354), ("selu", 0.75)],
)  # fmt: skip
def test_calculate_gain_nonlinear(name, value):
    assert init.calculate_gain(name) == value


@pytest.mark.parametrize(
    ("param", "value"),
    [(None, 1.4141428569978354), (0, 1.4142135623730951), (0.01, 1.4141428569978354),
     (10, 0.14071950894605836)],
)  # fmt: skip
def test_calculate_gain_leaky_relu(param, value):
    assert init.calculate_gain("leaky_relu", param) == value


@pytest.mark.parametrize("param", [True, [1], {"a": "b"}])
def test_calculate_gain_leaky_relu_only_accepts_numbers(param):
    with pytest.raises(ValueError):
        init.calculate_gain("leaky_relu", param)


@pytest.mark.parametrize("length", [2, 5, 25])
def test_calculate_gain_only_accepts_valid_nonlinearities(rng, length):
    name = "".join(rng.choice(string.ascii_lowercase) for _ in range(length))
    with pytest.raises(ValueError):
        init.calculate_gain(name)


# ----------------------------------------------------------------------------- simple fills


@pytest.mark.parametrize("dims", [1, 2, 4])
def test_uniform(rng, dims):
    t = sized(rng, dims, 30, 50)
    a = rng.uniform(-3, 3)
    b = a + rng.uniform(1, 5)
    init.uniform_(t, a=a, b=b, generator=torch.Generator().manual_seed(dims))
    assert ks(t, stats.uniform(a, b - a)) > P_MIN


@pytest.mark.parametrize("dims", [1, 2, 4])
def test_normal(rng, dims):
    t = sized(rng, dims, 30, 50)
    mean, std = rng.uniform(-3, 3), rng.uniform(1, 5)
    init.normal_(t, mean=mean, std=std, generator=torch.Generator().manual_seed(dims))
    assert ks(t, stats.norm(mean, std)) > P_MIN


def test_trunc_normal_generator_is_the_global_stream():
    ours = init.trunc_normal_(torch.empty(5), generator=torch.Generator().manual_seed(42))
    torch.manual_seed(42)
    ref = init.trunc_normal_(torch.empty(5))
    assert torch.equal(ours, ref)
    big = init.trunc_normal_(torch.empty(20000), generator=torch.Generator().manual_seed(42))
    assert ks(big, stats.truncnorm(-2, 2)) > P_MIN


@pytest.mark.parametrize("dims", [1, 2, 4])
def test_constant(rng, dims):
    t = sized(rng, dims, 1, 5)
    val = rng.uniform(1, 10)
    init.constant_(t, val)
    assert torch.equal(t, t.clone().fill_(val))


@pytest.mark.parametrize(("fn", "val"), [(init.ones_, 1), (init.zeros_, 0)])
@pytest.mark.parametrize("dims", [1, 2, 4])
def test_ones_and_zeros(rng, fn, val, dims):
    t = sized(rng, dims, 1, 5) + 7
    fn(t)
    assert torch.equal(t, torch.full_like(t, val))


def test_eye(rng):
    t = sized(rng, 2, 1, 5) + 3
    init.eye_(t)
    rows, cols = t.shape
    assert torch.equal(t, torch.tensor([[float(i == j) for j in range(cols)] for i in range(rows)]))


@pytest.mark.parametrize("dims", [1, 3])
def test_eye_only_works_on_2d_inputs(rng, dims):
    with pytest.raises(ValueError):
        init.eye_(sized(rng, dims, 1, 3))


# ----------------------------------------------------------------------------- dirac


@pytest.mark.parametrize("dims", [3, 4, 5])
@pytest.mark.parametrize("groups", [1, 2, 3])
def test_dirac_properties(rng, dims, groups):
    a, c, d, e = (rng.randint(1, 5) for _ in range(4))
    b = rng.randint(1, 5 * groups)
    t = torch.randn((a * groups, b, c, d, e)[:dims])
    init.dirac_(t, groups)
    ones = min(t.size(0) // groups, t.size(1)) * groups
    assert torch.count_nonzero(t).item() == ones
    assert t.sum().item() == ones


@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize(
    ("conv", "spatial"), [(F.conv1d, 1), (F.conv2d, 2), (F.conv3d, 3)], ids=["1d", "2d", "3d"]
)
def test_dirac_identity(groups, conv, spatial):
    batch, in_c, out_c, size, k = 8, 3, 9, 5, 3
    per_group = out_c // groups
    x = torch.randn(batch, in_c, *([size] * spatial))
    w = torch.cat([torch.zeros(per_group, in_c, *([k] * spatial))] * groups)
    init.dirac_(w, groups)
    y = conv(x, w)
    inner = (slice(None), slice(None), *([slice(1, -1)] * spatial))
    for g in range(groups):
        start = per_group * g
        assert torch.equal(x[inner], y[:, start : start + in_c])  # inputs preserved
        assert not y[:, start + in_c : per_group * (g + 1)].any()  # the extra outputs are 0


@pytest.mark.parametrize("dims", [1, 2, 6])
def test_dirac_only_works_on_3_4_5d_inputs(rng, dims):
    with pytest.raises(ValueError):
        init.dirac_(sized(rng, dims, 1, 3))


# ----------------------------------------------------------------------------- fan-based


@pytest.mark.parametrize(
    "fn", [init.xavier_uniform_, init.xavier_normal_, init.kaiming_uniform_, init.kaiming_normal_]
)
@pytest.mark.parametrize("dims", [0, 1])
def test_fan_based_errors_on_inputs_smaller_than_2d(rng, fn, dims):
    with pytest.raises(ValueError):
        fn(sized(rng, dims, 1, 1))


@pytest.mark.parametrize("fn", [init.kaiming_uniform_, init.kaiming_normal_])
def test_kaiming_warning_on_0element_tensor(fn):
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        fn(torch.empty(0, 1))


@pytest.mark.parametrize("use_gain", [True, False])
@pytest.mark.parametrize("dims", [2, 4])
@pytest.mark.parametrize("uniform", [True, False], ids=["uniform", "normal"])
def test_xavier(rng, use_gain, dims, uniform):
    t = sized(rng, dims, 20, 25)
    gain = rng.uniform(0.1, 2) if use_gain else 1
    fn = init.xavier_uniform_ if uniform else init.xavier_normal_
    g = torch.Generator().manual_seed(dims)
    fn(t, gain=gain, generator=g) if use_gain else fn(t, generator=g)
    fan_in, fan_out = fans_of(t)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    bound = std * math.sqrt(3)
    dist = stats.uniform(-bound, 2 * bound) if uniform else stats.norm(0, std)
    assert ks(t, dist) > P_MIN


@pytest.mark.parametrize("use_a", [True, False])
@pytest.mark.parametrize("dims", [2, 4])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("uniform", [True, False], ids=["uniform", "normal"])
def test_kaiming(rng, use_a, dims, mode, uniform):
    t = sized(rng, dims, 20, 25)
    a = rng.uniform(0.1, 2) if use_a else 0
    fn = init.kaiming_uniform_ if uniform else init.kaiming_normal_
    g = torch.Generator().manual_seed(dims)
    fn(t, a=a, mode=mode, generator=g) if use_a else fn(t, mode=mode, generator=g)
    fan_in, fan_out = fans_of(t)
    std = math.sqrt(2.0 / ((1 + a**2) * (fan_in if mode == "fan_in" else fan_out)))
    bound = std * math.sqrt(3.0)
    dist = stats.uniform(-bound, 2 * bound) if uniform else stats.norm(0, std)
    assert ks(t, dist) > P_MIN


# ----------------------------------------------------------------------------- sparse, orthogonal


@pytest.mark.parametrize("dims", [1, 3])
def test_sparse_only_works_on_2d_inputs(rng, dims):
    with pytest.raises(ValueError):
        init.sparse_(sized(rng, dims, 1, 3), rng.uniform(0.1, 0.9))


@pytest.mark.parametrize("use_random_std", [True, False])
def test_sparse_default_std(rng, use_random_std):
    t = sized(rng, 2, 30, 35)
    sparsity = rng.uniform(0.1, 0.2)
    g = torch.Generator().manual_seed(1)
    if use_random_std:
        std = rng.uniform(0.01, 0.2)
        init.sparse_(t, sparsity=sparsity, std=std, generator=g)
    else:
        std = 0.01
        init.sparse_(t, sparsity=sparsity, generator=g)
    assert bool(((t == 0).sum(0) >= math.ceil(sparsity * t.size(0))).all())
    assert ks(t[t != 0], stats.norm(0, std)) > P_MIN


@pytest.mark.parametrize("use_gain", [True, False])
@pytest.mark.parametrize("shape", [[3, 4], [4, 3], [20, 2, 3, 4], [2, 3, 4, 5]])
def test_orthogonal(rng, use_gain, shape):
    t = torch.zeros(shape)
    gain = rng.uniform(0.1, 2) if use_gain else 1.0
    init.orthogonal_(t, gain=gain) if use_gain else init.orthogonal_(t)
    rows, cols = shape[0], math.prod(shape[1:])
    flat = t.view(rows, cols)
    gram = flat.t() @ flat if rows > cols else flat @ flat.t()
    torch.testing.assert_close(gram, torch.eye(min(rows, cols)) * gain**2, atol=1e-6, rtol=0)


def test_deprecation():
    with pytest.warns(FutureWarning, match="deprecated"):
        init.normal(torch.randn(3, 3))


# ----------------------------------------------------------------------------- trunc_normal_


def _trunc_ks(t, mean, std, a, b):
    return ks((t.double() - mean) / std, stats.truncnorm((a - mean) / std, (b - mean) / std))


@pytest.mark.parametrize("dims", [1, 2, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_trunc_normal_all_dtypes(rng, dims, dtype):
    t = sized(rng, dims, 30, 50, dtype)
    mean, std = rng.uniform(-3, 3), rng.uniform(0.01, 1)
    a, b = rng.uniform(mean - 2 * std, mean), rng.uniform(mean, mean + 2 * std)
    init.trunc_normal_(t, mean=mean, std=std, a=a, b=b, generator=torch.Generator().manual_seed(3))
    lo, hi = (torch.tensor(v, dtype=dtype).item() for v in (a, b))
    assert t.min().item() >= lo and t.max().item() <= hi
    assert _trunc_ks(t, mean, std, a, b) > P_MIN


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_trunc_normal_low_precision(dtype):
    t = init.trunc_normal_(
        torch.empty(10000, dtype=dtype), generator=torch.Generator().manual_seed(4)
    )
    assert t.min().item() >= -2.0 and t.max().item() <= 2.0
    assert _trunc_ks(t, 0.0, 1.0, -2.0, 2.0) > P_MIN


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_trunc_normal_narrow_interval(dtype):
    t = torch.empty(10000, dtype=dtype)
    init.trunc_normal_(t, 0.0, 1.0, 2.0, 3.0, generator=torch.Generator().manual_seed(5))
    assert t.min().item() >= 2.0 and t.max().item() <= 3.0
    assert _trunc_ks(t, 0.0, 1.0, 2.0, 3.0) > P_MIN


@pytest.mark.parametrize(
    ("dtype", "min_unique"),
    [(torch.float32, 5000), (torch.float64, 5000), (torch.float16, 3000), (torch.bfloat16, 1000)],
)
def test_trunc_normal_unique_values(dtype, min_unique):
    t = init.trunc_normal_(
        torch.empty(10000, dtype=dtype), generator=torch.Generator().manual_seed(6)
    )
    assert t.min().item() >= -2.0 and t.max().item() <= 2.0
    assert t.unique().numel() > min_unique
    assert not t.isinf().any() and not t.isnan().any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_trunc_normal_no_boundary_values_small_std(dtype):
    t = torch.empty(10000, dtype=dtype)
    init.trunc_normal_(
        t, mean=0.0, std=0.1, a=-2.0, b=2.0, generator=torch.Generator().manual_seed(7)
    )
    assert (t == -2.0).sum().item() == 0 and (t == 2.0).sum().item() == 0
