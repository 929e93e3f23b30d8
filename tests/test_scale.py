"""Scale: all-or-nothing apply without a copy of the model, layout-invariant values, meta models."""

from __future__ import annotations

import pytest
import torch
from helpers import gen, same_tensors, tensors_of
from torch import nn

import initscope
from initscope.policy import Plan


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))


# ---------------------------------------------------------------- all or nothing, no copy


def test_a_bad_last_step_fails_before_the_first_write() -> None:
    model = mlp()
    d = initscope.plan(model).to_dict()
    d["entries"][-1]["choices"][0].update(scheme="normal", params={"std": -1.0})
    before, g, rng = tensors_of(model), gen(), torch.get_rng_state()
    g_state = g.get_state()
    with pytest.raises(ValueError, match="std must be >= 0"):
        Plan.from_dict(d).apply(model, g)
    assert same_tensors(before, tensors_of(model))
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
    assert same_tensors(tensors_of(model), tensors_of(expected))


def test_unknown_tensor_subclass_is_named_and_nothing_changes() -> None:
    class Odd(torch.Tensor):
        pass

    model = mlp()
    p = initscope.plan(model)
    model[2].weight = nn.Parameter(torch.zeros(8, 8).as_subclass(Odd))
    before = tensors_of(model)
    with pytest.raises(TypeError, match=r"2\.weight is a .*Odd, a tensor subclass"):
        p.apply(model, gen())
    assert same_tensors(before, tensors_of(model))


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
        (
            {"seed": 1, "layout_invariant": True, "preset": "lsuv", "data": torch.randn(4, 6)},
            ValueError,
            "LSUV",
        ),
    ],
)
def test_seed_arguments_are_checked(kwargs, error, match) -> None:
    model = mlp()
    before = tensors_of(model)
    with pytest.raises(error, match=match):
        initscope.initialize(model, **kwargs)
    assert same_tensors(before, tensors_of(model))


def test_seed_is_a_fresh_generator() -> None:
    a, b = mlp(), mlp()
    initscope.initialize(a, seed=3)
    initscope.initialize(b, generator=gen(3))
    assert same_tensors(tensors_of(a), tensors_of(b))


# ---------------------------------------------------------------- layout-invariant, meta device


class Zoo(nn.Module):
    """Every kind of tensor a meta-device flow can leave uninitialized."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(30, 16, padding_idx=1)
        self.conv = nn.Conv1d(16, 16, 3, padding=1)
        self.bn = nn.BatchNorm1d(16)
        self.gru = nn.GRU(16, 16, batch_first=True)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 5)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(self.emb(idx).transpose(1, 2)))).transpose(1, 2)
        h, _ = self.gru(h)
        h, _ = self.attn(h, h, h)
        return self.head(self.norm(h)[:, -1])


def test_layout_invariant_values_repeat_and_depend_on_the_seed() -> None:
    a, b, c = Zoo(), Zoo(), Zoo()
    initscope.initialize(a, seed=11, layout_invariant=True)
    initscope.initialize(b, seed=11, layout_invariant=True)
    initscope.initialize(c, seed=12, layout_invariant=True)
    assert same_tensors(tensors_of(a), tensors_of(b))
    assert not torch.equal(a.head.weight, c.head.weight)
    assert torch.equal(a.emb.weight[1], torch.zeros(16))
    g_before = torch.get_rng_state()
    initscope.initialize(a, seed=11, layout_invariant=True)
    assert torch.equal(g_before, torch.get_rng_state())  # nothing drawn from torch's generator


def test_layout_invariant_follows_the_plan_statistics() -> None:
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 256))
    p = initscope.initialize(model, preset="he", seed=0, layout_invariant=True)
    for e in p:
        if e.path.endswith("weight"):
            std = dict(model.named_parameters())[e.path].std().item()
            assert abs(std / e.std - 1) < 0.02, e.path


def test_meta_model_materializes_bit_identical_to_eager() -> None:
    eager = Zoo()
    initscope.initialize(eager, seed=5, layout_invariant=True)
    with torch.device("meta"):
        lazy = Zoo()
    before = {n: t.is_meta for n, t in lazy.state_dict().items()}
    assert all(before.values())
    initscope.initialize(lazy, seed=5, layout_invariant=True, device="cpu")
    assert not any(t.is_meta for t in lazy.state_dict().values())
    assert same_tensors(tensors_of(eager), tensors_of(lazy))
    assert torch.equal(lazy.bn.running_var, torch.ones(16))
    assert lazy.bn.num_batches_tracked.item() == 0
    lazy(torch.randint(0, 30, (2, 7)))  # it runs


def test_meta_model_with_a_generator_matches_eager_statistics() -> None:
    eager, (g1, g2) = Zoo(), (gen(1), gen(1))
    initscope.initialize(eager, generator=g1)
    with torch.device("meta"):
        lazy = Zoo()
    initscope.initialize(lazy, generator=g2, device="cpu")
    for (name, a), (_, b) in zip(eager.named_parameters(), lazy.named_parameters(), strict=True):
        assert torch.equal(a, b), name  # same plan, same generator: the same draws


def test_meta_model_that_cannot_be_fully_initialized_is_refused() -> None:
    class WithBuffer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.register_buffer("table", torch.arange(4.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) + self.table

    with torch.device("meta"):
        model = WithBuffer()
    with pytest.raises(ValueError, match="buffer table"):
        initscope.initialize(model, device="cpu", seed=0, layout_invariant=True)
    assert all(t.is_meta for t in model.state_dict().values())
    with pytest.raises(ValueError, match="device: expected a real device"):
        initscope.initialize(mlp(), device="meta")


def test_meta_model_keeps_tied_weights_tied() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(40, 16)
            self.head = nn.Linear(16, 40, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.head(self.emb(idx))

    eager = Tied()
    initscope.initialize(eager, seed=2, layout_invariant=True)
    with torch.device("meta"):
        lazy = Tied()
    initscope.initialize(lazy, seed=2, layout_invariant=True, device="cpu")
    assert lazy.head.weight is lazy.emb.weight
    assert same_tensors(tensors_of(eager), tensors_of(lazy))


def test_counter_init_matches_initialize_and_checks_first() -> None:
    from initscope.distributed import counter_init_, materialize

    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))
    p = initscope.initialize(model, preset="he", seed=4, layout_invariant=True)
    step = p["0.weight"].choices[0]
    w = torch.empty(64, 32)
    counter_init_(w, step.scheme, seed=4, path="0.weight", fans=step.fans, **step.params)
    assert torch.equal(w, model[0].weight.detach())
    before = w.clone()
    with pytest.raises(ValueError, match="mode"):
        counter_init_(w, "kaiming_normal", seed=4, path="0.weight", mode="sideways")
    with pytest.raises(TypeError, match="seed"):
        counter_init_(w, "normal", seed="4", path="w")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="real floating-point dtype"):
        counter_init_(torch.zeros(4, dtype=torch.complex64), "normal", seed=4, path="z")
    assert torch.equal(w, before)
    with torch.device("meta"):
        tied = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False))
    tied[1].weight = tied[0].weight
    materialize(tied, "cpu")
    assert tied[1].weight is tied[0].weight and not tied[0].weight.is_meta
