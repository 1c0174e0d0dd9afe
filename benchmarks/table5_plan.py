"""Table 5's rungs and Figure 4's sweep points as configs, the total memory a config
determines (:func:`memory_report`), the paper's targets, and the plan of runs (one job per
rung and seed) of ``python -m benchmarks.table5``."""
from __future__ import annotations

from pathlib import Path

from benchmarks.runner import BASE_CONFIG, build_config
from hw.memory_report import formula_section, megabytes, network_counts

# Measured on one core (CPU time per epoch of the 1347-sample training split): FP about
# 2.5 s, Quant-SNN 4 s, float-membrane Quant-SNN 3 s, int2 4.5 s, int4 and SpQuant-SNN 6 s;
# about 15 s per run for data, BN recalibration, evaluation and the golden agreement. The
# default 16 runs (3 seeds per rung, 1 per sweep point) x 15 epochs: about 1400 CPU-s.
DEFAULT_EPOCHS = 15
DEFAULT_GATE_PENALTY = 0.5
QUICK = {"epochs": 1, "max_train": 128, "max_test": 64}
PRESETS = {"quick": dict(QUICK, seeds=1, sweep_seeds=1),
           "default": {"epochs": DEFAULT_EPOCHS, "seeds": 3, "sweep_seeds": 1}}

# The paper's targets (Table 5 and the abstract), in accuracy points (percent).
QUANT_MAX_DROP = 1.0
SPQUANT_MAX_DROP = 2.0
SPQUANT_MIN_OPS_REDUCTION = 4.0
LVTH_MIN_RECOVERY = 0.5
AGREEMENT_TARGET = 0.995

LADDER = ("fp", "quant", "spquant", "spquant_lvth")
SWEEP = ("ternary", "int2", "int3", "int4", "float")     # ternary = the "quant" rung
LABELS = {
    "fp": "FP SNN",
    "quant": "Quant-SNN",
    "spquant": "SpQuant-SNN",
    "spquant_lvth": "SpQuant-SNN + learnable threshold",
    "sweep_int2": "Quant-SNN, int2 membrane",
    "sweep_int3": "Quant-SNN, int3 membrane",
    "sweep_int4": "Quant-SNN, int4 membrane",
    "sweep_float": "Quant-SNN, float membrane",
}


def pruning_overrides(on: bool, gate_penalty: float) -> dict:
    """The pruning section of a rung: the paper's 35% spatial and 0.47 gate when on."""
    return {"spatial_ratio": 0.35 if on else 0.0, "channel_gate_threshold": 0.47 if on else 0.0,
            "gate_penalty": float(gate_penalty) if on else 0.0}


def rung_overrides(gate_penalty: float) -> dict:
    """Overrides of every rung (ladder and sweep) on top of the base config."""
    quant = {"membrane": "ternary", "weight_bits": 4, "learnable_vth": False}
    off, on = pruning_overrides(False, gate_penalty), pruning_overrides(True, gate_penalty)
    rungs = {
        "fp": {"quant": {"membrane": "float", "weight_bits": None, "learnable_vth": False},
               "pruning": off},
        "quant": {"quant": quant, "pruning": off},
        "spquant": {"quant": quant, "pruning": on},
        "spquant_lvth": {"quant": dict(quant, learnable_vth=True), "pruning": on},
    }
    for mode in SWEEP[1:]:
        rungs[f"sweep_{mode}"] = {"quant": dict(quant, membrane=mode), "pruning": off}
    return rungs


def pruning_is_on(cfg) -> bool:
    p = cfg.pruning
    return p.get("spatial_ratio", 0.0) > 0.0 or p.get("channel_gate_threshold", 0.0) > 0.0


def sweep_rung(mode: str) -> str:
    return "quant" if mode == "ternary" else f"sweep_{mode}"


def memory_report(cfg) -> dict:
    """Total memory by the paper's formula, M = w_bits N_w + u_bits N_u + s_bits N_s, as
    ``hw.memory_report`` evaluates it for the config's precision (``formula_section``'s
    ``configured`` entries: the membrane as stored, and at log2 of its levels).

    N_w: the weights of every conv layer and of the classifier (biases and batch-norm fold
    into the integer thresholds and are not counted); N_u = N_s: the spiking neurons,
    sum over spiking layers of C_out * H_out * W_out (one membrane and one 1-bit spike each);
    full-precision weights count 32 bits, the ternary membrane 2 (as the hardware stores it;
    ``total_mb_paper_1p58``: at the paper's log2(3) = 1.58 bits).
    """
    counts = network_counts(cfg.layers, cfg.timesteps, where=cfg.path)
    stored, info = formula_section(counts, cfg.quant["weight_bits"],
                                   cfg.quant["membrane"])["configured"]
    bits = stored["bits"]
    out = {"weight_bits": stored["weight_bits"], "membrane_bits": stored["membrane_bits"],
           "spike_bits": stored["spike_bits"], "n_weights": counts.weights,
           "n_membranes": counts.membrane_neurons, "n_spikes": counts.spikes,
           "weight_mb": megabytes(bits["weights"]), "membrane_mb": megabytes(bits["membrane"]),
           "spike_mb": megabytes(bits["spikes"]), "total_bits": stored["total_bits"],
           "total_mb": stored["total_mb"]}
    if cfg.quant["membrane"] == "ternary":
        out["total_mb_paper_1p58"] = info["total_mb"]
    return out


def plan_runs(args, base_raw, base_path) -> list:
    """One job (a plain, picklable dict) per (rung, seed), ladder first."""
    overrides = rung_overrides(args.gate_penalty)
    seeds = {r: args.seeds for r in LADDER}
    for mode in SWEEP:
        r = sweep_rung(mode)
        seeds[r] = max(seeds.get(r, 0), args.sweep_seeds)
    only = set(args.only) if args.only else None
    jobs = []
    for rung, n in seeds.items():
        if only is not None and rung not in only:
            continue
        cfg, text = build_config(base_raw, overrides[rung], where=f"{base_path} [table5 {rung}]")
        for seed in range(n):
            settings = {"config_text": text, "epochs": args.epochs, "seed": seed,
                        "max_train": args.max_train, "max_test": args.max_test}
            jobs.append({"rung": rung, "seed": seed, "label": LABELS[rung],
                         "out_dir": str(Path(args.out) / rung / f"seed{seed}"),
                         "where": f"{base_path} [table5 {rung}]", "settings": settings,
                         "pruning_on": pruning_is_on(cfg)})
    return jobs
