"""Bit-exact NumPy reference of the integer contract (no torch)."""
from .model import (GoldenResult, channel_open, neuron_step, run, spatial_keep, step_work,
                    sum_pool, synaptic_current, work_counts)

__all__ = ["GoldenResult", "run", "synaptic_current", "neuron_step", "sum_pool", "spatial_keep",
           "channel_open", "step_work", "work_counts"]
