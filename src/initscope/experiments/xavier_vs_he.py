"""Xavier vs He on a deep ReLU net: signal propagation at initialization, then training.

ReLU zeroes half of a centred pre-activation, so ``E[relu(z)^2] = Var(z) / 2``. Xavier's
``Var(W) = 2 / (n_in + n_out) = 1 / n`` on square layers therefore halves the variance at every
layer (the std falls by ``2^(-1/2)`` per layer, ``2^(-14.5)`` from layer 1 to layer 30), while He's
``Var(W) = 2 / n_in`` keeps it (He et al. 2015). With the signal gone, SGD barely moves a deep
Xavier ReLU net; the He net trains.
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

TITLE = "Xavier vs He on a deep ReLU net"
SCHEMES: tuple[Scheme, ...] = ("xavier", "he")


@dataclasses.dataclass
class XavierVsHeResult(Result):
    """Per-layer pre-activation std at init (``stds[scheme]``, layers 1..depth) and training curves
    (``curves[scheme]["train_loss" | "test_accuracy"]``, shape ``(repeats, epochs)``)."""

    depth: int
    width: int
    batch: int
    stds: dict[str, np.ndarray]
    theory_xavier_log2: np.ndarray
    train_depth: int
    train_width: int
    epochs: int
    lr: float
    repeats: int
    curves: dict[str, dict[str, np.ndarray]]
    final_accuracy: dict[str, float]
    claims: list[Claim]


def run(*, quick: bool = False, generator: torch.Generator | None = None) -> XavierVsHeResult:
    """Run the experiment; ``quick`` trains for 2 epochs, once, instead of 10 epochs, 3 times."""
    g = generator_or_default(generator)
    depth, width, batch = 30, 256, 256 if quick else 512
    train_depth, train_width, lr, batch_size = 20, 128, 0.01, 64
    epochs, repeats = (2, 1) if quick else (10, 3)
    with one_thread():
        x = torch.randn(batch, width, generator=g)
        stds: dict[str, np.ndarray] = {}
        for scheme in SCHEMES:
            net = relu_mlp(depth, width, in_features=width, out_features=width)
            init_linears(net, scheme, g)
            stds[scheme] = preactivation_stds(net, x)

        data = digits(g)
        curves: dict[str, dict[str, np.ndarray]] = {
            scheme: train_repeats(
                data,
                scheme=scheme,
                batch_norm=False,
                depth=train_depth,
                width=train_width,
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                repeats=repeats,
                generator=g,
            )
            for scheme in SCHEMES
        }

    theory = -0.5 * np.arange(depth)  # Xavier: log2(std / std at layer 1), Var halves per layer
    drop = {s: float(np.log2(stds[s][-1] / stds[s][0])) for s in SCHEMES}
    acc: dict[str, float] = {s: float(curves[s]["test_accuracy"][:, -1].mean()) for s in SCHEMES}
    loss = {s: float(curves[s]["train_loss"][:, -1].mean()) for s in SCHEMES}
    claims = [
        Claim(
            "Xavier halves a ReLU net's variance at every layer (std x 2^-14.5 over 30 layers); "
            "He keeps it.",
            f"log2(std at layer {depth} / layer 1): Xavier {drop['xavier']:.1f} "
            f"(theory {theory[-1]:.1f}), He {drop['he']:+.1f} (theory 0).",
            bool(abs(drop["xavier"] - theory[-1]) < 2.0 and abs(drop["he"]) < 2.0),
        ),
        Claim(
            f"He trains a deep ReLU net; Xavier stalls "
            f"({train_depth} layers, SGD, {epochs} epochs).",
            f"test accuracy He {100 * acc['he']:.1f}% vs Xavier {100 * acc['xavier']:.1f}%; "
            f"final train loss He {loss['he']:.3f} vs Xavier {loss['xavier']:.3f} "
            f"(mean of {repeats}; chance = 10%, loss ln 10 = 2.303).",
            bool(acc["he"] - acc["xavier"] >= 0.2),
        ),
    ]
    return XavierVsHeResult(
        depth=depth,
        width=width,
        batch=batch,
        stds=stds,
        theory_xavier_log2=theory,
        train_depth=train_depth,
        train_width=train_width,
        epochs=epochs,
        lr=lr,
        repeats=repeats,
        curves=curves,
        final_accuracy=acc,
        claims=claims,
    )
