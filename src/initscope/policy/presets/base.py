"""Facts about a model and the pieces the presets share (norms, embeddings, recurrent layers)."""

from __future__ import annotations

import math
import re
from typing import Any

from torch import nn

from initscope import theory
from initscope.policy._choice import Choice, choice, num
from initscope.graph import Layer, norm_kind

DEEP_STACK = 8
"""A plain stack (no normalization, no residual branch) this deep gets the critical point."""
GUIDE_CRITICAL = frozenset({"relu", "leaky_relu", "selu", "linear"})
"""Activations whose guide scheme is already critical (He, LeCun for SELU)."""
Q_LADDER = (1.0, 2.0, 0.5, 4.0, 0.25, 8.0, 0.125, 16.0, 0.0625)
"""Fixed points tried, nearest to q = 1 first, for a stable critical point (beyond 16 bounded
activations saturate: sigmoid's first stable one is at q* = 64, with sigma_w^2 = 122)."""

NOT_SHARED = object()
"""Sentinel of :meth:`_shared`: the parameter is not one every preset treats alike."""

_MATRIX_KINDS = frozenset({"linear", "conv", "conv_transpose", "bilinear", "attention"})
_MHA_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
_RNN = re.compile(r"(weight|bias)_(ih|hh|hr)(_l\d+(_reverse)?)?")


def _gate_count(module: nn.Module) -> int:
    if isinstance(module, (nn.LSTM, nn.LSTMCell)):
        return 4
    if isinstance(module, (nn.GRU, nn.GRUCell)):
        return 3
    return 1


def _weight_param(layer: Layer, name: str) -> bool:
    """The main weight matrix/kernel of a matrix layer."""
    if layer.kind == "attention":
        return name in _MHA_WEIGHTS
    return layer.kind in _MATRIX_KINDS and name == "weight"


def _bias_param(layer: Layer, name: str) -> bool:
    return layer.kind in _MATRIX_KINDS and name in ("bias", "in_proj_bias")


def _norm_name(layer: Layer) -> str:
    return norm_kind(layer.module) or layer.type


class Base:
    """Facts about the whole model and the pieces every preset shares."""

    def __init__(
        self, model: nn.Module, layers: list[Layer], preset: str, zero_init_residual: bool
    ) -> None:
        self.model = model
        self.layers = layers
        self.preset = preset
        self.zero_init_residual = zero_init_residual
        self.by_path = {layer.path: layer for layer in layers}
        self.L = max((layer.residual_depth for layer in layers), default=0)
        self.L_acc = len(
            {
                layer.residual_branch
                for layer in layers
                if layer.residual_branch is not None and not layer.post_norm
            }
        )
        self.N_post_attn = len(
            {
                layer.residual_branch
                for layer in layers
                if layer.ends_residual and layer.post_norm and layer.attention_role == "out"
            }
        )
        self.q_star: dict[str, float] = {}  # activation label -> fixed point of its stacks

    def untouched_note(self, layer: Layer, name: str) -> str:
        return (
            f"no rule of preset {self.preset!r} covers parameter {name!r} of "
            f"{layer.type} {layer.path or '(the model)'}; add a rule"
        )

    # ------------------------------------------------------------------ facts

    def deep_plain(self, layer: Layer) -> bool:
        act = layer.activation
        return (
            layer.kind in _MATRIX_KINDS
            and act is not None
            and act.name not in GUIDE_CRITICAL
            and layer.stack_depth >= DEEP_STACK
            and layer.norm is None
            and layer.residual_branch is None
            and not layer.is_output
        )

    def accumulating_end(self, layer: Layer) -> bool:
        """Ends a residual branch whose add is not renormalized (variance accumulates)."""
        return layer.ends_residual and not layer.post_norm and self.L_acc > 0

    def norm_takes_end(self, layer: Layer) -> bool:
        """The branch end is followed by its own normalization, which ends the branch too."""
        norm = self.by_path.get(layer.norm_path) if layer.norm_path is not None else None
        return norm is not None and norm.ends_residual

    def _zero_residual(self, layer: Layer, name: str) -> Choice | None:
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
        if self.norm_takes_end(layer):
            return None
        if _weight_param(layer, name) or _bias_param(layer, name):
            return choice(layer, name, "zeros", why=why)
        return None

    # ------------------------------------------------------------------ shared pieces

    def _zero_bias(self, layer: Layer, name: str) -> Choice:
        return choice(layer, name, "zeros", why="bias 0: the weights alone set the variance")

    def _norm(self, layer: Layer, name: str, scaled_ends: bool) -> Choice | None:
        if name == "bias":
            return choice(layer, name, "zeros", why=f"{_norm_name(layer)} bias 0")
        if name != "weight":
            return None
        if scaled_ends and layer.ends_residual and not layer.post_norm and self.L_acc > 0:
            g = 1 / math.sqrt(self.L_acc)
            return choice(
                layer,
                name,
                "constant",
                val=g,
                why=f"last normalization of residual branch {layer.residual_branch}: "
                f"weight 1/sqrt(L) = 1/sqrt({self.L_acc}), so the L branches "
                "sum to unit variance",
            )
        return choice(layer, name, "ones", why=f"{_norm_name(layer)}: identity affine, weight 1")

    def _embedding(self, layer: Layer, name: str, std: float | None = None) -> Any:
        if name != "weight":
            return None
        d = layer.module.weight.shape[1]
        tied = [p for p in layer.tied_to if p in self.by_path and self.by_path[p].kind == "linear"]
        if std is not None:
            first = choice(layer, name, "normal", std=std, why=f"embedding N(0, {std:g}^2)")
        elif tied:
            first = choice(
                layer,
                name,
                "normal",
                std=1 / math.sqrt(d),
                why=f"embedding tied to the output layer {tied[0]}: std 1/sqrt(d) = "
                f"1/sqrt({d}), so its logits have the variance of its input",
            )
        else:
            first = choice(
                layer,
                name,
                "normal",
                std=1.0,
                why="embedding N(0, 1): a looked-up row is the layer's output, unit "
                "variance like a standardized input",
            )
        pad = getattr(layer.module, "padding_idx", None)
        if pad is None:
            return first
        return (
            first,
            choice(
                layer,
                name,
                "zeros",
                rows=(pad, pad + 1),
                why=f"padding_idx {pad}: zero row, as torch",
            ),
        )

    def _recurrent(self, layer: Layer, name: str, ih: str, hh: str, forget_bias: bool) -> Any:
        m = _RNN.fullmatch(name)
        if m is None:
            return None
        kind, which = m.group(1), m.group(2)
        gates, hidden = _gate_count(layer.module), layer.module.hidden_size
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
        return self._matrix(layer, name, scheme, "recurrent weights, per-gate fans")

    def _matrix(self, layer: Layer, name: str, scheme: str, what: str) -> Choice:
        """A literal preset's scheme on one weight matrix."""
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
                + (f" = exact forward gain of {act.label()}" if g != 1 else "")
                + f"; {what}",
            )
        source = {
            "xavier_normal": "Xavier normal (Glorot & Bengio 2010)",
            "lecun_normal": "LeCun normal (LeCun et al. 1998)",
        }[scheme]
        return choice(layer, name, scheme, why=f"{source}; {what}")

    def _follows(self, layer: Layer) -> str:
        act = layer.activation
        if act is None:
            return f"no activation follows {layer.path}"
        return f"{act.label()} follows ({layer.path} -> {layer.activation_at})"

    def post_norm_attention(self, layer: Layer) -> bool:
        """An attention projection on a post-norm residual branch."""
        return (
            layer.post_norm
            and layer.residual_branch is not None
            and self.N_post_attn > 0
            and layer.attention_role in ("qkv", "v", "out")
        )

    def _prelu(self, layer: Layer, name: str) -> Choice | None:
        if name != "weight":
            return None
        value = float(getattr(layer.module, "init", 0.25))
        return choice(layer, name, "constant", val=value, why=f"PReLU slope {value:g}, as torch")

    # ------------------------------------------------------------------ literal presets

    def _shared(
        self, layer: Layer, name: str, *, scaled_ends: bool, recurrent: tuple[str, str, bool]
    ) -> Any:
        """The choices every preset makes alike: norms, embeddings, recurrent weights (input
        scheme, recurrent scheme, forget-gate bias 1), PReLU slopes, attention bias_k/bias_v.
        ``NOT_SHARED`` when the parameter is none of these."""
        kind = layer.kind
        if kind == "norm":
            return self._norm(layer, name, scaled_ends=scaled_ends)
        if kind == "embedding":
            return self._embedding(layer, name)
        if kind == "recurrent":
            ih, hh, forget_bias = recurrent
            return self._recurrent(layer, name, ih, hh, forget_bias=forget_bias)
        if kind == "activation":
            return self._prelu(layer, name)
        if kind == "attention" and name in ("bias_k", "bias_v"):
            return choice(
                layer,
                name,
                "xavier_normal",
                fans=None,
                why="attention bias_k/bias_v: Xavier normal, as torch",
            )
        return NOT_SHARED

    def _literal(self, layer: Layer, name: str, scheme: str) -> Any:
        shared = self._shared(layer, name, scaled_ends=False, recurrent=(scheme, scheme, False))
        if shared is not NOT_SHARED:
            return shared
        if _bias_param(layer, name):
            return self._zero_bias(layer, name)
        if _weight_param(layer, name):
            return self._matrix(layer, name, scheme, self._follows(layer))
        return None
