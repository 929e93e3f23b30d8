"""Rules and presets: which scheme and std each parameter gets, and the signal it keeps."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import gen
from torch import nn

import initscope
from initscope import theory
from initscope.graph import Layer
from initscope.policy import PRESETS, Choice, choice

ROOT = Path(__file__).resolve().parents[1]


def _examples():
    name = "initialize_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


M = _examples()


def mlp(act: type[nn.Module], depth: int, width: int = 32, out: int | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), act()]
    layers.append(nn.Linear(width, out or width))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- names and rules


def test_presets_and_unknown_names() -> None:
    assert tuple(PRESETS) == (
        "auto",
        "guide",
        "torch",
        "xavier",
        "he",
        "lecun",
        "orthogonal",
        "gpt2",
        "fixup",
        "lsuv",
    )
    model = mlp(nn.ReLU, 2)
    with pytest.raises(ValueError, match=r"valid presets: auto, ") as exc:
        initscope.plan(model, "autp")
    assert "guide" in str(exc.value) and "fixup" in str(exc.value)
    with pytest.raises(
        ValueError,
        match=r"unknown scheme 'kaiming_norml'; valid names: "
        r"kaiming_normal",
    ):
        initscope.plan(model, rules=[(nn.Linear, "kaiming_norml")])
    with pytest.raises(TypeError, match="preset"):
        initscope.plan(model, 3)  # type: ignore[arg-type]


def test_bad_rules_raise_before_anything() -> None:
    model = mlp(nn.ReLU, 2)
    with pytest.raises(TypeError, match=r"rules\[0\]: selector"):
        initscope.plan(model, rules=[(3, "zeros")])
    with pytest.raises(ValueError, match=r"rules\[0\]: normal takes no argument\(s\) sd"):
        initscope.plan(model, rules=[("0", "normal", {"sd": 1.0})])
    with pytest.raises(TypeError, match="rules"):
        initscope.plan(model, rules="*.head")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"rules\[0\] returned"):
        initscope.plan(model, rules=[lambda layer, name: 1.0])


def test_rules_before_preset_with_globs_types_and_kwargs() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 4))
    model.head = model[3]
    p = initscope.plan(model, rules=[("3", "zeros"), (nn.Conv2d, "he", {"mode": "fan_out"})])
    assert p["3.weight"].scheme == "zeros" and p["3.bias"].scheme == "zeros"
    conv = p["0.weight"].choices[0]
    assert conv.scheme == "kaiming_normal" and conv.params == {
        "mode": "fan_out",
        "nonlinearity": "relu",
    }
    assert conv.std == pytest.approx(math.sqrt(2 / (8 * 9)))
    assert "rule 1" in conv.why
    # a fan-based scheme does not apply to the 1-D bias: the preset covers it
    assert p["0.bias"].scheme == "zeros" and "rule" not in p["0.bias"].why
    # a glob on a parameter path selects that parameter only
    p = initscope.plan(model, rules=[("0.bias", "constant", {"val": 0.1})])
    assert p["0.bias"].choices[0].params == {"val": 0.1}
    assert p["0.weight"].scheme != "constant"


def test_selector_matching_nothing_warns() -> None:
    with pytest.warns(UserWarning, match=r"rule 0 \('\*\.nothing' -> zeros\) matched no module"):
        initscope.plan(mlp(nn.ReLU, 2), rules=[("*.nothing", "zeros")])
    with pytest.warns(UserWarning, match="matched no module"):
        initscope.plan(mlp(nn.ReLU, 2), rules=[(nn.Conv2d, "zeros")])


def test_callable_rule_and_choice_helper() -> None:
    def rule(layer: Layer, name: str) -> Choice | None:
        if layer.is_output and name == "weight":
            return choice(layer, name, "orthogonal", gain=2.0, why="my head")
        return None

    p = initscope.plan(mlp(nn.Tanh, 3), rules=[rule])
    head = p["4.weight"].choices[0]
    assert head.scheme == "orthogonal" and head.why == "my head"
    assert head.std == pytest.approx(2 / math.sqrt(32))
    assert p["2.weight"].choices[0].why != "my head"


# ----------------------------------------------------------------------------- presets


def test_guide_preset_is_the_selection_guide() -> None:
    model = nn.Sequential(
        nn.Linear(10, 20),
        nn.ReLU(),
        nn.Linear(20, 30),
        nn.LeakyReLU(0.2),
        nn.Linear(30, 40),
        nn.Tanh(),
        nn.Linear(40, 50),
        nn.SELU(),
        nn.Linear(50, 60),
        nn.GELU(),
        nn.Linear(60, 5),
    )
    p = initscope.plan(model, "guide")
    assert p["0.weight"].choices[0].params == {"nonlinearity": "relu"}
    assert p["0.weight"].std == pytest.approx(math.sqrt(2 / 10))
    assert p["2.weight"].std == pytest.approx(math.sqrt(2 / (1.04 * 20)))
    assert p["4.weight"].scheme == "xavier_normal"
    assert p["4.weight"].std == pytest.approx(math.sqrt(2 / (30 + 40)))
    assert p["6.weight"].scheme == "lecun_normal"
    assert p["6.weight"].std == pytest.approx(math.sqrt(1 / 40))
    assert p["8.weight"].std == pytest.approx(math.sqrt(2 / 50))  # GELU -> He
    assert p["10.weight"].scheme == "xavier_normal"
    assert p["10.weight"].std == pytest.approx(math.sqrt(2 / 65))
    assert "He normal" in p["0.weight"].why and "relu follows (0 -> 1)" in p["0.weight"].why
    assert all(p[f"{i}.bias"].scheme == "zeros" for i in range(0, 11, 2))


def test_auto_critical_point_for_deep_plain_tanh_stack() -> None:
    p = initscope.plan(mlp(nn.Tanh, 10))
    cp = theory.critical_point("tanh", 1.0)
    hidden, first = p["2.weight"].choices[0], p["0.weight"].choices[0]
    assert hidden.params == {
        "scale": pytest.approx(cp.sigma_w2),
        "mode": "fan_in",
        "distribution": "normal",
    }
    assert hidden.std == pytest.approx(math.sqrt(cp.sigma_w2 / 32))
    assert first.std == pytest.approx(math.sqrt((1 - cp.sigma_b2) / 32))
    assert p["2.bias"].std == pytest.approx(math.sqrt(cp.sigma_b2))
    assert "biases are not zero" not in p["2.bias"].why and "sigma_b^2" in p["2.bias"].why
    assert "depth_profile over 10 layers" in hidden.why and "critical point" in hidden.why
    out = p["18.weight"].choices[0]
    assert out.scheme == "xavier_normal"
    assert out.params["gain"] == pytest.approx(theory.gain("tanh", "forward"))
    assert p["18.bias"].scheme == "zeros"


def test_auto_uses_the_nearest_stable_critical_point() -> None:
    p = initscope.plan(mlp(nn.GELU, 10))
    hidden = p["2.weight"].choices[0]
    assert theory.critical_point("gelu", 1.0).slope > 1  # unstable at q* = 1
    cp = theory.critical_point("gelu", 4.0)
    assert cp.stable and hidden.params["scale"] == pytest.approx(cp.sigma_w2)
    assert "q* = 1 is not stable" in hidden.why


def test_auto_shallow_or_normalized_stacks_use_the_exact_gain() -> None:
    shallow = initscope.plan(mlp(nn.Tanh, 3))
    g = theory.gain("tanh", "forward")
    assert shallow["2.weight"].std == pytest.approx(g / math.sqrt(32))
    assert shallow["2.bias"].scheme == "zeros"
    assert "3 < 8 layers deep" in shallow["2.weight"].why
    normed = nn.Sequential(
        *[m for _ in range(10) for m in (nn.Linear(32, 32), nn.LayerNorm(32), nn.Tanh())]
    )
    p = initscope.plan(normed)
    assert p["3.weight"].std == pytest.approx(g / math.sqrt(32))
    assert "a normalization follows" in p["3.weight"].why
    assert p["1.weight"].scheme == "ones" and p["1.bias"].scheme == "zeros"


def test_auto_relu_is_he_and_the_first_layer_lecun() -> None:
    p = initscope.plan(M.pricing_network())
    assert p["backbone.0.weight"].scheme == "lecun_normal"
    assert p["backbone.2.weight"].scheme == "kaiming_normal"
    assert p["backbone.2.weight"].std == pytest.approx(math.sqrt(2 / 128))
    head = p["output_head.weight"].choices[0]
    assert head.scheme == "xavier_normal" and head.params["gain"] == pytest.approx(math.sqrt(2))
    assert "output layer" in head.why and "0.01" in head.why


class NoNormResNet(nn.Module):
    def __init__(self, blocks: int = 4, norm: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(*(M.Block(8, norm) for _ in range(blocks)))
        self.head = nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.blocks(F.relu(self.stem(x)))))


def test_residual_branch_ends_scaled_and_zero_init() -> None:
    p = initscope.plan(NoNormResNet(4))
    end = p["blocks.1.conv2.weight"].choices[0]
    assert end.std == pytest.approx(math.sqrt(2 / (8 * 9)) / math.sqrt(4))
    assert "L = 4" in end.why
    assert p["blocks.1.conv1.weight"].std == pytest.approx(math.sqrt(1 / (8 * 9)))
    z = initscope.plan(NoNormResNet(4), zero_init_residual=True)
    assert z["blocks.1.conv2.weight"].scheme == z["blocks.1.conv2.bias"].scheme == "zeros"
    assert z["blocks.1.conv1.weight"].scheme != "zeros"
    # BatchNorm'ed blocks: the last norm ends the branch (torchvision's zero_init_residual)
    bn = initscope.plan(NoNormResNet(4, norm=True), zero_init_residual=True)
    assert bn["blocks.2.bn2.weight"].scheme == "zeros"
    assert bn["blocks.2.bn1.weight"].scheme == "ones"
    assert bn["blocks.2.conv2.weight"].scheme != "zeros"
    scaled = initscope.plan(NoNormResNet(4, norm=True))
    assert scaled["blocks.2.bn2.weight"].choices[0].params == {"val": pytest.approx(0.5)}


def test_post_norm_transformer_ffn_unscaled_attention_deepnet() -> None:
    enc = M.transformer_encoder(layers=3, d_model=16, nhead=2, dim_feedforward=32)
    p = initscope.plan(enc, example_input=torch.randn(2, 5, 16))
    lin2 = p["layers.1.linear2.weight"].choices[0]
    assert lin2.std == pytest.approx(math.sqrt(2 / math.sqrt(32 * 16)))  # g^2 / sqrt(fi fo)
    assert "post-norm" in lin2.why
    beta = (8 * 3) ** -0.25
    out = p["layers.1.self_attn.out_proj.weight"].choices[0]
    assert out.std == pytest.approx(beta * math.sqrt(1 / 16))
    q, k, v = p["layers.1.self_attn.in_proj_weight"].choices
    assert [c.rows for c in (q, k, v)] == [(0, 16), (16, 32), (32, 48)]
    assert q.std == pytest.approx(math.sqrt(1 / 16)) and v.std == pytest.approx(beta / 4)
    assert "DeepNet" in v.why


def test_pre_norm_gpt_fused_qkv_tied_embedding_and_gpt2() -> None:
    gpt = M.MiniGPT(vocab=50, d=16, n_layer=2, n_head=2)
    p = initscope.plan(gpt)
    assert p["wte.weight"].std == pytest.approx(1 / 4)  # tied: 1/sqrt(d)
    assert "tied" in p["wte.weight"].why and "lm_head.weight" not in [e.path for e in p]
    assert p["wpe.weight"].std == pytest.approx(1 / 4)  # summed with the tied wte: same std
    c_attn = p["blocks.0.c_attn.weight"].choices[0]
    assert c_attn.fans.fan_out == 16 and c_attn.std == pytest.approx(math.sqrt(1 / 16))
    # L = 4 branches, times the variance the stream starts at: wte + wpe at 1/sqrt(d), 2/d
    c_proj = p["blocks.1.c_proj.weight"]
    assert c_proj.std == pytest.approx(math.sqrt(1 / 16) / 2 * math.sqrt(2 / 16))
    assert "the stream starts at" in c_proj.why
    g2 = initscope.plan(gpt, "gpt2")
    assert g2["blocks.0.fc.weight"].std == 0.02 and g2["wte.weight"].std == 0.02
    assert g2["blocks.1.proj.weight"].std == pytest.approx(0.02 / math.sqrt(4))
    assert "sqrt(2 n_layer)" in g2["blocks.1.proj.weight"].formula


def test_fixup() -> None:
    p = initscope.plan(NoNormResNet(9), "fixup")
    assert p["head.weight"].scheme == "zeros" and p["head.bias"].scheme == "zeros"
    assert p["blocks.3.conv2.weight"].scheme == "zeros"
    he = math.sqrt(2 / (8 * 9))
    assert p["blocks.3.conv1.weight"].std == pytest.approx(he * 9 ** (-1 / 2))
    assert p["stem.weight"].std == pytest.approx(he * math.sqrt(8 * 9 / 27))


def test_lstm_and_mha_pieces() -> None:
    model = nn.LSTM(8, 16, num_layers=2)
    p = initscope.plan(model)
    forget = p["bias_ih_l1"].choices
    assert [c.scheme for c in forget] == ["zeros", "ones"] and forget[1].rows == (16, 32)
    assert p["weight_ih_l0"].std == pytest.approx(math.sqrt(2 / (8 + 16)))
    initscope.initialize(model, generator=gen())
    w = model.weight_hh_l1.detach()
    for g in range(4):
        block = w[16 * g : 16 * (g + 1)]
        assert torch.allclose(block @ block.T, torch.eye(16), atol=1e-5)
    b = model.bias_ih_l0.detach()
    assert torch.equal(b[16:32], torch.ones(16)) and not b[:16].any() and not b[32:].any()
    mha = nn.MultiheadAttention(16, 2)
    q = initscope.plan(mha, example_input=(torch.randn(3, 2, 16),) * 3)
    assert q["in_proj_weight"].std == pytest.approx(math.sqrt(2 / 32))  # per E x E slice
    assert q["in_proj_weight"].fans.fan_out == 16


def test_literal_presets() -> None:
    model = nn.Sequential(nn.Linear(20, 40), nn.LeakyReLU(0.1), nn.Linear(40, 10))
    assert initscope.plan(model, "xavier")["0.weight"].std == pytest.approx(math.sqrt(2 / 60))
    assert initscope.plan(model, "he")["0.weight"].std == pytest.approx(math.sqrt(2 / (1.01 * 20)))
    assert initscope.plan(model, "lecun")["2.weight"].std == pytest.approx(math.sqrt(1 / 40))
    orth = initscope.plan(model, "orthogonal")["0.weight"].choices[0]
    assert orth.params["gain"] == pytest.approx(theory.gain("leaky_relu", "forward", param=0.1))


def test_torch_preset_is_bit_identical_to_the_constructors() -> None:
    def build() -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(3, 6, 3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(6 * 4, 7),
            nn.LayerNorm(7),
            nn.Linear(7, 2, bias=False),
        )

    torch.manual_seed(123)
    reference = build()
    model = build()
    initscope.initialize(model, "torch", generator=gen(123))
    for (name, a), b in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_choice_std_is_what_the_scheme_draws() -> None:
    rules = [("0.weight", "kaiming_uniform", {"a": 0.5, "mode": "fan_out"})]
    for preset, rule in (
        ("auto", None),
        ("torch", None),
        ("orthogonal", None),
        ("xavier", rules),
        ("gpt2", None),
    ):
        model = mlp(nn.Tanh, 10, width=300)
        p = initscope.plan(model, preset, rules=rule)
        p.apply(model, gen(1))
        for name, param in model.named_parameters():
            if param.dim() == 2:
                assert param.std().item() == pytest.approx(p[name].std, rel=0.02), (preset, name)


# ----------------------------------------------------------------------------- signal


MLP_ACTS = ("relu", "leaky_relu", "tanh", "gelu", "silu")


def _measured(
    model: nn.Module, shape: tuple[int, ...], preset: str = "auto"
) -> tuple[initscope.Report, initscope.Plan]:
    torch.manual_seed(0)
    g = gen(0)
    x = torch.randn(shape, generator=g)
    plan = initscope.initialize(model, preset, example_input=x, generator=g)
    return initscope.diagnose(model, x, generator=g), plan


def _predicted(
    act: str, plan: initscope.Plan, depth: int = 50, width: int = 256
) -> tuple[float, float]:
    """depth_profile for the 49 hidden layers plus the output layer's step."""
    w = plan["2.weight"].std ** 2 * width
    b = plan["2.bias"].std ** 2
    q0 = plan["0.weight"].std ** 2 * width + plan["0.bias"].std ** 2
    prof = theory.depth_profile(act, w, b, depth - 1, q0)
    q = float(prof.q[-1])
    w_out = plan[f"{2 * (depth - 1)}.weight"].std ** 2 * width
    fwd = prof.forward_log2 + 0.5 * math.log2(theory.variance_map(act, q, w_out, 0.0) / q)
    bwd = prof.backward_log2 + 0.5 * math.log2(w_out * theory.moments(act, q).deriv_second)
    return fwd, bwd


@pytest.mark.parametrize("act", MLP_ACTS)
def test_auto_keeps_the_signal_in_50_layer_mlps(act: str) -> None:
    report, plan = _measured(M.mlp(act), (128, 256))
    assert abs(report.forward_log2) <= 1 and abs(report.backward_log2) <= 1, (
        report.forward_log2,
        report.backward_log2,
    )
    fwd, bwd = _predicted(act, plan)
    assert abs(report.forward_log2 - fwd) <= 1 and abs(report.backward_log2 - bwd) <= 1
    assert abs(fwd) <= 0.1 and abs(bwd) <= 0.2  # the theory itself predicts preservation


@pytest.mark.parametrize("act", MLP_ACTS)
def test_guide_and_torch_lose_the_signal_where_auto_keeps_it(act: str) -> None:
    # torch: Var(W) = 1/(3 fan_in) loses the gradient in every deep MLP (the biases keep a
    # forward floor); guide: right for ReLU / leaky ReLU, loses the signal for tanh (Xavier) and
    # GELU / SiLU (He is a factor 2 too small in E[f^2] for them)
    torch_report, _ = _measured(M.mlp(act), (128, 256), "torch")
    assert torch_report.verdict == "vanishing"
    assert torch_report.forward_log2 < -3 and torch_report.backward_log2 < -30
    guide, _ = _measured(M.mlp(act), (128, 256), "guide")
    if act in ("tanh", "gelu", "silu"):
        assert guide.verdict == "vanishing" and guide.forward_log2 < -3
        assert guide.backward_log2 < -3
    else:
        assert guide.verdict == "healthy"
        assert abs(guide.backward_log2) <= 2 and guide.forward_log2 > -2.5


def test_auto_keeps_the_signal_in_a_resnet_without_normalization() -> None:
    report, plan = _measured(M.resnet_cnn(), (128, 3, 8, 8))
    assert plan["blocks.0.conv2.weight"].std < plan["blocks.0.conv1.weight"].std
    assert abs(report.forward_log2) <= 1 and abs(report.backward_log2) <= 1, (
        report.forward_log2,
        report.backward_log2,
    )


def test_auto_keeps_the_signal_in_a_transformer_encoder() -> None:
    report, _ = _measured(M.transformer_encoder(), (128, 16, 128))
    assert abs(report.forward_log2) <= 1 and abs(report.backward_log2) <= 1, (
        report.forward_log2,
        report.backward_log2,
    )


def test_presets_are_plain_functions_named_by_the_literal() -> None:
    from typing import get_args

    from initscope.policy import Preset
    from initscope.policy.presets import PRESETS as table

    assert tuple(table) == get_args(Preset)
    assert all(callable(fn) for fn in table.values())
    assert "auto" in initscope.PRESETS and "nope" not in initscope.PRESETS
