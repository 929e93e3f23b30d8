"""Representation similarity: linear centered kernel alignment (CKA).

Kornblith, Norouzi, Lee & Hinton (2019), "Similarity of Neural Network Representations
Revisited": for two representations of the same ``n`` examples, ``X`` (n x p) and ``Y`` (n x q),
centered over the examples,

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F),

which is 1 for representations equal up to an orthogonal transform and isotropic scaling, and
invariant to both; 0 when every feature of one is uncorrelated with every feature of the other.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["linear_cka"]


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA between ``x`` and ``y``, two batches of the same examples (first dim).

    Trailing dims are flattened into features. Computed in float64.

    Raises:
        TypeError: ``x`` or ``y`` is not a tensor.
        ValueError: different numbers of examples, fewer than 2 examples, a non-finite value,
            or a representation that is constant over the examples (CKA is undefined).
    """
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
        if t.dim() < 1 or t.shape[0] < 2:
            raise ValueError(f"{name}: needs at least 2 examples (first dim), got {tuple(t.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same examples: {x.shape[0]} vs {y.shape[0]}")
    a = x.detach().reshape(x.shape[0], -1).to(torch.float64)
    b = y.detach().reshape(y.shape[0], -1).to(torch.float64)
    for name, t in (("x", a), ("y", b)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name}: contains inf or nan")
    a = a - a.mean(0)
    b = b - b.mean(0)

    # ||A^T A||_F computed as ||A A^T||_F when n < p: the same value, a smaller matrix.
    def gram_norm(t: Tensor) -> Tensor:
        g = t @ t.T if t.shape[0] < t.shape[1] else t.T @ t
        return torch.linalg.matrix_norm(g)

    na, nb = gram_norm(a), gram_norm(b)
    if na == 0 or nb == 0:
        raise ValueError("a representation is constant over the examples: CKA is undefined")
    cross = torch.linalg.matrix_norm(b.T @ a) ** 2
    return float(cross / (na * nb))
