"""The demo's experiments in quick mode: each returns sensible data with its key property."""

from __future__ import annotations

import json
import math

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
    assert r.variants[:3] == ["torch default", "seed (He + Xavier head)", "seed + calibrated head"]
    assert 0.95 <= r.head_slope <= 1.05
    assert np.all(np.diff(r.head_pred_std) > 0)
    calibrated = r.initial["seed + calibrated head"]
    assert calibrated["pred_mean"] == pytest.approx(r.target_mean, abs=0.02)
    # a zero-mean head with tiny weights outputs softplus(0) = ln 2 whatever the input
    assert r.head_pred_mean[0] == pytest.approx(math.log(2), abs=1e-3)
    for v in r.variants:
        assert r.mse[v].shape == r.eval_steps.shape and r.mse[v][-1] < r.mse[v][0]
