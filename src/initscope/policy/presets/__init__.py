"""The presets of :mod:`initscope.policy`: plain functions ``(facts, layer, name)`` in
:data:`PRESETS`, each returning a :class:`~initscope.policy.Choice`, a tuple of them (blocks of
rows) or ``None`` (not covered: the parameter stays as it is).

To add a preset: write the function (the pieces every preset shares are in
:mod:`initscope.policy.presets.base`), add it to :data:`PRESETS` and its name to
:data:`initscope.policy.Preset`.
"""

from __future__ import annotations

from typing import Any

from initscope.graph import Layer
from initscope.policy.presets.auto_preset import auto, guide
from initscope.policy.presets.base import ModelFacts, PresetFn, describe, zero_residual
from initscope.policy.presets.named import fixup, gpt2, he, lecun, lsuv, orthogonal, xavier
from initscope.policy.presets.pytorch import torch_preset

__all__ = ["PRESETS", "ModelFacts", "PresetFn", "decide", "describe"]

PRESETS: dict[str, PresetFn] = {
    "auto": auto,
    "guide": guide,
    "torch": torch_preset,
    "xavier": xavier,
    "he": he,
    "lecun": lecun,
    "orthogonal": orthogonal,
    "gpt2": gpt2,
    "fixup": fixup,
    "lsuv": lsuv,
}
"""Preset name -> preset function, in the order the docs list them."""


def decide(
    facts: ModelFacts, preset: str, layer: Layer, name: str, zero_init_residual: bool = False
) -> Any:
    """``zero_init_residual`` first (when set), then the preset."""
    if zero_init_residual:
        zero = zero_residual(facts, layer, name)
        if zero is not None:
            return zero
    return PRESETS[preset](facts, layer, name)
