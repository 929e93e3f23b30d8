"""Diagnostics: one forward and backward pass, measured per layer and held against theory."""

from initscope.diagnostics._run import diagnose
from initscope.diagnostics._similarity import linear_cka

__all__ = ["diagnose", "linear_cka"]
