"""Presets ``"xavier"``, ``"he"``, ``"lecun"``, ``"orthogonal"``, ``"lsuv"``, ``"gpt2"`` and
``"fixup"``: one scheme everywhere, and the recipes of particular papers."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from initscope.graph import Layer
from initscope.policy._choice import Choice, choice, num
from initscope.policy.presets.base import (
    ModelFacts,
    bias_param,
    embedding,
    layer_scale,
    literal,
    matrix,
    norm,
    prelu,
    token_param,
    weight_param,
    zero_bias,
)

__all__ = ["GPT2_STD", "fixup", "gpt2", "he", "lecun", "lsuv", "orthogonal", "xavier"]

GPT2_STD = 0.02


def xavier(facts: ModelFacts, layer: Layer, name: str) -> Any:
    """Glorot & Bengio (2010) normal on every weight matrix."""
    return literal(facts, layer, name, "xavier_normal")


def he(facts: ModelFacts, layer: Layer, name: str) -> Any:
    """He et al. (2015) normal on every weight matrix (a following leaky ReLU's slope counts)."""
    return literal(facts, layer, name, "kaiming_normal")


def lecun(facts: ModelFacts, layer: Layer, name: str) -> Any:
    """LeCun et al. (1998) normal on every weight matrix."""
    return literal(facts, layer, name, "lecun_normal")


def orthogonal(facts: ModelFacts, layer: Layer, name: str) -> Any:
    """Saxe et al. (2014), gain = the exact forward gain of the following activation."""
    return literal(facts, layer, name, "orthogonal")


def lsuv(facts: ModelFacts, layer: Layer, name: str) -> Any:
    """Mishkin & Matas (2016), step 1: orthogonal (step 2 rescales on data when applied)."""
    picked = literal(facts, layer, name, "orthogonal")
    if picked is None:
        return None
    prefix = "LSUV (Mishkin & Matas 2016), step 1 of 2 (step 2 rescales on data): "
    if isinstance(picked, Choice):
        return dataclasses.replace(picked, why=prefix + picked.why)
    return tuple(dataclasses.replace(c, why=prefix + c.why) for c in picked)


def _gpt2_matrix(layer: Layer, name: str) -> bool:
    kind = layer.kind
    return (
        weight_param(layer, name)
        or (kind == "recurrent" and name.startswith("weight"))
        or (kind == "attention" and name in ("bias_k", "bias_v"))
    )


def gpt2(facts: ModelFacts, layer: Layer, name: str) -> Any:
    """Radford et al. (2019): N(0, 0.02^2), residual projections 0.02 / sqrt(2 n_layer)."""
    kind = layer.kind
    role = layer.param_roles.get(name)
    if role == "scale":
        return layer_scale(layer, name)
    if role in ("token", "position"):
        return token_param(facts, layer, name)
    if kind == "norm":
        return norm(facts, layer, name, scaled_ends=False)
    if kind == "embedding":
        return embedding(facts, layer, name, std=GPT2_STD)
    if kind == "activation":
        return prelu(layer, name)
    if bias_param(layer, name) or (kind == "recurrent" and name.startswith("bias")):
        return zero_bias(layer, name)
    if not _gpt2_matrix(layer, name):
        return None
    if layer.ends_residual and facts.L > 0:
        return choice(
            layer,
            name,
            "normal",
            std=GPT2_STD / math.sqrt(facts.L),
            formula=f"std = 0.02 / sqrt(2 n_layer) = 0.02/sqrt({facts.L})",
            why=f"GPT-2 (Radford et al. 2019): residual projection, scaled by "
            f"1/sqrt(N) over the N = {facts.L} residual branches (2 per block)",
        )
    return choice(
        layer,
        name,
        "normal",
        std=GPT2_STD,
        why="GPT-2 (Radford et al. 2019), as nanoGPT: N(0, 0.02^2)",
    )


def fixup(facts: ModelFacts, layer: Layer, name: str) -> Any:
    """Zhang et al. (2019): branch layers He x L^(-1/(2m-2)), branch ends and classifier 0."""
    kind = layer.kind
    if kind in ("norm", "embedding", "recurrent", "activation"):
        return literal(facts, layer, name, "kaiming_normal")
    if bias_param(layer, name):
        if layer.is_output:
            return choice(layer, name, "zeros", why="Fixup (Zhang et al. 2019): classifier 0")
        return zero_bias(layer, name)
    if not weight_param(layer, name):
        return None
    if layer.is_output:
        return choice(
            layer,
            name,
            "zeros",
            why="Fixup (Zhang et al. 2019): the classification layer starts at 0",
        )
    if layer.residual_branch is None:
        return matrix(layer, name, "kaiming_normal", "Fixup: He outside the branches")
    if layer.ends_residual:
        return choice(
            layer,
            name,
            "zeros",
            why=f"Fixup (Zhang et al. 2019): last layer of residual branch "
            f"{layer.residual_branch} starts at 0",
        )
    m, L = layer.branch_layers, max(facts.L, 1)
    factor = L ** (-1.0 / (2 * m - 2)) if m > 1 else 1.0
    act = layer.activation
    param = act.param if act is not None and act.name == "leaky_relu" else None
    slope = 0.0 if param is None else param  # resolve() gives leaky_relu its slope
    return choice(
        layer,
        name,
        "variance_scaling",
        scale=2 / (1 + slope * slope) * factor**2,
        mode="fan_in",
        distribution="normal",
        why=f"Fixup (Zhang et al. 2019): He normal x L^(-1/(2m-2)) = {L}^(-1/"
        f"{2 * m - 2}) = {num(factor)} (L = {L} branches, m = {m} layers each)",
    )
