"""Time for N vmapped seeds vs 1 seed, in one compiled program: ``python -m benchmarks.seed_scaling``.

For each seed count it builds the algorithm's pure seed sweep (``hybrid_rl.runner.make_seed_sweep``: seeds
initialised one at a time, trained vmapped), jits it, and reports compile time and steady run time (best of ``--repeats``), the
env steps per second summed over seeds, and the ratio time(N seeds) / time(1 seed): well under N means
vmapping seeds is paying off.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from typing import Optional

import jax

from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.runner import make_seed_sweep


def config_overrides(spec, total_steps: int, warmup_steps: int, hidden: Optional[int]) -> dict:
    """The settings this script varies, limited to the fields ``spec``'s config has (PPO has no warm-up, and
    the budget field is the one the algorithm declares)."""
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    wanted = {spec.budget.field: total_steps}
    if hidden is not None:
        wanted["hidden_sizes"] = (hidden, hidden)
    if spec.budget.warmup_field:
        wanted[spec.budget.warmup_field] = warmup_steps
    return {k: v for k, v in wanted.items() if k in fields}


def measure(algo: str, env: str, seeds: int, overrides: dict, repeats: int, num_evals: int):
    spec = get_algorithm(algo)
    config = spec.config_cls(**overrides)
    problem = build_problem(env)
    agent = spec.make(config, problem)
    train = jax.jit(make_seed_sweep(agent, problem, num_evals=num_evals, eval_episodes=5))
    keys = jax.random.split(jax.random.key(0), seeds)
    hp = default_hparams(spec, config)
    t0 = time.perf_counter()
    compiled = train.lower(keys, hp).compile()
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(keys, hp))
        best = min(best, time.perf_counter() - t0)
    steps = sum(p.num_iterations * p.env_steps_per_iteration for p in agent.phases)
    return compile_s, best, steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="sac")
    parser.add_argument("--env", default="pendulum")
    parser.add_argument("--seeds", default="1,8", help="comma-separated seed counts")
    parser.add_argument("--total-steps", type=int, default=10_000)
    parser.add_argument("--warmup-steps", type=int, default=1_000)
    parser.add_argument("--hidden", type=int, default=None, help="width of the 2 hidden layers (default: the algorithm's)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="300 steps (100 warm-up), 16-wide nets, 1 and 2 seeds")
    args = parser.parse_args(argv)
    if args.tiny:
        args.total_steps, args.warmup_steps, args.hidden, args.seeds, args.repeats = 300, 100, 16, "1,2", 1
    spec = get_algorithm(args.algo)
    overrides = config_overrides(spec, args.total_steps, args.warmup_steps, args.hidden)
    config = spec.config_cls(**overrides)
    print(f"{args.algo} on {args.env}, {args.total_steps} env steps per seed, {getattr(config, 'hidden_sizes', '?')} nets, "
          f"device: {jax.devices()[0].device_kind} x{len(jax.devices())}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'seeds':>5} {'compile s':>10} {'run s':>8} {'env steps/s (all seeds)':>24} {'time / time(1 seed)':>20}")
    base = None
    for n in [int(s) for s in args.seeds.split(",")]:
        compile_s, run_s, steps = measure(args.algo, args.env, n, overrides, args.repeats, num_evals=5)
        base = base or run_s
        print(f"{n:>5} {compile_s:>10.1f} {run_s:>8.2f} {n * steps / run_s:>24,.0f} {run_s / base:>20.2f}")


if __name__ == "__main__":
    main()
