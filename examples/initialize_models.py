"""initialize(model): one call reads the architecture and initializes every parameter, explained.

Run ``python examples/initialize_models.py`` to print the plans, or use any factory here with the
CLI::

    initscope init examples/initialize_models.py:pricing_network --input-shape 64,16
    initscope init examples/initialize_models.py:transformer_encoder --input-shape 8,16,128
    initscope diagnose examples/initialize_models.py:mlp --input-shape 128,256 --init auto
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import initscope

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "selu": nn.SELU,
    "elu": nn.ELU,
    "mish": nn.Mish,
}


class PricingNetwork(nn.Module):
    """The textbook pricing network, without its hand-written init: initscope decides."""

    def __init__(self, input_dim: int = 16, hidden_dim: int = 128, n_layers: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n_layers):
            in_d = input_dim if i == 0 else hidden_dim
            layers.extend([nn.Linear(in_d, hidden_dim), nn.ReLU()])
        self.backbone = nn.Sequential(*layers)
        self.output_head = nn.Linear(hidden_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.output_head(self.backbone(x)))  # enforce positivity


def pricing_network() -> nn.Module:
    return PricingNetwork()


def mlp(act: str = "relu", depth: int = 50, width: int = 256) -> nn.Sequential:
    """A plain MLP: ``depth`` Linear(width, width) layers, ``act`` after all but the last."""
    layers: list[nn.Module] = []
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), ACTIVATIONS[act]()]
    layers.append(nn.Linear(width, width))
    return nn.Sequential(*layers)


class Block(nn.Module):
    """``x + conv2(relu(conv1(x)))`` (BatchNorm after each conv when ``norm``)."""

    def __init__(self, channels: int, norm: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels) if norm else nn.Identity()
        self.bn2 = nn.BatchNorm2d(channels) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))


class ResNetCNN(nn.Module):
    """A ResNet-style CNN: stem conv, ``blocks`` residual blocks, a 1x1 conv head (dense
    prediction: as many output channels as features, so both passes can be compared end to end)."""

    def __init__(
        self, blocks: int = 20, channels: int = 16, in_channels: int = 3, norm: bool = False
    ) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(Block(channels, norm) for _ in range(blocks)))
        self.head = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.blocks(F.relu(self.stem(x)))))


def resnet_cnn() -> nn.Module:
    return ResNetCNN()


def transformer_encoder(
    layers: int = 12, d_model: int = 128, nhead: int = 4, dim_feedforward: int = 512
) -> nn.Module:
    """``nn.TransformerEncoder`` (post-norm, torch's default); input ``(batch, seq, d_model)``."""
    layer = nn.TransformerEncoderLayer(
        d_model, nhead, dim_feedforward, dropout=0.0, batch_first=True
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class StackedLSTM(nn.Module):
    """``layers`` single-layer LSTMs in a row (one diagnostics row each) and a linear head."""

    def __init__(self, layers: int = 4, input_size: int = 64, hidden: int = 64) -> None:
        super().__init__()
        self.lstms = nn.ModuleList(
            nn.LSTM(input_size if i == 0 else hidden, hidden, batch_first=True)
            for i in range(layers)
        )
        self.head = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lstm in self.lstms:
            x, _ = lstm(x)
        return self.head(x)


def lstm_model() -> nn.Module:
    return StackedLSTM()


class MiniGPT(nn.Module):
    """A nanoGPT-style pre-norm decoder: fused q/k/v, tied embedding and output layer."""

    def __init__(self, vocab: int = 256, d: int = 64, n_layer: int = 4, n_head: int = 4) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(64, d)
        self.blocks = nn.ModuleList(_GPTBlock(d, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class _GPTBlock(nn.Module):
    def __init__(self, d: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d))
        return x + self.proj(F.gelu(self.fc(self.ln_2(x))))


def mini_gpt() -> nn.Module:
    return MiniGPT()


def main() -> None:
    g = torch.Generator().manual_seed(0)

    model = pricing_network()
    plan = initscope.initialize(model, generator=g)
    print(plan)

    gpt = mini_gpt()
    print(initscope.plan(gpt, "gpt2"))

    encoder = transformer_encoder(layers=2)
    x = torch.randn(8, 16, 128, generator=g)
    rules = [("*.linear2", "zeros"), (nn.Linear, "he", {"mode": "fan_out"})]
    custom = initscope.initialize(encoder, example_input=x, rules=rules, generator=g)
    print(custom["layers.0.linear2.weight"].why)


if __name__ == "__main__":
    main()
