#!/usr/bin/env bash
# The accelerator measurements (benchmarks/accelerator.py), tables and JSON written to $1 (default: .).
#   bash benchmarks/run_all.sh /tmp/bench            # on a GPU: SAC 1/8/64/256 seeds, RLPD UTD 20, PPO vs PureJaxRL
#   bash benchmarks/run_all.sh /tmp/bench --tiny     # seconds, any device: checks that it runs
# PYTHON picks the interpreter (default python3), e.g. PYTHON=.venv/bin/python.
set -euo pipefail
out="${1:-.}"
shift || true
mkdir -p "$out"
"${PYTHON:-python3}" -c "import jax; print('devices:', jax.devices())" | tee "$out/devices.txt"
"${PYTHON:-python3}" -m benchmarks.accelerator "$out" "$@" | tee "$out/accelerator.txt"
