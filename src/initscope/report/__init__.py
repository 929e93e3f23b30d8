"""The result of :func:`initscope.diagnose`: per-layer statistics, verdicts, and their views
(:mod:`initscope.report.views`)."""

from initscope.report._report import (
    DEAD_LIMIT,
    DEPTH_MIN,
    KINDS,
    LOG2_LIMIT,
    SATURATED_LIMIT,
    SATURATION_MARGIN,
    VERDICTS,
    Kind,
    LayerStats,
    Report,
    Verdict,
    compare,
)

__all__ = [
    "DEAD_LIMIT",
    "DEPTH_MIN",
    "KINDS",
    "LOG2_LIMIT",
    "SATURATED_LIMIT",
    "SATURATION_MARGIN",
    "VERDICTS",
    "Kind",
    "LayerStats",
    "Report",
    "Verdict",
    "compare",
]
