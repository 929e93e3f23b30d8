"""Applying a plan without a copy of the model: rehearse every step on ``meta``, then write.

Every check that can fail (the parameter's type, device and dtype, the generator's device, the
scheme's arguments on a tensor of the parameter's shape and dtype) runs first, on ``meta``
tensors that own no memory and consume no random numbers. Only then are the parameters written,
one step at a time, in plan order: the same calls as a plain apply, so the same values under the
same generator. The extra memory of the write phase is what one scheme needs for one tensor
(the rejection buffers of a truncated normal, the QR workspace of an orthogonal draw), never a
second copy of the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

from initscope.init.counter import (
    check_counter_dtype,
    counter_fill_,
    counter_spec,
    key_words,
    reusing_workspaces,
)
from initscope.init.shards import is_dtensor, local_region, materialize

if TYPE_CHECKING:
    from initscope.policy._plan import Entry

__all__ = [
    "AGREE_TIMEOUT_S",
    "agree",
    "agreement_needed",
    "check_materializable",
    "materialize",
    "rehearse",
    "write",
]

_NO_DRAW = frozenset({"constant", "ones", "zeros", "eye", "dirac"})


def _draws(entry: Entry) -> bool:
    return any(c.scheme not in _NO_DRAW for c in entry.choices)


def rehearse(
    entries: Sequence[Entry],
    params: Mapping[str, torch.Tensor],
    generator: torch.Generator | None,
    layout_invariant: bool,
    target: torch.device | None = None,
) -> None:
    """Raise, before any write, every error that writing ``entries`` could raise.

    Checks each parameter's kind (plain tensor, or a DTensor when ``layout_invariant``), that it
    is materialized, that ``generator`` lives on its device, then runs every step on a ``meta``
    tensor of the parameter's (global) shape and dtype. ``target``: the device a ``meta``
    model will be materialized on (its parameters may be on ``meta`` then). Warnings that
    the filters turn into errors raise here; the others are left to the write phase.
    """
    for e in entries:
        if not e.touched:
            continue
        p = params[e.path]
        region = local_region(p, e.path, allow_sharded=layout_invariant)
        device = target if target is not None else region.local.device
        if region.local.is_meta and target is None:
            raise ValueError(
                f"parameter {e.path} is on the meta device: pass device= to initialize() to "
                "materialize the model, or call model.to_empty(device=...) first"
            )
        if (
            generator is not None
            and not layout_invariant
            and _draws(e)
            and generator.device.type != device.type
        ):
            raise ValueError(
                f"generator: on {generator.device}, but parameter {e.path} is on "
                f"{device}; pass a generator on the parameters' device"
            )
        if layout_invariant:
            check_counter_dtype(p.dtype, e.path)
        ghost = torch.empty(region.shape, dtype=p.dtype, device="meta")
        with warnings.catch_warnings(record=True), torch.no_grad():
            for c in e.choices:
                c.apply(ghost, generator)
                if layout_invariant:
                    counter_spec(c.scheme, c.params, c.fans, _block_shape(region.shape, c.rows))


def check_materializable(
    model: nn.Module, entries: Sequence[Entry], device: torch.device | str
) -> torch.device:
    """Check that ``model``'s ``meta`` tensors can all be given values on ``device``: every
    parameter in the plan, every buffer one torch can reset (BatchNorm running statistics),
    and no mix of ``meta`` and real tensors. Returns the device."""
    if not isinstance(device, torch.device | str):
        raise TypeError(f"device: expected a torch.device or str, got {type(device).__name__}")
    device = torch.device(device)
    if device.type == "meta":
        raise ValueError("device: expected a real device to materialize on, got 'meta'")
    tensors = {
        **{f"parameter {n}": p for n, p in model.named_parameters()},
        **{f"buffer {n}": b for n, b in model.named_buffers()},
    }
    on_meta = [n for n, t in tensors.items() if _local(t).is_meta]
    if not on_meta:
        return device
    real = [n for n, t in tensors.items() if not _local(t).is_meta]
    if real:
        raise ValueError(
            f"model: {len(on_meta)} tensor(s) on meta ({on_meta[0]}, ...) and {len(real)} not "
            f"({real[0]}, ...); materializing would lose the real ones' values"
        )
    planned = {e.path for e in entries if e.touched}
    unplanned = [n for n, _ in model.named_parameters() if n not in planned]
    resettable = {
        f"{name}.{b}" if name else b
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._NormBase)
        for b in ("running_mean", "running_var", "num_batches_tracked")
    }
    unknown = [n for n, _ in model.named_buffers() if n not in resettable]
    if unplanned or unknown:
        names = [f"parameter {n}" for n in unplanned] + [f"buffer {n}" for n in unknown]
        raise ValueError(
            f"model: on meta, these would stay uninitialized after materializing: "
            f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''} (add rules for the "
            "parameters; give buffers their values after construction on a real device)"
        )
    return device


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if is_dtensor(t) else t


def _block_shape(shape: tuple[int, ...], rows: tuple[int, int] | None) -> tuple[int, ...]:
    return shape if rows is None else (rows[1] - rows[0], *shape[1:])


def write(
    entries: Sequence[Entry],
    params: Mapping[str, torch.Tensor],
    generator: torch.Generator | None,
    seed: int | None,
) -> None:
    """Write every step of ``entries`` (rehearsed first), with ``generator`` or, when ``seed``
    is given, the layout-invariant counter-based generator keyed by (seed, path, step)."""
    with torch.no_grad(), reusing_workspaces():
        for e in entries:
            p = params[e.path]
            for step, c in enumerate(e.choices):
                if seed is None:
                    c.apply(p, generator)
                else:
                    counter_fill_(
                        local_region(p, e.path, allow_sharded=True),
                        c.scheme,
                        c.params,
                        c.fans,
                        c.rows,
                        key_words(seed, e.path, step),
                    )


AGREE_TIMEOUT_S = 120.0
"""How long a rank waits for the others to report their checks before it gives up."""


def agreement_needed(params: Iterable[torch.Tensor]) -> bool:
    """Whether the ranks must agree before writing: a process group is up and some parameter
    is a DTensor (every rank then runs the same plan on its shard)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return False
    return any(is_dtensor(p) for p in params)


def agree(error: BaseException | None, timeout_s: float | None = None) -> None:
    """All ranks report whether their checks passed; if any failed, every rank raises.

    A rank whose own checks raised re-raises its error (the caller does); the others raise a
    ``RuntimeError`` naming the failed ranks and their first message. Bounded by
    ``timeout_s`` (default :data:`AGREE_TIMEOUT_S`): a rank that never arrives makes the
    others raise instead of hang. Nothing has been written on any rank when this raises.
    """
    world = dist.get_world_size()
    rank = dist.get_rank()
    message = "" if error is None else f"{type(error).__name__}: {error}"
    payload = message.encode()[:_MESSAGE_BYTES]
    mine = torch.zeros(world, _MESSAGE_BYTES + 1, dtype=torch.uint8)
    mine[rank, 0] = 1 if error is not None else 0
    if payload:
        mine[rank, 1 : 1 + len(payload)] = torch.tensor(list(payload), dtype=torch.uint8)
    timeout = timedelta(seconds=AGREE_TIMEOUT_S if timeout_s is None else timeout_s)
    try:
        work = dist.all_reduce(mine, op=dist.ReduceOp.SUM, async_op=True)
        if work is not None:
            work.wait(timeout=timeout)
    except RuntimeError as exc:
        raise RuntimeError(
            f"initscope: rank {rank} did not hear from every rank within "
            f"{timeout.total_seconds():g} s while checking the plan; nothing was written"
        ) from exc
    failed = [r for r in range(world) if mine[r, 0]]
    if failed and error is None:
        first = bytes(mine[failed[0], 1:].tolist()).rstrip(b"\0").decode(errors="replace")
        raise RuntimeError(
            f"initscope: the plan's checks failed on rank(s) {failed} (rank {failed[0]}: "
            f"{first}); nothing was written on any rank"
        )


_MESSAGE_BYTES = 256
