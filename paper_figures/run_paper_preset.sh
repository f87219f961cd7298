#!/usr/bin/env bash
# Figures F1 and E1 on MuJoCo at --preset paper (2x256 networks, batch 256, RLPD at UTD 20 with 10 critics,
# 100k online steps, 8 seeds), meant for one accelerator; results, logs and figures go to $1.
#   bash paper_figures/run_paper_preset.sh /tmp/paper_preset            # on a GPU machine
#   PYTHON=.venv/bin/python bash paper_figures/run_paper_preset.sh OUT  # another interpreter
#   PRESET=cpu bash paper_figures/run_paper_preset.sh OUT --seeds 1 --online-steps 200 --steps 200 --num-evals 1 \
#       --algos "SAC (scratch)" --methods h2o,cql      # a smoke run of this script on a CPU: the cpu preset's
#       # (cached) sets; flags after OUT, each with a value, go to the figure scripts (--online-steps,
#       # --offline-steps, --algos, --reps to F1; --steps, --cql-actions, --methods to E1; the rest to both)
# 1. builds the preset's MuJoCo sets (one SAC run per env, the two envs side by side; cached under data/);
# 2. runs every F1 task and every E1 simulator as its own process, all side by side on the one device (each
#    is a chain of small kernels and host MuJoCo calls, so one process alone leaves the device mostly idle);
# 3. joins the parts into one F1 and one E1 result (--merge): moorl_offline_online_mujoco_<preset>.{json,png}
#    and h2o_dynamics_gap_mujoco_<preset>.{json,png} in $1.
# Time: see paper_figures/README.md ("MuJoCo at the paper preset"); it has not been run on a GPU yet.
set -euo pipefail
out="${1:?usage: bash paper_figures/run_paper_preset.sh OUTDIR [extra flags for both figure scripts]}"
shift
py="${PYTHON:-python3}"
preset="${PRESET:-paper}"
mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false MPLBACKEND=Agg  # several processes share the device's memory
f1_flags=() e1_flags=()
while [ $# -gt 0 ]; do  # F1 calls the env-step budget --online-steps, E1 --steps; each gets what it knows
  case "$1" in
    --online-steps|--offline-steps|--algos|--reps) f1_flags+=("$1" "$2"); shift 2 ;;
    --steps|--cql-actions|--methods) e1_flags+=("$1" "$2"); shift 2 ;;
    *) f1_flags+=("$1" "$2"); e1_flags+=("$1" "$2"); shift 2 ;;
  esac
done
"$py" -c "import jax; print('devices:', jax.devices())" | tee "$out/devices.txt"
start=$(date +%s)

pids=()
for env in mujoco_hopper mujoco_halfcheetah; do
  "$py" -m paper_figures.mujoco_data --preset "$preset" --envs "$env" > "$out/data_$env.log" 2>&1 & pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
echo "datasets: $(( $(date +%s) - start )) s" | tee "$out/times.txt"

pids=() f1_parts=() e1_parts=()
for env in mujoco_hopper mujoco_halfcheetah; do
  for kind in medium medium_replay; do
    part="$out/f1_${env}_${kind}"
    f1_parts+=("$part.json")
    "$py" -m paper_figures.moorl_offline_online --suite mujoco --preset "$preset" --tasks "$env:$kind" --out "$part" \
      ${f1_flags[@]+"${f1_flags[@]}"} > "$part.log" 2>&1 & pids+=($!)
  done
done
for env in mujoco_halfcheetah_gravity_2x mujoco_halfcheetah_friction_0.3x mujoco_halfcheetah_joint_noise; do
  part="$out/e1_$env"
  e1_parts+=("$part.json")
  "$py" -m paper_figures.h2o_dynamics_gap --suite mujoco --preset "$preset" --envs "$env" --out "$part" \
    ${e1_flags[@]+"${e1_flags[@]}"} > "$part.log" 2>&1 & pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
echo "figures: $(( $(date +%s) - start )) s" | tee -a "$out/times.txt"
if [ "$status" -ne 0 ]; then echo "a part failed: see $out/*.log" >&2; exit 1; fi

join() { local IFS=,; echo "$*"; }
"$py" -m paper_figures.moorl_offline_online --merge "$(join "${f1_parts[@]}")" \
  --out "$out/moorl_offline_online_mujoco_$preset" | tee "$out/f1_summary.txt"
"$py" -m paper_figures.h2o_dynamics_gap --merge "$(join "${e1_parts[@]}")" \
  --out "$out/h2o_dynamics_gap_mujoco_$preset" | tee "$out/e1_summary.txt"
echo "total: $(( $(date +%s) - start )) s" | tee -a "$out/times.txt"
