"""The diversity measures as named fields: one small dataclass per measure."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from initscope._torch import jsonable

__all__ = [
    "BasinDiversity",
    "ClassificationDiversity",
    "Coverage",
    "Diversity",
    "RegressionDiversity",
    "RepresentationDiversity",
    "WeightDiversity",
]


def off_diagonal_mean(m: np.ndarray) -> float:
    """Mean of the off-diagonal entries of a square matrix (NaN below 2 x 2)."""
    n = m.shape[0]
    if n < 2:
        return math.nan
    return float((m.sum() - np.trace(m)) / (n * (n - 1)))


@dataclasses.dataclass(frozen=True)
class RegressionDiversity:
    """Spread of the members' predictions and, with targets, the ambiguity decomposition.

    With ``f_k`` the members' predictions, ``f = mean_k f_k`` the ensemble's and ``y`` the target,
    averaged over every predicted value (Krogh & Vedelsby 1995, equal weights):

        ensemble_error = mean_member_error - ambiguity,
        mean_member_error = mean_k mean (f_k - y)^2,  ambiguity = mean_k mean (f_k - f)^2,

    an identity, so the ensemble beats its average member by exactly the members' spread.

    Attributes:
        spread: mean over predicted values of the members' std (population, ddof 0).
        ambiguity: mean squared deviation of members from the ensemble mean.
        ensemble_error, mean_member_error, member_errors: mean squared errors (with targets).
        error_correlation: ``(n, n)`` Pearson correlation of the members' errors ``f_k - y``
            over the predicted values; ``mean_error_correlation`` its off-diagonal mean.
    """

    spread: float
    ambiguity: float
    ensemble_error: float | None
    mean_member_error: float | None
    member_errors: np.ndarray | None
    error_correlation: np.ndarray | None
    mean_error_correlation: float | None


@dataclasses.dataclass(frozen=True)
class ClassificationDiversity:
    """Pairwise disagreement and the members' KL divergence to the ensemble's mean prediction.

    ``disagreement[i, j]``: the fraction of examples where members ``i`` and ``j`` predict
    different classes (Fort et al. 2019). ``kl_to_mean[k] = mean_x KL(p_k(x) || p(x))`` with
    ``p = mean_k p_k``; its mean over members equals ``H(p) - mean_k H(p_k)``, the mutual
    information between the prediction and the member (Lakshminarayanan et al. 2017).
    """

    disagreement: np.ndarray
    mean_disagreement: float
    kl_to_mean: np.ndarray
    mean_kl_to_mean: float
    member_accuracy: np.ndarray | None
    ensemble_accuracy: float | None


@dataclasses.dataclass(frozen=True)
class RepresentationDiversity:
    """Linear CKA (Kornblith et al. 2019) between members, per layer: ``cka[layer]`` is an
    ``(n, n)`` matrix (1 on the diagonal), ``mean_cka[layer]`` its off-diagonal mean."""

    cka: dict[str, np.ndarray]
    mean_cka: dict[str, float]


@dataclasses.dataclass(frozen=True)
class WeightDiversity:
    """Cosine similarity between the members' flattened floating-point parameters:
    ``cosine`` ``(n, n)``, ``mean_cosine`` its off-diagonal mean (~0 for independent draws of a
    zero-mean scheme, 1 for identical members)."""

    cosine: np.ndarray
    mean_cosine: float


@dataclasses.dataclass(frozen=True)
class BasinDiversity:
    """Loss along the straight line between two members (linear mode connectivity).

    ``losses[p, a]`` is the loss at ``theta(alpha) = (1 - alpha) theta_i + alpha theta_j`` for
    pair ``pairs[p]`` and ``alphas[a]`` (floating buffers interpolated too). The barrier is the
    largest rise above the straight line between the endpoint losses,
    ``max_alpha [loss(alpha) - ((1 - alpha) loss(0) + alpha loss(1))]`` (linear mode
    connectivity, Frankle et al. 2020; this form, from Entezari et al. 2022, is 0 on a convex
    stretch even when the endpoints' losses differ). A barrier above 0 means the path leaves
    the low-loss region: the two members sit in distinct basins. ``relative_barriers`` divides
    by the endpoints' mean loss.
    """

    pairs: list[tuple[int, int]]
    alphas: np.ndarray
    losses: np.ndarray
    barriers: np.ndarray
    relative_barriers: np.ndarray
    mean_barrier: float
    max_barrier: float


@dataclasses.dataclass(frozen=True)
class Coverage:
    """How often held-out targets fall inside the ensemble's prediction intervals.

    The interval is ``f +- z s`` with ``f`` the members' mean, ``s`` their sample std (ddof 1)
    and ``z`` the standard normal quantile of ``(1 + level) / 2``: a Gaussian read of the
    members' spread, as in deep ensembles for regression (Lakshminarayanan et al. 2017). A
    calibrated ensemble covers a fraction ``level`` of the targets.
    """

    level: float
    z: float
    coverage: float
    mean_width: float
    n: int


@dataclasses.dataclass(frozen=True)
class Diversity:
    """Everything :func:`initscope.diversity` measured, one field per measure (``None`` where
    it does not apply: classification measures of a regression, error measures without
    targets)."""

    n_members: int
    task: str
    regression: RegressionDiversity | None
    classification: ClassificationDiversity | None
    representations: RepresentationDiversity | None
    weights: WeightDiversity | None
    basins: BasinDiversity | None
    coverage: Coverage | None

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values (arrays become lists, NaN/inf become None)."""
        return jsonable(dataclasses.asdict(self))

    def __str__(self) -> str:
        lines = [f"diversity of {self.n_members} members ({self.task})"]
        r = self.regression
        if r is not None:
            lines.append(f"  spread {r.spread:.4g}, ambiguity {r.ambiguity:.4g}")
            if r.ensemble_error is not None:
                lines.append(
                    f"  ensemble error {r.ensemble_error:.4g} = mean member error "
                    f"{r.mean_member_error:.4g} - ambiguity {r.ambiguity:.4g}; "
                    f"error correlation {r.mean_error_correlation:.3f}"
                )
        c = self.classification
        if c is not None:
            lines.append(
                f"  disagreement {c.mean_disagreement:.4f}, KL to mean {c.mean_kl_to_mean:.4g}"
            )
            if c.ensemble_accuracy is not None and c.member_accuracy is not None:
                lines.append(
                    f"  accuracy: ensemble {c.ensemble_accuracy:.4f}, members "
                    f"{float(c.member_accuracy.mean()):.4f} on average"
                )
        if self.representations is not None:
            for layer, v in self.representations.mean_cka.items():
                lines.append(f"  CKA {layer}: {v:.4f}")
        if self.weights is not None:
            lines.append(f"  weight cosine {self.weights.mean_cosine:.4f}")
        if self.basins is not None:
            b = self.basins
            lines.append(
                f"  loss barrier: mean {b.mean_barrier:.4g}, max {b.max_barrier:.4g} "
                f"over {len(b.pairs)} pair(s)"
            )
        if self.coverage is not None:
            cov = self.coverage
            lines.append(
                f"  {cov.level:.0%} interval coverage {cov.coverage:.3f} (mean width "
                f"{cov.mean_width:.4g}, {cov.n} values)"
            )
        return "\n".join(lines)
