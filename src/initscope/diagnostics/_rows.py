"""Per-layer rows of a report: fans and theory's predictions from the measured statistics (private).

Predictions start from the measured input of their own layer (Glorot & Bengio 2010; He et al. 2015):
a weight layer ``Var(out) = fan_in Var(W) E[x^2] + Var(b)``, an activation ``Var f(z)`` for
``z ~ N(in_mean, in_std^2)`` from :func:`initscope.theory.moments`, a gradient one step down from
the next weight layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeGuard

import torch
import torch.nn as nn

from initscope.diagnostics._hooks import Call, ModuleStats, Spec
from initscope.init import Fans, fans
from initscope.report import Role
from initscope.theory import Moments, moments


def fans_of(spec: Spec) -> Fans | None:
    """The fans of the module's main weight; reads the weight (a parametrization computes it), so
    call it under the state guard."""
    if spec.kind in ("weight", "embedding"):
        name = "weight"
    elif spec.kind == "attention":
        name = "in_proj_weight" if spec.module.in_proj_weight is not None else "q_proj_weight"
    elif isinstance(spec.module, nn.RNNBase):
        name = "weight_ih_l0"
    elif spec.kind == "recurrent":
        name = "weight_ih"
    else:
        return None
    weight = getattr(spec.module, name, None)
    if not isinstance(weight, torch.Tensor) or weight.ndim < 2:
        return None
    return fans(spec.module, name)


@dataclass(frozen=True)
class _Host:
    """One call's statistics on the host, named."""

    in_mean: float | None
    in_std: float | None
    out_mean: float | None
    out_std: float | None
    grad_std: float | None
    dead: float | None
    saturated: float | None
    groups: float | None

    @classmethod
    def of(cls, call: Call) -> _Host:
        s = call.stats
        return cls(
            s.inp.mean, s.inp.std(), s.out.mean, s.out.std(), s.grad.std(), s.dead, s.saturated,
            s.groups,
        )  # fmt: skip


def _strides(spec: Spec) -> int:
    stride = getattr(spec.module, "stride", 1) if spec.spatial else 1
    return math.prod(stride) if isinstance(stride, tuple) else 1


def _nan(x: float | None) -> float:
    return math.nan if x is None else x


def _usable(x: float | None) -> TypeGuard[float]:
    return x is not None and math.isfinite(x)


def _act_moments(spec: Spec, mean: float, std: float) -> Moments | None:
    """Theory's moments of the activation for ``z ~ N(mean, std^2)``; None where not finite."""
    try:
        return moments(spec.act, q=std * std, mean=mean)
    except ValueError:
        return None


def _bias_var(mod: ModuleStats) -> float:
    b = mod.bias.std()
    return 0.0 if b is None else b * b


def _predicted(spec: Spec, fan: Fans | None, c: _Host, mod: ModuleStats) -> float | None:
    in_mean, in_std, w_std = c.in_mean, c.in_std, mod.weight.std()
    if spec.kind == "weight" and spec.layer != "bilinear":
        if fan is None or not (_usable(in_mean) and _usable(in_std) and _usable(w_std)):
            return None
        fan_in = fan.fan_in / (_strides(spec) if spec.layer == "conv_transpose" else 1)
        return math.sqrt(fan_in * w_std**2 * (in_mean**2 + in_std**2) + _bias_var(mod))
    if spec.kind == "embedding":
        return w_std
    if spec.kind == "activation" and _usable(in_mean) and _usable(in_std):
        if in_std == 0:
            return 0.0
        m = _act_moments(spec, in_mean, in_std)
        return None if m is None else math.sqrt(max(m.variance, 0.0))
    return None


def _ratio(measured: float | None, predicted: float | None) -> float | None:
    if measured is None or predicted is None or not math.isfinite(predicted) or predicted <= 0:
        return None
    return measured / predicted


def _same(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-30)


def _predicted_grad(
    i: int, calls: list[Call], host: list[_Host], modules: dict, fans: dict
) -> float | None:
    """Backward equation one step down from the next weight layer, through the activations between.

    Only when the rows from ``i`` to the next weight layer form a chain: each row's input statistics
    equal the previous row's output statistics (no pooling or functional op between; a tensor that
    also feeds a residual add is not seen).
    """
    factor = 1.0
    prev = host[i]
    for j in range(i + 1, len(calls)):
        spec, c = calls[j].spec, host[j]
        if not (_same(c.in_mean, prev.out_mean) and _same(c.in_std, prev.out_std)):
            return None
        if spec.kind == "activation":
            in_mean, in_std = c.in_mean, c.in_std
            if not (_usable(in_mean) and _usable(in_std)) or in_std == 0:
                return None
            m = _act_moments(spec, in_mean, in_std)
            if m is None:
                return None
            factor *= m.deriv_second
            prev = c
            continue
        if spec.kind != "weight" or spec.layer == "bilinear":
            return None
        fan, w_std, grad = fans[id(spec.module)], modules[id(spec.module)].weight.std(), c.grad_std
        if fan is None or not (_usable(w_std) and _usable(grad)):
            return None
        fan_out = fan.fan_out / (_strides(spec) if spec.layer != "conv_transpose" else 1)
        return grad * math.sqrt(fan_out * w_std**2 * factor)
    return None


def _positions(shape: tuple[int, ...] | None) -> int:
    """Spatial positions of a batched ``(N, C, *spatial)`` input; 0 without spatial dimensions."""
    return math.prod(shape[2:]) if shape is not None and len(shape) >= 3 else 0


def form(spec: Spec) -> str:
    """What kind of weight layer a row is beyond its type: kernel size, depthwise, and whether
    it widens (``<``), narrows (``>``) or keeps (``=``) the width; groups like layers."""
    m = spec.module
    n_in = getattr(m, "in_channels", getattr(m, "in_features", None))
    n_out = getattr(m, "out_channels", getattr(m, "out_features", None))
    if not isinstance(n_in, int) or not isinstance(n_out, int):
        return ""
    kernel = getattr(m, "kernel_size", None)
    depthwise = getattr(m, "groups", 1) == n_in > 1
    width = "<" if n_out > n_in else ">" if n_out < n_in else "="
    return f"{'x'.join(map(str, kernel)) if kernel else ''}{' dw' if depthwise else ''} {width}"


def roles(calls: list[Call]) -> list[Role]:
    """``"head"`` for the weight rows that read out the model rather than carry its depth.

    A model whose first weight layer reads a batch of sequences or images (input of 3 or more
    dimensions): its trailing weight rows with a 2-D input, after pooling or a token pick to one
    vector per example. ``"gate"``: a convolution that reads one position per example in a
    model whose first weight layer reads many (a squeeze-excitation's 1x1 convolutions on the
    pooled map): its gradient sums over the positions of the map it gates, a factor that
    follows the resolution, not the depth. Any model: the last weight row when its output width
    differs from the weight row before it (a classifier or vocabulary projection). Everything
    else is ``"body"``.
    """
    out: list[Role] = ["body"] * len(calls)
    weights = [i for i, c in enumerate(calls) if c.spec.kind == "weight" and c.in_shape]
    if len(weights) < 2:
        return out
    if len(calls[weights[0]].in_shape or ()) >= 3:
        for i in reversed(weights):
            if len(calls[i].in_shape or ()) != 2:
                break
            out[i] = "head"
    first_positions = _positions(calls[weights[0]].in_shape)
    for i in weights:
        if out[i] == "body" and first_positions > 1 and _positions(calls[i].in_shape) == 1:
            out[i] = "gate"
    last, before = calls[weights[-1]], calls[weights[-2]]
    if (
        out[weights[-1]] == "body"
        and last.spec.layer == "linear"
        and last.out_shape
        and before.out_shape
        and last.out_shape[-1] != before.out_shape[-1]
    ):
        out[weights[-1]] = "head"
    return out


def layer_rows(
    calls: list[Call], modules: dict[int, ModuleStats], fans: dict[int, Fans | None]
) -> list[dict[str, Any]]:
    host = [_Host.of(call) for call in calls]
    role = roles(calls)
    rows = []
    for i, call in enumerate(calls):
        spec, c, mod = call.spec, host[i], modules[id(call.spec.module)]
        fan = fans[id(spec.module)]
        predicted = _predicted(spec, fan, c, mod)
        groups = mod.groups if spec.kind in ("weight", "embedding") else c.groups
        grad_pred = (
            _predicted_grad(i, calls, host, modules, fans) if spec.kind == "weight" else None
        )
        rows.append(
            {
                "index": i,
                "path": call.path,
                "type": type(spec.module).__name__,
                "kind": spec.kind,
                "fans": fan,
                "weight_std": mod.weight.std(),
                "in_mean": _nan(c.in_mean),
                "in_std": _nan(c.in_std),
                "out_mean": _nan(c.out_mean),
                "out_std": _nan(c.out_std),
                "grad_out_std": c.grad_std,
                "weight_grad_std": mod.grad.std(),
                "dead_fraction": c.dead,
                "saturated_fraction": c.saturated,
                "identical_groups": int(groups or 0),
                "predicted_std": predicted,
                "ratio": _ratio(c.out_std, predicted),
                "predicted_grad_std": grad_pred,
                "grad_ratio": _ratio(c.grad_std, grad_pred),
                "role": role[i],
                "chained": call.chained,
                "form": form(spec) if spec.kind == "weight" else "",
                "elements": (
                    math.prod(call.out_shape[1:])
                    if call.out_shape and len(call.out_shape) > 1
                    else None
                ),
            }
        )
    return rows
