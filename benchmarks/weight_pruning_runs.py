"""One job of ``python -m benchmarks.weight_pruning_study`` (in a worker process) and what a
point measures: a dense-trained chain of cumulative pruning levels of one bit width, or one
joint point (mask at initialization); per point accuracy, weight memory three ways and the
Eq. 31 energies from golden's counts (2- and 4-bit) or the model's own (8-bit).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

import golden
from benchmarks.runner import build_config, guarded, job_config
from efficiency import dense_mac_energy, snn_energy
from efficiency.counts import recount, weight_skip_savings
from efficiency.model_counts import model_counts
from model_export.format import save_export
from model_export.from_torch import export_model
from train.data import load_dataset, to_time_major
from train.loss import tet_loss
from train.model import build_model
from train.trainer import evaluate, recalibrate_bn
from train.weight_pruning import prune_by_magnitude, sparsity_report

EXPORTABLE_BITS = (2, 4)
NJ = 1e3                                          # pJ per nJ


# --- configs ------------------------------------------------------------------------------

def study_config(base_raw: dict, bits: int, where: str):
    """(Config, YAML text): the base with ``bits``-bit PoT weights, a ternary membrane and
    no runtime (membrane-prior) pruning, so weight pruning is the only sparsity added."""
    return build_config(base_raw, {"quant": {"membrane": "ternary", "weight_bits": int(bits)},
                                   "pruning": {"spatial_ratio": 0.0,
                                               "channel_gate_threshold": 0.0}},
                        where=f"{where} [{bits}-bit]")


# --- training -----------------------------------------------------------------------------

def fit(model, cfg, x_tr, y_tr, epochs: int, lr: float, seed: int):
    """Adam + cosine schedule + TET loss (as ``train.trainer``), then BN recalibration.
    Weight masks are buffers of the PoT layers, so they hold through every step."""
    tc, T = cfg.train, cfg.timesteps
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    x_t, y_t = torch.as_tensor(x_tr), torch.as_tensor(y_tr)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x_t), generator=gen)
        for i in range(0, len(perm), tc["batch_size"]):
            idx = perm[i:i + tc["batch_size"]]
            loss = tet_loss(model(to_time_major(x_t[idx], T)), y_t[idx], tc["tet_lambda"],
                            tc["tet_target"])
            if not torch.isfinite(loss):
                raise RuntimeError(f"training diverged (loss {float(loss)})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    recalibrate_bn(model, x_tr, T)
    model.eval()
    return model


# --- measurements -------------------------------------------------------------------------

def weight_memory(report: list, bits: int) -> dict:
    """Weight memory in bits: dense storage, paper-style sparse (b x nonzero codes, no index
    cost) and a bitmap format (1 bit per weight + b per nonzero code)."""
    n = sum(r["weights"] for r in report)
    nnz = n - sum(r["zero_codes"] for r in report)
    return {"weights": n, "nonzero_weights": nnz, "dense_bits": bits * n,
            "sparse_bits": bits * nnz, "bitmap_bits": n + bits * nnz}


def energy_report(rows: list, samples: int) -> dict:
    """Equation 31 energies (nJ per inference) and the zero-weight-skip savings."""
    core = snn_energy(rows, samples)                                  # zero weights cost an add
    skip = snn_energy(rows, samples, synaptic_key="weighted_ops")     # zero weights skipped
    wide = snn_energy(rows, samples, synaptic_key="weighted_ops", width_scaled=True)
    fp = dense_mac_energy(rows, samples)
    return {"core_nj": core["total_pj"] / NJ, "skip_nj": skip["total_pj"] / NJ,
            "skip_synaptic_only_nj": skip["synaptic_pj"] / NJ,
            "skip_membrane_nj": skip["membrane_pj"] / NJ,
            "skip_width_scaled_nj": wide["total_pj"] / NJ,
            "fp32_dense_mac_nj": fp["total_pj"] / NJ,
            "adds_core": core["adds_per_sample"], "adds_skip": skip["adds_per_sample"],
            "savings": weight_skip_savings(rows)}


def measure_point(model, cfg, data: dict, lanes: int, count_samples, export_dir: Path) -> dict:
    """A trained point on the test split: accuracy, sparsity, weight memory and energy; the
    integer export of a 2- or 4-bit point goes to ``export_dir``."""
    bits = cfg.quant["weight_bits"]
    x_te, y_te = data["x_te"], data["y_te"]
    out = {"accuracy": evaluate(model, x_te, y_te, cfg.timesteps)}
    rep = sparsity_report(model)
    n = sum(r["weights"] for r in rep)
    out["mask_sparsity"] = sum(r["pruned"] for r in rep) / n
    out["code_sparsity"] = sum(r["zero_codes"] for r in rep) / n
    out["layers"] = rep
    out["memory"] = weight_memory(rep, bits)
    xc = x_te if count_samples is None else x_te[:count_samples]
    out["count_samples"] = len(xc)
    float_rows = model_counts(model, cfg, xc, lanes)
    if bits in EXPORTABLE_BITS:
        net = export_model(model, cfg)
        save_export(net, export_dir)
        res = golden.run(net, xc)
        rows = golden.work_counts(net, xc, lanes)
        mine = recount(net, xc, lanes, result=res)
        rows = [dict(m, **g) for m, g in zip(mine, rows)]
        with torch.no_grad():
            pred = model.predict(model(to_time_major(xc, cfg.timesteps))).numpy()
        out["golden_agreement"] = float((res.predictions == pred).mean())
        out["golden_accuracy"] = float((res.predictions == y_te[:len(xc)]).mean())
        out["counts_source"] = "golden"
        fl = energy_report(float_rows, len(xc))
        out["float_count_skip_nj"] = fl["skip_nj"]
    else:
        rows = float_rows
        out["counts_source"] = "float-side (8-bit PoT is not exportable)"
    out["energy"] = energy_report(rows, len(xc))
    out["counts"] = [{k: v for k, v in r.items()} for r in rows]
    return out


# --- jobs (each in its own process) -------------------------------------------------------

def _load_data(cfg, max_train, max_test):
    x_tr, y_tr, x_te, y_te = load_dataset(cfg)
    if max_train:
        x_tr, y_tr = x_tr[:max_train], y_tr[:max_train]
    if max_test:
        x_te, y_te = x_te[:max_test], y_te[:max_test]
    return {"x_tr": x_tr, "y_tr": y_tr, "x_te": x_te, "y_te": y_te}


def run_job(job: dict) -> dict:
    """One chain (dense + cumulative levels of one bit width) or one joint point; never raises."""
    return guarded(_run_job, job, {"job": job["name"], "ok": False, "points": [], "wall_s": 0.0},
                   time_key="wall_s")


def _run_job(job):
    torch.set_num_threads(1)
    cfg = job_config(job["config_text"], job["where"])
    data = _load_data(cfg, job["max_train"], job["max_test"])
    lanes, bits, out = cfg.hardware["lanes"], cfg.quant["weight_bits"], Path(job["out"])
    torch.manual_seed(job["seed"])
    model = build_model(cfg)
    points = []

    def record(mode, sparsity, t_start, **extra):
        p = {"bits": bits, "mode": mode, "target_sparsity": sparsity, **extra}
        tag = f"b{bits}_{mode}_s{int(round(100 * sparsity)):02d}"
        p.update(measure_point(model, cfg, data, lanes, job["count_samples"],
                               out / "exports" / tag))
        p["wall_s"] = time.time() - t_start
        points.append(p)

    t = time.time()
    if job["kind"] == "joint":
        prune_by_magnitude(model, job["sparsity"], job["scope"])    # at initialization
        fit(model, cfg, data["x_tr"], data["y_tr"], job["epochs"], cfg.train["lr"], job["seed"])
        record("joint", job["sparsity"], t, epochs=job["epochs"])
        return {"points": points}
    fit(model, cfg, data["x_tr"], data["y_tr"], job["epochs"], cfg.train["lr"], job["seed"])
    record("dense", 0.0, t, epochs=job["epochs"])
    for k, s in enumerate(job["sparsities"]):
        t = time.time()
        prune_by_magnitude(model, s, job["scope"])
        recalibrate_bn(model, data["x_tr"], cfg.timesteps)
        before = evaluate(model, data["x_te"], data["y_te"], cfg.timesteps)
        fit(model, cfg, data["x_tr"], data["y_tr"], job["finetune_epochs"], job["finetune_lr"],
            job["seed"] + 1 + k)
        record("cumulative", s, t, epochs=job["finetune_epochs"], accuracy_before_finetune=before)
    return {"points": points}
