"""Exact Gaussian-moment theory of initialization, for any activation.

For pre-activations ``z ~ N(0, q)`` the forward condition is ``n_in sigma^2 c_fwd = 1`` and the
backward condition ``n_out sigma^2 c_bwd = 1`` with ``c_fwd = E[f(z)^2] / q`` and
``c_bwd = E[f'(z)^2]`` (Glorot & Bengio 2010; He et al. 2015). This package computes those moments
by quadrature (:func:`moments`, :func:`gain`), the mean-field picture of deep plain stacks
(:func:`variance_map`, :func:`fixed_point`, :func:`chi1`, :func:`critical_sigma_w2`,
:func:`depth_scales`; Poole et al. 2016, Schoenholz et al. 2017), a critical point with a chosen
fixed point (:func:`critical_point`), depth predictions (:func:`depth_profile`), and the
selection guide as data (:func:`recommend`, :func:`guide`). Pure NumPy/SciPy; torch enters only
through :mod:`initscope.activations`.
"""

from initscope.theory._depthscales import DepthScales, depth_scales
from initscope.theory._guide import GuideEntry, Recommendation, guide, recommend
from initscope.theory._meanfield import (
    CriticalPoint,
    DepthProfile,
    chi1,
    critical_point,
    critical_sigma_w2,
    depth_profile,
    fixed_point,
    variance_map,
)
from initscope.theory._moments import Moments, c_backward, c_forward, gain, moments

__all__ = [
    "Moments",
    "moments",
    "c_forward",
    "c_backward",
    "gain",
    "variance_map",
    "fixed_point",
    "chi1",
    "critical_sigma_w2",
    "DepthScales",
    "depth_scales",
    "CriticalPoint",
    "critical_point",
    "DepthProfile",
    "depth_profile",
    "Recommendation",
    "recommend",
    "GuideEntry",
    "guide",
]
