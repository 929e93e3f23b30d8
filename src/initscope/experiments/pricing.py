"""The textbook option-pricing network, trained on Black-Scholes call prices under several inits.

The textbook's ``PricingNetwork`` (a ReLU backbone of ``n_layers`` Linear layers, a Linear head,
softplus output) learns the normalized call price ``C / K`` from moneyness ``S / K``, maturity
``T``, rate ``r`` and volatility ``sigma``. The closed form (Black & Scholes 1973) is
``C / K = m N(d1) - exp(-r T) N(d2)``, ``d1 = (ln m + (r + sigma^2 / 2) T) / (sigma sqrt T)``,
``d2 = d1 - sigma sqrt T``. We compare torch's default init, the textbook's init (He backbone,
Xavier head, zero biases), a head calibrated to the data, and ``initscope.initialize`` (preset
``"auto"``) with its output head calibrated to the training prices by
:func:`initscope.init_head` (``auto`` alone knows nothing about the targets); and we check the
the textbook's point that the head's init decides the scale of the initial predictions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from initscope import init
from initscope.experiments._common import (
    Claim,
    Result,
    child_generator,
    generator_or_default,
    one_thread,
    policy_initialize,
)

TITLE = "Option-pricing network: which init"
#: Sampling ranges of the inputs: moneyness S/K, maturity T (years), rate r, volatility sigma.
RANGES: dict[str, tuple[float, float]] = {
    "moneyness": (0.8, 1.2),
    "maturity": (0.05, 2.0),
    "rate": (0.0, 0.05),
    "volatility": (0.1, 0.5),
}


def black_scholes_call(
    moneyness: np.ndarray, maturity: np.ndarray, rate: np.ndarray, volatility: np.ndarray
) -> np.ndarray:
    """Black-Scholes price of a European call divided by the strike, ``C / K`` (float64).

    ``C / K = m N(d1) - exp(-r T) N(d2)`` with ``m = S / K``,
    ``d1 = (ln m + (r + sigma^2 / 2) T) / (sigma sqrt(T))`` and ``d2 = d1 - sigma sqrt(T)``.
    It satisfies ``max(m - exp(-r T), 0) <= C / K <= m``.
    """
    from scipy.stats import norm

    m, t, r, s = (np.asarray(a, dtype=np.float64) for a in (moneyness, maturity, rate, volatility))
    vol = s * np.sqrt(t)
    d1 = (np.log(m) + (r + 0.5 * s * s) * t) / vol
    return m * norm.cdf(d1) - np.exp(-r * t) * norm.cdf(d1 - vol)


def sample_options(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs drawn uniformly from :data:`RANGES` (float64, columns in that order) and their
    prices ``C / K`` (shape ``(n, 1)``)."""
    u = torch.rand(n, len(RANGES), generator=generator, dtype=torch.float64)
    lo = torch.tensor([a for a, _ in RANGES.values()], dtype=torch.float64)
    hi = torch.tensor([b for _, b in RANGES.values()], dtype=torch.float64)
    x = lo + (hi - lo) * u
    y = black_scholes_call(*x.numpy().T)
    return x, torch.as_tensor(y)[:, None]


class PricingNetwork(nn.Module):
    """The textbook pricing network: ``n_layers`` x (Linear + ReLU), a Linear head, softplus
    output.

    Initialized as the textbook does: He normal (``Var = 2 / fan_in``) on the backbone, Xavier
    normal (``Var = 2 / (fan_in + fan_out)``) on the head, zero biases; drawn from ``generator``.
    The textbook writes ``torch.softplus``, which torch does not have; ``F.softplus`` is the
    function it means.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 128,
        n_layers: int = 4,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n_layers):
            in_d = input_dim if i == 0 else hidden_dim
            layers.extend([nn.utils.skip_init(nn.Linear, in_d, hidden_dim), nn.ReLU()])
        self.backbone = nn.Sequential(*layers)
        self.output_head = nn.utils.skip_init(nn.Linear, hidden_dim, 1)
        for m in self.backbone:
            if isinstance(m, nn.Linear):
                init.kaiming_normal_(m.weight, nonlinearity="relu", generator=generator)
                init.zeros_(m.bias)
        init.xavier_normal_(self.output_head.weight, generator=generator)
        init.zeros_(self.output_head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.output_head(self.backbone(x)))


def _torch_default_(model: nn.Module, g: torch.Generator) -> None:
    """What ``nn.Linear.reset_parameters`` does, drawn from ``g``: ``kaiming_uniform_(a=sqrt(5))``
    (``Var = 1 / (3 fan_in)``) and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
            bound = 1.0 / math.sqrt(m.in_features)
            init.uniform_(m.bias, -bound, bound, generator=g)


def _calibrated_head_(model: PricingNetwork, mean_target: float, g: torch.Generator) -> None:
    """Head weights Xavier x 0.1, head bias ``softplus^-1(mean target)``: predictions start at the
    data's mean price."""
    init.xavier_normal_(model.output_head.weight, gain=0.1, generator=g)
    init.constant_(model.output_head.bias, math.log(math.expm1(mean_target)))


@dataclasses.dataclass
class PricingResult(Result):
    """``mse[variant]``: test MSE at ``eval_steps`` (mean over repeats); ``initial[variant]``:
    mean / std of the initial predictions, initial test MSE, std of the backbone's output;
    ``head_sweep``: initial prediction std against the head's weight std (He backbone)."""

    n_train: int
    n_test: int
    steps: int
    lr: float
    batch_size: int
    repeats: int
    target_mean: float
    target_std: float
    variants: list[str]
    eval_steps: np.ndarray
    mse: dict[str, np.ndarray]
    final_mse: dict[str, float]
    initial: dict[str, dict[str, float]]
    initial_predictions: dict[str, np.ndarray]
    test_targets: np.ndarray
    head_scales: np.ndarray
    head_pred_std: np.ndarray
    head_pred_mean: np.ndarray
    xavier_head_std: float
    head_slope: float
    claims: list[Claim]


AUTO = "initscope auto + calibrated head"


def _build(
    variant: str,
    mean_target: float,
    g: torch.Generator,
    initialize: Callable[..., Any] | None,
    data: tuple[torch.Tensor, torch.Tensor],
) -> PricingNetwork:
    model = PricingNetwork(len(RANGES), generator=g)
    if variant == "torch default":
        _torch_default_(model, g)
    elif variant == "textbook + calibrated head":
        _calibrated_head_(model, mean_target, g)
    elif variant == AUTO and initialize is not None:
        from initscope.grow import init_head

        initialize(model, preset="auto", generator=g)
        # the head: bias at softplus^-1(mean price), predictions' spread 10% of the prices'
        init_head(model, data, "calibrated", generator=g)
    return model


@torch.no_grad()
def _mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return F.mse_loss(model(x), y).item()


def run(*, quick: bool = False, generator: torch.Generator | None = None) -> PricingResult:
    """Run the experiment; ``quick`` trains 100 steps once on less data instead of 1000 steps twice.

    Adam (lr 2e-3, cosine decay), batch 256, inputs standardized with training statistics.
    """
    g = generator_or_default(generator)
    batch_size, lr = 256, 2e-3
    n_train, n_test, steps, repeats = (2048, 512, 100, 1) if quick else (8192, 2048, 1000, 2)
    variants = ["torch default", "textbook (He + Xavier head)", "textbook + calibrated head"]
    initialize = policy_initialize()
    if initialize is not None:
        variants.append(AUTO)
    with one_thread():
        x_tr, y_tr = sample_options(n_train, g)
        x_te, y_te = sample_options(n_test, g)
        mean, std = x_tr.mean(0), x_tr.std(0)
        x_tr, x_te = ((x - mean) / std for x in (x_tr, x_te))
        x_tr, y_tr, x_te, y_te = (t.float() for t in (x_tr, y_tr, x_te, y_te))
        y_mean = float(y_tr.mean())
        every = max(1, steps // 20)
        eval_steps = np.arange(0, steps + 1, every)
        mse, initial, init_pred = {}, {}, {}
        for variant in variants:
            curves = []
            for r in range(repeats):
                rg = child_generator(g)
                model = _build(variant, y_mean, rg, initialize, (x_tr, y_tr))
                if r == 0:
                    with torch.no_grad():
                        p0 = model(x_te)
                        feats = model.backbone(x_te)
                    init_pred[variant] = p0[:, 0].numpy()
                    initial[variant] = {
                        "pred_mean": p0.mean().item(),
                        "pred_std": p0.std().item(),
                        "mse": F.mse_loss(p0, y_te).item(),
                        "backbone_std": feats.std().item(),
                    }
                curves.append(
                    _train(model, (x_tr, y_tr), (x_te, y_te), steps, lr, batch_size, every, rg)
                )
            mse[variant] = np.mean(curves, axis=0)

        scales = np.logspace(-4, 0.5, 19)
        probe = PricingNetwork(len(RANGES), generator=g)
        xavier_std = math.sqrt(2.0 / (probe.output_head.in_features + 1))
        pred_std, pred_mean = [], []
        with torch.no_grad():
            feats = probe.backbone(x_te)
            w0 = init.normal_(torch.empty_like(probe.output_head.weight), generator=g)
            for s in scales:
                p = F.softplus(feats @ (s * w0).T)
                pred_std.append(p.std().item())
                pred_mean.append(p.mean().item())
    pred_std_a, pred_mean_a = np.asarray(pred_std), np.asarray(pred_mean)
    small = scales <= 1e-2
    slope = float(np.polyfit(np.log(scales[small]), np.log(pred_std_a[small]), 1)[0])

    final = {v: float(c[-1]) for v, c in mse.items()}
    y_std = float(y_tr.std())
    textbook_v, default_v = "textbook (He + Xavier head)", "torch default"
    s0 = initial[textbook_v]
    claims = [
        Claim(
            "The head's init decides the scale of the initial predictions.",
            f"with the backbone fixed, initial prediction std grows as (head std)^{slope:.2f} "
            f"for head std <= 0.01; the textbook's Xavier head (std {xavier_std:.3f}) gives "
            f"std {s0['pred_std']:.3f} against a target std of {y_std:.3f}.",
            bool(0.9 <= slope <= 1.1),
        ),
        Claim(
            "With the textbook's init (Xavier head, zero bias) predictions start near zero "
            "(below a quarter of the mean price).",
            f"initial predictions {s0['pred_mean']:.3f} +- {s0['pred_std']:.3f} against prices "
            f"{y_mean:.3f} +- {y_std:.3f}; a softplus head at 0 outputs ln 2 = {math.log(2):.3f}.",
            bool(s0["pred_mean"] <= 0.25 * y_mean),
        ),
        Claim(
            "The textbook's init (He backbone, Xavier head) trains the pricing network at least as "
            "well as torch's default init.",
            "test MSE after "
            f"{steps} Adam steps: "
            + ", ".join(f"{v} {final[v]:.2g}" for v in variants)
            + f" (mean of {repeats}).",
            bool(final[textbook_v] <= final[default_v]),
        ),
    ]
    return PricingResult(
        n_train=n_train,
        n_test=n_test,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        repeats=repeats,
        target_mean=y_mean,
        target_std=y_std,
        variants=variants,
        eval_steps=eval_steps,
        mse=mse,
        final_mse=final,
        initial=initial,
        initial_predictions=init_pred,
        test_targets=y_te[:, 0].numpy(),
        head_scales=scales,
        head_pred_std=pred_std_a,
        head_pred_mean=pred_mean_a,
        xavier_head_std=xavier_std,
        head_slope=slope,
        claims=claims,
    )


def _train(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    lr: float,
    batch_size: int,
    every: int,
    g: torch.Generator,
) -> np.ndarray:
    (x_tr, y_tr), (x_te, y_te) = train, test
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    curve = [_mse(model, x_te, y_te)]
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x_tr), (batch_size,), generator=g)
        loss = F.mse_loss(model(x_tr[idx]), y_tr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % every == 0:
            curve.append(_mse(model, x_te, y_te))
    return np.asarray(curve)
