"""Theoretical energy from operation counts, the SpQuant-SNN paper's Equation 31 approach.

The paper (section 5.6) follows BitNet (Wang et al., 2023): energy is the number of
additions times the energy of one addition plus the number of multiplications times the
energy of one multiplication,

    E = N_add * E_add + N_mult * E_mult,

with the 7 nm per-operation energies of BitNet's Table 2 (the paper trained on A6000 GPUs,
a 7/8 nm-class part, hence 7 nm). The paper's text in this repository has lost its
equations and tables (they were images), so the numbers below are **not** read from it:
they are BitNet's Table 2 (Wang et al., "BitNet: Scaling 1-bit Transformers for Large
Language Models", arXiv:2310.11453), energy in picojoules per operation; its 45 nm
column goes back to Horowitz ("Computing's energy problem (and what we can do about it)",
ISSCC 2014). Checked against issue 14's quotation of both sources: at 7 nm INT8 add 0.007,
FP32 add 0.38 and FP32 multiply 1.31 pJ (BitNet); at 45 nm INT8 add 0.03, FP32 add 0.9 and
FP32 multiply 3.7 pJ (Horowitz). The FP16 rows and the INT8 multiply are not in that
quotation and remain unchecked (:data:`UNCHECKED`):

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
# Where each entry of ENERGY_PJ comes from, and which were checked against a quotation.
EQ31_SOURCE = {"7nm": "BitNet (Wang et al. 2023, arXiv:2310.11453) Table 2, 7 nm",
               "45nm": "Horowitz, ISSCC 2014, 45 nm (via BitNet Table 2)"}
UNCHECKED = {("7nm", "fp16"), ("7nm", "int8", "mult"), ("45nm", "fp16"), ("45nm", "int8", "mult")}

# --- energy with memory accesses (45 nm, Horowitz ISSCC 2014) ------------------------------
#
# One table at one node for both the arithmetic and the memories, so the two parts add up
# consistently. Horowitz, "Computing's energy problem (and what we can do about it)",
# ISSCC 2014, 45 nm at 0.9 V, as quoted in issue 14.
HOROWITZ_NODE = "45nm"
HOROWITZ_SOURCE = "Horowitz, ISSCC 2014 (45 nm, 0.9 V)"
HOROWITZ_45NM_PJ = {
    "int8_add": 0.03,          # 8-bit integer add
    "int32_add": 0.1,          # 32-bit integer add
    "fp32_add": 0.9,
    "fp32_mult": 3.7,
    "sram_64b_8kb": 10.0,      # one 64-bit access to an 8 KB SRAM
    "dram_64b_low": 1300.0,    # one 64-bit DRAM access: 1.3 to 2.6 nJ
    "dram_64b_high": 2600.0,
}
SRAM_REF_BITS = 64             # the access width of the SRAM figure
SRAM_REF_CAPACITY_BITS = 8 * 1024 * 8      # 8 KB
# The assumptions that carry the table to other widths and sizes (stated in every output).
SCALING_RULES = (
    "integer add of b bits: linear in b through Horowitz's 8-bit (0.03 pJ) and 32-bit "
    "(0.1 pJ) adds (assumption: a ripple-carry adder's energy grows about linearly with "
    "its width)",
    "SRAM access of b bits: 10 pJ x b / 64, the 8 KB figure linear in bits per access "
    "(assumption), for every memory whatever its size ('flat')",
    "size-scaled variant: the flat figure x sqrt(capacity / 8 KB) per macro (assumption: "
    "bit-line and word-line length grow with the square root of the array)",
    "DRAM variant: the weight reads at 1.3 to 2.6 nJ per 64 bits, linear in bits "
    "(assumption), the other memories on chip as in 'flat'",
)


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


def int_add_pj(bits: int) -> float:
    """Energy (pJ, 45 nm) of one ``bits``-wide integer addition: the straight line through
    Horowitz's 8-bit (0.03 pJ) and 32-bit (0.1 pJ) adds (:data:`SCALING_RULES`)."""
    if bits < 1:
        raise ValueError(f"adder width {bits!r} must be at least 1 bit")
    lo, hi = HOROWITZ_45NM_PJ["int8_add"], HOROWITZ_45NM_PJ["int32_add"]
    return lo + (bits - 8) * (hi - lo) / (32 - 8)


def sram_access_pj(bits: int, capacity_bits: int | None = None, size_scaled: bool = False) -> float:
    """Energy (pJ, 45 nm) of one ``bits``-wide access to an SRAM of ``capacity_bits``: the 8 KB,
    64-bit figure linear in bits, times sqrt(capacity / 8 KB) if ``size_scaled``."""
    e = HOROWITZ_45NM_PJ["sram_64b_8kb"] * bits / SRAM_REF_BITS
    if size_scaled:
        if not capacity_bits or capacity_bits < 1:
            raise ValueError(f"size-scaled SRAM energy needs a capacity, got {capacity_bits!r}")
        e *= (capacity_bits / SRAM_REF_CAPACITY_BITS) ** 0.5
    return e


def access_energy(rows: list, traffic: dict, samples: int = 1, *, lanes: int | None = None,
                  neuron_adds: int = 2, classifier_adds: int = 1) -> dict:
    """Energy per inference (pJ, 45 nm, :data:`HOROWITZ_45NM_PJ`) of arithmetic and SRAM
    accesses.

    Parameters
    ----------
    rows : list of dict
        Per layer, counts summed over ``samples`` inputs, as for :func:`snn_energy`
        (``synaptic_ops``, ``computed_neurons`` or ``neuron_updates`` with ``lanes``,
        ``kind``) plus ``acc_width``: every addition is charged as an ``acc_width``-bit add
        (:func:`int_add_pj`).
    traffic : dict
        Per-inference accesses, :func:`hw.traffic.memory_traffic`'s result: per layer and
        memory ``reads``, ``writes``, ``width`` and ``capacity`` (bits), and
        ``every_cycle`` (the bound of memories that read at every cycle).

    Returns
    -------
    dict
        ``arithmetic_pj`` (``synaptic_pj`` + ``membrane_pj``), ``sram_pj`` (flat),
        ``sram_size_scaled_pj``, ``sram_by_memory`` (flat, pJ), ``total_pj`` (arithmetic +
        flat SRAM), ``total_size_scaled_pj``, ``total_weights_dram_pj`` ([low, high]),
        ``every_cycle_sram_pj`` (flat) and the node, source and scaling rules.
    """
    if samples < 1:
        raise ValueError(f"samples {samples!r} must be at least 1")
    syn_pj = mem_pj = 0.0
    for row in rows:
        ops = layer_ops(row, neuron_adds=neuron_adds, classifier_adds=classifier_adds,
                        lanes=lanes)
        e = int_add_pj(int(_need(row, "acc_width", "the adder width")))
        syn_pj += ops["synaptic_adds"] * e / samples
        mem_pj += ops["membrane_adds"] * e / samples
    flat = scaled = weights_flat = 0.0
    by_memory = {}
    for layer in traffic["layers"]:
        for name, a in layer["memories"].items():
            n = a["reads"] + a["writes"]
            f = n * sram_access_pj(a["width"])
            flat += f
            scaled += n * sram_access_pj(a["width"], a["capacity"], size_scaled=True)
            by_memory[name] = by_memory.get(name, 0.0) + f
            if name == "weights":
                weights_flat += f
    dram_bits = sum(l["memories"]["weights"]["reads"] * l["memories"]["weights"]["width"]
                    for l in traffic["layers"] if "weights" in l["memories"])
    dram = [dram_bits / SRAM_REF_BITS * HOROWITZ_45NM_PJ[k]
            for k in ("dram_64b_low", "dram_64b_high")]
    arith = syn_pj + mem_pj
    bound = traffic["every_cycle"]["bits_read"] / SRAM_REF_BITS * HOROWITZ_45NM_PJ["sram_64b_8kb"]
    return {"node": HOROWITZ_NODE, "source": HOROWITZ_SOURCE, "table_pj": dict(HOROWITZ_45NM_PJ),
            "scaling_rules": list(SCALING_RULES),
            "synaptic_pj": syn_pj, "membrane_pj": mem_pj, "arithmetic_pj": arith,
            "sram_pj": flat, "sram_size_scaled_pj": scaled, "sram_by_memory": by_memory,
            "total_pj": arith + flat, "total_size_scaled_pj": arith + scaled,
            "total_weights_dram_pj": [arith + flat - weights_flat + d for d in dram],
            "every_cycle_sram_pj": bound}
