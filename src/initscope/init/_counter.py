r"""A counter-based generator: every element's value is a function of (key, its global index).

Layout-invariant initialization (``initialize(model, seed=S, layout_invariant=True)``) needs the
value of element ``i`` of a parameter to depend on nothing but the seed, the parameter's path
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
* **Uniform.** float32: the top 24 bits of a word times ``2^-24`` (in ``[0, 1)``); float64: 53
  bits from two words. float16/bfloat16 are drawn in float32 and rounded.
* **Normal.** Box-Muller (1958) on a pair of uniforms: ``r = sqrt(-2 log u1)``,
  ``(r cos 2 pi u2, r sin 2 pi u2)``, ``u1`` in ``(0, 1)`` (an odd multiple of ``2^-24`` or
  ``2^-53``: ``|z| <= 5.77`` in single precision, ``8.57`` in double; the mass beyond is
  ``8e-9`` and ``1e-17``). ``log``, ``sin`` and ``cos`` are evaluated here with series in
  ``+ - * /`` and ``frexp`` only (``log m = 2 atanh((m - 1) / (m + 1))`` for ``m`` in
  ``[1/sqrt 2, sqrt 2)``; Taylor series of ``sin`` and ``cos`` on ``[0, pi/4]`` after an exact
  octant reduction), because those operations round exactly (IEEE 754) in every
  implementation, whereas library ``log``/``sin`` differ by an ulp between the vectorized and
  the scalar code paths of one machine, and between machines.
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
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch

from initscope.init._fans import Fans
from initscope.init._sampling import resolve_fans, truncated_std
from initscope.init._shards import Region

__all__ = ["CounterSpec", "counter_fill_", "counter_spec", "key_words", "philox4x32"]

_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK = 0xFFFFFFFF
_ROUNDS = 10
_CHUNK = 1 << 15  # elements per vectorized step: each op below torch's parallel grain (32768)
_MIN_MASS = 0.3
_LN2 = math.log(2.0)
_HALF_PI = math.pi / 2


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


def key_words(seed: int, path: str, step: int = 0) -> tuple[int, int]:
    """The Philox key of (``seed``, parameter ``path``, plan ``step``): two 32-bit words."""
    digest = hashlib.blake2b(f"{seed}/{path}/{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:], "little")


# ---------------------------------------------------------------------- bits -> numbers


def _words(
    blocks: torch.Tensor, key: tuple[int, int], stream: int, ws: _Workspace | None = None
) -> tuple[torch.Tensor, ...]:
    """:func:`philox4x32` of the counters ``(block lo, block hi, stream, 0)`` for the 1-D int64
    ``blocks``, computed in place in one ``(4, n)`` buffer (a fresh tensor per operation costs
    more than the arithmetic); returns the four output words (rows of that buffer)."""
    n = blocks.numel()
    ws = ws if ws is not None else _Workspace(n, blocks.device)
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


class _Workspace:
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

    def take(self, n: int) -> SimpleNamespace:
        """Contiguous views for ``n <= self.n`` blocks."""
        return SimpleNamespace(
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


def _uniform(words: tuple[torch.Tensor, ...], dtype: torch.dtype) -> torch.Tensor:
    """``(n, per_block)`` uniforms in ``[0, 1)``: the top 24 bits of each word (float32) or 53
    bits of each pair of words (float64), times ``2^-24`` or ``2^-53``."""
    if dtype == torch.float64:
        k = torch.stack([words[0], words[2]], dim=-1) << 21
        k |= torch.stack([words[1], words[3]], dim=-1) >> 11
        return k.to(dtype).mul_(2.0**-53)
    return (torch.stack(words, dim=-1) >> 8).to(dtype).mul_(2.0**-24)


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


def _per_block(dtype: torch.dtype, kind: str) -> int:
    return 2 if dtype == torch.float64 else 4


def _block_values(
    kind: str,
    blocks: torch.Tensor,
    key: tuple[int, int],
    stream: int,
    dtype: torch.dtype,
    ws: _Workspace | None = None,
) -> torch.Tensor:
    """``(*blocks.shape, per_block)`` numbers of ``kind`` (``"uniform"`` or ``"normal"``)."""
    shape = blocks.shape
    flat = blocks.reshape(-1)
    if dtype != torch.float64:
        ws = ws if ws is not None else _Workspace(flat.numel(), flat.device)
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


def _uniform32(blocks: torch.Tensor, key, stream: int, ws: _Workspace) -> torch.Tensor:
    """``(n, 4)`` float32 uniforms in ``[0, 1)``: the top 24 bits of each word times 2^-24."""
    words = _words(blocks, key, stream, ws)
    out = torch.empty(blocks.numel(), 4, dtype=torch.float32, device=blocks.device)
    for lane, w in enumerate(words):
        torch.mul(w.bitwise_right_shift_(8), 2.0**-24, out=out[:, lane])
    return out


def _normal32(blocks: torch.Tensor, key, stream: int, ws: _Workspace) -> torch.Tensor:
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
    a, b, d, e = x, z, *v.f[5:]
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


def _values_at(
    kind: str, index: torch.Tensor, key: tuple[int, int], stream: int, dtype: torch.dtype
) -> torch.Tensor:
    """The numbers of ``kind`` at global element indices ``index`` (any order, 1-D)."""
    m = _per_block(dtype, kind)
    step = _CHUNK // 4
    ws = _Workspace(min(step, index.numel()), index.device) if dtype != torch.float64 else None
    out = torch.empty(index.numel(), dtype=dtype, device=index.device)
    for i in range(0, index.numel(), step):
        part = index[i : i + step]
        v = _block_values(kind, part // m, key, stream, dtype, ws)
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


def _draw(
    kind: str,
    shape: tuple[int, ...],
    offsets: tuple[int, ...],
    sizes: tuple[int, ...],
    key: tuple[int, int],
    dtype: torch.dtype,
    device: torch.device,
    transform: Any = None,
):
    """Yield ``(rows, cols, values, index)`` pieces of the box, as a ``(runs, length)`` grid:
    ``values`` of ``kind`` in ``dtype``, ``index`` their global flat indices (or ``None`` when
    not needed)."""
    starts, length = _runs(shape, offsets, sizes)
    starts = starts.to(device)
    m = _per_block(dtype, kind)
    rows_per = max(1, _CHUNK // max(length, 1))
    cols_per = min(length, _CHUNK - _CHUNK % m) if length > _CHUNK else length
    most = min(starts.numel(), rows_per) * ((cols_per + m - 1) // m + 1)
    ws = _Workspace(most, device) if dtype != torch.float64 else None
    for r0 in range(0, starts.numel(), rows_per):
        st = starts[r0 : r0 + rows_per]
        for c0 in range(0, length, cols_per):
            n = min(cols_per, length - c0)
            s = st + c0
            off = s % m
            aligned = not bool(off.any())
            nb = (n + m - 1) // m + (0 if aligned else 1)
            blocks = (s // m)[:, None] + torch.arange(nb, device=device)
            v = _block_values(kind, blocks, key, 0, dtype, ws).reshape(st.numel(), nb * m)
            if aligned:
                v = v[:, :n]
            else:
                v = v.gather(1, off[:, None] + torch.arange(n, device=device))
            yield slice(r0, r0 + st.numel()), slice(c0, c0 + n), v, s


@dataclass(frozen=True)
class CounterSpec:
    """What a scheme draws, resolved from its arguments and fans: ``family`` is one of
    ``"uniform"`` (``a``, ``b``), ``"normal"`` (``mean``, ``std``), ``"truncated"`` (``mean``,
    ``std``, standardized bounds ``alpha``, ``beta``), ``"constant"`` (``value``),
    ``"orthogonal"`` / ``"delta_orthogonal"`` (``gain``), ``"sparse"`` (``sparsity``, ``std``),
    ``"eye"``, ``"dirac"`` (``groups``)."""

    family: str
    args: Mapping[str, float]


def _bound(scheme_fn: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    sig = inspect.signature(scheme_fn)
    bound = sig.bind_partial(None, **params)
    bound.apply_defaults()
    return dict(bound.arguments)


def counter_spec(
    scheme: str, params: Mapping[str, Any], fans: Fans | None, shape: tuple[int, ...]
) -> CounterSpec:
    """The distribution ``scheme`` with ``params`` draws on a (global) tensor of ``shape``.

    Mirrors each scheme's arithmetic (``initscope.init``); fans are ``fans`` when given, else
    torch's rule on ``shape``. Raises ``ValueError`` for what the counter generator does not do
    (a truncated normal whose interval has probability below 0.3).
    """
    from initscope.init import calculate_gain, get_scheme

    fn = get_scheme(scheme)
    a = _bound(fn, params)
    name = fn.__name__.rstrip("_")

    def fan(mode: str) -> float:
        return resolve_fans(torch.empty(shape, device="meta"), fans).fan(mode)

    def uniform_std(std: float) -> CounterSpec:
        return CounterSpec("uniform", {"a": -math.sqrt(3.0) * std, "b": math.sqrt(3.0) * std})

    def truncated(mean: float, std: float, alpha: float, beta: float) -> CounterSpec:
        mass = 0.5 * (math.erfc(-beta / math.sqrt(2)) - math.erfc(-alpha / math.sqrt(2)))
        if mass < _MIN_MASS:
            raise ValueError(
                f"{scheme}: layout-invariant truncated normals need an interval of probability "
                f">= {_MIN_MASS}, got {mass:.3g} (bounds {alpha:g}, {beta:g} in std units)"
            )
        return CounterSpec("truncated", {"mean": mean, "std": std, "alpha": alpha, "beta": beta})

    if name == "uniform":
        return CounterSpec("uniform", {"a": float(a["a"]), "b": float(a["b"])})
    if name == "normal":
        return CounterSpec("normal", {"mean": float(a["mean"]), "std": float(a["std"])})
    if name == "trunc_normal":
        mean, std, lo, hi = (float(a[k]) for k in ("mean", "std", "a", "b"))
        if lo == hi:
            return CounterSpec("constant", {"value": lo})
        return truncated(mean, std, (lo - mean) / std, (hi - mean) / std)
    if name in ("constant", "ones", "zeros"):
        value = {"ones": 1.0, "zeros": 0.0}.get(name, a.get("val"))
        return CounterSpec("constant", {"value": float(value)})  # type: ignore[arg-type]
    if name in ("eye", "dirac"):
        return CounterSpec(name, {"groups": int(a.get("groups", 1))})
    if name in ("orthogonal", "delta_orthogonal"):
        return CounterSpec(name, {"gain": float(a["gain"])})
    if name == "sparse":
        return CounterSpec("sparse", {"sparsity": float(a["sparsity"]), "std": float(a["std"])})
    if name in ("xavier_uniform", "xavier_normal"):
        std = float(a["gain"]) * math.sqrt(2.0 / (2 * fan("fan_avg")))
        return (
            uniform_std(std)
            if name == "xavier_uniform"
            else CounterSpec("normal", {"mean": 0.0, "std": std})
        )
    if name in ("kaiming_uniform", "kaiming_normal"):
        nl, slope = a["nonlinearity"], a["a"]
        gain = calculate_gain(nl, slope if nl == "leaky_relu" else None)
        std = gain / math.sqrt(fan(str(a["mode"]).lower()))
        return (
            uniform_std(std)
            if name == "kaiming_uniform"
            else CounterSpec("normal", {"mean": 0.0, "std": std})
        )
    if name in ("variance_scaling", "lecun_normal", "lecun_uniform"):
        scale, mode, dist = 1.0, "fan_in", {"lecun_normal": "truncated_normal"}.get(name, "uniform")
        if name == "variance_scaling":
            scale, mode, dist = float(a["scale"]), a["mode"], a["distribution"]
        std = math.sqrt(scale / fan(mode))
        if dist == "normal":
            return CounterSpec("normal", {"mean": 0.0, "std": std})
        if dist == "uniform":
            return uniform_std(std)
        s = std / truncated_std(-2.0, 2.0)
        return truncated(0.0, s, -2.0, 2.0)
    if name == "truncated_normal":
        lo, hi = float(a["lower"]), float(a["upper"])
        return truncated(0.0, float(a["std"]) / truncated_std(lo, hi), lo, hi)
    raise ValueError(f"{scheme}: no layout-invariant sampler for this scheme")


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
    redraw: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for rs, cs, v, starts in _draw(kind, shape, offsets, sizes, key, dtype, local.device):
        if spec.family == "truncated":
            bad = ((v < args["alpha"]) | (v > args["beta"])).nonzero()
            if bad.numel():
                rows = bad[:, 0]
                redraw.append((rows + rs.start, bad[:, 1] + cs.start, starts[rows] + bad[:, 1]))
        v = v.mul_(scale).add_(shift)
        if spec.family == "truncated":
            v = v.clamp_(shift + args["alpha"] * scale, shift + args["beta"] * scale)
        grid.target[rs, cs] = v
    if redraw:
        rows, cols, index = (torch.cat(parts) for parts in zip(*redraw, strict=True))
        z = _redraw_truncated(index, key, args["alpha"], args["beta"], dtype)
        grid.target[rows, cols] = (
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
    out[(slice(None), slice(None), *(k // 2 for k in shape[2:]))] = q.to(dtype)
    return out


def _full(shape, kind, key, stream, dtype, device) -> torch.Tensor:
    n = math.prod(shape)
    index = torch.arange(n, device=device)
    m = _per_block(dtype, kind)
    if stream == 0 and n % m == 0:
        return _block_values(kind, index[::m] // m, key, 0, dtype).reshape(shape)
    return _values_at(kind, index, key, stream, dtype).reshape(shape)


def _orthogonal(rows: int, cols: int, key: tuple[int, int], device) -> torch.Tensor:
    """Haar ``rows x cols`` matrix with orthonormal rows or columns, float64 QR."""
    a = _full((rows, cols), "normal", key, 0, torch.float64, device)
    if rows < cols:
        a = a.t()
    q, r = torch.linalg.qr(a)
    q = q * torch.diagonal(r).sign()
    return q.t() if rows < cols else q
