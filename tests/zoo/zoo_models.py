"""The zoo: small configurations of real architectures, built from code with random weights
(nothing is downloaded). Each builder returns ``(model, example_input)``; a model's library is
imported inside its builder, so a missing library only skips the models that need it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tokens(vocab: int, shape: tuple[int, int], seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=_gen(seed))


def _image(size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=_gen(2))


# BatchNorm networks run in train mode normalize each channel over batch x positions: ImageNet
# models downsample 32x, so a 32x32 batch of 2 leaves 2 values per channel in the last stage,
# which a batch normalization maps to exactly -1 and +1 (its gradient is then exactly 0).
# 64x64 and 8 images leave 32 values per channel.
_BN_IMAGE = {"size": 64, "batch": 8}


def _gpt2() -> tuple[nn.Module, Any]:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=2,
        vocab_size=512,
        n_positions=64,
        use_cache=False,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(cfg), {"input_ids": _tokens(512, (2, 16))}


def _bert() -> tuple[nn.Module, Any]:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=512,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
    )
    return BertModel(cfg), {"input_ids": _tokens(512, (2, 16))}


def _llama() -> tuple[nn.Module, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        use_cache=False,
    )
    return LlamaForCausalLM(cfg), {"input_ids": _tokens(512, (2, 16))}


def _t5() -> tuple[nn.Module, Any]:
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(
        vocab_size=512, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, use_cache=False
    )
    x = {"input_ids": _tokens(512, (2, 16)), "decoder_input_ids": _tokens(512, (2, 8), 3)}
    return T5ForConditionalGeneration(cfg), x


def _hf_vit() -> tuple[nn.Module, Any]:
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
    )
    return ViTModel(cfg, add_pooling_layer=False), {"pixel_values": _image()}


def _hf_convnext() -> tuple[nn.Module, Any]:
    from transformers import ConvNextConfig, ConvNextModel

    cfg = ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[2, 2], image_size=32)
    return ConvNextModel(cfg), {"pixel_values": _image()}


def _tv(
    name: str, image: dict[str, int] | None = None, **kw: Any
) -> Callable[[], tuple[nn.Module, Any]]:
    def build() -> tuple[nn.Module, Any]:
        import torchvision

        return getattr(torchvision.models, name)(weights=None, **kw), _image(**(image or {}))

    return build


def _tv_vit() -> tuple[nn.Module, Any]:
    from torchvision.models.vision_transformer import VisionTransformer

    # vit_b_16's class and recipe, at a small size
    m = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=64,
        mlp_dim=128,
        num_classes=10,
    )
    return m, _image()


def _tv_convnext() -> tuple[nn.Module, Any]:
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    # convnext_tiny's class and recipe (layer scale 1e-6, stochastic depth), at a small size
    setting = [CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 2)]
    return ConvNeXt(setting, stochastic_depth_prob=0.1, num_classes=10), _image()


def _timm(
    name: str, image: dict[str, int] | None = None, **kw: Any
) -> Callable[[], tuple[nn.Module, Any]]:
    def build() -> tuple[nn.Module, Any]:
        import timm

        return timm.create_model(name, pretrained=False, **kw), _image(**(image or {}))

    return build


@dataclass(frozen=True)
class ZooModel:
    name: str
    library: str
    build: Callable[[], tuple[nn.Module, Any]]


ZOO: tuple[ZooModel, ...] = (
    ZooModel("hf_gpt2", "transformers", _gpt2),
    ZooModel("hf_bert", "transformers", _bert),
    ZooModel("hf_llama", "transformers", _llama),
    ZooModel("hf_t5", "transformers", _t5),
    ZooModel("hf_vit", "transformers", _hf_vit),
    ZooModel("hf_convnext", "transformers", _hf_convnext),
    ZooModel("tv_resnet18", "torchvision", _tv("resnet18", _BN_IMAGE, num_classes=10)),
    ZooModel(
        "tv_resnet50_zero",
        "torchvision",
        _tv("resnet50", _BN_IMAGE, num_classes=10, zero_init_residual=True),
    ),
    ZooModel(
        "tv_efficientnet_b0", "torchvision", _tv("efficientnet_b0", _BN_IMAGE, num_classes=10)
    ),
    ZooModel(
        "tv_mobilenet_v3_small", "torchvision", _tv("mobilenet_v3_small", _BN_IMAGE, num_classes=10)
    ),
    ZooModel("tv_vit_b_16_small", "torchvision", _tv_vit),
    ZooModel("tv_convnext_tiny_small", "torchvision", _tv_convnext),
    ZooModel(
        "timm_vit_tiny_dp",
        "timm",
        _timm("vit_tiny_patch16_224", drop_path_rate=0.1, img_size=32, num_classes=10),
    ),
    ZooModel("timm_resnet26d", "timm", _timm("resnet26d", _BN_IMAGE, num_classes=10)),
    ZooModel("timm_deit_tiny", "timm", _timm("deit_tiny_patch16_224", img_size=32, num_classes=10)),
)


def unavailable(library: str) -> str | None:
    """Why ``library`` cannot be used here (``None`` when it imports)."""
    try:
        importlib.import_module(library)
    except Exception as exc:  # torchvision next to a CPU-only torch fails with RuntimeError
        return f"{library} cannot be imported here ({type(exc).__name__}: {str(exc)[:120]})"
    return None


_MATMUL_OPS = frozenset(
    {
        "linear",
        "addmm",
        "matmul",
        "__matmul__",
        "__rmatmul__",
        "mm",
        "bmm",
        "baddbmm",
        "einsum",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "bilinear",
    }
)


def matmul_params(model: nn.Module, example: Any) -> set[str]:
    """The names of the parameters that a matmul-like op consumes in one forward (eval mode,
    no gradients), found independently of initscope's graph: every torch call is watched."""
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_flatten

    names = {id(p): n for n, p in model.named_parameters()}
    found: set[str] = set()

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            kwargs = kwargs or {}
            if getattr(func, "__name__", "") in _MATMUL_OPS:
                for t in tree_flatten((args, kwargs))[0]:
                    if isinstance(t, torch.Tensor) and id(t) in names and t.dim() >= 2:
                        found.add(names[id(t)])
            return func(*args, **kwargs)

    training = model.training
    model.eval()
    try:
        with torch.no_grad(), Watch():
            if isinstance(example, dict):
                model(**example)
            else:
                model(example)
    finally:
        model.train(training)
    return found
