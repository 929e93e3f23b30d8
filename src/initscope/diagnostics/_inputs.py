"""Inputs, the forward call and the objective for :func:`initscope.diagnose` (private)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.nn.parameter import is_lazy

from initscope._torch import Batch, float_tensors, tensors_in
from initscope.diagnostics._hooks import (
    Collector,
    FirstModule,
    Spec,
    Value,
    first_tensor,
    probing,
)
from initscope.graph import layer_kind

Inputs = torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor]


def validate(
    model: Any, inputs: Any, input_shape: Any, loss_fn: Any, target: Any, generator: Any
) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if inputs is not None:
        if isinstance(inputs, Mapping):
            items = list(inputs.values())
        elif isinstance(inputs, (tuple, list)):
            items = list(inputs)
        else:
            items = [inputs]
        if not items or first_tensor(items) is None:
            raise TypeError(
                "inputs: expected a tensor, a tuple/list of tensors or a dict of tensors, "
                f"got {type(inputs).__name__}"
            )
    if input_shape is not None:
        if (
            isinstance(input_shape, (str, bytes))
            or not isinstance(input_shape, Sequence)
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in input_shape)
        ):
            raise TypeError(f"input_shape: expected a sequence of ints, got {input_shape!r}")
        if not input_shape or any(d <= 0 for d in input_shape):
            raise ValueError(f"input_shape: expected positive dimensions, got {tuple(input_shape)}")
        if len(input_shape) < 2:
            raise ValueError(
                f"input_shape: expected a batch, (N, ...) with the batch dimension first; got "
                f"{tuple(input_shape)} (for one example of shape {tuple(input_shape)} pass "
                f"(1, {', '.join(map(str, input_shape))}) or more rows)"
            )
    if (inputs is None) == (input_shape is None):
        raise ValueError(
            "inputs / input_shape: pass exactly one: inputs= (a batch) or input_shape= "
            "(a synthetic N(0, 1) batch)"
        )
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable, got {type(loss_fn).__name__}")
    if target is not None and loss_fn is None:
        raise ValueError("target: given without loss_fn; pass loss_fn= as well")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
    # each module's own tensors, read from its dicts: Module.parameters() is slow on deep models
    modules = list(model.modules())
    if not any(p is not None for m in modules for p in m._parameters.values()):
        raise ValueError(f"model: {type(model).__name__} has no parameters; nothing to diagnose")
    tensors = [
        t for m in modules for t in (*m._parameters.values(), *m._buffers.values()) if t is not None
    ]
    if any(is_lazy(t) for t in tensors):
        raise ValueError(
            f"model: {type(model).__name__} has uninitialized (lazy) parameters; run one forward "
            "pass on a batch first so that they get their shapes"
        )
    if any(t.is_meta for t in tensors):
        raise ValueError(
            f"model: {type(model).__name__} has parameters on the meta device (shapes without "
            "values); materialize it first, e.g. model.to_empty(device='cpu') and an "
            "initialization such as initscope.initialize(model)"
        )


def check_batch(batch: Batch, name: str) -> None:
    """ValueError for an empty or unbatched batch (shapes only: no host sync)."""
    tensors = batch.tensors()
    for t in tensors:
        if t.numel() == 0:
            raise ValueError(f"{name}: empty batch (a tensor of shape {tuple(t.shape)})")
    first = tensors[0] if tensors else None
    if first is not None and first.ndim < 2:
        raise ValueError(
            f"{name}: expected a batch, (N, ...) with the batch dimension first; got an "
            f"unbatched tensor of shape {tuple(first.shape)} (add a batch dimension: "
            "x.unsqueeze(0), or better a batch of several examples)"
        )


def _all_finite(tensors: list[torch.Tensor]) -> torch.Tensor | None:
    """1.0 when every element is finite, else 0.0 (a device flag; None without tensors).

    ``amax`` and ``amin`` propagate NaN, and an infinity is the maximum or the minimum: all
    elements are finite exactly when both extremes are. Two reductions without a temporary
    instead of an elementwise ``isfinite`` mask.
    """
    if not tensors:
        return None
    extremes = [e for t in tensors if t.numel() > 0 for e in torch.aminmax(t.detach())]
    if not extremes:
        return tensors[0].new_ones((), dtype=torch.float32)
    return torch.isfinite(torch.stack([e.float() for e in extremes])).all().float()


@dataclass
class Checks:
    """Whether the batch, the output and the objective are finite: device flags (1.0 / 0.0) until
    :func:`initscope.diagnostics._hooks.gather` brings them to the host with the statistics."""

    inputs_finite: Value = None
    output_finite: Value = None
    objective_finite: Value = None

    @classmethod
    def of(cls, batch: Batch, output: Any, objective: torch.Tensor) -> Checks:
        return cls(
            _all_finite(float_tensors(batch.tensors())),
            _all_finite(float_tensors(output)),
            torch.isfinite(objective.detach()).float(),
        )

    def raise_if_bad(self, has_loss_fn: bool) -> None:
        """ValueError for NaN/inf in the batch, or a non-finite loss on a finite output.

        A non-finite output from a finite batch is a finding (an exploding model), not an error.
        """
        if self.inputs_finite == 0.0:
            raise ValueError("inputs: the batch contains NaN or inf")
        if has_loss_fn and self.objective_finite == 0.0 and self.output_finite != 0.0:
            raise ValueError(
                "loss_fn: the loss is NaN or inf on a finite model output; check the loss and "
                "the target"
            )


def _draw(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype,
    high: int | None = None,
) -> torch.Tensor:
    where = generator.device if generator is not None else device
    if high is None:
        x = torch.randn(shape, generator=generator, device=where, dtype=dtype)
    else:
        x = torch.randint(0, high, shape, generator=generator, device=where)
    return x.to(device)


def synthetic_input(
    model: nn.Module, shape: tuple[int, ...], generator: torch.Generator | None, specs: list[Spec]
) -> torch.Tensor:
    """N(0, 1) of ``shape``, or integer tokens when the first module that runs is an Embedding.

    The first module is found by a probe forward on zeros that stops at the first hooked module.
    """
    param = next(model.parameters())
    floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
    dtype = floats[0] if floats else torch.get_default_dtype()
    first = None
    with probing(specs), torch.no_grad():
        try:
            model(torch.zeros(shape, dtype=dtype, device=param.device))
        except FirstModule as found:
            first = found.module
        except Exception:  # the real pass reports it, with the shape the model wanted
            first = None
    if first is not None and layer_kind(first) == "embedding":
        n_embeddings = _int_attr(first, "num_embeddings")
        if n_embeddings is not None:
            return _draw(shape, generator, param.device, dtype, high=n_embeddings)
    return _draw(shape, generator, param.device, dtype)


def _int_attr(module: nn.Module, name: str) -> int | None:
    """``module.name`` where it is an integer (``num_embeddings``, ``in_channels``), else None."""
    value = getattr(module, name, None)
    return value if isinstance(value, int) else None


def forward(model: nn.Module, batch: Batch, collector: Collector) -> Any:
    try:
        return batch.call(model)
    except Exception as exc:
        message = _shape_message(collector, batch)
        if message is None:
            raise
        raise ValueError(message) from exc


def _shape_message(collector: Collector, batch: Batch) -> str | None:
    if not collector.open:
        return None
    call = collector.open[-1]
    expected = _expected_input(call.spec, call.in_shape)
    if expected is None:
        return None
    what = f"{call.path!r} ({type(call.spec.module).__name__})"
    where = f"the model's first layer {what}" if call.index == 0 else f"layer {what}"
    got = "no tensor" if call.in_shape is None else f"shape {call.in_shape}"
    message = f"inputs: {where} expects input of {expected} but got {got}"
    if call.index != 0:
        first = batch.first()
        message += f"; the model input had shape {tuple(first.shape) if first is not None else '?'}"
    return message


def _expected_input(spec: Spec, shape: tuple[int, ...] | None) -> str | None:
    """What the module wants when ``shape`` does not fit it, else None (the error is elsewhere)."""
    module = spec.module
    if spec.layer == "embedding" and hasattr(module, "num_embeddings"):
        count = module.num_embeddings
        return f"integer indices in [0, {count}) (num_embeddings={count})"
    if shape is None:
        return None
    if isinstance(module, nn.Linear) and (not shape or shape[-1] != module.in_features):
        return f"shape (*, {module.in_features}) (in_features={module.in_features})"
    if isinstance(module, nn.Bilinear) and (not shape or shape[-1] != module.in1_features):
        return f"shape (*, {module.in1_features}) (in1_features={module.in1_features})"
    in_channels = _int_attr(module, "in_channels")
    if spec.spatial and in_channels is not None:
        n = spec.spatial
        if len(shape) not in (n + 1, n + 2) or shape[-n - 1] != in_channels:
            spatial = {1: "L", 2: "H, W", 3: "D, H, W"}.get(n, "*")
            return f"shape (N, {in_channels}, {spatial}) (in_channels={in_channels})"
        return None
    if spec.layer == "norm":
        num_features = _int_attr(module, "num_features")
        normalized_shape = getattr(module, "normalized_shape", None)
        want: tuple[int, ...]
        if isinstance(module, nn.GroupNorm):
            want, where = (module.num_channels,), "channels"
        elif num_features is not None:
            want, where = (num_features,), "channels"
        elif isinstance(normalized_shape, Sequence):
            want, where = tuple(normalized_shape), "trailing"
        else:
            return None
        if where == "channels" and (len(shape) < 2 or shape[1] != want[0]):
            return f"shape (N, {want[0]}, *) ({want[0]} channels)"
        if where == "trailing" and tuple(shape[-len(want) :]) != want:
            return f"shape (*, {', '.join(map(str, want))}) (normalized_shape={want})"
        return None
    if isinstance(module, nn.MultiheadAttention) and (not shape or shape[-1] != module.embed_dim):
        order = "(N, L, E)" if module.batch_first else "(L, N, E)"
        return f"shape {order} with E = embed_dim = {module.embed_dim}"
    if isinstance(module, nn.RNNBase) and (not shape or shape[-1] != module.input_size):
        order = "(N, L, H_in)" if module.batch_first else "(L, N, H_in)"
        return f"shape {order} with H_in = input_size = {module.input_size}"
    return None


def objective_of(
    output: Any,
    loss_fn: Callable[..., torch.Tensor] | None,
    target: Any,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The scalar to differentiate: the loss, or ``<y, g>`` with ``y`` the first floating-point
    output tensor that depends on the parameters (an integer output before it is skipped)."""
    if loss_fn is not None:
        loss = loss_fn(output, target) if target is not None else loss_fn(output)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(f"loss_fn: expected a scalar tensor, got {type(loss).__name__}")
        if not loss.requires_grad:
            raise ValueError("loss_fn: the loss does not depend on the model's parameters")
        return loss.reshape(())
    y = next((t for t in tensors_in(output) if t.is_floating_point() and t.requires_grad), None)
    if y is None:
        raise ValueError(
            "model: its output has no floating-point tensor that depends on the parameters; "
            "pass loss_fn= to say what to differentiate"
        )
    g = _draw(tuple(y.shape), generator, y.device, y.dtype)
    return torch.sum(y * g)
