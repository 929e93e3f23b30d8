"""The Keras/JAX family: ``variance_scaling_`` and its named cases (LeCun, He and Glorot truncated),
the variance-corrected ``truncated_normal_``, and delta-orthogonal conv kernels."""

from __future__ import annotations

import math
from typing import get_args

import torch
from torch import Tensor

from initscope.init._fans import FanMode, Fans
from initscope.init._sampling import (
    check_choice,
    check_real,
    check_tensor,
    dispatch,
    fill_truncated_normal_,
    orthogonal_matrix,
    resolve_fans,
    truncated_std,
    warn_if_empty,
)
from initscope.init._schemes import Distribution

_DISTRIBUTIONS: tuple[str, ...] = get_args(Distribution)
_VARIANCE_MODES: tuple[str, ...] = get_args(FanMode)


@dispatch
def variance_scaling_(
    tensor: Tensor,
    scale: float = 1.0,
    mode: FanMode = "fan_in",
    distribution: Distribution = "truncated_normal",
    fans: Fans | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Keras/JAX ``VarianceScaling``: ``Var(W) = scale / n``, ``n`` = fan_in, fan_out or fan_avg.

    ``"truncated_normal"``: a normal truncated at 2 of its standard deviations, whose std is divided
    by 0.87962566103423978 (the std of N(0, 1) truncated to [-2, 2]) so that the variance after
    truncation is exactly ``scale / n``; ``"normal"``: ``N(0, scale / n)``; ``"uniform"``:
    ``U(-sqrt(3 scale / n), sqrt(3 scale / n))``. ``fan_avg = (fan_in + fan_out) / 2``.
    ``scale=2, mode="fan_in"`` is He, ``scale=1, mode="fan_avg"`` Glorot, ``scale=1,
    mode="fan_in"`` LeCun.
    """
    check_tensor(tensor)
    scale = check_real("scale", scale, low=0, strict=True)
    check_choice("mode", mode, _VARIANCE_MODES)
    check_choice("distribution", distribution, _DISTRIBUTIONS)
    if warn_if_empty(tensor, stacklevel=4):
        return tensor
    variance = scale / resolve_fans(tensor, fans).fan(mode)
    with torch.no_grad():
        if distribution in ("normal", "untruncated_normal"):
            return tensor.normal_(0.0, math.sqrt(variance), generator=generator)
        if distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return tensor.uniform_(-limit, limit, generator=generator)
    return truncated_normal_(tensor, math.sqrt(variance), generator=generator)


@dispatch
def lecun_normal_(
    tensor: Tensor, fans: Fans | None = None, generator: torch.Generator | None = None
) -> Tensor:
    r"""LeCun normal: ``Var(W) = 1 / fan_in``, truncated at 2 std with the variance corrected.

    ``variance_scaling_(tensor, 1.0, "fan_in", "truncated_normal")``, as Keras' and JAX's
    ``lecun_normal``. The init of self-normalizing networks (SELU): Klambauer et al. (2017);
    LeCun et al. (1998), "Efficient BackProp".
    """
    return variance_scaling_(tensor, 1.0, "fan_in", "truncated_normal", fans, generator)


@dispatch
def lecun_uniform_(
    tensor: Tensor, fans: Fans | None = None, generator: torch.Generator | None = None
) -> Tensor:
    r"""LeCun uniform: ``U(-sqrt(3 / fan_in), sqrt(3 / fan_in))``, so ``Var(W) = 1 / fan_in``.

    ``variance_scaling_(tensor, 1.0, "fan_in", "uniform")``, as Keras and JAX.
    """
    return variance_scaling_(tensor, 1.0, "fan_in", "uniform", fans, generator)


@dispatch
def truncated_normal_(
    tensor: Tensor,
    std: float = 1.0,
    lower: float = -2.0,
    upper: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Zero-mean truncated normal whose standard deviation *after* truncation is ``std``.

    Draws ``N(0, s^2)`` conditioned on ``[lower * s, upper * s]`` with ``s = std / c`` and ``c`` the
    std of ``N(0, 1)`` truncated to ``[lower, upper]`` (0.87962566103423978 for ``[-2, 2]``): the
    bounds are in standard deviations of the untruncated normal, as in Keras/JAX
    ``variance_scaling``. Compare torch's :func:`trunc_normal_` (absolute bounds, std below the one
    asked for) and JAX's standalone ``jax.random.truncated_normal`` (``std`` is the scale before
    truncation). For asymmetric bounds the mean is not zero; the std is still ``std``.
    """
    check_tensor(tensor)
    std = check_real("std", std, low=0, strict=True)
    lower = check_real("lower", lower, infinite=True)
    upper = check_real("upper", upper, infinite=True)
    if not lower < upper:
        raise ValueError(f"need lower < upper, got lower={lower}, upper={upper}")
    if tensor.is_meta or tensor.numel() == 0:
        return tensor
    s = std / truncated_std(lower, upper)
    with torch.no_grad():
        return fill_truncated_normal_(tensor, 0.0, s, lower * s, upper * s, generator)


@dispatch
def delta_orthogonal_(
    tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    r"""Delta-orthogonal conv kernel: zero except the spatial centre, which is ``gain * H``.

    ``H`` is a random ``out x in`` matrix with orthonormal columns (``H^T H = I``), so the conv
    at initialization is an orthogonal map of the channels at every position: dynamical
    isometry for very deep CNNs. Xiao et al. (2018), "Dynamical Isometry and a Mean Field Theory
    of CNNs: How to Train 10,000-Layer Vanilla Convolutional Neural Networks". ``tensor`` is a
    3-, 4- or 5-D conv weight ``(out, in, *kernel)`` with ``out >= in``; the centre is ``k // 2``.
    """
    check_tensor(tensor)
    if tensor.ndimension() not in (3, 4, 5):
        raise ValueError(
            f"tensor must be a 3-, 4- or 5-D conv weight, got shape {tuple(tensor.shape)}"
        )
    gain = check_real("gain", gain)
    out_channels, in_channels = tensor.shape[:2]
    if out_channels < in_channels:
        raise ValueError(
            f"delta_orthogonal_ needs out_channels >= in_channels, got {out_channels} < "
            f"{in_channels} (shape {tuple(tensor.shape)})"
        )
    if warn_if_empty(tensor, stacklevel=4) or tensor.is_meta:
        return tensor
    q = orthogonal_matrix(out_channels, in_channels, tensor, generator).mul_(gain)
    centre = tuple(k // 2 for k in tensor.shape[2:])
    with torch.no_grad():
        tensor.zero_()
        tensor[(slice(None), slice(None)) + centre] = q
    return tensor


@dispatch
def he_truncated_normal_(
    tensor: Tensor, fans: Fans | None = None, generator: torch.Generator | None = None
) -> Tensor:
    r"""Keras' and JAX's ``he_normal``: ``Var(W) = 2 / fan_in``, truncated at 2 std, corrected.

    ``variance_scaling_(tensor, 2.0, "fan_in", "truncated_normal")``. initscope's ``he_normal``
    scheme name is torch's untruncated :func:`kaiming_normal_`; this is the Keras/JAX meaning.
    He et al. (2015).
    """
    return variance_scaling_(tensor, 2.0, "fan_in", "truncated_normal", fans, generator)


@dispatch
def glorot_truncated_normal_(
    tensor: Tensor, fans: Fans | None = None, generator: torch.Generator | None = None
) -> Tensor:
    r"""Keras' and JAX's ``glorot_normal``: ``Var(W) = 2 / (fan_in + fan_out)``, truncated at 2
    std with the variance corrected.

    ``variance_scaling_(tensor, 1.0, "fan_avg", "truncated_normal")``. initscope's
    ``glorot_normal`` scheme name is torch's untruncated :func:`xavier_normal_`; this is the
    Keras/JAX meaning. Glorot & Bengio (2010).
    """
    return variance_scaling_(tensor, 1.0, "fan_avg", "truncated_normal", fans, generator)
