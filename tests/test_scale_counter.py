"""The counter-based generator (Philox-4x32-10): known answers, distributions, invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from initscope.init import SCHEMES, get_scheme
from initscope.init._philox import block_values, philox4x32
from initscope.init.counter import counter_fill_, counter_spec, key_words
from initscope.init.shards import Region, local_region

KEY = key_words(7, "w")


def fill(shape, scheme: str, params=None, dtype=torch.float32, key=KEY, rows=None) -> torch.Tensor:
    t = torch.full(shape, float("nan"), dtype=dtype)
    counter_fill_(local_region(t, "t"), scheme, params or {}, None, rows, key)
    return t


def box(shape, offsets, sizes, scheme, params=None, dtype=torch.float32) -> torch.Tensor:
    t = torch.full(sizes, float("nan"), dtype=dtype)
    counter_fill_(Region(t, tuple(shape), tuple(offsets)), scheme, params or {}, None, None, KEY)
    return t


# Random123's known-answer vectors for philox4x32-10 (Salmon et al. 2011).
@pytest.mark.parametrize(
    ("counter", "key", "expected"),
    [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((2**32 - 1,) * 4, (2**32 - 1,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
)
def test_philox_matches_the_known_answers(counter, key, expected) -> None:
    assert philox4x32(counter, key) == expected
    as_tensor = philox4x32((torch.tensor([counter[0]]), *counter[1:]), key)
    assert tuple(int(w) for w in as_tensor) == expected


@pytest.mark.parametrize("stream", [0, 3])
@pytest.mark.parametrize("start", [0, 12345, 2**32 - 2, 2**40 + 3])
def test_in_place_words_match_the_reference(start, stream) -> None:
    """Both counter forms (a run of blocks, and explicit block indices), constants folded."""
    from initscope.init._philox import Workspace, _counter, _philox_, _rows

    ws = Workspace(8, torch.device("cpu"))
    blocks = torch.arange(start, start + 5)
    ref = philox4x32((blocks & 0xFFFFFFFF, blocks >> 32, stream, 0), KEY)
    for run, given in ((start, None), (None, blocks)):
        v = ws.take(5)
        words = _rows(v, _philox_(v.words, _counter(v, run, given, 5, stream), KEY))
        assert all(torch.equal(a & 0xFFFFFFFF, b) for a, b in zip(words, ref, strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normal_and_uniform_distributions(dtype) -> None:
    n = 1 << 18
    z = (
        block_values(
            "normal", torch.arange(n // (4 if dtype == torch.float32 else 2)), KEY, 0, dtype
        )
        .reshape(-1)
        .double()
        .numpy()
    )
    assert stats.kstest(z, "norm").pvalue > 1e-3
    se = 1 / math.sqrt(n)
    assert abs(z.mean()) < 5 * se and abs(z.var() - 1) < 5 * math.sqrt(2) * se
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n)
    # lanes are independent: neighbours (same block, same Box-Muller pair) are uncorrelated
    assert abs(np.corrcoef(z[0::2], z[1::2])[0, 1]) < 5 / math.sqrt(n / 2)
    assert abs(np.corrcoef(z[0::4] ** 2, z[1::4] ** 2)[0, 1]) < 5 / math.sqrt(n / 4)
    u = fill((n,), "uniform", {"a": -1.0, "b": 3.0}, dtype).double().numpy()
    assert stats.kstest(u, "uniform", args=(-1, 4)).pvalue > 1e-3
    assert u.min() >= -1 and u.max() < 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_muller_matches_its_formula(dtype) -> None:
    """Every number is ``r cos`` / ``r sin`` of its words' radius and angle, to a few ulps
    (library ``log``, ``sin``, ``cos`` in float64 as the reference)."""
    from initscope.init._philox import Workspace, _counter, _philox_, _rows

    n = 4096
    ws = Workspace(n, torch.device("cpu"), dtype)
    v = ws.take(n)
    words = [w & 0xFFFFFFFF for w in _rows(v, _philox_(v.words, _counter(v, 0, None, n, 0), KEY))]
    z = block_values("normal", torch.arange(n), KEY, 0, dtype).double()
    if dtype == torch.float32:
        pairs = [(words[2 * j], words[2 * j + 1]) for j in range(2)]
        bits, tol = 24, 3e-6
        radius = [(r & 0xFFFFFF) | 1 for r, _ in pairs]
        angle = [a & 0xFFFFFF for _, a in pairs]
        signs = [r >> 24 for r, _ in pairs]
        top = 128
    else:
        bits, tol = 53, 1e-14
        radius = [((words[0] << 21) | (words[1] >> 11)) | 1]
        angle = [(words[2] << 21) | (words[3] >> 11)]
        signs = [words[1] & 0x7FF]
        top = 1024
    for j in range(len(radius)):
        u = radius[j].double() * 2.0**-bits
        r = torch.sqrt(-2 * torch.log(u))
        phi = 2 * (angle[j].double() * 2.0**-bits * math.pi / 4)
        sx = torch.where(signs[j] & top > 0, -1.0, 1.0)  # a set bit is a minus sign
        sy = torch.where(signs[j] & (top // 2) > 0, -1.0, 1.0)
        assert torch.allclose(z[:, 2 * j], sx * r * torch.cos(phi), rtol=tol, atol=tol)
        assert torch.allclose(z[:, 2 * j + 1], sy * r * torch.sin(phi), rtol=tol, atol=tol)


@pytest.mark.parametrize(
    ("scheme", "params", "shape"),
    [
        ("normal", {"mean": 0.5, "std": 2.0}, (256, 256)),
        ("xavier_uniform", {"gain": 1.5}, (300, 200)),
        ("xavier_normal", {}, (300, 200)),
        ("kaiming_uniform", {"a": math.sqrt(5)}, (256, 64, 3)),
        ("kaiming_normal", {"mode": "fan_out", "nonlinearity": "relu"}, (256, 128)),
        ("lecun_normal", {}, (256, 256)),
        ("lecun_uniform", {}, (256, 256)),
        ("variance_scaling", {"scale": 2.0, "mode": "fan_avg"}, (128, 512)),
        ("variance_scaling", {"distribution": "normal"}, (128, 512)),
        ("truncated_normal", {"std": 0.02, "lower": -1.0, "upper": 3.0}, (256, 256)),
        ("trunc_normal", {"mean": 0.1, "std": 0.5, "a": -0.3, "b": 1.0}, (256, 256)),
        ("variance_scaling", {"scale": 2.0, "distribution": "untruncated_normal"}, (256, 256)),
        ("variance_scaling", {"mode": "fan_out", "distribution": "uniform"}, (128, 512)),
        ("he_truncated_normal", {}, (256, 64, 3)),
        ("glorot_truncated_normal", {}, (128, 512)),
        ("kaiming_normal", {"mode": "FAN_OUT"}, (256, 128)),
    ],
)
def test_every_scheme_draws_the_eager_distribution(scheme, params, shape) -> None:
    """Two-sample KS: the counter draw against the scheme itself on torch's generator."""
    eager = torch.empty(shape)
    get_scheme(scheme)(eager, **params, generator=torch.Generator().manual_seed(1))
    ours = fill(shape, scheme, params)
    assert not ours.isnan().any()
    assert stats.ks_2samp(ours.ravel().numpy(), eager.ravel().numpy()).pvalue > 1e-3
    spec = counter_spec(scheme, params, None, shape)
    if spec.family == "uniform":
        assert spec.args["a"] <= ours.min() and ours.max() < spec.args["b"]
        assert eager.min() >= spec.args["a"] and eager.max() <= spec.args["b"]
    if spec.family == "truncated":
        lo = spec.args["mean"] + spec.args["alpha"] * spec.args["std"]
        hi = spec.args["mean"] + spec.args["beta"] * spec.args["std"]
        assert lo <= ours.min() and ours.max() <= hi
        assert lo - 1e-6 <= eager.min() and eager.max() <= hi + 1e-6


def test_truncated_normal_bounds_and_moments() -> None:
    t = fill((1 << 18,), "truncated_normal", {"std": 0.5, "lower": -2.0, "upper": 2.0})
    s = 0.5 / 0.87962566103423978
    assert t.min() >= -2 * s and t.max() <= 2 * s
    x = t.double().numpy() / s
    assert stats.kstest(x, stats.truncnorm(-2, 2).cdf).pvalue > 1e-3
    assert abs(t.double().std().item() - 0.5) < 5 * 0.5 / math.sqrt(2 * len(x))
    with pytest.raises(ValueError, match="probability >= 0.3"):
        counter_spec("trunc_normal", {"mean": 0.0, "std": 1.0, "a": 2.0, "b": 3.0}, None, (4, 4))


@pytest.mark.parametrize("shape", [(64, 64), (32, 96), (96, 32), (48, 8, 3)])
def test_orthogonal(shape) -> None:
    w = fill(shape, "orthogonal", {"gain": 2.0}, torch.float64)
    m = w.reshape(shape[0], -1)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    assert torch.allclose(gram, 4 * torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-10)
    assert torch.equal(w, fill(shape, "orthogonal", {"gain": 2.0}, torch.float64))


def test_patterns_and_sparse() -> None:
    assert torch.equal(fill((3, 5), "eye"), torch.eye(3, 5))
    d = fill((4, 2, 3), "dirac", {"groups": 2})
    assert d.sum() == 4 and d[:, :, 1].sum() == 4
    s = fill((50, 40), "sparse", {"sparsity": 0.3, "std": 0.1})
    assert ((s == 0).sum(0) == 15).all()
    q = fill((6, 4, 3), "delta_orthogonal")
    centre = q[:, :, 1]
    assert torch.allclose(centre.T @ centre, torch.eye(4), atol=1e-6)
    assert q[:, :, [0, 2]].abs().sum() == 0


@pytest.mark.parametrize(
    "scheme",
    ["normal", "uniform", "truncated_normal", "orthogonal", "sparse", "eye", "xavier_normal"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_every_box_holds_the_values_of_the_whole(scheme, dtype) -> None:
    """Any shard (rows, columns, an inner block, unaligned) is a slice of the unsharded fill."""
    shape = (37, 29)
    params = {"sparsity": 0.25} if scheme == "sparse" else {}
    whole = fill(shape, scheme, params, dtype)
    for offsets, sizes in (
        ((0, 0), (37, 29)),
        ((5, 0), (11, 29)),
        ((0, 3), (37, 13)),
        ((7, 9), (13, 17)),
        ((36, 28), (1, 1)),
    ):
        part = box(shape, offsets, sizes, scheme, params, dtype)
        expected = whole[offsets[0] : offsets[0] + sizes[0], offsets[1] : offsets[1] + sizes[1]]
        assert torch.equal(part, expected), (scheme, offsets)


def test_rows_blocks_are_keyed_within_the_block() -> None:
    whole = fill((12, 5), "normal", rows=(4, 8))
    assert whole[:4].isnan().all() and whole[8:].isnan().all()
    assert torch.equal(whole[4:8], fill((4, 5), "normal"))
    sharded = torch.full((6, 5), float("nan"))
    counter_fill_(Region(sharded, (12, 5), (6, 0)), "normal", {}, None, (4, 8), KEY)
    assert torch.equal(sharded[:2], whole[6:8]) and sharded[2:].isnan().all()


def test_keys_separate_streams_and_runs_repeat() -> None:
    assert key_words(1, "a.weight") != key_words(1, "b.weight") != key_words(2, "a.weight")
    assert key_words(1, "a", 0) != key_words(1, "a", 1)
    assert key_words(3, "x") == key_words(3, "x")
    a, b = fill((100,), "normal"), fill((100,), "normal", key=key_words(7, "v"))
    assert torch.equal(a, fill((100,), "normal")) and not torch.equal(a, b)


def test_spec_covers_every_scheme() -> None:
    shapes = {"eye": (4, 4), "sparse": (4, 4), "dirac": (4, 4, 3), "delta_orthogonal": (4, 4, 3)}
    for name in SCHEMES:
        params = (
            {"sparsity": 0.5} if name == "sparse" else {"val": 0.5} if name == "constant" else {}
        )
        spec = counter_spec(name, params, None, shapes.get(name, (8, 4)))
        assert spec.family


@pytest.mark.parametrize("scheme", ["normal", "uniform", "truncated_normal"])
def test_values_do_not_depend_on_the_step_size(scheme, monkeypatch) -> None:
    """Steps of 64 numbers (rows split, runs split, unaligned starts) give the same values."""
    import initscope.init.counter as counter

    shape = (41, 37)
    whole = fill(shape, scheme)
    part = box(shape, (3, 5), (30, 29), scheme)
    monkeypatch.setattr(counter, "chunk_elements", lambda device=None: 64)
    assert torch.equal(fill(shape, scheme), whole)
    assert torch.equal(box(shape, (3, 5), (30, 29), scheme), part)
    assert torch.equal(box(shape, (3, 0), (30, 37), scheme), whole[3:33])


@pytest.mark.parametrize("scheme", ["normal", "uniform", "truncated_normal"])
def test_values_do_not_depend_on_the_default_dtype(scheme) -> None:
    expected = fill((300, 7), scheme)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        again = fill((300, 7), scheme)
    finally:
        torch.set_default_dtype(before)
    assert torch.equal(again, expected)
