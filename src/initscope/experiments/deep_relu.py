"""He et al. 2015 at their depth: 30 ReLU layers without normalization, trained from five inits.

He et al. (2015) showed that a 30-layer ReLU net without normalization trains from their init
(Var = 2 / fan_in) and does not move from Xavier's (Var = 1 / fan_in on square layers, which
halves the variance at every layer). Here: 30 ReLU layers of width 128 on the digits data, SGD
with momentum 0.9 (no adaptive optimizer, no normalization, no skip connections), learning rate
0.003, 15 epochs, several seeds, from torch's default (nn.Linear's own init), Xavier, He,
initscope.initialize(model) (preset "auto") and LSUV (Mishkin & Matas 2016, here from
initialize(model, "lsuv")). One more line trains He at learning rate 0.01, to show how narrow the
working range of plain SGD is at this depth.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

import initscope
from initscope.experiments._common import (
    Claim,
    Result,
    child_generator,
    digits,
    generator_or_default,
    mlp,
    one_thread,
    preactivation_stds,
    train_per_step,
)

TITLE = "He et al. 2015 at their depth: 30 ReLU layers, five inits"
#: The lines: initscope presets; "he, lr 0.01" is He trained at HIGH_LR.
LINES = ("torch", "xavier", "he", "auto", "lsuv", "he, lr 0.01")
HIGH_LR = 0.01


@dataclasses.dataclass
class DeepReluResult(Result):
    """Per line: the std of each ReLU's input at init on a batch of training images
    (``stds[line]``, layers 1..depth, first seed) and the share of the last one's variance that
    changes with the input (``input_share[line]``), the training loss per step
    (``loss[line]``, ``(repeats, steps)``, NaN after a divergence) and the train accuracy after
    every epoch (``train_accuracy[line]``, ``(repeats, epochs)``)."""

    depth: int
    width: int
    epochs: int
    lr: float
    high_lr: float
    momentum: float
    batch_size: int
    repeats: int
    stds: dict[str, np.ndarray]
    input_share: dict[str, float]
    loss: dict[str, np.ndarray]
    train_accuracy: dict[str, np.ndarray]
    claims: list[Claim]


def _init(net: torch.nn.Module, line: str, x: torch.Tensor, generator: torch.Generator) -> None:
    preset = "he" if line.startswith("he") else line
    initscope.initialize(net, preset, generator=generator, data=x if preset == "lsuv" else None)


@torch.no_grad()
def _input_share(net: torch.nn.Sequential, x: torch.Tensor) -> float:
    """Share of the last ReLU input's second moment that varies across the batch:
    ``mean_j Var_x(z_j) / mean_j E_x[z_j^2]`` (1: all signal; 0: one vector for every input)."""
    z = net[:-2](x)
    return float(z.var(0, unbiased=False).mean() / z.pow(2).mean())


def run(*, quick: bool = False, generator: torch.Generator | None = None) -> DeepReluResult:
    """Run the experiment; ``quick`` trains 1 epoch, once, instead of 15 epochs, 3 times."""
    g = generator_or_default(generator)
    depth, width, lr, momentum, batch_size = 30, 128, 0.003, 0.9, 64
    epochs, repeats = (1, 1) if quick else (15, 3)
    stds, input_share, loss, acc = {}, {}, {}, {}
    with one_thread():
        data = digits(g)
        batch = data.x_train[:256]
        seeds = [child_generator(g).initial_seed() for _ in range(repeats)]
        for line in LINES:
            runs, accs = [], []
            for i, seed in enumerate(seeds):  # the same seeds for every line: a paired comparison
                rg = torch.Generator().manual_seed(seed)
                net = mlp("relu", depth, width, in_features=64, out_features=10)
                _init(net, line, batch, rg)
                if i == 0:
                    stds[line] = preactivation_stds(net, batch)
                    input_share[line] = _input_share(net, batch)
                c = train_per_step(
                    net, data, epochs=epochs, lr=HIGH_LR if line == "he, lr 0.01" else lr,
                    batch_size=batch_size, momentum=momentum, generator=rg,
                )  # fmt: skip
                runs.append(c.loss)
                accs.append(c.train_accuracy)
            loss[line], acc[line] = np.stack(runs), np.stack(accs)

    final_acc = {k: acc[k][:, -1] for k in LINES}  # NaN for a diverged run
    final_loss = {k: loss[k][:, -20:].mean(1) for k in LINES}
    chance = math.log(10)

    def rng(k: str) -> str:
        a = 100 * final_acc[k]
        if repeats == 1:
            return f"{a[0]:.1f}%"
        return f"{np.nanmin(a):.1f}-{np.nanmax(a):.1f}%" + (
            f" ({int(np.isnan(a).sum())} diverged)" if np.isnan(a).any() else ""
        )

    def drop(k: str) -> float:
        return float(np.log2(stds[k][-1] / stds[k][0]))

    runs_word = f"{repeats} seeds" if repeats > 1 else "1 seed"
    he_ok = bool(np.all(final_acc["he"] >= 0.85))
    xavier_stuck = bool(np.all(np.abs(final_loss["xavier"] - chance) < 0.05))
    best = max(np.nanmean(final_acc[k]) for k in ("he", "auto", "lsuv"))
    claims = [
        Claim(
            f"He et al. 2015: a {depth}-layer ReLU net without normalization trains from He's init "
            "and does not move from Xavier's.",
            f"train accuracy after {epochs} epoch{'s' if epochs > 1 else ''} ({runs_word}): "
            f"He {rng('he')}, Xavier {rng('xavier')}; Xavier's final loss "
            f"{np.mean(final_loss['xavier']):.3f} "
            f"(chance ln 10 = {chance:.3f}); ReLU-input std from layer 1 to {depth}: He "
            f"{drop('he'):+.1f} bits, Xavier {drop('xavier'):+.1f} bits.",
            he_ok and xavier_stuck,
        ),
        Claim(
            "torch's default nn.Linear init (weights Var = 1 / (3 fan_in), biases uniform in "
            "+-1 / sqrt(fan_in)) does not train at this depth either: the weights divide the "
            "variance by 6 per layer, and what reaches the top is mostly the biases' constant.",
            f"ReLU-input std from layer 1 to {depth}: {drop('torch'):+.1f} bits; share of the "
            f"layer-{depth} variance that changes with the input: torch "
            f"{100 * input_share['torch']:.0f}%, He {100 * input_share['he']:.0f}%; train "
            f"accuracy {rng('torch')}.",
            bool(input_share["torch"] < 0.5 and np.nanmax(final_acc["torch"]) < 0.2),
        ),
        Claim(
            "initscope auto and LSUV, which keep the signal too, train this net about as well as "
            "He (mean train accuracy within 5 points of the best of the three).",
            f"train accuracy: auto {rng('auto')}, LSUV {rng('lsuv')}, He {rng('he')}; std change "
            f"over {depth} layers: auto {drop('auto'):+.1f} bits, LSUV {drop('lsuv'):+.1f} bits.",
            bool(all(np.nanmean(final_acc[k]) >= best - 0.05 for k in ("he", "auto", "lsuv"))),
        ),
        Claim(
            f"The working range of the learning rate is narrow at this depth: at {HIGH_LR} "
            "(3x higher) He itself trains worse or diverges.",
            f"train accuracy He at lr {HIGH_LR}: {rng('he, lr 0.01')}, at lr {lr}: {rng('he')}.",
            bool(
                np.isnan(final_acc["he, lr 0.01"]).any()
                or np.nanmean(final_acc["he, lr 0.01"]) < np.nanmean(final_acc["he"]) - 0.05
            ),
        ),
    ]
    return DeepReluResult(
        depth=depth,
        width=width,
        epochs=epochs,
        lr=lr,
        high_lr=HIGH_LR,
        momentum=momentum,
        batch_size=batch_size,
        repeats=repeats,
        stds=stds,
        input_share=input_share,
        loss=loss,
        train_accuracy=acc,
        claims=claims,
    )
