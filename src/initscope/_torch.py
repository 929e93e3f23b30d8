"""Shared torch helpers (private): the batch convention, the state guard, hook context managers.

Every entry point that runs a model on user data (``inspect_model``'s recorded forward,
``diagnose``, ``lsuv``) reads its input through :class:`Batch`, and every entry point that promises
to leave a model as it was wraps its work in :func:`state_guard`. Hooks are registered inside
:func:`removing` so that they are removed in ``finally``, also when the forward raises.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = [
    "Batch",
    "check_int",
    "check_real",
    "float_tensors",
    "jsonable",
    "removing",
    "state_guard",
    "tensors_in",
]


def tensors_in(obj: Any) -> list[torch.Tensor]:
    """Every tensor in a tensor, a tuple/list or a mapping (nested), in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, Mapping):
        return [t for v in obj.values() for t in tensors_in(v)]
    if isinstance(obj, (tuple, list)):
        return [t for v in obj for t in tensors_in(v)]
    return []


def float_tensors(obj: Any) -> list[torch.Tensor]:
    """The floating-point tensors of :func:`tensors_in`, in order."""
    return [t for t in tensors_in(obj) if t.is_floating_point()]


def _map(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        return {k: _map(v, fn) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map(v, fn) for v in obj)
    return obj


@dataclass(frozen=True)
class Batch:
    """One model input, stated explicitly: ``model(*args, **kwargs)``, and an optional target.

    The model-input convention (:meth:`of`): a tensor is ``model(x)``, a tuple or list is
    ``model(*x)``, a dict is ``model(**x)``, a :class:`Batch` is itself. ``target`` is never passed
    to the model; a loss reads it.
    """

    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    target: Any = None

    @classmethod
    def of(cls, x: Any, target: Any = None) -> Batch:
        """The batch for a model input ``x`` under the model-input convention."""
        if isinstance(x, Batch):
            return x if target is None else cls(x.args, x.kwargs, target)
        if isinstance(x, Mapping):
            return cls((), dict(x), target)
        if isinstance(x, (tuple, list)):
            return cls(tuple(x), {}, target)
        return cls((x,), {}, target)

    def call(self, model: Callable[..., Any]) -> Any:
        """``model(*args, **kwargs)``."""
        return model(*self.args, **self.kwargs)

    def tensors(self) -> list[torch.Tensor]:
        """The input tensors (not the target), positional first."""
        return tensors_in(self.args) + tensors_in(dict(self.kwargs))

    def first(self) -> torch.Tensor | None:
        """The first input tensor, or None."""
        found = self.tensors()
        return found[0] if found else None

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        """The batch with ``fn`` applied to every input tensor (e.g. a move to a device)."""
        return Batch(_map(self.args, fn), _map(dict(self.kwargs), fn), self.target)


# ----------------------------------------------------------------------------- the state guard


@dataclass
class _Saved:
    """What :func:`state_guard` restores, gathered once per module."""

    modes: list[tuple[nn.Module, bool]] = field(default_factory=list)
    params: list[tuple[nn.Module, str, nn.Parameter, bool, torch.Tensor | None]] = field(
        default_factory=list
    )
    versions: list[tuple[str, torch.Tensor, int]] = field(default_factory=list)
    buffers: list[tuple[nn.Module, str, torch.Tensor | None, torch.Tensor | None]] = field(
        default_factory=list
    )
    attrs: list[tuple[nn.Module, str, torch.Tensor]] = field(default_factory=list)
    values: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


def _save(model: nn.Module, writes: Iterable[torch.Tensor]) -> _Saved:
    written = {id(t) for t in writes}
    s = _Saved()
    seen: set[int] = set()
    for path, m in model.named_modules(remove_duplicate=True):
        s.modes.append((m, m.training))
        for name, p in list(m._parameters.items()):
            if p is None:
                continue
            grad = p.grad
            s.params.append((m, name, p, p.requires_grad, grad))
            if id(p) in seen:
                continue
            seen.add(id(p))
            if id(p) in written:
                s.values.append((p, p.detach().clone()))
            else:
                s.versions.append((f"{path}.{name}".lstrip("."), p, p._version))
            if grad is not None:
                s.values.append((grad, grad.detach().clone()))
        for name, b in list(m._buffers.items()):
            copy = None if b is None else b.detach().clone()
            s.buffers.append((m, name, b, copy))
        # plain tensor attributes: what torch.nn.utils.weight_norm / spectral_norm (the hook-based
        # versions) recompute on every forward
        for name, v in vars(m).items():
            if isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter):
                s.attrs.append((m, name, v))
    return s


def _restore(s: _Saved) -> list[str]:
    """Put everything back; return the paths of parameters written in place that had no copy."""
    with torch.no_grad():
        for m, name, b, copy in s.buffers:
            if m._buffers.get(name) is not b:
                m._buffers[name] = b
            if b is not None and copy is not None:
                if b.shape != copy.shape:
                    b.data = copy
                else:
                    b.copy_(copy)
        for t, copy in s.values:
            t.copy_(copy)
    for m, name, v in s.attrs:
        if m.__dict__.get(name) is not v:
            m.__dict__[name] = v
    for m, name, p, flag, grad in s.params:
        if m._parameters.get(name) is not p:
            m._parameters[name] = p
        if p.requires_grad != flag:
            p.requires_grad_(flag)
        if p.grad is not grad:
            p.grad = grad
    for m, mode in s.modes:
        m.training = mode
    return [path for path, p, version in s.versions if p._version != version]


def _cuda_devices(model: nn.Module) -> list[int]:
    tensors = [*model.parameters(), *model.buffers()]
    return sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})


@contextlib.contextmanager
def state_guard(model: nn.Module, *, writes: Iterable[torch.Tensor] = ()) -> Iterator[None]:
    """Leave ``model`` exactly as it was, and torch's global random state too.

    On exit, also when the block raises, restores: every parameter and buffer object under its
    name (buffers include non-persistent ones and parametrization state such as spectral norm's
    ``_u`` / ``_v``), every buffer's values, every parameter's ``requires_grad`` flag and ``.grad``
    (object and values, ``None`` stays ``None``), plain tensor attributes (what the hook-based
    ``weight_norm`` / ``spectral_norm`` recompute), the train/eval mode of every submodule, and the
    global random state (CPU and the CUDA devices the model is on: ``torch.random.fork_rng``).

    Parameter values are copied only for the tensors in ``writes``, the ones the block means to
    change: they keep the block's values when it succeeds and are restored when it raises. Any
    other parameter is not copied (a forward does not write its parameters); one that was written
    in place anyway raises ``RuntimeError`` naming it.
    """
    writes = list(writes)
    saved = _save(model, writes)
    ok = False
    try:
        with torch.random.fork_rng(devices=_cuda_devices(model)):
            yield
        ok = True
    finally:
        if ok:  # the written tensors keep the block's values
            kept = {id(t) for t in writes}
            saved.values = [(t, c) for t, c in saved.values if id(t) not in kept]
        changed = _restore(saved)
    if changed:
        raise RuntimeError(
            f"model: parameter(s) {', '.join(changed)} were written in place during a pass that "
            "must change nothing"
        )


# ----------------------------------------------------------------------------- hooks


@contextlib.contextmanager
def removing() -> Iterator[list[RemovableHandle]]:
    """A list to append hook handles to; every handle is removed in ``finally``.

    ``with removing() as handles: handles.append(module.register_forward_hook(fn))``: the hooks
    live exactly as long as the block, also when registration, the forward or the backward raises.
    """
    handles: list[RemovableHandle] = []
    try:
        yield handles
    finally:
        for handle in reversed(handles):
            handle.remove()


def check_real(
    arg: str,
    value: object,
    *,
    low: float | None = None,
    strict: bool = False,
    infinite: bool = False,
) -> float:
    """``value`` as a float: ``TypeError`` unless a real number (not a bool), ``ValueError`` naming
    ``arg`` if NaN, infinite (unless ``infinite``) or below ``low`` (``<= low`` if ``strict``)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{arg} must be a real number, got {type(value).__name__}")
    out = float(value)
    if math.isnan(out) or (math.isinf(out) and not infinite):
        raise ValueError(f"{arg} must be a finite number, got {out}")
    if low is not None and (out < low or (strict and out == low)):
        raise ValueError(f"{arg} must be {'>' if strict else '>='} {low:g}, got {out}")
    return out


def check_int(arg: str, value: object, *, low: int | None = None) -> int:
    """``value`` as an int: ``TypeError`` naming ``arg`` unless an integer (Python or numpy, not
    a bool), ``ValueError`` if below ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{arg}: expected an int, got {type(value).__name__}")
    if low is not None and value < low:
        raise ValueError(f"{arg}: expected an int >= {low}, got {value}")
    return int(value)


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready Python values: arrays become lists, numpy scalars Python ones, NaN
    and inf None, dict keys strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
