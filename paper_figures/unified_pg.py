"""Unified policy gradient on the combination lock: greedy success rate vs env steps for SFT, GRPO,
SFT-then-GRPO and HPT (presets of ``algorithms/unified_pg.py``) and HNPG, at two horizons, with few clean
demonstrations and with noisy ones. Mean over seeds with a 95% bootstrap CI band.

    python -m paper_figures.unified_pg                     # CPU sizes (H = 10 and 20, 8 seeds)
    python -m paper_figures.unified_pg --horizons 5 --seeds 2 --iterations 30   # a quick look

Setting: each seed draws a pool of ``--tasks`` locks (the "prompts"), each with ``--demos`` expert
demonstrations (epsilon-greedy with epsilon ``--noise`` in the noisy setting). Every iteration rolls out
8 groups of 8 episodes, each group on one lock drawn from the pool. Success = the greedy policy opens the
lock, averaged over every lock of the pool (4 episodes each). HNPG has no pool: it runs on one lock per
seed (its own per-seed lock) with the same demonstrations as its offline data (``offline=hnpg``,
``offline_episodes=--demos``, ``offline_epsilon`` = the noise), so its x axis is env steps on that lock;
the unified methods' x axis is env steps per lock of the pool (total / tasks), the same budget per lock.
HNPG's success is the official evaluation (the stochastic policy opens the lock).

Claims checked (printed, and written to paper_figures/unified_pg.json):
  U1  HPT ends at least as high as the best of SFT, GRPO and SFT-then-GRPO (final success, per setting,
      within 0.05 or above);
  U2  with noisy demonstrations HPT loses less final success than SFT (clean minus noisy, per horizon).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import numpy as np

from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.runner import make_seed_sweep, plan_phases

OUT = pathlib.Path(__file__).resolve().parent
PRESETS = ("sft", "grpo", "sft_then_rl", "hpt")
LABELS = {"sft": "SFT", "grpo": "GRPO", "sft_then_rl": "SFT then GRPO", "hpt": "HPT", "hnpg": "HNPG"}


def bootstrap_ci(x, n=2000, seed=0):
    """95% bootstrap CI of the mean over axis 0 (seeds), for every column."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.shape[0], (n, x.shape[0]))
    means = x[idx].mean(1)
    return np.percentile(means, 2.5, axis=0), np.percentile(means, 97.5, axis=0)


def run_unified(H: int, args, noises: dict):
    """Every preset x demonstration setting as one grid over the traced ``schedule_id`` and ``demo_noise``:
    one compiled program per horizon. Returns {(setting, preset): (steps, success (seeds, points))}, seconds."""
    import jax.numpy as jnp

    from algorithms import unified_pg
    from algorithms._unified_pg import PRESETS as PRESET_PARTS
    from algorithms._unified_pg import SCHEDULES
    from hybrid_rl.runner import init_grid, make_train_from

    problem = build_problem("comblock", {"horizon": H})
    config = unified_pg.Config(preset="grpo", num_iterations=args.iterations, num_tasks=args.tasks,
                               num_demos=args.demos, sft_iterations=args.iterations // 4)
    agent = unified_pg.make(config, problem)
    points = [(setting, preset) for setting in noises for preset in PRESETS]
    hp = default_hparams(get_algorithm("unified_pg"), config)
    grid = {k: jnp.full((len(points),), v) for k, v in hp.items()}
    grid["schedule_id"] = jnp.asarray([float(SCHEDULES.index(PRESET_PARTS[p].schedule)) for _, p in points])
    grid["demo_noise"] = jnp.asarray([noises[s] for s, _ in points])
    train_from = make_train_from(agent, problem, args.points, 0)

    @jax.jit
    def run(keys, hp):
        states = init_grid(agent.init, keys, hp, len(points))
        eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        return jax.vmap(lambda st: jax.vmap(train_from)(st, eval_keys))(states)

    t0 = time.perf_counter()
    _, (metrics,) = run(jax.random.split(jax.random.key(0), args.seeds), grid)
    success = np.asarray(jax.device_get(metrics["greedy_success_rate"]))  # (points, seeds, chunks): chunk means
    (plan,) = plan_phases(agent, args.points)
    per_chunk = plan.chunk_length * plan.phase.env_steps_per_iteration / args.tasks
    steps = per_chunk * (np.arange(plan.num_chunks) + 1)
    return {pt: (steps, success[i]) for i, pt in enumerate(points)}, time.perf_counter() - t0


def run_hnpg(H: int, args, noise: float):
    from algorithms import hnpg

    problem = build_problem("comblock", {"horizon": H, "reward_mode": "hnpg"})
    budget = args.iterations * 64 * H / args.tasks  # env steps per lock of the unified methods
    per_iteration = -(-1000 // H) * H  # HNPG's default: ceil(1000 / H) whole episodes per iteration
    iterations = max(1, int(round(budget / per_iteration)))
    config = hnpg.Config(num_iterations=iterations, offline="hnpg",
                         offline_episodes=args.demos, offline_epsilon=noise)
    agent = hnpg.make(config, problem)
    hp = default_hparams(get_algorithm("hnpg"), config)
    sweep = jax.jit(make_seed_sweep(agent, problem, num_evals=args.points, eval_episodes=16))
    t0 = time.perf_counter()
    _, (metrics,) = sweep(jax.random.split(jax.random.key(0), args.seeds), hp)
    success = (np.asarray(jax.device_get(metrics["eval_returns"])) >= 0.99).mean(-1)
    (plan,) = plan_phases(agent, args.points)
    steps = plan.chunk_length * plan.phase.env_steps_per_iteration * (np.arange(plan.num_chunks) + 1)
    return steps, success, time.perf_counter() - t0


def claims_of(result: dict, horizons, tail: int = 1) -> dict:
    """U1 and U2 from the final points (mean over seeds of the last ``tail`` evaluations)."""
    final = {}
    for key, entry in result["runs"].items():
        final[key] = float(np.mean(np.asarray(entry["success"])[:, -tail:]))
    claims = {}
    for H in horizons:
        for setting in ("clean", "noisy"):
            get = lambda m: final.get(f"H{H}/{setting}/{m}", float("nan"))  # noqa: E731
            best = max(get(m) for m in ("sft", "grpo", "sft_then_rl"))
            claims[f"U1 H={H} {setting}"] = {"hpt": get("hpt"), "best_other": best, "held": get("hpt") >= best - 0.05}
        drop = lambda m: final.get(f"H{H}/clean/{m}", np.nan) - final.get(f"H{H}/noisy/{m}", np.nan)  # noqa: E731
        claims[f"U2 H={H}"] = {"hpt_drop": drop("hpt"), "sft_drop": drop("sft"), "held": drop("hpt") < drop("sft")}
    return {"final": final, "claims": claims}


def plot(result: dict, horizons, path: pathlib.Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(horizons), 2, figsize=(10, 3.6 * len(horizons)), squeeze=False)
    for i, H in enumerate(horizons):
        for j, setting in enumerate(("clean", "noisy")):
            ax = axes[i, j]
            for method in PRESETS + ("hnpg",):
                entry = result["runs"].get(f"H{H}/{setting}/{method}")
                if entry is None:
                    continue
                steps, success = np.asarray(entry["steps"]), np.asarray(entry["success"])
                lo, hi = bootstrap_ci(success)
                ax.plot(steps, success.mean(0), label=LABELS[method])
                ax.fill_between(steps, lo, hi, alpha=0.2)
            ax.set_title(f"H = {H}, {setting} demonstrations")
            ax.set_xlabel("env steps per lock")
            ax.set_ylabel("success rate")
            ax.set_ylim(-0.02, 1.02)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizons", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--demos", type=int, default=4)
    parser.add_argument("--noise", type=float, default=0.1)  # 0.3 at H = 10: no demo reaches the late levels
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--methods", nargs="*", default=["hnpg"], help="baselines besides the presets (hnpg)")
    parser.add_argument("--out", default=str(OUT / "unified_pg"))
    args = parser.parse_args(argv)
    result = {"args": vars(args), "runs": {}, "seconds": {}}
    noises = {"clean": 0.0, "noisy": args.noise}
    for H in args.horizons:
        runs, seconds = run_unified(H, args, noises)
        result["seconds"][f"H{H}/unified"] = seconds
        for (setting, method), (steps, success) in runs.items():
            result["runs"][f"H{H}/{setting}/{method}"] = {"steps": steps.tolist(), "success": success.tolist()}
            print(f"H{H}/{setting}/{method}: final success {success[:, -1].mean():.3f} "
                  f"(per seed {np.round(success[:, -1], 2).tolist()})", flush=True)
        print(f"H{H}: the four presets x two settings took {seconds:.0f} s", flush=True)
        if "hnpg" in args.methods:
            for setting, noise in noises.items():
                steps, success, seconds = run_hnpg(H, args, noise)
                key = f"H{H}/{setting}/hnpg"
                result["runs"][key] = {"steps": steps.tolist(), "success": success.tolist()}
                result["seconds"][key] = seconds
                print(f"{key}: final success {success[:, -1].mean():.3f} "
                      f"(per seed {np.round(success[:, -1], 2).tolist()}) [{seconds:.0f} s]", flush=True)
        pathlib.Path(args.out + ".json").write_text(json.dumps(result))
    result.update(claims_of(result, args.horizons))
    pathlib.Path(args.out + ".json").write_text(json.dumps(result, indent=1))
    plot(result, args.horizons, pathlib.Path(args.out + ".png"))
    for name, claim in result["claims"].items():
        print(name, claim)


if __name__ == "__main__":
    main()
