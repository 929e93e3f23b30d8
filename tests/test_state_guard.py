"""One batch convention and one state guard: what promises to change nothing changes nothing.

Every case compares the model bit for bit before and after: parameters, all buffers (persistent
or not), parametrization state, grads, train/eval modes, requires_grad, and torch's global RNG.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import gen, mlp
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

import initscope
from initscope._torch import Batch, removing, state_guard
from initscope.calibration import lsuv


def state(model: nn.Module) -> dict:
    """Everything the guard promises to keep, with the objects' identities."""
    return {
        "params": [(n, p, p.detach().clone(), p.requires_grad) for n, p in _params(model)],
        "grads": [
            (n, p.grad, None if p.grad is None else p.grad.clone()) for n, p in _params(model)
        ],
        "buffers": [(n, b, b.detach().clone()) for n, b in model.named_buffers()],
        "modes": [m.training for m in model.modules()],
        "rng": torch.get_rng_state(),
    }


def _params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return list(model.named_parameters(remove_duplicate=False))


def assert_same(model: nn.Module, before: dict) -> None:
    after = state(model)
    for (n, p, v, flag), (n2, p2, v2, flag2) in zip(before["params"], after["params"], strict=True):
        assert n == n2 and p is p2 and torch.equal(v, v2) and flag == flag2, n
    for (n, g, v), (_, g2, v2) in zip(before["grads"], after["grads"], strict=True):
        assert g is g2, n
        assert (v is None and v2 is None) or torch.equal(v, v2), n
    assert len(before["buffers"]) == len(after["buffers"])
    for (n, b, v), (n2, b2, v2) in zip(before["buffers"], after["buffers"], strict=True):
        assert n == n2 and b is b2 and torch.equal(v, v2), n
    assert before["modes"] == after["modes"]
    assert torch.equal(before["rng"], after["rng"]), "torch's global RNG moved"
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def small() -> nn.Sequential:
    """Linear(16, 32), ReLU, Linear(32, 4) with the weights of ``torch.manual_seed(0)``."""
    return mlp(2, 32, d_in=16, d_out=4)


# ----------------------------------------------------------------------------- the helpers


def test_batch_convention() -> None:
    x, z = torch.randn(2, 3), torch.randn(2, 4)
    assert Batch.of(x).args == (x,) and Batch.of((x, z)).args == (x, z)
    assert Batch.of([x, z]).args == (x, z) and dict(Batch.of({"a": x}).kwargs) == {"a": x}
    b = Batch((x,), {"z": z}, target=1)
    assert Batch.of(b) is b and b.tensors() == [x, z] and b.first() is x
    assert b.call(lambda x, z: (x, z)) == (x, z)
    assert b.map(lambda t: t * 0).first().abs().sum() == 0 and b.map(lambda t: t).target == 1


def test_guard_restores_everything_and_keeps_only_the_declared_writes() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    model.register_buffer("scratch", torch.zeros(2), persistent=False)
    model[0].weight.grad = torch.ones_like(model[0].weight)
    before = state(model)
    with state_guard(model):
        model.train(False)
        model(torch.randn(3, 4))
        model.scratch.add_(1)
        model[1].running_mean = torch.ones(4)  # a buffer replaced by another object
        model[0].weight.requires_grad_(False)
        model[0].weight.grad = None
    assert_same(model, before)
    w = model[0].weight
    with torch.no_grad(), state_guard(model, writes=[w]):
        w.mul_(2)
        model.scratch.add_(1)
    assert torch.equal(w, before["params"][0][2] * 2) and model.scratch.sum() == 0
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad(), state_guard(model, writes=[w]):
        w.zero_()
        raise RuntimeError("boom")
    assert torch.equal(w, before["params"][0][2] * 2)
    with pytest.raises(RuntimeError, match=r"0\.bias.*written in place"):
        with torch.no_grad(), state_guard(model):
            model[0].bias.add_(1)  # a parameter the block did not declare: cannot be restored


def test_removing_removes_hooks_when_the_forward_raises() -> None:
    model = small()
    with pytest.raises(ValueError, match="stop"), removing() as handles:
        handles.append(model[0].register_forward_hook(lambda *a: None))
        raise ValueError("stop")
    assert not model[0]._forward_hooks


# ----------------------------------------------------------------------------- diagnose


def _nan_batch() -> torch.Tensor:
    x = torch.randn(32, 16, generator=gen(1))
    x[3, 2] = math.nan
    return x


def _inf_batch() -> torch.Tensor:
    x = torch.randn(32, 16, generator=gen(1))
    x[0, 0] = math.inf
    return x


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"inputs": _nan_batch()}, "inputs: the batch contains NaN or inf"),
        ({"inputs": _inf_batch()}, "inputs: the batch contains NaN or inf"),
        ({"inputs": torch.empty(0, 16)}, "inputs: empty batch"),
        ({"inputs": torch.randn(16)}, r"inputs: expected a batch.*unbatched.*\(16,\)"),
        ({"input_shape": (16,)}, r"input_shape: expected a batch"),
        (
            {"inputs": torch.randn(8, 16), "loss_fn": lambda y: y.sum() * math.nan},
            "loss_fn: the loss is NaN or inf on a finite model output",
        ),
    ],
    ids=["nan", "inf", "empty", "unbatched", "unbatched-shape", "nan-loss"],
)
def test_diagnose_rejects_bad_batches_and_changes_nothing(kwargs, match) -> None:
    model = small().train()
    before = state(model)
    with pytest.raises(ValueError, match=match):
        initscope.diagnose(model, generator=gen(), **kwargs)
    assert_same(model, before)


def test_diagnose_on_a_meta_model_is_a_clear_error() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    with pytest.raises(ValueError, match="meta device.*to_empty"):
        initscope.diagnose(model, input_shape=(4, 16))


def test_diagnose_on_a_lazy_model_is_a_clear_error_and_materializes_nothing() -> None:
    model = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 4))
    with pytest.raises(ValueError, match="uninitialized \\(lazy\\) parameters"):
        initscope.diagnose(model, input_shape=(4, 16))
    assert isinstance(model[0], nn.LazyLinear)
    with pytest.raises(ValueError, match="lazy and not materialized"):  # lsuv's own message
        lsuv(model, torch.randn(4, 16))
    assert isinstance(model[0], nn.LazyLinear)


def test_diagnose_differentiates_the_float_output_after_an_int_one() -> None:
    class IntFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            y = self.fc(x)
            return y.argmax(-1), y

    model = IntFirst()
    before = state(model)
    report = initscope.diagnose(model, input_shape=(8, 16), generator=gen())
    assert report.layers[0].grad_out_std == pytest.approx(1.0, rel=0.3)
    assert_same(model, before)


class Counted(nn.Module):
    """A forward that writes a buffer in place (traced by torch.fx, which runs that line)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.register_buffer("steps", torch.zeros(()))
        self.register_buffer("seen", torch.zeros(()), persistent=False)

    def forward(self, x):
        self.steps += 1
        self.seen += 1
        return self.fc(x)


def test_plan_initialize_lsuv_diagnose_leave_forward_written_buffers() -> None:
    torch.manual_seed(0)
    model = Counted()
    initscope.plan(model)
    assert model.steps.item() == 0 and model.seen.item() == 0
    initscope.initialize(model, generator=gen())
    assert model.steps.item() == 0
    before = state(model)
    initscope.diagnose(model, input_shape=(4, 8), generator=gen())
    assert_same(model, before)
    lsuv(model, torch.randn(32, 8, generator=gen(1)), generator=gen())
    assert model.steps.item() == 0 and model.seen.item() == 0
    initscope.initialize(model, "lsuv", example_input=torch.randn(32, 8), generator=gen())
    assert model.steps.item() == 0 and model.seen.item() == 0


def test_spectral_norm_power_iteration_not_advanced() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(spectral_norm(nn.Linear(16, 32)), nn.ReLU(), nn.Linear(32, 4)).train()
    before = state(model)
    u = model[0].parametrizations.weight[0]._u.clone()
    initscope.diagnose(model, torch.randn(8, 16, generator=gen(1)), generator=gen())
    assert torch.equal(u, model[0].parametrizations.weight[0]._u)
    assert_same(model, before)
    before = {k: v.clone() for k, v in model.named_buffers()}
    lsuv(model, torch.randn(8, 16, generator=gen(1)), generator=gen())
    assert all(torch.equal(v, before[k]) for k, v in model.named_buffers())


def test_diagnose_with_a_generator_leaves_the_global_rng() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.1), nn.Linear(16, 16)).train()
    torch.manual_seed(0)
    ref = torch.rand(3)
    torch.manual_seed(0)
    before = state(model)
    initscope.diagnose(model, input_shape=(4, 16), generator=gen())
    assert_same(model, before)
    assert torch.equal(torch.rand(3), ref)


# ----------------------------------------------------------------------------- lsuv


def test_initialize_lsuv_on_a_two_input_model_with_example_input_tuple() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.out = nn.Linear(8, 16), nn.Linear(4, 16), nn.Linear(16, 2)

        def forward(self, x, z):
            return self.out(torch.relu(self.a(x) + self.b(z)))

    torch.manual_seed(0)
    model = Two()
    x, z = torch.randn(64, 8, generator=gen(1)), torch.randn(64, 4, generator=gen(2))
    p = initscope.initialize(model, "lsuv", example_input=(x, z), generator=gen())
    assert p.lsuv_result.converged
    assert [layer.path for layer in p.lsuv_result.layers] == ["a", "b", "out"]
    with torch.no_grad():
        assert model(x, z).std().item() == pytest.approx(1.0, abs=0.1)
    # the same model input, stated explicitly, to lsuv itself
    r = lsuv(model, Batch((x, z)), generator=gen())
    assert r.converged


def test_lsuv_on_tied_weights_reports_only_what_holds() -> None:
    class TinyLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(100, 32)
            self.body = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32))
            self.head = nn.Linear(32, 100, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, ids):
            return self.head(self.body(self.embed(ids)))

    torch.manual_seed(0)
    model = TinyLM()
    embedding = model.embed.weight.detach().clone()
    ids = torch.randint(0, 100, (8, 32), generator=gen(1))
    r = lsuv(model, ids, generator=gen())
    assert torch.equal(model.embed.weight, embedding)  # the embedding is not rewritten
    assert r["head"].status == "tied" and "embed" in r["head"].notes[0] and not r.converged
    with torch.no_grad():
        h0 = model.body[0](model.embed(ids))
        h2 = model.body[2](model.body[1](h0))
        logits = model(ids)
    # every reported std is the output with the final weights
    assert r["body.0"].converged and h0.std().item() == pytest.approx(r["body.0"].std_after, 1e-5)
    assert r["body.2"].converged and h2.std().item() == pytest.approx(r["body.2"].std_after, 1e-5)
    assert logits.std().item() == pytest.approx(r["head"].std_after, rel=1e-5)

    class Tied(nn.Module):  # two selected layers share one weight
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.out = nn.Linear(16, 16), nn.Linear(16, 16)
            self.out.weight = self.fc.weight

        def forward(self, x):
            return self.out(torch.tanh(self.fc(x)))

    torch.manual_seed(0)
    model, x = Tied(), torch.randn(256, 16, generator=gen(1))
    r = lsuv(model, x, generator=gen())
    assert r["fc"].converged and r["out"].status == "tied" and not r.converged
    assert "out" in r["fc"].notes[0]
    with torch.no_grad():
        h = model.fc(x)
        assert h.std().item() == pytest.approx(r["fc"].std_after, rel=1e-5)
        assert model.out(torch.tanh(h)).std().item() == pytest.approx(r["out"].std_after, 1e-5)


def test_cross_entropy_loss_fn_still_runs_under_the_guard() -> None:
    model = small()
    before = state(model)
    x, y = torch.randn(16, 16, generator=gen(1)), torch.randint(0, 4, (16,), generator=gen(2))
    report = initscope.diagnose(model, x, loss_fn=F.cross_entropy, target=y)
    assert report.meta["backward"] == "loss_fn"
    assert_same(model, before)
