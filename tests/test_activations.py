"""The activation resolver: names, modules, functionals, callables, and their errors."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initscope import theory
from initscope.activations import (
    Activation,
    NotDifferentiableError,
    from_function,
    from_module,
    names,
    resolve,
    torch_gain,
)

X = torch.linspace(-7.5, 7.5, 301, dtype=torch.float64)  # avoids the kinks 0, +-1, +-3, 6 exactly

# name, param, the torch function it must equal (float64), domain restriction
TORCH_EQUIVALENT = [
    ("relu", None, F.relu),
    ("leaky_relu", 0.2, lambda x: F.leaky_relu(x, 0.2)),
    ("leaky_relu", -0.3, lambda x: F.leaky_relu(x, -0.3)),
    ("elu", 0.5, lambda x: F.elu(x, 0.5)),
    ("celu", 2.0, lambda x: F.celu(x, 2.0)),
    ("selu", None, F.selu),
    ("gelu", None, F.gelu),
    ("gelu_tanh", None, lambda x: F.gelu(x, approximate="tanh")),
    ("silu", None, F.silu),
    ("mish", None, F.mish),
    ("softplus", 2.0, lambda x: F.softplus(x, beta=2.0)),
    ("sigmoid", None, torch.sigmoid),
    ("tanh", None, torch.tanh),
    ("hardtanh", 2.0, lambda x: F.hardtanh(x, -2.0, 2.0)),
    ("hardsigmoid", None, F.hardsigmoid),
    ("hardswish", None, F.hardswish),
    ("relu6", None, F.relu6),
    ("softsign", None, F.softsign),
    ("logsigmoid", None, F.logsigmoid),
    ("sin", None, torch.sin),
    ("linear", None, lambda x: x),
]


def test_every_name_is_covered_here():
    assert {n for n, _, _ in TORCH_EQUIVALENT} == set(names())


@pytest.mark.parametrize(
    ("name", "param", "fn"), TORCH_EQUIVALENT, ids=[f"{n}-{p}" for n, p, _ in TORCH_EQUIVALENT]
)
def test_numpy_function_and_derivative_match_torch(name, param, fn):
    act = resolve(name, param)
    x = X.clone().requires_grad_(True)
    y = fn(x)
    (dy,) = torch.autograd.grad(y.sum(), x)
    np.testing.assert_allclose(act.f(X.numpy()), y.detach().numpy(), rtol=1e-13, atol=1e-13)
    # torch's float64 hardsigmoid backward uses the float32 constant 1/6 = 0.16666667163...
    rtol = 1e-7 if name == "hardsigmoid" else 1e-12
    np.testing.assert_allclose(act.df(X.numpy()), dy.numpy(), rtol=rtol, atol=1e-13)


def test_defaults_aliases_and_labels():
    assert resolve("leaky_relu").param == 0.01
    assert resolve("elu").param == resolve("celu").param == resolve("softplus").param == 1.0
    assert resolve("relu").param is None
    assert resolve("swish") is resolve("silu")
    assert resolve("identity") is resolve("linear") is resolve("conv2d")
    assert resolve("Leaky-ReLU", 0.2) is resolve("leaky_relu", 0.2)
    assert resolve("leaky_relu", 0.2).label() == "leaky_relu(0.2)"
    assert resolve("relu").label() == "relu"
    assert resolve("tanh").bounds == (-1.0, 1.0)
    assert resolve("relu6").bounds == (0.0, 6.0) and resolve("relu6").kinks == (0.0, 6.0)
    assert resolve("gelu").bounds == (None, None) and resolve("gelu").kinks == ()
    act = resolve("selu")
    assert resolve(act) is act


@pytest.mark.parametrize(
    ("module", "label"),
    [
        (nn.ReLU(), "relu"),
        (nn.LeakyReLU(0.2), "leaky_relu(0.2)"),
        (nn.LeakyReLU(), "leaky_relu(0.01)"),
        (nn.ELU(alpha=0.5), "elu(0.5)"),
        (nn.CELU(alpha=0.7), "celu(0.7)"),
        (nn.SELU(), "selu"),
        (nn.GELU(), "gelu"),
        (nn.GELU(approximate="tanh"), "gelu_tanh"),
        (nn.SiLU(), "silu"),
        (nn.Mish(), "mish"),
        (nn.Softplus(beta=2), "softplus(2)"),
        (nn.Sigmoid(), "sigmoid"),
        (nn.Tanh(), "tanh"),
        (nn.Hardtanh(), "hardtanh(1)"),
        (nn.Hardtanh(-2, 2), "hardtanh(2)"),
        (nn.Hardtanh(-1, 3), "hardtanh(-1, 3)"),
        (nn.ReLU6(), "relu6"),
        (nn.Hardsigmoid(), "hardsigmoid"),
        (nn.Hardswish(), "hardswish"),
        (nn.Softsign(), "softsign"),
        (nn.LogSigmoid(), "logsigmoid"),
        (nn.Identity(), "linear"),
        (nn.PReLU(), "leaky_relu(0.25)"),
    ],
)
def test_modules_read_their_parameters(module, label):
    assert from_module(module).label() == label
    assert resolve(module) is from_module(module)


def test_asymmetric_hardtanh_matches_torch():
    act = resolve(nn.Hardtanh(-1, 3))
    assert act.kinks == (-1.0, 3.0) and act.bounds == (-1.0, 3.0)
    np.testing.assert_array_equal(act.f(X.numpy()), F.hardtanh(X, -1, 3).numpy())


def test_prelu_and_rrelu_slopes():
    prelu = nn.PReLU(num_parameters=3)
    with torch.no_grad():
        prelu.weight.copy_(torch.tensor([0.1, 0.2, 0.3]))
    rms = math.sqrt((0.01 + 0.04 + 0.09) / 3)
    assert from_module(prelu).param == pytest.approx(rms, rel=1e-7)
    rrelu = nn.RReLU(0.1, 0.3)
    assert from_module(rrelu).param == pytest.approx(math.sqrt((0.01 + 0.03 + 0.09) / 3))
    assert from_module(rrelu.eval()).param == pytest.approx(0.2)


def test_non_activation_modules():
    assert from_module(nn.Linear(3, 3)) is None
    assert from_module(nn.Softmax(dim=-1)) is None
    with pytest.raises(TypeError, match="Linear is not a known activation"):
        resolve(nn.Linear(3, 3))
    with pytest.raises(TypeError, match="nn.Module"):
        from_module("relu")


def test_from_function_reads_call_arguments():
    x = torch.zeros(3)
    assert from_function(F.relu, (x,)).label() == "relu"
    assert from_function(torch.relu, (x,)).label() == "relu"
    assert from_function(F.relu_, (x,)).label() == "relu"
    assert from_function(F.leaky_relu, (x, 0.2)).label() == "leaky_relu(0.2)"
    assert from_function(F.leaky_relu, (x,), {"negative_slope": 0.3}).label() == "leaky_relu(0.3)"
    assert from_function(F.leaky_relu, (x,)).label() == "leaky_relu(0.01)"
    assert from_function(F.gelu, (x,), {"approximate": "tanh"}).label() == "gelu_tanh"
    assert from_function(F.gelu, (x,)).label() == "gelu"
    assert from_function(F.elu, (x, 0.5)).label() == "elu(0.5)"
    assert from_function(F.softplus, (x,), {"beta": 3}).label() == "softplus(3)"
    assert from_function(F.hardtanh, (x, -2.0, 2.0)).label() == "hardtanh(2)"
    assert (
        from_function(F.hardtanh, (x,), {"min_val": 0.0, "max_val": 6.0}).label()
        == "hardtanh(0, 6)"
    )
    assert from_function(torch.sigmoid, (x,)).label() == "sigmoid"
    assert from_function(torch.tanh, (x,)).label() == "tanh"
    assert from_function(F.silu, (x,)).label() == "silu"
    assert from_function(F.mish, (x,)).label() == "mish"
    assert from_function(F.selu, (x,)).label() == "selu"
    assert from_function(torch.sin, (x,)).label() == "sin"
    for method in ("relu", "relu_", "tanh", "sigmoid"):
        assert from_function(method).name == method.rstrip("_")
    assert from_function("add") is None
    assert from_function(torch.add, (x, x)) is None
    assert from_function(F.linear, (x, x)) is None
    assert from_function(F.leaky_relu, (x, object())) is None  # a slope that is not a constant


def test_resolve_torch_functions_with_param():
    assert resolve(torch.tanh) is resolve("tanh")
    assert resolve(F.leaky_relu, 0.3) is resolve("leaky_relu", 0.3)
    assert resolve(F.gelu) is resolve("gelu")


def test_callable_uses_autograd_and_matches_the_named_version():
    act = resolve(lambda x: x * torch.sigmoid(x))
    assert act.name.startswith("custom:")
    np.testing.assert_allclose(act.df(X.numpy()), resolve("silu").df(X.numpy()), rtol=1e-13)
    got, ref = theory.moments(act, 2.0), theory.moments("silu", 2.0)
    for field in ("mean", "second", "variance", "deriv_second"):
        assert getattr(got, field) == pytest.approx(getattr(ref, field), rel=1e-13)


def test_constant_callable_has_zero_derivative():
    act = resolve(lambda x: torch.ones_like(x))
    m = theory.moments(act, 1.0)
    assert m.second == pytest.approx(1.0, rel=1e-13) and m.deriv_second == 0.0


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.detach() * 2,
        lambda x: torch.from_numpy(np.tanh(x.detach().numpy())),
    ],
    ids=["detached", "numpy"],
)
def test_callable_autograd_cannot_differentiate_is_named(fn):
    # forward quantities need no derivative; the rest say why they cannot be computed
    assert theory.gain(fn) == pytest.approx(
        0.5 if fn(torch.ones(1)).item() == 2 else theory.gain("tanh"), rel=1e-12
    )
    assert theory.c_forward(fn) > 0
    for call in (
        lambda: theory.gain(fn, "backward"),
        lambda: theory.gain(fn, "average"),
        lambda: theory.c_backward(fn),
        lambda: theory.moments(fn),
        lambda: theory.chi1(fn, 1.0, 0.0),
    ):
        with pytest.raises(ValueError, match="autograd cannot differentiate it"):
            call()
    with pytest.raises(NotDifferentiableError):
        resolve(fn).df(np.linspace(-1, 1, 5))


@pytest.mark.parametrize(
    ("fn", "what"),
    [
        (lambda x: 1 / x, "E\\[f\\(z\\)\\^2\\]"),
        (lambda x: 1 / (x - 0.3), "E\\[f\\(z\\)\\^2\\]"),
        (lambda x: torch.abs(x) ** -0.5, "E\\[f\\(z\\)\\^2\\]"),
        (lambda x: torch.sqrt(torch.abs(x)), "E\\[f'\\(z\\)\\^2\\]"),
    ],
    ids=["1/x", "1/(x-0.3)", "|x|^-0.5", "sqrt|x| (f' diverges)"],
)
@pytest.mark.parametrize("q", [0.37, 1.0, 2.9])
def test_diverging_moment_is_detected_and_named(fn, what, q):
    with pytest.raises(ValueError, match=f"{what} for z ~ N\\(0, q={q:g}\\) diverges"):
        theory.gain(fn, "average", q=q)


@pytest.mark.parametrize(
    ("fn", "exact"),
    [
        (lambda x: torch.relu(x - 0.3), None),  # a kink between quadrature panels
        (lambda x: torch.clamp(x, -1, 2), None),
        (lambda x: torch.where(x > 0.7, 1.0, -0.5) * x, None),  # a jump
        (lambda x: torch.abs(x) ** 0.7, None),  # singular f', integrable f'^2
        (lambda x: torch.relu(x), "relu"),
        (lambda x: torch.tanh(x), "tanh"),
    ],
)
@pytest.mark.parametrize("q", [0.37, 1.3, 7.1])
def test_convergent_callables_are_not_flagged(fn, exact, q):
    g = theory.gain(fn, "average", q=q)
    assert math.isfinite(g) and g > 0
    if exact is not None:
        assert g == pytest.approx(theory.gain(exact, "average", q=q), rel=1e-9)


def test_two_callables_are_not_confused_by_the_cache():
    assert theory.moments(lambda x: 2 * x).second == pytest.approx(4.0, rel=1e-13)
    assert theory.moments(lambda x: 3 * x).second == pytest.approx(9.0, rel=1e-13)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda x: x.sum(), "not elementwise"),
        (lambda x: 1 / 0, "ZeroDivisionError"),
        (lambda x: x.numpy(), "expected a torch.Tensor"),
        (lambda x: torch.exp(x), "not finite"),
    ],
)
def test_bad_callables_name_the_activation_and_q(fn, message):
    with pytest.raises(ValueError, match=message) as info:
        theory.moments(fn, 1e4)
    assert "custom:" in str(info.value) and "q=10000" in str(info.value)


def test_fast_growing_callable_is_caught_before_overflow():
    with pytest.raises(ValueError, match=r"q=100.*do not converge"):
        theory.moments(lambda x: torch.exp(x), 100.0)


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="did you mean 'relu'") as info:
        resolve("relux")
    assert "valid names:" in str(info.value) and "gelu" in str(info.value)
    with pytest.raises(ValueError, match="'gelu'"):
        resolve("gleu")


def test_bad_parameters():
    with pytest.raises(ValueError, match="takes no parameter"):
        resolve("relu", 0.3)
    with pytest.raises(ValueError, match="must be > 0"):
        resolve("softplus", 0.0)
    with pytest.raises(ValueError, match="must be > 0"):
        resolve("celu", -1.0)
    with pytest.raises(ValueError, match="finite"):
        resolve("leaky_relu", float("nan"))
    with pytest.raises(TypeError, match="real number"):
        resolve("leaky_relu", True)
    with pytest.raises(TypeError, match="real number"):
        resolve("leaky_relu", "0.2")
    with pytest.raises(ValueError, match="min_val must be < max_val"):
        from_function(F.hardtanh, (torch.zeros(1), 1.0, 1.0))
    with pytest.raises(ValueError, match="carries its own parameters"):
        resolve(nn.LeakyReLU(0.2), 0.1)
    with pytest.raises(ValueError, match="already an Activation"):
        resolve(resolve("relu"), 0.1)
    with pytest.raises(ValueError, match="only names"):
        resolve(lambda x: x, 0.1)
    with pytest.raises(TypeError, match="expected a name"):
        resolve(3.0)


def test_activation_is_callable_and_hashable():
    act = resolve("relu")
    np.testing.assert_array_equal(act(np.array([-1.0, 2.0])), [0.0, 2.0])
    assert {act: 1}[resolve(nn.ReLU())] == 1
    custom = Activation("custom:double", None, lambda x: 2 * x, lambda x: np.full_like(x, 2.0))
    assert theory.moments(custom, 0.5).second == pytest.approx(2.0, rel=1e-13)


@pytest.mark.parametrize(
    ("name", "param"),
    [
        ("linear", None),
        ("sigmoid", None),
        ("tanh", None),
        ("relu", None),
        ("selu", None),
        ("leaky_relu", None),
        ("leaky_relu", 0.2),
        ("conv2d", None),
    ],
)
def test_torch_gain_is_torchs_table(name, param):
    assert torch_gain(name, param) == nn.init.calculate_gain(name, param)


def test_torch_gain_is_none_outside_torchs_table():
    assert torch_gain("gelu") is None and torch_gain(nn.Mish()) is None


def test_diverging_derivative_leaves_forward_gain_finite():
    f = lambda x: torch.sqrt(torch.abs(x))  # noqa: E731
    assert theory.gain(f) == pytest.approx((2 / math.pi) ** -0.25, rel=1e-6)  # E|z| = sqrt(2/pi)
    with pytest.raises(ValueError, match="E\\[f'\\(z\\)\\^2\\] for z ~ N\\(0, q=1\\) diverges"):
        theory.c_backward(f)
