"""The drop-in ``torch.nn.init`` functions, one short function each; torch's deprecated names."""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast, get_args

import torch
from torch import Tensor

from initscope.init._fans import Fans
from initscope.init._sampling import (
    check_choice,
    check_groups,
    check_real,
    check_sparsity,
    check_tensor,
    check_tensor_like,
    dispatch,
    fill_truncated_normal_,
    orthogonal_matrix,
    random_subsets,
    resolve_fans,
    warn_if_empty,
)

TorchNonlinearity = Literal[
    "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu",
]  # fmt: skip
Distribution = Literal["truncated_normal", "normal", "untruncated_normal", "uniform"]
_TORCH_NONLINEARITIES: tuple[str, ...] = get_args(TorchNonlinearity)
_KAIMING_MODES = ("fan_in", "fan_out")
_F = TypeVar("_F", bound=Callable[..., Any])


def calculate_gain(
    nonlinearity: TorchNonlinearity | str | Callable[..., Any],
    param: int | float | None = None,
    exact: bool = False,
) -> float:
    r"""Recommended gain: the factor ``g`` in ``std = g / sqrt(fan)``.

    One activation, one answer, however it is named: ``"sigmoid"``, ``"Sigmoid"``,
    ``nn.Sigmoid()`` and ``torch.sigmoid`` all give the same gain. With ``exact=False`` (torch's
    semantics) an activation in torch's table gets torch's value: 1 for linear/identity/conv and
    sigmoid, 5/3 for tanh, ``sqrt(2)`` for relu, ``sqrt(2 / (1 + slope^2))`` for leaky_relu
    (slope ``param``, or the module's ``negative_slope``; default 0.01), 3/4 for selu. Any other
    activation (``"gelu"``, a module, a callable) has no table entry and gets the exact forward
    gain ``1 / sqrt(E[f(z)^2])``, ``z ~ N(0, 1)``, from :func:`initscope.theory.gain`; so does
    every activation with ``exact=True``. Where the two differ: tanh, exact 1.5925 at unit input
    variance against torch's heuristic 5/3 (the exact gain depends on the variance; it is 5/3 at
    q = 1.178); selu, exact 1 (LeCun's ``Var = 1 / fan_in``, Klambauer et al. 2017) against
    torch's 3/4, chosen for gradient flow; sigmoid, exact 1.8462 against 1. For torch's own
    spellings ``param`` is ignored except for leaky_relu, as in torch.

    Raises:
        ValueError: an unknown nonlinearity (close matches listed) or a bad or non-finite slope.
        TypeError: ``exact`` is not a bool.
    """
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be a bool, got {type(exact).__name__}")
    if not exact and isinstance(nonlinearity, str) and nonlinearity in _TORCH_NONLINEARITIES:
        return _torch_table(nonlinearity, param)
    from initscope.activations import resolve, torch_gain
    from initscope.theory import gain

    try:
        act = resolve(nonlinearity, param)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"nonlinearity: {exc}") from None
    table = None if exact else torch_gain(act)
    return gain(act, "forward") if table is None else table


def _torch_table(nonlinearity: str, param: object) -> float:
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 3.0 / 4  # torch's empirical value (pytorch/pytorch#50664)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, bool) or not isinstance(param, numbers.Real):
            raise ValueError(f"negative_slope {param} not a valid number")
        elif not math.isfinite(param):
            raise ValueError(
                f"param (the negative_slope of leaky_relu) must be finite, got {param}"
            )
        else:
            slope = cast(float, param)  # any numbers.Real, kept as given (e.g. float32)
        return math.sqrt(2.0 / (1 + slope**2))
    return 1.0


@dispatch
def uniform_(
    tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    r"""Fill ``tensor`` from :math:`\mathcal{U}(a, b)`, as ``torch.nn.init.uniform_``."""
    check_tensor(tensor, allow_complex=True)
    if check_real("a", a) > check_real("b", b):
        raise ValueError(f"need a <= b, got a={a}, b={b}")
    with torch.no_grad():
        return tensor.uniform_(a, b, generator=generator)


@dispatch
def normal_(
    tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    r"""Fill ``tensor`` from :math:`\mathcal{N}(\text{mean}, \text{std}^2)`, as torch does."""
    check_tensor(tensor, allow_complex=True)
    check_real("mean", mean)
    check_real("std", std, low=0)
    with torch.no_grad():
        return tensor.normal_(mean, std, generator=generator)


@dispatch
def trunc_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Fill ``tensor`` from :math:`\mathcal{N}(\text{mean}, \text{std}^2)` truncated to ``[a, b]``.

    torch's distribution and absolute bounds ``a``, ``b`` (not in standard deviations; the std of
    the result is smaller than ``std``: 0.8796 ``std`` for the default ``[-2, 2]``; see
    :func:`truncated_normal_` for the corrected version). The sampler is exact for every interval
    (rejection of the few out-of-bounds entries, inverse CDF for narrow or tail intervals) and
    runs at about the speed of ``normal_``; unlike torch it does not warn when ``mean`` lies far
    outside ``[a, b]``, since the result is exact there too. ``a == b`` fills with ``a``.
    """
    check_tensor(tensor)
    mean = check_real("mean", mean)
    std = check_real("std", std, low=0, strict=True)
    a = check_real("a", a, infinite=True)
    b = check_real("b", b, infinite=True)
    if not a <= b or a == math.inf or b == -math.inf:
        raise ValueError(f"need a <= b with a < inf and b > -inf, got a={a}, b={b}")
    if tensor.is_meta or tensor.numel() == 0:
        return tensor
    with torch.no_grad():
        if a == b:
            return tensor.fill_(a)
        return fill_truncated_normal_(tensor, mean, std, a, b, generator)


@dispatch
def constant_(tensor: Tensor, val: float) -> Tensor:
    r"""Fill ``tensor`` with ``val`` (a finite number; use ``Tensor.fill_`` for masks of inf)."""
    check_tensor_like(tensor)
    if not isinstance(val, numbers.Number):
        raise TypeError(f"val must be a number, got {type(val).__name__}")
    if not (math.isfinite(val.real) and math.isfinite(val.imag)):
        raise ValueError(f"val must be a finite number, got {val}")
    with torch.no_grad():
        return tensor.fill_(val)


@dispatch
def ones_(tensor: Tensor) -> Tensor:
    r"""Fill ``tensor`` with 1."""
    check_tensor_like(tensor)
    with torch.no_grad():
        return tensor.fill_(1.0)


@dispatch
def zeros_(tensor: Tensor) -> Tensor:
    r"""Fill ``tensor`` with 0."""
    check_tensor_like(tensor)
    with torch.no_grad():
        return tensor.zero_()


@dispatch
def eye_(tensor: Tensor) -> Tensor:
    r"""Fill the 2-D ``tensor`` with the identity matrix (as many inputs kept as possible)."""
    check_tensor_like(tensor)
    if tensor.ndimension() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    with torch.no_grad():
        torch.eye(*tensor.shape, out=tensor, requires_grad=tensor.requires_grad)
    return tensor


@dispatch
def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    r"""Fill the {3, 4, 5}-D conv weight with the Dirac delta: the conv is the identity map.

    ``W[g * out_per_group + d, d, centre] = 1`` for ``d < min(out_per_group, in_per_group)``,
    zeros elsewhere; ``centre`` is ``k // 2`` in every spatial dim. Each group keeps its inputs.
    """
    check_tensor_like(tensor)
    dimensions = tensor.ndimension()
    if dimensions not in [3, 4, 5]:
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    groups = check_groups(groups)
    sizes = tensor.size()
    if sizes[0] % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    if tensor.is_meta or tensor.numel() == 0:
        return tensor
    out_per_group = sizes[0] // groups
    diagonal = torch.arange(min(out_per_group, sizes[1]), device=tensor.device)
    rows = (torch.arange(groups, device=tensor.device)[:, None] * out_per_group + diagonal).ravel()
    centre = tuple(s // 2 for s in sizes[2:])
    with torch.no_grad():
        tensor.zero_()
        tensor[(rows, diagonal.repeat(groups)) + centre] = 1
    return tensor


@dispatch
def xavier_uniform_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    fans: Fans | None = None,
) -> Tensor:
    r"""Glorot uniform: :math:`\mathcal{U}(-a, a)`, ``a = gain * sqrt(6 / (fan_in + fan_out))``.

    ``Var(W) = gain^2 * 2 / (fan_in + fan_out)``: the compromise between forward (fan_in) and
    backward (fan_out) variance preservation for tanh/sigmoid-like activations. Glorot & Bengio
    (2010), "Understanding the difficulty of training deep feedforward neural networks".
    """
    check_tensor(tensor, allow_complex=True)
    gain = check_real("gain", gain, low=0)
    if warn_if_empty(tensor, stacklevel=4):
        return tensor
    f = resolve_fans(tensor, fans)
    std = gain * math.sqrt(2.0 / float(f.fan_in + f.fan_out))
    a = math.sqrt(3.0) * std
    with torch.no_grad():
        return tensor.uniform_(-a, a, generator=generator)


@dispatch
def xavier_normal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    fans: Fans | None = None,
) -> Tensor:
    r"""Glorot normal: :math:`\mathcal{N}(0, s^2)`, ``s = gain * sqrt(2 / (fan_in + fan_out))``.

    ``Var(W) = gain^2 * 2 / (fan_in + fan_out)``. Glorot & Bengio (2010).
    """
    check_tensor(tensor, allow_complex=True)
    gain = check_real("gain", gain, low=0)
    if warn_if_empty(tensor, stacklevel=4):
        return tensor
    f = resolve_fans(tensor, fans)
    std = gain * math.sqrt(2.0 / float(f.fan_in + f.fan_out))
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


def kaiming_gain(a: float, nonlinearity: Any) -> float:
    """The gain ``kaiming_*`` use: ``calculate_gain(nonlinearity)``, slope ``a`` for leaky_relu.

    ``a`` must be a finite number whatever the nonlinearity (torch ignores it unless leaky)."""
    a = check_real("a", a)
    leaky = nonlinearity == "leaky_relu" or (
        isinstance(nonlinearity, str)
        and nonlinearity.strip().lower() in ("leaky_relu", "leakyrelu")
    )
    return calculate_gain(nonlinearity, a if leaky else None)


def _kaiming_std(tensor, a, mode, nonlinearity, fans) -> float | None:
    check_tensor(tensor, allow_complex=True)
    mode = mode.lower() if isinstance(mode, str) else mode
    check_choice("mode", mode, _KAIMING_MODES)
    gain = kaiming_gain(a, nonlinearity)
    if warn_if_empty(tensor, stacklevel=5):
        return None
    return gain / math.sqrt(resolve_fans(tensor, fans).fan(mode))


@dispatch
def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0,
    mode: Literal["fan_in", "fan_out"] = "fan_in",
    nonlinearity: TorchNonlinearity | str = "leaky_relu",
    generator: torch.Generator | None = None,
    *,
    fans: Fans | None = None,
) -> Tensor:
    r"""He uniform: :math:`\mathcal{U}(-b, b)`, ``b = gain * sqrt(3 / fan_mode)``.

    ``Var(W) = gain^2 / fan_mode``; for ReLU ``gain^2 = 2`` (half the pre-activation variance
    survives), for leaky ReLU with slope ``a`` ``2 / (1 + a^2)``. ``fan_in`` preserves the forward
    variance, ``fan_out`` the backward one. He et al. (2015), "Delving deep into rectifiers".
    ``nonlinearity`` may be any activation :func:`calculate_gain` knows.
    """
    std = _kaiming_std(tensor, a, mode, nonlinearity, fans)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


@dispatch
def kaiming_normal_(
    tensor: Tensor,
    a: float = 0,
    mode: Literal["fan_in", "fan_out"] = "fan_in",
    nonlinearity: TorchNonlinearity | str = "leaky_relu",
    generator: torch.Generator | None = None,
    *,
    fans: Fans | None = None,
) -> Tensor:
    r"""He normal: :math:`\mathcal{N}(0, \text{std}^2)`, ``std = gain / sqrt(fan_mode)``.

    ReLU: ``Var(W) = 2 / fan_in``; leaky ReLU (slope ``a``): ``Var(W) = 2 / ((1 + a^2) fan_in)``.
    He et al. (2015). An untruncated normal, as in torch (Keras' ``he_normal`` truncates).
    """
    std = _kaiming_std(tensor, a, mode, nonlinearity, fans)
    if std is None:
        return tensor
    with torch.no_grad():
        return tensor.normal_(0, std, generator=generator)


@dispatch
def orthogonal_(
    tensor: Tensor, gain: float = 1, generator: torch.Generator | None = None
) -> Tensor:
    r"""Fill with a (semi-)orthogonal matrix times ``gain``; trailing dims are flattened.

    ``Q`` from the QR decomposition of a Gaussian matrix, signs fixed by ``diag(R)`` so that ``Q``
    is Haar distributed (Mezzadri 2007): every singular value is ``gain``, so a linear layer
    preserves norms exactly. Saxe et al. (2014), "Exact solutions to the nonlinear dynamics of
    learning in deep linear neural networks". Bit-identical to torch for float32/float64;
    float16/bfloat16 are computed in float32 and cast (torch cannot do QR in half precision).
    """
    check_tensor_like(tensor)
    if tensor.ndimension() < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    check_tensor(tensor)
    gain = check_real("gain", gain)
    if tensor.numel() == 0 or tensor.is_meta:
        return tensor
    rows = tensor.size(0)
    q = orthogonal_matrix(rows, tensor.numel() // rows, tensor, generator)
    with torch.no_grad():
        if q.dtype == tensor.dtype:
            tensor.copy_(q.reshape(tensor.shape))
            return tensor.mul_(gain)
        return tensor.copy_(q.mul_(gain).reshape(tensor.shape))


@dispatch
def sparse_(
    tensor: Tensor, sparsity: float, std: float = 0.01, generator: torch.Generator | None = None
) -> Tensor:
    r"""Sparse 2-D init: ``ceil(sparsity * rows)`` zeros per column, the rest ``N(0, std^2)``.

    ``sparsity`` is in ``[0, 1]``; 1 zeroes everything, as in torch.
    Martens (2010), "Deep learning via Hessian-free optimization". Same distribution as torch, but
    the zero positions come from ``generator=`` as well (torch draws them from the global RNG)
    and are chosen for all columns at once (sampling without replacement, vectorized).
    The non-zero values equal torch's under the same generator.
    """
    check_tensor_like(tensor)
    if tensor.ndimension() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    check_tensor(tensor, allow_complex=True)
    check_sparsity(sparsity)
    check_real("std", std, low=0)
    if tensor.is_meta:
        return tensor
    rows, cols = tensor.shape
    num_zeros = math.ceil(sparsity * rows)
    with torch.no_grad():
        tensor.normal_(0, std, generator=generator)
        if num_zeros and cols:
            flip = num_zeros > rows // 2  # draw the smaller set: the non-zeros
            picked = torch.from_numpy(
                random_subsets(
                    cols, rows, rows - num_zeros if flip else num_zeros, generator, tensor.device
                )
            ).to(tensor.device)
            columns = tensor.t()
            if flip:
                kept = columns.gather(1, picked)
                tensor.zero_()
                columns.scatter_(1, picked, kept)
            else:
                columns.scatter_(1, picked, 0.0)
    return tensor


def _deprecated(fn: _F) -> _F:
    """The name without the trailing underscore, as torch keeps it: warns, then calls ``fn``."""
    new = fn.__name__
    old = new[:-1]

    @functools.wraps(fn)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warnings.warn(
            f"`initscope.init.{old}` is now deprecated in favor of `initscope.init.{new}`.",
            FutureWarning,
            stacklevel=2,
        )
        return fn(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old
    alias.__doc__ = f"{old}(...): deprecated, as in torch.nn.init; use :func:`{new}`."
    return alias  # type: ignore[return-value]


uniform = _deprecated(uniform_)
normal = _deprecated(normal_)
constant = _deprecated(constant_)
eye = _deprecated(eye_)
dirac = _deprecated(dirac_)
xavier_uniform = _deprecated(xavier_uniform_)
xavier_normal = _deprecated(xavier_normal_)
kaiming_uniform = _deprecated(kaiming_uniform_)
kaiming_normal = _deprecated(kaiming_normal_)
orthogonal = _deprecated(orthogonal_)
sparse = _deprecated(sparse_)
