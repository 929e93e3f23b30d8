"""Where a parameter's values live: its global shape, and the box of it this process holds.

A plain tensor holds all of itself. A ``torch.distributed.tensor.DTensor`` (from
``distribute_tensor`` or FSDP2's ``fully_shard``) has a global shape (what fans are computed
from) and, on each rank, a local shard that is a box of the global tensor: ``Shard(d)`` cuts
dim ``d`` into contiguous chunks, ``Replicate()`` keeps it whole, on every mesh dimension. Any
other tensor subclass, or a placement that is not a box (``Partial``, a strided shard), is
refused by name: filling its local storage as if it were the whole tensor would use the wrong
fans and the wrong values.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeGuard

import torch
from torch import nn

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor

__all__ = ["Region", "is_dtensor", "local_region", "materialize"]


@dataclass(frozen=True)
class Region:
    """``local`` (a plain tensor sharing storage with the parameter) is the box
    ``[offsets[d], offsets[d] + local.shape[d])`` of a tensor of global ``shape``."""

    local: torch.Tensor
    shape: tuple[int, ...]
    offsets: tuple[int, ...]

    @property
    def sharded(self) -> bool:
        return tuple(self.local.shape) != self.shape


def _dtensor_type() -> type | None:
    """DTensor's class if its module is loaded (a DTensor cannot exist before that, and the
    import costs half a second)."""
    module = sys.modules.get("torch.distributed.tensor")
    return None if module is None else getattr(module, "DTensor", None)


def is_dtensor(tensor: torch.Tensor) -> TypeGuard[DTensor]:
    """Whether ``tensor`` is a ``torch.distributed.tensor.DTensor``."""
    dtensor = _dtensor_type()
    return dtensor is not None and isinstance(tensor, dtensor)


def local_region(tensor: torch.Tensor, path: str, *, allow_sharded: bool = True) -> Region:
    """The :class:`Region` of ``tensor`` (named ``path`` in messages).

    Raises:
        TypeError: a tensor subclass other than ``nn.Parameter`` and DTensor, or a DTensor when
            ``allow_sharded`` is False (the message says what to pass instead).
        ValueError: a DTensor placement that is not ``Shard`` or ``Replicate``.
    """
    if is_dtensor(tensor):
        if not allow_sharded:
            raise TypeError(
                f"parameter {path} is a DTensor (placements {tensor.placements}): pass seed= and "
                "layout_invariant=True, so that each rank fills its shard with the values of "
                "the global tensor"
            )
        return _dtensor_region(tensor, path)
    if not (type(tensor) is torch.Tensor or issubclass(type(tensor), nn.Parameter)):
        raise TypeError(
            f"parameter {path} is a {type(tensor).__module__}.{type(tensor).__qualname__}, a "
            "tensor subclass initscope does not know: it cannot tell which part of the "
            "global tensor this process holds (known: torch.Tensor, nn.Parameter, DTensor)"
        )
    if isinstance(tensor, nn.UninitializedParameter):
        raise TypeError(
            f"parameter {path} is an uninitialized lazy parameter: run one forward pass first"
        )
    local = tensor.detach()
    return Region(local, tuple(local.shape), (0,) * local.dim())


def _dtensor_region(tensor: DTensor, path: str) -> Region:
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    for placement in tensor.placements:
        if type(placement) not in (Shard, Replicate):
            raise ValueError(
                f"parameter {path}: placement {placement!r} is not supported (expected Shard(d) "
                "or Replicate() on every mesh dimension)"
            )
    shape = tuple(tensor.shape)
    local = tensor.to_local().detach()
    local_shape, offsets = compute_local_shape_and_global_offset(
        tensor.shape, tensor.device_mesh, tensor.placements
    )
    if tuple(local_shape) != tuple(local.shape):
        raise ValueError(
            f"parameter {path}: local shard has shape {tuple(local.shape)}, its placements "
            f"{tensor.placements} say {tuple(local_shape)}"
        )
    return Region(local, shape, tuple(int(o) for o in offsets))


def materialize(model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
    """``model.to_empty(device)`` when it is on ``meta``, with tied parameters tied again
    (``to_empty`` gives each module its own copy), BatchNorm running statistics reset;
    returns the parameters by path."""
    if any(
        (t.to_local() if is_dtensor(t) else t).is_meta
        for t in (*model.parameters(), *model.buffers())
    ):
        owners: dict[int, list[tuple[nn.Module, str]]] = {}
        for m in model.modules():
            for name, p in m._parameters.items():
                if p is not None:
                    owners.setdefault(id(p), []).append((m, name))
        model.to_empty(device=device)
        for tied in owners.values():
            first, name = tied[0]
            for m, other in tied[1:]:
                m._parameters[other] = first._parameters[name]
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase):
                m.reset_running_stats()
    return dict(model.named_parameters())
