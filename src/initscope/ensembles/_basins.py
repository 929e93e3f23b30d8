"""Loss barriers on the straight line between members (linear mode connectivity).

Frankle, Dziugaite, Roy & Carbin (2020), "Linear Mode Connectivity and the Lottery Ticket
Hypothesis": two networks share a basin when the loss stays low on the segment between them;
the barrier is measured above the line between the endpoint losses (Entezari, Sedghi, Saukh &
Neyshabur 2022).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from initscope._torch import check_int
from initscope.ensembles._results import BasinDiversity
from initscope.ensembles._view import Members, as_args, first_tensor

__all__ = ["LossFn", "basins", "check_pairs", "default_loss", "loss_barrier"]

LossFn = Callable[[Tensor, Tensor], Tensor]


def default_loss(task: str) -> LossFn:
    if task == "regression":

        def mse(out: Tensor, y: Tensor) -> Tensor:
            return F.mse_loss(out.to(torch.float64), torch.broadcast_to(y, out.shape).double())

        return mse

    def ce(out: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]).to(torch.float64), y.reshape(-1))

    return ce


def _path_losses(
    template: nn.Module,
    a: dict[str, Tensor],
    b: dict[str, Tensor],
    alphas: np.ndarray,
    args: tuple,
    targets: Tensor,
    loss: LossFn,
) -> np.ndarray:
    losses = []
    for alpha in alphas:
        state = {
            k: torch.lerp(a[k], b[k], float(alpha)) if a[k].is_floating_point() else a[k] for k in a
        }
        out = first_tensor(functional_call(template, state, args), "the model's output")
        losses.append(float(loss(out, targets)))
    return np.asarray(losses)


def basins(
    members: Members,
    args: tuple,
    targets: Tensor,
    loss: LossFn,
    pairs: list[tuple[int, int]],
    points: int,
) -> BasinDiversity:
    assert members.states is not None
    alphas = np.linspace(0.0, 1.0, points)
    losses = np.stack(
        [
            _path_losses(
                members.template, members.states[i], members.states[j], alphas, args, targets, loss
            )
            for i, j in pairs
        ]
    )
    ends = (losses[:, 0] + losses[:, -1]) / 2
    line = np.outer(losses[:, 0], 1 - alphas) + np.outer(losses[:, -1], alphas)
    barriers = (losses - line).max(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(ends > 0, barriers / ends, math.nan)
    return BasinDiversity(
        pairs=pairs,
        alphas=alphas,
        losses=losses,
        barriers=barriers,
        relative_barriers=relative,
        mean_barrier=float(barriers.mean()),
        max_barrier=float(barriers.max()),
    )


def check_pairs(pairs: Any, n: int) -> list[tuple[int, int]]:
    if pairs is None:
        return [(k, k + 1) for k in range(n - 1)]
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or not pairs:
        raise TypeError("pairs: expected a non-empty list of (i, j) member indices")
    out = []
    for p in pairs:
        if not (isinstance(p, Sequence) and len(p) == 2):
            raise TypeError(f"pairs: expected (i, j) pairs, got {p!r}")
        i, j = (check_int("pairs", v, low=0) for v in p)
        if i >= n or j >= n or i == j:
            raise ValueError(f"pairs: expected two different members in 0..{n - 1}, got {p!r}")
        out.append((i, j))
    return out


def loss_barrier(
    a: nn.Module,
    b: nn.Module,
    inputs: Tensor | tuple,
    targets: Tensor,
    loss: LossFn,
    *,
    points: int = 11,
) -> BasinDiversity:
    """The loss along ``(1 - alpha) a + alpha b`` and its barrier (Frankle et al. 2020) for two
    models of one architecture, in eval mode; changes nothing. See :class:`BasinDiversity`."""
    if not callable(loss):
        raise TypeError(f"loss: expected a callable (output, targets) -> scalar, got {loss!r}")
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets: expected a tensor, got {type(targets).__name__}")
    view = Members([a, b])
    if view.states is None:
        raise ValueError("a, b: expected two models with the same parameters and buffers")
    points = check_int("points", points, low=3)
    args = as_args(inputs)
    with view.evaluating():
        return basins(view, args, targets, loss, [(0, 1)], points)
