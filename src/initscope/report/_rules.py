"""The verdict vocabulary and thresholds (private): what the measuring code and the report share.

The rules themselves are stated in :mod:`initscope.report._report`; this module holds the numbers
and the names so that :mod:`initscope.diagnostics` (which measures) and the views (which print)
read them without importing the report's code.
"""

from __future__ import annotations

from typing import Literal, get_args

Verdict = Literal["healthy", "exploding", "vanishing", "dead", "saturated", "symmetric"]
Kind = Literal["weight", "activation", "norm", "embedding", "attention", "recurrent"]
Role = Literal["body", "head", "gate"]
VERDICTS: tuple[str, ...] = get_args(Verdict)
KINDS: tuple[str, ...] = get_args(Kind)

DEPTH_MIN = 10  # weight layers the depth rules need
TREND_MIN = 3  # body weight layers a trend needs
LOG2_LIMIT = 2.0
DEAD_LIMIT = 0.5
SATURATED_LIMIT = 0.5
SATURATION_MARGIN = 0.01  # an output within 1% of the range from a bound is saturated
