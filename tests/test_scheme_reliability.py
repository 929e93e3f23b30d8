"""Bad and edge inputs of the schemes, fans and gains: a clear error naming the argument, raised
before the tensor is touched, or torch's behaviour where torch's value is valid."""

import math
import warnings

import pytest
import torch
from helpers import gen
from torch import nn
from torch.nn.utils import parametrizations
from torch.overrides import TorchFunctionMode

import initscope
from initscope import Fans, fans, init
from initscope.policy import choice
from initscope.policy._choice import Choice

NAN, INF = math.nan, math.inf


# (function, positional args after the tensor, kwargs, exception, message naming the argument)
REJECTED = [
    (init.orthogonal_, (), {"gain": NAN}, ValueError, "gain must be a finite number, got nan"),
    (init.orthogonal_, (), {"gain": INF}, ValueError, "gain must be a finite"),
    (init.orthogonal_, (), {"gain": None}, TypeError, "gain must be a real number, got NoneType"),
    (init.orthogonal_, (), {"gain": "2"}, TypeError, "gain must be a real number, got str"),
    (init.kaiming_normal_, (), {"a": INF}, ValueError, "a must be a finite number, got inf"),
    (init.kaiming_normal_, (), {"a": NAN}, ValueError, "a must be a finite number, got nan"),
    (init.kaiming_uniform_, (), {"a": NAN}, ValueError, "a must be a finite number"),
    (init.kaiming_uniform_, (), {"a": NAN, "nonlinearity": "relu"}, ValueError, "a must be"),
    (init.kaiming_normal_, (), {"a": None}, TypeError, "a must be a real number"),
    (init.xavier_uniform_, (), {"gain": -1}, ValueError, "gain must be >= 0, got -1"),
    (init.xavier_normal_, (), {"gain": NAN}, ValueError, "gain must be a finite"),
    (init.xavier_normal_, (), {"gain": "1"}, TypeError, "gain must be a real number"),
    (init.uniform_, (), {"a": NAN}, ValueError, "a must be a finite"),
    (init.uniform_, (), {"b": INF}, ValueError, "b must be a finite"),
    (init.uniform_, (), {"a": 2.0, "b": 1.0}, ValueError, "need a <= b"),
    (init.normal_, (), {"mean": INF}, ValueError, "mean must be a finite"),
    (init.normal_, (), {"std": NAN}, ValueError, "std must be a finite"),
    (init.normal_, (), {"std": INF}, ValueError, "std must be a finite"),
    (init.trunc_normal_, (), {"mean": NAN}, ValueError, "mean must be a finite"),
    (init.trunc_normal_, (), {"a": NAN}, ValueError, "a must be a finite"),
    (init.trunc_normal_, (), {"a": INF}, ValueError, "a < inf"),
    (init.truncated_normal_, (), {"lower": NAN}, ValueError, "lower must be a finite"),
    (init.constant_, (NAN,), {}, ValueError, "val must be a finite number"),
    (init.constant_, (-INF,), {}, ValueError, "val must be a finite number"),
    (init.constant_, ("x",), {}, TypeError, "val must be a number"),
    (init.variance_scaling_, (), {"scale": NAN}, ValueError, "scale must be a finite"),
    (init.variance_scaling_, (), {"scale": -1.0}, ValueError, "scale must be > 0"),
    (init.delta_orthogonal_, (), {"gain": NAN}, ValueError, "gain must be a finite"),
    (init.dirac_, (), {"groups": 0}, ValueError, "groups must be >= 1, got 0"),
    (init.dirac_, (), {"groups": -2}, ValueError, "groups must be >= 1"),
    (init.dirac_, (), {"groups": 1.5}, TypeError, "groups must be an int"),
    (init.sparse_, (2.0,), {}, ValueError, "sparsity must be in \\[0, 1\\], got 2"),
    (init.sparse_, (NAN,), {}, ValueError, "sparsity must be a finite"),
    (init.sparse_, (0.1,), {"std": NAN}, ValueError, "std must be a finite"),
]


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "exc", "match"),
    REJECTED,
    ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(REJECTED)],
)
def test_bad_argument_is_named_and_nothing_is_written(fn, args, kwargs, exc, match):
    shape = {init.sparse_: (8, 6), init.dirac_: (4, 2, 3, 3), init.delta_orthogonal_: (4, 2, 3)}
    tensor = torch.randn(shape.get(fn, (8, 6)), generator=gen())
    before = tensor.clone()
    with pytest.raises(exc, match=match):
        fn(tensor, *args, **kwargs)
    assert torch.equal(tensor, before)


def test_torch_valid_values_stay_valid():
    t = torch.empty(40, 30)
    init.orthogonal_(t, gain=-2.0, generator=gen())  # a negative gain flips the sign, as in torch
    ref = torch.empty(40, 30)
    torch.nn.init.orthogonal_(ref, gain=-2.0, generator=gen())
    assert torch.equal(t, ref)
    init.xavier_uniform_(t, gain=0)  # zero gain: zeros, as torch
    assert not t.any()
    init.kaiming_normal_(t, a=-0.2, generator=gen())  # the slope's sign does not matter
    ref = torch.nn.init.kaiming_normal_(torch.empty(40, 30), a=-0.2, generator=gen())
    assert torch.equal(t, ref)
    init.uniform_(t, 1.5, 1.5)
    assert bool((t == 1.5).all())
    init.trunc_normal_(t, a=-INF, b=0.0, generator=gen())  # a half-normal
    assert t.max() <= 0 and t.min() > -10


def test_trunc_normal_mean_far_outside_the_bounds():
    t = torch.empty(1000, dtype=torch.float64)
    init.trunc_normal_(t, mean=1e17, generator=gen())  # 1e17 std above b: every value is b
    assert bool((t == 2.0).all())
    init.trunc_normal_(t, mean=-1e17, std=3.0, a=-1.0, b=5.0, generator=gen())
    assert -1.0 <= t.min() and t.max() < -1.0 + 1e-15  # within 3 / 3.3e16 of a
    init.trunc_normal_(t, mean=0.0, std=1e20, a=0.0, b=1.0, generator=gen())  # flat: uniform
    assert 0 <= t.min() and t.max() <= 1 and abs(t.mean().item() - 0.5) < 0.05
    init.trunc_normal_(t, mean=0.0, std=1.0, a=40.0, b=41.0, generator=gen())  # the tail
    assert 40 <= t.min() and t.max() <= 41 and t.mean().item() == pytest.approx(40.025, abs=3e-3)


def test_sparse_all_zero_like_torch():
    w = torch.randn(7, 5)
    assert init.sparse_(w, 1.0, generator=gen()) is w and not w.any()
    ref = torch.randn(7, 5)
    torch.nn.init.sparse_(ref, 1.0)
    assert not ref.any()


# ----------------------------------------------------------------------------- plans and rules


def _mlp():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize(
    ("scheme", "kwargs", "exc", "match"),
    [
        ("sparse", {"sparsity": 2}, ValueError, "sparsity must be in \\[0, 1\\]"),
        ("orthogonal", {"gain": None}, TypeError, "gain must be a real number, got NoneType"),
        ("xavier_normal", {"gain": NAN}, ValueError, "gain must be a finite"),
        ("normal", {"std": INF}, ValueError, "std must be a finite"),
        ("kaiming_uniform", {"a": NAN}, ValueError, "a must be a finite"),
        ("dirac", {"groups": 0}, ValueError, "groups must be >= 1"),
    ],
)
def test_choice_names_the_bad_argument(scheme, kwargs, exc, match):
    model = nn.Sequential(nn.Conv2d(2, 4, 3)) if scheme == "dirac" else _mlp()
    layer = initscope.inspect_model(model)[0]
    with pytest.raises(exc, match=match):
        choice(layer, "weight", scheme, **kwargs)


# ----------------------------------------------------------------------------- calculate_gain


@pytest.mark.parametrize(
    ("spellings", "value"),
    [
        (["sigmoid", "Sigmoid", nn.Sigmoid(), torch.sigmoid], 1.0),
        (["tanh", "Tanh", " TANH ", nn.Tanh(), torch.tanh], 5.0 / 3),
        (["selu", "SELU", nn.SELU(), torch.selu], 0.75),
        (["relu", "ReLU", nn.ReLU(), torch.relu], math.sqrt(2.0)),
        (["linear", "identity", "conv2d", nn.Identity()], 1.0),
    ],
)
def test_calculate_gain_one_name_one_answer(spellings, value):
    assert {init.calculate_gain(s) for s in spellings} == {value}
    exact = {init.calculate_gain(s, exact=True) for s in spellings}
    assert len(exact) == 1
    assert exact.pop() == pytest.approx(initscope.gain(spellings[0]), rel=1e-12)


def test_calculate_gain_leaky_relu_spellings_and_slopes():
    expected = math.sqrt(2.0 / (1 + 0.2**2))
    assert init.calculate_gain("leaky_relu", 0.2) == expected
    assert init.calculate_gain("LeakyReLU", 0.2) == expected
    assert init.calculate_gain(nn.LeakyReLU(0.2)) == expected
    assert init.kaiming_normal_(torch.empty(64, 400), a=0.2, nonlinearity="Leaky_ReLU",
                                generator=gen()).equal(
        torch.nn.init.kaiming_normal_(torch.empty(64, 400), a=0.2, generator=gen())
    )  # fmt: skip
    for bad in (NAN, INF, -INF):
        with pytest.raises(ValueError, match="must be finite"):
            init.calculate_gain("leaky_relu", bad)
    with pytest.raises(TypeError, match="exact must be a bool"):
        init.calculate_gain("relu", exact="yes")


def test_calculate_gain_beyond_the_table_is_exact():
    assert init.calculate_gain("gelu") == initscope.gain("gelu")
    assert init.calculate_gain(nn.GELU()) == initscope.gain("gelu")
    assert init.calculate_gain("sigmoid", exact=True) == pytest.approx(1.8462, abs=1e-4)


# ----------------------------------------------------------------------------- fans


def test_fans_do_not_advance_spectral_norm():
    torch.manual_seed(0)
    model = parametrizations.spectral_norm(nn.Linear(6, 4))
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert fans(model) == Fans(6, 4)
    assert choice(initscope.inspect_model(model)[0], "weight", "he").fans == Fans(6, 4)
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in state.items())
    assert model.training and model.parametrizations.weight[0].training
    _ = model.weight  # reading the weight itself runs a power iteration (the bar above)
    assert not torch.equal(state["parametrizations.weight.0._u"], model.state_dict()[
        "parametrizations.weight.0._u"])  # fmt: skip


def test_fans_of_parametrized_stored_tensors_follow_the_module_layout():
    conv = parametrizations.weight_norm(nn.ConvTranspose2d(8, 12, 4, stride=2, groups=4))
    assert fans(conv, "parametrizations.weight.original1") == Fans(32, 48, 16)
    assert fans(nn.Sequential(conv), "0.parametrizations.weight.original1") == Fans(32, 48, 16)
    assert fans(conv) == Fans(32, 48, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecates the hook-based versions
        legacy = torch.nn.utils.weight_norm(nn.ConvTranspose2d(8, 12, 4, stride=2, groups=4))
        spectral = torch.nn.utils.spectral_norm(nn.Conv2d(8, 12, 3, groups=4))
    assert fans(legacy, "weight_v") == Fans(32, 48, 16)
    assert fans(spectral, "weight_orig") == Fans(18, 27, 9)


def test_fans_axes_errors_and_jax_options():
    with pytest.raises(TypeError, match="in_axis must be an int or a non-empty sequence"):
        fans(torch.empty(3, 4), in_axis=1.0)
    with pytest.raises(TypeError, match="out_axis must be"):
        fans(torch.empty(3, 4), out_axis="0")
    # JAX: batch axes are left out of every fan
    assert fans(torch.empty(5, 3, 4), batch_axis=0) == Fans(4, 3, 1)
    assert fans(torch.empty(5, 4, 3, 7), in_axis=1, out_axis=2, batch_axis=0) == Fans(28, 21, 7)
    with pytest.raises(ValueError, match="batch_axis"):
        fans(torch.empty(5, 4, 3), in_axis=1, out_axis=2, batch_axis=1)
    with pytest.raises(ValueError, match="at least 2 dims besides batch_axis"):
        fans(torch.empty(5, 4), batch_axis=0)
    f = Fans(8, 32)
    assert f.fan("fan_geo_avg") == 16.0 == f.fan_geo_avg
    t = init.variance_scaling_(torch.empty(200, 800), 1.0, "fan_geo_avg", "uniform", fans=f,
                               generator=gen())  # fmt: skip
    assert t.std().item() == pytest.approx(1 / 4, rel=0.01)


# ----------------------------------------------------------------------------- drop-in gaps

DEPRECATED = [
    ("uniform", ()), ("normal", ()), ("constant", (0.5,)), ("eye", ()), ("dirac", ()),
    ("xavier_uniform", ()), ("xavier_normal", ()), ("kaiming_uniform", ()),
    ("kaiming_normal", ()), ("orthogonal", ()), ("sparse", (0.1,)),
]  # fmt: skip


@pytest.mark.parametrize(("old", "args"), DEPRECATED)
def test_deprecated_aliases_warn_like_torch(old, args):
    shape = (4, 4, 3) if old == "dirac" else (6, 4)
    ours, theirs = torch.zeros(shape), torch.zeros(shape)
    torch.manual_seed(0)
    with pytest.warns(FutureWarning, match=f"`initscope.init.{old}` is now deprecated in favor "
                      f"of `initscope.init.{old}_`") as ours_w:  # fmt: skip
        assert getattr(init, old)(ours, *args) is ours
    torch.manual_seed(0)
    with pytest.warns(FutureWarning, match="deprecated") as torch_w:
        getattr(torch.nn.init, old)(theirs, *args)
    assert ours_w[0].filename == torch_w[0].filename == __file__  # stacklevel: the caller
    if old != "sparse":  # torch draws sparse_'s mask from the global RNG, initscope from one draw
        assert torch.equal(ours, theirs)
    assert getattr(init, old).__name__ == old


class Tagged(torch.Tensor):
    calls: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.calls.append(getattr(func, "__name__", str(func)))
        return super().__torch_function__(func, types, args, kwargs or {})


PUBLIC = [
    (init.uniform_, ()), (init.normal_, ()), (init.trunc_normal_, ()), (init.constant_, (0.3,)),
    (init.ones_, ()), (init.zeros_, ()), (init.eye_, ()), (init.xavier_uniform_, ()),
    (init.xavier_normal_, ()), (init.kaiming_uniform_, ()), (init.kaiming_normal_, ()),
    (init.orthogonal_, ()), (init.sparse_, (0.5,)), (init.lecun_normal_, ()),
    (init.lecun_uniform_, ()), (init.variance_scaling_, ()), (init.truncated_normal_, ()),
    (init.he_truncated_normal_, ()), (init.glorot_truncated_normal_, ()),
]  # fmt: skip


@pytest.mark.parametrize(("fn", "args"), PUBLIC, ids=[f.__name__ for f, _ in PUBLIC])
def test_torch_function_subclass_and_mode_intercept(fn, args):
    t = torch.zeros(6, 4).as_subclass(Tagged)
    Tagged.calls.clear()
    out = fn(t, *args)
    assert Tagged.calls[0] == fn.__name__ and isinstance(out, Tagged) and out is not None

    class Recording(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.seen.append(func)
            return func(*args, **(kwargs or {}))

    plain = torch.zeros(6, 4)
    with Recording() as mode:
        fn(plain, *args)
    assert mode.seen[0] is fn


def test_dirac_and_delta_orthogonal_dispatch():
    for fn in (init.dirac_, init.delta_orthogonal_):
        Tagged.calls.clear()
        fn(torch.zeros(4, 4, 3).as_subclass(Tagged))
        assert Tagged.calls[0] == fn.__name__


def test_untruncated_and_truncated_names():
    n = 400 * 500
    w = init.variance_scaling_(torch.empty(400, 500), 2.0, "fan_in", "normal", generator=gen())
    assert w.abs().max().item() > 2.5 * math.sqrt(2 / 500)  # JAX's "normal": not truncated
    k = init.variance_scaling_(torch.empty(400, 500), 2.0, "fan_in", "untruncated_normal",
                               generator=gen())  # fmt: skip
    assert torch.equal(w, k)  # Keras 3's name for the same draw
    for fn, std in (
        (init.he_truncated_normal_, math.sqrt(2 / 500)),
        (init.glorot_truncated_normal_, math.sqrt(2 / 900)),
    ):
        t = fn(torch.empty(400, 500, dtype=torch.float64), generator=gen())
        assert t.abs().max().item() <= 2 * std / 0.87962566103423978 + 1e-12  # truncated at 2
        assert t.std().item() == pytest.approx(std, rel=5 / math.sqrt(n))
        assert init.get_scheme(fn.__name__) is fn
    assert init.get_scheme("he_normal") is init.kaiming_normal_  # torch's untruncated draw
    assert init.get_scheme("glorot_normal") is init.xavier_normal_
    c = Choice("he_truncated_normal")
    w = torch.empty(64, 32)
    c.apply(w, gen())
    assert torch.equal(w, init.he_truncated_normal_(torch.empty(64, 32), generator=gen()))


@pytest.mark.parametrize(
    ("rule", "exc", "match"),
    [
        (("0.weight", "orthogonal", {"gain": None}), TypeError, "gain must be a real number"),
        (("0.weight", "orthogonal", {"gain": NAN}), ValueError, "gain must be a finite"),
        (("0.weight", "normal", {"std": INF}), ValueError, "std must be a finite"),
        (("0.weight", "sparse", {"sparsity": 2}), ValueError, "sparsity must be in \\[0, 1\\]"),
    ],
)
def test_bad_rule_arguments_raise_before_the_model_changes(rule, exc, match):
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(exc, match=match):
        initscope.initialize(model, rules=[rule], generator=gen())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
