"""Transfer with little data: a backbone that learned call prices gets a new head for a related
product, from a few hundred samples.

The textbook pricing network (:mod:`initscope.experiments.pricing`) is pretrained on
Black-Scholes calls ``C / K``. A desk now wants puts ``P / K = C / K - m + exp(-r T)``
(put-call parity) and digital calls ``exp(-r T) N(d2)`` (pays 1 above the strike), with only
``n`` labelled prices each. The head (the last Linear before the softplus) is replaced and
initialized four ways: torch's default ``nn.Linear`` init, zero, calibrated to the new targets
(:func:`initscope.init_head`, mode ``"calibrated"``: predictions start at the targets' mean
with 10% of their spread) and fitted on the frozen features first (mode ``"probe"``: the
linear-probing half of LP-FT, Kumar et al. 2022). Then the whole network is fine-tuned. We
measure the new product's test error and how far the backbone's features moved (linear CKA of
the features before and after fine-tuning, Kornblith et al. 2019).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch

from initscope import init
from initscope.diagnostics import linear_cka
from initscope.experiments._common import (
    Claim,
    Result,
    child_generator,
    generator_or_default,
    one_thread,
)
from initscope.experiments.pricing import RANGES, PricingNetwork, black_scholes_call
from initscope.experiments.warm_start import mse, pretrained, train
from initscope.grow import init_head

TITLE = "Transfer with little data: a new head for puts and digital calls"
PRODUCTS = ("put", "digital call")
HEADS = ("default", "zero", "calibrated", "probe")


def price(product: str, x: np.ndarray) -> np.ndarray:
    """Normalized price of ``product`` at inputs ``x`` (columns as in :data:`pricing.RANGES`):
    put ``C/K - m + exp(-rT)``, digital call ``exp(-rT) N(d2)``."""
    from scipy.stats import norm

    m, t, r, s = x.T
    if product == "put":
        return black_scholes_call(m, t, r, s) - m + np.exp(-r * t)
    d2 = (np.log(m) + (r - 0.5 * s * s) * t) / (s * np.sqrt(t))
    return np.exp(-r * t) * norm.cdf(d2)


def _sample(product: str, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    u = torch.rand(n, len(RANGES), generator=g, dtype=torch.float64)
    lo = torch.tensor([a for a, _ in RANGES.values()], dtype=torch.float64)
    hi = torch.tensor([b for _, b in RANGES.values()], dtype=torch.float64)
    x = lo + (hi - lo) * u
    return x, torch.as_tensor(price(product, x.numpy()))[:, None]


def _new_head(model: PricingNetwork, mode: str, data: tuple, g: torch.Generator) -> None:
    head = model.output_head
    init.kaiming_uniform_(head.weight, a=math.sqrt(5), generator=g)  # torch's nn.Linear default
    bound = 1.0 / math.sqrt(head.in_features)
    init.uniform_(head.bias, -bound, bound, generator=g)
    if mode != "default":
        init_head(model, data, mode, generator=g)  # type: ignore[arg-type]


@dataclasses.dataclass
class TransferResult(Result):
    """Per ``"product/head"``: ``mse[key]`` ``(seeds, len(eval_steps))`` test MSE along the
    fine-tuning; ``cka[key]`` ``(seeds,)`` linear CKA of the backbone features before / after."""

    seeds: int
    n_samples: int
    pretrain_steps: int
    steps: int
    eval_steps: np.ndarray
    products: list[str]
    heads: list[str]
    mse: dict[str, np.ndarray]
    cka: dict[str, np.ndarray]
    target_var: dict[str, float]
    claims: list[Claim]


def run(*, quick: bool = False, generator: torch.Generator | None = None) -> TransferResult:
    """Run the experiment; ``quick``: 1 seed, 80 pretraining and 20 fine-tuning steps (full:
    3 seeds, 500 and 120). ``n = 256`` samples of the new product, full-batch Adam (lr 1e-3)."""
    g = generator_or_default(generator)
    seeds, pre_steps, steps = (1, 80, 20) if quick else (3, 500, 120)
    n_train, n_small, n_test = (1024, 256, 512) if quick else (8192, 256, 1024)
    every = max(1, steps // 10)
    eval_steps = np.arange(0, steps + 1, every)
    curves: dict[str, list] = {f"{p}/{h}": [] for p in PRODUCTS for h in HEADS}
    ckas: dict[str, list] = {k: [] for k in curves}
    var: dict[str, list] = {p: [] for p in PRODUCTS}
    with one_thread():
        for _ in range(seeds):
            sg = child_generator(g)
            base, mean, std = pretrained(pre_steps, n_train, sg)
            for product in PRODUCTS:
                x, y = _sample(product, n_small, sg)
                xt, yt = _sample(product, n_test, sg)
                x, xt = (((a - mean) / std).float() for a in (x, xt))
                y, yt = y.float(), yt.float()
                var[product].append(float(yt.var()))
                with torch.no_grad():
                    before = base.eval().backbone(xt)
                for head in HEADS:
                    hg = child_generator(sg)
                    model = copy.deepcopy(base)
                    _new_head(model, head, (x, y), hg)
                    curve = [mse(model, xt, yt)]
                    for _ in range(len(eval_steps) - 1):
                        train(model, (x, y), every, 1e-3, n_small, hg, cosine=False)
                        curve.append(mse(model, xt, yt))
                    with torch.no_grad():
                        after = model.eval().backbone(xt)
                    key = f"{product}/{head}"
                    curves[key].append(curve)
                    ckas[key].append(linear_cka(before, after))
    mse_a = {k: np.asarray(c) for k, c in curves.items()}
    cka_a = {k: np.asarray(c) for k, c in ckas.items()}
    end = {k: float(np.mean(c[:, -1])) for k, c in mse_a.items()}
    start = {k: float(np.mean(c[:, 0])) for k, c in mse_a.items()}
    cka_m = {k: float(np.mean(c)) for k, c in cka_a.items()}
    target_var = {p: float(np.mean(v)) for p, v in var.items()}

    def per_product(fmt: str, values: dict[str, float]) -> str:
        return "; ".join(
            f"{p}: " + ", ".join(f"{h} {values[f'{p}/{h}']:{fmt}}" for h in HEADS) for p in PRODUCTS
        )

    claims = [
        Claim(
            "Fitting the head on frozen features first (LP-FT, Kumar et al. 2022) distorts the "
            "pretrained features less than fine-tuning with a randomly initialized head "
            "(higher linear CKA of the backbone features before/after, every product).",
            f"CKA after {steps} steps: " + per_product(".3f", cka_m),
            all(cka_m[f"{p}/probe"] > cka_m[f"{p}/default"] for p in PRODUCTS),
        ),
        Claim(
            f"With {n_small} samples, LP-FT reaches a lower new-product error than fine-tuning "
            "from torch's default head (every product).",
            f"test MSE after {steps} steps: " + per_product(".2g", end),
            all(end[f"{p}/probe"] < end[f"{p}/default"] for p in PRODUCTS),
        ),
        Claim(
            "A head calibrated to the targets starts near their mean: its initial error is at "
            "most 1.25 x the targets' variance (the spread adds 1%, the mean of 256 samples and "
            "the curved link a little more) and below the default head's (every product).",
            "test MSE at step 0: "
            + per_product(".2g", start)
            + "; target variance: "
            + ", ".join(f"{p} {v:.2g}" for p, v in target_var.items()),
            all(
                start[f"{p}/calibrated"] <= 1.25 * target_var[p]
                and start[f"{p}/calibrated"] < start[f"{p}/default"]
                for p in PRODUCTS
            ),
        ),
    ]
    return TransferResult(
        seeds=seeds,
        n_samples=n_small,
        pretrain_steps=pre_steps,
        steps=steps,
        eval_steps=eval_steps,
        products=list(PRODUCTS),
        heads=list(HEADS),
        mse=mse_a,
        cka=cka_a,
        target_var=target_var,
        claims=claims,
    )
