"""Growing a trained model without changing what it computes, and warm-start resets.

:func:`widen` and :func:`deepen` (Net2Net: Chen, Goodfellow & Shlens 2016; bert2BERT: Chen et
al. 2022) add units or layers in place so that the grown model computes the same function;
:func:`shrink_perturb` (Ash & Adams 2020) moves every parameter towards a fresh draw of the
model's plan. See ``docs/warm_start.md``.
"""

from initscope.grow._deepen import Residual, deepen
from initscope.grow._result import Growth
from initscope.grow._shrink import shrink_perturb
from initscope.grow._trace import GrowthError
from initscope.grow._widen import widen

__all__ = ["Growth", "GrowthError", "Residual", "deepen", "shrink_perturb", "widen"]
