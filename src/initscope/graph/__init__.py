"""Model inspection: one pass over a model that says, for every layer with parameters, what the
initialization policy needs to know.

``inspect_model`` builds a data-flow graph with ``torch.fx`` symbolic tracing when that works and
otherwise records one real forward on ``example_input`` (a ``TorchFunctionMode`` sees functional
activations, residual adds and reshapes; module hooks see the layers). On that graph it finds,
per layer: the activation applied to its output (looking through reshapes and dropout), a
normalization that follows, whether the layer ends a residual branch (its output reaches an
``add`` whose other operand is a skip path with fewer weight layers), the residual depth ``L``,
attention projections, recurrent layers, embeddings and the model's output layers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from initscope._torch import state_guard
from initscope.activations import Activation
from initscope.graph import _build as gb
from initscope.graph._analysis import (
    MATRIX_KINDS,
    LayerKind,
    NormKind,
    analyze,
    layer_kind,
    norm_kind,
)
from initscope.graph._behaviour import Behaviour, behaviour
from initscope.graph._build import Node, Ref, from_fx, from_recording
from initscope.init import Fans

__all__ = [
    "MATRIX_KINDS",
    "Behaviour",
    "Layer",
    "LayerKind",
    "Node",
    "NormKind",
    "Ref",
    "behaviour",
    "from_fx",
    "from_recording",
    "inspect_model",
    "layer_kind",
    "norm_kind",
]

logger = logging.getLogger(__name__)

AttentionRole = Literal["qkv", "q", "k", "v", "out"]
Trace = Literal["auto", "fx", "record"]
_TRACES = ("auto", "fx", "record")


@dataclass(frozen=True, eq=False)
class Layer:
    """What the policy knows about one module that holds parameters directly.

    Attributes:
        index: position in execution order (modules that never ran come last).
        path: module path in ``model.named_modules()`` (``""`` for the model itself).
        module: the module.
        kind: ``linear``, ``conv``, ``conv_transpose``, ``bilinear``, ``embedding``,
            ``attention`` (``nn.MultiheadAttention``: its input projections), ``recurrent``,
            ``norm``, ``activation`` (``nn.PReLU``), ``scale`` (a per-channel scale such as
            LayerScale) or ``other`` (:func:`layer_kind`: by type for torch's layers, by
            behaviour for others).
        params: names of the parameters the module holds directly.
        activation: the activation applied to the layer's output (through reshapes, dropout
            and a normalization), or ``None``.
        activation_at: where it was found: a module path or a function name (``"F.relu"``).
        input_activation: the activation applied to the layer's input (through reshapes and
            dropout), or ``None`` (model input, a normalization, another layer);
            ``input_activation_at`` where it was found.
        norm: the normalization that directly follows the layer, if any; ``norm_path`` its
            module path (``None`` for a functional one).
        ends_residual: the layer's output (through a normalization, activation or scalar
            factor) is the branch operand of a residual ``add``.
        residual_branch: index (execution order) of the residual branch the layer lies on.
        post_norm: the ``add`` closing that branch is followed by a normalization (a post-norm
            block, e.g. ``nn.TransformerEncoderLayer``'s default): the stream is renormalized
            there instead of accumulating variance.
        residual_depth: ``L``, the number of residual branches in the model.
        branch_layers: ``m``, the number of weight layers on that branch (0 off branches).
        attention_role: ``"qkv"`` (fused), ``"q"``, ``"k"``, ``"v"`` or ``"out"`` for attention
            projections (``nn.MultiheadAttention`` and ``scaled_dot_product_attention``).
        is_output: the last weight layer on a path to the model output (no other weight layer
            after it, not a residual branch end).
        is_input: no weight layer precedes it: it reads the model input.
        stack_depth: weight layers on the longest chain through this one without a
            normalization in between (residual adds continue the chain).
        tied_to: other module paths that hold one of this module's parameters (weight tying).
        calls: how many times the module ran in the traced forward; 0 when it never ran, or
            when it holds parameters next to submodules (their use is then read from the ops
            of the model that consume them: ``param_roles``).
        input_scale: the product of constant factors applied to the layer's input right before
            it (T5 scales the decoder output by ``d^-0.5`` before its tied head); 1 otherwise.
        param_fans: parameter name -> fans read from the op that consumes it, for parameters
            of modules torch does not define (``Conv1D``'s ``(in, out)`` weight, stacked expert
            weights ``(experts, in, out)``, a weight used as ``x @ W`` in a parent's forward).
        param_roles: parameter name -> ``"weight"`` / ``"bias"`` (of a matmul-like op),
            ``"norm_weight"`` / ``"norm_bias"``, ``"scale"`` (per-channel scale, LayerScale),
            ``"token"`` (concatenated to the tokens: ViT's class token) or ``"position"``
            (added to them: a position embedding), for parameters read by behaviour.
        param_partners: parameter name -> the module path of the weight layer whose output a
            ``"token"``/``"position"`` parameter is concatenated with or added to.
        param_aliases: parameter name -> its other names in
            ``model.named_parameters(remove_duplicate=False)`` (tied weights).
        output_scale: embeddings: the constant factor applied to the looked-up rows (1 if none).
        summed_with: embeddings: the module paths of the other embeddings summed with it.
    """

    index: int
    path: str
    module: nn.Module = field(repr=False)
    kind: LayerKind
    params: tuple[str, ...]
    activation: Activation | None = field(default=None, repr=False)
    activation_at: str | None = None
    input_activation: Activation | None = field(default=None, repr=False)
    input_activation_at: str | None = None
    norm: NormKind | None = None
    norm_path: str | None = None
    ends_residual: bool = False
    residual_branch: int | None = None
    post_norm: bool = False
    residual_depth: int = 0
    branch_layers: int = 0
    attention_role: AttentionRole | None = None
    is_output: bool = False
    is_input: bool = False
    stack_depth: int = 1
    tied_to: tuple[str, ...] = ()
    calls: int = 1
    input_scale: float = 1.0
    param_fans: Mapping[str, Fans] = field(default_factory=dict, repr=False)
    param_roles: Mapping[str, str] = field(default_factory=dict, repr=False)
    param_partners: Mapping[str, str] = field(default_factory=dict, repr=False)
    param_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    output_scale: float = 1.0
    summed_with: tuple[str, ...] = ()

    @property
    def activation_label(self) -> str | None:
        """The activation's display name (``"leaky_relu(0.2)"``) or ``None``."""
        return None if self.activation is None else self.activation.label()

    @property
    def type(self) -> str:
        """The module's class name."""
        return type(self.module).__name__


def _layers(records: list[tuple[nn.Module, str, dict[str, Any]]]) -> list[Layer]:
    return [
        Layer(index=i, path=path, module=m, **info) for i, (m, path, info) in enumerate(records)
    ]


def inspect_model(
    model: nn.Module, example_input: Any = None, *, trace: Trace = "auto"
) -> list[Layer]:
    """Inspect ``model`` and return one :class:`Layer` per module that holds parameters.

    Layers come in execution order (a shared module once, at its first call), then the modules
    that never ran (``calls == 0``) in registration order. ``nn.MultiheadAttention`` gives two
    layers: its input projections (``attention_role="qkv"``) and ``out_proj`` (``"out"``).

    Args:
        model: the model; it is not changed (modes, buffers and the random state are restored
            after a recorded forward, and no gradients are kept).
        example_input: a tensor, a tuple of positional inputs or a dict of keyword inputs.
            Needed when ``torch.fx`` cannot trace the model (data-dependent control flow,
            ``nn.TransformerEncoder``, ...).
        trace: ``"auto"`` (``torch.fx``, falling back to recording the forward on
            ``example_input``), ``"fx"`` or ``"record"``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: unknown ``trace``; or the model cannot be traced and no ``example_input``
            was given (the message says to pass one); or ``trace="record"`` without it.
        RuntimeError: the recorded forward raised (the message includes the cause).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if trace not in _TRACES:
        raise ValueError(f"trace: expected one of {', '.join(map(repr, _TRACES))}, got {trace!r}")
    if trace == "record" and example_input is None:
        raise ValueError("trace='record' needs example_input (a batch the model accepts)")
    if gb.is_leaf(model):
        nodes = [
            gb.Node(0, "input", "input"),
            gb.Node(1, "module", "", module=model, inputs=[0]),
            gb.Node(2, "output", "output", inputs=[1]),
        ]
        return _layers(analyze(model, nodes))
    if trace != "record":
        try:
            with state_guard(model):  # tracing runs Python code that may write buffers in place
                nodes = gb.from_fx(model)
        except Exception as exc:
            if trace == "fx" or example_input is None:
                raise ValueError(
                    f"inspect_model: torch.fx cannot trace {type(model).__name__} "
                    f"({type(exc).__name__}: {exc}); pass example_input= (a batch the model "
                    "accepts) so that one real forward can be recorded instead"
                ) from exc
            logger.debug(
                "torch.fx failed on %s (%s); recording a forward", type(model).__name__, exc
            )
        else:
            return _layers(analyze(model, nodes))
    return _layers(analyze(model, gb.from_recording(model, example_input)))
