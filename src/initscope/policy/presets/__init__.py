"""The presets of :mod:`initscope.policy`, as methods ``_preset_<name>(layer, param)`` of a
per-model :class:`Context`: each returns a :class:`~initscope.policy.Choice`, a tuple of them
(blocks of rows) or ``None`` (not covered: the parameter stays as it is)."""

from __future__ import annotations

from typing import Any

from initscope.policy.presets.auto import AutoPresets
from initscope.policy.presets.named import NamedPresets
from initscope.graph import Layer

__all__ = ["Context"]


class Context(AutoPresets, NamedPresets):
    """What the presets need to know about the whole model, and the dispatch to the preset."""

    def choose(self, layer: Layer, name: str) -> Any:
        if self.zero_init_residual:
            zero = self._zero_residual(layer, name)
            if zero is not None:
                return zero
        return getattr(self, f"_preset_{self.preset}")(layer, name)
