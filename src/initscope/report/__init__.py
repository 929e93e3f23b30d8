"""The result of :func:`initscope.diagnose`: per-layer statistics, verdicts, and their views
(:mod:`initscope.report.views`, which read the records and never the other way)."""

from initscope.report._report import LayerStats, Report, compare
from initscope.report._rules import (
    DEAD_LIMIT,
    DEPTH_MIN,
    KINDS,
    LOG2_LIMIT,
    SATURATED_LIMIT,
    SATURATION_MARGIN,
    TREND_MIN,
    VERDICTS,
    Kind,
    Role,
    Verdict,
)

__all__ = [
    "DEAD_LIMIT",
    "DEPTH_MIN",
    "KINDS",
    "LOG2_LIMIT",
    "SATURATED_LIMIT",
    "SATURATION_MARGIN",
    "TREND_MIN",
    "VERDICTS",
    "Kind",
    "LayerStats",
    "Report",
    "Role",
    "Verdict",
    "compare",
]
