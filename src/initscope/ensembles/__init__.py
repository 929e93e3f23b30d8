"""Ensembles: members drawn by the plan, stacked and vectorized; diversity measures.

:func:`ensemble` builds N members whose parameters the plan draws from one generator stream each
(reproducible member by member) and stacks them so that all run in one ``torch.vmap`` call;
:func:`diversity` measures how the members differ: predictions (ambiguity decomposition, error
correlation, disagreement, KL to the mean), representations (linear CKA), weights (cosine),
basins (loss barrier on the linear path) and the coverage of the ensemble's prediction
intervals. See ``docs/ensembles.md``.
"""

from initscope.ensembles._basins import loss_barrier
from initscope.ensembles._diversity import diversity
from initscope.ensembles._ensemble import Ensemble
from initscope.ensembles._members import draw_member, ensemble, member_seeds
from initscope.ensembles._results import (
    BasinDiversity,
    ClassificationDiversity,
    Coverage,
    Diversity,
    RegressionDiversity,
    RepresentationDiversity,
    WeightDiversity,
)

__all__ = [
    "BasinDiversity",
    "ClassificationDiversity",
    "Coverage",
    "Diversity",
    "Ensemble",
    "RegressionDiversity",
    "RepresentationDiversity",
    "WeightDiversity",
    "diversity",
    "draw_member",
    "ensemble",
    "loss_barrier",
    "member_seeds",
]
