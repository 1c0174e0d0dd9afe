"""Theoretical energy from operation counts, the SpQuant-SNN paper's Equation 31 approach.

The paper (section 5.6) follows BitNet (Wang et al., 2023): energy is the number of
additions times the energy of one addition plus the number of multiplications times the
energy of one multiplication,

    E = N_add * E_add + N_mult * E_mult,

with the 7 nm per-operation energies of BitNet's Table 2 (the paper trained on A6000 GPUs,
a 7/8 nm-class part, hence 7 nm). The paper's text in this repository has lost its
equations and tables (they were images), so the numbers below are **not** read from it:
they are BitNet's Table 2 (Wang et al., "BitNet: Scaling 1-bit Transformers for Large
Language Models", arXiv:2310.11453), energy in picojoules per operation, quoted from our
knowledge of that table (no copy of BitNet was at hand to check them against); its 45 nm
column goes back to Horowitz (ISSCC 2014):

    ============  =========  ========  ==========  =========
    operation     ADD 45 nm  ADD 7 nm  MUL 45 nm   MUL 7 nm
    ============  =========  ========  ==========  =========
    FP32          0.9        0.38      3.7         1.31
    FP16          0.4        0.16      1.1         0.34
    INT8          0.03       0.007     0.2         0.07
    ============  =========  ========  ==========  =========

What is counted (per layer, from a :func:`golden.work_counts` row, or the same keys from
RTL counters or a float-side count):

- **Spiking PoT layer**: one addition per synaptic operation (a PoT weight needs no
  multiplier: the input is shifted, and a shift is wiring, not an operation), and
  ``neuron_adds`` additions per computed neuron and step for the membrane update:
  by default 2, the leak-and-integrate ``u = q/2 + I`` and the threshold compare (a
  compare is a subtraction). The integer core folds the leak into its thresholds and
  compares ``I_int`` with up to three of them instead; either way it is a few adds per
  neuron. Spikformer-style estimates (Zhou et al., 2023) count only the synaptic
  accumulations and omit the membrane update; :func:`snn_energy` reports that number too
  (``synaptic_pj``), and the SpQuant-SNN paper argues the membrane part must be counted.
- **Classifier** (``kind == "fc"``, not spiking): one addition per synaptic operation and
  ``classifier_adds`` (default 1, accumulating the logit over time) per output and step.
- **Full-precision reference** (:func:`dense_mac_energy`): the same network as a dense
  multiply-accumulate network, every synapse every step (``dense_ops`` MACs: every in-map
  tap, padding taps excluded, as a dense convolution needs no MAC for them; one FP32
  multiplication and one addition each) plus a float membrane update per neuron and step
  (one multiplication for the leak, two additions: integrate and compare).

The integer adds are charged at the INT8 add energy, as the paper does for its quantized
models. The accumulators are wider than 8 bits (``acc_width``, e.g. about 20 bits for
4-bit PoT weights), so ``width_scaled=True`` scales each layer's add energy by
``acc_width / 8`` (a ripple-carry adder's energy grows about linearly with its width).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpEnergy:
    """Energy of one addition and one multiplication, in picojoules."""
    add: float
    mult: float


ENERGY_PJ = {
    "7nm": {"fp32": OpEnergy(add=0.38, mult=1.31), "fp16": OpEnergy(add=0.16, mult=0.34),
            "int8": OpEnergy(add=0.007, mult=0.07)},
    "45nm": {"fp32": OpEnergy(add=0.9, mult=3.7), "fp16": OpEnergy(add=0.4, mult=1.1),
             "int8": OpEnergy(add=0.03, mult=0.2)},
}
DEFAULT_NODE = "7nm"
INT8_BITS = 8


def op_energy(precision: str, node: str = DEFAULT_NODE) -> OpEnergy:
    """The per-operation energies of ``precision`` ("fp32", "fp16", "int8") at ``node``."""
    try:
        table = ENERGY_PJ[node]
    except KeyError:
        raise ValueError(f"process node {node!r} is not one of {sorted(ENERGY_PJ)}") from None
    try:
        return table[precision]
    except KeyError:
        raise ValueError(f"precision {precision!r} is not one of {sorted(table)}") from None


def eq31_energy(adds: float, mults: float, precision: str = "int8",
                node: str = DEFAULT_NODE) -> float:
    """Equation 31: ``adds * E_add + mults * E_mult`` in picojoules."""
    e = op_energy(precision, node)
    return adds * e.add + mults * e.mult


def _need(row: dict, key: str, what: str):
    if key not in row:
        raise KeyError(f"layer {row.get('layer', '?')}: the count row has no {key!r} "
                       f"(needed for {what}); keys: {sorted(row)}")
    return row[key]


def computed_neurons(row: dict, lanes: int | None = None) -> int:
    """Neuron updates (neuron x step) of a row: ``computed_neurons`` if the row has it, else
    ``neuron_updates * lanes`` (the lane-parallel neuron units compare every lane of a live
    group, so this counts masked lanes of live groups too)."""
    if "computed_neurons" in row:
        return int(row["computed_neurons"])
    if lanes is None:
        raise KeyError(f"layer {row.get('layer', '?')}: the count row has no "
                       "'computed_neurons'; pass lanes= to count neuron_updates * lanes")
    return int(_need(row, "neuron_updates", "the membrane updates")) * int(lanes)


def layer_ops(row: dict, *, synaptic_key: str = "synaptic_ops", neuron_adds: int = 2,
              classifier_adds: int = 1, lanes: int | None = None) -> dict:
    """Additions of one spiking (or classifier) layer: synaptic + membrane; no multiplications."""
    syn = int(_need(row, synaptic_key, "the synaptic additions"))
    neurons = computed_neurons(row, lanes)
    per = classifier_adds if row.get("kind") == "fc" else neuron_adds
    return {"layer": row.get("layer"), "kind": row.get("kind", "conv"),
            "synaptic_adds": syn, "neurons": neurons, "membrane_adds": neurons * per,
            "adds": syn + neurons * per, "mults": 0}


def _add_pj(row: dict, base: OpEnergy, width_scaled: bool) -> float:
    if not width_scaled:
        return base.add
    bits = int(_need(row, "acc_width", "width-scaled add energy"))
    return base.add * bits / INT8_BITS


def snn_energy(rows: list, samples: int = 1, *, precision: str = "int8",
               node: str = DEFAULT_NODE, synaptic_key: str = "synaptic_ops",
               neuron_adds: int = 2, classifier_adds: int = 1, lanes: int | None = None,
               width_scaled: bool = False) -> dict:
    """Energy per sample (pJ) of a spiking PoT network from per-layer count rows summed over
    ``samples`` inputs.

    ``synaptic_key`` picks the synaptic count: ``synaptic_ops`` (every nonzero input into
    every computed neuron: what a core that skips zero inputs but not zero weights adds)
    or a weight-aware count such as ``weighted_ops`` (zero weights skipped too).
    Returns the total, its synaptic and membrane parts (``synaptic_pj`` alone is the
    Spikformer-style estimate), the operation counts and a per-layer breakdown.
    """
    if samples < 1:
        raise ValueError(f"samples {samples!r} must be at least 1")
    base = op_energy(precision, node)
    layers, syn_pj, mem_pj, adds = [], 0.0, 0.0, 0
    for row in rows:
        ops = layer_ops(row, synaptic_key=synaptic_key, neuron_adds=neuron_adds,
                        classifier_adds=classifier_adds, lanes=lanes)
        e_add = _add_pj(row, base, width_scaled)
        s, m = ops["synaptic_adds"] * e_add / samples, ops["membrane_adds"] * e_add / samples
        layers.append({**ops, "add_pj": e_add, "synaptic_pj": s, "membrane_pj": m,
                       "total_pj": s + m})
        syn_pj, mem_pj, adds = syn_pj + s, mem_pj + m, adds + ops["adds"]
    return {"total_pj": syn_pj + mem_pj, "synaptic_pj": syn_pj, "membrane_pj": mem_pj,
            "adds_per_sample": adds / samples, "mults_per_sample": 0.0,
            "precision": precision, "node": node, "synaptic_key": synaptic_key,
            "width_scaled": width_scaled, "layers": layers}


def dense_mac_energy(rows: list, samples: int = 1, *, precision: str = "fp32",
                     node: str = DEFAULT_NODE, neuron_mults: int = 1, neuron_adds: int = 2,
                     classifier_adds: int = 1) -> dict:
    """Energy per sample (pJ) of the same network run densely with multiply-accumulates.

    Per layer: ``dense_ops`` MACs (one multiplication and one addition each), and per
    neuron and step (``dense_neurons``, else ``computed_neurons``) a float membrane update
    of ``neuron_mults`` multiplications and ``neuron_adds`` additions (the classifier:
    ``classifier_adds`` additions, no multiplication).
    """
    if samples < 1:
        raise ValueError(f"samples {samples!r} must be at least 1")
    e = op_energy(precision, node)
    layers, adds, mults = [], 0, 0
    for row in rows:
        macs = int(_need(row, "dense_ops", "the dense MAC count"))
        if "dense_neurons" in row:
            neurons = int(row["dense_neurons"])
        else:
            neurons = int(_need(row, "computed_neurons", "the dense membrane updates"))
        fc = row.get("kind") == "fc"
        a = macs + neurons * (classifier_adds if fc else neuron_adds)
        m = macs + (0 if fc else neurons * neuron_mults)
        layers.append({"layer": row.get("layer"), "macs": macs, "neurons": neurons,
                       "adds": a, "mults": m,
                       "total_pj": (a * e.add + m * e.mult) / samples})
        adds, mults = adds + a, mults + m
    return {"total_pj": (adds * e.add + mults * e.mult) / samples,
            "adds_per_sample": adds / samples, "mults_per_sample": mults / samples,
            "precision": precision, "node": node, "layers": layers}
