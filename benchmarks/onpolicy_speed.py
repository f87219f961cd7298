"""On-policy throughput: PPO on CartPole-v1 with PureJaxRL's settings, and HNPG iterations/s on the combination lock.

    python -m benchmarks.onpolicy_speed                 # PPO 1 and 16 seeds, HNPG H=10 and H=50, 1 and 8 seeds
    python -m benchmarks.onpolicy_speed --only ppo --ppo-steps 500000
    python -m benchmarks.onpolicy_speed --tiny          # seconds: checks the script runs, measures nothing

Times are wall-clock on whatever machine runs it (compile = lower + compile of the whole jitted train;
run = the compiled call). The PPO program ends with one evaluation of ``--eval-episodes`` greedy episodes
per seed (a few hundred steps against the run's 500k), and the table's "final return" is that evaluation's
mean over seeds: the return of the trained policy, not an average over training. For PPO against PureJaxRL
in the same run, see ``python -m benchmarks.anchors``. Prints a table with the load average; asserts nothing.

Measured on the idle 2-core CPU (2026-11-26): PPO 1 seed 500k steps 2.07 s after a 3.7 s compile (16 seeds
26.1 s); HNPG, 20 iterations: H = 10 1 seed 28.6 it/s, 8 seeds 4.88 it/s; H = 50 1 seed 14.4 it/s, 8 seeds
2.27 it/s; compile 14-19 s. (Not re-measured beside PureJaxRL in the same run: ``benchmarks.anchors`` does that.)
"""

from __future__ import annotations

import argparse
import os
import time

import jax

from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.runner import make_seed_sweep


def _time_train(agent, problem, hp, num_seeds: int, eval_episodes: int = 0):
    fn = jax.jit(make_seed_sweep(agent, problem, num_evals=1, eval_episodes=eval_episodes))
    keys = jax.random.split(jax.random.key(0), num_seeds)
    t0 = time.perf_counter()
    compiled = fn.lower(keys, hp).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, metrics = compiled(keys, hp)
    jax.block_until_ready(metrics)
    return compile_s, time.perf_counter() - t0, state, metrics


def bench_ppo(steps: int, seeds_list, eval_episodes: int = 10):
    from algorithms import ppo

    problem = build_problem("cartpole")
    cfg = ppo.Config(total_steps=steps)
    agent = ppo.make(cfg, problem)
    hp = default_hparams(get_algorithm("ppo"), cfg)
    print(f"PPO CartPole-v1, {steps} steps/seed, 4 envs x 128 steps, 4 epochs x 4 minibatches ({jax.devices()[0].platform}), "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'seeds':>6} {'compile s':>10} {'run s':>8} {'env steps/s':>12} {'final eval return':>18} {'load':>5}")
    for n in seeds_list:
        c, r, _, m = _time_train(agent, problem, hp, n, eval_episodes)
        # m[0]["eval_return"] has shape (seeds, evaluations): the last evaluation is the final policy's return.
        ret = float(jax.numpy.mean(m[0]["eval_return"][:, -1]))
        print(f"{n:>6} {c:>10.1f} {r:>8.2f} {n * steps / r:>12,.0f} {ret:>18.1f} {os.getloadavg()[0]:>5.1f}")


def bench_hnpg(horizons, seeds_list, iterations: int):
    from algorithms import hnpg

    print(f"HNPG on comblock_logits ({iterations} iterations, ceil(1000/H) episodes each)")
    print(f"{'H':>4} {'seeds':>6} {'compile s':>10} {'run s':>8} {'iterations/s':>13}")
    for H in horizons:
        problem = build_problem("comblock_logits", {"horizon": H})
        cfg = hnpg.Config(num_iterations=iterations, offline_episodes=1000)
        agent = hnpg.make(cfg, problem)
        hp = default_hparams(get_algorithm("hnpg"), cfg)
        for n in seeds_list:
            c, r, _, _ = _time_train(agent, problem, hp, n)
            print(f"{H:>4} {n:>6} {c:>10.1f} {r:>8.2f} {iterations / r:>13.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["ppo", "hnpg"], default=None)
    ap.add_argument("--ppo-steps", type=int, default=500_000)
    ap.add_argument("--ppo-seeds", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--hnpg-horizons", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--hnpg-seeds", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--hnpg-iterations", type=int, default=20)
    ap.add_argument("--eval-episodes", type=int, default=10, help="greedy episodes per seed for the final return")
    ap.add_argument("--tiny", action="store_true", help="1024 PPO steps, 2 HNPG iterations at H=5, 1 and 2 seeds")
    args = ap.parse_args(argv)
    if args.tiny:
        args.ppo_steps, args.ppo_seeds, args.eval_episodes = 1_024, [1, 2], 2
        args.hnpg_horizons, args.hnpg_seeds, args.hnpg_iterations = [5], [1], 2
    if args.only in (None, "ppo"):
        bench_ppo(args.ppo_steps, args.ppo_seeds, args.eval_episodes)
    if args.only in (None, "hnpg"):
        bench_hnpg(args.hnpg_horizons, args.hnpg_seeds, args.hnpg_iterations)


if __name__ == "__main__":
    main()
