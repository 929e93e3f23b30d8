"""Presets ``"auto"`` (what the theory says keeps the signal) and ``"guide"`` (the classic
selection guide, literally).

A weight matrix's variance is decided in two steps, each an explicit table:

1. :func:`variance` -- the rule, from the activation feeding the layer (``auto``) or following it
   (``guide``)::

       preset  activation feeding / following    Var(W)                      named
       auto    (none follows the layer)          g^2 / sqrt(fan_in fan_out)  geometric
       auto    model input or SELU feeds it      1 / fan_in, truncated       LeCun
       auto    ReLU or leaky ReLU feeds it       g^2 / fan_in                He
       auto    any other activation feeds it     g^2 / fan_in                (variance scaling)
       guide   (none follows the layer)          2 / (fan_in + fan_out)      Xavier
       guide   activation f follows              theory.recommend(f)         its scheme

   (``g``: the exact forward gain of the activation feeding the layer.)
2. :func:`named` -- a residual branch end divides the variance by ``L``; then the scheme that
   draws it is named when one is exactly that variance (``kaiming_normal``, ``lecun_normal``,
   ``xavier_normal``), else ``variance_scaling``.

Deep plain stacks of non-critical activations get the critical point instead, post-norm
attention DeepNet's ``beta``, and the output layer Xavier with the exact gain.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Literal

from initscope import theory
from initscope.activations import Activation
from initscope.graph import MATRIX_KINDS, Layer
from initscope.policy._choice import Choice, choice, layout_fans, num
from initscope.policy.presets.base import (
    DEEP_STACK,
    GUIDE_CRITICAL,
    NOT_SHARED,
    ModelFacts,
    accumulating_end,
    bias_param,
    critical,
    deep_plain,
    embedding_std,
    follows,
    norm_takes_end,
    post_norm_attention,
    shared,
    tied_head,
    weight_param,
    zero_bias,
)

__all__ = ["auto", "guide"]

Form = Literal["geometric", "xavier", "he", "lecun", "variance_scaling"]


@dataclasses.dataclass(frozen=True)
class Var:
    """A weight variance before residual scaling: ``Var(W) = scale / fan_<mode>`` drawn from
    ``dist``, in the named ``form``.

    ``form``: ``"geometric"`` (``scale / sqrt(fan_in fan_out)``), ``"xavier"`` (``scale x 2 /
    (fan_in + fan_out)``), ``"he"`` (``scale / fan_in`` for ``he_for``, a ReLU-family activation
    or the guide's activation), ``"lecun"`` (``scale / fan_in``, truncated normal) or
    ``"variance_scaling"`` (``scale / fan_<mode>``).
    """

    form: Form
    scale: float
    why: str
    mode: str = "fan_in"
    dist: str = "normal"
    he_for: Activation | None = None


@functools.lru_cache(maxsize=256)
def _profile_text(label: str, act: Activation, w: float, b: float, depth: int, q0: float) -> str:
    try:
        p = theory.depth_profile(act, w, b, depth, q0)
    except ValueError:
        return "leaves the float range"
    return f"forward {p.forward_log2:+.2f}, backward {p.backward_log2:+.2f} bits"


def _profile(act: Activation, w: float, b: float, depth: int, q0: float) -> str:
    return _profile_text(act.label(), act, w, b, depth, q0)


def auto(facts: ModelFacts, layer: Layer, name: str) -> Any:
    """Preset ``"auto"``: the exact theory (see the module docstring)."""
    return _guided(facts, layer, name, exact=True)


def guide(facts: ModelFacts, layer: Layer, name: str) -> Any:
    """Preset ``"guide"``: the selection guide (:func:`initscope.theory.recommend`) literally."""
    return _guided(facts, layer, name, exact=False)


def _guided(facts: ModelFacts, layer: Layer, name: str, exact: bool) -> Any:
    picked = shared(
        facts,
        layer,
        name,
        scaled_ends=True,
        recurrent_schemes=("xavier_normal", "orthogonal", True),
        token_preset=auto if exact else guide,
    )
    if picked is not NOT_SHARED:
        return picked
    if bias_param(layer, name):
        act = layer.activation
        if exact and act is not None and deep_plain(layer):
            cp, _ = critical(act)
            if cp is not None:
                return choice(
                    layer,
                    name,
                    "normal",
                    std=math.sqrt(cp.sigma_b2),
                    why=f"critical point: biases N(0, sigma_b^2 = "
                    f"{num(cp.sigma_b2)}); the bias variance is part of the "
                    f"fixed point q* = {cp.q_star:g} (q* = sigma_w^2 E[f(z)^2] "
                    "+ sigma_b^2), so zero biases would move the signal off that fixed point",
                )
        return zero_bias(layer, name)
    if not weight_param(layer, name):
        return None
    if layer.is_output:
        return _output(facts, layer, name, exact)
    act = layer.activation
    if exact and act is not None and deep_plain(layer):
        crit = _critical_weight(layer, act, name)
        if crit is not None:
            return crit
        at_one = theory.critical_point(layer.activation, 1.0)
        v = variance(facts, layer, exact)
        return named(
            facts,
            layer,
            name,
            dataclasses.replace(
                v, why=v.why + f"; no stable critical point with q* in [1/16, 16] ({at_one.note})"
            ),
        )
    if exact and post_norm_attention(facts, layer):
        return _deepnet(facts, layer, name)
    return named(facts, layer, name, variance(facts, layer, exact))


def variance(facts: ModelFacts, layer: Layer, exact: bool) -> Var:
    """Step 1 of the module docstring's table: the weight variance before residual scaling."""
    return _exact_var(facts, layer) if exact else _guide_var(layer)


_GUIDE_FORM: dict[str, Form] = {
    "kaiming_normal": "he",
    "xavier_normal": "xavier",
    "lecun_normal": "lecun",
}
_GUIDE_NAME = {
    "kaiming_normal": "He normal",
    "xavier_normal": "Xavier normal",
    "lecun_normal": "LeCun normal",
}


def _guide_var(layer: Layer) -> Var:
    act = layer.activation
    if act is None:
        return Var(
            "xavier", 1.0, f"Xavier normal (Glorot & Bengio 2010): {follows(layer)}", "fan_avg"
        )
    rec = theory.recommend(act)
    dist = "truncated_normal" if rec.scheme == "lecun_normal" else "normal"
    return Var(
        _GUIDE_FORM[rec.scheme],
        rec.scale,
        f"{_GUIDE_NAME[rec.scheme]} ({rec.source}): {follows(layer)}",
        rec.mode,
        dist,
        he_for=act,
    )


def _exact_var(facts: ModelFacts, layer: Layer) -> Var:
    """The forward condition with the exact gain of the activation feeding the layer:
    ``Var(W) = g^2 / fan_in`` (``g^2 / sqrt(fan_in fan_out)`` when no activation follows)."""
    src = layer.input_activation
    after = follows(layer)
    if src is None:
        fed = "its input is no activation's output (gain 1)"
        g2 = 1.0
    else:
        q = facts.q_star.get(src.label(), 1.0)
        g2 = theory.gain(src, "forward", q=q) ** 2
        fed = (
            f"{src.label()} feeds it ({layer.input_activation_at} -> {layer.path}), exact "
            f"forward gain {num(math.sqrt(g2))}" + ("" if q == 1.0 else f" at q = {q:g}")
        )
    if layer.attention_role in ("qkv", "q", "k", "v"):
        after += "; attention projection, fans per q/k/v block"
    if layer.activation is None:
        return Var(
            "geometric",
            g2,
            f"{fed}; {after}: Var = g^2 / sqrt(fan_in fan_out), the geometric mean "
            "of the forward and backward conditions, so both passes are off by the "
            "same number of bits in opposite directions (Xavier for a square layer)",
        )
    if src is None or src.name == "selu":
        source = "Klambauer et al. 2017" if src is not None else "LeCun et al. 1998"
        return Var(
            "lecun",
            1.0,
            f"LeCun normal ({source}), Var = 1 / fan_in: {fed}; {after}",
            dist="truncated_normal",
        )
    if src.name in ("relu", "leaky_relu"):
        return Var("he", g2, f"He normal (He et al. 2015): {fed}; {after}", he_for=src)
    why = f"Var = g^2 / fan_in (the forward condition): {fed}; {after}"
    act = layer.activation
    if act.name not in GUIDE_CRITICAL and layer.kind in MATRIX_KINDS and not deep_plain(layer):
        if layer.norm is not None:
            reason = "a normalization follows"
        elif layer.residual_branch is not None:
            reason = "it lies on a residual branch"
        else:
            reason = f"the plain stack is {layer.stack_depth} < {DEEP_STACK} layers deep"
        why += f"; no critical point needed: {reason}"
    return Var("variance_scaling", g2, why)


def stream_start(facts: ModelFacts) -> tuple[float, str] | None:
    """The variance of a residual stream that starts from embeddings tied to an output head,
    when it is not 1: the tied embedding's ``auto`` std (``1/sqrt(d)`` for GPT-2, so the logits
    start at unit variance) squared, times the embeddings summed into the stream (it and its
    partners, which get the same std). A pre-norm stream's norms divide the gradient by the
    stream's std: branches that add unit variance to a stream that starts at ``2/d`` make the
    first blocks' gradients up to ``sqrt(1 + d / 2)``-fold those of the last (measured on GPT-2 at
    d = 64, 2 blocks: +1.9 bits toward the input against +0.35 with HF's own init)."""
    for layer in facts.layers:
        if layer.kind == "embedding" and tied_head(facts, layer) is not None:
            std = embedding_std(facts, layer)[0]
            n = 1 + len(layer.summed_with)
            if not math.isclose(std * std * n, 1.0):
                what = f"{layer.path}" + (f" + {', '.join(layer.summed_with)}" if n > 1 else "")
                return std * std * n, f"{what} at std {num(std)}"
    return None


def named(facts: ModelFacts, layer: Layer, name: str, v: Var) -> Choice:
    """Step 2 of the module docstring's table: residual scaling, then the scheme that draws it.

    ============== ================================================= =====================
    form           condition on the scaled variance ``s``            scheme
    ============== ================================================= =====================
    geometric      square layer                                      xavier_normal(sqrt(s))
    geometric      otherwise                                         variance_scaling
    xavier         (always)                                          xavier_normal(sqrt(s))
    he             unscaled, ReLU (or the guide's He at s = 2)        kaiming_normal(relu)
    he             unscaled, leaky ReLU(a)                           kaiming_normal(a)
    lecun          s = 1                                             lecun_normal
    (otherwise)                                                      variance_scaling
    ============== ================================================= =====================
    """
    scale, why = v.scale, v.why
    if accumulating_end(facts, layer) and not norm_takes_end(facts, layer):
        scale /= facts.L_acc
        why += (
            f"; ends residual branch {layer.residual_branch} of L = {facts.L_acc}: "
            f"variance / L (std x 1/sqrt({facts.L_acc})), so the branches sum to the "
            "variance of one"
        )
        start = stream_start(facts)
        if start is not None:
            scale *= start[0]
            why += (
                f" times {num(start[0])}, the variance the stream starts at ({start[1]}): "
                "the branches then add as much as the embeddings hold, and the norms that "
                "read the stream see its scale change by at most sqrt(2)"
            )
    elif layer.ends_residual and layer.post_norm:
        why += "; ends a post-norm residual branch: the add is renormalized, no 1/sqrt(L)"

    if v.form == "geometric":
        f = layout_fans(layer, name)
        if f.fan_in == f.fan_out:
            return choice(layer, name, "xavier_normal", gain=math.sqrt(scale), why=why)
        return choice(
            layer,
            name,
            "variance_scaling",
            scale=scale * math.sqrt(f.fan_in / f.fan_out),
            mode="fan_in",
            distribution="normal",
            why=why,
            formula=f"Var = {num(scale)} / sqrt(fan_in fan_out) = {num(scale)}/"
            f"sqrt({f.fan_in} * {f.fan_out})",
        )
    if v.form == "xavier" and v.mode == "fan_avg":
        return choice(layer, name, "xavier_normal", gain=math.sqrt(scale), why=why)
    unscaled = scale == v.scale
    he = v.he_for
    if v.form == "he" and unscaled and he is not None and v.mode == "fan_in":
        if he.name == "relu" or (he.name != "leaky_relu" and scale == 2.0):
            return choice(layer, name, "kaiming_normal", nonlinearity="relu", why=why)
        if he.name == "leaky_relu":
            return choice(
                layer, name, "kaiming_normal", nonlinearity="leaky_relu", a=he.param, why=why
            )
    if v.form == "lecun" and scale == 1.0 and v.mode == "fan_in":
        return choice(layer, name, "lecun_normal", why=why)
    return choice(
        layer, name, "variance_scaling", scale=scale, mode=v.mode, distribution=v.dist, why=why
    )


def _deepnet(facts: ModelFacts, layer: Layer, name: str) -> Any:
    """Post-norm attention: value and output projections x beta = (8N)^(-1/4)."""
    n = facts.N_post_attn
    beta = (8 * n) ** -0.25
    v = variance(facts, layer, exact=True)
    g = math.sqrt(v.scale)
    note = (
        f"; post-norm attention: value and output projections x beta = (8N)^(-1/4) = "
        f"(8*{n})^(-1/4) = {num(beta)} (DeepNet, Wang et al. 2022), which keeps the "
        "token-mixing branch small so the tokens do not collapse onto one direction "
        "(Noci et al. 2022) and the gradient passes the N post-norm blocks"
    )
    if layer.attention_role in ("v", "out"):
        return choice(layer, name, "xavier_normal", gain=g * beta, why=v.why + note)
    rows = getattr(layer.module, name).shape[0] // 3
    return tuple(
        choice(
            layer,
            name,
            "xavier_normal",
            gain=g * (beta if i == 2 else 1.0),
            rows=(i * rows, (i + 1) * rows),
            why=v.why + (note if i == 2 else f"; {'query' if i == 0 else 'key'} block"),
        )
        for i in range(3)
    )


def _critical_weight(layer: Layer, act: Activation, name: str) -> Choice | None:
    """``layer`` in a deep plain stack of ``act`` (:func:`deep_plain`) at the critical point."""
    cp, slope_at_one = critical(act)
    if cp is None:
        return None
    rec = theory.recommend(act)
    depth = layer.stack_depth
    q, w, b = cp.q_star, cp.sigma_w2, cp.sigma_b2
    why = (
        f"{act.label()} in a {depth}-layer plain stack (no normalization): critical point "
        f"(Poole et al. 2016; Schoenholz et al. 2017) sigma_w^2 = {num(w)}, sigma_b^2 = "
        f"{num(b)}, chi1 = 1, fixed point q* = {q:g} ({cp.note})"
    )
    if q != 1.0:
        why += (
            f"; q* = 1 is not stable for {act.label()} (slope {num(slope_at_one)} > 1: "
            "finite-width noise would grow layer by layer), the nearest stable q* is used"
        )
    why += (
        f"; depth_profile over {depth} layers: {_profile(act, w, b, depth, q)} "
        f"(guide {rec.scheme}: {_profile(act, rec.scale, 0.0, depth, 1.0)})"
    )
    if layer.is_input:
        scale = q - b
        why += (
            f"; first layer: Var = (q* - sigma_b^2) / fan_in puts standardized inputs at q* = {q:g}"
        )
    else:
        scale = w
    return choice(
        layer, name, "variance_scaling", scale=scale, mode="fan_in", distribution="normal", why=why
    )


def _output(facts: ModelFacts, layer: Layer, name: str, exact: bool) -> Choice:
    src = layer.input_activation
    if not exact or src is None:
        return choice(
            layer,
            name,
            "xavier_normal",
            why="output layer (no weight layer after it): Xavier normal (Glorot & "
            "Bengio 2010) keeps the predictions O(1) and balances the forward "
            "and backward passes; no activation shapes its variance",
        )
    q = facts.q_star.get(src.label(), 1.0)
    g = theory.gain(src, "forward", q=q)
    return choice(
        layer,
        name,
        "xavier_normal",
        gain=g,
        why=f"output layer (no weight layer after it): Xavier normal (Glorot & Bengio 2010) "
        f"with gain {num(g)}, the exact forward gain of {src.label()} at q = {q:g} feeding "
        "it, so the last step keeps the pre-activations' variance; for predictions that "
        f"start near 0 add a rule ({layer.path!r}, 'normal', {{'std': 0.01}})",
    )
