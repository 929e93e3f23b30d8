"""Presets ``"auto"`` and ``"guide"``."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

from torch import nn

from initscope import theory
from initscope.policy._choice import Choice, choice, layout_fans, num
from initscope.policy.presets.base import (
    _MATRIX_KINDS,
    DEEP_STACK,
    GUIDE_CRITICAL,
    NOT_SHARED,
    Q_LADDER,
    Base,
    _bias_param,
    _weight_param,
)
from initscope.activations import Activation
from initscope.graph import Layer

_CRITICAL: dict[str, tuple[theory.CriticalPoint | None, float]] = {}


def _critical(act: Activation) -> tuple[theory.CriticalPoint | None, float]:
    """The stable critical point with ``q*`` nearest 1 on :data:`Q_LADDER`, and the slope of the
    variance map at ``q* = 1`` (``None`` when no stable one exists). Cached by label."""
    key = act.label()
    if key not in _CRITICAL:
        at_one = theory.critical_point(act, 1.0)
        found = None
        for q in Q_LADDER:
            cp = at_one if q == 1.0 else theory.critical_point(act, q)
            if cp.exists and cp.stable:
                found = cp
                break
        _CRITICAL[key] = (found, at_one.slope)
    return _CRITICAL[key]


@functools.lru_cache(maxsize=256)
def _profile_text(label: str, act: Activation, w: float, b: float, depth: int, q0: float) -> str:
    try:
        p = theory.depth_profile(act, w, b, depth, q0)
    except ValueError:
        return "leaves the float range"
    return f"forward {p.forward_log2:+.2f}, backward {p.backward_log2:+.2f} bits"


def _profile(act: Activation, w: float, b: float, depth: int, q0: float) -> str:
    return _profile_text(act.label(), act, w, b, depth, q0)


@dataclasses.dataclass(frozen=True)
class _Var:
    """``Var(W) = scale / fan_<mode>`` drawn from ``dist``; ``he_for``: the ReLU-family
    activation whose He scheme this is (to name it ``kaiming_normal``)."""

    scale: float
    mode: str
    dist: str
    why: str
    he_for: Activation | None = None


class AutoPresets(Base):
    """The guide, and what the theory adds to it."""

    def __init__(
        self, model: nn.Module, layers: list[Layer], preset: str, zero_init_residual: bool
    ) -> None:
        super().__init__(model, layers, preset, zero_init_residual)
        if preset == "auto":
            for layer in layers:
                if self.deep_plain(layer):
                    cp, _ = _critical(layer.activation)
                    if cp is not None:
                        self.q_star[layer.activation.label()] = cp.q_star

    def _preset_auto(self, layer: Layer, name: str) -> Any:
        return self._guided(layer, name, exact=True)

    def _preset_guide(self, layer: Layer, name: str) -> Any:
        return self._guided(layer, name, exact=False)

    def _guided(self, layer: Layer, name: str, exact: bool) -> Any:
        shared = self._shared(
            layer, name, scaled_ends=True, recurrent=("xavier_normal", "orthogonal", True)
        )
        if shared is not NOT_SHARED:
            return shared
        if _bias_param(layer, name):
            if exact and self.deep_plain(layer):
                cp, _ = _critical(layer.activation)
                if cp is not None:
                    return choice(
                        layer,
                        name,
                        "normal",
                        std=math.sqrt(cp.sigma_b2),
                        why=f"critical point: biases N(0, sigma_b^2 = "
                        f"{num(cp.sigma_b2)}); the bias variance is part of the "
                        f"fixed point q* = {cp.q_star:g} (q* = sigma_w^2 E[f(z)^2] "
                        "+ sigma_b^2), so zero biases would leave it",
                    )
            return self._zero_bias(layer, name)
        if not _weight_param(layer, name):
            return None
        if layer.is_output:
            return self._output(layer, name, exact)
        if exact and self.deep_plain(layer):
            critical = self._critical_weight(layer, name)
            if critical is not None:
                return critical
            at_one = theory.critical_point(layer.activation, 1.0)
            v = self._base(layer, exact)
            return self._scaled(
                layer,
                name,
                dataclasses.replace(
                    v,
                    why=v.why + f"; no stable critical point with q* in [1/16, 16] ({at_one.note})",
                ),
            )
        if exact and self.post_norm_attention(layer):
            return self._deepnet(layer, name)
        return self._scaled(layer, name, self._base(layer, exact))

    def _deepnet(self, layer: Layer, name: str) -> Any:
        """Post-norm attention: value and output projections x beta = (8N)^(-1/4)."""
        n = self.N_post_attn
        beta = (8 * n) ** -0.25
        v = self._base(layer, exact=True)
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

    def _base(self, layer: Layer, exact: bool) -> _Var:
        """The weight variance before any residual scaling."""
        return self._exact_var(layer) if exact else self._guide_var(layer)

    def _guide_var(self, layer: Layer) -> _Var:
        act = layer.activation
        if act is None:
            return _Var(
                1.0,
                "fan_avg",
                "normal",
                f"Xavier normal (Glorot & Bengio 2010): {self._follows(layer)}",
            )
        rec = theory.recommend(act)
        named = {
            "kaiming_normal": "He normal",
            "xavier_normal": "Xavier normal",
            "lecun_normal": "LeCun normal",
        }[rec.scheme]
        dist = "truncated_normal" if rec.scheme == "lecun_normal" else "normal"
        return _Var(
            rec.scale, rec.mode, dist, f"{named} ({rec.source}): {self._follows(layer)}", he_for=act
        )

    def _exact_var(self, layer: Layer) -> _Var:
        """The forward condition with the exact gain of the activation feeding the layer:
        ``Var(W) = g^2 / fan_in`` (``g^2 / sqrt(fan_in fan_out)`` when no activation follows)."""
        src = layer.input_activation
        follows = self._follows(layer)
        if src is None:
            fed = "its input is no activation's output (gain 1)"
            g2 = 1.0
        else:
            q = self.q_star.get(src.label(), 1.0)
            g2 = theory.gain(src, "forward", q=q) ** 2
            fed = (
                f"{src.label()} feeds it ({layer.input_activation_at} -> {layer.path}), exact "
                f"forward gain {num(math.sqrt(g2))}" + ("" if q == 1.0 else f" at q = {q:g}")
            )
        if layer.attention_role in ("qkv", "q", "k", "v"):
            follows += "; attention projection, fans per q/k/v block"
        if layer.activation is None:
            return _Var(
                g2,
                "fan_geo",
                "normal",
                f"{fed}; {follows}: Var = g^2 / sqrt(fan_in fan_out), the geometric mean "
                "of the forward and backward conditions, so both passes are off by the "
                "same number of bits in opposite directions (Xavier for a square layer)",
            )
        if src is None or src.name == "selu":
            source = "Klambauer et al. 2017" if src is not None else "LeCun et al. 1998"
            return _Var(
                1.0,
                "fan_in",
                "truncated_normal",
                f"LeCun normal ({source}), Var = 1 / fan_in: {fed}; {follows}",
            )
        if src.name in ("relu", "leaky_relu"):
            return _Var(
                g2, "fan_in", "normal", f"He normal (He et al. 2015): {fed}; {follows}", he_for=src
            )
        why = f"Var = g^2 / fan_in (the forward condition): {fed}; {follows}"
        act = layer.activation
        if (
            act.name not in GUIDE_CRITICAL
            and layer.kind in _MATRIX_KINDS
            and not self.deep_plain(layer)
        ):
            reason = (
                "a normalization follows"
                if layer.norm is not None
                else "it lies on a residual branch"
                if layer.residual_branch is not None
                else f"the plain stack is {layer.stack_depth} < {DEEP_STACK} layers deep"
            )
            why += f"; no critical point needed: {reason}"
        return _Var(g2, "fan_in", "normal", why)

    def _scaled(self, layer: Layer, name: str, v: _Var) -> Choice:
        scale, why = v.scale, v.why
        if self.accumulating_end(layer) and not self.norm_takes_end(layer):
            scale /= self.L_acc
            why += (
                f"; ends residual branch {layer.residual_branch} of L = {self.L_acc}: "
                f"variance / L (std x 1/sqrt({self.L_acc})), so the branches sum to the "
                "variance of one"
            )
        elif layer.ends_residual and layer.post_norm:
            why += "; ends a post-norm residual branch: the add is renormalized, no 1/sqrt(L)"
        if v.mode == "fan_geo":
            f = layout_fans(layer, name)
            if f.fan_in == f.fan_out:
                return choice(layer, name, "xavier_normal", gain=math.sqrt(scale), why=why)
            geo = scale * math.sqrt(f.fan_in / f.fan_out)
            return choice(
                layer,
                name,
                "variance_scaling",
                scale=geo,
                mode="fan_in",
                distribution="normal",
                why=why,
                formula=f"Var = {num(scale)} / sqrt(fan_in fan_out) = {num(scale)}/"
                f"sqrt({f.fan_in} * {f.fan_out})",
            )
        if v.mode == "fan_avg" and v.dist == "normal":
            return choice(layer, name, "xavier_normal", gain=math.sqrt(scale), why=why)
        he = v.he_for
        if scale == v.scale and he is not None and v.mode == "fan_in" and v.dist == "normal":
            if he.name == "relu" or he.name != "leaky_relu" and scale == 2.0:
                return choice(layer, name, "kaiming_normal", nonlinearity="relu", why=why)
            if he.name == "leaky_relu":
                return choice(
                    layer, name, "kaiming_normal", nonlinearity="leaky_relu", a=he.param, why=why
                )
        if scale == 1.0 and v.mode == "fan_in" and v.dist == "truncated_normal":
            return choice(layer, name, "lecun_normal", why=why)
        return choice(
            layer, name, "variance_scaling", scale=scale, mode=v.mode, distribution=v.dist, why=why
        )

    def _critical_weight(self, layer: Layer, name: str) -> Choice | None:
        act = layer.activation
        cp, slope_at_one = _critical(act)
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
                f"; first layer: Var = (q* - sigma_b^2) / fan_in puts standardized inputs at "
                f"q* = {q:g}"
            )
        else:
            scale = w
        return choice(
            layer,
            name,
            "variance_scaling",
            scale=scale,
            mode="fan_in",
            distribution="normal",
            why=why,
        )

    def _output(self, layer: Layer, name: str, exact: bool) -> Choice:
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
        q = self.q_star.get(src.label(), 1.0)
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
