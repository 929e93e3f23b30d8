"""Scale: meta-device models, sharded parameters (DTensor, FSDP2), layout-invariant values.

Whole models go through :func:`initscope.initialize` (``device=``, ``seed=``,
``layout_invariant=True``; see ``docs/scale.md``). This package holds the tensor-level pieces
for code outside a plan:

* :func:`counter_init_`: one scheme on one tensor (plain or DTensor) from the counter-based
  generator, the values :func:`initscope.initialize` would give that parameter;
* :func:`materialize`: ``to_empty`` for a ``meta`` model that keeps tied parameters tied and
  resets BatchNorm running statistics;
* :func:`local_region`: the global shape of a tensor and the box of it this process holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from initscope._torch import check_int
from initscope.init import Fans, get_scheme
from initscope.init.counter import check_counter_dtype, counter_fill_, counter_spec, key_words
from initscope.init.shards import Region, local_region
from initscope.init.shards import materialize as _materialize

__all__ = ["Region", "counter_init_", "local_region", "materialize"]


def counter_init_(
    tensor: torch.Tensor,
    scheme: str,
    *,
    seed: int,
    path: str,
    step: int = 0,
    fans: Fans | None = None,
    rows: tuple[int, int] | None = None,
    **params: Any,
) -> torch.Tensor:
    """Fill ``tensor`` with ``scheme`` (an :data:`initscope.init.SCHEMES` name and its keyword
    arguments) from Philox-4x32-10 keyed by ``(seed, path, step)``; returns ``tensor``.

    Element ``i`` of the global tensor gets the same value whatever part of it ``tensor`` holds
    (a DTensor fills only its local shard) and on any device: the values
    ``initialize(model, seed=seed, layout_invariant=True)`` gives parameter ``path`` when its
    plan's step ``step`` is this scheme. ``fans`` as in the scheme (default: torch's rule on the
    global shape). Every argument is checked before the write.

    Raises:
        TypeError: ``seed`` not an int; an unknown tensor subclass.
        ValueError: an unknown scheme or a bad argument (as the scheme itself raises).
    """
    seed = check_int("seed", seed)
    if not isinstance(path, str):
        raise TypeError(f"path: expected a str, got {type(path).__name__}")
    region = local_region(tensor, path)
    check_counter_dtype(tensor.dtype, path)
    shape = region.shape if rows is None else (rows[1] - rows[0], *region.shape[1:])
    ghost = torch.empty(shape, dtype=tensor.dtype, device="meta")
    kwargs: Mapping[str, Any] = params if fans is None else {**params, "fans": fans}
    get_scheme(scheme)(ghost, **kwargs)  # the scheme's own checks, on no memory
    counter_spec(scheme, params, fans, shape)
    with torch.no_grad():
        counter_fill_(region, scheme, params, fans, rows, key_words(seed, path, step))
    return tensor


def materialize(model: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """Allocate a ``meta`` model's parameters and buffers on ``device`` (values undefined, as
    ``Module.to_empty``) keeping tied parameters tied; BatchNorm running statistics are reset.
    Returns ``model``. :func:`initscope.initialize` with ``device=`` does this after its checks.
    """
    _materialize(model, torch.device(device))
    return model
