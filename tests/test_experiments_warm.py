"""The warm-start and transfer experiments in quick mode: registered, serializable, and each
number that the claims rest on has its key property."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from initscope import experiments
from initscope.experiments import transfer, warm_start


@pytest.fixture(scope="module")
def results() -> dict[str, experiments.Result]:
    return {name: experiments.run(name, quick=True) for name in ("warm_start", "transfer")}


def test_registered() -> None:
    assert {"warm_start", "transfer"} <= set(experiments.EXPERIMENTS)
    assert experiments.get("warm_start") is warm_start
    assert experiments.get("transfer") is transfer


def test_serialize_and_claims(results) -> None:
    for name, r in results.items():
        json.dumps(r.to_dict(), allow_nan=False)
        assert r.claims, name
        for c in r.claims:
            assert isinstance(c.reproduced, bool) and c.claim and c.measured


def test_warm_start_shapes_and_exact_widening(results) -> None:
    r = results["warm_start"]
    assert r.variants == list(warm_start.VARIANTS)
    for v in r.variants:
        assert r.new_mse[v].shape == (r.seeds, len(r.eval_steps))
        assert np.isfinite(r.new_mse[v]).all() and np.isfinite(r.old_mse[v]).all()
    # the noise-free widening keeps the function (the claim rests on it)
    assert r.widen_max_change <= 1e-5
    # the noisy widened start differs from the warm start at step 0 by little
    ratio = r.new_mse["widened warm start"][:, 0] / r.new_mse["warm start"][:, 0]
    assert np.all(np.abs(ratio - 1) < 0.5)
    # every start learns on the new regime, except the re-fitted head, which starts fitted
    # (least squares on the features) far below every other start
    probe = "warm start + probe head"
    for v in r.variants:
        if v != probe:
            assert r.new_mse[v][:, -1].mean() < r.new_mse[v][:, 0].mean(), v
            assert r.new_mse[probe][:, 0].mean() < 0.5 * r.new_mse[v][:, 0].mean(), v


def test_transfer_probe_starts_best_and_keeps_features(results) -> None:
    r = results["transfer"]
    for p in r.products:
        start = {h: r.mse[f"{p}/{h}"][:, 0].mean() for h in r.heads}
        # the probe is a least-squares fit on the features: it starts below the mean predictor
        assert start["probe"] < r.target_var[p] < start["default"]
        for h in r.heads:
            cka = r.cka[f"{p}/{h}"]
            assert np.all((cka > 0) & (cka <= 1 + 1e-9))


def test_prices() -> None:
    x = np.array([[1.0, 1.0, 0.03, 0.2], [0.9, 0.5, 0.0, 0.3]])
    call = experiments.pricing.black_scholes_call(*x.T)
    put = transfer.price("put", x)
    # put-call parity: C - P = m - exp(-rT)
    assert np.allclose(call - put, x[:, 0] - np.exp(-x[:, 2] * x[:, 1]), atol=1e-12)
    digital = transfer.price("digital call", x)
    # the digital call is -dC/dK: with C(K) = K * c(S / K), a central difference at K = 1
    h = 1e-5
    m, t, r, s = x.T
    bs = experiments.pricing.black_scholes_call
    dk = ((1 + h) * bs(m / (1 + h), t, r, s) - (1 - h) * bs(m / (1 - h), t, r, s)) / (2 * h)
    assert np.allclose(digital, -dk, atol=1e-6)


def test_deterministic() -> None:
    a = experiments.run("transfer", quick=True, generator=torch.Generator().manual_seed(3))
    b = experiments.run("transfer", quick=True, generator=torch.Generator().manual_seed(3))
    assert a.to_dict() == b.to_dict()


@pytest.mark.slow
def test_doc_numbers_match_a_fresh_run() -> None:
    """docs/warm_start.md's tables are what scripts/warm_start_doc.py renders from a full run."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("warm_start_doc", root / "scripts" /
                                                  "warm_start_doc.py")  # fmt: skip
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    page = (root / "docs" / "warm_start.md").read_text()
    shown = page.split(script.START)[1].split(script.END)[0].strip()
    assert shown == script.tables(*script.run())
