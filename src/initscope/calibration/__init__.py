"""Calibration with data: LSUV (Mishkin & Matas 2016), one progressive pass in execution order;
new output heads calibrated to the targets or fitted on frozen features (:func:`init_head`)."""

from initscope._torch import Batch
from initscope.calibration._lsuv import LSUVLayer, LSUVResult, lsuv

__all__ = ["Batch", "LSUVLayer", "LSUVResult", "lsuv"]
