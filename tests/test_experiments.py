"""The demo's experiments in quick mode: each returns sensible data with its key property."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn as nn

from initscope import experiments
from initscope.experiments import pricing

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def results() -> dict[str, experiments.Result]:
    return {name: experiments.run(name, quick=True) for name in experiments.EXPERIMENTS}


def test_registry_and_errors() -> None:
    assert set(experiments.EXPERIMENTS) >= {
        "symmetry",
        "scale_sweep",
        "xavier_vs_he",
        "deep_relu",
        "normalization",
        "beyond_guide",
        "deep_linear",
        "pricing",
        "warm_start",
        "transfer",
        "ensembles",
    }
    assert len(set(experiments.EXPERIMENTS)) == len(experiments.EXPERIMENTS)
    with pytest.raises(ValueError, match=r"unknown experiment 'scale_swep'; valid: scale_sweep"):
        experiments.get("scale_swep")
    with pytest.raises(TypeError, match="name"):
        experiments.get(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator"):
        experiments.run("scale_sweep", quick=True, generator=0)  # type: ignore[arg-type]


def test_results_serialize_and_state_claims(results: dict[str, experiments.Result]) -> None:
    for name, result in results.items():
        d = result.to_dict()
        json.dumps(d, allow_nan=False)  # strict JSON: NaN/inf were mapped to None
        assert d["claims"], name
        for claim in result.claims:
            assert isinstance(claim.reproduced, bool)
            assert claim.claim and claim.measured


def test_seeded_and_deterministic() -> None:
    a = experiments.run("scale_sweep", quick=True, generator=torch.Generator().manual_seed(3))
    b = experiments.run("scale_sweep", quick=True, generator=torch.Generator().manual_seed(3))
    c = experiments.run("scale_sweep", quick=True, generator=torch.Generator().manual_seed(4))
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()


def test_scale_sweep(results: dict[str, experiments.Result]) -> None:
    r = results["scale_sweep"]
    small, large, xavier = (r.layer_std[k] for k in r.scales)
    assert small[-1] < 1e-30  # collapse: ~(0.001 * 16)^20
    assert r.layer_mean_abs["too large (1.0)"][-1] > 0.9  # saturation
    assert r.layer_saturated["too large (1.0)"][-1] > 0.5
    assert 0.1 < xavier[-1] < 0.3 and xavier.max() < 0.7
    assert r.xavier_scale == pytest.approx(1 / 16)
    assert r.he_scale == pytest.approx(math.sqrt(2) / 16)
    assert {r.xavier_scale, r.he_scale} <= set(r.sweep_scales.tolist())
    # ReLU is positively homogeneous and the sweep shares its weights: final std = c * s^20 exactly
    slope = np.diff(np.log(r.sweep_relu_std)) / np.diff(np.log(r.sweep_scales))
    np.testing.assert_allclose(slope, r.n_layers, rtol=1e-9)
    assert np.all(np.diff(r.sweep_tanh_std) > 0)  # tanh's final std grows with the scale
    assert r.sweep_tanh_std.max() < 1.0
    assert r.window_relu is not None and r.window_relu[0] <= r.he_scale <= r.window_relu[1]


def test_xavier_vs_he(results: dict[str, experiments.Result]) -> None:
    r = results["xavier_vs_he"]
    xavier, he = r.stds["xavier"], r.stds["he"]
    assert xavier.shape == he.shape == (r.depth,)
    assert he[-1] / xavier[-1] >= 2**5
    assert math.log2(xavier[-1] / xavier[0]) == pytest.approx(-14.5, abs=2.0)
    assert abs(math.log2(he[-1] / he[0])) < 2.0
    for c in r.curves.values():
        assert c["train_loss"].shape == c["test_accuracy"].shape == (r.repeats, r.epochs)
    # quick mode (2 epochs): He already learns, Xavier sits at chance
    assert r.curves["he"]["train_loss"][0, -1] < r.curves["he"]["train_loss"][0, 0] - 0.1
    assert r.curves["xavier"]["train_loss"][0, -1] == pytest.approx(math.log(10), abs=0.02)


def test_normalization(results: dict[str, experiments.Result]) -> None:
    r = results["normalization"]
    for name in ("xavier+bn", "he+bn"):  # train-mode BatchNorm output: unit variance per feature
        np.testing.assert_allclose(r.stds[name], 1.0, atol=1e-2)
    assert r.stds["xavier"][-1] < 2**-5 * r.stds["xavier"][0]
    acc = r.final_accuracy
    assert acc["xavier+bn"] > acc["xavier"] + 0.2
    assert set(r.curves) == {"xavier", "xavier+bn", "he", "he+bn"}


def test_deep_linear(results: dict[str, experiments.Result]) -> None:
    r = results["deep_linear"]
    orth, gauss = r.singular_values["orthogonal"], r.singular_values["gaussian"]
    assert orth.shape == gauss.shape == (r.width,)
    np.testing.assert_allclose(orth, 1.0, atol=1e-4)
    np.testing.assert_allclose(r.band["orthogonal"], 1.0, atol=1e-4)
    assert gauss.max() / gauss.min() > 1e6
    assert r.band["gaussian"].shape == (r.depth, 3)
    median = r.band["gaussian"][:, 1]
    assert median[-1] < 1e-2 < median[0]  # the median singular value sinks with depth
    for kind in ("orthogonal", "gaussian"):
        loss = r.loss[kind]
        assert loss.shape == (r.steps + 1,) and np.all(np.isfinite(loss))
        assert loss[-1] < loss[0]


def test_black_scholes_bounds_and_reference_value() -> None:
    # Hull's textbook example: S = K = 100, T = 1, r = 5%, sigma = 20% -> C = 10.4506
    price = 100 * pricing.black_scholes_call(1.0, 1.0, 0.05, 0.2)
    assert price == pytest.approx(10.450584, abs=1e-6)
    x, c = pricing.sample_options(4096, torch.Generator().manual_seed(0))
    m, t, r, _ = x.T
    lower = torch.clamp(m - torch.exp(-r * t), min=0.0)
    assert torch.all(lower <= c[:, 0] + 1e-12) and torch.all(c[:, 0] <= m)
    for j, (lo, hi) in enumerate(pricing.RANGES.values()):
        assert lo <= x[:, j].min() and x[:, j].max() <= hi


def test_pricing_network_and_inits() -> None:
    g = torch.Generator().manual_seed(0)
    model = pricing.PricingNetwork(4, generator=g)
    linears = [m for m in model.backbone if isinstance(m, nn.Linear)]
    assert len(linears) == 4
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears)
    assert torch.count_nonzero(model.output_head.bias) == 0
    w = torch.cat([m.weight.flatten() for m in linears[1:]])  # 3 x 128 x 128 He draws
    assert w.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.02)
    assert torch.all(model(torch.randn(8, 4, generator=g)) > 0)  # softplus output
    # the "torch default" variant is nn.Linear's own reset_parameters, drawn from a generator
    torch.manual_seed(5)
    reference = nn.Linear(128, 1)
    head = nn.utils.skip_init(nn.Linear, 128, 1)
    pricing._torch_default_(head, torch.Generator().manual_seed(5))
    assert torch.equal(head.weight, reference.weight) and torch.equal(head.bias, reference.bias)


def test_pricing(results: dict[str, experiments.Result]) -> None:
    r = results["pricing"]
    assert r.variants[0] == "torch default" and len(r.variants) >= 3
    assert 0.95 <= r.head_slope <= 1.05
    assert np.all(np.diff(r.head_pred_std) > 0)
    calibrated = r.initial[r.variants[2]]  # the textbook backbone with a calibrated head
    assert calibrated["pred_mean"] == pytest.approx(r.target_mean, abs=0.02)
    # a zero-mean head with tiny weights outputs softplus(0) = ln 2 whatever the input
    assert r.head_pred_mean[0] == pytest.approx(math.log(2), abs=1e-3)
    for v in r.variants:
        assert r.mse[v].shape == r.eval_steps.shape and r.mse[v][-1] < r.mse[v][0]


def test_symmetry(results: dict[str, experiments.Result]) -> None:
    r = results["symmetry"]
    # constant init: one distinct unit at init and after training (the symmetry problem)
    assert r.rank["constant"].tolist() == [1] * (r.epochs + 1)
    assert r.unit_spread["constant"] < 1e-12
    assert r.rank["zero"].tolist() == [0] * (r.epochs + 1)  # zero init: nothing but biases learn
    assert r.train_accuracy["zero"][-1] == pytest.approx(r.majority_rate)
    assert r.diagnose_verdict["constant"] == "symmetric"
    for v in ("xavier", "auto"):  # a random draw breaks the tie at once
        assert r.diagnose_verdict[v] == "healthy"
        assert r.rank[v][0] == r.width
        assert r.loss[v][-1] < r.loss[v][0] - 0.5
    assert r.snapshot["constant"].shape == (32, r.width)


def test_beyond_guide(results: dict[str, experiments.Result]) -> None:
    r = results["beyond_guide"]
    for key in r.forward_log2:
        assert r.forward_log2[key].shape == r.theory_forward_log2[key].shape == (r.depth,)
        assert r.backward_log2[key][-1] == r.forward_log2[key][0] == 0.0  # relative to the ends
        assert r.loss[key].shape == (r.repeats, r.epochs * (1348 // r.batch_size))
    # auto (the critical point) keeps the signal within 1 bit over 50 layers; He loses > 10 bits
    for act in ("gelu", "silu", "tanh"):
        assert abs(r.forward_log2[f"{act}/auto"][-1]) <= 1.0
        assert abs(r.backward_log2[f"{act}/auto"][0]) <= 1.0
        np.testing.assert_allclose(r.theory_forward_log2[f"{act}/auto"], 0.0, atol=1e-6)
        assert r.diagnose_verdict[f"{act}/auto"] == "healthy"
    for act in ("gelu", "silu"):
        assert r.forward_log2[f"{act}/guide"][-1] < -10
        assert r.backward_log2[f"{act}/guide"][0] < -10
        assert r.sigma_w2[f"{act}/guide"] == pytest.approx(2.0)  # He
        assert r.diagnose_verdict[f"{act}/guide"] == "vanishing"
    assert r.theory_forward_log2["gelu/guide"][-1] == pytest.approx(-19.25, abs=0.05)
    assert r.sigma_w2["tanh/guide"] == pytest.approx(1.0)  # Xavier on square layers


def test_deep_relu(results: dict[str, experiments.Result]) -> None:
    r = results["deep_relu"]
    assert set(r.stds) == set(r.loss) == {"torch", "xavier", "he", "auto", "lsuv", "he, lr 0.01"}
    drop = {k: math.log2(v[-1] / v[0]) for k, v in r.stds.items()}
    assert drop["xavier"] == pytest.approx(-14.5, abs=2.0)  # Var halves per layer
    for k in ("he", "auto", "lsuv"):
        assert abs(drop[k]) < 1.5
    assert r.input_share["torch"] < 1e-6  # only the biases' constant reaches layer 30
    assert r.input_share["he"] > 0.05
    steps = r.epochs * (1348 // r.batch_size)
    for k in r.loss:
        assert r.loss[k].shape == (r.repeats, steps)
        assert r.train_accuracy[k].shape == (r.repeats, r.epochs)
    assert r.loss["xavier"][0, -1] == pytest.approx(math.log(10), abs=0.02)


def test_scale_sweep_gradients_and_theory(results: dict[str, experiments.Result]) -> None:
    r = results["scale_sweep"]
    for k in r.scales:
        assert r.layer_grad_std[k].shape == r.theory_grad_std[k].shape == (r.n_layers,)
        np.testing.assert_allclose(np.log2(r.layer_std[k]), np.log2(r.theory_std[k]), atol=0.2)
        np.testing.assert_allclose(
            np.log2(r.layer_grad_std[k]), np.log2(r.theory_grad_std[k]), atol=0.3
        )
    small = r.layer_grad_std["too small (0.001)"]
    assert small[0] < 1e-30 * small[-1]  # the gradient vanishes toward the input too
    assert r.theory_sweep_tanh_std.shape == r.sweep_scales.shape
    # ReLU theory is exact for a positively homogeneous map: slope 20 in log-log
    slope = np.diff(np.log(r.theory_sweep_relu_std)) / np.diff(np.log(r.sweep_scales))
    np.testing.assert_allclose(slope, r.n_layers, rtol=1e-6)


# ----------------------------------------------------------------------------- docs drift
# docs/demo.md and README.md quote the demo between demo-numbers markers; scripts/demo_numbers.py
# writes those blocks from docs/demo_results.json, which it fills from a full and a quick run.

ROOT = Path(__file__).resolve().parents[1]
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_numbers", ROOT / "scripts/demo_numbers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _last_digit(number: str) -> float:
    """The value of one unit in the last printed digit: 0.1 for "92.3", 1e-37 for "1.2e-36"."""
    mantissa, _, exponent = number.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def _same_measurement(committed: str, fresh: str) -> bool:
    """Same text around the numbers, and each number within one unit of its last printed digit
    or 1% (slack for another CPU's float rounding; on the machine that wrote the JSON the strings
    are equal)."""
    if _NUMBER.sub("#", committed) != _NUMBER.sub("#", fresh):
        return False
    pairs = zip(_NUMBER.findall(committed), _NUMBER.findall(fresh), strict=True)
    return all(
        math.isclose(float(a), float(b), rel_tol=0.01, abs_tol=1.01 * _last_digit(a))
        for a, b in pairs
    )


def _assert_matches(committed: dict[str, dict], fresh: dict[str, experiments.Result]) -> None:
    hint = "the demo's numbers moved: rerun python scripts/demo_numbers.py"
    assert list(committed) == list(fresh), hint
    for name, result in fresh.items():
        claims = committed[name]["claims"]
        assert [c["claim"] for c in claims] == [c.claim for c in result.claims], (name, hint)
        for old, new in zip(claims, result.claims, strict=True):
            assert old["reproduced"] == new.reproduced, (name, new.claim, hint)
            assert _same_measurement(old["measured"], new.measured), (name, new.measured, hint)


def test_docs_show_the_committed_run() -> None:
    numbers = _script()
    doc = json.loads(numbers.RESULTS.read_text())
    assert list(doc["full"]) == list(experiments.EXPERIMENTS)
    for path in numbers.DOCS:
        text = path.read_text()
        blocks = numbers._BLOCK.findall(text)
        assert blocks, f"{path}: no demo-numbers block"
        assert numbers.fill(text, doc) == text, f"{path} drifted: run scripts/demo_numbers.py"
    page = (ROOT / "docs/demo.md").read_text()
    for name in experiments.EXPERIMENTS:  # every experiment has its block on the page
        assert f"<!-- demo-numbers:{name} -->" in page


def test_committed_quick_numbers_match_a_fresh_quick_run(
    results: dict[str, experiments.Result],
) -> None:
    doc = json.loads(_script().RESULTS.read_text())
    _assert_matches(doc["quick"], {n: results[n] for n in experiments.EXPERIMENTS})


def test_measurement_comparison() -> None:
    assert _same_measurement("He 92.3% vs 14.7%", "He 92.3% vs 14.7%")
    assert not _same_measurement("He 92.3% vs 14.7%", "He 90.9% vs 14.7%")
    assert not _same_measurement("rank 1 at init", "rank 64 at init")
    assert not _same_measurement("std 1.2e-36", "std 1.2e-30")
    assert _same_measurement("std 1.2e-36, loss 2.303", "std 1.3e-36, loss 2.302")  # last digit
    assert not _same_measurement("std 1.2e-36", "std 1.4e-36")
    assert not _same_measurement("verdict healthy", "verdict vanishing")


@pytest.mark.slow
def test_committed_full_numbers_match_a_fresh_full_run() -> None:
    doc = json.loads(_script().RESULTS.read_text())
    fresh = {name: experiments.run(name) for name in experiments.EXPERIMENTS}
    _assert_matches(doc["full"], fresh)


def test_words_name_the_idea_not_the_team_jargon() -> None:
    """The demo's own text names the textbook or the paper, never "the seed"."""
    numbers = _script()
    jargon = re.compile(r"\bthe seed\b|\bseed's\b", re.I)
    sources = list((ROOT / "src/initscope/experiments").glob("*.py"))
    for path in sources:
        assert not jargon.search(path.read_text()), path
    page = numbers._BLOCK.sub("", (ROOT / "docs/demo.md").read_text())
    assert not jargon.search(page)
