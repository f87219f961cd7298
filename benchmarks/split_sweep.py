"""A seed study split into jobs vs one run: ``python -m benchmarks.split_sweep``.

Runs the same SAC study twice through the command line: once as one run of ``--seeds`` vmapped seeds, once
as ``--jobs`` jobs of ``seeds / jobs`` seeds each (``seed_offset=0,8,16,...``) through Hydra's submitit
launcher (``hydra/launcher=local`` by default: the jobs run at once on this machine; ``--launcher slurm``
for a cluster). Prints the wall time of each with the load average, and checks that every seed's
metrics (every evaluation, every logged loss) are identical in both: a seed's key depends on its global
index only. Prints how many seeds match bit for bit at each evaluation when they do not all match.
Needs the cluster extra (``pip install -e ".[cluster]"``).
"""

from __future__ import annotations

import argparse
import csv
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


ENV = dict(os.environ)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _run(args: list[str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=REPO, capture_output=True, text=True,
                         env=ENV)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return time.perf_counter() - t0


def _rows(paths) -> dict:
    rows = {}
    for path in paths:
        with path.open() as f:
            for r in csv.DictReader(f):
                rows[(int(r["chunk"]), int(r["seed"]))] = {k: v for k, v in r.items() if k != "seconds"}
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/benchmarks/split_sweep"))
    parser.add_argument("--launcher", default="local")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--xla-flags", default="", help="added to XLA_FLAGS of every run")
    parser.add_argument("--seed-block", type=int, default=None,
                        help="seed_block of the one big run (default: the seeds per job, which makes the split "
                             "bit-identical; 0 vmaps all its seeds at once)")
    args = parser.parse_args(argv)
    ENV["XLA_FLAGS"] = f"{ENV.get('XLA_FLAGS', '')} {args.xla_flags}".strip()
    if args.seeds % args.jobs:
        raise SystemExit("--seeds must be a multiple of --jobs")
    per_job = args.seeds // args.jobs
    common = ["algo=sac", "env=pendulum", f"total_steps={args.steps}", "algo.warmup_steps=500",
              "algo.hidden_sizes=[32,32]", "algo.batch_size=64", "num_evals=5", "eval_episodes=4", "progress=false"]
    out = args.out.absolute()

    load_before = _load()
    block = per_job if args.seed_block is None else args.seed_block
    one_s = _run([*common, f"seeds={args.seeds}", f"seed_block={block}", f"out_dir={out / 'one_run'}"])
    print(f"one run of {args.seeds} seeds (seed_block={block}): {one_s:.1f} s (load average before {load_before}, "
          f"after {_load()})")

    load_before = _load()
    offsets = ",".join(str(i * per_job) for i in range(args.jobs))
    split_s = _run(["-m", f"hydra/launcher={args.launcher}", *common, f"seeds={per_job}", f"seed_offset={offsets}",
                    f"hydra.sweep.dir={out / 'split'}"])
    print(f"{args.jobs} jobs x {per_job} seeds through hydra/launcher={args.launcher}: {split_s:.1f} s "
          f"(load average before {load_before}, after {_load()})")

    one = _rows([out / "one_run" / "metrics.csv"])
    split = _rows(sorted((out / "split").glob("*/metrics.csv")))
    same = one.keys() == split.keys() and all(one[k] == split[k] for k in one)
    finals = [float(one[k]["eval_return"]) for k in sorted(one) if k[0] == max(c for c, _ in one)]
    print(f"per-seed metrics identical: {same} ({len(one)} rows = {args.seeds} seeds x {len(one) // args.seeds} "
          f"evaluations); final eval return mean {sum(finals) / len(finals):.2f} over {len(finals)} seeds")
    if not same and one.keys() == split.keys():
        for chunk in sorted({c for c, _ in one}):
            keys = [k for k in one if k[0] == chunk]
            equal = sum(one[k]["eval_return"] == split[k]["eval_return"] for k in keys)
            gap = max(abs(float(one[k]["eval_return"]) - float(split[k]["eval_return"])) for k in keys)
            print(f"  evaluation {chunk}: {equal}/{len(keys)} seeds with identical eval_return, largest gap {gap:.4g}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
