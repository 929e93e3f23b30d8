"""Closed-form NumPy definitions of the named activations and their derivatives.

Each builder takes the activation's (validated) parameter and returns
``(f, df, kinks, bounds, scale)`` as :class:`initscope.activations.Activation` stores them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import special

#: SELU constants (Klambauer et al. 2017), as torch uses them.
SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_TANH_C = 0.044715


def _relu(_: None) -> tuple:
    def df(x: np.ndarray) -> np.ndarray:
        return (x > 0).astype(np.float64)

    return (lambda x: np.maximum(x, 0.0), df, (0.0,), (0.0, None), 1.0)


def _leaky_relu(a: float) -> tuple:
    return (
        lambda x: np.where(x > 0, x, a * x),
        lambda x: np.where(x > 0, 1.0, a),
        (0.0,),
        (None, None),
        1.0,
    )


def _elu_parts(alpha: float, lam: float = 1.0) -> tuple:
    def f(x: np.ndarray) -> np.ndarray:
        return lam * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))

    def df(x: np.ndarray) -> np.ndarray:
        return lam * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))

    return f, df


def _elu(alpha: float) -> tuple:
    return (*_elu_parts(alpha), (0.0,), (None, None), 1.0)


def _celu(alpha: float) -> tuple:
    def f(x: np.ndarray) -> np.ndarray:
        return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0) / alpha))

    def df(x: np.ndarray) -> np.ndarray:
        return np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0) / alpha))

    return f, df, (0.0,), (None, None), alpha


def _selu(_: None) -> tuple:
    return (*_elu_parts(SELU_ALPHA, SELU_LAMBDA), (0.0,), (None, None), 1.0)


def _gelu(_: None) -> tuple:
    return (
        lambda x: x * special.ndtr(x),
        lambda x: special.ndtr(x) + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x),
        (),
        (None, None),
        1.0,
    )


def _gelu_tanh(_: None) -> tuple:
    def f(x: np.ndarray) -> np.ndarray:
        return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + _GELU_TANH_C * x**3)))

    def df(x: np.ndarray) -> np.ndarray:
        t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_TANH_C * x**3))
        du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_C * x * x)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du

    return f, df, (), (None, None), 1.0


def _silu(_: None) -> tuple:
    def df(x: np.ndarray) -> np.ndarray:
        s = special.expit(x)
        return s * (1.0 + x * (1.0 - s))

    return (lambda x: x * special.expit(x), df, (), (None, None), 1.0)


def _mish(_: None) -> tuple:
    def df(x: np.ndarray) -> np.ndarray:
        t = np.tanh(np.logaddexp(0.0, x))
        return t + x * (1.0 - t * t) * special.expit(x)

    return (lambda x: x * np.tanh(np.logaddexp(0.0, x)), df, (), (None, None), 1.0)


def _softplus(beta: float) -> tuple:
    return (
        lambda x: np.logaddexp(0.0, beta * x) / beta,
        lambda x: special.expit(beta * x),
        (),
        (0.0, None),
        1.0 / beta,
    )


def _sigmoid(_: None) -> tuple:
    def df(x: np.ndarray) -> np.ndarray:
        s = special.expit(x)
        return s * (1.0 - s)

    return (special.expit, df, (), (0.0, 1.0), 1.0)


def _tanh(_: None) -> tuple:
    def df(x: np.ndarray) -> np.ndarray:
        t = np.tanh(x)
        return 1.0 - t * t

    return (np.tanh, df, (), (-1.0, 1.0), 1.0)


def clip_parts(lo: float, hi: float) -> tuple:
    return (
        lambda x: np.clip(x, lo, hi),
        lambda x: ((x > lo) & (x < hi)).astype(np.float64),
        (lo, hi),
        (lo, hi),
        1.0,
    )


def _hardtanh(bound: float) -> tuple:
    return clip_parts(-bound, bound)


def _relu6(_: None) -> tuple:
    return clip_parts(0.0, 6.0)


def _hardsigmoid(_: None) -> tuple:
    return (
        lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
        lambda x: np.where((x > -3.0) & (x < 3.0), 1.0 / 6.0, 0.0),
        (-3.0, 3.0),
        (0.0, 1.0),
        1.0,
    )


def _hardswish(_: None) -> tuple:
    def df(x: np.ndarray) -> np.ndarray:
        return np.where(x >= 3.0, 1.0, np.where(x > -3.0, (2.0 * x + 3.0) / 6.0, 0.0))

    return (lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0, df, (-3.0, 3.0), (None, None), 1.0)


def _softsign(_: None) -> tuple:
    return (
        lambda x: x / (1.0 + np.abs(x)),
        lambda x: 1.0 / (1.0 + np.abs(x)) ** 2,
        (0.0,),  # f'' jumps at 0
        (-1.0, 1.0),
        1.0,
    )


def _logsigmoid(_: None) -> tuple:
    return (lambda x: -np.logaddexp(0.0, -x), lambda x: special.expit(-x), (), (None, 0.0), 1.0)


def _sin(_: None) -> tuple:
    return (np.sin, np.cos, (), (-1.0, 1.0), 1.0)


def _linear(_: None) -> tuple:
    return (lambda x: np.array(x, dtype=np.float64), np.ones_like, (), (None, None), 1.0)


# name -> (builder, default parameter or None when the activation has none, what the parameter is)
REGISTRY: dict[str, tuple[Callable[[Any], tuple], float | None, str | None]] = {
    "relu": (_relu, None, None),
    "leaky_relu": (_leaky_relu, 0.01, "negative slope"),
    "elu": (_elu, 1.0, "alpha"),
    "celu": (_celu, 1.0, "alpha (> 0)"),
    "selu": (_selu, None, None),
    "gelu": (_gelu, None, None),
    "gelu_tanh": (_gelu_tanh, None, None),
    "silu": (_silu, None, None),
    "mish": (_mish, None, None),
    "softplus": (_softplus, 1.0, "beta (> 0)"),
    "sigmoid": (_sigmoid, None, None),
    "tanh": (_tanh, None, None),
    "hardtanh": (_hardtanh, 1.0, "symmetric bound max_val (> 0); min_val = -max_val"),
    "hardsigmoid": (_hardsigmoid, None, None),
    "hardswish": (_hardswish, None, None),
    "relu6": (_relu6, None, None),
    "softsign": (_softsign, None, None),
    "logsigmoid": (_logsigmoid, None, None),
    "sin": (_sin, None, None),
    "linear": (_linear, None, None),
}

# torch's calculate_gain treats its convolution names as linear.
ALIASES = {
    "swish": "silu",
    "identity": "linear",
    "gelu_erf": "gelu",
    "leakyrelu": "leaky_relu",
    "log_sigmoid": "logsigmoid",
    "hard_tanh": "hardtanh",
    "hard_sigmoid": "hardsigmoid",
    "hard_swish": "hardswish",
    **{
        c: "linear"
        for c in (
            "conv1d",
            "conv2d",
            "conv3d",
            "conv_transpose1d",
            "conv_transpose2d",
            "conv_transpose3d",
        )
    },
}

# parameters that must be > 0 (hardtanh's bound, celu's alpha, softplus's beta)
POSITIVE_PARAMS = {"celu", "softplus", "hardtanh"}
