"""Shrink and perturb (Ash & Adams 2020, "On Warm-Starting Neural Network Training")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from initscope._torch import check_real
from initscope.policy import Plan, Rule, plan

__all__ = ["shrink_perturb"]


def shrink_perturb(
    model: nn.Module,
    shrink: float,
    noise: float,
    *,
    preset: str = "auto",
    rules: Sequence[Rule] | None = None,
    example_input: Any = None,
    generator: torch.Generator | None = None,
) -> Plan:
    """Move a trained model towards a fresh initialization, in place:

        theta <- shrink * theta + noise * theta_fresh,

    ``theta_fresh`` drawn for every parameter by the model's plan (:func:`initscope.plan` with
    ``preset`` and ``rules``: the same scheme, std and constants a fresh ``initialize`` would
    write, so a norm's weight gets ``shrink * gamma + noise * 1`` and a zero-initialized bias
    ``shrink * b``). Ash & Adams (2020) found that a warm-started network generalizes worse
    than a fresh one on new data, and that shrinking (``shrink`` ~ 0.3-0.6, the gradients
    rebalance) and perturbing (``noise`` ~ 0.01-0.1, fresh directions) closes the gap while
    keeping part of what was learned. ``shrink=1, noise=0`` changes nothing; ``shrink=0,
    noise=1`` is a fresh initialization.

    Parameters with ``requires_grad=False`` (a frozen backbone) and parameters the plan leaves
    untouched stay as they are; buffers (BatchNorm statistics) too.

    Args:
        model: the model.
        shrink, noise: finite numbers >= 0.
        preset, rules, example_input: as for :func:`initscope.plan`.
        generator: draws ``theta_fresh`` (in plan order).

    Returns:
        The :class:`Plan` that drew ``theta_fresh``.

    Raises:
        TypeError, ValueError: bad arguments (before anything changes), as :func:`initscope.plan`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    s = check_real("shrink", shrink, low=0)
    a = check_real("noise", noise, low=0)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator: expected a torch.Generator or None, got {type(generator).__name__}"
        )
    p = plan(model, preset, example_input=example_input, rules=rules)
    params = p.validate(model)
    fresh: list[tuple[nn.Parameter, torch.Tensor]] = []
    with torch.no_grad():
        for entry in p:
            t = params[entry.path]
            if not entry.touched or not t.requires_grad:
                continue
            draw = t.detach().clone()  # rows no step covers keep their value
            for c in entry.choices:
                c.apply(draw, generator)
            fresh.append((t, draw))
        for t, draw in fresh:  # every draw done: now write
            t.mul_(s).add_(draw, alpha=a)
    return p
