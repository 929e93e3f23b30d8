"""Calibration with data: LSUV (Mishkin & Matas 2016), one progressive pass in execution order."""

from initscope.calibration._lsuv import LSUVLayer, LSUVResult, lsuv

__all__ = ["LSUVLayer", "LSUVResult", "lsuv"]
