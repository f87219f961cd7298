"""Figure F1 (shared/specs/deep_algorithms.md 7.4): normalized return vs online env steps, given offline data,
for MOORL, RLPD, Cal-QL (offline pre-training, then online), IQL (same) and SAC from scratch, with IQM and
95% stratified-bootstrap CIs over seeds x tasks (rliable), plus the eta_meta = 1, K = 1 MOORL run against
the alternating-SAC ablation (F1c).

    python -m paper_figures.moorl_offline_online                  # the CPU default (see README.md)
    python -m paper_figures.moorl_offline_online --seeds 8 --online-steps 20000 --tasks pendulum:medium_replay,pendulum:medium

Tasks are env:dataset-kind pairs; datasets come from the builder (cached under data/). Scores are
normalized with the random and expert returns stored in each dataset's metadata (100 = expert).
Every algorithm runs all seeds in one vmapped program. Writes paper_figures/moorl_offline_online.png and
paper_figures/moorl_offline_online.json (every per-seed curve, the claims and whether they held).

Budget choices for a 2-core CPU (all stated in the output): small networks, RLPD with UTD 4 and 4 critics
instead of 20 and 10, IQL/Cal-QL offline phases of ``--offline-steps`` updates, SAC from scratch with
1000 random warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from hybrid_rl.algorithm import default_hparams, get_algorithm
from hybrid_rl.problem import build_problem
from hybrid_rl.runner import RunSettings, Runner

OUT = pathlib.Path(__file__).resolve().parent


def configs(args) -> dict[str, tuple[str, dict]]:
    """label -> (registered algorithm, config overrides)."""
    net = dict(hidden_sizes=(args.hidden, args.hidden), batch_size=args.batch)
    steps = args.online_steps
    return {
        "SAC (scratch)": ("sac", dict(total_steps=steps, warmup_steps=1_000, **net)),
        "RLPD": ("rlpd", dict(total_steps=steps, warmup_steps=1_000, utd=4, num_critics=4, **net)),
        "IQL": ("iql", dict(offline_steps=args.offline_steps, online_steps=steps, **net)),
        "Cal-QL": ("cal_ql", dict(offline_steps=args.offline_steps, online_steps=steps, **net)),
        "MOORL": ("moorl", dict(total_steps=steps, **net)),
        "MOORL eta=1 K=1": ("moorl", dict(total_steps=steps, inner_steps=1, eta_meta=1.0, **net)),
        "alternating SAC": ("moorl", dict(total_steps=steps, inner_steps=1, meta_learning=False, **net)),
    }


def run_one(algo: str, overrides: dict, problem, seeds: int, num_evals: int, eval_episodes: int):
    spec = get_algorithm(algo)
    config = spec.config_cls(**overrides)
    runner = Runner(spec.make(config, problem), problem, default_hparams(spec, config),
                    RunSettings(num_seeds=seeds, num_evals=num_evals, eval_episodes=eval_episodes, progress=False,
                                checkpoint=False))
    runner.run()
    # Online-step curve per seed: offline-phase evaluations sit at online step 0 (the last one is kept).
    rows = [r for r in runner.rows if "normalized_score" in r]
    curves = []
    for s in range(seeds):
        mine = [r for r in rows if r["seed"] == s]
        online = [r for r in mine if r["phase"] != "offline"]
        offline = [r for r in mine if r["phase"] == "offline"]
        pts = ([(0, offline[-1]["normalized_score"])] if offline else []) + [
            (r["env_steps"], r["normalized_score"]) for r in online
        ]
        curves.append(pts)
    return curves


def on_grid(curves, grid):
    out = []
    for pts in curves:
        x, y = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
        out.append(np.interp(grid, x, y))
    return np.array(out)  # (seeds, len(grid))


def iqm_with_ci(scores: dict[str, np.ndarray], reps: int):
    """scores: label -> (runs, tasks); returns label -> (iqm, lo, hi) with rliable."""
    from rliable import library as rly
    from rliable import metrics

    point, ci = rly.get_interval_estimates(scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
    return {k: (float(point[k][0]), float(ci[k][0, 0]), float(ci[k][1, 0])) for k in scores}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="pendulum:medium_replay,pendulum:medium")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--online-steps", type=int, default=6_000)
    parser.add_argument("--offline-steps", type=int, default=3_000)
    parser.add_argument("--dataset-size", type=int, default=20_000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--num-evals", type=int, default=6)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--reps", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--algos", default="", help="comma-separated subset of labels (default: all)")
    parser.add_argument("--out", default=str(OUT / "moorl_offline_online"), help="output path without extension")
    args = parser.parse_args()

    from hybrid_rl.datasets.builder import get_or_build_dataset

    t_start = time.time()
    labels = configs(args)
    if args.algos:
        labels = {k: v for k, v in labels.items() if k in args.algos.split(",")}
    tasks = [t.split(":") for t in args.tasks.split(",")]
    grid = np.linspace(0, args.online_steps, args.num_evals + 1)
    per_task: dict[str, list[np.ndarray]] = {k: [] for k in labels}
    raw: dict = {}
    for env, kind in tasks:
        path = get_or_build_dataset(env, kind.replace("_", "-"), args.dataset_size, data_dir="data")
        problem = build_problem(env, dataset=path)
        if problem.reference_returns() is None:
            raise SystemExit(f"dataset {path} has no reference returns in its metadata")
        for label, (algo, overrides) in labels.items():
            t0 = time.time()
            curves = run_one(algo, overrides, problem, args.seeds, args.num_evals, args.eval_episodes)
            per_task[label].append(on_grid(curves, grid))
            raw[f"{env}:{kind}:{label}"] = curves
            final = per_task[label][-1][:, -1]
            print(f"{env}:{kind:<14} {label:<17} final normalized {final.mean():7.1f} +- {final.std():5.1f} "
                  f"({time.time() - t0:5.0f} s)", flush=True)

    # (runs, tasks, points) per algorithm; IQM over runs x tasks at each point.
    stacked = {k: np.stack(v, axis=1) for k, v in per_task.items()}
    curves = {k: [iqm_with_ci({k: v[:, :, i]}, args.reps)[k] for i in range(len(grid))] for k, v in stacked.items()}
    early = int(np.searchsorted(grid, 0.2 * args.online_steps, side="right")) - 1
    early = max(early, 1)

    claims = {}
    sac_early = curves["SAC (scratch)"][early][0] if "SAC (scratch)" in curves else None
    hybrid = [k for k in ("MOORL", "RLPD", "Cal-QL", "IQL") if k in curves]
    if sac_early is not None:
        margins = {k: curves[k][early][0] - sac_early for k in hybrid}
        claims["F1a"] = {"statement": f"every hybrid method beats SAC from scratch at {grid[early]:.0f} online steps "
                                      f"(<= 20% of the budget), IQM", "margins": margins,
                         "held": bool(all(m > 0 for m in margins.values()))}
    if "MOORL" in curves:
        gaps = {k: curves["MOORL"][-1][0] - curves[k][-1][0] for k in ("RLPD", "Cal-QL") if k in curves}
        claims["F1b"] = {"statement": "MOORL's final IQM >= RLPD's and Cal-QL's", "gaps": gaps,
                         "held": bool(all(g >= 0 for g in gaps.values()))}
    if "MOORL eta=1 K=1" in stacked and "alternating SAC" in stacked:
        diff = float(np.abs(stacked["MOORL eta=1 K=1"] - stacked["alternating SAC"]).max())
        claims["F1c"] = {"statement": "MOORL (eta_meta=1, K=1) matches the alternating-SAC ablation",
                         "max_abs_normalized_difference": diff, "held": bool(diff < 1e-3)}
    runtime = time.time() - t_start

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, pts in curves.items():
        if label == "alternating SAC":
            continue
        iqm = np.array([p[0] for p in pts])
        lo, hi = np.array([p[1] for p in pts]), np.array([p[2] for p in pts])
        style = "--" if label == "MOORL eta=1 K=1" else "-"
        ax.plot(grid, iqm, style, label=label)
        ax.fill_between(grid, lo, hi, alpha=0.15)
    ax.set_xlabel("online env steps")
    ax.set_ylabel("normalized return (IQM, 95% CI)")
    ax.set_title(f"F1: {', '.join(':'.join(t) for t in tasks)}; {args.seeds} seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=120)

    result = {"args": vars(args), "grid": grid.tolist(), "iqm_ci": curves, "claims": claims,
              "runtime_s": runtime, "per_seed_curves": raw}
    pathlib.Path(args.out + ".json").write_text(json.dumps(result, indent=1))
    for name, c in claims.items():
        print(f"{name}: {'HELD' if c['held'] else 'NOT HELD'}: {c['statement']}: "
              f"{ {k: v for k, v in c.items() if k not in ('statement', 'held')} }")
    print(f"runtime {runtime:.0f} s")


if __name__ == "__main__":
    main()
