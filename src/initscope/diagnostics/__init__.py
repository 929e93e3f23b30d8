"""Diagnostics: one forward and backward pass, measured per layer and held against theory."""

from initscope.diagnostics._run import diagnose

__all__ = ["diagnose"]
