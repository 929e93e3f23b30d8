"""initscope.ensemble and initscope.diversity: reproducible members, one vectorized forward,
measures with known answers, nothing changed by a measure; the demo experiment in quick mode."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import re
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import gen, same_tensors, tensors_of

import initscope
from initscope.ensembles import Ensemble, diversity, draw_member, ensemble, loss_barrier


def mlp(d_in: int = 6, width: int = 32, d_out: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, d_out),
    )  # fmt: skip


class Table(nn.Module):
    """A "model" that looks its predictions up: ``forward(i) = values[i]``."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__()
        self.values = nn.Parameter(values.clone())

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.values[idx]


class Square(nn.Module):
    """``forward(x) = w^2`` for every example: with target 1 the loss is ``(w^2 - 1)^2``."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.w**2).expand(len(x), 1)


class ItemNet(nn.Module):
    """Data-dependent Python control flow: ``torch.vmap`` cannot run it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        return y if y.sum().item() > -1e30 else -y


# ----------------------------------------------------------------------------- members


def test_same_seed_bit_identical_and_member_k_alone() -> None:
    a = ensemble(mlp, 5, seed=7)
    b = ensemble(mlp, 5, seed=7)
    for k in range(5):
        assert same_tensors(tensors_of(a.member(k)), tensors_of(b.member(k)))
    short = ensemble(mlp, 3, seed=7)  # member k does not depend on n
    for k in range(3):
        assert same_tensors(tensors_of(short.member(k)), tensors_of(a.member(k)))
    alone = draw_member(mlp, 4, seed=7)
    assert same_tensors(tensors_of(alone), tensors_of(a.member(4)))
    other = ensemble(mlp, 2, seed=8)
    assert not torch.equal(other.member(0)[0].weight, a.member(0)[0].weight)
    assert not torch.equal(a.member(0)[0].weight, a.member(1)[0].weight)


def test_factory_draws_leave_the_global_rng_alone() -> None:
    before = torch.get_rng_state()
    ensemble(mlp, 3, seed=0)  # nn.Linear's constructor draws from the global RNG
    assert torch.equal(torch.get_rng_state(), before)


def test_members_drawn_by_the_plan_with_scale() -> None:
    def wide() -> nn.Sequential:
        return nn.Sequential(nn.Linear(500, 500), nn.ReLU(), nn.Linear(500, 1))

    ens = ensemble(wide, 2, preset="he", vary={"scale": [1.0, 0.25]}, seed=3)
    assert ens.presets == ["he", "he"] and ens.scales == [1.0, 0.25]
    he = math.sqrt(2 / 500)
    n = 500 * 500
    for k, s in enumerate(ens.scales):
        w = ens.member(k)[0].weight
        assert w.std().item() == pytest.approx(s * he, rel=4 / math.sqrt(2 * n))
        assert torch.count_nonzero(ens.member(k)[0].bias) == 0  # constants stay
    mixed = ensemble(mlp, 4, vary={"preset": ["he", "torch"]})
    assert mixed.presets == ["he", "torch", "he", "torch"]
    assert mixed.plans[0] is mixed.plans[2] and mixed.plans[0] is not mixed.plans[1]
    assert mixed.plans[1].preset == "torch"


def test_forward_is_one_vmap_call_matching_the_members() -> None:
    ens = ensemble(mlp, 4, seed=1)
    x = torch.randn(16, 6, generator=gen())
    out = ens(x)
    assert out.shape == (4, 16, 1) and ens.vectorized is True and ens.fallback_reason is None
    for k in range(4):
        torch.testing.assert_close(out[k], ens.member(k)(x), rtol=1e-5, atol=1e-6)


def test_training_the_stacked_parameters_trains_each_member_as_alone() -> None:
    ens = ensemble(mlp, 3, seed=2)
    alone = ens.members()
    x, y = torch.randn(32, 6, generator=gen(1)), torch.randn(32, 1, generator=gen(2))
    names = dict(ens.named_parameters())
    assert len(names) == 6 and all(p.shape[0] == 3 for p in names.values())
    opt = torch.optim.SGD(ens.parameters(), lr=0.1)
    loss = F.mse_loss(ens(x), y.expand(3, -1, -1), reduction="none").mean((1, 2)).sum()
    loss.backward()
    opt.step()
    for k, m in enumerate(alone):
        o = torch.optim.SGD(m.parameters(), lr=0.1)
        F.mse_loss(m(x), y).backward()
        o.step()
        for name, p in m.named_parameters():
            torch.testing.assert_close(ens.stacked_parameters()[name][k], p.detach())


def test_vmap_failure_falls_back_to_a_loop_and_says_so() -> None:
    x = torch.randn(5, 4, generator=gen())
    ens = ensemble(ItemNet, 3, preset="xavier", seed=0, example_input=x)
    with pytest.warns(UserWarning, match="running the 3 members in a loop"):
        out = ens(x)
    assert ens.vectorized is False and "item" in (ens.fallback_reason or "").lower()
    assert out.shape == (3, 5, 2)
    for k in range(3):
        torch.testing.assert_close(out[k], ens.member(k)(x))
    out.sum().backward()  # gradients reach the stacked parameters in the loop too
    assert all(p.grad is not None for p in ens.parameters())
    ens(x)  # decided once per mode: no second warning (warnings are errors here)


def test_batchnorm_train_mode_updates_each_members_running_stats() -> None:
    def bn_net() -> nn.Sequential:
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))

    ens = ensemble(bn_net, 3, seed=4)
    alone = [ens.member(k) for k in range(3)]
    x = torch.randn(10, 4, generator=gen())
    out = ens(x)  # train mode
    assert ens.vectorized is not None
    for k, m in enumerate(alone):
        torch.testing.assert_close(out[k], m(x))
        torch.testing.assert_close(ens.member(k)[1].running_mean, m[1].running_mean)
    assert not torch.equal(ens.member(0)[1].running_mean, ens.member(1)[1].running_mean)


def test_batchnorm_cumulative_average_falls_back_and_restores_the_failed_attempt() -> None:
    # momentum=None averages with 1 / num_batches_tracked, a Python float: vmap cannot
    def bn_net() -> nn.Sequential:
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, momentum=None), nn.Linear(8, 1))

    ens = ensemble(bn_net, 3, seed=5)
    alone = ens.members()
    x = torch.randn(10, 4, generator=gen())
    with pytest.warns(UserWarning, match="vmap cannot run Sequential in train mode"):
        out = ens(x)
    assert ens.vectorized is False
    for k, m in enumerate(alone):
        torch.testing.assert_close(out[k], m(x))
        bn = ens.member(k)[1]
        assert int(bn.num_batches_tracked) == 1  # the failed vmap attempt was undone
        torch.testing.assert_close(bn.running_var, m[1].running_var)
    ens.eval()
    ens(x)
    assert ens.vectorized is True  # eval mode reads the running statistics: vmap runs it


def test_from_models_and_bad_input() -> None:
    models = [mlp() for _ in range(2)]
    ens = Ensemble(models)
    assert len(ens) == 2 and same_tensors(tensors_of(ens.member(1)), tensors_of(models[1]))
    with pytest.raises(ValueError, match=r"members\[1\]"):
        Ensemble([mlp(), mlp(width=8)])
    with pytest.raises(ValueError, match="k: expected 0 <= k < 2"):
        ens.member(2)
    model = mlp()
    before = tensors_of(model)
    bad = [
        (dict(n=0), ValueError, "n: expected an int >= 1"),
        (dict(n="3"), TypeError, "n: expected an int"),
        (dict(n=2, preset="hee"), ValueError, "preset: unknown preset 'hee'; valid presets: he"),
        (dict(n=2, seed=-1), ValueError, "seed"),
        (dict(n=2, scale=0.0), ValueError, "scale"),
        (dict(n=2, vary={"gain": [1]}), ValueError, "vary: unknown key 'gain'"),
        (dict(n=2, vary={"scale": 2.0}), TypeError, r"vary\['scale'\]"),
        (dict(n=2, vectorize=1), TypeError, "vectorize"),
    ]
    for kwargs, err, match in bad:
        with pytest.raises(err, match=match):
            ensemble(model, **kwargs)
    assert same_tensors(tensors_of(model), before)
    with pytest.raises(TypeError, match="factory_or_model: the factory returned int"):
        ensemble(lambda: 3, 2)
    with pytest.raises(TypeError, match="factory_or_model"):
        ensemble("mlp", 2)


# ----------------------------------------------------------------------------- diversity


def test_identical_members_have_no_diversity() -> None:
    torch.manual_seed(0)
    clf = mlp(d_out=5)
    members = [copy.deepcopy(clf) for _ in range(4)]
    x = torch.randn(200, 6, generator=gen())
    labels = torch.randint(0, 5, (200,), generator=gen(1))
    d = diversity(members, x, labels)
    assert d.task == "classification" and d.classification is not None
    assert d.classification.mean_disagreement == 0.0
    assert np.all(d.classification.kl_to_mean == 0.0)
    for mat in d.representations.cka.values():  # type: ignore[union-attr]
        np.testing.assert_allclose(mat, 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(d.weights.cosine, 1.0, atol=1e-12)  # type: ignore[union-attr]
    assert d.basins is not None and np.all(d.basins.barriers == 0.0)
    reg = diversity(members, x, torch.randn(200, 5, generator=gen(2)))
    assert reg.regression.ambiguity == 0.0 and reg.regression.spread == 0.0  # type: ignore[union-attr]
    np.testing.assert_allclose(reg.regression.error_correlation, 1.0, atol=1e-12)  # type: ignore[union-attr]


def test_independent_random_predictors_have_uncorrelated_errors() -> None:
    m, n = 40_000, 4
    y = torch.randn(m, generator=gen(0))
    members = [Table(y + torch.randn(m, generator=gen(k + 1))) for k in range(n)]
    d = diversity(members, torch.arange(m), y, layers=[], pairs=[(0, 1)])
    corr = d.regression.error_correlation  # type: ignore[union-attr]
    off = corr[~np.eye(n, dtype=bool)]
    assert np.abs(off).max() < 5 / math.sqrt(m)  # ~N(0, 1/m) each
    # unit-variance independent errors: member error ~1, ensemble error ~1/n
    assert d.regression.mean_member_error == pytest.approx(1.0, abs=0.05)  # type: ignore[union-attr]
    assert d.regression.ensemble_error == pytest.approx(1 / n, abs=0.02)  # type: ignore[union-attr]


def test_ambiguity_decomposition_is_exact() -> None:
    ens = ensemble(mlp, 5, seed=3)
    x, y = torch.randn(300, 6, generator=gen()), torch.randn(300, 1, generator=gen(1))
    d = diversity(ens, x, y)
    r = d.regression
    assert r is not None and r.ambiguity > 0
    assert r.ensemble_error == pytest.approx(r.mean_member_error - r.ambiguity, rel=1e-12)
    f = ens(x).detach().double().squeeze(-1).numpy()
    t = y.double().squeeze(-1).numpy()
    assert r.ensemble_error == pytest.approx(((f.mean(0) - t) ** 2).mean(), rel=1e-12)
    assert r.ambiguity == pytest.approx(((f - f.mean(0)) ** 2).mean(), rel=1e-12)
    lst = diversity(ens.members(), x, y)  # the same measures from a list of models
    assert lst.regression.ambiguity == pytest.approx(r.ambiguity, rel=1e-5)  # type: ignore[union-attr]
    assert lst.basins.barriers == pytest.approx(d.basins.barriers, rel=1e-4, abs=1e-6)  # type: ignore[union-attr]


def test_disagreement_kl_and_coverage_known_values() -> None:
    m = 100
    a = torch.zeros(m, 2)
    a[:, 0] = 1.0
    b = a.clone()
    b[:30] = a[:30].flip(-1)  # disagree on exactly 30 of 100
    d = diversity([Table(a), Table(b)], torch.arange(m), layers=[], task="classification")
    assert d.classification.mean_disagreement == pytest.approx(0.3)  # type: ignore[union-attr]
    p = torch.softmax(torch.stack([a, b]).double(), -1)
    pm = p.mean(0)
    entropy = lambda q: -(q * q.log()).sum(-1)  # noqa: E731
    mi = (entropy(pm) - entropy(p).mean(0)).mean().item()
    assert d.classification.mean_kl_to_mean == pytest.approx(mi, rel=1e-12)  # type: ignore[union-attr]
    # two members at m -+ 1: sample std sqrt 2, interval m +- z sqrt 2; half the targets inside
    level = 0.9
    z = NormalDist().inv_cdf(0.95)
    y = torch.where(torch.arange(m) % 2 == 0, 0.5 * z * math.sqrt(2), 2 * z * math.sqrt(2))
    lo, hi = Table(-torch.ones(m, dtype=torch.float64)), Table(torch.ones(m, dtype=torch.float64))
    cov = diversity([lo, hi], torch.arange(m), y.double(), level=level, layers=[]).coverage
    assert cov is not None and cov.coverage == 0.5 and cov.n == m
    assert cov.mean_width == pytest.approx(2 * z * math.sqrt(2), rel=1e-12)


def test_loss_barrier_known_value() -> None:
    # (w^2 - 1)^2 from w = -1 to w = 1 passes w = 0: barrier exactly 1, two distinct basins
    x, y = torch.zeros(4, 1), torch.ones(4, 1, dtype=torch.float64)
    b = loss_barrier(Square(-1.0), Square(1.0), x, y, F.mse_loss, points=5)
    assert b.losses[0].tolist() == [0.0, 0.5625, 1.0, 0.5625, 0.0]
    assert b.max_barrier == 1.0
    same_basin = loss_barrier(Square(1.0), Square(1.5), x, y, F.mse_loss, points=5)
    assert same_basin.max_barrier <= 0.0  # a convex stretch: no barrier


def test_diversity_changes_nothing() -> None:
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.5), nn.Linear(16, 1)) for _ in range(3)]
    for m in models:
        m.train()
        m(torch.randn(4, 6)).sum().backward()  # grads present
    ens = Ensemble(models)
    before = [tensors_of(m) for m in models]
    grads = [[p.grad.clone() for p in m.parameters()] for m in models]  # type: ignore[union-attr]
    ens_before = tensors_of(ens)
    rng = torch.get_rng_state()
    x, y = torch.randn(50, 6, generator=gen()), torch.randn(50, 1, generator=gen(1))
    diversity(models, x, y)
    diversity(ens, x, y)
    assert torch.equal(torch.get_rng_state(), rng)
    assert ens.training and all(m.training for m in models)
    assert all(m[1].training for m in models) and ens._template[1].training
    assert same_tensors(tensors_of(ens), ens_before)
    for m, b, g in zip(models, before, grads, strict=True):
        assert same_tensors(tensors_of(m), b)
        assert all(torch.equal(p.grad, q) for p, q in zip(m.parameters(), g, strict=True))
        assert not m._forward_hooks and not m[0]._forward_hooks


def test_diversity_bad_input() -> None:
    models = [mlp(), mlp()]
    x = torch.randn(8, 6)
    with pytest.raises(TypeError, match="members"):
        diversity(models[0], x)  # type: ignore[arg-type]
    for few in (models[:1], []):
        with pytest.raises(ValueError, match="at least 2 members"):
            diversity(few, x)
    for kwargs, err, match in [
        (dict(level=1.0), ValueError, "level"),
        (dict(pairs=[(0, 0)]), ValueError, "pairs"),
        (dict(points=2), ValueError, "points"),
        (dict(task="ranking"), ValueError, "task: expected one of regression, classification"),
        (dict(layers=["nope"]), ValueError, "layers: no module named 'nope'"),
    ]:
        with pytest.raises(err, match=match):
            diversity(models, x, **kwargs)
    with pytest.raises(ValueError, match="targets: shape"):
        diversity(models, x, torch.randn(9, 1))


def test_public_names() -> None:
    for name in ("ensemble", "Ensemble", "diversity", "Diversity"):
        assert name in initscope.__all__ and hasattr(initscope, name)
    assert initscope.ensemble is ensemble and initscope.diversity is diversity


# ----------------------------------------------------------------------------- the experiment


@pytest.fixture(scope="module")
def quick_result():  # noqa: ANN201
    from initscope import experiments

    return experiments.run("ensembles", quick=True)


def test_experiment_quick(quick_result) -> None:  # noqa: ANN001
    r = quick_result
    assert r.vectorized and r.variants == [v[0] for v in __import__(
        "initscope.experiments.ensembles", fromlist=["VARIANTS"]).VARIANTS]  # fmt: skip
    assert max(r.identity_error.values()) < 1e-9 and r.claims[0].reproduced
    for v in r.variants:
        assert r.ensemble_mse[v] <= r.member_mse[v]
        assert 0 <= r.coverage[v] <= 1 and 0 <= r.coverage_out[v] <= 1
        assert r.path_losses[v].shape == (r.members - 1, len(r.path_alphas))
    assert r.most_useful in r.variants
    json.dumps(r.to_dict(), allow_nan=False)


# ----------------------------------------------------------------------------- the docs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "ensembles.md"


def test_docs_python_blocks_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs"}
    for block in blocks:  # the blocks build on each other, as a reader runs them
        exec(compile(block, str(DOCS), "exec"), namespace)


def _doc_script():  # noqa: ANN202
    path = DOCS.parents[1] / "scripts" / "ensembles_doc.py"
    spec = importlib.util.spec_from_file_location("ensembles_doc", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_block_renders_from_a_result(quick_result) -> None:  # noqa: ANN001
    script = _doc_script()
    text = script.render(quick_result, quick_result)
    # three tables: a header and a rule each, one row per init (twice), one per claim
    n = len(quick_result.variants)
    assert text.count("\n| ") == 2 * n + len(quick_result.claims) + 6
    assert f"Most useful diversity: {quick_result.most_useful}" in text
    assert script.block(DOCS.read_text()).startswith("Run: `python scripts/ensembles_doc.py`")


@pytest.mark.slow
def test_docs_numbers_match_a_fresh_full_run() -> None:
    from initscope import experiments

    script = _doc_script()
    result = experiments.run("ensembles")
    again = experiments.run("ensembles", generator=torch.Generator().manual_seed(1))
    assert script.block(DOCS.read_text()) == script.render(result, again), (
        "docs/ensembles.md drifted: run python scripts/ensembles_doc.py"
    )
