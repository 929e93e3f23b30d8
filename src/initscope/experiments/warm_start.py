"""Warm start after a regime shift: the textbook pricing network, pretrained on one market,
adapts to another.

The network of :mod:`initscope.experiments.pricing` (ReLU backbone, Linear head, softplus)
learns Black-Scholes call prices ``C / K`` on the old regime (volatility 10-50%, rates 0-5%).
Then the market moves: volatility 40-80%, rates 5-10%. A production system that updates its
model online has four starts: a fresh model (``initialize`` auto plus a head calibrated to the
new prices), the trained model as it is (warm start), the trained model after shrink-and-perturb
(Ash & Adams 2020: ``theta <- 0.5 theta + 0.1 theta_fresh``), the trained model with its head
re-fitted on the new prices (``init_head(..., "probe")``), and the trained model widened
by 50% in a function-preserving way (Net2Net) with a little noise on the new units. After
``k`` Adam steps on the new regime we measure the error on the new regime (adaptation) and on
the old one (forgetting), over several seeds.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from initscope.experiments._common import (
    Claim,
    Result,
    child_generator,
    generator_or_default,
    one_thread,
)
from initscope.experiments.pricing import RANGES, PricingNetwork, black_scholes_call
from initscope.grow import init_head, shrink_perturb, widen
from initscope.policy import initialize

TITLE = "Warm start after a regime shift: fresh, warm, shrink-and-perturb, widened"
#: The new market: higher volatility, higher rates (moneyness and maturity as before).
NEW_RANGES: dict[str, tuple[float, float]] = {
    **RANGES,
    "rate": (0.05, 0.10),
    "volatility": (0.4, 0.8),
}
VARIANTS = ("fresh", "warm start", "warm start + probe head", "shrink-perturb",
            "widened warm start")  # fmt: skip
HIDDEN = 64
SHRINK, NOISE = 0.5, 0.1
WIDEN_TO, WIDEN_NOISE = 96, 0.1


def sample(
    n: int, ranges: dict[str, tuple[float, float]], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs drawn uniformly from ``ranges`` (float64, columns as in
    :data:`pricing.RANGES`) and their call prices ``C / K`` (shape ``(n, 1)``)."""
    u = torch.rand(n, len(ranges), generator=generator, dtype=torch.float64)
    lo = torch.tensor([a for a, _ in ranges.values()], dtype=torch.float64)
    hi = torch.tensor([b for _, b in ranges.values()], dtype=torch.float64)
    x = lo + (hi - lo) * u
    return x, torch.as_tensor(black_scholes_call(*x.numpy().T))[:, None]


def train(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    lr: float,
    batch_size: int,
    g: torch.Generator,
    *,
    cosine: bool = True,
) -> None:
    """Adam on the squared error, minibatches drawn with ``g`` (full batch when the data is
    smaller than ``batch_size``)."""
    x, y = data
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cosine else None
    model.train()
    for _ in range(steps):
        if len(x) > batch_size:
            idx = torch.randint(0, len(x), (batch_size,), generator=g)
            xb, yb = x[idx], y[idx]
        else:
            xb, yb = x, y
        loss = F.mse_loss(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()


@torch.no_grad()
def mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return F.mse_loss(model(x), y).item()


def pretrained(
    steps: int, n_train: int, g: torch.Generator
) -> tuple[PricingNetwork, torch.Tensor, torch.Tensor]:
    """A pricing network trained on calls in the old regime (:data:`pricing.RANGES`), and the
    input mean and std it was trained with (kept fixed afterwards, as a deployed model's)."""
    x, y = sample(n_train, RANGES, g)
    mean, std = x.mean(0), x.std(0)
    model = PricingNetwork(len(RANGES), HIDDEN, generator=g)
    train(model, (((x - mean) / std).float(), y.float()), steps, 2e-3, 256, g)
    return model, mean, std


@dataclasses.dataclass
class WarmStartResult(Result):
    """``new_mse[variant]`` / ``old_mse[variant]``: ``(seeds, len(eval_steps))`` test errors on
    the new and the old regime along the ``k`` adaptation steps."""

    seeds: int
    pretrain_steps: int
    steps: int
    eval_steps: np.ndarray
    variants: list[str]
    new_mse: dict[str, np.ndarray]
    old_mse: dict[str, np.ndarray]
    new_target_var: float
    widen_max_change: float
    claims: list[Claim]


def _start(
    variant: str, base: PricingNetwork, x_new: torch.Tensor, y_new: torch.Tensor,
    g: torch.Generator,
) -> nn.Module:  # fmt: skip
    if variant == "fresh":
        model = PricingNetwork(len(RANGES), HIDDEN, generator=g)
        initialize(model, generator=g)
        init_head(model, (x_new, y_new), "calibrated", generator=g)
        return model
    model = copy.deepcopy(base)
    if variant == "warm start + probe head":
        init_head(model, (x_new, y_new), "probe")
    elif variant == "shrink-perturb":
        shrink_perturb(model, SHRINK, NOISE, generator=g)
    elif variant == "widened warm start":
        for i, m in enumerate(base.backbone):
            if isinstance(m, nn.Linear):
                widen(model, f"backbone.{i}", WIDEN_TO, noise=WIDEN_NOISE, generator=g)
    return model


def _widen_exact(base: PricingNetwork, x: torch.Tensor) -> float:
    """Relative output change of the noise-free widening of every hidden layer."""
    model = copy.deepcopy(base)
    for i, m in enumerate(base.backbone):
        if isinstance(m, nn.Linear):
            widen(model, f"backbone.{i}", WIDEN_TO)
    with torch.no_grad():
        a, b = base.eval()(x), model.eval()(x)
    return float((a - b).abs().max() / a.abs().max())


def run(*, quick: bool = False, generator: torch.Generator | None = None) -> WarmStartResult:
    """Run the experiment; ``quick``: 1 seed, 80 pretraining and 20 adaptation steps
    (full: 3 seeds, 600 and 150). Adam (lr 1e-3, cosine) on minibatches of 256 new-regime
    samples."""
    g = generator_or_default(generator)
    seeds, pre_steps, steps = (1, 80, 20) if quick else (3, 600, 150)
    n_train, n_test = (1024, 512) if quick else (8192, 2048)
    every = max(1, steps // 10)
    eval_steps = np.arange(0, steps + 1, every)
    new: dict[str, list[list[float]]] = {v: [] for v in VARIANTS}
    old: dict[str, list[list[float]]] = {v: [] for v in VARIANTS}
    exact: list[float] = []
    var_new: list[float] = []
    with one_thread():
        for _ in range(seeds):
            sg = child_generator(g)
            base, mean, std = pretrained(pre_steps, n_train, sg)
            xo, yo = sample(n_test, RANGES, sg)
            xn, yn = sample(n_train, NEW_RANGES, sg)
            xt, yt = sample(n_test, NEW_RANGES, sg)
            xo, xn, xt = (((x - mean) / std).float() for x in (xo, xn, xt))
            yo, yn, yt = yo.float(), yn.float(), yt.float()
            var_new.append(float(yt.var()))
            exact.append(_widen_exact(base, xt))
            for v in VARIANTS:
                vg = child_generator(sg)
                model = _start(v, base, xn, yn, vg)
                curve_new, curve_old = [mse(model, xt, yt)], [mse(model, xo, yo)]
                for _ in range(len(eval_steps) - 1):
                    train(model, (xn, yn), every, 1e-3, 256, vg, cosine=False)
                    curve_new.append(mse(model, xt, yt))
                    curve_old.append(mse(model, xo, yo))
                new[v].append(curve_new)
                old[v].append(curve_old)
    new_mse = {v: np.asarray(c) for v, c in new.items()}
    old_mse = {v: np.asarray(c) for v, c in old.items()}
    end = {v: float(np.mean(c[:, -1])) for v, c in new_mse.items()}
    end_old = {v: float(np.mean(c[:, -1])) for v, c in old_mse.items()}
    start = {v: float(np.mean(c[:, 0])) for v, c in new_mse.items()}
    fmt = ", ".join
    claims = [
        Claim(
            "A warm-started model adapts to a regime change faster than a fresh one "
            f"(lower new-regime error after {steps} steps, mean over {seeds} seed(s)).",
            f"new-regime test MSE after {steps} steps: "
            + fmt(f"{v} {end[v]:.2g}" for v in VARIANTS)
            + f" (at step 0: warm {start['warm start']:.2g}, fresh {start['fresh']:.2g}).",
            bool(end["warm start"] < end["fresh"]),
        ),
        Claim(
            "Shrink-and-perturb (Ash & Adams 2020) adapts better than the plain warm start "
            "(lower new-regime error after the same steps).",
            f"shrink {SHRINK}, noise {NOISE}: new-regime MSE {end['shrink-perturb']:.2g} vs "
            f"warm start {end['warm start']:.2g}; it starts at {start['shrink-perturb']:.2g} "
            f"(the shrunk network predicts nearly a constant).",
            bool(end["shrink-perturb"] < end["warm start"]),
        ),
        Claim(
            "Function-preserving widening (Net2Net) keeps what the model computes, then adapts "
            "at least as fast as the warm start.",
            f"noise-free widening {HIDDEN} -> {WIDEN_TO} changes the outputs by "
            f"{max(exact):.1e} relative (max over seeds); with noise {WIDEN_NOISE}: new-regime "
            f"MSE {end['widened warm start']:.2g} vs warm start {end['warm start']:.2g} after "
            f"{steps} steps.",
            bool(max(exact) <= 1e-5 and end["widened warm start"] <= end["warm start"]),
        ),
        Claim(
            "Warm starts keep more of the old regime (less forgetting) than a fresh model.",
            "old-regime test MSE after adapting: "
            + fmt(f"{v} {end_old[v]:.2g}" for v in VARIANTS)
            + f" (before: {float(np.mean(old_mse['warm start'][:, 0])):.2g}).",
            bool(end_old["warm start"] < end_old["fresh"]),
        ),
        Claim(
            "A warm start whose head is first re-fitted to the new prices (the linear probe of "
            "LP-FT) adapts as fast as a fresh model (new-regime error within 20%) and forgets "
            "the least.",
            f"new-regime MSE {end['warm start + probe head']:.2g} vs fresh {end['fresh']:.2g}; "
            f"old-regime MSE {end_old['warm start + probe head']:.2g}, the others "
            + ", ".join(f"{end_old[v]:.2g}" for v in VARIANTS if v != "warm start + probe head")
            + ".",
            bool(
                end["warm start + probe head"] <= 1.2 * end["fresh"]
                and end_old["warm start + probe head"] == min(end_old.values())
            ),
        ),
    ]
    return WarmStartResult(
        seeds=seeds,
        pretrain_steps=pre_steps,
        steps=steps,
        eval_steps=eval_steps,
        variants=list(VARIANTS),
        new_mse=new_mse,
        old_mse=old_mse,
        new_target_var=float(np.mean(var_new)),
        widen_max_change=max(exact),
        claims=claims,
    )
