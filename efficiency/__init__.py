"""Efficiency accounting without torch: operation counts -> energy (``efficiency.energy``)
and weight-aware work counts of an integer export (``efficiency.counts``)."""
from .energy import (ENERGY_PJ, OpEnergy, dense_mac_energy, eq31_energy, layer_ops,
                     op_energy, snn_energy)

__all__ = ["ENERGY_PJ", "OpEnergy", "dense_mac_energy", "eq31_energy", "layer_ops",
           "op_energy", "snn_energy"]
