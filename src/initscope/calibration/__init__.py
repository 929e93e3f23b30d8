"""Calibration with data: LSUV (Mishkin & Matas 2016), one progressive pass in execution order."""

from initscope._torch import Batch
from initscope.calibration._lsuv import LSUVLayer, LSUVResult, lsuv

__all__ = ["Batch", "LSUVLayer", "LSUVResult", "lsuv"]
