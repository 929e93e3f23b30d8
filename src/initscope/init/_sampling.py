"""Private helpers of :mod:`initscope.init`: argument checks, the orthogonal draw, and exact
truncated-normal sampling at about the speed of ``Tensor.normal_``.

Three exact methods, chosen by the probability mass ``p`` of the interval under the normal:

* ``p >= 0.3``: fill with ``normal_``, find the out-of-bounds entries in one pass (on CPU chunk by
  chunk, while each chunk is in cache) and replace only those, by rejection from ``normal_``.
  For torch's default ``[-2, 2]`` that is 4.6% of the entries.
* ``p < 0.3`` (narrow or tail intervals): inverse CDF in float64, ``z = -ndtri(u)`` with ``u``
  uniform between the survival probabilities of the bounds. Working on the side of the interval
  nearer the tail keeps full relative precision down to ``Q(x) ~ 1e-300`` (``x ~ 37``).
* lower bound beyond 30 standard deviations: rejection from a truncated exponential proposal
  with rate ``alpha`` (Robert 1995, "Simulation of truncated normal variables"),
  acceptance ``exp(-(z - alpha)^2 / 2)``, above 99.8% there.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch.overrides import handle_torch_function, has_torch_function_variadic

from initscope._torch import check_real as check_real
from initscope.init._fans import Fans, fans

_CHUNK = 1 << 16
_MIN_REJECTION_MASS = 0.3
_EXPONENTIAL_TAIL = 30.0
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def check_tensor(tensor: object, *, allow_complex: bool = False) -> None:
    """``TypeError`` unless ``tensor`` is a floating-point (or, if allowed, complex) tensor."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if not (tensor.is_floating_point() or (allow_complex and tensor.is_complex())):
        kinds = "floating-point or complex" if allow_complex else "floating-point"
        raise TypeError(f"tensor must have a {kinds} dtype, got {tensor.dtype}")


def check_groups(groups: object) -> int:
    """``groups`` as a positive int; ``TypeError``/``ValueError`` naming it otherwise."""
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral):
        raise TypeError(f"groups must be an int, got {type(groups).__name__}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    return int(groups)


_F = TypeVar("_F", bound=Callable[..., Any])


def dispatch(fn: _F) -> _F:
    """Let tensor subclasses and ``TorchFunctionMode``s intercept ``fn``, as torch's init does.

    When ``tensor`` (the first argument) or an active mode overrides ``__torch_function__``,
    the call goes to :func:`torch.overrides.handle_torch_function` with the public function.
    """

    @functools.wraps(fn)
    def public(*args: Any, **kwargs: Any) -> Any:
        tensor = args[0] if args else kwargs.get("tensor")
        if has_torch_function_variadic(tensor):
            return handle_torch_function(public, (tensor,), *args, **kwargs)
        return fn(*args, **kwargs)

    return public  # type: ignore[return-value]


def check_sparsity(sparsity: object) -> float:
    """``sparsity`` as a float in ``[0, 1]``; ``TypeError``/``ValueError`` naming it otherwise."""
    out = check_real("sparsity", sparsity, low=0)
    if out > 1:
        raise ValueError(f"sparsity must be in [0, 1], got {out}")
    return out


def check_tensor_like(tensor: object) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")


def check_choice(arg: str, value: object, valid: Sequence[str]) -> None:
    """``ValueError`` naming ``arg`` and listing ``valid`` unless ``value`` is one of them."""
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{arg} must be one of {list(valid)}, got {value!r}")


def warn_if_empty(tensor: torch.Tensor, stacklevel: int = 3) -> bool:
    """Warn as torch does and return True for a zero-element tensor."""
    if tensor.numel() == 0:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=stacklevel)
        return True
    return False


def resolve_fans(tensor: torch.Tensor, given: Fans | None) -> Fans:
    """``given`` if set (checked), else the tensor's fans by torch's rule."""
    if given is None:
        return fans(tensor)
    if not isinstance(given, Fans):
        raise TypeError(f"fans must be an initscope.Fans or None, got {type(given).__name__}")
    if given.fan_in <= 0 or given.fan_out <= 0:
        raise ValueError(f"fans must have fan_in > 0 and fan_out > 0, got {given}")
    return given


def orthogonal_matrix(
    rows: int, cols: int, like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Haar-random ``rows x cols`` matrix with orthonormal rows or columns, torch's algorithm.

    QR of a Gaussian matrix with the signs of ``diag(R)`` moved into ``Q`` (Mezzadri 2007), in
    ``like``'s dtype, or float32 for float16/bfloat16; same draws as ``torch.nn.init.orthogonal_``.
    """
    dtype = torch.float32 if like.dtype in (torch.float16, torch.bfloat16) else like.dtype
    with torch.no_grad():
        flattened = like.new_empty((rows, cols), dtype=dtype).normal_(0, 1, generator=generator)
        if rows < cols:
            flattened.t_()
        q, r = torch.linalg.qr(flattened)
        q *= torch.diag(r, 0).sign()
        if rows < cols:
            q.t_()
    return q


def random_subsets(
    n_sets: int, population: int, k: int, generator: torch.Generator | None, device: torch.device
) -> np.ndarray:
    """``(n_sets, k)`` indices, each row a uniformly random ``k``-subset of ``range(population)``.

    The first ``k`` distinct values of a row of i.i.d. uniform draws (sampling without
    replacement, vectorized over rows); a row with fewer than ``k`` distinct values draws again.
    Draw order is recovered by sorting ``value << shift | position`` keys.
    """
    out = np.empty((n_sets, k), dtype=np.int64)
    todo = np.arange(n_sets if k else 0)
    expected = population * math.log((population + 0.5) / (population - k + 0.5))
    size = int(1.1 * expected) + 16
    while todo.size:
        draws = torch.randint(population, (todo.size, size), generator=generator, device=device)
        drawn = draws.cpu().numpy()
        shift = size.bit_length()
        keys = np.sort((drawn << shift) | np.arange(size), axis=1)
        first = np.ones(keys.shape, dtype=bool)
        np.not_equal(keys[:, 1:] >> shift, keys[:, :-1] >> shift, out=first[:, 1:])
        in_draw_order = np.empty_like(first)
        np.put_along_axis(in_draw_order, keys & ((1 << shift) - 1), first, axis=1)
        count = np.cumsum(in_draw_order, axis=1)
        done = count[:, -1] >= k
        keep = in_draw_order[done] & (count[done] <= k)
        out[todo[done]] = drawn[done][keep].reshape(-1, k)
        todo = todo[~done]
        size *= 2
    return out


def _log_sf(x: float) -> float:
    """``log Q(x) = log P(Z > x)`` for a standard normal ``Z``, accurate far in the tail."""
    return float(torch.special.log_ndtr(torch.tensor(-x, dtype=torch.float64)))


def _upper_side(alpha: float, beta: float) -> tuple[float, float, float]:
    """Reflect ``[alpha, beta]`` so that ``alpha + beta >= 0``; returns sign and interval."""
    if alpha + beta < 0:
        return -1.0, -beta, -alpha
    return 1.0, alpha, beta


def _log_mass(alpha: float, beta: float) -> float:
    """``log P(alpha <= Z <= beta)`` for a standard normal ``Z`` (``alpha < beta``)."""
    _, alpha, beta = _upper_side(alpha, beta)
    lo, hi = _log_sf(alpha), _log_sf(beta)
    return lo + math.log1p(-math.exp(hi - lo))


def _narrow(lo: float, hi: float, width: float) -> bool:
    """Whether the density varies by less than 1e-12 (relative) across an interval of
    ``width`` standard deviations between ``lo`` and ``hi``: then it is uniform there."""
    return width * max(1.0, abs(lo), abs(hi)) < 1e-12


def _tail_variance(alpha: float) -> float:
    """``alpha^2 Var(Z | Z > alpha)`` for large ``alpha``, free of cancellation.

    With ``x = 1 / alpha^2``, Mills' ratio ``Q / phi = S(x) / alpha``, ``S = sum (-1)^k
    (2k - 1)!! x^k``, and ``T = (1 - S) / x``: ``alpha^2 Var = ((S - T) S / x - T^2) / S^2``
    (``= 1 - 6x + ...``); the series' terms up to ``x^6`` leave an error below 1e-15 for
    ``alpha > 30``.
    """
    x = 1.0 / (alpha * alpha)
    coef = [1.0, -1.0, 3.0, -15.0, 105.0, -945.0, 10395.0, -135135.0]
    S = sum(c * x**k for k, c in enumerate(coef[:-1]))
    T = -sum(c * x ** (k - 1) for k, c in enumerate(coef) if k)
    d = sum((coef[k] + coef[k + 1]) * x ** (k - 1) for k in range(1, 7))  # (S - T) / x
    return (d * S - T * T) / (S * S)


def truncated_std(alpha: float, beta: float) -> float:
    """Standard deviation of ``Z ~ N(0, 1)`` conditioned on ``alpha <= Z <= beta``.

    ``Var = 1 + (alpha phi(alpha) - beta phi(beta)) / P - ((phi(alpha) - phi(beta)) / P)^2``
    with ``P = Phi(beta) - Phi(alpha)``; ``0.87962566103423978`` for ``[-2, 2]``. An interval
    too narrow for the density to vary gives the uniform's ``width / sqrt(12)``; a lower bound
    beyond 30 (where the closed form cancels) the tail's asymptotic series.
    """
    _, alpha, beta = _upper_side(alpha, beta)
    width = beta - alpha
    if _narrow(alpha, beta, width):
        return width / math.sqrt(12.0)
    if alpha > _EXPONENTIAL_TAIL:  # the closed form cancels: the tail's asymptotic series
        t = alpha * width  # times the factor of an exponential truncated to [0, width]
        cut = 0.0 if t > 700 else t * t * math.exp(-t) / math.expm1(-t) ** 2
        return math.sqrt(max(0.0, _tail_variance(alpha) * (1.0 - cut))) / alpha
    log_p = _log_mass(alpha, beta)

    def ratio(x: float) -> tuple[float, float]:  # phi(x) / P and x phi(x) / P
        if math.isinf(x):
            return 0.0, 0.0
        r = math.exp(-0.5 * x * x - _LOG_SQRT_2PI - log_p)
        return r, x * r

    ra, xa = ratio(alpha)
    rb, xb = ratio(beta)
    return math.sqrt(1.0 + xa - xb - (ra - rb) ** 2)


def fill_truncated_normal_(
    tensor: torch.Tensor,
    mean: float,
    std: float,
    a: float,
    b: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Fill ``tensor`` with ``N(mean, std^2)`` conditioned on ``[a, b]`` (arguments checked)."""
    alpha, beta = (a - mean) / std, (b - mean) / std
    dense = torch.contiguous_format
    work = tensor if tensor.is_contiguous() else torch.empty_like(tensor, memory_format=dense)
    flat = work.view(-1)
    sign, lo, hi = _upper_side(alpha, beta)
    width = (b - a) / std  # exact where beta - alpha loses digits (mean far from [a, b])
    if _narrow(lo, hi, width):
        flat.uniform_(a, b, generator=generator)
    elif lo > _EXPONENTIAL_TAIL:
        _fill_exponential_tail(flat, a if sign > 0 else b, sign * std, lo, width, generator)
    else:
        mass = math.exp(_log_mass(alpha, beta))
        if mass >= _MIN_REJECTION_MASS:
            _fill_by_rejection(flat, mean, std, a, b, mass, generator)
        else:
            _fill_from_tail_side(flat, mean, std, alpha, beta, generator)
    if work is not tensor:
        tensor.copy_(work)
    return tensor


def _fill_by_rejection(flat, mean, std, a, b, mass, generator) -> None:
    if flat.device.type == "cpu" and flat.dtype in (torch.float32, torch.float64):
        _fill_by_rejection_cpu(flat, mean, std, a, b, mass, generator)
        return
    flat.normal_(mean, std, generator=generator)
    index = (torch.clamp(flat, a, b) != flat).nonzero().squeeze(1)
    done = 0
    while done < index.numel():
        good = _inside_draws(index.numel() - done, flat, mean, std, a, b, mass, generator)
        good = good[: index.numel() - done]
        flat[index[done : done + good.numel()]] = good
        done += good.numel()


def _fill_by_rejection_cpu(flat, mean, std, a, b, mass, generator) -> None:
    """``normal_`` chunk by chunk; while a chunk is in cache, replace its out-of-bounds entries.

    The flagging runs in NumPy: single-threaded (so it does not stall on a busy machine, as
    torch's intra-op threads do) and cheap per call. Replacements come from a reserve of accepted
    draws, refilled from ``normal_`` as it runs out.
    """
    values = flat.detach().numpy()
    outside = np.empty(min(_CHUNK, values.size), dtype=bool)
    above = np.empty_like(outside)
    reserve = values[:0]
    for start in range(0, values.size, _CHUNK):
        flat[start : start + _CHUNK].normal_(mean, std, generator=generator)
        part = values[start : start + _CHUNK]
        k = part.size
        np.less(part, a, out=outside[:k])
        np.logical_or(outside[:k], np.greater(part, b, out=above[:k]), out=outside[:k])
        index = np.flatnonzero(outside[:k])
        while reserve.size < index.size:
            more = _inside_draws(_CHUNK, flat, mean, std, a, b, mass, generator, as_numpy=True)
            reserve = np.concatenate([reserve, more])
        part[index] = reserve[: index.size]
        reserve = reserve[index.size :]


def _inside_draws(k, like, mean, std, a, b, mass, generator, as_numpy=False):
    """The draws inside ``[a, b]`` among about ``k / mass`` fresh ones, in draw order.

    Accepted draws of ``N(mean, std^2)`` are exact samples of the truncated distribution.
    ``as_numpy`` selects them in NumPy (a CPU tensor; no torch intra-op threads).
    """
    size = int(k / mass * 1.05) + 16
    cand = torch.empty(size, dtype=like.dtype, device=like.device)
    cand.normal_(mean, std, generator=generator)
    if as_numpy:
        values = cand.numpy()
        return values[(values >= a) & (values <= b)]
    return cand[(cand >= a) & (cand <= b)]


def _fill_from_tail_side(flat, mean, std, alpha, beta, generator) -> None:
    sign, alpha, beta = _upper_side(alpha, beta)
    q_lo, q_hi = math.exp(_log_sf(beta)), math.exp(_log_sf(alpha))
    for start in range(0, flat.numel(), _CHUNK):
        part = flat[start : start + _CHUNK]
        z = _inverse_cdf(
            part.numel(), q_lo=q_lo, q_hi=q_hi, device=part.device, generator=generator
        )
        part.copy_(z.clamp_(alpha, beta).mul_(sign * std).add_(mean))


def _inverse_cdf(m, q_lo, q_hi, device, generator) -> torch.Tensor:
    u = torch.empty(m, dtype=torch.float64, device=device).uniform_(q_lo, q_hi, generator=generator)
    return torch.special.ndtri(u).neg_()  # Q^{-1}(u) = -Phi^{-1}(u)


def _fill_exponential_tail(flat, bound, step, alpha, width, generator) -> None:
    """``bound + step * x`` with ``x`` the distance into the tail in standard deviations: the
    truncated normal seen from its near bound, exact however far the mean lies."""
    for start in range(0, flat.numel(), _CHUNK):
        part = flat[start : start + _CHUNK]
        x = _exponential_tail(
            part.numel(), alpha=alpha, width=width, device=part.device, generator=generator
        )
        part.copy_(x.clamp_(0.0, width).mul_(step).add_(bound))


def _exponential_tail(m, *, alpha, width, device, generator) -> torch.Tensor:
    """Offsets ``x = z - alpha`` of ``z ~ N(0, 1)`` conditioned on ``[alpha, alpha + width]``,
    ``alpha > 30``: an ``Exp(alpha)`` proposal truncated to ``[0, width]``, accepted with
    probability ``exp(-x^2 / 2)`` (Robert 1995)."""
    out = torch.empty(m, dtype=torch.float64, device=device)
    scale = math.expm1(-alpha * width)  # -1 for an unbounded tail
    filled = 0
    while filled < m:
        k = int((m - filled) * 1.05) + 16
        u = torch.empty(k, dtype=torch.float64, device=device).uniform_(generator=generator)
        v = torch.empty(k, dtype=torch.float64, device=device).uniform_(generator=generator)
        x = u.mul_(scale).log1p_().div_(-alpha)
        good = x[v <= torch.exp(x * x * -0.5)][: m - filled]
        out[filled : filled + good.numel()] = good
        filled += good.numel()
    return out
