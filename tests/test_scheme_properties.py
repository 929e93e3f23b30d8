"""Property test over the public scheme functions: random shapes, dtypes and argument values,
non-finite and mistyped ones included. Each call either returns the tensor, filled as documented,
or raises ValueError/TypeError naming the argument, with the tensor bit-identical."""

import inspect
import math
import warnings

import pytest
import torch

from initscope import init

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the test extra")
st = hypothesis.strategies

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -1.0, None, "1"]
NUMBERS = st.one_of(
    st.floats(-50, 50, allow_nan=False), st.integers(-3, 3), st.sampled_from(SPECIAL)
)
POSITIVE = st.one_of(st.floats(0.01, 5), st.sampled_from(SPECIAL))
SHAPES = st.lists(st.integers(0, 7), min_size=0, max_size=5).map(tuple)

# scheme -> strategies of its keyword arguments
ARGS = {
    init.uniform_: {"a": NUMBERS, "b": NUMBERS},
    init.normal_: {"mean": NUMBERS, "std": POSITIVE},
    init.trunc_normal_: {"mean": NUMBERS, "std": POSITIVE, "a": NUMBERS, "b": NUMBERS},
    init.constant_: {"val": NUMBERS},
    init.ones_: {},
    init.zeros_: {},
    init.eye_: {},
    init.dirac_: {"groups": st.one_of(st.integers(-1, 3), st.sampled_from([1.5, None]))},
    init.xavier_uniform_: {"gain": NUMBERS},
    init.xavier_normal_: {"gain": NUMBERS},
    init.kaiming_uniform_: {
        "a": NUMBERS,
        "mode": st.sampled_from(["fan_in", "fan_out", "fan_avg"]),
        "nonlinearity": st.sampled_from(["relu", "leaky_relu", "tanh", "gelu", "Sigmoid", "x"]),
    },
    init.kaiming_normal_: {"a": NUMBERS, "mode": st.sampled_from(["fan_in", "FAN_OUT"])},
    init.orthogonal_: {"gain": NUMBERS},
    init.sparse_: {
        "sparsity": st.one_of(st.floats(-0.5, 1.5), st.sampled_from(SPECIAL)),
        "std": POSITIVE,
    },  # fmt: skip
    init.lecun_normal_: {},
    init.lecun_uniform_: {},
    init.variance_scaling_: {
        "scale": POSITIVE,
        "mode": st.sampled_from(["fan_in", "fan_out", "fan_avg", "fan_geo_avg", "fan_sum"]),
        "distribution": st.sampled_from(["truncated_normal", "normal", "uniform", "gauss"]),
    },
    init.truncated_normal_: {"std": POSITIVE, "lower": NUMBERS, "upper": NUMBERS},
    init.delta_orthogonal_: {"gain": NUMBERS},
    init.he_truncated_normal_: {},
    init.glorot_truncated_normal_: {},
}
REQUIRED = {init.sparse_: ("sparsity", 0.3), init.constant_: ("val", 0.5)}
# bounds of a truncated normal may be infinite (a half-normal, a one-sided tail)
INFINITE_OK = {
    (init.trunc_normal_, "a", -math.inf), (init.trunc_normal_, "b", math.inf),
    (init.truncated_normal_, "lower", -math.inf), (init.truncated_normal_, "upper", math.inf),
}  # fmt: skip
# words an error about the tensor itself may use instead of an argument's name
TENSOR_WORDS = ("tensor", "dimensions", "dims", "shape", "out_channels", "fan_in > 0")


@st.composite
def calls(draw):
    fn = draw(st.sampled_from(list(ARGS)))
    kwargs = {k: draw(v) for k, v in ARGS[fn].items() if draw(st.booleans())}
    return fn, draw(SHAPES), draw(st.sampled_from(DTYPES)), kwargs


NUMERIC = {"a", "b", "mean", "std", "val", "gain", "sparsity", "scale", "lower", "upper", "groups"}


def _finite_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_values(fn, t, kw):
    """What the documentation promises for a successful call (values only; no statistics on
    these small tensors but the support and the exact structure)."""
    v = t.double()
    if fn is init.constant_:
        assert bool((t == torch.tensor(kw["val"], dtype=t.dtype)).all())
        return
    if t.numel() and fn is not init.orthogonal_:  # orthogonal: every value is finite too
        assert bool(torch.isfinite(v).all()), fn.__name__
    if fn is init.uniform_:
        a, b = kw.get("a", 0.0), kw.get("b", 1.0)
        assert bool(((v >= a - 1e-2 * abs(a) - 1e-3) & (v <= b + 1e-2 * abs(b) + 1e-3)).all())
    elif fn is init.trunc_normal_:
        a, b = kw.get("a", -2.0), kw.get("b", 2.0)
        lo, hi = (torch.tensor(x, dtype=t.dtype).double().item() for x in (a, b))
        assert bool(((v >= lo) & (v <= hi)).all())
    elif fn in (init.ones_, init.zeros_):
        assert bool((v == (1.0 if fn is init.ones_ else 0.0)).all())
    elif fn in (init.eye_, init.dirac_):
        assert bool(((v == 0) | (v == 1)).all())
    elif fn is init.sparse_ and t.numel():
        zeros = math.ceil(float(kw["sparsity"]) * t.size(0))
        assert bool(((t == 0).sum(0) >= zeros).all())
    elif fn is init.orthogonal_ and t.numel() and t.dtype in (torch.float32, torch.float64):
        flat = v.reshape(t.size(0), -1)
        gram = flat @ flat.T if flat.size(0) <= flat.size(1) else flat.T @ flat
        gain = float(kw.get("gain", 1))
        torch.testing.assert_close(gram, torch.eye(gram.size(0)).double() * gain**2,
                                   atol=1e-4 * max(1.0, gain**2), rtol=0)  # fmt: skip


@hypothesis.settings(max_examples=300, deadline=None, derandomize=True)
@hypothesis.given(calls())
def test_each_call_fills_as_documented_or_names_the_bad_argument(call):
    fn, shape, dtype, kwargs = call
    if fn in REQUIRED:
        kwargs.setdefault(*REQUIRED[fn])
    tensor = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    before = tensor.clone()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Initializing zero-element tensors is a no-op")
            if "generator" in inspect.signature(fn).parameters:
                kwargs["generator"] = torch.Generator().manual_seed(1)
            out = fn(tensor, **kwargs)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        named = [k for k in kwargs if k in message] + [w for w in TENSOR_WORDS if w in message]
        assert named, f"{fn.__name__}({kwargs}) on {shape} {dtype}: {message!r} names nothing"
        assert torch.equal(tensor, before), f"{fn.__name__} wrote before raising {message!r}"
        return
    assert out is tensor
    numbers = [v for k, v in kwargs.items() if k in NUMERIC and (fn, k, v) not in INFINITE_OK]
    assert all(_finite_number(v) for v in numbers), f"{fn.__name__} accepted {kwargs}"
    _check_values(fn, tensor, kwargs)
