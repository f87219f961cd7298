"""Brax locomotion steps/s: ``pip install -e ".[brax]"`` then ``python -m benchmarks.brax_throughput``.

Decides whether Brax's hopper/halfcheetah/walker2d are usable online envs here (the bar:
> 20k vmapped steps/s). For each env and physics backend, two rows: ``raw`` is Brax's own ``env.step``
(a jitted ``lax.scan`` of 100 vmapped steps with random actions, no auto-reset), ``wrapper`` is
``envs.brax_envs.BraxEnv`` through gymnax's ``step`` (traced gravity/friction, auto-reset, time limit;
``benchmarks.env_throughput.measure``). Each: the first call's time (compile + run, or compile only for
the wrapper) and the steady steps/s (best of 3).
"""

from __future__ import annotations

import argparse
import time

import jax


def measure(env_name: str, backend: str, num_envs: int, steps: int = 100):
    from brax import envs as brax_envs

    env = brax_envs.get_environment(env_name, backend=backend)
    reset = jax.jit(jax.vmap(env.reset))

    @jax.jit
    def rollout(state, key):
        def step(state, k):
            action = jax.random.uniform(k, (num_envs, env.action_size), minval=-1.0, maxval=1.0)
            return jax.vmap(env.step)(state, action), None

        state, _ = jax.lax.scan(step, state, jax.random.split(key, steps))
        return state

    state = reset(jax.random.split(jax.random.key(0), num_envs))
    t0 = time.perf_counter()
    jax.block_until_ready(rollout(state, jax.random.key(1)).obs)
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for i in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(rollout(state, jax.random.key(2 + i)).obs)
        best = min(best, time.perf_counter() - t0)
    return compile_s, num_envs * steps / best


def measure_wrapper(env_name: str, backend: str, num_envs: int, steps: int = 100):
    from benchmarks.env_throughput import measure as measure_env
    from envs.brax_envs import BraxEnv

    env = BraxEnv(env_name, backend)
    compile_s, _, rate = measure_env(env, env.default_params, num_envs, steps, repeats=3)
    return compile_s, rate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", nargs="+", default=["hopper", "halfcheetah", "walker2d"])
    ap.add_argument("--backends", nargs="+", default=["positional", "generalized"])
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--rows", nargs="+", default=["raw", "wrapper"], choices=["raw", "wrapper"])
    ap.add_argument("--steps", type=int, default=100, help="vmapped steps per timed call")
    ap.add_argument("--tiny", action="store_true", help="hopper, positional backend, 2 envs x 5 steps")
    args = ap.parse_args(argv)
    if args.tiny:
        args.envs, args.backends, args.num_envs, args.steps = ["hopper"], ["positional"], 2, 5
    print(f"device: {jax.devices()[0].device_kind} x{len(jax.devices())}, {args.num_envs} envs x {args.steps} steps")
    print(f"{'env':<12} {'backend':<12} {'row':<8} {'first call s':>12} {'steps/s':>10}")
    for name in args.envs:
        for backend in args.backends:
            for row in args.rows:
                compile_s, rate = (measure if row == "raw" else measure_wrapper)(name, backend, args.num_envs, args.steps)
                print(f"{name:<12} {backend:<12} {row:<8} {compile_s:>12.1f} {rate:>10,.0f}", flush=True)


if __name__ == "__main__":
    main()
