"""What the presets know about a whole model (:class:`ModelFacts`) and the choices they share
(norms, embeddings, recurrent layers, PReLU slopes, literal schemes on weight matrices).

Every preset is a plain function ``(facts, layer, name) -> Choice | tuple[Choice, ...] | None``
(``None``: not covered, the parameter stays as it is).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from initscope import theory
from initscope.activations import Activation
from initscope.graph import MATRIX_KINDS, Layer, norm_kind
from initscope.policy._choice import Choice, choice, layout_fans, num

DEEP_STACK = 8
"""A plain stack (no normalization, no residual branch) this deep gets the critical point."""
GUIDE_CRITICAL = frozenset({"relu", "leaky_relu", "selu", "linear"})
"""Activations whose guide scheme is already critical (He, LeCun for SELU)."""
Q_LADDER = (1.0, 2.0, 0.5, 4.0, 0.25, 8.0, 0.125, 16.0, 0.0625)
"""Fixed points tried, nearest to q = 1 first, for a stable critical point (beyond 16 bounded
activations saturate: sigmoid's first stable one is at q* = 64, with sigma_w^2 = 122)."""

_MHA_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
_RNN = re.compile(r"(weight|bias)_(ih|hh|hr)(_l\d+(_reverse)?)?")


def critical(act: Activation) -> tuple[theory.CriticalPoint | None, float]:
    """The stable critical point with ``q*`` nearest 1 on :data:`Q_LADDER`, and the slope of the
    variance map at ``q* = 1`` (``None`` when no stable one exists)."""
    return _critical(act.label(), act)


@functools.lru_cache(maxsize=256)
def _critical(label: str, act: Activation) -> tuple[theory.CriticalPoint | None, float]:
    at_one = theory.critical_point(act, 1.0)
    for q in Q_LADDER:
        cp = at_one if q == 1.0 else theory.critical_point(act, q)
        if cp.exists and cp.stable:
            return cp, at_one.slope
    return None, at_one.slope


@dataclass(frozen=True)
class ModelFacts:
    """What the presets need to know about the whole model.

    Attributes:
        model: the model.
        layers: its :class:`~initscope.graph.Layer` records, from
            :func:`~initscope.graph.inspect_model`.
        by_path: the layers by module path.
        L: residual branches in the model (``Layer.residual_depth``).
        L_acc: residual branches whose ``add`` is not renormalized (the variance accumulates).
        N_post_attn: post-norm attention branches (DeepNet's ``N``).
    """

    model: nn.Module
    layers: tuple[Layer, ...]
    by_path: dict[str, Layer] = field(repr=False)
    L: int
    L_acc: int
    N_post_attn: int

    @functools.cached_property
    def q_star(self) -> dict[str, float]:
        """Activation label -> the fixed point ``q*`` of the deep plain stacks it drives."""
        out: dict[str, float] = {}
        for layer in self.layers:
            act = layer.activation
            if act is not None and deep_plain(layer):
                cp, _ = critical(act)
                if cp is not None:
                    out[act.label()] = cp.q_star
        return out


def describe(model: nn.Module, layers: Sequence[Layer]) -> ModelFacts:
    """The :class:`ModelFacts` of ``model``."""
    layers = tuple(layers)
    return ModelFacts(
        model=model,
        layers=layers,
        by_path={layer.path: layer for layer in layers},
        L=max((layer.residual_depth for layer in layers), default=0),
        L_acc=len(
            {
                layer.residual_branch
                for layer in layers
                if layer.residual_branch is not None and not layer.post_norm
            }
        ),
        N_post_attn=len(
            {
                layer.residual_branch
                for layer in layers
                if layer.ends_residual and layer.post_norm and layer.attention_role == "out"
            }
        ),
    )


PresetFn = Callable[[ModelFacts, Layer, str], Any]
"""A preset: ``(facts, layer, param_name) -> Choice | tuple[Choice, ...] | None``."""


def untouched_note(preset: str, layer: Layer, name: str) -> str:
    return (
        f"no rule of preset {preset!r} covers parameter {name!r} of "
        f"{layer.type} {layer.path or '(the model)'}; add a rule"
    )


# ----------------------------------------------------------------------------- facts


def weight_param(layer: Layer, name: str) -> bool:
    """The main weight matrix/kernel of a matrix layer, or any parameter a matmul-like op
    consumes as its weight (``layer.param_roles``)."""
    if layer.kind == "attention":
        return name in _MHA_WEIGHTS
    if layer.param_roles.get(name) == "weight":
        return True
    return layer.kind in MATRIX_KINDS and name == "weight"


def bias_param(layer: Layer, name: str) -> bool:
    """A bias of a matrix layer, or a parameter a matmul-like op adds as its bias."""
    if layer.param_roles.get(name) == "bias":
        return True
    return layer.kind in MATRIX_KINDS and name in ("bias", "in_proj_bias")


def weight_of(layer: Layer) -> torch.Tensor:
    """The module's ``weight`` for the kinds that hold one (embedding, bilinear, conv, linear);
    torch types a module attribute as ``Tensor | Module``."""
    return cast(torch.Tensor, layer.module.weight)


def hidden_size(layer: Layer) -> int:
    """The hidden size of a ``recurrent`` layer (by type: ``nn.RNNBase``, ``nn.RNNCellBase``)."""
    return cast(int, layer.module.hidden_size)


def deep_plain(layer: Layer) -> bool:
    """A layer in a deep plain stack of a non-critical activation (it gets the critical point)."""
    act = layer.activation
    return (
        layer.kind in MATRIX_KINDS
        and act is not None
        and act.name not in GUIDE_CRITICAL
        and layer.stack_depth >= DEEP_STACK
        and layer.norm is None
        and layer.residual_branch is None
        and not layer.is_output
    )


def accumulating_end(facts: ModelFacts, layer: Layer) -> bool:
    """Ends a residual branch whose add is not renormalized (variance accumulates)."""
    return layer.ends_residual and not layer.post_norm and facts.L_acc > 0


def norm_takes_end(facts: ModelFacts, layer: Layer) -> bool:
    """The branch end is followed by its own normalization, which ends the branch too."""
    path = layer.norm_path
    norm = facts.by_path.get(path) if path is not None else None
    return norm is not None and norm.ends_residual


def post_norm_attention(facts: ModelFacts, layer: Layer) -> bool:
    """An attention projection on a post-norm residual branch."""
    return (
        layer.post_norm
        and layer.residual_branch is not None
        and facts.N_post_attn > 0
        and layer.attention_role in ("qkv", "v", "out")
    )


def follows(layer: Layer) -> str:
    act = layer.activation
    if act is None:
        return f"no activation follows {layer.path}"
    return f"{act.label()} follows ({layer.path} -> {layer.activation_at})"


def parent(facts: ModelFacts, layer: Layer) -> nn.Module | None:
    path = layer.path.rpartition(".")[0]
    try:
        return facts.model.get_submodule(path)
    except AttributeError:
        return None


# ----------------------------------------------------------------------------- shared pieces


def zero_residual(facts: ModelFacts, layer: Layer, name: str) -> Choice | None:
    """``zero_init_residual``: the end of every residual branch starts at 0."""
    if not layer.ends_residual:
        return None
    why = (
        f"zero_init_residual: {layer.path} ends residual branch {layer.residual_branch}, "
        "so the block starts as the identity (Goyal et al. 2017; Zhang et al. 2019)"
    )
    if layer.kind == "norm":
        if name == "weight":
            return choice(
                layer,
                name,
                "zeros",
                why=why + "; its last norm's weight is 0, as torchvision's zero_init_residual",
            )
        return None
    if norm_takes_end(facts, layer):
        return None
    if weight_param(layer, name) or bias_param(layer, name):
        return choice(layer, name, "zeros", why=why)
    return None


def zero_bias(layer: Layer, name: str) -> Choice:
    return choice(layer, name, "zeros", why="bias 0: the weights alone set the variance")


def _norm_name(layer: Layer) -> str:
    return norm_kind(layer.module) or layer.type


def norm(facts: ModelFacts, layer: Layer, name: str, scaled_ends: bool) -> Choice | None:
    """Norm affine: weight 1 (``1/sqrt(L)`` at an accumulating branch end when
    ``scaled_ends``), bias 0."""
    role = layer.param_roles.get(name)
    if name == "bias" or role == "norm_bias":
        return choice(layer, name, "zeros", why=f"{_norm_name(layer)} bias 0")
    if name != "weight" and role != "norm_weight":
        return None
    if scaled_ends and layer.ends_residual and not layer.post_norm and facts.L_acc > 0:
        g = 1 / math.sqrt(facts.L_acc)
        return choice(
            layer,
            name,
            "constant",
            val=g,
            why=f"last normalization of residual branch {layer.residual_branch}: "
            f"weight 1/sqrt(L) = 1/sqrt({facts.L_acc}), so the L branches "
            "sum to unit variance",
        )
    return choice(layer, name, "ones", why=f"{_norm_name(layer)}: identity affine, weight 1")


def embedding(facts: ModelFacts, layer: Layer, name: str, std: float | None = None) -> Any:
    """Embedding rows: ``N(0, std^2)`` when given, ``1/sqrt(d)`` tied to a head, else ``N(0, 1)``;
    the padding row 0."""
    if name != "weight":
        return None
    if std is not None:
        first = choice(layer, name, "normal", std=std, why=f"embedding N(0, {std:g}^2)")
    else:
        own, why = embedding_std(facts, layer)
        for other in layer.summed_with:
            partner = facts.by_path.get(other)
            if partner is not None and tied_head(facts, partner) is not None:
                own = embedding_std(facts, partner)[0]
                why = (
                    f"embedding summed with {other} (tied to the output layer): the same std "
                    f"{num(own)}, so the summed embeddings start at comparable scale"
                )
                break
        else:
            if layer.summed_with:
                which = "gets" if len(layer.summed_with) == 1 else "get"
                what = "this std" if tied_head(facts, layer) is not None else "the same rule"
                why += (
                    f"; summed with {', '.join(layer.summed_with)}, which {which} {what}, "
                    "so the summed embeddings start at comparable scale"
                )
        if layer.norm is not None:
            why += f"; a {layer.norm} follows{' the sum' if layer.summed_with else ''}"
        first = choice(layer, name, "normal", std=own, why=why)
    pad = getattr(layer.module, "padding_idx", None)
    if pad is None:
        return first
    return (
        first,
        choice(
            layer, name, "zeros", rows=(pad, pad + 1), why=f"padding_idx {pad}: zero row, as torch"
        ),
    )


def tied_head(facts: ModelFacts, layer: Layer) -> Layer | None:
    """The linear layer (an output head) that shares ``layer``'s weight, if any."""
    for path in layer.tied_to:
        other = facts.by_path.get(path)
        if other is not None and other.kind == "linear":
            return other
    return None


def embedding_std(facts: ModelFacts, layer: Layer) -> tuple[float, str]:
    """The std of an embedding's rows under ``auto``, with the reason.

    Tied to an output head whose input is multiplied by ``s`` (T5: ``s = d^-0.5``): the head's
    input is normalized (unit variance per element), so ``Var(logit) = d s^2 std^2``, and
    ``std = 1 / (|s| sqrt(d))`` starts the logits at unit variance. Otherwise, when the rows are
    multiplied by ``c`` (``sqrt(d)`` in several language models), ``std = 1 / |c|``; else 1: a
    looked-up row is the layer's output, unit variance like a standardized input."""
    d = weight_of(layer).shape[1]
    head = tied_head(facts, layer)
    if head is not None:
        s = abs(head.input_scale) or 1.0
        std = 1 / (s * math.sqrt(d))
        scaled = "" if s == 1.0 else f" and its input is multiplied by {num(s)}"
        formula = "1/sqrt(d)" if s == 1.0 else "1/(s sqrt(d))"
        return std, (
            f"embedding tied to the output layer {head.path}{scaled}: std {formula} = "
            f"{num(std)} (d = {d}), so the logits start at unit variance"
        )
    c = abs(layer.output_scale)
    if c not in (0.0, 1.0):
        return 1 / c, (
            f"embedding rows multiplied by {num(c)}: std 1/{num(c)}, so the scaled rows have "
            "unit variance like a standardized input"
        )
    return 1.0, (
        "embedding N(0, 1): a looked-up row is the layer's output, unit "
        "variance like a standardized input"
    )


def layer_scale(layer: Layer, name: str) -> Choice:
    """A per-channel residual scale (LayerScale, Touvron et al. 2021): the value the model was
    built with (the library's published init, e.g. 1e-6) when it is a constant, else 1."""
    t = getattr(layer.module, name).detach()
    if t.numel() and t.device.type != "meta":
        v = float(t.flatten()[0])
        if math.isfinite(v) and bool((t == t.flatten()[0]).all()):
            return choice(
                layer,
                name,
                "constant",
                val=v,
                why=f"per-channel residual scale (LayerScale, Touvron et al. 2021): the value "
                f"{v:g} the model was built with, its published init",
            )
    return choice(layer, name, "ones", why="per-channel scale: 1 (identity)")


def token_param(
    facts: ModelFacts, layer: Layer, name: str, preset: PresetFn | None = None
) -> Choice:
    """A parameter concatenated to the tokens (a class token) or added to them (a position
    embedding). With ``preset`` (``auto``, ``guide``): the std of what it joins, so both start
    at comparable scale (a weight layer fed by the standardized input: ``sqrt(fan_in) x
    std(W)``; an embedding: its std); without: ``N(0, 0.02^2)`` as ViT (Dosovitskiy et al.
    2021) and GPT-2."""
    role = "class token" if layer.param_roles.get(name) == "token" else "position embedding"
    if preset is None:
        return choice(layer, name, "normal", std=0.02, why=f"{role}: N(0, 0.02^2), as ViT")
    std, why = 1.0, f"{role}: N(0, 1), unit variance like a standardized input"
    partner = facts.by_path.get(layer.param_partners.get(name, ""))
    if partner is not None:
        picked = preset(facts, partner, "weight")
        first = picked[0] if isinstance(picked, tuple) else picked
        if isinstance(first, Choice):
            if partner.kind == "embedding":
                std = first.std
            else:
                f = first.fans or layout_fans(partner, "weight")
                std = math.sqrt(f.fan_in) * first.std
            why = (
                f"{role} joining the output of {partner.path}: std {num(std)}, the std of "
                "that output for a standardized input, so both start at comparable scale"
            )
    return choice(layer, name, "normal", std=std, why=why)


def _gate_count(module: nn.Module) -> int:
    if isinstance(module, (nn.LSTM, nn.LSTMCell)):
        return 4
    if isinstance(module, (nn.GRU, nn.GRUCell)):
        return 3
    return 1


def recurrent(layer: Layer, name: str, ih: str, hh: str, forget_bias: bool) -> Any:
    """Recurrent weights (input scheme ``ih``, recurrent scheme ``hh``; orthogonal per gate),
    biases 0 (LSTM forget gate 1 when ``forget_bias``)."""
    m = _RNN.fullmatch(name)
    if m is None:
        return None
    kind, which = m.group(1), m.group(2)
    gates, hidden = _gate_count(layer.module), hidden_size(layer)
    if kind == "bias":
        zero = choice(layer, name, "zeros", why="recurrent bias 0")
        if forget_bias and gates == 4 and which == "ih":
            return (
                zero,
                choice(
                    layer,
                    name,
                    "ones",
                    rows=(hidden, 2 * hidden),
                    why="LSTM forget-gate bias 1 (gate order i, f, g, o): the "
                    "cell remembers at the start (Jozefowicz et al. 2015)",
                ),
            )
        return zero
    if which == "hh" and hh == "orthogonal":
        return tuple(
            choice(
                layer,
                name,
                "orthogonal",
                rows=(g * hidden, (g + 1) * hidden),
                why="recurrent weights: one orthogonal block per gate (Saxe et al. "
                "2014), so the recurrence neither explodes nor vanishes over time",
            )
            for g in range(gates)
        )
    scheme = ih if which != "hh" else hh
    return matrix(layer, name, scheme, "recurrent weights, per-gate fans")


_SOURCES = {
    "xavier_normal": "Xavier normal (Glorot & Bengio 2010)",
    "lecun_normal": "LeCun normal (LeCun et al. 1998)",
}


def matrix(layer: Layer, name: str, scheme: str, what: str) -> Choice:
    """A literal preset's scheme on one weight matrix: He (the slope of a following leaky ReLU
    counts), orthogonal with the exact forward gain of the following activation, Xavier, LeCun."""
    act = layer.activation
    if scheme == "kaiming_normal":
        if act is not None and act.name == "leaky_relu":
            return choice(
                layer,
                name,
                scheme,
                nonlinearity="leaky_relu",
                a=act.param,
                why=f"He normal (He et al. 2015) with the slope of {act.label()}; {what}",
            )
        return choice(
            layer, name, scheme, nonlinearity="relu", why=f"He normal (He et al. 2015); {what}"
        )
    if scheme == "orthogonal":
        g = 1.0 if act is None or layer.kind == "recurrent" else theory.gain(act, "forward")
        return choice(
            layer,
            name,
            scheme,
            gain=g,
            why=f"orthogonal (Saxe et al. 2014), gain {num(g)}"
            + (f" = exact forward gain of {act.label()}" if act is not None and g != 1 else "")
            + f"; {what}",
        )
    return choice(layer, name, scheme, why=f"{_SOURCES[scheme]}; {what}")


def prelu(layer: Layer, name: str) -> Choice | None:
    if name != "weight":
        return None
    value = float(getattr(layer.module, "init", 0.25))
    return choice(layer, name, "constant", val=value, why=f"PReLU slope {value:g}, as torch")


NOT_SHARED = object()
"""Sentinel of :func:`shared`: the parameter is not one every preset treats alike."""


def shared(
    facts: ModelFacts,
    layer: Layer,
    name: str,
    *,
    scaled_ends: bool,
    recurrent_schemes: tuple[str, str, bool],
    token_preset: PresetFn | None = None,
) -> Any:
    """The choices every preset makes alike: norms, embeddings, recurrent weights (input
    scheme, recurrent scheme, forget-gate bias 1), PReLU slopes, attention bias_k/bias_v,
    per-channel scales, class tokens and position parameters (``token_preset``: the preset whose
    choice for the layer they join sets their std, see :func:`token_param`).
    :data:`NOT_SHARED` when the parameter is none of these."""
    kind = layer.kind
    role = layer.param_roles.get(name)
    if role == "scale":
        return layer_scale(layer, name)
    if role in ("token", "position"):
        return token_param(facts, layer, name, token_preset)
    if kind == "norm":
        return norm(facts, layer, name, scaled_ends=scaled_ends)
    if kind == "embedding":
        return embedding(facts, layer, name)
    if kind == "recurrent":
        ih, hh, forget_bias = recurrent_schemes
        return recurrent(layer, name, ih, hh, forget_bias=forget_bias)
    if kind == "activation":
        return prelu(layer, name)
    if kind == "attention" and name in ("bias_k", "bias_v"):
        return choice(
            layer,
            name,
            "xavier_normal",
            fans=None,
            why="attention bias_k/bias_v: Xavier normal, as torch",
        )
    return NOT_SHARED


def literal(facts: ModelFacts, layer: Layer, name: str, scheme: str) -> Any:
    """One scheme on every weight matrix, biases 0, the shared choices elsewhere."""
    picked = shared(
        facts, layer, name, scaled_ends=False, recurrent_schemes=(scheme, scheme, False)
    )
    if picked is not NOT_SHARED:
        return picked
    if bias_param(layer, name):
        return zero_bias(layer, name)
    if weight_param(layer, name):
        return matrix(layer, name, scheme, follows(layer))
    return None
