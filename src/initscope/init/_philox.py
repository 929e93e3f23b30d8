"""Philox-4x32-10 in torch integer operations, and the numbers made from its words.

The bits (:func:`philox4x32`, Salmon, Moraes, Dror & Shaw 2011, "Parallel random numbers: as
easy as 1, 2, 3") and their conversion to uniform and standard normal numbers with exactly
rounded operations only; :mod:`initscope.init.counter` explains the construction and uses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Workspace", "block_values", "chunk_elements", "per_block", "philox4x32"]


_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK = 0xFFFFFFFF
_ROUNDS = 10
_LN2 = math.log(2.0)
_HALF_PI = math.pi / 2


def chunk_elements() -> int:
    """Numbers drawn per vectorized step. With one intra-op thread, 2^20: each torch operation
    then costs far more than its dispatch. With several, 2^15: every operation stays below
    torch's parallel grain (32768), since a parallel region per small operation stalls whenever
    another process holds a core (the work buffers are reused, so the step size does not change
    the values, only the speed)."""
    return 1 << 20 if torch.get_num_threads() == 1 else 1 << 15


def philox4x32(
    counter: tuple[Any, Any, Any, Any], key: tuple[int, int], rounds: int = _ROUNDS
) -> tuple[Any, Any, Any, Any]:
    """Philox-4x32-``rounds`` of ``counter`` under ``key`` (Salmon et al. 2011).

    Each word is an int64 tensor or a Python int holding a value in ``[0, 2^32)``; tensors
    broadcast. Returns the four output words the same way. The reference form; fills use an
    in-place equivalent (``_words``).
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


# ---------------------------------------------------------------------- bits -> numbers


def _words(
    blocks: torch.Tensor, key: tuple[int, int], stream: int, ws: Workspace | None = None
) -> tuple[torch.Tensor, ...]:
    """:func:`philox4x32` of the counters ``(block lo, block hi, stream, 0)`` for the 1-D int64
    ``blocks``, computed in place in one ``(4, n)`` buffer (a fresh tensor per operation costs
    more than the arithmetic); returns the four output words (rows of that buffer)."""
    n = blocks.numel()
    ws = ws if ws is not None else Workspace(n, blocks.device)
    views = ws.take(n)
    buf, scratch = views.words, views.scratch
    torch.bitwise_and(blocks, _MASK, out=buf[0])
    torch.bitwise_right_shift(blocks, 32, out=buf[1])
    buf[2].fill_(stream)
    buf[3].zero_()
    c = [buf[0], buf[1], buf[2], buf[3]]
    keys = ws.keys(key)
    mask = ws.mask
    for r in range(_ROUNDS):
        c[0].mul_(ws.m0)  # c0 * M0, exact modulo 2^64
        c[2].mul_(ws.m1)
        torch.bitwise_right_shift(c[2], 32, out=scratch)
        c[1].bitwise_xor_(scratch.bitwise_and_(mask)).bitwise_xor_(keys[r, 0])  # hi1^c1^k0
        c[2].bitwise_and_(mask)  # lo1
        torch.bitwise_right_shift(c[0], 32, out=scratch)
        c[3].bitwise_xor_(scratch.bitwise_and_(mask)).bitwise_xor_(keys[r, 1])  # hi0^c3^k1
        c[0].bitwise_and_(mask)  # lo0
        c = [c[1], c[2], c[3], c[0]]
    return tuple(c)


@dataclass(frozen=True)
class _Views:
    """Contiguous views of a :class:`Workspace`'s buffers for ``n`` blocks."""

    words: torch.Tensor  # (4, n) int64
    scratch: torch.Tensor  # (n,) int64
    octant: torch.Tensor  # (2, n) int64
    exponent: torch.Tensor  # (2, n) int32
    flag: torch.Tensor  # (2, n) bool
    f: list[torch.Tensor]  # 7 x (2, n) float32


class Workspace:
    """Buffers for ``n`` blocks, reused chunk after chunk: on CPU, fresh large tensors cost a
    page fault per 4 KiB, more than the arithmetic done in them."""

    def __init__(self, n: int, device: torch.device) -> None:
        i64, f32 = torch.int64, torch.float32
        self.n = n
        self._words = torch.empty(4 * n, dtype=i64, device=device)
        self._scratch = torch.empty(n, dtype=i64, device=device)
        self._octant = torch.empty(2 * n, dtype=i64, device=device)
        self._exponent = torch.empty(2 * n, dtype=torch.int32, device=device)
        self._flag = torch.empty(2 * n, dtype=torch.bool, device=device)
        self._f = [torch.empty(2 * n, dtype=f32, device=device) for _ in range(7)]
        self.m0 = torch.tensor(_M0, dtype=i64, device=device)
        self.m1 = torch.tensor(_M1, dtype=i64, device=device)
        self.signs = torch.tensor(_OCTANT_SIGNS, dtype=f32, device=device)
        self.mask = torch.tensor(_MASK, dtype=i64, device=device)
        self._keys: dict[tuple[int, int], torch.Tensor] = {}

    def keys(self, key: tuple[int, int]) -> torch.Tensor:
        """The round keys ``(rounds, 2)`` of ``key`` (bumped by the Weyl constants)."""
        if key not in self._keys:
            k0, k1, rows = key[0], key[1], []
            for _ in range(_ROUNDS):
                rows.append((k0, k1))
                k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
            self._keys = {key: torch.tensor(rows, dtype=torch.int64, device=self.mask.device)}
        return self._keys[key]

    def take(self, n: int) -> _Views:
        """Contiguous views for ``n <= self.n`` blocks."""
        return _Views(
            words=self._words[: 4 * n].view(4, n),
            scratch=self._scratch[:n],
            octant=self._octant[: 2 * n].view(2, n),
            exponent=self._exponent[: 2 * n].view(2, n),
            flag=self._flag[: 2 * n].view(2, n),
            f=[f[: 2 * n].view(2, n) for f in self._f],
        )


# (sin t, cos t) = (a s + b c, d s + e c) with s, c = sin x, cos x, x the angle folded onto
# [0, pi/4] in octant o = 2 * quadrant + (folded from the upper half of the quadrant).
_OCTANT_SIGNS = [
    [1, 0, 0, 1, -1, 0, 0, -1],  # a
    [0, 1, 1, 0, 0, -1, -1, 0],  # b
    [0, 1, -1, 0, 0, -1, 1, 0],  # d
    [1, 0, 0, -1, -1, 0, 0, 1],  # e
]


def _log(u: torch.Tensor) -> torch.Tensor:
    """``log u`` for ``u > 0`` from ``frexp`` and ``log m = 2 atanh s``, ``s = (m-1)/(m+1)``,
    ``m`` in ``[1/sqrt 2, sqrt 2)``: ``|s| <= 0.1716``, 5 (float32) or 11 (float64) terms."""
    m, e = torch.frexp(u)
    low = m < math.sqrt(0.5)
    m = torch.where(low, m * 2, m)
    e = (e - low.to(e.dtype)).to(u.dtype)
    s = (m - 1) / (m + 1)
    z = s * s
    terms = 11 if u.dtype == torch.float64 else 5
    poly = z * (1.0 / (2 * terms - 1)) + 1.0 / (2 * terms - 3)
    for k in range(terms - 3, -1, -1):
        poly = poly.mul_(z).add_(1.0 / (2 * k + 1))
    return e.mul_(_LN2).add_(poly.mul_(s).mul_(2))


def _sin_cos_small(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Taylor series of ``sin x`` and ``cos x`` for ``0 <= x <= pi/4`` (truncation error below
    ``2e-9`` in float32, ``1e-19`` in float64)."""
    z = x * x
    n = 9 if x.dtype == torch.float64 else 5
    sin = z * ((-1) ** (n - 1) / math.factorial(2 * n - 1)) + (-1) ** (n - 2) / math.factorial(
        2 * n - 3
    )
    cos = z * ((-1) ** n / math.factorial(2 * n)) + (-1) ** (n - 1) / math.factorial(2 * n - 2)
    for k in range(n - 3, -1, -1):
        sin = sin.mul_(z).add_((-1) ** k / math.factorial(2 * k + 1))
    for k in range(n - 2, -1, -1):
        cos = cos.mul_(z).add_((-1) ** k / math.factorial(2 * k))
    return sin.mul_(x), cos


def _sin_cos_turn(k: torch.Tensor, bits: int, dtype: torch.dtype):
    """``sin`` and ``cos`` of ``2 pi k / 2^bits`` for integers ``0 <= k < 2^bits``.

    The quadrant is the top two bits; within it the angle is folded onto ``[0, pi/4]`` with
    integer arithmetic, so the reduction is exact."""
    quarter = 1 << (bits - 2)
    q = k >> (bits - 2)
    r = k & (quarter - 1)
    upper = r > quarter // 2
    x = torch.where(upper, quarter - r, r).to(dtype).mul_(_HALF_PI / quarter)
    s, c = _sin_cos_small(x)
    swap = upper ^ (q & 1).bool()  # sin(pi/2 - x) = cos x, and a quadrant turn swaps again
    s, c = torch.where(swap, c, s), torch.where(swap, s, c)
    sin = torch.where(q >= 2, -s, s)
    cos = torch.where((q == 1) | (q == 2), -c, c)
    return sin, cos


def per_block(dtype: torch.dtype) -> int:
    """Elements per Philox block: four 32-bit words make 4 float32 or 2 float64 numbers."""
    return 2 if dtype == torch.float64 else 4


def block_values(
    kind: str,
    blocks: torch.Tensor,
    key: tuple[int, int],
    stream: int,
    dtype: torch.dtype,
    ws: Workspace | None = None,
) -> torch.Tensor:
    """``(*blocks.shape, per_block)`` numbers of ``kind`` (``"uniform"`` or ``"normal"``)."""
    shape = blocks.shape
    flat = blocks.reshape(-1)
    if dtype != torch.float64:
        ws = ws if ws is not None else Workspace(flat.numel(), flat.device)
        fill = _normal32 if kind == "normal" else _uniform32
        return fill(flat, key, stream, ws).reshape(*shape, 4)
    words = _words(flat, key, stream)
    if kind == "uniform":
        k = torch.stack([words[0], words[2]], dim=-1) << 21
        k |= torch.stack([words[1], words[3]], dim=-1) >> 11
        return k.to(dtype).mul_(2.0**-53).reshape(*shape, 2)
    hi = (words[0] << 21) | (words[1] >> 11) | 1  # odd multiple of 2^-53: u1 in (0, 1)
    angle = (words[2] << 21) | (words[3] >> 11)
    radius = _log(hi.to(dtype).mul_(2.0**-53)).mul_(-2).sqrt_()
    sin, cos = _sin_cos_turn(angle, 53, dtype)
    return torch.stack([radius * cos, radius.mul_(sin)], dim=-1).reshape(*shape, 2)


def _uniform32(blocks: torch.Tensor, key, stream: int, ws: Workspace) -> torch.Tensor:
    """``(n, 4)`` float32 uniforms in ``[0, 1)``: the top 24 bits of each word times 2^-24."""
    words = _words(blocks, key, stream, ws)
    out = torch.empty(blocks.numel(), 4, dtype=torch.float32, device=blocks.device)
    for lane, w in enumerate(words):
        torch.mul(w.bitwise_right_shift_(8), 2.0**-24, out=out[:, lane])
    return out


def _normal32(blocks: torch.Tensor, key, stream: int, ws: Workspace) -> torch.Tensor:
    """``(n, 4)`` float32 standard normals: Box-Muller on words (0, 1) -> lanes 0, 1 and words
    (2, 3) -> lanes 2, 3, in place in ``ws`` with ``+ - * /`` and integer operations only."""
    n = blocks.numel()
    _words(
        blocks, key, stream, ws
    )  # 10 rounds rotate the rows twice: outputs 0-3 in rows 2, 3, 0, 1
    v = ws.take(n)
    buf = v.words
    radius_words, angle_words = buf[0::2], buf[1::2]  # row 0: lanes 2, 3; row 1: lanes 0, 1
    s, poly, x, z = v.f[1:5]
    exponent, flag, octant = v.exponent, v.flag, v.octant
    # radius = sqrt(-2 log u1), u1 an odd multiple of 2^-24; log u = e ln 2 + 2 atanh(s)
    torch.mul(radius_words.bitwise_right_shift_(8).bitwise_or_(1), 2.0**-24, out=x)
    bits = x.view(torch.int32)  # u = m 2^e, m in [1/2, 1), from the IEEE 754 fields
    torch.bitwise_right_shift(bits, 23, out=exponent).sub_(126)
    m = bits.bitwise_and_(0x007FFFFF).bitwise_or_(0x3F000000).view(torch.float32)
    torch.sub(m, 1, out=s)
    s.div_(m.add_(1))  # s = (m - 1) / (m + 1) in [-1/3, 0)
    torch.mul(s, s, out=z)
    _series(z, _LOG_SERIES, poly)
    radius = _sqrt_(torch.mul(exponent, _LN2, out=v.f[0]).add_(poly.mul_(s).mul_(2)).mul_(-2), x, z)
    # angle 2 pi k / 2^24: quadrant from the top 2 bits, folded onto [0, pi/4] in the quadrant
    k = angle_words.bitwise_right_shift_(8)
    torch.bitwise_right_shift(k, 22, out=octant)
    k.bitwise_and_((1 << 22) - 1)
    torch.gt(k, 1 << 21, out=flag)
    octant.mul_(2).add_(flag)
    torch.mul(k, _HALF_PI / (1 << 22), out=x)
    torch.mul(flag, -2.0, out=s)
    x.mul_(s.add_(1)).add_(s.sub_(1).mul_(-math.pi / 4))  # x or pi/2 - x
    torch.mul(x, x, out=z)
    sin, cos = poly, s
    _series(z, _SIN_SERIES, sin).mul_(x)
    _series(z, _COS_SERIES, cos)
    o = octant.reshape(-1)
    out = torch.empty(n, 4, dtype=torch.float32, device=blocks.device)
    a, b, d, e = x, z, v.f[5], v.f[6]
    for r, t in enumerate((a, b, d, e)):
        torch.index_select(ws.signs[r], 0, o, out=t.view(-1))
    sin_t = a.mul_(sin).add_(b.mul_(cos))
    cos_t = d.mul_(sin).add_(e.mul_(cos))
    for row, lanes in ((1, (0, 1)), (0, (2, 3))):
        torch.mul(radius[row], cos_t[row], out=out[:, lanes[0]])
        torch.mul(radius[row], sin_t[row], out=out[:, lanes[1]])
    return out


def _sqrt_(t: torch.Tensor, y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``sqrt t`` (float32, ``t > 0``) into ``t``: a first guess from the exponent bits (half
    the exponent), then Newton's ``y <- (y + t / y) / 2`` three times (error 3e-2 -> 1e-14).

    Only ``+ * /``: torch's ``sqrt`` splits even small tensors across threads, which stalls
    on a busy machine."""
    torch.bitwise_right_shift(t.view(torch.int32), 1, out=y.view(torch.int32))
    y.view(torch.int32).add_(0x1FBD1DF5)
    for _ in range(3):
        y.add_(torch.div(t, y, out=q)).mul_(0.5)
    return t.copy_(y)


def _series(z: torch.Tensor, coefficients: list[float], out: torch.Tensor) -> torch.Tensor:
    """``sum c_k z^k`` by Horner's rule, into ``out``."""
    torch.mul(z, coefficients[-1], out=out)
    out.add_(coefficients[-2])
    for c in reversed(coefficients[:-2]):
        out.mul_(z).add_(c)
    return out


_LOG_SERIES = [1.0 / (2 * k + 1) for k in range(8)]  # 2 atanh(s) / (2 s), |s| <= 1/3
_SIN_SERIES = [(-1) ** k / math.factorial(2 * k + 1) for k in range(5)]
_COS_SERIES = [(-1) ** k / math.factorial(2 * k) for k in range(6)]
