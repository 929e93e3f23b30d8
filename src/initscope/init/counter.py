r"""A counter-based generator: every element's value is a function of (key, its global index).

Layout-invariant initialization (``initialize(model, seed=S, layout_invariant=True)``) needs the
value of element ``i`` of a parameter to depend on nothing but the random seed, the parameter's path
and ``i``: not on how the tensor is sharded, on which rank or device it is drawn, or on what was
drawn before. A sequential generator (torch's Mersenne Twister / Philox offsets) cannot do that;
a counter-based one can. Construction:

* **Bits.** Philox-4x32-10 (Salmon, Moraes, Dror & Shaw 2011, "Parallel random numbers: as easy
  as 1, 2, 3", SC'11): a bijection of a 128-bit counter ``(c0, c1, c2, c3)`` under a 64-bit key
  ``(k0, k1)``, ten rounds of two 32x32->64-bit multiplications (multipliers ``0xD2511F53``,
  ``0xCD9E8D57``) with the key bumped by the Weyl constants ``0x9E3779B9``, ``0xBB67AE85``. It
  passes BigCrush. Written here with vectorized int64 torch ops (a 32-bit word times a 32-bit
  multiplier wraps modulo 2^64, which keeps the low 64 bits of the product exact), so it runs on
  any device torch runs on. The output matches the Random123 known-answer vectors (tested).
* **Key.** ``(k0, k1)`` are the first 8 bytes of BLAKE2b(``"{seed}/{path}/{step}"``): one
  independent stream per parameter and per step of its plan.
* **Counter.** ``(block mod 2^32, block div 2^32, round, 0)``: ``block = i // m``, with ``m``
  elements per block (4 in single precision, 2 in double), and ``round`` the rejection round.
* **Uniform.** float32: the low 24 bits of a word times ``2^-24`` (in ``[0, 1)``); float64: 53
  bits from two words. float16/bfloat16 are drawn in float32 and rounded.
* **Normal.** Box-Muller (1958), one pair of numbers from two words (float32: words 0, 1 and
  2, 3 of a block; float64: all four): a radius integer ``R`` (odd, 24 or 53 bits, so
  ``u = R 2^-bits`` is in ``(0, 1)``), an angle integer ``A`` (``psi = A 2^-bits pi/4`` in
  ``[0, pi/4)``) and two sign bits. ``r = sqrt(-2 log u)`` and ``(r cos phi, r sin phi)``,
  ``phi = 2 psi``, with the signs choosing the quadrant (the planar normal law is symmetric
  under both reflections, so the angle is uniform on the circle). ``log u = (e - bits) log 2
  + 2 atanh((m - 1)/(m + 1))`` with ``R = m 2^e``, ``m`` in ``[1/sqrt 2, sqrt 2)`` read from
  the IEEE 754 fields; ``sin psi`` by its Taylor series, ``cos psi = sqrt(1 - sin^2 psi)``
  (at least ``1/sqrt 2``: no cancellation), ``cos phi = (cos psi - sin psi)(cos psi + sin
  psi)``, ``sin phi = 2 sin psi cos psi``. Only ``+ - * /`` and ``sqrt``, which IEEE 754
  rounds exactly in every implementation, and integer operations: library ``log``/``sin``
  differ by an ulp between the vectorized and the scalar code paths of one machine (where a
  shard's tail falls), and between machines. ``|z| <= 5.77`` in single precision, ``8.57`` in
  double; the mass beyond is ``8e-9`` and ``1e-17``. The standard deviation multiplies ``r``.
* **Truncated normal.** Exact rejection, element by element: element ``i`` takes the first of
  its draws ``round = 0, 1, 2, ...`` that falls inside the bounds (only the rejected elements
  are drawn again). Intervals of probability below 0.3 are refused.
* **Orthogonal, sparse, delta-orthogonal** need the whole matrix: every process computes the
  global Gaussian matrix (float64 QR, signs from ``diag R``, Mezzadri 2007) and keeps its box;
  its memory is the global parameter's. Values are bit-identical across shardings within one
  machine; across machines they can differ where the LAPACK QR does.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from initscope.init._fans import Fans
from initscope.init._philox import (
    block_values,
    chunk_elements,
    per_block,
    philox4x32,
    reusing_workspaces,
    run_values,
)
from initscope.init.registry import Law, record
from initscope.init.shards import Region

__all__ = [
    "CounterSpec",
    "check_counter_dtype",
    "counter_fill_",
    "counter_spec",
    "key_words",
    "philox4x32",
    "reusing_workspaces",
]

_MIN_MASS = 0.3


def key_words(seed: int, path: str, step: int = 0) -> tuple[int, int]:
    """The Philox key of (``seed``, parameter ``path``, plan ``step``): two 32-bit words."""
    digest = hashlib.blake2b(f"{seed}/{path}/{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:], "little")


def _values_at(
    kind: str, index: torch.Tensor, key: tuple[int, int], stream: int, dtype: torch.dtype
) -> torch.Tensor:
    """The standard numbers of ``kind`` at global element indices ``index`` (any order, 1-D),
    a step of ``chunk_elements()`` indices at a time."""
    m = per_block(dtype)
    out = torch.empty(index.numel(), dtype=dtype, device=index.device)
    step = chunk_elements(index.device)
    for i in range(0, index.numel(), step):
        part = index[i : i + step]
        v = block_values(kind, part // m, key, stream, dtype)
        out[i : i + step] = v.gather(1, (part % m).unsqueeze(1)).squeeze(1)
    return out


def _runs(shape: tuple[int, ...], offsets: tuple[int, ...], sizes: tuple[int, ...]):
    """The box as equal runs of consecutive global flat indices: ``(starts, length)``."""
    n = len(shape)
    if n == 0:
        return torch.zeros(1, dtype=torch.int64), 1
    d = n - 1
    while d > 0 and sizes[d] == shape[d] and offsets[d] == 0:
        d -= 1
    strides = [math.prod(shape[j + 1 :]) for j in range(n)]
    length = sizes[d] * strides[d]
    starts = torch.tensor([offsets[d] * strides[d]], dtype=torch.int64)
    for j in range(d - 1, -1, -1):
        axis = (offsets[j] + torch.arange(sizes[j], dtype=torch.int64)) * strides[j]
        starts = (axis[:, None] + starts[None, :]).reshape(-1)
    return starts, length


#: ``write(rows, cols, values, index)``: ``values`` for the grid's ``[rows, cols]``, ``index``
#: the global flat index of each row's first column; ``values`` may be a work buffer that the
#: next piece overwrites.
Writer = Callable[[slice, slice, torch.Tensor, torch.Tensor], None]


def _draw(
    kind: str,
    shape: tuple[int, ...],
    offsets: tuple[int, ...],
    sizes: tuple[int, ...],
    key: tuple[int, int],
    dtype: torch.dtype,
    device: torch.device,
    scale: float,
    shift: float,
    write: Writer,
) -> None:
    """Draw the box as a ``(runs, length)`` grid, in pieces of at most ``chunk_elements()``
    numbers, and hand each piece to ``write``: a long run in whole Philox blocks from its
    first, short runs several at a time."""
    starts, length = _runs(shape, offsets, sizes)
    m = per_block(dtype)
    chunk = max(chunk_elements(device), m)
    if length >= chunk:
        for r, s in enumerate(starts.tolist()):
            for b in range(s // m, -(-(s + length) // m), chunk // m):
                _run_piece(
                    kind, s, length, b, chunk // m, key, dtype, device, scale, shift, r, write
                )
        return
    rows = max(1, chunk // length)
    for r0 in range(0, starts.numel(), rows):
        st = starts[r0 : r0 + rows].to(device)
        _short_runs(kind, st, r0, length, key, dtype, scale, shift, write)


def _run_piece(
    kind, start, length, block, blocks, key, dtype, device, scale, shift, run, write
) -> None:
    """Blocks ``block ..`` (at most ``blocks``) of the run of ``length`` numbers at ``start``."""
    m = per_block(dtype)
    end = min(block + blocks, -(-(start + length) // m))
    lo, hi = max(block * m, start), min(end * m, start + length)
    v = run_values(kind, block, end - block, key, 0, dtype, device, scale, shift)
    values = v.reshape(1, -1)[:, lo - block * m : hi - block * m]
    index = torch.full((1,), lo, dtype=torch.int64, device=device)
    write(slice(run, run + 1), slice(lo - start, hi - start), values, index)


def _short_runs(kind, st, r0, length, key, dtype, scale, shift, write) -> None:
    """Runs ``r0 ..`` (starting at global indices ``st``), all ``length`` numbers at once."""
    m = per_block(dtype)
    off = st % m
    nb = -(-length // m) + (0 if not bool(off.any()) else 1)
    blocks = (st // m)[:, None] + torch.arange(nb, device=st.device)
    v = block_values(kind, blocks, key, 0, dtype, scale, shift).reshape(st.numel(), nb * m)
    v = v.gather(1, off[:, None] + torch.arange(length, device=st.device))
    write(slice(r0, r0 + st.numel()), slice(0, length), v, st)


#: What a scheme draws, resolved from its arguments and fans (the scheme record's law).
CounterSpec = Law


def counter_spec(
    scheme: str, params: Mapping[str, Any], fans: Fans | None, shape: tuple[int, ...]
) -> CounterSpec:
    """The distribution ``scheme`` with ``params`` draws on a (global) tensor of ``shape``.

    The scheme's record says it (:meth:`~initscope.init.registry.SchemeRecord.law`); fans are
    ``fans`` when given, else torch's rule on ``shape``. Raises ``ValueError`` for an unknown
    scheme, one whose record has no law, and what the counter generator does not do (a
    truncated normal whose interval has probability below 0.3).
    """
    law = record(scheme).law(params, fans, shape)
    if law.family == "truncated":
        alpha, beta = law.args["alpha"], law.args["beta"]
        mass = 0.5 * (math.erfc(-beta / math.sqrt(2)) - math.erfc(-alpha / math.sqrt(2)))
        if mass < _MIN_MASS:
            raise ValueError(
                f"{scheme}: layout-invariant truncated normals need an interval of probability "
                f">= {_MIN_MASS}, got {mass:.3g} (bounds {alpha:g}, {beta:g} in std units)"
            )
    return law


def check_counter_dtype(dtype: torch.dtype, path: str) -> None:
    """``TypeError`` unless the counter generator can fill ``dtype`` (real floating point)."""
    if not dtype.is_floating_point:
        raise TypeError(
            f"parameter {path}: layout-invariant values need a real floating-point dtype, "
            f"got {dtype}"
        )


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def counter_fill_(
    region: Region,
    scheme: str,
    params: Mapping[str, Any],
    fans: Fans | None,
    rows: tuple[int, int] | None,
    key: tuple[int, int],
) -> None:
    """Fill ``region.local`` (restricted to the global rows ``rows`` when given) with the
    values ``scheme`` gets from the counter generator under ``key``: element ``i`` of the
    (block's) global tensor gets the same value whatever box of it ``region`` holds."""
    shape, offsets, local = region.shape, region.offsets, region.local
    if rows is not None:
        lo = max(rows[0], offsets[0])
        hi = min(rows[1], offsets[0] + local.shape[0])
        if hi <= lo:
            return
        local = local[lo - offsets[0] : hi - offsets[0]]
        shape = (rows[1] - rows[0], *shape[1:])
        offsets = (lo - rows[0], *offsets[1:])
    if local.numel() == 0:
        return
    spec = counter_spec(scheme, params, fans, shape)
    args = spec.args
    dtype = _compute_dtype(local.dtype)
    sizes = tuple(local.shape)
    if spec.family == "constant":
        local.fill_(args["value"])
        return
    if spec.family in ("orthogonal", "delta_orthogonal", "sparse", "eye", "dirac"):
        full = _global_matrix(spec, shape, key, local.dtype, local.device)
        box = tuple(slice(o, o + s) for o, s in zip(offsets, sizes, strict=True))
        local.copy_(full[box])
        return
    grid = _as_grid(local, shape, offsets, sizes)
    kind = "uniform" if spec.family == "uniform" else "normal"
    scale, shift = (
        (args["b"] - args["a"], args["a"]) if kind == "uniform" else (args["std"], args["mean"])
    )
    truncated = spec.family == "truncated"
    redraw: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def write(rs: slice, cs: slice, v: torch.Tensor, first: torch.Tensor) -> None:
        if truncated:  # v standard: keep the elements to draw again, then scale and clamp
            bad = ((v < args["alpha"]) | (v > args["beta"])).nonzero()
            if bad.numel():
                run = bad[:, 0]
                redraw.append((run + rs.start, bad[:, 1] + cs.start, first[run] + bad[:, 1]))
            v = v.mul(scale).add_(shift)
            v = v.clamp_(shift + args["alpha"] * scale, shift + args["beta"] * scale)
        grid.target[rs, cs] = v

    draw_scale, draw_shift = (1.0, 0.0) if truncated else (scale, shift)
    with reusing_workspaces():
        _draw(kind, shape, offsets, sizes, key, dtype, local.device, draw_scale, draw_shift, write)
    if redraw:
        at_run, at_col, index = (torch.cat(parts) for parts in zip(*redraw, strict=True))
        z = _redraw_truncated(index, key, args["alpha"], args["beta"], dtype)
        grid.target[at_run, at_col] = (
            z.mul_(scale)
            .add_(shift)
            .clamp_(shift + args["alpha"] * scale, shift + args["beta"] * scale)
            .to(grid.target.dtype)
        )
    grid.finish()


def _redraw_truncated(
    index: torch.Tensor, key: tuple[int, int], alpha: float, beta: float, dtype: torch.dtype
) -> torch.Tensor:
    """For elements whose first draw fell outside ``[alpha, beta]``: the first draw inside, of
    rounds 1, 2, ... (each element's rounds are its own: exact rejection sampling)."""
    out = torch.empty(index.numel(), dtype=dtype, device=index.device)
    todo = torch.arange(index.numel(), device=index.device)
    stream = 0
    while todo.numel():
        stream += 1
        z = _values_at("normal", index[todo], key, stream, dtype)
        ok = (z >= alpha) & (z <= beta)
        out[todo[ok]] = z[ok]
        todo = todo[~ok]
    return out


@dataclass
class _Grid:
    target: torch.Tensor
    local: torch.Tensor

    def finish(self) -> None:
        if self.target is not self.local:
            self.local.copy_(self.target.reshape(self.local.shape))


def _as_grid(local: torch.Tensor, shape, offsets, sizes) -> _Grid:
    """A ``(runs, length)`` view of ``local`` (or a contiguous work copy, written back)."""
    _, length = _runs(shape, offsets, sizes)
    n_runs = local.numel() // max(length, 1)
    if local.is_contiguous():
        return _Grid(local.view(n_runs, length), local)
    return _Grid(torch.empty((n_runs, length), dtype=local.dtype, device=local.device), local)


def _global_matrix(
    spec: CounterSpec,
    shape: tuple[int, ...],
    key: tuple[int, int],
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """The whole tensor of ``shape`` for the schemes that need it (QR, column masks, patterns)."""
    from initscope.init import dirac_, eye_

    out = torch.zeros(shape, dtype=dtype, device=device)
    if spec.family == "eye":
        return eye_(out)
    if spec.family == "dirac":
        return dirac_(out, int(spec.args["groups"]))
    if spec.family == "sparse":
        rows, cols = shape
        z = _full(shape, "normal", key, 0, torch.float64, device) * spec.args["std"]
        n_zero = math.ceil(spec.args["sparsity"] * rows)
        if n_zero:
            u = _full(shape, "uniform", key, 1, torch.float64, device)
            order = u.argsort(dim=0, stable=True)[:n_zero]
            z.scatter_(0, order, 0.0)
        return out.copy_(z)
    gain = spec.args["gain"]
    if spec.family == "orthogonal":
        rows = shape[0]
        q = _orthogonal(rows, math.prod(shape) // rows, key, device)
        return out.copy_(q.mul_(gain).reshape(shape))
    q = _orthogonal(shape[0], shape[1], key, device).mul_(gain)
    centre = (slice(None), slice(None)) + tuple(k // 2 for k in shape[2:])
    out[centre] = q.to(dtype)
    return out


def _full(shape, kind, key, stream, dtype, device) -> torch.Tensor:
    """The whole tensor of ``shape``: the numbers of blocks ``0 ..`` in order."""
    n = math.prod(shape)
    blocks = torch.arange(-(-n // per_block(dtype)), device=device)
    return block_values(kind, blocks, key, stream, dtype).reshape(-1)[:n].reshape(shape)


def _orthogonal(rows: int, cols: int, key: tuple[int, int], device) -> torch.Tensor:
    """Haar ``rows x cols`` matrix with orthonormal rows or columns, float64 QR."""
    a = _full((rows, cols), "normal", key, 0, torch.float64, device)
    if rows < cols:
        a = a.t()
    q, r = torch.linalg.qr(a)
    q = q * torch.diagonal(r).sign()
    return q.t() if rows < cols else q
