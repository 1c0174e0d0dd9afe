"""PyTorch training of SpQuant-SNN models (ternary membrane, power-of-two weights).

Never imports amaranth or cocotb: training must run without the hardware toolchain.
"""
from .neuron import QLIF, qlif_forward
from .quant import PoTConv2d, PoTLinear, pot_codes, pot_quantize
from .loss import tet_loss
from .model import SpikingConvNet, SpikingConvBlock, SpikingResNet19, build_model
from .data import load_dataset, to_time_major
from .trainer import evaluate, load_checkpoint, train

__all__ = ["QLIF", "qlif_forward", "PoTConv2d", "PoTLinear", "pot_codes", "pot_quantize",
           "tet_loss", "SpikingConvNet", "SpikingConvBlock", "SpikingResNet19", "build_model",
           "load_dataset", "to_time_major", "evaluate", "load_checkpoint", "train"]
