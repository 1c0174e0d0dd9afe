"""Efficiency accounting without torch: operation counts -> energy (``efficiency.energy``),
weight-aware work counts of an integer export (``efficiency.counts``) and where a network's
work goes in the core (``efficiency.breakdown``).

``efficiency.model_counts`` (the same counts from a PyTorch model) needs torch and is not
imported here: ``import efficiency`` loads NumPy only.
"""
from .energy import (ENERGY_PJ, HOROWITZ_45NM_PJ, OpEnergy, access_energy, dense_mac_energy,
                     eq31_energy, int_add_pj, layer_ops, sram_access_pj,
                     op_energy, snn_energy)

__all__ = ["ENERGY_PJ", "HOROWITZ_45NM_PJ", "OpEnergy", "access_energy", "dense_mac_energy",
           "eq31_energy", "int_add_pj", "layer_ops", "sram_access_pj",
           "op_energy", "snn_energy"]
