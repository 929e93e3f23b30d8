"""initscope: weight initialization and signal propagation for PyTorch.

Schemes (a drop-in for ``torch.nn.init`` plus LeCun, variance scaling, truncated normal,
delta-orthogonal), exact Gaussian-moment theory for any activation, an explained per-model
policy, LSUV and diagnostics.
"""

__version__ = "0.2.0"

from initscope import init
from initscope.activations import Activation, resolve
from initscope.activations import resolve as resolve_activation
from initscope.calibration._lsuv import LSUVResult, lsuv
from initscope.diagnostics._run import diagnose
from initscope.ensembles import Diversity, Ensemble, diversity, ensemble
from initscope.graph import Layer, inspect_model
from initscope.grow import Growth, HeadResult, deepen, init_head, shrink_perturb, widen
from initscope.init import (
    SCHEMES,
    calculate_gain,
    constant_,
    delta_orthogonal_,
    dirac_,
    eye_,
    get_scheme,
    kaiming_normal_,
    kaiming_uniform_,
    lecun_normal_,
    lecun_uniform_,
    normal_,
    ones_,
    orthogonal_,
    sparse_,
    trunc_normal_,
    truncated_normal_,
    uniform_,
    variance_scaling_,
    xavier_normal_,
    xavier_uniform_,
    zeros_,
)
from initscope.init._fans import Fans, fans
from initscope.policy import PRESETS, Choice
from initscope.policy._plan import Plan, initialize, plan
from initscope.report import LayerStats, Report, compare
from initscope.theory import (
    CriticalPoint,
    DepthProfile,
    DepthScales,
    GuideEntry,
    Moments,
    Recommendation,
    c_backward,
    c_forward,
    chi1,
    critical_point,
    critical_sigma_w2,
    depth_profile,
    depth_scales,
    fixed_point,
    gain,
    guide,
    moments,
    recommend,
    variance_map,
)

__all__ = [
    "__version__",
    "Fans",
    "fans",
    "init",
    "calculate_gain",
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
    "lecun_normal_",
    "lecun_uniform_",
    "variance_scaling_",
    "truncated_normal_",
    "delta_orthogonal_",
    "SCHEMES",
    "get_scheme",
    "Activation",
    "resolve",
    "resolve_activation",
    "Moments",
    "moments",
    "c_forward",
    "c_backward",
    "gain",
    "variance_map",
    "fixed_point",
    "chi1",
    "critical_sigma_w2",
    "critical_point",
    "CriticalPoint",
    "depth_profile",
    "DepthProfile",
    "DepthScales",
    "depth_scales",
    "guide",
    "GuideEntry",
    "recommend",
    "Recommendation",
    "diagnose",
    "Report",
    "LayerStats",
    "compare",
    "lsuv",
    "LSUVResult",
    "inspect_model",
    "Layer",
    "plan",
    "Plan",
    "Choice",
    "initialize",
    "PRESETS",
    "widen",
    "deepen",
    "shrink_perturb",
    "Growth",
    "init_head",
    "HeadResult",
    "ensemble",
    "Ensemble",
    "diversity",
    "Diversity",
]


def _deprecated_module_paths() -> None:
    """One-release shims: ``from initscope.plan import Plan`` (and ``.fans``, ``.lsuv``,
    ``.diagnose``) keeps working with a ``DeprecationWarning``. These names are functions of
    the package; the modules now live in ``initscope.policy``, ``initscope.init``,
    ``initscope.calibration`` and ``initscope.diagnostics``."""
    import importlib
    import sys
    import types
    import warnings

    moved = {
        "fans": "initscope.init._fans",
        "plan": "initscope.policy",
        "lsuv": "initscope.calibration",
        "diagnose": "initscope.diagnostics",
    }
    public = {"fans": "initscope", "plan": "initscope.policy", "lsuv": "initscope.calibration",
              "diagnose": "initscope.diagnostics"}  # fmt: skip
    for old, target in moved.items():
        name = f"initscope.{old}"

        def __getattr__(attr: str, _name: str = name, _target: str = target, _old: str = old):
            if attr.startswith("__"):
                raise AttributeError(attr)
            warnings.warn(
                f"importing from {_name} is deprecated and will stop working in initscope 0.3: "
                f"import from {public[_old]} (initscope.{_old} is the function)",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(importlib.import_module(_target), attr)

        shim = types.ModuleType(name, f"Deprecated path; use {public[old]}.")
        shim.__getattr__ = __getattr__  # type: ignore[method-assign]
        sys.modules.setdefault(name, shim)


_deprecated_module_paths()
