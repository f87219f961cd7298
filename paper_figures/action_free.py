"""Action-free trajectories (Zheng et al., ICML 2023): normalized score vs the labelled fraction of the
data (1%, 10%, 100%) for TD3+BC and IQL trained on the union of the labelled and the proxy-labelled
trajectories (``algorithms/action_free.py``), with the labelled part taken from the ``medium`` data itself
or from ``random`` data, on our CPU tasks. IQM over seeds and tasks with 95% stratified-bootstrap CIs
(rliable).

    python -m paper_figures.action_free                                # CPU sizes (pendulum, reacher; 8 seeds)
    python -m paper_figures.action_free --tasks pendulum --seeds 2 --steps 500 --idm-steps 300   # a quick look

Data per task (the builder, ``policy=scripted``: the scripted expert made epsilon-greedy for ``medium``,
uniform actions for ``random``; cached under ``--data-dir``): a ``medium`` dataset of ``--size`` transitions.
At fraction f, f of its episodes keep their actions (labelled = ``medium``), or the same fraction of the
``random`` dataset's episodes are the labelled part (labelled = ``random``); the rest of the ``medium``
episodes are unlabelled and get the inverse dynamics model's labels. 100% is the algorithm on the fully
labelled ``medium`` data (no model). Every seed shares the split (split seed 0) and trains its own model
and agent.

Claim checked (printed and written to paper_figures/action_free.json): at 10% labelled, the proxy-labelled
run's IQM lies within the fully labelled run's 95% CI (per algorithm and labelled source).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import numpy as np

from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.runner import make_seed_sweep

OUT = pathlib.Path(__file__).resolve().parent
ALGOS = ("td3_bc", "iql")
EPISODE_STEPS = {"pendulum": 200, "reacher": 200}


def algo_config(algo: str, task: str, steps: int, hidden: int):
    from algorithms import iql, td3_bc

    if algo == "td3_bc":
        return td3_bc.Config(num_steps=steps, hidden_sizes=(hidden, hidden))
    # Short episodes: reward_spread = the episode length keeps per-step rewards O(1); beta = 1 as in the
    # IQL learning test on Pendulum (3 reached only -440 to -660 there).
    return iql.Config(offline_steps=steps, online_steps=0, hidden_sizes=(hidden, hidden),
                      reward_spread=float(EPISODE_STEPS.get(task, 1000)), beta=1.0)


def normalized_scores(agent, problem, spec, config, seeds: int, eval_episodes: int):
    """(seeds,) final normalized scores and the seconds the run took."""
    sweep = jax.jit(make_seed_sweep(agent, problem, num_evals=1, eval_episodes=eval_episodes))
    t0 = time.perf_counter()
    _, metrics = sweep(jax.random.split(jax.random.key(0), seeds), default_hparams(spec, config))
    returns = np.asarray(jax.device_get(metrics[-1]["eval_return"]))[:, -1]
    lo, hi = problem.reference_returns()
    return 100.0 * (returns - lo) / (hi - lo), time.perf_counter() - t0


def run_task(task: str, args, save=lambda out: None) -> dict:
    from algorithms import action_free
    from experiments.action_free_data import union_for
    from experiments.dataset_builder import get_or_build_dataset

    medium = str(get_or_build_dataset(task, "medium", args.size, policy="scripted", data_dir=args.data_dir))
    random_ = str(get_or_build_dataset(task, "random", args.size, policy="scripted", data_dir=args.data_dir))
    out = {}
    for algo in args.algos:
        spec = get_algorithm(algo)
        config = algo_config(algo, task, args.steps, args.hidden)
        full = build_problem(task, dataset=medium)
        scores, seconds = normalized_scores(spec.make(config, full), full, spec, config, args.seeds, args.eval_episodes)
        out[f"{algo}/full"] = {"scores": scores.tolist(), "seconds": seconds}
        save(out)
        print(f"{task} {algo} 100% labelled: {scores.mean():.1f} {np.round(scores, 1).tolist()} [{seconds:.0f} s]",
              flush=True)
        idm = action_free.IDMConfig(steps=args.idm_steps, hidden_sizes=(args.hidden, args.hidden))
        # the claim's 10% points first, so a run cut short still checks it
        for fraction in sorted(args.fractions, key=lambda f: abs(f - 0.1)):
            for source in args.sources:
                problem, data = union_for(full, medium, fraction, 0,
                                          labelled_dataset=random_ if source == "random" else None)
                agent = action_free.make(spec.make, config, idm, problem, data)
                scores, seconds = normalized_scores(agent, problem, spec, config, args.seeds, args.eval_episodes)
                out[f"{algo}/{source}/{fraction:g}"] = {"scores": scores.tolist(), "seconds": seconds,
                                                        "labelled": data.num_labelled}
                save(out)
                print(f"{task} {algo} labelled {fraction:g} from {source} ({data.num_labelled} transitions): "
                      f"{scores.mean():.1f} {np.round(scores, 1).tolist()} [{seconds:.0f} s]", flush=True)
    return out


def iqm_with_ci(scores: dict[str, np.ndarray], reps: int):
    """label -> (runs, tasks) scores; returns label -> (iqm, lo, hi) with rliable."""
    from rliable import library as rly
    from rliable import metrics

    point, ci = rly.get_interval_estimates(scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
    return {k: (float(point[k][0]), float(ci[k][0, 0]), float(ci[k][1, 0])) for k in scores}


def summarise(result: dict, reps: int) -> dict:
    tasks = list(result["tasks"])
    keys = sorted(set.intersection(*(set(result["tasks"][t]) for t in tasks)))
    stacked = {k: np.stack([np.asarray(result["tasks"][t][k]["scores"]) for t in tasks], axis=1) for k in keys}
    summary = iqm_with_ci(stacked, reps)
    claims = {}
    for algo in result["args"]["algos"]:
        if f"{algo}/full" not in summary:
            continue
        _, lo, hi = summary[f"{algo}/full"]
        for source in result["args"]["sources"]:
            key = f"{algo}/{source}/0.1"
            if key in summary:
                iqm = summary[key][0]
                claims[f"{algo}, labelled from {source}, 10%"] = {
                    "iqm": iqm, "full_ci": [lo, hi], "held": lo <= iqm <= hi or iqm > hi}
    return {"iqm": {k: list(v) for k, v in summary.items()}, "claims": claims}


def plot(result: dict, path: pathlib.Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]["iqm"]
    algos, sources = result["args"]["algos"], result["args"]["sources"]
    fractions = sorted(result["args"]["fractions"]) + [1.0]
    fig, axes = plt.subplots(1, len(algos), figsize=(5 * len(algos), 3.8), squeeze=False)
    for ax, algo in zip(axes[0], algos):
        for source in sources:
            keys = [f"{algo}/{source}/{f:g}" for f in fractions[:-1]] + [f"{algo}/full"]
            xs = [f for f, k in zip(fractions, keys) if k in summary]
            pts = np.array([summary[k] for k in keys if k in summary])
            if len(xs) == 0:
                continue
            ax.plot(xs, pts[:, 0], marker="o", label=f"labelled from {source}")
            ax.fill_between(xs, pts[:, 1], pts[:, 2], alpha=0.2)
        ax.set_xscale("log")
        ax.set_xticks(fractions, [f"{100 * f:g}%" for f in fractions])
        ax.set_xlabel("labelled fraction (rest: proxy labels)")
        ax.set_ylabel("normalized score (IQM)")
        ax.set_title(f"{algo} on {', '.join(result['tasks'])}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["pendulum", "reacher"])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS))
    parser.add_argument("--sources", nargs="+", default=["medium", "random"])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=5_000)
    parser.add_argument("--idm-steps", type=int, default=3_000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default=str(OUT / "action_free"))
    parser.add_argument("--replot", action="store_true", help="redraw from the JSON written by a previous run")
    args = parser.parse_args(argv)
    path = pathlib.Path(args.out + ".json")
    if args.replot:
        result = json.loads(path.read_text())
    else:
        result = {"args": vars(args), "tasks": {}}
        t0 = time.perf_counter()
        for task in args.tasks:
            def save(out, task=task):
                result["tasks"][task] = out
                path.write_text(json.dumps(result))

            run_task(task, args, save)
        result["seconds"] = time.perf_counter() - t0
    result["summary"] = summarise(result, args.reps)
    path.write_text(json.dumps(result, indent=1))
    plot(result, pathlib.Path(args.out + ".png"))
    for key, (iqm, lo, hi) in sorted(result["summary"]["iqm"].items()):
        print(f"{key:28s} IQM {iqm:6.1f}  [{lo:6.1f}, {hi:6.1f}]")
    for name, claim in result["summary"]["claims"].items():
        print(name, claim)


if __name__ == "__main__":
    main()
