"""Model inspection: activations, norms, residual branches, attention, outputs, in both tracers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initscope.graph import Layer, inspect_model, norm_kind


def by_path(layers: list[Layer]) -> dict[str, Layer]:
    return {layer.path: layer for layer in layers}


class FunctionalMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 16)
        self.b = nn.Linear(16, 16)
        self.c = nn.Linear(16, 16)
        self.d = nn.Linear(16, 16)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.a(x).view(x.shape[0], -1), 0.2)
        h = torch.tanh(self.drop(self.b(h)))
        h = F.gelu(self.c(h), approximate="tanh")
        h = self.d(h).relu()
        return F.softplus(self.head(h))


class Block(nn.Module):
    def __init__(self, c: int, norm: bool, down: bool = False) -> None:
        super().__init__()
        stride = 2 if down else 1
        self.conv1 = nn.Conv2d(c // stride, c, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c) if norm else nn.Identity()
        self.bn2 = nn.BatchNorm2d(c) if norm else nn.Identity()
        self.short = nn.Conv2d(c // 2, c, 1, stride=2) if down else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        skip = x if self.short is None else self.short(x)
        out += skip
        return F.relu(out)


class ResNet(nn.Module):
    def __init__(self, norm: bool) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(Block(8, norm), Block(16, norm, down=True), Block(16, norm))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(F.relu(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 50, d: int = 16, n_layer: int = 2) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.ln = nn.ModuleList(nn.LayerNorm(d) for _ in range(n_layer))
        self.c_attn = nn.ModuleList(nn.Linear(d, 3 * d) for _ in range(n_layer))
        self.c_proj = nn.ModuleList(nn.Linear(d, d) for _ in range(n_layer))
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        self.d = d

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx)
        for ln, attn, proj in zip(self.ln, self.c_attn, self.c_proj, strict=True):
            q, k, v = attn(ln(x)).split(self.d, dim=2)
            x = x + proj(F.scaled_dot_product_attention(q, k, v, is_causal=True))
        return self.lm_head(x)


def test_sequential_mlp_activations_output_input_and_depth() -> None:
    model = nn.Sequential(
        nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.LeakyReLU(0.3), nn.Linear(8, 2)
    )
    layers = inspect_model(model)
    assert [layer.path for layer in layers] == ["0", "2", "4"]
    assert [layer.activation_label for layer in layers] == ["tanh", "leaky_relu(0.3)", None]
    assert [layer.activation_at for layer in layers] == ["1", "3", None]
    assert [layer.is_output for layer in layers] == [False, False, True]
    assert [layer.is_input for layer in layers] == [True, False, False]
    assert {layer.stack_depth for layer in layers} == {3}
    assert all(layer.kind == "linear" and layer.params == ("weight", "bias") for layer in layers)


@pytest.mark.parametrize("trace", ["fx", "record"])
def test_functional_activations_through_reshape_and_dropout(trace: str) -> None:
    layers = by_path(inspect_model(FunctionalMLP(), torch.randn(3, 8), trace=trace))
    assert layers["a"].activation_label == "leaky_relu(0.2)"
    assert layers["b"].activation_label == "tanh"
    assert layers["c"].activation_label == "gelu_tanh"
    assert layers["d"].activation_label == "relu"
    assert layers["head"].activation_label.startswith("softplus")
    assert layers["head"].is_output and not layers["d"].is_output
    assert layers["a"].activation_at == "F.leaky_relu"


@pytest.mark.parametrize(
    ("norm", "kind"),
    [
        (nn.BatchNorm1d(16), "batch_norm"),
        (nn.LayerNorm(16), "layer_norm"),
        (nn.GroupNorm(4, 16), "group_norm"),
        (nn.RMSNorm(16), "rms_norm"),
    ],
)
def test_following_normalization(norm: nn.Module, kind: str) -> None:
    model = nn.Sequential(nn.Linear(8, 16), norm, nn.SiLU(), nn.Linear(16, 4))
    layers = inspect_model(model)
    first = layers[0]
    assert first.norm == kind and first.norm_path == "1"
    assert first.activation_label == "silu"
    assert layers[1].kind == "norm" and layers[1].path == "1"
    assert layers[1].activation_label == "silu"
    assert layers[0].stack_depth == 1 and layers[2].stack_depth == 1


@pytest.mark.parametrize("norm", [False, True])
def test_residual_branches(norm: bool) -> None:
    layers = by_path(inspect_model(ResNet(norm), torch.randn(2, 3, 8, 8)))
    assert layers["stem"].residual_depth == 3
    for b in range(3):
        conv1, conv2 = layers[f"blocks.{b}.conv1"], layers[f"blocks.{b}.conv2"]
        assert not conv1.ends_residual and conv2.ends_residual
        assert conv1.residual_branch == conv2.residual_branch == b
        assert conv1.branch_layers == 2
        assert conv1.activation_label == "relu"
        assert conv2.activation is None
        if norm:
            assert conv1.norm == "batch_norm" and conv2.norm == "batch_norm"
            assert layers[f"blocks.{b}.bn2"].ends_residual
            assert not layers[f"blocks.{b}.bn1"].ends_residual
    short = layers["blocks.1.short"]
    assert short.residual_branch is None and not short.ends_residual
    assert layers["fc"].is_output and layers["fc"].residual_branch is None
    assert layers["stem"].is_input and not layers["fc"].ends_residual


def test_transformer_encoder_needs_example_input_then_records() -> None:
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 3, enable_nested_tensor=False
    )
    with pytest.raises(ValueError, match="example_input"):
        inspect_model(enc)
    enc.eval()  # eval mode would take torch's fused fast path; the recording must still see inside
    layers = by_path(inspect_model(enc, torch.randn(2, 5, 16)))
    assert not enc.training and not any(m.training for m in enc.modules())
    assert layers["layers.0.self_attn"].kind == "attention"
    assert layers["layers.0.self_attn"].attention_role == "qkv"
    out = layers["layers.2.self_attn.out_proj"]
    assert out.attention_role == "out" and out.ends_residual and out.residual_branch == 4
    assert layers["layers.1.linear1"].activation_label == "relu"
    assert layers["layers.1.linear2"].ends_residual
    assert layers["layers.1.linear1"].residual_branch == layers["layers.1.linear2"].residual_branch
    assert out.residual_depth == 6
    assert layers["layers.0.norm1"].kind == "norm"
    assert not any(layer.is_output for layer in layers.values())


def test_sdpa_roles_and_tied_embedding_in_both_tracers() -> None:
    idx = torch.randint(0, 50, (2, 5))
    for trace in ("fx", "record"):
        layers = by_path(inspect_model(TinyGPT(), idx, trace=trace))
        assert layers["c_attn.0"].attention_role == "qkv"
        assert layers["c_proj.1"].attention_role == "out" and layers["c_proj.1"].ends_residual
        assert layers["wte"].kind == "embedding" and layers["wte"].tied_to == ("lm_head",)
        assert layers["lm_head"].is_output and layers["lm_head"].tied_to == ("wte",)
        assert layers["ln.0"].residual_branch == 0 and layers["c_proj.1"].residual_branch == 1


def test_recurrent_and_never_called_modules() -> None:
    class Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unused = nn.Linear(3, 3)
            self.lstm = nn.LSTM(4, 8, num_layers=2, batch_first=True)
            self.fc = nn.Linear(8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x)
            return self.fc(out[:, -1])

    layers = inspect_model(Seq())
    assert [(la.path, la.kind, la.calls) for la in layers] == [
        ("lstm", "recurrent", 1),
        ("fc", "linear", 1),
        ("unused", "linear", 0),
    ]
    assert layers[1].is_output


def test_shared_module_is_one_layer() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.fc(x)))

    (layer,) = inspect_model(Shared(), torch.randn(2, 4), trace="record")
    assert layer.calls == 2 and layer.activation_label == "relu"


def test_fx_and_record_agree() -> None:
    x = torch.randn(2, 3, 8, 8)
    fields = (
        "path",
        "kind",
        "activation_label",
        "norm",
        "ends_residual",
        "residual_branch",
        "residual_depth",
        "branch_layers",
        "is_output",
        "is_input",
        "stack_depth",
    )
    model = ResNet(True)
    a = inspect_model(model, trace="fx")
    b = inspect_model(model, x, trace="record")

    def rows(layers: list[Layer]) -> list[list]:
        return [[getattr(layer, f) for f in fields] for layer in layers]

    assert rows(a) == rows(b)


def test_recording_leaves_the_model_untouched() -> None:
    model = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)
    )
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(16, 4)
    rng = torch.get_rng_state()
    inspect_model(model, x, trace="record")
    assert torch.equal(torch.get_rng_state(), rng)
    assert not any(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks


def test_batch_of_one_falls_back_to_eval_mode() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    layers = inspect_model(model, torch.randn(1, 4), trace="record")
    assert layers[0].norm == "batch_norm" and model.training


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            return self.fc(x)
        return -self.fc(x)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="example_input"):
        inspect_model(Branchy())
    assert inspect_model(Branchy(), torch.ones(2, 4))[0].is_output
    with pytest.raises(TypeError, match="model"):
        inspect_model("not a model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trace"):
        inspect_model(Branchy(), trace="jit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="example_input"):
        inspect_model(Branchy(), trace="record")
    with pytest.raises(RuntimeError, match="example_input failed"):
        inspect_model(Branchy(), torch.ones(2, 5), trace="record")


def test_input_activation_and_post_norm() -> None:
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 2, enable_nested_tensor=False
    )
    layers = by_path(inspect_model(enc, torch.randn(2, 5, 16)))
    assert layers["layers.0.linear2"].input_activation.name == "relu"
    assert layers["layers.0.linear1"].input_activation is None
    assert layers["layers.1.self_attn.out_proj"].input_activation is None
    assert all(la.post_norm for la in layers.values() if la.residual_branch is not None)
    pre = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, norm_first=True),
        2,
        enable_nested_tensor=False,
    )
    layers = by_path(inspect_model(pre, torch.randn(2, 5, 16)))
    assert layers["layers.1.linear2"].ends_residual and not layers["layers.1.linear2"].post_norm


def test_final_norm_of_a_pre_norm_model_is_not_post_norm() -> None:
    class PreNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fcs = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))
            self.lns = nn.ModuleList(nn.LayerNorm(8) for _ in range(3))
            self.ln_f = nn.LayerNorm(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for fc, ln in zip(self.fcs, self.lns, strict=True):
                x = x + fc(ln(x))
            return self.ln_f(x)

    layers = by_path(inspect_model(PreNorm()))
    assert [layers[f"fcs.{i}"].ends_residual for i in range(3)] == [True] * 3
    assert not any(layers[f"fcs.{i}"].post_norm for i in range(3))


# ----------------------------------------------------------------------------- by behaviour
# Modules written the way other libraries write them (Hugging Face's Conv1D, GELU and RMSNorm
# wrappers, timm's DropPath and LayerScale): recognized by what they compute, not their names.


class InOutLinear(nn.Module):
    """Weight stored (in, out), used as ``addmm(b, x, W)`` (Hugging Face's Conv1D)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.02)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1] + (self.weight.shape[1],)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(shape)


class Experts(nn.Module):
    """Stacked expert weights (experts, in, out), every expert applied to every token."""

    def __init__(self, e: int, n_in: int, n_out: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(e, n_in, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bd,edf->bef", x, self.w).mean(1)


class TanhGELU(nn.Module):  # the formula of Hugging Face's NewGELUActivation
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x.pow(3))))


class CallsGELU(nn.Module):  # Hugging Face's GELUActivation
    def __init__(self) -> None:
        super().__init__()
        self.act = F.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x)


class Squash(nn.Module):  # no named activation: resolved as a callable
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / (1 + x.abs()) + 0.1 * x


class HandRMSNorm(nn.Module):  # LlamaRMSNorm / T5LayerNorm
    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(v + 1e-6))


class DropPath(nn.Module):  # timm: identity in eval mode, random otherwise
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class LayerScale(nn.Module):
    def __init__(self, d: int, value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((d,), value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class HFBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln = HandRMSNorm(d)
        self.fc = InOutLinear(d, 4 * d)
        self.act = TanhGELU()
        self.proj = InOutLinear(4 * d, d)
        self.ls = LayerScale(d, 1e-5)
        self.drop = DropPath(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.ls(self.proj(self.act(self.fc(self.ln(x))))))


@pytest.mark.parametrize("trace", ["fx", "record"])
def test_layers_are_read_by_behaviour(trace: str) -> None:
    model = nn.Sequential(HFBlock(8), HFBlock(8))
    layers = by_path(inspect_model(model, torch.randn(3, 8), trace=trace))
    fc, proj = layers["0.fc"], layers["0.proj"]
    assert fc.kind == "linear" and fc.param_roles == {"weight": "weight", "bias": "bias"}
    f = fc.param_fans["weight"]
    assert (f.fan_in, f.fan_out) == (8, 32)  # stored (8, 32) = (in, out), read from addmm
    assert fc.activation_label == "gelu_tanh" and proj.input_activation.label() == "gelu_tanh"
    assert proj.ends_residual and proj.residual_depth == 2  # through LayerScale and DropPath
    assert layers["0.ln"].kind == "norm" and norm_kind(layers["0.ln"].module) == "rms_norm"
    assert fc.norm is None and layers["0.ls"].kind == "scale"


def test_activation_modules_by_the_function_they_call_or_compute() -> None:
    from initscope.graph import behaviour

    assert behaviour(CallsGELU()).activation.label() == "gelu"
    assert behaviour(TanhGELU()).activation.label() == "gelu_tanh"
    act = behaviour(Squash()).activation
    assert act.name == "custom:Squash" and act(torch.tensor([1.0]).numpy())[0] == pytest.approx(0.6)
    assert behaviour(DropPath(0.5)).category == "shape"
    assert behaviour(nn.Softmax(-1)).category == "other"  # not elementwise


def test_expert_weights_get_fans_per_expert_from_einsum() -> None:
    model = nn.Sequential(nn.Linear(8, 8), Experts(4, 8, 16))
    layers = by_path(inspect_model(model, torch.randn(2, 8), trace="record"))
    f = layers["1"].param_fans["w"]
    assert (f.fan_in, f.fan_out) == (8, 16)


def test_max_pooling_keeps_the_relu_feeding_the_next_conv() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3), nn.ReLU()
    )
    layers = by_path(inspect_model(model))
    assert layers["3"].input_activation.label() == "relu"


class TinyViT(nn.Module):
    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, d))
        self.head = nn.Linear(d, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), t], dim=1)
        return self.head((t + self.pos_embed)[:, 0])


@pytest.mark.parametrize("trace", ["fx", "record"])
def test_class_token_and_position_embedding_are_planned(trace: str) -> None:
    import initscope

    model = TinyViT()
    x = torch.randn(2, 3, 8, 8)
    root = by_path(inspect_model(model, x, trace=trace))[""]
    assert root.param_roles == {"cls_token": "token", "pos_embed": "position"}
    assert root.param_partners == {"cls_token": "patch", "pos_embed": "patch"}
    p = initscope.plan(model, example_input=x)
    patch = p["patch.weight"]
    joined = patch.fans.fan_in**0.5 * patch.std  # the patch tokens' std on a standardized image
    assert p["pos_embed"].std == pytest.approx(joined) and p["cls_token"].std == pytest.approx(
        joined
    )
    assert initscope.plan(model, "gpt2", example_input=x)["pos_embed"].std == 0.02


class TiedLM(nn.Module):
    """T5's ending: the decoder output times d^-0.5 into a head tied to the embedding."""

    def __init__(self, vocab: int = 50, d: int = 16) -> None:
        super().__init__()
        self.shared = nn.Embedding(vocab, d)
        self.encoder = nn.Module()
        self.encoder.embed_tokens = nn.Embedding(vocab, d)
        self.encoder.embed_tokens.weight = self.shared.weight
        self.fc = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.shared.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.fc(self.encoder.embed_tokens(ids)))
        return self.lm_head(h * self.fc.in_features**-0.5)


def test_tied_embedding_reads_the_scale_before_its_head_and_rules_reach_any_alias() -> None:
    import warnings

    import initscope

    model = TiedLM()
    ids = torch.randint(0, 50, (2, 7))
    p = initscope.plan(model, example_input=ids)
    (entry,) = [e for e in p if e.path == "shared.weight"]
    assert entry.std == pytest.approx(1.0)  # 1 / (d^-0.5 sqrt(d)): logits at unit variance
    assert "lm_head.weight" not in {e.path for e in p}
    for sel in ("shared.weight", "lm_head.weight", "encoder.embed_tokens.weight", "shared"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            q = initscope.plan(model, example_input=ids, rules=[(sel, "normal", {"std": 0.3})])
        assert q["shared.weight"].std == 0.3, sel


class PreNormEncDec(nn.Module):
    """Two pre-norm stacks, each with a final norm; the encoder's output enters every decoder
    branch (as cross-attention does): both stacks accumulate, neither is post-norm."""

    def __init__(self, d: int = 8, n: int = 2) -> None:
        super().__init__()
        self.enc = nn.ModuleList(nn.Linear(d, d) for _ in range(n))
        self.enc_ln = nn.ModuleList(nn.LayerNorm(d) for _ in range(n))
        self.enc_final = nn.LayerNorm(d)
        self.dec = nn.ModuleList(nn.Linear(d, d) for _ in range(n))
        self.dec_ln = nn.ModuleList(nn.LayerNorm(d) for _ in range(n))
        self.dec_final = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for fc, ln in zip(self.enc, self.enc_ln, strict=True):
            h = h + fc(ln(h))
        e = self.enc_final(h)
        h = x
        for fc, ln in zip(self.dec, self.dec_ln, strict=True):
            h = h + fc(ln(h) * e)
        return self.dec_final(h)


def test_every_pre_norm_stack_of_an_encoder_decoder_accumulates() -> None:
    layers = by_path(inspect_model(PreNormEncDec()))
    for path in ("enc.0", "enc.1", "dec.0", "dec.1"):
        assert layers[path].ends_residual and not layers[path].post_norm, path
    assert layers["enc.0"].residual_depth == 4
