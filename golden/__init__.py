"""Bit-exact NumPy reference of the integer contract (no torch)."""
from .model import GoldenResult, run, synaptic_current, neuron_step, sum_pool, work_counts

__all__ = ["GoldenResult", "run", "synaptic_current", "neuron_step", "sum_pool", "work_counts"]
