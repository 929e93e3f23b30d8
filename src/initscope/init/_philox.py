"""Philox-4x32-10 in torch integer operations, and the numbers made from its words.

The bits (:func:`philox4x32`, Salmon, Moraes, Dror & Shaw 2011, "Parallel random numbers: as
easy as 1, 2, 3") and their conversion to uniform and standard normal numbers with exactly
rounded operations only; :mod:`initscope.init.counter` explains the construction and uses it.

Speed comes from doing few, large, in-place operations: the rounds are evaluated once on
Python integers where a word is still the same for every block (the stream and the high
counter word make the first three rounds mostly constant), the 32-bit mask is applied only to
a word about to be multiplied, Box-Muller runs on both pairs of a block at once, and on CPU
every operation is large enough to split across torch's intra-op threads, while the work
buffers are reused from chunk to chunk and parameter to parameter (:func:`reusing_workspaces`).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "Workspace",
    "block_values",
    "chunk_elements",
    "per_block",
    "philox4x32",
    "reusing_workspaces",
    "run_values",
]


_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK = 0xFFFFFFFF
_ROUNDS = 10
_LN2 = math.log(2.0)


def chunk_elements(device: torch.device | None = None) -> int:
    """Numbers drawn per step on ``device`` (default CPU). On CPU 2^18 with one intra-op
    thread, 2^19 with several (every operation then splits across the threads; its work
    buffers, about 40 bytes per number, stay in the last-level cache), 2^21 elsewhere (84 MiB
    of buffers). The step size does not change the values, only the speed."""
    if device is not None and device.type != "cpu":
        return 1 << 21
    return 1 << 18 if torch.get_num_threads() == 1 else 1 << 19


def philox4x32(
    counter: tuple[Any, Any, Any, Any], key: tuple[int, int], rounds: int = _ROUNDS
) -> tuple[Any, Any, Any, Any]:
    """Philox-4x32-``rounds`` of ``counter`` under ``key`` (Salmon et al. 2011).

    Each word is an int64 tensor or a Python int holding a value in ``[0, 2^32)``; tensors
    broadcast. Returns the four output words the same way. The reference form; fills use an
    in-place equivalent (:func:`_philox_`).
    """
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
        p0 = c0 * _M0
        p1 = c2 * _M1
        c0, c1, c2, c3 = (
            ((p1 >> 32) & _MASK) ^ c1 ^ k0,
            p1 & _MASK,
            ((p0 >> 32) & _MASK) ^ c3 ^ k1,
            p0 & _MASK,
        )
    return c0, c1, c2, c3


# ------------------------------------------------------------------------ the rounds, in place


@dataclass(frozen=True)
class _Row:
    """A word held in row ``i`` of the work buffer; only its low 32 bits are the word's
    unless ``clean`` (then bits 32..63 are zero)."""

    i: int
    clean: bool


_Word = int | _Row


def _philox_(
    buf: tuple[torch.Tensor, ...], counter: list[_Word], key: tuple[int, int]
) -> list[_Word]:
    """Philox-4x32-10 of ``counter`` in the five int64 rows ``buf``: a word is a Python int
    when it is the same for every block (it is then computed once), else a row of ``buf``.
    Returns the four output words (rows hold them in their low 32 bits)."""
    free = [i for i in range(5) if all(not (isinstance(w, _Row) and w.i == i) for w in counter)]
    c0, c1, c2, c3 = counter
    k0, k1 = key

    def mul(w: _Word, m: int) -> _Word:
        if isinstance(w, int):
            return w * m
        row = buf[w.i]
        if not w.clean:
            row.bitwise_and_(_MASK)
        row.mul_(m)  # exact modulo 2^64
        return _Row(w.i, False)

    def hi_xor(p: _Word, c: _Word, k: int) -> _Word:
        if isinstance(p, int):
            h = (p >> 32) ^ k
            if isinstance(c, int):
                return h ^ c
            buf[c.i].bitwise_xor_(h)
            return c
        i = free.pop()
        torch.bitwise_right_shift(buf[p.i], 32, out=buf[i])  # arithmetic: low 32 bits exact
        if isinstance(c, int):
            buf[i].bitwise_xor_(c ^ k)
        else:
            buf[i].bitwise_xor_(buf[c.i]).bitwise_xor_(k)
            free.append(c.i)
        return _Row(i, False)

    for r in range(_ROUNDS):
        if r:
            k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
        p0, p1 = mul(c0, _M0), mul(c2, _M1)
        n0 = hi_xor(p1, c1, k0)
        n2 = hi_xor(p0, c3, k1)
        c0, c1, c2, c3 = (
            n0,
            p1 & _MASK if isinstance(p1, int) else p1,
            n2,
            (p0 & _MASK if isinstance(p0, int) else p0),
        )
    return [c0, c1, c2, c3]


# ------------------------------------------------------------------------ bits -> numbers


@dataclass(frozen=True)
class _Format:
    """What the numbers of one floating-point format are made of."""

    dtype: torch.dtype
    bits: int  # random bits of a uniform: the significand's
    as_int: torch.dtype  # the integer type of the same width (the IEEE 754 fields)
    fraction: int  # bits of the stored fraction
    inv_sqrt2: int  # the bit pattern of 1/sqrt(2)
    log_terms: int  # terms of 2 atanh(s) / (2 s), |s| <= 3 - 2 sqrt 2
    sin_terms: int  # Taylor terms of sin x / x on [0, pi/4]
    pairs: int  # Box-Muller pairs per block


_F32 = _Format(torch.float32, 24, torch.int32, 23, 0x3F3504F3, 5, 5, 2)
_F64 = _Format(torch.float64, 53, torch.int64, 52, 0x3FE6A09E667F3BCD, 11, 9, 1)


def _format(dtype: torch.dtype) -> _Format:
    return _F64 if dtype == torch.float64 else _F32


def per_block(dtype: torch.dtype) -> int:
    """Elements per Philox block: four 32-bit words make 4 float32 or 2 float64 numbers."""
    return 2 if dtype == torch.float64 else 4


class Workspace:
    """Buffers for up to ``n`` blocks in one compute ``dtype`` (float32 or float64), reused
    chunk after chunk: on CPU, fresh large tensors cost a page fault per 4 KiB, more than the
    arithmetic done in them."""

    def __init__(self, n: int, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        fmt = _format(dtype)
        p = fmt.pairs
        self.n, self.fmt = n, fmt
        i64 = torch.int64
        self._words = torch.empty(5 * n, dtype=i64, device=device)
        self._ints = torch.empty(3 * p * n, dtype=i64, device=device)
        self._exponent = torch.empty(p * n, dtype=fmt.as_int, device=device)
        self._f = torch.empty(6 * p * n, dtype=fmt.dtype, device=device)
        self._out = torch.empty(per_block(dtype) * n, dtype=fmt.dtype, device=device)

    def take(self, n: int) -> _Views:
        """Contiguous views for ``n <= self.n`` blocks."""
        p = self.fmt.pairs
        ints = self._ints[: 3 * p * n].view(3, p, n)
        f = self._f[: 6 * p * n].view(6, p, n)
        return _Views(
            words=self._words[: 5 * n].view(5, n).unbind(0),
            ints=[ints[0], ints[1], ints[2]],
            exponent=self._exponent[: p * n].view(p, n),
            f=[f[j] for j in range(6)],
            out=self._out[: per_block(self.fmt.dtype) * n].view(n, -1),
        )


@dataclass(frozen=True)
class _Views:
    words: tuple[torch.Tensor, ...]  # 5 x (n,) int64: the four words and a spare row
    ints: list[torch.Tensor]  # 3 x (pairs, n) int64
    exponent: torch.Tensor  # (pairs, n), the format's integer type: sign bits, exponents
    f: list[torch.Tensor]  # 6 x (pairs, n), the format's float type
    out: torch.Tensor  # (n, per_block) staging for the numbers


_kept = threading.local()


@contextlib.contextmanager
def reusing_workspaces() -> Iterator[None]:
    """Within this context (on this thread), one :class:`Workspace` per device and dtype is
    kept from fill to fill; it is released on leaving the outermost one."""
    outer = getattr(_kept, "store", None)
    if outer is None:
        _kept.store = {}
    try:
        yield
    finally:
        if outer is None:
            _kept.store = None


def _workspace(n: int, device: torch.device, dtype: torch.dtype) -> Workspace:
    """A workspace for ``n`` blocks: the kept one when :func:`reusing_workspaces` is active
    and it is large enough, else a fresh one (kept if the context is active)."""
    store: dict[tuple[torch.device, torch.dtype], Workspace] | None = getattr(_kept, "store", None)
    if store is None:
        return Workspace(n, device, dtype)
    ws = store.get((device, dtype))
    if ws is None or ws.n < n:
        ws = store[(device, dtype)] = Workspace(n, device, dtype)
    return ws


def _counter(
    v: _Views, start: int | None, blocks: torch.Tensor | None, n: int, stream: int
) -> list[_Word]:
    """The counters ``(block lo, block hi, stream, 0)`` of blocks ``start ..`` (a run) or of
    ``blocks`` (int64, any order), written into the rows of ``v.words``."""
    w = v.words
    if blocks is None:
        assert start is not None
        hi = start >> 32
        if (start + n - 1) >> 32 == hi:
            lo = start & _MASK
            torch.arange(lo, lo + n, out=w[0])
            return [_Row(0, True), hi, stream, 0]
        blocks = torch.arange(start, start + n, device=w[0].device)
    torch.bitwise_and(blocks, _MASK, out=w[0])
    torch.bitwise_right_shift(blocks, 32, out=w[1])
    return [_Row(0, True), _Row(1, True), stream, 0]


def _rows(v: _Views, words: list[_Word]) -> list[torch.Tensor]:
    """The four output words as ``(n,)`` int64 tensors (low 32 bits): after three rounds
    every word depends on the block, so each is a row."""
    return [v.words[x.i] for x in words if isinstance(x, _Row)]


def _uniform_(v: _Views, words: list[torch.Tensor], fmt: _Format, scale: float, shift: float):
    """``out[:, j] = k_j 2^-bits scale + shift``: float32, ``k_j`` the low 24 bits of word
    ``j``; float64, ``k`` 53 bits from words (0, 1) and (2, 3)."""
    out = v.out
    if fmt.dtype == torch.float32:
        k = v.ints[0][0]
        for j, word in enumerate(words):
            torch.bitwise_and(word, 0xFFFFFF, out=k)
            out[:, j].copy_(k).mul_(scale * 2.0**-24)  # in float32 whatever the default dtype
    else:
        k = v.ints[0][0]
        for j in range(2):
            _bits53(words[2 * j], words[2 * j + 1], k, v.ints[1][0])
            out[:, j].copy_(k).mul_(scale * 2.0**-53)  # exact conversion: k < 2^53
    if shift:
        out.add_(shift)


def _bits53(high: torch.Tensor, low: torch.Tensor, out: torch.Tensor, tmp: torch.Tensor) -> None:
    """``out = (high mod 2^32) 2^21 + (low mod 2^32) div 2^11``: 53 bits."""
    torch.bitwise_and(high, _MASK, out=out).bitwise_left_shift_(21)
    torch.bitwise_and(low, _MASK, out=tmp).bitwise_right_shift_(11)
    out.bitwise_or_(tmp)


def _normal_(v: _Views, words: list[torch.Tensor], fmt: _Format, scale: float, shift: float):
    """Box-Muller with ``+ - * /``, ``sqrt`` and integer operations only, into ``v.out``.

    Per pair: a radius integer ``R`` (odd, ``bits`` bits: ``u = R 2^-bits`` in ``(0, 1)``),
    an angle integer ``A`` (``psi = A 2^-bits pi/4`` in ``[0, pi/4)``) and two sign bits.
    ``r = sqrt(-2 log u)`` with ``log u = (e - bits) log 2 + 2 atanh((m - 1)/(m + 1))`` from
    ``R = m 2^e``, ``m`` in ``[1/sqrt 2, sqrt 2)``; ``sin psi`` by its Taylor series,
    ``cos psi = sqrt(1 - sin^2 psi)``; ``phi = 2 psi`` in ``[0, pi/2)`` by the double-angle
    formulas, and the signs place it in one of the four quadrants. Returns nothing: lanes
    ``2j, 2j + 1`` of ``v.out`` get ``(r cos theta, r sin theta)`` of pair ``j``.
    """
    radius, angle = v.ints[0], v.ints[1]
    signs = v.exponent  # the format's integer type; holds the exponent later
    f0, f1, f2, f3, f4, f5 = v.f
    if fmt.dtype == torch.float32:  # pair j: radius word 2j, angle word 2j + 1
        for j in range(2):
            torch.bitwise_right_shift(words[2 * j], 24, out=signs[j])  # low 8 bits: 24..31
            torch.bitwise_and(words[2 * j], 0xFFFFFF, out=radius[j])
            torch.bitwise_and(words[2 * j + 1], 0xFFFFFF, out=angle[j])
        sign_bit = 7
    else:  # radius from words (0, 1), angle from (2, 3); signs: the low 11 bits of word 1
        _bits53(words[0], words[1], radius[0], angle[0])
        torch.bitwise_and(words[1], 0x7FF, out=signs[0])
        _bits53(words[2], words[3], angle[0], v.ints[2][0])
        sign_bit = 10
    # two sign bits moved to the sign position of f0 and f1 (copysign reads nothing else)
    width = 8 * fmt.dtype.itemsize
    torch.bitwise_left_shift(signs, width - 1 - sign_bit, out=f0.view(fmt.as_int))
    torch.bitwise_left_shift(signs, width - sign_bit, out=f1.view(fmt.as_int))
    radius.bitwise_or_(1)
    e = signs
    # -2 log u: R = m 2^e with m in [1/sqrt 2, sqrt 2) from the IEEE 754 fields
    f2.copy_(radius)  # exact: R < 2^bits
    bits = f2.view(fmt.as_int)
    torch.sub(bits, fmt.inv_sqrt2, out=e)
    torch.bitwise_and(e, (1 << fmt.fraction) - 1, out=bits).add_(fmt.inv_sqrt2)
    e.bitwise_right_shift_(fmt.fraction)
    torch.sub(f2, 1, out=f3)
    f3.div_(f2.add_(1))  # s = (m - 1) / (m + 1)
    torch.mul(f3, f3, out=f4)  # z = s^2
    _series(f4, [-4.0 / (2 * k + 1) for k in range(fmt.log_terms)], f5).mul_(f3)  # -2 log m
    f2.copy_(e).mul_(-2 * _LN2).add_(2 * fmt.bits * _LN2)  # -2 (e - bits) log 2
    torch.sqrt(f5.add_(f2), out=f5)
    if scale != 1.0:
        f5.mul_(scale)
    torch.copysign(f5, f0, out=f0)
    torch.copysign(f5, f1, out=f1)
    # psi in [0, pi/4): sin by its series, cos = sqrt(1 - sin^2) (>= 1/sqrt 2: no cancellation)
    f2.copy_(angle).mul_(math.pi / 4 * 2.0**-fmt.bits)
    torch.mul(f2, f2, out=f3)
    sin_series = [(-1) ** k / math.factorial(2 * k + 1) for k in range(fmt.sin_terms)]
    _series(f3, sin_series, f4).mul_(f2)  # sin psi
    torch.mul(f4, f4, out=f3).mul_(-1).add_(1)
    torch.sqrt(f3, out=f3)  # cos psi
    torch.add(f4, f4, out=f5).mul_(f3)  # sin phi = 2 sin psi cos psi
    torch.sub(f3, f4, out=f2).mul_(f3.add_(f4))  # cos phi = (c - s)(c + s)
    pairs = v.out.unflatten(1, (fmt.pairs, 2)).permute(2, 1, 0)  # (cos/sin, pair, n)
    torch.mul(f0, f2, out=pairs[0])
    torch.mul(f1, f5, out=pairs[1])
    if shift:
        v.out.add_(shift)


def _series(z: torch.Tensor, coefficients: list[float], out: torch.Tensor) -> torch.Tensor:
    """``sum c_k z^k`` by Horner's rule, into ``out``."""
    torch.mul(z, coefficients[-1], out=out)
    out.add_(coefficients[-2])
    for c in reversed(coefficients[:-2]):
        out.mul_(z).add_(c)
    return out


def _numbers(
    kind: str,
    v: _Views,
    counter: list[_Word],
    key: tuple[int, int],
    fmt: _Format,
    scale: float,
    shift: float,
) -> torch.Tensor:
    words = _rows(v, _philox_(v.words, counter, key))
    (_normal_ if kind == "normal" else _uniform_)(v, words, fmt, scale, shift)
    return v.out


def block_values(
    kind: str,
    blocks: torch.Tensor,
    key: tuple[int, int],
    stream: int,
    dtype: torch.dtype,
    scale: float = 1.0,
    shift: float = 0.0,
) -> torch.Tensor:
    """``(*blocks.shape, per_block)`` numbers of ``kind`` (``"uniform"`` or ``"normal"``, times
    ``scale`` plus ``shift``) of the int64 block indices ``blocks``, in ``dtype``."""
    flat = blocks.reshape(-1)
    fmt = _format(dtype)
    m = per_block(fmt.dtype)
    out = torch.empty(flat.numel(), m, dtype=fmt.dtype, device=flat.device)
    step = max(1, chunk_elements(flat.device) // 4)
    ws = _workspace(min(step, max(flat.numel(), 1)), flat.device, fmt.dtype)
    for i in range(0, flat.numel(), step):
        part = flat[i : i + step]
        v = ws.take(part.numel())
        out[i : i + step] = _numbers(
            kind, v, _counter(v, None, part, part.numel(), stream), key, fmt, scale, shift
        )
    return out.reshape(*blocks.shape, m)


def run_values(
    kind: str,
    start: int,
    n: int,
    key: tuple[int, int],
    stream: int,
    dtype: torch.dtype,
    device: torch.device,
    scale: float = 1.0,
    shift: float = 0.0,
) -> torch.Tensor:
    """The ``(n, per_block)`` numbers of blocks ``start .. start + n``: a view of a work buffer,
    valid until the next draw (within :func:`reusing_workspaces`)."""
    fmt = _format(dtype)
    v = _workspace(n, device, fmt.dtype).take(n)
    return _numbers(kind, v, _counter(v, start, None, n, stream), key, fmt, scale, shift)
