"""Integer export of a trained SpQuant-SNN: PoT codes, folded thresholds, masks.

Importing this package never imports torch; only ``model_export.from_torch`` does.
"""
from .format import (ExportError, LayerExport, NetworkExport, load_export, save_export,
                     decode_weights, encode_weights, validate)

__all__ = ["ExportError", "LayerExport", "NetworkExport", "load_export", "save_export",
           "decode_weights", "encode_weights", "validate"]
