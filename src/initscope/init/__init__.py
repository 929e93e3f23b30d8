"""Initialization schemes: a drop-in for ``torch.nn.init`` plus the Keras/JAX family.

Same name means same semantics as torch: ``uniform_``, ``normal_``, ``xavier_*`` and ``kaiming_*``
give bit-identical values under the same generator. Differences from torch, all deliberate:

* ``trunc_normal_`` draws the same distribution with an exact sampler at about the speed of
  ``normal_`` (8-16x faster than torch's on CPU);
* ``sparse_`` draws its zero mask from ``generator=`` too and has no Python loop over columns;
* ``orthogonal_`` works for float16/bfloat16 (QR in float32, then cast);
* fan-based schemes take ``fans=`` (see :mod:`initscope.fans`) and warn on zero-element tensors;
* bad arguments (wrong types, NaN or infinite numbers) raise ``ValueError``/``TypeError`` naming
  the argument, before any tensor change;
* ``calculate_gain`` gives one answer per activation, however it is spelled.

As torch's, every function dispatches through ``__torch_function__``, and the deprecated names
without the underscore (``normal``, ``xavier_uniform``, ...) warn and call the new ones.

Extensions (``_extended.py``): ``variance_scaling_`` (Keras/JAX), ``lecun_normal_``,
``lecun_uniform_``, ``he_truncated_normal_`` and ``glorot_truncated_normal_`` (Keras/JAX
``he_normal``/``glorot_normal``), ``truncated_normal_`` (bounds in standard deviations, variance
corrected) and ``delta_orthogonal_``. One registry record per scheme
(:mod:`initscope.init.registry`) serves drawing (:data:`SCHEMES`, :func:`get_scheme`) and planning.
"""

from __future__ import annotations

from initscope.init._extended import (
    delta_orthogonal_,
    glorot_truncated_normal_,
    he_truncated_normal_,
    lecun_normal_,
    lecun_uniform_,
    truncated_normal_,
    variance_scaling_,
)
from initscope.init._fans import FanMode as FanMode
from initscope.init._fans import Fans as Fans
from initscope.init._fans import fans as fans
from initscope.init._fans import param_shape as param_shape
from initscope.init._fans import torch_fans as torch_fans
from initscope.init._schemes import Distribution as Distribution
from initscope.init._schemes import TorchNonlinearity as TorchNonlinearity
from initscope.init._schemes import (  # noqa: F401  with the deprecated names torch keeps
    calculate_gain,
    constant,
    constant_,
    dirac,
    dirac_,
    eye,
    eye_,
    kaiming_normal,
    kaiming_normal_,
    kaiming_uniform,
    kaiming_uniform_,
    normal,
    normal_,
    ones_,
    orthogonal,
    orthogonal_,
    sparse,
    sparse_,
    trunc_normal_,
    uniform,
    uniform_,
    xavier_normal,
    xavier_normal_,
    xavier_uniform,
    xavier_uniform_,
    zeros_,
)
from initscope.init.registry import SCHEMES, get_scheme

__all__ = [
    "calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
    "eye_", "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
    "orthogonal_", "sparse_", "lecun_normal_", "lecun_uniform_", "variance_scaling_",
    "truncated_normal_", "delta_orthogonal_", "SCHEMES", "get_scheme", "he_truncated_normal_",
    "glorot_truncated_normal_",
]  # fmt: skip
