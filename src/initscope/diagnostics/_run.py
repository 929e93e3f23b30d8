"""One forward and backward pass that shows, layer by layer, whether the signal survives.

:func:`diagnose` hooks every weight-bearing module and every activation module, runs one batch
forward and backward, and holds what it measured against the variance equations of Glorot & Bengio
(2010) and He et al. (2015), with the activations' Gaussian moments from :mod:`initscope.theory`.
The result is a :class:`initscope.report.Report`; its module docstring states the verdict rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn as nn

from initscope._torch import Batch, state_guard
from initscope.diagnostics import _reduce
from initscope.diagnostics._hooks import (
    Collector,
    ModuleStats,
    Moments,
    Spec,
    classify,
    gather,
    hooked,
)
from initscope.diagnostics._inputs import (
    Checks,
    Inputs,
    check_batch,
    forward,
    objective_of,
    synthetic_input,
    validate,
)
from initscope.diagnostics._reduce import global_tensor
from initscope.diagnostics._rows import fans_of, layer_rows
from initscope.init.shards import is_dtensor
from initscope.report import Report

__all__ = ["diagnose", "synthetic_batch"]


def diagnose(
    model: nn.Module,
    inputs: Inputs | None = None,
    *,
    input_shape: Sequence[int] | None = None,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    target: object = None,
    generator: torch.Generator | None = None,
    reduce: bool = True,
) -> Report:
    """Run one forward and backward pass and report, per layer, what the signal does.

    Rows: every call of a module the graph's taxonomy (:func:`initscope.graph.layer_kind`) calls
    linear, conv, conv_transpose, bilinear, embedding, attention, norm or recurrent, and of every
    activation module, in execution order (see :class:`LayerStats`). An activation called as a
    function (``F.relu`` in ``forward``) has no row: the next layer's input statistics stand in for
    it. For a module that returns a tuple (an LSTM's ``(output, (h, c))``, MultiheadAttention's
    ``(output, weights)``) the first tensor is measured.

    Args:
        model: the model, left exactly as it was (:func:`initscope._torch.state_guard`):
            parameters, buffers (BatchNorm running statistics, spectral norm's power-iteration
            vectors and any buffer the forward writes are restored), every parameter's ``.grad``
            (gradients are taken with ``torch.autograd.grad``; ``.grad`` is never written), the
            train/eval mode of every submodule, every ``requires_grad`` flag (all floating
            parameters require grad during the pass so that every weight gets a gradient) and
            torch's global random state (a train-mode Dropout draws from it during the pass; it
            is restored after). The pass runs in the model's current mode: call ``model.train()``
            first to see batch statistics and dropout, ``model.eval()`` to see running statistics.
            Hooks are removed even when the pass raises.
        inputs: a real batch, its first dimension the batch: a tensor (``model(x)``), a tuple/list
            (``model(*x)``) or a dict (``model(**x)``).
        input_shape: instead of ``inputs``, the shape of a synthetic N(0, 1) batch drawn from
            ``generator`` (:func:`synthetic_batch`).
        loss_fn: ``loss_fn(output, target)`` (``loss_fn(output)`` without ``target``) on the model's
            full output, a scalar. Without it the backward pass differentiates ``<y, g>``, with
            ``y`` the first floating-point tensor of the output that depends on the parameters and
            ``g ~ N(0, 1)`` of its shape from ``generator``, so that ``dL/dy`` has unit std and
            gradient scales compare across models.
        target: the target for ``loss_fn``.
        generator: the source of every random draw (synthetic input and ``g``); None draws from
            torch's default generator.
        reduce: when ``torch.distributed`` is initialized with more than one rank, each rank
            holding its part of the global batch (data parallel, DDP or FSDP), combine every
            statistic across ranks before the host transfer, so that every rank returns the
            report of the global batch: moments from summed ``n``, ``sum x``, ``sum x^2``;
            a unit dead only if dead on every rank; saturated fractions from summed counts;
            identical activation groups as the minimum of the ranks' counts; weight gradients
            all-reduced (summed for ``<y, g>``, averaged with ``loss_fn`` as DDP does, and the
            output gradients scaled by ``1 / world`` to match: exact for a mean-reduced loss
            over local batches of equal size). A rank that fails makes every rank raise (no
            hang). ``False``: each rank reports its local batch. Parameters that are DTensors
            (FSDP2 ``fully_shard``, tensor parallel) are read whole (``full_tensor``) either
            way. Without a process group this changes nothing.

    Returns:
        A :class:`Report` (``print(report)`` for the table, ``report.plot()``,
        ``report.to_html()``).

    Raises:
        TypeError: ``model`` not an ``nn.Module``, ``inputs`` not tensors, ``loss_fn`` not callable,
            ``generator`` not a ``torch.Generator``, ``reduce`` not a bool.
        RuntimeError: (reducing across ranks) the pass failed on another rank, or the ranks
            measured different layers or shapes.
        ValueError: neither or both of ``inputs`` and ``input_shape``; a non-positive dimension;
            ``target`` without ``loss_fn``; a model without parameters, on the meta device or with
            lazy parameters not yet materialized; a
            batch that is empty, unbatched (fewer than 2 dimensions) or holds NaN/inf; a loss that
            is NaN/inf on a finite output; an input the model cannot take (the message names the
            layer that failed and the shape it expects, e.g. a Linear's ``in_features``); an
            output or loss that does not depend on the parameters. Nothing is changed either way.
    """
    validate(model, inputs, input_shape, loss_fn, target, generator)
    if not isinstance(reduce, bool):
        raise TypeError(f"reduce: expected a bool, got {type(reduce).__name__}")
    specs = _specs(model)
    synthetic = inputs is None
    across = _reduce.active(reduce)
    with state_guard(model):
        failure: Exception | None = None
        try:
            if synthetic:
                batch = Batch.of(synthetic_input(model, tuple(input_shape or ()), generator, specs))
            else:
                batch = Batch.of(inputs)
            check_batch(batch, "input_shape" if synthetic else "inputs")
            params = [p for p in model.parameters() if p.is_floating_point()]
            for p in params:
                p.requires_grad_(True)
            collector = Collector(units=across)
            with hooked(specs, collector), torch.enable_grad():
                output = forward(model, batch, collector)
                objective = objective_of(output, loss_fn, target, generator)
                if any(is_dtensor(p) for p in params):
                    # FSDP2 reduces the gradients into the sharded parameters' .grad in its
                    # backward hooks (the guard restores .grad); autograd.grad would not see them
                    for p in params:
                        p.grad = None
                    objective.backward()
                    grads = tuple(p.grad for p in params)
                else:
                    grads = torch.autograd.grad(objective, params, allow_unused=True)
            checks = Checks.of(batch, output, objective)
            collector.settle_dead()
            if across:
                world = torch.distributed.get_world_size()
                grad_scale = 1.0 / world if loss_fn is not None else 1.0
                reduction = _reduce.Reduction.of(
                    [call.stats for call in collector.calls], checks, grad_scale
                )
                signature = reduction.signature() + _reduce.grads_signature(grads)
        except Exception as error:
            if not across:
                raise
            failure = error
        if across:
            # every rank learns whether any failed before the next collective: no hang
            _reduce.agree(failure is not None, [0] * 4 if failure is not None else signature)
            if failure is not None:
                raise failure
            grads = tuple(_reduce.reduce_grads(grads, mean=loss_fn is not None))
        grad_of = {id(p): g for p, g in zip(params, grads, strict=True)}
        called = {id(call.spec.module): call.spec for call in collector.calls}
        modules = {key: _module_stats(spec, grad_of, collector) for key, spec in called.items()}
        collector.count_row_groups()
        fans = {key: fans_of(spec) for key, spec in called.items()}  # reads weights: guarded
        if across:
            reduction.run()
    gather([checks, *(call.stats for call in collector.calls), *modules.values()])
    checks.raise_if_bad(loss_fn is not None)
    first = batch.first()
    meta = {
        "model": type(model).__name__,
        "mode": "train" if model.training else "eval",
        "input": ("synthetic " if synthetic else "")
        + (str(tuple(first.shape)) if first is not None else "?"),
        "backward": "loss_fn" if loss_fn is not None else "<y, g>, g ~ N(0, 1)",
    }
    return Report.from_measurements(layer_rows(collector.calls, modules, fans), meta)


def synthetic_batch(
    model: nn.Module, input_shape: Sequence[int], *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The synthetic batch :func:`diagnose` draws for ``input_shape``: N(0, 1) in the model's
    floating dtype, or integer tokens uniform in ``[0, num_embeddings)`` when the first module that
    runs is an embedding (found by a probe forward on zeros, under the state guard)."""
    validate(model, None, input_shape, None, None, generator)
    with state_guard(model):
        return synthetic_input(model, tuple(input_shape), generator, _specs(model))


def _specs(model: nn.Module) -> list[Spec]:
    specs = []
    for path, module in model.named_modules():
        spec = classify(path or type(module).__name__, module)
        if spec is not None:
            specs.append(spec)
    return specs


def _weights(spec: Spec) -> list[torch.Tensor]:
    weight = getattr(spec.module, "weight", None)
    if spec.kind not in ("attention", "recurrent") and isinstance(weight, torch.Tensor):
        return [weight]
    return [p for p in spec.module.parameters() if p.ndim >= 2]


def _module_stats(
    spec: Spec, grad_of: Mapping[int, torch.Tensor | None], collector: Collector
) -> ModuleStats:
    """The module's raw statistics as device tensors."""
    stats = ModuleStats()
    params = [w for w in _weights(spec) if w.numel() > 0]
    if not params:
        return stats
    weights = [global_tensor(w.detach()) for w in params]  # a sharded parameter whole
    stats.weight = Moments.of(_flat(weights))
    bias = getattr(spec.module, "bias", None)
    if spec.kind == "weight" and isinstance(bias, torch.Tensor) and bias.numel() > 0:
        stats.bias = Moments.of(global_tensor(bias.detach()).float())
    if spec.kind in ("weight", "embedding"):
        w = weights[0]
        if spec.layer == "conv_transpose":
            rows = w.transpose(0, 1).reshape(w.shape[1], -1)
        elif spec.kind == "embedding":
            rows = w.t()
        else:
            rows = w.reshape(w.shape[0], -1)
        collector.row_groups(rows.float().contiguous(), into=stats)
    grads = [grad_of.get(id(w)) for w in params]
    present = [g for g in grads if g is not None]
    if len(present) == len(grads):
        stats.grad = Moments.of(_flat([global_tensor(g.detach()) for g in present]))
    return stats


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    if len(tensors) == 1:
        return tensors[0].float()
    return torch.cat([t.reshape(-1).float() for t in tensors])
