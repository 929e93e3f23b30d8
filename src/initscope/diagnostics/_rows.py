"""Per-layer rows of a report: fans and theory's predictions from the measured statistics (private).

Predictions start from the measured input of their own layer (Glorot & Bengio 2010; He et al. 2015):
a weight layer ``Var(out) = fan_in Var(W) E[x^2] + Var(b)``, an activation ``Var f(z)`` for
``z ~ N(in_mean, in_std^2)`` from :func:`initscope.theory.moments`, a gradient one step down from
the next weight layer.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from initscope.diagnostics._hooks import CONV, TRANSPOSED, Call, Spec
from initscope.init._fans import Fans, fans
from initscope.theory import Moments, moments


def _fans(spec: Spec) -> Fans | None:
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


def _strides(module: nn.Module) -> int:
    return math.prod(module.stride) if isinstance(module, CONV) else 1


def _nan(x: float | None) -> float:
    return math.nan if x is None else x


def _usable(*xs: float | None) -> bool:
    return all(x is not None and math.isfinite(x) for x in xs)


def _act_moments(spec: Spec, mean: float, std: float) -> Moments | None:
    """Theory's moments of the activation for ``z ~ N(mean, std^2)``; None where not finite."""
    try:
        return moments(spec.act, q=std * std, mean=mean)
    except ValueError:
        return None


def _predicted(spec: Spec, fan: Fans | None, c: dict, mod: dict) -> float | None:
    in_mean, in_std, w_std = c["in_mean"], c["in_std"], mod["weight_std"]
    if spec.kind == "weight" and not isinstance(spec.module, nn.Bilinear):
        if fan is None or not _usable(in_mean, in_std, w_std):
            return None
        fan_in = fan.fan_in / (_strides(spec.module) if isinstance(spec.module, TRANSPOSED) else 1)
        return math.sqrt(fan_in * w_std**2 * (in_mean**2 + in_std**2) + (mod["bias_var"] or 0.0))
    if spec.kind == "embedding":
        return w_std
    if spec.kind == "activation" and _usable(in_mean, in_std):
        if in_std == 0:
            return 0.0
        m = _act_moments(spec, in_mean, in_std)
        return None if m is None else math.sqrt(max(m.variance, 0.0))
    return None


def _ratio(measured: float | None, predicted: float | None) -> float | None:
    if measured is None or not _usable(predicted) or predicted <= 0:
        return None
    return measured / predicted


def _same(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-30)


def _predicted_grad(
    i: int, calls: list[Call], per_call: list[dict], per_module: dict, fans_of: dict
) -> float | None:
    """Backward equation one step down from the next weight layer, through the activations between.

    Only when the rows from ``i`` to the next weight layer form a chain: each row's input statistics
    equal the previous row's output statistics (no pooling or functional op between; a tensor that
    also feeds a residual add is not seen).
    """
    factor = 1.0
    prev = per_call[i]
    for j in range(i + 1, len(calls)):
        spec, c = calls[j].spec, per_call[j]
        if not (_same(c["in_mean"], prev["out_mean"]) and _same(c["in_std"], prev["out_std"])):
            return None
        if spec.kind == "activation":
            if not _usable(c["in_mean"], c["in_std"]) or c["in_std"] == 0:
                return None
            m = _act_moments(spec, c["in_mean"], c["in_std"])
            if m is None:
                return None
            factor *= m.deriv_second
            prev = c
            continue
        if spec.kind != "weight" or isinstance(spec.module, nn.Bilinear):
            return None
        fan, w_std, grad = (
            fans_of[id(spec.module)],
            per_module[id(spec.module)]["weight_std"],
            c["grad_std"],
        )
        if fan is None or not _usable(w_std, grad):
            return None
        fan_out = fan.fan_out / (
            _strides(spec.module) if not isinstance(spec.module, TRANSPOSED) else 1
        )
        return grad * math.sqrt(fan_out * w_std**2 * factor)
    return None


def layer_rows(calls: list[Call], per_call: list[dict], per_module: dict) -> list[dict[str, Any]]:
    fans_of = {id(c.spec.module): _fans(c.spec) for c in calls}
    rows = []
    for i, call in enumerate(calls):
        spec, c, mod = call.spec, per_call[i], per_module[id(call.spec.module)]
        fan = fans_of[id(spec.module)]
        predicted = _predicted(spec, fan, c, mod)
        groups = mod["groups"] if spec.kind in ("weight", "embedding") else c["groups"]
        grad_pred = (
            _predicted_grad(i, calls, per_call, per_module, fans_of)
            if spec.kind == "weight"
            else None
        )
        rows.append(
            {
                "index": i,
                "path": call.path,
                "type": type(spec.module).__name__,
                "kind": spec.kind,
                "fans": fan,
                "weight_std": mod["weight_std"],
                "in_mean": _nan(c["in_mean"]),
                "in_std": _nan(c["in_std"]),
                "out_mean": _nan(c["out_mean"]),
                "out_std": _nan(c["out_std"]),
                "grad_out_std": c["grad_std"],
                "weight_grad_std": mod["grad_std"],
                "dead_fraction": c["dead"],
                "saturated_fraction": c["saturated"],
                "identical_groups": int(groups or 0),
                "predicted_std": predicted,
                "ratio": _ratio(c["out_std"], predicted),
                "predicted_grad_std": grad_pred,
                "grad_ratio": _ratio(c["grad_std"], grad_pred),
            }
        )
    return rows
