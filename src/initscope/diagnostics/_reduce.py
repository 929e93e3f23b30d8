"""Statistics of :func:`initscope.diagnose` combined across ``torch.distributed`` ranks (private).

Each rank measures its own part of the global batch (data parallelism). Before the host transfer
the statistics are packed into one float64 vector summed across ranks and one maximized:

- moments: ``n``, ``sum x = n mean`` and ``sum x^2 = l2^2`` are summed, so the mean and 2-norm are
  those of the global batch (the std follows on the host, :func:`initscope.diagnostics._hooks.
  host_std`);
- saturated fraction and the dead fraction of a 1-D output: counts summed, then divided;
- dead units: a unit is dead only if it is zero on every rank (per-unit flags, minimum);
- identical activation groups: the minimum of the ranks' counts (units identical on the global
  batch are identical on every rank; the count of the global batch is not formed);
- finiteness checks: the minimum, so a NaN/inf batch on one rank raises on every rank.

Weight gradients are all-reduced themselves (one flat vector per device): summed for the default
``<y, g>`` objective (a sum over the global batch), averaged with a ``loss_fn`` (the gradient DDP
trains with; exact for mean-reduced losses over local batches of equal size), and the gradients
of the outputs scaled to match (``1 / world`` with a ``loss_fn``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from initscope.diagnostics._hooks import CallStats, Moments
from initscope.init.shards import is_dtensor

Finish = Callable[[torch.Tensor, torch.Tensor], None]


def active(reduce: bool) -> bool:
    """Whether :func:`initscope.diagnose` combines across ranks: asked, and a process group of
    more than one rank is initialized."""
    return reduce and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def global_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a DTensor (a sharded parameter: FSDP2, tensor parallel), gathered from
    its shards; any other tensor as it is. A collective for a DTensor: every rank calls it."""
    if dist.is_available():
        from torch.distributed.tensor import DTensor

        if isinstance(t, DTensor):
            return t.full_tensor()
    return t


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def agree(failed: bool, signature: Sequence[int]) -> None:
    """All-reduce (MAX) which ranks failed their pass and the sizes of what they will reduce.

    Raises RuntimeError on a rank that did not fail when another did (the failing rank raises its
    own error), and on every rank when the sizes differ: the collectives that follow would not
    match.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    k = len(signature)
    flags = torch.zeros(world + 2 * k, dtype=torch.int64)
    flags[rank] = int(failed)
    sig = torch.tensor(list(signature), dtype=torch.int64)
    flags[world : world + k] = sig
    flags[world + k :] = -sig
    flags = flags.to(_device())
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    host = flags.tolist()
    bad = [r for r in range(world) if host[r]]
    if failed:
        return
    if bad:
        raise RuntimeError(f"diagnose failed on rank(s) {bad}; their errors say why")
    if host[world : world + k] != [-v for v in host[world + k :]]:
        raise RuntimeError(
            "diagnose: the ranks measured different layers or shapes; every rank must run the "
            "same model on a batch of the same structure (or pass reduce=False)"
        )


def grads_signature(grads: Sequence[torch.Tensor | None]) -> list[int]:
    dense = [g for g in grads if g is not None and not is_dtensor(g)]
    return [len(dense), sum(g.numel() for g in dense)]


def reduce_grads(grads: Sequence[torch.Tensor | None], mean: bool) -> list[torch.Tensor | None]:
    """Weight gradients summed (``mean``: averaged) across ranks, one flat float32 all-reduce per
    device; a DTensor's gradient is gathered whole (it is the global one already)."""
    out: list[torch.Tensor | None] = [
        global_tensor(g) if g is not None and is_dtensor(g) else g for g in grads
    ]
    by_device: dict[torch.device, list[int]] = {}
    for i, g in enumerate(grads):
        if g is not None and not is_dtensor(g):
            by_device.setdefault(g.device, []).append(i)
    for device, index in by_device.items():
        parts = [grads[i] for i in index]
        flat = torch.cat([p.detach().reshape(-1).float() for p in parts if p is not None])
        on = flat.to(_device())
        dist.all_reduce(on)
        if mean:
            on /= dist.get_world_size()
        flat = on.to(device)
        start = 0
        for i, p in zip(index, parts, strict=True):
            assert p is not None
            out[i] = flat[start : start + p.numel()].view(p.shape)
            start += p.numel()
    return out


class Reduction:
    """The statistics of a pass packed for a SUM and a MAX all-reduce, and how to unpack them."""

    def __init__(self, grad_scale: float) -> None:
        self._sums: list[torch.Tensor] = []
        self._maxes: list[torch.Tensor] = []
        self._n_sum = 0
        self._n_max = 0
        self._finish: list[Finish] = []
        self._seen: set[int] = set()
        self._grad_scale = grad_scale

    @classmethod
    def of(cls, stats: Sequence[CallStats], checks: Any, grad_scale: float) -> Reduction:
        r = cls(grad_scale)
        for s in stats:
            r._moments(s.inp, 1.0)
            r._moments(s.out, 1.0)
            r._moments(s.grad, grad_scale)
            if s.dead is not None:
                if s.dead.ndim == 0:  # fraction of the elements of a 1-D output
                    r._fraction(s, "dead", s.out.n)
                else:  # per-unit flags
                    r._minimum(s, "dead", finish=lambda v: v.mean())
            if s.saturated is not None:
                r._fraction(s, "saturated", s.out.n)
            if s.groups is not None:
                r._minimum(s, "groups")
        for name in ("inputs_finite", "output_finite", "objective_finite"):
            if getattr(checks, name) is not None:
                r._minimum(checks, name)
        return r

    def signature(self) -> list[int]:
        return [self._n_sum, self._n_max]

    def _put(self, maxes: bool, values: torch.Tensor) -> slice:
        v = values.detach().reshape(-1).to(torch.float64)
        if maxes:
            start, self._n_max = self._n_max, self._n_max + v.numel()
            self._maxes.append(v)
        else:
            start, self._n_sum = self._n_sum, self._n_sum + v.numel()
            self._sums.append(v)
        return slice(start, start + v.numel())

    def _moments(self, m: Moments, scale: float) -> None:
        if m.mean is None or m.l2 is None or id(m) in self._seen:
            return
        self._seen.add(id(m))
        n = float(m.n)
        mean, l2 = m.mean.to(torch.float64), m.l2.to(torch.float64)
        at = self._put(
            False, torch.stack((mean.new_tensor(n), mean * (n * scale), (l2 * scale) ** 2))
        )

        def finish(sums: torch.Tensor, maxes: torch.Tensor) -> None:
            n_all, s1, s2 = sums[at]
            m.mean, m.l2, m.n = (s1 / n_all).float(), s2.sqrt().float(), n_all

        self._finish.append(finish)

    def _fraction(self, obj: Any, name: str, n: int) -> None:
        value = getattr(obj, name).to(torch.float64)
        at = self._put(False, torch.stack((value * n, value.new_tensor(float(n)))))

        def finish(sums: torch.Tensor, maxes: torch.Tensor) -> None:
            part, whole = sums[at]
            setattr(obj, name, (part / whole).float())

        self._finish.append(finish)

    def _minimum(
        self, obj: Any, name: str, finish: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> None:
        value = getattr(obj, name)
        at = self._put(True, -value.float())
        shape = value.shape

        def done(sums: torch.Tensor, maxes: torch.Tensor) -> None:
            low = (-maxes[at]).float().reshape(shape)
            setattr(obj, name, low if finish is None else finish(low))

        self._finish.append(done)

    def run(self) -> None:
        """One SUM and one MAX all-reduce (each only if it has values), then unpack in place."""
        device = _device()
        empty = torch.zeros(0, dtype=torch.float64, device=device)
        sums = torch.cat([v.to(device) for v in self._sums]) if self._sums else empty
        maxes = torch.cat([v.to(device) for v in self._maxes]) if self._maxes else empty
        if sums.numel():
            dist.all_reduce(sums)
        if maxes.numel():
            dist.all_reduce(maxes, op=dist.ReduceOp.MAX)
        for finish in self._finish:
            finish(sums, maxes)
