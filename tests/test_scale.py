"""Scale: all-or-nothing apply without a copy of the model, layout-invariant values, meta models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import initscope
from initscope.policy import Plan


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))


# ---------------------------------------------------------------- all or nothing, no copy


def test_a_bad_last_step_fails_before_the_first_write() -> None:
    model = mlp()
    d = initscope.plan(model).to_dict()
    d["entries"][-1]["choices"][0].update(scheme="normal", params={"std": -1.0})
    before, g, rng = state(model), gen(), torch.get_rng_state()
    g_state = g.get_state()
    with pytest.raises(ValueError, match="std must be >= 0"):
        Plan.from_dict(d).apply(model, g)
    assert same(before, state(model))
    assert torch.equal(g.get_state(), g_state) and torch.equal(rng, torch.get_rng_state())


def test_apply_makes_no_copy_of_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    model = nn.Sequential(nn.Embedding(10, 8, padding_idx=0), nn.Linear(8, 8), nn.LayerNorm(8))
    expected = nn.Sequential(nn.Embedding(10, 8, padding_idx=0), nn.Linear(8, 8), nn.LayerNorm(8))
    p = initscope.plan(model)
    p.apply(expected, gen(5))

    def no_clone(*args, **kwargs):
        raise AssertionError("apply cloned a tensor")

    monkeypatch.setattr(torch.Tensor, "clone", no_clone)
    p.apply(model, gen(5))
    monkeypatch.undo()
    assert same(state(model), state(expected))


def test_unknown_tensor_subclass_is_named_and_nothing_changes() -> None:
    class Odd(torch.Tensor):
        pass

    model = mlp()
    p = initscope.plan(model)
    model[2].weight = nn.Parameter(torch.zeros(8, 8).as_subclass(Odd))
    before = state(model)
    with pytest.raises(TypeError, match=r"2\.weight is a .*Odd, a tensor subclass"):
        p.apply(model, gen())
    assert same(before, state(model))


def test_meta_parameters_need_a_device() -> None:
    with torch.device("meta"):
        model = mlp()
    with pytest.raises(ValueError, match="meta device: pass device="):
        initscope.plan(model).apply(model, gen())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layout_invariant": True}, ValueError, "needs seed="),
        ({"seed": 1.5}, TypeError, "seed: expected an int"),
        ({"seed": 1, "generator": torch.Generator()}, ValueError, "not both"),
        ({"seed": 1, "layout_invariant": 1}, TypeError, "layout_invariant"),
    ],
)
def test_seed_arguments_are_checked(kwargs, error, match) -> None:
    model = mlp()
    before = state(model)
    with pytest.raises(error, match=match):
        initscope.initialize(model, **kwargs)
    assert same(before, state(model))


def test_seed_is_a_fresh_generator() -> None:
    a, b = mlp(), mlp()
    initscope.initialize(a, seed=3)
    initscope.initialize(b, generator=gen(3))
    assert same(state(a), state(b))
