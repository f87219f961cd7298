#!/usr/bin/env bash
# Runs the speed benchmarks that matter on an accelerator and writes their tables to $1 (default: .).
#   bash benchmarks/run_all.sh /tmp/bench
# On a GPU, seeds are cheap: the seed-scaling table goes up to 64 seeds.
set -uo pipefail
out="${1:-.}"
mkdir -p "$out"
python3 -c "import jax; print('devices:', jax.devices())" | tee "$out/devices.txt"
python3 -m benchmarks.seed_scaling --seeds 1,8,64 --total-steps 20000 --warmup-steps 1000 --hidden 256 --repeats 1 \
  | tee "$out/sac_seed_scaling.txt"
python3 -m benchmarks.onpolicy_speed --only ppo --ppo-seeds 1 16 256 | tee "$out/ppo_speed.txt"
