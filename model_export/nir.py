"""``python -m model_export.nir --checkpoint runs/x/model.pt [--out model.nir]``

A trained SpQuant conv chain as a NIR graph (Neuromorphic Intermediate Representation,
https://neuroir.org; the ``nir`` package, optional extra ``.[nir]``), so that snnTorch,
Norse, Sinabs, Lava-DL and the NIR hardware back-ends can load and check it.

Graph: ``input [C, H, W]`` -> per spiking layer ``conv<i>`` (Conv2d, stride 1) ->
``lif<i>`` (LIF) -> ``pool<i>`` (AvgPool2d, when the layer pools) -> ``flatten`` ->
``fc`` (Affine) -> ``output``. The input is the integer frame the core reads (event
counts or pixels); the classifier's output is the logit of each step.

What is written, and how it relates to the model (docs/INTEGER_SPEC.md sections 2-4):

- **Conv2d**: the PoT weights ``w_q = s * 2**(alpha - k)`` with the batch norm and, for
  layer 0, the input scale folded in per output channel: ``weight = a_c * w_q``,
  ``bias = B_c`` with ``a_c = gamma_c / sqrt(var_c + eps) * scale_in`` and
  ``B_c = gamma_c / sqrt(var_c + eps) (conv_bias_c - mean_c) + beta_c`` -- the current of the float model.
  NIR has no batch norm, and snnTorch's importer needs one threshold and one input gain
  per layer, so the per-channel scale must go into the weights: they are float32 products,
  not powers of two. The exact powers of two and every unfolded parameter are carried in
  the metadata (below).
- **LIF**, continuous time ``tau dv/dt = (v_leak - v) + r I`` at the time step
  ``dt = 1e-4 s`` (graph metadata ``dt``; snnTorch's own assumption): the core's leak
  ``v <- v/2 + I`` is ``1 - dt/tau = 1/2``, so ``tau = 2 dt`` and ``r = tau/dt = 2``;
  ``v_leak = 0``; ``v_threshold`` = the layer's learned Vth; ``v_reset = 0`` (hard reset in
  the step that spikes).
- **AvgPool2d** of the spikes (what the float model computes; the core sums, and its
  integer thresholds absorb the 1/p**2, section 4), **Flatten** (C, H, W order), **Affine**
  (the classifier's PoT weights and its bias on the accumulator grid: exact floats).

What NIR cannot express, in node metadata (key ``spquant``): the membrane quantization
(``membrane``: ternary {-1, 0, +1} or binary, levels by nearest with ties toward -inf,
``lif<i>``), the integer thresholds of the export ``[C, levels, 3]`` (F, P, N per
previous level), the channel and position masks, runtime pruning (spatial threshold,
channel-gate codes and thresholds: a NIR consumer runs the network unpruned), the PoT
codes' ``alpha_log2`` and ``weight_bits``. A full-precision model (``quant.weight_bits:
null`` or a float membrane) has no integer form: it is written with its float weights and
without the integer metadata, ready for train.nir_import to quantize. The graph metadata ``spquant`` holds the
training config (YAML) and the checkpoint's state_dict, float32, unchanged:
``python -m train.nir_import`` rebuilds the exact model from it (so its export is
identical), and from the NIR parameters alone with ``--ignore-metadata``.
"""
from __future__ import annotations

from pathlib import Path

try:
    import nir
except ImportError:      # the optional extra .[nir]; the CLI says so in one line
    nir = None
import numpy as np
import torch

from project_config import UserError, cli_main
from project_config.cli import parser
from project_config.files import atomic_write, check_output_file
from train.quant import pot_value
from train.trainer import load_checkpoint, _read_checkpoint

from .from_torch import _check_finite, export_model

DT = 1e-4                     # seconds per step: snnTorch's NIR convention
LEAK = 0.5                    # the core's fixed leak: v <- LEAK * v + I
PRODUCER = "spquant-rtl model_export.nir"


def _f32(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy() if torch.is_tensor(t) else t,
                                dtype=np.float32)


def _weight(layer):
    """(the layer's forward weight as float64, its PoT metadata); full precision: no codes."""
    if layer.weight_bits is None:
        return layer.masked_weight().detach().cpu().double().numpy(), {}
    sign, k, alpha = layer.pot_codes()
    return (pot_value(sign, k, alpha, torch.float64).numpy(),
            {"alpha_log2": int(alpha), "weight_bits": int(layer.weight_bits)})


def _conv_node(block, spec, scale_in: float, net_layer):
    """Conv2d with batch norm and input scale folded per channel; unfolded in metadata."""
    w_q, pot = _weight(block.conv)
    bn = block.bn
    f64 = lambda t: t.detach().cpu().double().numpy()
    inv_std = f64(bn.weight) / np.sqrt(f64(bn.running_var) + bn.eps)
    conv_bias = f64(block.conv.bias) if block.conv.bias is not None else 0.0
    a = inv_std * scale_in
    b = inv_std * (conv_bias - f64(bn.running_mean)) + f64(bn.bias)
    weight = (a[:, None, None, None] * w_q).astype(np.float32)
    meta = {"pot_weight" if pot else "weight": w_q.astype(np.float32), **pot,
            "channel_scale": a, "channel_offset": b, "input_scale": float(scale_in)}
    if net_layer is not None:
        meta["w_code"] = net_layer.w_code
    meta = {"spquant": meta}
    return nir.Conv2d(input_shape=(spec.in_height, spec.in_width), weight=weight, stride=1,
                      padding=(int(spec.padding), int(spec.padding)), dilation=1, groups=1,
                      bias=b.astype(np.float32), metadata=meta)


def _lif_node(block, spec, membrane: str, net_layer):
    """The QLIF in NIR's continuous form (module doc); what NIR lacks, in metadata."""
    shape = (spec.out_channels, spec.out_height, spec.out_width)
    full = lambda v: np.full(shape, v, np.float32)
    tau = 2.0 * DT       # 1 - dt/tau = LEAK
    meta = {"membrane": membrane, "leak": LEAK, "reset": "to 0 in the step that spikes",
            "spike": "v > v_threshold", "dt": DT,
            "membrane_rule": "ternary: q = 1 if r > 0.5, -1 if r <= -0.5, else 0; "
                             "binary: q = 1 if r > 0.5 else 0 (r: the membrane after reset)"}
    if net_layer is not None:
        meta.update(integer_thresholds=net_layer.thresholds, channel_mask=net_layer.channel_mask,
                    position_mask=net_layer.position_mask)
        for name in net_layer.PRUNING_ARRAYS:
            if getattr(net_layer, name) is not None:
                meta[name] = getattr(net_layer, name)
    return nir.LIF(tau=full(tau), r=full(tau / DT), v_leak=full(0.0),
                   v_threshold=full(float(block.neuron.vth)), v_reset=full(0.0),
                   metadata={"spquant": meta})


@torch.no_grad()
def to_nir(model, cfg, config_text: str) -> nir.NIRGraph:
    """The NIR graph of a trained ``SpikingConvNet`` (module doc). The integer metadata
    comes from :func:`model_export.from_torch.export_model`; a model without an integer
    form (full-precision weights or a float or multi-bit membrane: a model to bring to
    the core through train.nir_import) is written with its float parameters only."""
    if cfg.model.get("arch", "convnet") != "convnet":
        raise UserError(f"{cfg.path}: model.arch: {cfg.model['arch']!r}: NIR export writes "
                        "'convnet' chains")
    integer = cfg.quant["weight_bits"] is not None and cfg.quant["membrane"] in ("ternary", "binary")
    _check_finite(model, cfg)
    net = export_model(model, cfg) if integer else None    # integer metadata
    layer_of = lambda i: net.layers[i] if net is not None else None
    inp = cfg.model["input"]
    nodes = {"input": nir.Input(input_type=np.array([inp["channels"], inp["height"],
                                                     inp["width"]]))}
    edges, prev = [], "input"

    def add(name, node):
        nonlocal prev
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    scale_in = float(inp["scale"])
    for i, (block, spec) in enumerate(zip(model.blocks, cfg.spiking_layers)):
        add(f"conv{i}", _conv_node(block, spec, scale_in, layer_of(i)))
        add(f"lif{i}", _lif_node(block, spec, cfg.quant["membrane"], layer_of(i)))
        if spec.pool > 1:
            p = int(spec.pool)
            add(f"pool{i}", nir.AvgPool2d(kernel_size=np.array([p, p]), stride=np.array([p, p]),
                                          padding=np.array([0, 0])))
        scale_in = 1.0            # avg-pooled spikes feed the next layer as they are
    fc = cfg.layers[-1]
    flat_in = np.array([fc.in_channels, fc.in_height, fc.in_width])
    add("flatten", nir.Flatten(input_type={"input": flat_in}, start_dim=0, end_dim=-1))
    w, pot = _weight(model.classifier)
    bias = _f32(model.classifier.quantized_bias())
    fc_meta = {**pot, "output": "logits of every step; the class is the argmax of their sum over time"}
    if net is not None:
        fc_meta.update(bias_int=net.classifier.bias, w_code=net.classifier.w_code)
    add("fc", nir.Affine(weight=w.astype(np.float32), bias=bias, metadata={"spquant": fc_meta}))
    add("output", nir.Output(output_type=np.array([fc.out_channels])))
    state = {k: _f32(v) for k, v in model.state_dict().items() if v.is_floating_point()}
    meta = {"dt": DT, "producer": PRODUCER, "timesteps": int(cfg.timesteps),
            "spquant": {"config_text": config_text, "state_dict": state}}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def write_nir(graph, out: Path):
    """``graph`` at ``out``, atomically (nir.write into a temp sibling, then a rename)."""
    try:
        atomic_write(out, lambda tmp: nir.write(str(tmp), graph))
    except OSError as e:
        raise UserError(f"--out: {out}: cannot write ({e.strerror or e})") from None


def require_nir():
    """UserError (one line, exit 2) when the optional ``nir`` package is missing."""
    if nir is None:
        raise UserError("NIR export needs the 'nir' package: pip install 'spquant-rtl[nir]'")


def main(argv=None):
    ap = parser("python -m model_export.nir", __doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="model.pt written by python -m train")
    ap.add_argument("--out", help="the NIR file (default: <checkpoint dir>/model.nir)")
    args = ap.parse_args(argv)
    require_nir()
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "model.nir"
    check_output_file(out, "--out")           # before the work: nothing written on error
    model, cfg = load_checkpoint(args.checkpoint)
    ckpt, _ = _read_checkpoint(args.checkpoint)
    graph = to_nir(model, cfg, ckpt["config"]["text"])
    write_nir(graph, out)
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    print(f"nir: {out} ({len(graph.nodes)} nodes: {', '.join(kinds)}; dt {DT:g} s)")
    pruned = [n for n, node in graph.nodes.items() if isinstance(node, nir.LIF) and any(
        k in node.metadata["spquant"] for k in ("spatial_threshold", "gate_weights"))]
    if pruned:
        print(f"note: runtime pruning of {', '.join(pruned)} is carried in metadata only; "
              "NIR consumers run those layers unpruned")
    return 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
