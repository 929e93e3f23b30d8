"""Tests of initscope.grow: function-preserving widen / deepen, and shrink_perturb."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import gen
from torch import nn

import initscope
from initscope import deepen, shrink_perturb, widen
from initscope.grow import Growth, GrowthError, Residual

TOL = 1e-5  # max |f_new - f_old| / max |f_old|, float32


pytestmark = pytest.mark.usefixtures("one_thread")


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Trained-looking values: every parameter and float buffer drawn at random."""
    g = gen(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for b in model.buffers():
            if b.is_floating_point():
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return model


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 5, 3)
        self.fc = nn.Linear(5 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.relu(self.bn(self.c1(x))), 2)
        return self.fc(torch.flatten(self.c2(x).relu(), 1))


class ResNet(nn.Module):
    """A residual stream of width 8 with pre-norm MLP blocks (LayerNorm)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))
            for _ in range(2)
        )
        self.norm = nn.LayerNorm(8)
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return self.out(self.norm(h))


class Transformer(nn.Module):
    def __init__(self, norm_first: bool = True) -> None:
        super().__init__()
        self.emb = nn.Linear(5, 16)
        layer = nn.TransformerEncoderLayer(
            16, 4, 32, dropout=0.1, batch_first=True, norm_first=norm_first
        )
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(self.emb(x)))


class SwiGLU(nn.Module):
    """A gated MLP (Llama's): down(silu(gate(x)) * up(x)), with a per-unit scale elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(6, 10), nn.Linear(6, 10), nn.Linear(10, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.silu(self.gate(x)) * self.up(x))


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)
        self.scale = nn.Parameter(torch.ones(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x) * self.scale)


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))


@torch.no_grad()
def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    training = model.training
    model.eval()
    out = model(x)
    model.train(training)
    return out


def rel_change(before: torch.Tensor, after: torch.Tensor) -> float:
    return float((after - before).abs().max() / before.abs().max())


def snapshot(model: nn.Module) -> tuple:
    return (
        repr(model),
        {k: v.clone() for k, v in model.state_dict(keep_vars=True).items()},
        [(n, p.requires_grad) for n, p in model.named_parameters()],
        [m.training for m in model.modules()],
    )


def assert_same(model: nn.Module, snap: tuple) -> None:
    now = snapshot(model)
    assert now[0] == snap[0]
    assert now[1].keys() == snap[1].keys()
    for k in snap[1]:
        assert torch.equal(now[1][k], snap[1][k]), k
    assert now[2:] == snap[2:]


# ----------------------------------------------------------------------------- widen

CASES = [
    ("mlp", mlp, (16, 4), "2", 13),
    ("mlp-first", mlp, (16, 4), "0", 20),
    ("cnn-bn", CNN, (4, 3, 12, 12), "c1", 9),
    ("cnn-flatten", CNN, (4, 3, 12, 12), "c2", 7),
    ("residual-stream", ResNet, (16, 4), "inp", 16),
    ("residual-branch", ResNet, (16, 4), "blocks.0.1", 21),
    ("transformer-mlp", Transformer, (3, 7, 5), "enc.layers.0.linear1", 48),
    ("swiglu", SwiGLU, (16, 6), "gate", 15),
]


@pytest.mark.parametrize("name, build, shape, path, width", CASES, ids=[c[0] for c in CASES])
def test_widen_preserves_function(name, build, shape, path, width):
    model = randomize_(build())
    x = torch.randn(shape, generator=gen(1))
    before = outputs(model, x)
    example = x if name.startswith("transformer") else None  # fx cannot trace it
    growth = widen(model, path, width, example_input=example)
    assert isinstance(growth, Growth) and growth.new_width == width
    assert model.get_submodule(path).weight.shape[0] == width
    assert rel_change(before, outputs(model, x)) <= TOL
    # every changed tensor has the new width somewhere, and the model trains
    loss = model(x).square().mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_widen_residual_stream_follows_every_layer_on_it():
    model = randomize_(ResNet())
    growth = widen(model, "inp", 16)
    changed = {p for p, _ in growth.changed}
    for b in ("blocks.0", "blocks.1"):
        assert {f"{b}.0.weight", f"{b}.1.weight", f"{b}.3.weight", f"{b}.3.bias"} <= changed
    assert {"norm.weight", "out.weight"} <= changed
    assert model.out.in_features == 16 and model.blocks[1][0].normalized_shape == (16,)


def test_widen_gated_mlp_widens_both_operands():
    model = randomize_(SwiGLU())
    growth = widen(model, "gate", 15)
    assert {p for p, _ in growth.changed} == {
        "gate.weight", "gate.bias", "up.weight", "up.bias", "down.weight"
    }  # fmt: skip
    assert model.up.out_features == 15 and model.down.in_features == 15


def test_widen_copies_batchnorm_statistics():
    model = randomize_(CNN())
    old_mean = model.bn.running_mean.clone()
    widen(model, "c1", 9)
    assert torch.equal(model.bn.running_mean, torch.cat([old_mean, old_mean[:3]]))
    assert model.bn.num_features == 9


def test_widen_split_is_exact_for_the_copies():
    model = randomize_(mlp())
    w = model[4].weight.detach().clone()
    g = widen(model, "2", 11)
    assert g.mapping == (0, 1, 2)
    new = model[4].weight.detach()
    assert torch.allclose(new[:, 0], w[:, 0] / 2) and torch.allclose(new[:, 8], w[:, 0] / 2)
    assert torch.equal(new[:, 5], w[:, 5])


def test_widen_noise_scaled_by_plan_std():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4))
    old = model[0].weight.detach().clone()
    widen(model, "0", 512, noise=0.5, generator=gen(3))
    diff = model[0].weight.detach()[256:] - old
    std = initscope.plan(model)["0.weight"].std  # He: sqrt(2 / 256)
    assert abs(float(diff.std()) / (0.5 * std) - 1) < 0.02  # 65k samples: 4 sigma ~ 1.1%
    assert torch.equal(model[0].weight.detach()[:256], old)


def test_widen_layernorm_needs_a_multiple():
    model = randomize_(ResNet())
    snap = snapshot(model)
    with pytest.raises(GrowthError, match="multiple of 8"):
        widen(model, "inp", 12)
    assert_same(model, snap)


class ToOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        return x + self.a(x)


class Softmaxed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        return self.b(torch.softmax(self.a(x), -1))


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 2)
        self.d = nn.Linear(6, 6)
        self.d.weight = self.b.weight

    def forward(self, x):
        return self.c(self.d(torch.relu(self.b(self.a(x)))))


@pytest.mark.parametrize(
    "build, path, width, error, match",
    [
        (mlp, "4", 5, GrowthError, "model's output"),
        (ToOutput, "a", 6, GrowthError, "model's input"),
        (Softmaxed, "a", 8, GrowthError, "softmax"),
        (Tied, "a", 8, GrowthError, "shared with"),
        (Scaled, "a", 8, GrowthError, "op 'mul'"),
        (mlp, "2", 8, ValueError, "more than the current 8"),
        (mlp, "2", 8.5, TypeError, "new_width"),
        (mlp, "1", 9, TypeError, "ReLU"),
        (mlp, "7", 9, ValueError, "no submodule '7'"),
    ],
)
def test_widen_bad_input_changes_nothing(build, path, width, error, match):
    model = randomize_(build())
    snap = snapshot(model)
    with pytest.raises(error, match=match):
        widen(model, path, width)
    assert_same(model, snap)


def test_widen_bad_noise_and_generator():
    model = mlp()
    snap = snapshot(model)
    with pytest.raises(ValueError, match="noise"):
        widen(model, "0", 9, noise=float("nan"))
    with pytest.raises(TypeError, match="generator"):
        widen(model, "0", 9, generator=3)
    assert_same(model, snap)


def test_widen_needs_example_input_when_fx_fails():
    model = Transformer()
    with pytest.raises(GrowthError, match="example_input"):
        widen(model, "enc.layers.0.linear1", 40)


# ----------------------------------------------------------------------------- deepen


def test_deepen_identity_after_relu():
    model = randomize_(mlp())
    x = torch.randn(32, 4, generator=gen(1))
    before = outputs(model, x)
    g = deepen(model, "0")
    assert g.block == "identity" and g.renamed == {"0.bias": "0.0.bias", "0.weight": "0.0.weight"}
    assert g.added == ("0.2.weight", "0.2.bias")
    assert torch.equal(model[0][2].weight, torch.eye(8))
    assert rel_change(before, outputs(model, x)) <= TOL
    # the plan of the grown model explains the new layer
    entry = initscope.plan(model)["0.2.weight"]
    assert entry.touched and "relu" in entry.why.lower()


def test_deepen_residual_after_tanh_and_forced_identity_refused():
    model = randomize_(mlp())
    x = torch.randn(32, 4, generator=gen(1))
    before = outputs(model, x)
    snap = snapshot(model)
    with pytest.raises(GrowthError, match="idempotent"):
        deepen(model, "2", block="identity")
    assert_same(model, snap)
    rng = torch.get_rng_state()
    g = deepen(model, "2", generator=gen(2))
    assert torch.equal(torch.get_rng_state(), rng)  # everything drawn from the generator
    assert g.block == "residual"
    res = model[2][1]
    assert isinstance(res, Residual) and isinstance(res.body[1], nn.Tanh)
    assert not res.body[2].weight.any() and res.body[0].weight.any()
    assert rel_change(before, outputs(model, x)) <= TOL


@pytest.mark.parametrize("path, block", [("c1", "residual"), ("c2", "identity")])
def test_deepen_cnn(path, block):
    model = randomize_(CNN())
    x = torch.randn(4, 3, 12, 12, generator=gen(1))
    before = outputs(model, x)
    g = deepen(model, path)
    assert g.block == block  # BatchNorm follows c1: no identity layer in between
    assert rel_change(before, outputs(model, x)) <= TOL


def test_deepen_transformer_copies_a_prenorm_layer():
    model = randomize_(Transformer())
    x = torch.randn(3, 7, 5, generator=gen(1))
    before = outputs(model, x)
    g = deepen(model, "enc.layers.0", example_input=x)
    assert g.block == "copy" and len(model.enc.layers) == 3 and model.enc.num_layers == 3
    assert "enc.layers.1.linear2.weight" in dict(g.changed)
    assert g.renamed["enc.layers.1.linear1.weight"] == "enc.layers.2.linear1.weight"
    assert rel_change(before, outputs(model, x)) <= TOL
    assert g.max_change is not None and g.max_change <= TOL


def test_deepen_postnorm_block_refused_unchanged():
    model = randomize_(Transformer(norm_first=False))
    x = torch.randn(3, 7, 5, generator=gen(1))
    snap = snapshot(model)
    with pytest.raises(GrowthError, match="post-norm"):
        deepen(model, "enc.layers.0", example_input=x)
    assert_same(model, snap)


def test_deepen_bad_arguments():
    model = mlp()
    snap = snapshot(model)
    with pytest.raises(ValueError, match="block"):
        deepen(model, "0", block="stack")
    with pytest.raises(ValueError, match="no submodule"):
        deepen(model, "9")
    with pytest.raises(GrowthError, match="Sequential or nn.ModuleList"):
        deepen(randomize_(ResNet()), "norm")
    assert_same(model, snap)


# ----------------------------------------------------------------------------- HF zoo


def test_widen_hugging_face_mlps():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    bert = transformers.BertModel(
        transformers.BertConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            vocab_size=100,
        )
    )  # fmt: skip
    gpt2 = transformers.GPT2Model(
        transformers.GPT2Config(
            n_embd=32, n_layer=2, n_head=4, vocab_size=100, bos_token_id=0, eos_token_id=0
        )  # fmt: skip
    )
    x = {"input_ids": torch.randint(0, 100, (2, 9), generator=gen(1))}
    for model, path, width in (
        (bert, "encoder.layer.0.intermediate.dense", 96),
        (gpt2, "h.1.mlp.c_fc", 200),  # transformers' Conv1D: weight stored (in, out)
    ):
        model.eval()
        with torch.no_grad():
            before = model(**x).last_hidden_state
        g = widen(model, path, width, example_input=x)
        with torch.no_grad():
            after = model(**x).last_hidden_state
        assert rel_change(before, after) <= TOL and g.max_change <= TOL


# ----------------------------------------------------------------------------- shrink_perturb


def test_shrink_perturb_identity_and_fresh_parity():
    model = randomize_(mlp())
    snap = snapshot(model)
    shrink_perturb(model, 1.0, 0.0, generator=gen(5))
    assert_same(model, snap)
    fresh = copy.deepcopy(model)
    initscope.initialize(fresh, generator=gen(7))
    shrink_perturb(model, 0.0, 1.0, generator=gen(7))
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)


def test_shrink_perturb_statistics_and_frozen():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.LayerNorm(256), nn.ReLU(), nn.Linear(256, 4))
    randomize_(model)
    model[3].weight.requires_grad_(False)
    w0, ln0, frozen = (t.detach().clone() for t in (model[0].weight, model[1].weight,
                                                    model[3].weight))  # fmt: skip
    plan = shrink_perturb(model, 0.4, 0.1, generator=gen(1))
    eps = (model[0].weight.detach() - 0.4 * w0) / 0.1
    assert abs(float(eps.std()) / plan["0.weight"].std - 1) < 0.02  # 65k samples
    assert abs(float(eps.mean())) < 0.02 * plan["0.weight"].std * 10
    assert torch.allclose(model[1].weight.detach(), 0.4 * ln0 + 0.1)  # the plan: LayerNorm 1
    assert torch.equal(model[3].weight.detach(), frozen)


@pytest.mark.parametrize(
    "shrink, noise, error",
    [
        (-0.1, 0.1, ValueError),
        (0.5, float("inf"), ValueError),
        ("a", 0.1, TypeError),
        (0.5, True, TypeError),
    ],  # fmt: skip
)
def test_shrink_perturb_bad_input(shrink, noise, error):
    model = randomize_(mlp())
    snap = snapshot(model)
    with pytest.raises(error):
        shrink_perturb(model, shrink, noise)
    assert_same(model, snap)


def test_deepen_noise_scaled_by_plan_std():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 256), nn.ReLU(), nn.Linear(256, 2))
    deepen(model, "0", noise=0.3, generator=gen(4))
    new = model[0][2].weight.detach()
    std = initscope.plan(model)["0.2.weight"].std  # He after the ReLU: sqrt(2 / 256)
    eps = (new - torch.eye(256)) / (0.3 * std)
    assert abs(float(eps.std()) - 1) < 0.02  # 65k draws
