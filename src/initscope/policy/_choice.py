"""Choices: one initialization step (scheme, kwargs, fans, rows) with its std, formula and why."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from initscope.graph import Layer
from initscope.init import Fans, fans, param_shape, torch_fans
from initscope.init.registry import RECORDS, get_scheme, num, record, scheme_name

__all__ = ["Choice", "choice", "accepted", "applicable", "scheme_name", "layout_fans", "num"]


@dataclass(frozen=True)
class Choice:
    """One initialization step for a parameter (or a block of its rows).

    Attributes:
        scheme: an :data:`initscope.init.SCHEMES` name.
        params: keyword arguments for the scheme (JSON-serializable), without ``fans`` and
            ``generator``.
        std: standard deviation of the values it produces (0 for constants).
        formula: how ``std`` follows from the fans, e.g. ``"Var = 2 / fan_in = 2/256"``.
        why: the reason, e.g. ``"He normal: relu follows (fc1 -> relu)"``.
        fans: passed to fan-based schemes as ``fans=`` (layout-aware fans from
            :func:`initscope.fans.fans`); ``None``: the tensor's own (torch's rule).
        rows: apply to ``param[rows[0]:rows[1]]`` only (an LSTM gate, a q/k/v block).
    """

    scheme: str
    params: Mapping[str, Any] = field(default_factory=dict)
    std: float = 0.0
    formula: str = ""
    why: str = ""
    fans: Fans | None = None
    rows: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict; :meth:`from_dict` rebuilds the choice."""
        return {
            "scheme": self.scheme,
            "params": dict(self.params),
            "std": self.std,
            "formula": self.formula,
            "why": self.why,
            "fans": None if self.fans is None else self.fans.to_dict(),
            "rows": None if self.rows is None else list(self.rows),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Choice:
        """Inverse of :meth:`to_dict`."""
        f = d.get("fans")
        rows = d.get("rows")
        return cls(
            scheme=d["scheme"],
            params=dict(d.get("params") or {}),
            std=float(d.get("std", 0.0)),
            formula=d.get("formula", ""),
            why=d.get("why", ""),
            fans=None
            if f is None
            else Fans(**{k: f[k] for k in ("fan_in", "fan_out", "receptive_field")}),
            rows=None if rows is None else (int(rows[0]), int(rows[1])),
        )

    def apply(self, tensor: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Run the scheme in place on ``tensor`` (its ``rows`` block when set)."""
        fn = get_scheme(self.scheme)
        names = accepted(self.scheme)
        kwargs = dict(self.params)
        if self.fans is not None and "fans" in names:
            kwargs["fans"] = self.fans
        if "generator" in names:
            kwargs["generator"] = generator
        target = tensor.detach()
        if self.rows is not None:
            target = target[self.rows[0] : self.rows[1]]
        fn(target, **kwargs)


@functools.cache
def accepted(scheme: str) -> frozenset[str]:
    """The parameter names of ``scheme``'s function."""
    return record(scheme).params


def applicable(scheme: str, ndim: int) -> bool:
    """Whether ``scheme`` can fill a tensor with ``ndim`` dims (the ranks its record allows)."""
    return record(scheme).applicable(ndim)


def choice(
    layer: Layer,
    param: str,
    scheme: str,
    *,
    why: str = "",
    rows: tuple[int, int] | None = None,
    fans: Fans | None | Literal["layout"] = "layout",
    formula: str | None = None,
    **params: Any,
) -> Choice:
    """Build a :class:`Choice` for ``layer``'s parameter ``param``, with its std and formula.

    ``fans="layout"`` (default) uses :func:`initscope.fans.fans` (``layer.module``, ``param``)
    for fan-based schemes (fused attention, transposed and grouped conv, recurrent gates);
    ``None`` keeps the tensor's own fans (torch's rule); a :class:`~initscope.fans.Fans`
    overrides. Handy in callable rules::

        def my_rule(layer, name):
            if layer.kind == "conv" and name == "weight":
                return choice(layer, name, "orthogonal", gain=2 ** 0.5, why="orthogonal convs")
            return None
    """
    scheme = scheme_name(scheme)
    shape = param_shape(layer.module, param)  # a parametrization is not advanced
    if rows is not None:
        shape = (rows[1] - rows[0], *shape[1:])
    used: Fans | None = None
    rec = RECORDS[scheme]
    if len(shape) >= 2 and rec.fan_based:
        if fans == "layout":
            used = layout_fans(layer, param)
        elif fans is not None:
            used = fans
    shown = used if used is not None else (torch_fans(shape) if len(shape) >= 2 else Fans(1, 1))
    std, auto_formula = rec.std(params, shown, shape)
    return Choice(
        scheme=scheme,
        params=dict(params),
        std=std,
        formula=auto_formula if formula is None else formula,
        why=why,
        fans=used,
        rows=rows,
    )


def layout_fans(layer: Layer, param: str) -> Fans:
    """The fans a policy uses: the ones the graph read from the op consuming the parameter
    (``layer.param_fans``, e.g. a ``(in, out)`` weight used as ``x @ W``), else
    :func:`initscope.fans.fans`; per block for a fused q/k/v Linear."""
    f = layer.param_fans.get(param) or fans(layer.module, param)
    if (
        layer.attention_role == "qkv"
        and not isinstance(layer.module, nn.MultiheadAttention)
        and param == "weight"
        and f.fan_out % 3 == 0
    ):
        return Fans(f.fan_in, f.fan_out // 3, f.receptive_field)  # fused q, k, v: per block
    return f
