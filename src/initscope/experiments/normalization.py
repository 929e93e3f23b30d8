"""BatchNorm and initialization: normalization rescues a bad init.

The deep ReLU net of the xavier_vs_he experiment with Xavier weights, with and without
BatchNorm after every Linear, and the same with He weights. BatchNorm divides each pre-activation
by its batch std (Ioffe & Szegedy 2015), so the Xavier collapse cannot compound; the classic
textbook advice adds that proper initialization still makes training start faster.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from initscope.experiments._common import (
    Claim,
    Result,
    Scheme,
    digits,
    generator_or_default,
    init_linears,
    one_thread,
    preactivation_stds,
    relu_mlp,
    train_repeats,
)

TITLE = "BatchNorm rescues a bad init"
VARIANTS: dict[str, tuple[Scheme, bool]] = {
    "xavier": ("xavier", False),
    "xavier+bn": ("xavier", True),
    "he": ("he", False),
    "he+bn": ("he", True),
}


@dataclasses.dataclass
class NormalizationResult(Result):
    """Per-layer std of the ReLU inputs at init (train-mode BatchNorm) and training curves per
    variant (``curves[variant]["train_loss" | "test_accuracy"]``, shape ``(repeats, epochs)``)."""

    depth: int
    width: int
    batch: int
    stds: dict[str, np.ndarray]
    epochs: int
    lr: float
    repeats: int
    curves: dict[str, dict[str, np.ndarray]]
    final_accuracy: dict[str, float]
    first_epoch_loss: dict[str, float]
    claims: list[Claim]


def run(*, quick: bool = False, generator: torch.Generator | None = None) -> NormalizationResult:
    """Run the experiment; ``quick`` trains for 2 epochs, once, instead of 10 epochs, 3 times."""
    g = generator_or_default(generator)
    depth, width, lr, batch_size = 20, 128, 0.01, 64
    epochs, repeats = (2, 1) if quick else (10, 3)
    with one_thread():
        data = digits(g)
        probe = data.x_train[:512]
        stds, curves = {}, {}
        for name, (scheme, bn) in VARIANTS.items():
            net = relu_mlp(depth, width, in_features=64, out_features=10, batch_norm=bn)
            init_linears(net, scheme, g)
            stds[name] = preactivation_stds(net.train(), probe)
            curves[name] = train_repeats(
                data,
                scheme=scheme,
                batch_norm=bn,
                depth=depth,
                width=width,
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                repeats=repeats,
                generator=g,
            )

    acc = {k: float(c["test_accuracy"][:, -1].mean()) for k, c in curves.items()}
    first = {k: float(c["train_loss"][:, 0].mean()) for k, c in curves.items()}
    pct = {k: f"{100 * v:.1f}%" for k, v in acc.items()}
    claims = [
        Claim(
            "BatchNorm (BN) rescues a bad init: a deep Xavier ReLU net that stalls trains with "
            "BatchNorm.",
            f"test accuracy Xavier {pct['xavier']} -> Xavier + BN {pct['xavier+bn']}; "
            f"ReLU-input std at layer {depth}: {stds['xavier'][-1]:.2g} -> "
            f"{stds['xavier+bn'][-1]:.2g}.",
            bool(acc["xavier+bn"] - acc["xavier"] >= 0.2),
        ),
        Claim(
            "With normalization either init works: Xavier + BN and He + BN end within "
            "3 points of accuracy.",
            f"test accuracy Xavier + BN {pct['xavier+bn']}, He + BN {pct['he+bn']} "
            f"(mean of {repeats}, after {epochs} epochs).",
            bool(abs(acc["he+bn"] - acc["xavier+bn"]) <= 0.03),
        ),
        Claim(
            "With normalization, the proper init (He) still starts training faster.",
            f"mean training loss in epoch 1: He + BN {first['he+bn']:.3f}, "
            f"Xavier + BN {first['xavier+bn']:.3f}.",
            bool(first["he+bn"] <= first["xavier+bn"]),
        ),
    ]
    return NormalizationResult(
        depth=depth,
        width=width,
        batch=len(probe),
        stds=stds,
        epochs=epochs,
        lr=lr,
        repeats=repeats,
        curves=curves,
        final_accuracy=acc,
        first_epoch_loss=first,
        claims=claims,
    )
