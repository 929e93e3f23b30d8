"""One forward and backward pass that shows, layer by layer, whether the signal survives.

:func:`diagnose` hooks every weight-bearing module and every activation module, runs one batch
forward and backward, and holds what it measured against the variance equations of Glorot & Bengio
(2010) and He et al. (2015), with the activations' Gaussian moments from :mod:`initscope.theory`.
The result is a :class:`initscope.report.Report`; its module docstring states the verdict rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

from initscope.diagnostics._hooks import (
    DEAD,
    GRAD_L2,
    GRAD_MEAN,
    GROUPS,
    IN_L2,
    IN_MEAN,
    OUT_L2,
    OUT_MEAN,
    SATURATED,
    TRANSPOSED,
    Call,
    Collector,
    Spec,
    classify,
    first_tensor,
    gather,
    hooked,
    host_std,
    moments_into,
    saturation_thresholds,
)
from initscope.diagnostics._inputs import Inputs, forward, synthetic_input, validate
from initscope.diagnostics._inputs import objective as objective_of
from initscope.diagnostics._rows import layer_rows
from initscope.report._report import Report

__all__ = ["diagnose"]


def diagnose(
    model: nn.Module,
    inputs: Inputs | None = None,
    *,
    input_shape: Sequence[int] | None = None,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    target: Any = None,
    generator: torch.Generator | None = None,
) -> Report:
    """Run one forward and backward pass and report, per layer, what the signal does.

    Rows: every call of a Linear, Bilinear, Conv*, ConvTranspose*, Embedding, MultiheadAttention,
    norm, RNN/LSTM/GRU and activation module, in execution order (see :class:`LayerStats`). An
    activation called as a function (``F.relu`` in ``forward``) has no row: the next layer's input
    statistics stand in for it. For a module that returns a tuple (an LSTM's ``(output, (h, c))``,
    MultiheadAttention's ``(output, weights)``) the first tensor is measured.

    Args:
        model: the model, left exactly as it was: parameters, buffers (BatchNorm running statistics
            and ``num_batches_tracked`` are restored), every parameter's ``.grad`` (gradients are
            taken with ``torch.autograd.grad``; ``.grad`` is never written), the train/eval mode of
            every submodule and every ``requires_grad`` flag (all floating parameters require grad
            during the pass so that every weight gets a gradient). The pass runs in the model's
            current mode: call ``model.train()`` first to see batch statistics and dropout,
            ``model.eval()`` to see running statistics. Hooks are removed even when the pass raises.
        inputs: a real batch: a tensor (``model(x)``), a tuple/list (``model(*x)``) or a dict
            (``model(**x)``).
        input_shape: instead of ``inputs``, the shape of a synthetic N(0, 1) batch drawn from
            ``generator``; integer tokens uniform in ``[0, num_embeddings)`` when the first module
            that runs is an ``nn.Embedding``.
        loss_fn: ``loss_fn(output, target)`` (``loss_fn(output)`` without ``target``) on the model's
            full output, a scalar. Without it the backward pass differentiates ``<y, g>``, with
            ``y`` the first tensor of the output and ``g ~ N(0, 1)`` of its shape from
            ``generator``, so that ``dL/dy`` has unit std and gradient scales compare across
            models.
        target: the target for ``loss_fn``.
        generator: the source of every random draw (synthetic input and ``g``); None draws from
            torch's default generator.

    Returns:
        A :class:`Report` (``print(report)`` for the table, ``report.plot()``,
        ``report.to_html()``).

    Raises:
        TypeError: ``model`` not an ``nn.Module``, ``inputs`` not tensors, ``loss_fn`` not callable,
            ``generator`` not a ``torch.Generator``.
        ValueError: neither or both of ``inputs`` and ``input_shape``; a non-positive dimension;
            ``target`` without ``loss_fn``; a model without parameters; an input the model cannot
            take (the message names the layer that failed and the shape it expects, e.g. a Linear's
            ``in_features``); an output or loss that does not depend on the parameters.
    """
    validate(model, inputs, input_shape, loss_fn, target, generator)
    specs = _specs(model)
    with _preserved(model):
        params = [p for p in model.parameters() if p.is_floating_point()]
        for p in params:
            p.requires_grad_(True)
        synthetic = inputs is None
        if synthetic:
            inputs = synthetic_input(model, tuple(input_shape), generator, specs)
        collector = Collector()
        with hooked(specs, collector), torch.enable_grad():
            output = forward(model, inputs, collector)
            objective = objective_of(output, loss_fn, target, generator)
            grads = torch.autograd.grad(objective, params, allow_unused=True)
        grad_of = {id(p): g for p, g in zip(params, grads, strict=True)}
        called = {id(call.spec.module): call.spec for call in collector.calls}
        raw = {key: _module_tensors(spec, grad_of, collector) for key, spec in called.items()}
    values = iter(
        gather(
            [t for call in collector.calls for t in call.stats]
            + [t for tensors, _ in raw.values() for t in tensors]
        )
    )
    per_call = [_call_values(call, [next(values) for _ in call.stats]) for call in collector.calls]
    per_module = {
        key: _module_values([next(values) for _ in tensors], sizes)
        for key, (tensors, sizes) in raw.items()
    }
    first = first_tensor(inputs)
    meta = {
        "model": type(model).__name__,
        "mode": "train" if model.training else "eval",
        "input": ("synthetic " if synthetic else "")
        + (str(tuple(first.shape)) if first is not None else "?"),
        "backward": "loss_fn" if loss_fn is not None else "<y, g>, g ~ N(0, 1)",
    }
    return Report.from_measurements(layer_rows(collector.calls, per_call, per_module), meta)


def _specs(model: nn.Module) -> list[Spec]:
    specs = []
    for path, module in model.named_modules():
        found = classify(module)
        if found is None:
            continue
        kind, act = found
        saturation = saturation_thresholds(act) if act is not None else None
        specs.append(Spec(path or type(module).__name__, module, kind, act, saturation))
    return specs


@contextmanager
def _preserved(model: nn.Module) -> Iterator[None]:
    """Restore modes, buffers (values and objects), parameters, flags and ``.grad`` on exit."""
    modes = [(m, m.training) for m in model.modules()]
    params = [
        (m, name, p, p.requires_grad, p.grad)
        for m in model.modules()
        for name, p in m.named_parameters(recurse=False)
    ]
    buffers = [
        (m, name, b, b.detach().clone())
        for m in model.modules()
        for name, b in m.named_buffers(recurse=False)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, name, b, saved in buffers:
                if getattr(m, name, None) is not b:
                    setattr(m, name, b)
                b.copy_(saved)
        for m, name, p, flag, grad in params:
            if getattr(m, name, None) is not p:
                setattr(m, name, p)
            p.requires_grad_(flag)
            p.grad = grad
        for m, mode in modes:
            m.training = mode


def _example_input(
    model: nn.Module, shape: tuple[int, ...], generator: torch.Generator | None
) -> torch.Tensor:
    """The synthetic batch :func:`diagnose` would draw for ``input_shape`` (used by the CLI)."""
    with _preserved(model):
        return synthetic_input(model, shape, generator, _specs(model))


def _weights(spec: Spec) -> list[torch.Tensor]:
    weight = getattr(spec.module, "weight", None)
    if spec.kind not in ("attention", "recurrent") and isinstance(weight, torch.Tensor):
        return [weight]
    return [p for p in spec.module.parameters() if p.ndim >= 2]


# Per-module raw statistics: weight (mean, 2-norm), bias (mean, 2-norm), identical rows, gradient
# of the weight (mean, 2-norm).
W_MEAN, B_MEAN, W_GROUPS, G_MEAN = 0, 2, 4, 5


def _module_tensors(
    spec: Spec, grad_of: dict[int, torch.Tensor | None], collector: Collector
) -> tuple[list[torch.Tensor | None], dict[int, int]]:
    """The module's raw statistics as device tensors, and the element counts behind each
    (mean, 2-norm) pair."""
    stats: list[torch.Tensor | None] = [None] * 7
    sizes = {W_MEAN: 0, B_MEAN: 0, G_MEAN: 0}
    params = [w for w in _weights(spec) if w.numel() > 0]
    if not params:
        return stats, sizes
    weights = [w.detach() for w in params]
    moments_into(stats, sizes, W_MEAN, _flat(weights))
    bias = getattr(spec.module, "bias", None)
    if spec.kind == "weight" and isinstance(bias, torch.Tensor) and bias.numel() > 0:
        moments_into(stats, sizes, B_MEAN, bias.detach().float())
    if spec.kind in ("weight", "embedding"):
        w = weights[0]
        if isinstance(spec.module, TRANSPOSED):
            rows = w.transpose(0, 1).reshape(w.shape[1], -1)
        elif spec.kind == "embedding":
            rows = w.t()
        else:
            rows = w.reshape(w.shape[0], -1)
        stats[W_GROUPS] = collector.row_groups(rows.float().contiguous())
    grads = [grad_of.get(id(w)) for w in params]
    if all(g is not None for g in grads):
        moments_into(stats, sizes, G_MEAN, _flat([g.detach() for g in grads]))
    return stats, sizes


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    if len(tensors) == 1:
        return tensors[0].float()
    return torch.cat([t.reshape(-1).float() for t in tensors])


def _call_values(call: Call, v: list[float | None]) -> dict[str, float | None]:
    return {
        "in_mean": v[IN_MEAN],
        "in_std": host_std(v[IN_MEAN], v[IN_L2], call.sizes[IN_MEAN]),
        "out_mean": v[OUT_MEAN],
        "out_std": host_std(v[OUT_MEAN], v[OUT_L2], call.sizes[OUT_MEAN]),
        "grad_std": host_std(v[GRAD_MEAN], v[GRAD_L2], call.sizes[GRAD_MEAN]),
        "dead": v[DEAD],
        "saturated": v[SATURATED],
        "groups": v[GROUPS],
    }


def _module_values(v: list[float | None], sizes: dict[int, int]) -> dict[str, float | None]:
    b_std = host_std(v[B_MEAN], v[B_MEAN + 1], sizes[B_MEAN])
    return {
        "weight_std": host_std(v[W_MEAN], v[W_MEAN + 1], sizes[W_MEAN]),
        "bias_var": None if b_std is None else b_std * b_std,
        "groups": v[W_GROUPS],
        "grad_std": host_std(v[G_MEAN], v[G_MEAN + 1], sizes[G_MEAN]),
    }
