"""Fixtures shared by the test modules.

- ``gen(seed=0)``, ``mlp(depth, width, act, ...)``: :func:`helpers.gen` and
  :func:`helpers.mlp` (a seeded generator; a plain MLP with reproducible weights). Module-level
  code imports them instead: ``from helpers import gen, mlp``.
- ``model_state(model)`` / ``assert_same_state(model, before)``: a bit-for-bit record of what
  "change nothing" promises (parameters, every buffer including non-persistent ones, grads,
  requires_grad, train/eval modes, torch's global RNG) and the check against it.

- ``one_thread``: one intra-op thread for the test (the CI machine is shared: small ops stay
  fast and steady); modules use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``.

The fixtures return the functions, so a test asks for them by name (``def test_x(gen, mlp)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
from helpers import gen as make_generator
from helpers import mlp as make_mlp


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


@pytest.fixture
def one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
