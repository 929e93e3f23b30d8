"""Builders shared by the test modules, importable where a fixture cannot reach (module-level
helpers, ``parametrize`` lists): ``from helpers import gen, mlp``. ``conftest.py`` serves the
same functions as the fixtures ``gen`` and ``mlp``.

- ``gen(seed=0)``: a fresh CPU ``torch.Generator`` seeded with ``seed``.
- ``mlp(depth, width, act, ...)``: a plain MLP, ``depth`` x (Linear, activation), built from
  torch's default init after ``torch.manual_seed(seed)``, so that the same call gives the same
  weights in every test.
- ``tensors_of(model)`` / ``same_tensors(a, b)``: a copy of the state dict, and whether two
  copies are equal tensor for tensor (``conftest``'s ``state`` fixture checks more: grads,
  modes, the global RNG).
"""

from __future__ import annotations

import torch
import torch.nn as nn


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mlp(
    depth: int = 6,
    width: int = 32,
    act: type[nn.Module] | None = nn.ReLU,
    *,
    d_in: int | None = None,
    d_out: int | None = None,
    seed: int = 0,
) -> nn.Sequential:
    """``depth`` x (Linear, ``act()``); ``d_in``/``d_out`` change the first layer's input and
    the last layer's output width; ``d_out`` also drops the last activation (a linear head)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(depth):
        last = i == depth - 1
        n_in = d_in if (i == 0 and d_in is not None) else width
        n_out = d_out if (last and d_out is not None) else width
        layers.append(nn.Linear(n_in, n_out))
        if act is not None and not (last and d_out is not None):
            layers.append(act())
    return nn.Sequential(*layers)


def tensors_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
