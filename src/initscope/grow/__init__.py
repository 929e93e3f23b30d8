"""Models that already learned: growth that keeps the function, warm-start resets, new heads.

:func:`widen` and :func:`deepen` (Net2Net: Chen, Goodfellow & Shlens 2016; bert2BERT: Chen et
al. 2022) add units or layers in place so that the grown model computes the same function;
:func:`shrink_perturb` (Ash & Adams 2020) moves every parameter towards a fresh draw of the
model's plan; :func:`init_head` initializes a new output head for a trained body (calibrated to
the targets, or fitted on frozen features: LP-FT, Kumar et al. 2022). See
``docs/warm_start.md``.
"""

from initscope.grow._deepen import Residual, deepen
from initscope.grow._heads import HeadMode, HeadResult, Link, init_head
from initscope.grow._result import Growth
from initscope.grow._shrink import shrink_perturb
from initscope.grow._trace import GrowthError
from initscope.grow._widen import widen

__all__ = [
    "Growth",
    "GrowthError",
    "HeadMode",
    "HeadResult",
    "Link",
    "Residual",
    "deepen",
    "init_head",
    "shrink_perturb",
    "widen",
]
