"""Fixtures shared by the test modules.

- ``gen(seed=0)``: a fresh CPU ``torch.Generator`` seeded with ``seed``.
- ``mlp(depth, width, act, ...)``: a plain MLP, ``depth`` x (Linear, activation), built from
  torch's default init after ``torch.manual_seed(seed)``, so that the same call gives the same
  weights in every test.
- ``model_state(model)`` / ``assert_same_state(model, before)``: a bit-for-bit record of what
  "change nothing" promises (parameters, every buffer including non-persistent ones, grads,
  requires_grad, train/eval modes, torch's global RNG) and the check against it.

The fixtures return the functions, so a test asks for them by name (``def test_x(gen, mlp)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn


def make_generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_mlp(
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


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes: NaN equals the same NaN, -0.0 differs from 0.0."""
    return t.detach().reshape(-1).contiguous().view(torch.uint8)


@dataclass(frozen=True)
class ModelState:
    """Everything a call that promises to change nothing must leave as it was."""

    tensors: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    requires_grad: dict[str, bool]
    modes: dict[str, bool]
    rng: torch.Tensor


def model_state(model: nn.Module) -> ModelState:
    named = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers(remove_duplicate=False))  # non-persistent ones too
    return ModelState(
        tensors={k: v.detach().clone() for k, v in {**named, **buffers}.items()},
        grads={k: None if p.grad is None else p.grad.clone() for k, p in named.items()},
        requires_grad={k: p.requires_grad for k, p in named.items()},
        modes={k: m.training for k, m in model.named_modules(remove_duplicate=False)},
        rng=torch.get_rng_state(),
    )


def assert_same_state(model: nn.Module, before: ModelState) -> None:
    after = model_state(model)
    assert after.tensors.keys() == before.tensors.keys()
    for k, v in after.tensors.items():
        old = before.tensors[k]
        assert v.dtype == old.dtype and v.shape == old.shape, k
        assert torch.equal(_bits(v), _bits(old)), k
    assert after.grads.keys() == before.grads.keys()
    for k, g in after.grads.items():
        old_g = before.grads[k]
        assert (g is None) == (old_g is None), k
        assert g is None or old_g is None or torch.equal(_bits(g), _bits(old_g)), k
    assert after.requires_grad == before.requires_grad
    assert after.modes == before.modes
    assert torch.equal(after.rng, before.rng), "torch's global RNG advanced"


@pytest.fixture
def gen() -> Callable[..., torch.Generator]:
    return make_generator


@pytest.fixture
def mlp() -> Callable[..., nn.Sequential]:
    return make_mlp


@pytest.fixture
def state() -> tuple[Callable[[nn.Module], ModelState], Callable[[nn.Module, ModelState], None]]:
    """``record, check = state``: ``before = record(model)`` ... ``check(model, before)``."""
    return model_state, assert_same_state
