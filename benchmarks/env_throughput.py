"""Vmapped environment throughput for every registered env.

For each env (and each sim member of a sim/real pair): ``num_envs`` envs under ``jax.vmap``, a
``lax.scan`` of ``num_steps`` steps with uniformly random actions (``action_space.sample``) and gymnax's
auto-reset, the whole thing under one ``jax.jit``. Prints the compile time (lower + compile), the steady
time of one call (best of ``repeats``, after the compile) and steps/s = num_envs * num_steps / steady.

    python -m benchmarks.env_throughput                      # every env, 256 envs x 1000 steps
    python -m benchmarks.env_throughput --only comblock --num-envs 1024
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import envs


def make_rollout(env, num_envs: int, num_steps: int):
    def rollout(key, params):
        k_reset, k_run = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_envs), params)
        space = env.action_space(params)

        def body(carry, k):
            obs, state, total = carry
            k_act, k_step = jax.random.split(k)
            actions = jax.vmap(space.sample)(jax.random.split(k_act, num_envs))
            obs, state, reward, _, _, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_step, num_envs), state, actions, params
            )
            # Only a running sum leaves the loop: nothing of size num_steps is stacked.
            return (obs, state, total + reward.astype(jnp.float32)), None

        init = (obs, state, jnp.zeros(num_envs))
        (obs, _, total), _ = jax.lax.scan(body, init, jax.random.split(k_run, num_steps))
        # The result depends on the final observations too: an env whose reward is constant (MountainCar's
        # -1 per step) would otherwise let XLA drop the whole simulation as dead code.
        obs_sum = sum(jnp.sum(x.astype(jnp.float32)) for x in jax.tree.leaves(obs))
        return total.mean() + 0.0 * obs_sum

    return jax.jit(rollout)


def measure(env, params, num_envs: int, num_steps: int, repeats: int) -> tuple[float, float, float]:
    fn = make_rollout(env, num_envs, num_steps)
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    compiled = fn.lower(key, params).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(key, params))  # warm-up
    steady = float("inf")
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(jax.random.PRNGKey(i + 1), params))
        steady = min(steady, time.perf_counter() - t0)
    return compile_s, steady, num_envs * num_steps / steady


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--num-steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="substring filter on env names")
    parser.add_argument("--no-sim", action="store_true", help="skip the sim members of sim/real pairs")
    parser.add_argument("--tiny", action="store_true",
                        help="4 envs x 10 steps, one repeat, and only pendulum unless --only names others")
    parser.add_argument("--brax", action="store_true",
                        help="include the Brax envs (need the brax extra; see also benchmarks.brax_throughput)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.num_envs, args.num_steps, args.repeats, args.only = 4, 10, 1, args.only or "pendulum"

    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.devices()[0].device_kind}); "
          f"{args.num_envs} envs x {args.num_steps} steps, random actions, best of {args.repeats}")
    header = f"{'env':40s} {'kind':10s} {'compile s':>10s} {'steady s':>10s} {'steps/s':>12s}"
    print(header)
    print("-" * len(header))
    for name, spec in envs.list_envs().items():
        if args.only not in name or ("brax" in spec.tags and not args.brax):
            continue
        members = [("", spec.make)]
        if spec.make_sim is not None and not args.no_sim:
            members.append((" [sim]", spec.make_sim))
        for suffix, make in members:
            env, params = make()
            try:
                compile_s, steady, rate = measure(env, params, args.num_envs, args.num_steps, args.repeats)
            except Exception as err:  # a benchmark row must not hide the others; report and go on
                print(f"{name + suffix:40s} {spec.action_kind:10s} failed: {type(err).__name__}: {err}")
                continue
            print(f"{name + suffix:40s} {spec.action_kind:10s} {compile_s:10.2f} {steady:10.4f} {rate:12,.0f}",
                  flush=True)


if __name__ == "__main__":
    main()
