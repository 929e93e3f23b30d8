"""Diagnostics: one forward and backward pass, measured per layer and held against theory."""

from initscope.diagnostics._run import diagnose, synthetic_batch
from initscope.diagnostics._similarity import linear_cka

__all__ = ["diagnose", "linear_cka", "synthetic_batch"]
