"""Figure D1 (our design on the papers' testbed; docs/algorithms/hnpg.md, docs/algorithms/hyq.md): success rate vs
online env steps on the `logits` combination lock, HNPG vs NPG vs Hy-Q vs RLPD, at two horizons, plus a panel with
uninformative (`random`) offline data for HNPG vs NPG. Mean over seeds with a 95% bootstrap CI band.

    python -m paper_figures.hnpg_comblock                       # CPU sizes (H = 5 and 10, 8 seeds)
    python -m paper_figures.hnpg_comblock --horizons 10 50 --seeds 16 --scale 4   # accelerator sizes

Success = fraction of evaluation episodes whose return is 1 (the lock opened; failing pays at most 0.1).
Each seed draws its own lock (and its own offline data from it); every algorithm is evaluated on its
seed's lock. Writes paper_figures/hnpg_comblock.png and paper_figures/hnpg_comblock.json (per-seed final
success per algorithm and horizon, runtimes) and prints the checks of claims D1a-D1d.
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
from paper_figures.provenance import mean_ci, provenance

OUT = pathlib.Path(__file__).resolve().parent


def run_algo(name, config, problem, seeds: int, num_evals: int, eval_episodes: int, deterministic: bool = True):
    """(online env steps at each evaluation, success (seeds, evals), seconds) for one algorithm."""
    spec = get_algorithm(name)
    agent = spec.make(config, problem)
    hp = default_hparams(spec, config)
    train = jax.jit(make_seed_sweep(agent, problem, num_evals=num_evals, eval_episodes=eval_episodes,
                                    deterministic=deterministic))
    t0 = time.perf_counter()
    _, metrics = train(jax.random.split(jax.random.key(0), seeds), hp)
    jax.block_until_ready(metrics)
    seconds = time.perf_counter() - t0
    steps, successes, offset = [], [], 0
    for plan, m in zip(plan_phases(agent, num_evals), metrics):
        per_chunk = plan.chunk_length * plan.phase.env_steps_per_iteration
        steps += [offset + per_chunk * (i + 1) for i in range(plan.num_chunks)]
        offset += per_chunk * plan.num_chunks
        successes.append((np.asarray(m["eval_returns"]) >= 0.99).mean(-1))
    return np.asarray(steps), np.concatenate(successes, axis=1), seconds


def bootstrap_ci(x, name: str):
    """95% bootstrap CI of the mean over axis 0 (seeds), for every column; seeded by ``name`` (a replot gives
    the same interval)."""
    return mean_ci(x, name)


def rlpd_problem(H: int, episodes: int):
    """RLPD has no per-seed lock: it acts on the problem's lock, with HNPG's offline data of that lock."""
    from envs.combination_lock import collect_comblock_episodes

    problem = build_problem("comblock_logits", {"horizon": H})
    data = collect_comblock_episodes(jax.random.key(123), problem.env, problem.env_params, episodes, "hnpg")
    return build_problem("comblock_logits", {"horizon": H}, dataset=data)


def main(argv=None):
    from algorithms import hnpg, hyq, rlpd

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--horizons", type=int, nargs=2, default=[5, 10])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the online budget")
    ap.add_argument("--iterations", type=int, default=0, help="NPG iterations per run (default: 8 H x --scale)")
    ap.add_argument("--evals", type=int, default=6)
    ap.add_argument("--eval-episodes", type=int, default=20)
    ap.add_argument("--no-rlpd", action="store_true")
    ap.add_argument("--sampled-eval", action="store_true",
                    help="evaluate every method's sampled policy (default: each one's deterministic policy; Hy-Q "
                         "is greedy under both)")
    ap.add_argument("--run-horizons", type=int, nargs="+", default=None,
                    help="run only these of --horizons (partial reruns; results of the others are absent)")
    ap.add_argument("--labels", nargs="+", default=None, help="run only these curves (e.g. NPG Hy-Q)")
    ap.add_argument("--out", default=str(OUT / "hnpg_comblock"), help="output path without extension (.json, .png)")
    ap.add_argument("--replot", default="", help="a JSON this script wrote: redo its figure and claims into --out")
    ap.add_argument("--reuse", action="store_true",
                    help="load curves saved by earlier runs (paper_figures/hnpg_comblock_runs/) instead of rerunning")
    args = ap.parse_args(argv)
    if args.replot:
        results = json.loads(pathlib.Path(args.replot).read_text())
        finish(results, args.out)
        return
    t_all = time.perf_counter()
    results = {"settings": vars(args), "runs": {},
               "provenance": provenance(args, seeds=range(args.seeds), datasets={},
                                        offline_data="drawn in-run from each seed's own lock (see settings); "
                                                     "RLPD: 1,000 HNPG-kind episodes of the problem's lock, key 123",
                                        evaluation="sampled" if args.sampled_eval else "deterministic")}
    for H in args.horizons:
        if args.run_horizons is not None and H not in args.run_horizons:
            continue
        # NPG iterations, 1000 online steps each: 8 H times --scale, or --iterations (the official code: 1,500)
        iters = args.iterations if args.iterations else int(round(args.scale * 8 * H))
        budget = iters * 1000
        problem = build_problem("comblock_logits", {"horizon": H})
        cfgs = {
            "HNPG": ("hnpg", hnpg.Config(num_iterations=iters, offline_episodes=1000)),
            "NPG": ("npg", hnpg.NPGConfig(num_iterations=iters)),
            "Hy-Q": ("hyq", hyq.Config(num_rounds=max(2, budget // (50 * H * (H + 1) // 2)), grad_steps=200,
                                       offline_per_level=2000)),
        }
        if H == args.horizons[1]:
            cfgs["HNPG (random data)"] = ("hnpg", hnpg.Config(num_iterations=iters, offline="random",
                                                               offline_episodes=1000))
        for label, (name, cfg) in cfgs.items():
            if args.labels is not None and label not in args.labels:
                continue
            cache = OUT / "hnpg_comblock_runs" / f"H{H}_{label.replace(' ', '_').replace('(', '').replace(')', '')}"
            cache = cache.with_name(cache.name + ("_sampled" if args.sampled_eval else "") + f"_{iters}it.npz")
            if args.reuse and cache.exists():
                z = np.load(cache)
                steps, succ, sec = z["steps"], z["succ"], float(z["seconds"])
            else:
                steps, succ, sec = run_algo(name, cfg, problem, args.seeds, args.evals, args.eval_episodes,
                                            deterministic=not args.sampled_eval)
                cache.parent.mkdir(exist_ok=True)
                np.savez(cache, steps=steps, succ=succ, seconds=sec)
            results["runs"][f"H={H} {label}"] = {"final_success_per_seed": succ[:, -1].tolist(),
                                                 "online_steps": int(steps[-1]), "seconds": round(sec, 1),
                                                 "steps": np.asarray(steps).tolist(), "success": succ.tolist()}
            pathlib.Path(args.out + ".json").write_text(json.dumps(results, indent=1, default=float))
            print(f"H={H:3d} {label:20s} final success {succ[:, -1].mean():.2f} "
                  f"(per seed {np.round(succ[:, -1], 2).tolist()}) after {steps[-1]} steps, {sec:.0f} s", flush=True)
        if not args.no_rlpd:
            rcfg = rlpd.Config(total_steps=budget, num_envs=H, warmup_steps=10 * H, utd=1, num_critics=2,
                               hidden_sizes=(64, 64), buffer_size=budget)
            steps, succ, sec = run_algo("rlpd", rcfg, rlpd_problem(H, 1000), args.seeds, args.evals,
                                        args.eval_episodes, deterministic=not args.sampled_eval)
            results["runs"][f"H={H} RLPD"] = {"final_success_per_seed": succ[:, -1].tolist(),
                                              "online_steps": int(steps[-1]), "seconds": round(sec, 1),
                                              "steps": np.asarray(steps).tolist(), "success": succ.tolist()}
            print(f"H={H:3d} {'RLPD':20s} final success {succ[:, -1].mean():.2f} "
                  f"(per seed {np.round(succ[:, -1], 2).tolist()}) after {steps[-1]} steps, {sec:.0f} s", flush=True)
    results["total_seconds"] = round(time.perf_counter() - t_all, 1)
    finish(results, args.out)


def finish(results: dict, out: str):
    """Claims, the figure and the JSON from the recorded per-seed curves (a fresh run or --replot)."""
    horizons = results["settings"]["horizons"]
    runs = results["runs"]
    fin = lambda key: np.asarray(runs[key]["final_success_per_seed"]) if key in runs else None  # noqa: E731
    claims = {}
    big = [H for H in horizons if H >= 10]
    done = [H for H in horizons if f"H={H} HNPG" in runs]
    claims["D1a"] = {f"H={H}": bool(fin(f"H={H} NPG").mean() < 0.1) for H in big if H in done and f"H={H} NPG" in runs}
    claims["D1b"] = {f"H={H}": bool((fin(f"H={H} HNPG") > 0.8).mean() >= 0.8) for H in done}
    claims["D1c"] = {}
    for H in done:
        h = fin(f"H={H} HNPG").mean()
        others = {k: fin(f"H={H} {k}").mean() for k in ("Hy-Q", "RLPD") if f"H={H} {k}" in runs}
        claims["D1c"][f"H={H}"] = {"hnpg": h, **others, "holds": bool(all(h > v for v in others.values()))}
    Hr = horizons[1]
    if Hr in done and f"H={Hr} HNPG (random data)" in runs and f"H={Hr} NPG" in runs:
        r, n = fin(f"H={Hr} HNPG (random data)"), fin(f"H={Hr} NPG")
        lo, hi = bootstrap_ci(n[:, None], f"H={Hr} NPG final")
        claims["D1d"] = {f"H={Hr}": {"hnpg_random": float(r.mean()), "npg": float(n.mean()),
                                     "npg_ci": [float(lo[0]), float(hi[0])],
                                     "holds": bool(r.mean() >= lo[0] - 1e-9)}}
    results["claims"] = claims
    print(json.dumps(claims, indent=1, default=float))
    print(f"total {results.get('total_seconds', 0):.0f} s")
    pathlib.Path(out + ".json").write_text(json.dumps(results, indent=1, default=float))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = [(axes[0], horizons[0], ["HNPG", "NPG", "Hy-Q", "RLPD"]),
              (axes[1], horizons[1], ["HNPG", "NPG", "Hy-Q", "RLPD"]),
              (axes[2], horizons[1], ["HNPG (random data)", "NPG"])]
    for ax, H, labels in panels:
        for label in labels:
            run = runs.get(f"H={H} {label}")
            if run is None or "success" not in run:
                continue
            steps, succ = np.asarray(run["steps"]), np.asarray(run["success"])
            lo, hi = bootstrap_ci(succ, f"H={H} {label} curve")
            ax.plot(steps, succ.mean(0), label=label)
            ax.fill_between(steps, lo, hi, alpha=0.2)
        ax.set_title(f"logits lock, H={H}" + (" (random offline data)" if "HNPG (random data)" in labels else ""))
        ax.set_xlabel("online env steps")
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out + ".png", dpi=120)
    print(f"wrote {out}.png")


if __name__ == "__main__":
    main()
