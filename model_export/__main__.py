"""``python -m model_export --checkpoint runs/x/model.pt [--out runs/x/export]``"""
from pathlib import Path

from project_config import cli_main
from project_config.cli import add_out, parser
from project_config.files import check_output_dir
from train.trainer import load_checkpoint

from .format import save_export
from .from_torch import export_model


def main(argv=None):
    ap = parser("python -m model_export", __doc__)
    ap.add_argument("--checkpoint", required=True, help="model.pt written by python -m train")
    add_out(ap, "export directory (default: <checkpoint dir>/export)")
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "export"
    check_output_dir(out, "--out")          # before the work: nothing is written on error
    model, cfg = load_checkpoint(args.checkpoint)
    net = export_model(model, cfg)
    save_export(net, out)
    n_w = sum(l.w_code.size for l in net.layers)
    print(f"export: {out} ({len(net.layers)} layers, {n_w} weights, "
          f"{net.membrane} membrane, {net.layers[0].weight_bits}-bit PoT)")
    return 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
