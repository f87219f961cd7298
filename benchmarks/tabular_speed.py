"""Speed of the UCRL2 family (tabular, average reward): ``python -m benchmarks.tabular_speed``.

For each algorithm and seed count it jits ``vmap(regret_curve)`` over seeds (the pure program the figure script
runs: one scan over all steps, no host calls), and prints compile time, the best run time of ``--repeats``,
the wall time per 10^5 env steps of the whole seed batch, and env steps per second summed over seeds.
The machine is shared and noisy (about 40%); compare rows from one invocation only.
"""

from __future__ import annotations

import argparse
import time

import jax

from algorithms import _ucrl2
from experiments.catalog import build_problem, default_hparams, get_algorithm

ALGOS = ("ucrl2", "ucrl2_restarts", "oracle_ucrl2", "sw_ucrl2", "rbocpd_ucrl2")


def measure(algo: str, prob, steps: int, seeds: int, repeats: int):
    spec = get_algorithm(algo)
    config = spec.config_cls(total_steps=steps)
    agent = spec.make(config, prob)
    hp = default_hparams(spec, config)
    fn = jax.jit(jax.vmap(lambda k: _ucrl2.regret_curve(agent, k, hp, steps, stride=steps // 10)))
    keys = jax.random.split(jax.random.key(0), seeds)
    t0 = time.perf_counter()
    compiled = fn.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(keys))
        best = min(best, time.perf_counter() - t0)
    return compile_s, best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--env", default="riverswim_switching")
    parser.add_argument("--num-states", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per seed")
    parser.add_argument("--seeds", default="1,16", help="comma-separated seed counts")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="one algorithm, 200 steps, 1 seed")
    args = parser.parse_args(argv)
    if args.tiny:
        args.algos, args.steps, args.seeds, args.repeats = args.algos.split(",")[0], 200, "1", 1
    kwargs = {"num_states": args.num_states}
    if args.env == "riverswim_switching":
        kwargs["total_steps"] = args.steps
    prob = build_problem(args.env, kwargs)
    print(f"{args.env} (S={args.num_states}), {args.steps} steps per seed, device: {jax.devices()[0].device_kind}")
    print(f"{'algo':<16} {'seeds':>5} {'compile s':>10} {'run s':>8} {'s / 1e5 steps':>14} {'steps/s (all seeds)':>20}")
    for algo in args.algos.split(","):
        for n in [int(s) for s in args.seeds.split(",")]:
            compile_s, run_s = measure(algo, prob, args.steps, n, args.repeats)
            print(f"{algo:<16} {n:>5} {compile_s:>10.1f} {run_s:>8.2f} {run_s * 1e5 / args.steps:>14.2f} "
                  f"{n * args.steps / run_s:>20,.0f}", flush=True)


if __name__ == "__main__":
    main()
