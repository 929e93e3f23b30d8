"""Number formatting shared by the report's reasons and its views (private)."""

from __future__ import annotations

import math


def signed(x: float, digits: int = 2) -> str:
    """``+1.23`` / ``-0.50``; ``n/a`` for nan (too few layers for a trend, no gradient)."""
    return "n/a" if math.isnan(x) else f"{x:+.{digits}f}"


def num(x: float | None) -> str:
    """Three significant digits; ``-`` for a statistic that does not exist."""
    if x is None:
        return "-"
    if math.isnan(x):
        return "nan"
    return f"{x:.3g}"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"
