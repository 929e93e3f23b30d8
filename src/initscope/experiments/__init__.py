"""Reproductions of the classic weight-initialization results, and what they leave out.

One module per result; each has ``run(*, quick=False, generator=None)`` that computes numbers
only and returns a dataclass with the data and a list of :class:`Claim` (the classic claim, what
was measured, whether it reproduced). ``initscope demo`` draws them and writes the report.

>>> from initscope import experiments
>>> result = experiments.run("deep_linear", quick=True)
>>> result.max_deviation_orthogonal < 1e-10
True
>>> result.claims[0].claim
'Orthogonal layers make the end-to-end map of a deep linear net an isometry: all singular values 1.'
"""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType

import torch

from initscope.experiments._common import Claim, Result

#: The experiments in the order the demo runs them (the classic results and, next to them, what
#: the textbook advice misses). One entry per line, so that adding one is a one-line change.
EXPERIMENTS: tuple[str, ...] = (
    "symmetry",
    "scale_sweep",
    "xavier_vs_he",
    "deep_relu",
    "normalization",
    "beyond_guide",
    "deep_linear",
    "pricing",
    "warm_start",
    "transfer",
    "ensembles",
)
#: An experiment's name: one of :data:`EXPERIMENTS` (checked by :func:`get`).
ExperimentName = str

__all__ = ["EXPERIMENTS", "Claim", "ExperimentName", "Result", "get", "run"]


def get(name: str) -> ModuleType:
    """The module of experiment ``name`` (it has ``TITLE`` and ``run``).

    Raises ``ValueError`` naming the valid experiments (close matches first) for an unknown name.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    if name not in EXPERIMENTS:
        close = difflib.get_close_matches(name, EXPERIMENTS, n=len(EXPERIMENTS), cutoff=0.5)
        ordered = close + [e for e in EXPERIMENTS if e not in close]
        raise ValueError(f"name: unknown experiment {name!r}; valid: {', '.join(ordered)}")
    return importlib.import_module(f"initscope.experiments.{name}")


def run(name: str, *, quick: bool = False, generator: torch.Generator | None = None) -> Result:
    """Run experiment ``name`` (see :data:`EXPERIMENTS`) and return its result dataclass.

    ``generator=None`` uses a fresh generator seeded with 0, so results are deterministic.
    """
    return get(name).run(quick=quick, generator=generator)
