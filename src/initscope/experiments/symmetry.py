"""The symmetry problem: constant or zero weights make every hidden unit a copy of the others.

With every weight of a layer equal, all its units compute the same function of the input, so they
receive the same gradient and take the same step: they stay copies of each other for the whole of
training, and a layer of 64 units works like a layer of one (its representation has rank 1). With
all weights zero, no gradient reaches any weight at all. Any random draw breaks the tie. Measured
on a tanh MLP (64 -> 64 -> 64 -> 10) trained on the digits data, and checked with
``initscope.diagnose``, whose verdict for identical units is "symmetric".
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn

import initscope
from initscope import init
from initscope.experiments._common import (
    Claim,
    Result,
    child_generator,
    digits,
    generator_or_default,
    mlp,
    one_thread,
    train_per_step,
)

TITLE = "The symmetry problem: constant and zero init"
VARIANTS = ("zero", "constant", "xavier", "auto")
CONSTANT = 0.05  # every weight of the constant variant
RANK_RTOL = 1e-9  # singular values below this fraction of the largest count as zero (float64)
SAME = 1e-12  # units closer than this (tanh outputs, float64) are copies up to round-off


@dataclasses.dataclass
class SymmetryResult(Result):
    """Per variant: rank of the last hidden layer's representation of the training images after
    every epoch (``rank[v]``, index 0 = at init), training loss per step, train accuracy per
    epoch, the largest difference between two units after training, the ``diagnose`` verdict at
    init, and a few test images' hidden activations after training (``snapshot[v]``)."""

    width: int
    epochs: int
    lr: float
    batch_size: int
    rank: dict[str, np.ndarray]
    loss: dict[str, np.ndarray]
    train_accuracy: dict[str, np.ndarray]
    unit_spread: dict[str, float]
    diagnose_verdict: dict[str, str]
    snapshot: dict[str, np.ndarray]
    majority_rate: float
    claims: list[Claim]


def _init(model: nn.Sequential, variant: str, generator: torch.Generator) -> None:
    if variant == "auto":
        initscope.initialize(model, generator=generator)
        return
    for m in model.modules():
        if isinstance(m, nn.Linear):
            if variant == "zero":
                init.zeros_(m.weight)
            elif variant == "constant":
                init.constant_(m.weight, CONSTANT)
            else:
                init.xavier_normal_(m.weight, generator=generator)
            init.zeros_(m.bias)


@torch.no_grad()
def _hidden(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The last hidden layer's output (the input of the head)."""
    return model[:-1](x)


def _rank(h: torch.Tensor) -> int:
    """Numerical rank: singular values above ``RANK_RTOL`` times the largest (0 for h = 0)."""
    s = torch.linalg.svdvals(h)
    if s.max() == 0:
        return 0
    return int((s > RANK_RTOL * s.max()).sum())


def run(*, quick: bool = False, generator: torch.Generator | None = None) -> SymmetryResult:
    """Run the experiment; ``quick`` trains 4 epochs instead of 20. Computed in float64 so that
    identical units are identical to the last bit."""
    g = generator_or_default(generator)
    width, lr, batch_size = 64, 0.1, 64
    epochs = 4 if quick else 20
    rank, loss, acc, spread, diagnose_verdict, snapshot = {}, {}, {}, {}, {}, {}
    with one_thread():
        data = digits(g)
        data = dataclasses.replace(data, x_train=data.x_train.double(), x_test=data.x_test.double())
        n_classes = int(data.y_train.max()) + 1
        majority = float(torch.bincount(data.y_train).max() / len(data.y_train))
        for variant in VARIANTS:
            vg = child_generator(g)
            net = mlp("tanh", 2, width, in_features=data.x_train.shape[1], out_features=n_classes)
            net = net.double()
            _init(net, variant, vg)
            diagnose_verdict[variant] = initscope.diagnose(net, data.x_train[:256]).verdict
            ranks = [_rank(_hidden(net, data.x_train))]
            losses, accs = [], []
            for _ in range(epochs):  # one epoch at a time, to record the rank after each
                curves = train_per_step(
                    net, data, epochs=1, lr=lr, batch_size=batch_size, generator=vg
                )
                losses.append(curves.loss)
                accs.append(curves.train_accuracy)
                ranks.append(_rank(_hidden(net, data.x_train)))
            h = _hidden(net, data.x_train)
            rank[variant] = np.asarray(ranks)
            loss[variant] = np.concatenate(losses)
            acc[variant] = np.concatenate(accs)
            spread[variant] = float((h - h[:, :1]).abs().max())
            snapshot[variant] = _hidden(net, data.x_test[:32]).numpy()

    const, zero = "constant", "zero"
    random_ok = all(
        rank[v][0] == width and rank[v][-1] == width and acc[v][-1] > 0.9
        for v in ("xavier", "auto")
    )
    claims = [
        Claim(
            f"Constant init (every weight {CONSTANT}): the units of a layer stay copies of each "
            "other through training, so the hidden representation has rank 1.",
            f"rank of the {width}-unit representation of the training images: "
            f"{rank[const][0]} at init, {rank[const][-1]} after {epochs} epochs of SGD; largest "
            f"difference between two units {spread[const]:.2g} (float64 round-off); train accuracy "
            f"{100 * acc[const][-1]:.1f}%.",
            bool(rank[const][0] == 1 and rank[const][-1] == 1 and spread[const] < SAME),
        ),
        Claim(
            "Zero init: no gradient reaches any weight; the hidden units stay at 0 and only the "
            "output bias learns, so the net predicts the most frequent class.",
            f"rank {rank[zero][0]} at init, {rank[zero][-1]} after {epochs} epochs; train "
            f"accuracy {100 * acc[zero][-1]:.1f}% (most frequent class: {100 * majority:.1f}%).",
            bool(rank[zero][-1] == 0 and acc[zero][-1] <= majority + 1e-9),
        ),
        Claim(
            "initscope.diagnose flags constant init at once: verdict 'symmetric'.",
            "verdict at init: " + ", ".join(f"{v} {diagnose_verdict[v]}" for v in VARIANTS) + ".",
            bool(
                diagnose_verdict[const] == "symmetric"
                and all(diagnose_verdict[v] != "symmetric" for v in ("xavier", "auto"))
            ),
        ),
        Claim(
            "Any random scheme breaks the symmetry: every unit differs from the start and the "
            "net trains.",
            f"rank {rank['xavier'][0]} of {width} at init for Xavier and {rank['auto'][0]} for "
            f"initscope auto; train accuracy after {epochs} epochs Xavier "
            f"{100 * acc['xavier'][-1]:.1f}%, auto {100 * acc['auto'][-1]:.1f}%.",
            bool(random_ok),
        ),
    ]
    return SymmetryResult(
        width=width,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        rank=rank,
        loss=loss,
        train_accuracy=acc,
        unit_spread=spread,
        diagnose_verdict=diagnose_verdict,
        snapshot=snapshot,
        majority_rate=majority,
        claims=claims,
    )
