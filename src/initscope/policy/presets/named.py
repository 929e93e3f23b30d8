"""Presets ``"xavier"``, ``"he"``, ``"lecun"``, ``"orthogonal"``, ``"lsuv"``, ``"gpt2"``,
``"fixup"`` and ``"torch"``."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from torch import nn

from initscope.policy._choice import Choice, choice, num
from initscope.policy.presets.base import _MATRIX_KINDS, _MHA_WEIGHTS, Base, _bias_param, _weight_param
from initscope.graph import Layer

GPT2_STD = 0.02


class NamedPresets(Base):
    """One scheme everywhere, and the recipes of particular papers."""

    def _preset_xavier(self, layer: Layer, name: str) -> Any:
        return self._literal(layer, name, "xavier_normal")

    def _preset_he(self, layer: Layer, name: str) -> Any:
        return self._literal(layer, name, "kaiming_normal")

    def _preset_lecun(self, layer: Layer, name: str) -> Any:
        return self._literal(layer, name, "lecun_normal")

    def _preset_orthogonal(self, layer: Layer, name: str) -> Any:
        return self._literal(layer, name, "orthogonal")

    def _preset_lsuv(self, layer: Layer, name: str) -> Any:
        picked = self._literal(layer, name, "orthogonal")
        if picked is None:
            return None
        prefix = "LSUV (Mishkin & Matas 2016), step 1 of 2 (step 2 rescales on data): "
        if isinstance(picked, Choice):
            return dataclasses.replace(picked, why=prefix + picked.why)
        return tuple(dataclasses.replace(c, why=prefix + c.why) for c in picked)

    def _preset_gpt2(self, layer: Layer, name: str) -> Any:
        kind = layer.kind
        if kind == "norm":
            return self._norm(layer, name, scaled_ends=False)
        if kind == "embedding":
            return self._embedding(layer, name, std=GPT2_STD)
        if kind == "activation":
            return self._prelu(layer, name)
        if _bias_param(layer, name) or kind == "recurrent" and name.startswith("bias"):
            return self._zero_bias(layer, name)
        if not (
            _weight_param(layer, name)
            or kind == "recurrent"
            and name.startswith("weight")
            or kind == "attention"
            and name in ("bias_k", "bias_v")
        ):
            return None
        if layer.ends_residual and self.L > 0:
            std = GPT2_STD / math.sqrt(self.L)
            return choice(
                layer,
                name,
                "normal",
                std=std,
                formula=f"std = 0.02 / sqrt(2 n_layer) = 0.02/sqrt({self.L})",
                why=f"GPT-2 (Radford et al. 2019): residual projection, scaled by "
                f"1/sqrt(N) over the N = {self.L} residual branches (2 per block)",
            )
        return choice(
            layer,
            name,
            "normal",
            std=GPT2_STD,
            why="GPT-2 (Radford et al. 2019), as nanoGPT: N(0, 0.02^2)",
        )

    def _preset_fixup(self, layer: Layer, name: str) -> Any:
        kind = layer.kind
        if kind in ("norm", "embedding", "recurrent", "activation"):
            return self._literal(layer, name, "kaiming_normal")
        if _bias_param(layer, name):
            if layer.is_output:
                return choice(layer, name, "zeros", why="Fixup (Zhang et al. 2019): classifier 0")
            return self._zero_bias(layer, name)
        if not _weight_param(layer, name):
            return None
        if layer.is_output:
            return choice(
                layer,
                name,
                "zeros",
                why="Fixup (Zhang et al. 2019): the classification layer starts at 0",
            )
        if layer.residual_branch is None:
            return self._matrix(layer, name, "kaiming_normal", "Fixup: He outside the branches")
        if layer.ends_residual:
            return choice(
                layer,
                name,
                "zeros",
                why=f"Fixup (Zhang et al. 2019): last layer of residual branch "
                f"{layer.residual_branch} starts at 0",
            )
        m, L = layer.branch_layers, max(self.L, 1)
        factor = L ** (-1.0 / (2 * m - 2)) if m > 1 else 1.0
        act = layer.activation
        slope = act.param if act is not None and act.name == "leaky_relu" else 0.0
        scale = 2 / (1 + slope * slope) * factor**2
        return choice(
            layer,
            name,
            "variance_scaling",
            scale=scale,
            mode="fan_in",
            distribution="normal",
            why=f"Fixup (Zhang et al. 2019): He normal x L^(-1/(2m-2)) = {L}^(-1/"
            f"{2 * m - 2}) = {num(factor)} (L = {L} branches, m = {m} layers each)",
        )

    # ------------------------------------------------------------------ torch

    def _preset_torch(self, layer: Layer, name: str) -> Any:
        m, kind = layer.module, layer.kind
        if kind == "norm":
            value = "ones" if name == "weight" else "zeros"
            return choice(layer, name, value, why=f"torch {layer.type}.reset_parameters")
        if kind == "embedding":
            first = choice(
                layer, name, "normal", std=1.0, why=f"torch {layer.type}.reset_parameters: N(0, 1)"
            )
            pad = getattr(m, "padding_idx", None)
            if pad is None:
                return first
            return (
                first,
                choice(
                    layer, name, "zeros", rows=(pad, pad + 1), why=f"torch: padding_idx {pad} row 0"
                ),
            )
        if kind == "recurrent":
            bound = 1 / math.sqrt(m.hidden_size)
            return choice(
                layer,
                name,
                "uniform",
                a=-bound,
                b=bound,
                why=f"torch {layer.type}.reset_parameters: U(-1/sqrt(hidden), "
                f"1/sqrt(hidden)), hidden = {m.hidden_size}",
            )
        if kind == "activation":
            return self._prelu(layer, name)
        if kind == "attention":
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
        if kind == "bilinear":
            bound = 1 / math.sqrt(m.weight.shape[1])
            return choice(
                layer,
                name,
                "uniform",
                a=-bound,
                b=bound,
                why="torch Bilinear.reset_parameters: U(-1/sqrt(in1), 1/sqrt(in1))",
            )
        if kind not in _MATRIX_KINDS:
            return None
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
        if layer.attention_role == "out" and isinstance(self._parent(layer), nn.MultiheadAttention):
            return choice(layer, name, "zeros", why="torch MultiheadAttention: out_proj bias 0")
        weight = m.weight
        fan_in = weight.shape[1] * math.prod(weight.shape[2:])
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        return choice(
            layer,
            name,
            "uniform",
            a=-bound,
            b=bound,
            why=f"torch {layer.type}.reset_parameters: bias U(-1/sqrt(fan_in), "
            f"1/sqrt(fan_in)), fan_in = {fan_in} (torch's rule)",
        )

    def _parent(self, layer: Layer) -> nn.Module | None:
        parent = layer.path.rpartition(".")[0]
        try:
            return self.model.get_submodule(parent)
        except AttributeError:
            return None
