"""Preset ``"torch"``: what PyTorch's constructors do (each module's ``reset_parameters``)."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from initscope.graph import MATRIX_KINDS, Layer
from initscope.policy._choice import Choice, choice
from initscope.policy.presets.base import (
    _MHA_WEIGHTS,
    ModelFacts,
    hidden_size,
    parent,
    prelu,
    weight_of,
)

__all__ = ["torch_preset"]


def _uniform(layer: Layer, name: str, bound: float, why: str) -> Choice:
    return choice(layer, name, "uniform", a=-bound, b=bound, why=why)


def _embedding(layer: Layer, name: str) -> Any:
    first = choice(
        layer, name, "normal", std=1.0, why=f"torch {layer.type}.reset_parameters: N(0, 1)"
    )
    pad = getattr(layer.module, "padding_idx", None)
    if pad is None:
        return first
    return (
        first,
        choice(layer, name, "zeros", rows=(pad, pad + 1), why=f"torch: padding_idx {pad} row 0"),
    )


def _attention(layer: Layer, name: str) -> Choice:
    if name in _MHA_WEIGHTS:
        return choice(
            layer,
            name,
            "xavier_uniform",
            fans=None,
            why="torch MultiheadAttention._reset_parameters: Xavier uniform "
            "on the whole (3E, E) matrix",
        )
    if name == "in_proj_bias":
        return choice(layer, name, "zeros", why="torch MultiheadAttention: bias 0")
    return choice(
        layer,
        name,
        "xavier_normal",
        fans=None,
        why="torch MultiheadAttention: bias_k/bias_v Xavier normal",
    )


def _matrix(facts: ModelFacts, layer: Layer, name: str) -> Choice | None:
    if name == "weight":
        return choice(
            layer,
            name,
            "kaiming_uniform",
            a=math.sqrt(5),
            fans=None,
            why=f"torch {layer.type}.reset_parameters: kaiming_uniform_(a=sqrt(5))"
            " = U(-1/sqrt(fan_in), 1/sqrt(fan_in))",
        )
    if name != "bias":
        return None
    if layer.attention_role == "out" and isinstance(parent(facts, layer), nn.MultiheadAttention):
        return choice(layer, name, "zeros", why="torch MultiheadAttention: out_proj bias 0")
    weight = weight_of(layer)
    fan_in = weight.shape[1] * math.prod(weight.shape[2:])
    return _uniform(
        layer,
        name,
        1 / math.sqrt(fan_in) if fan_in > 0 else 0.0,
        f"torch {layer.type}.reset_parameters: bias U(-1/sqrt(fan_in), "
        f"1/sqrt(fan_in)), fan_in = {fan_in} (torch's rule)",
    )


def torch_preset(facts: ModelFacts, layer: Layer, name: str) -> Any:
    """Preset ``"torch"``: each module's own ``reset_parameters``."""
    kind = layer.kind
    if kind == "norm":
        value = "ones" if name == "weight" else "zeros"
        return choice(layer, name, value, why=f"torch {layer.type}.reset_parameters")
    if kind == "embedding":
        return _embedding(layer, name)
    if kind == "recurrent":
        return _uniform(
            layer,
            name,
            1 / math.sqrt(hidden_size(layer)),
            f"torch {layer.type}.reset_parameters: U(-1/sqrt(hidden), "
            f"1/sqrt(hidden)), hidden = {hidden_size(layer)}",
        )
    if kind == "activation":
        return prelu(layer, name)
    if kind == "attention":
        return _attention(layer, name)
    if kind == "bilinear":
        return _uniform(
            layer,
            name,
            1 / math.sqrt(weight_of(layer).shape[1]),
            "torch Bilinear.reset_parameters: U(-1/sqrt(in1), 1/sqrt(in1))",
        )
    if kind not in MATRIX_KINDS:
        return None
    return _matrix(facts, layer, name)
