"""MuJoCo env steps/s against a raw MuJoCo stepping loop, in the same run:
``pip install -e ".[mujoco]"`` then ``python -m benchmarks.mujoco_throughput``.

For each task and each number of rows N (1, 8, 64):

* ``raw``: C MuJoCo alone, N ``MjData`` stepped in a Python loop (``ctrl`` set, ``mj_step`` for the frame
  skip): no observation, reward, state copy or JAX. The floor of any Python-driven MuJoCo env.
* ``env``: ``envs.mujoco_envs.MujocoEnv`` as the algorithms use it: a jitted ``lax.scan`` of vmapped
  ``step`` calls (random actions, auto-reset, time limit), one host callback per step for all N rows, the
  state restored from and saved to the JAX env state every step.

Then the time of a 10-episode x 1000-step evaluation of hopper through ``hybrid_rl.evaluation`` (a fixed
random linear policy; the loop always runs 1000 steps), for 1 seed and for 8 vmapped seeds (80 rows).
The load average is printed with the numbers: the machine is shared, so read ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np


def raw_steps_per_s(task: str, version: str, rows: int, steps: int) -> float:
    import mujoco

    from envs.mujoco_envs import TASKS, _assets_dir

    spec = TASKS[(task, version)]
    model = mujoco.MjModel.from_xml_path(str(_assets_dir() / spec.xml))
    datas = [mujoco.MjData(model) for _ in range(rows)]
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, rows, model.nu))
    t0 = time.perf_counter()
    for t in range(steps):
        for i, d in enumerate(datas):
            d.ctrl[:] = actions[t, i]
            mujoco.mj_step(model, d, nstep=spec.frame_skip)
    return rows * steps / (time.perf_counter() - t0)


def env_steps_per_s(env_name: str, rows: int, steps: int, repeats: int = 2) -> tuple[float, float]:
    from experiments.catalog import make_env

    env, params, _ = make_env(env_name)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), rows), params)

    @jax.jit
    def rollout(state, key):
        def body(state, k):
            k_act, k_env = jax.random.split(k)
            action = jax.random.uniform(k_act, (rows, env.action_size), minval=-1.0, maxval=1.0)
            _, state, reward, _, _, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_env, rows), state, action, params)
            return state, reward

        return jax.lax.scan(body, state, jax.random.split(key, steps))

    t0 = time.perf_counter()
    jax.block_until_ready(rollout(state, jax.random.key(1)))
    first = time.perf_counter() - t0
    best = float("inf")
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(rollout(state, jax.random.key(2 + i)))
        best = min(best, time.perf_counter() - t0)
    return rows * steps / best, first


def evaluation_seconds(seeds: int, episodes: int = 10, max_steps: int = 1000) -> tuple[float, float]:
    from experiments.catalog import make_env
    from hybrid_rl.evaluation import evaluate_policy

    env, params, _ = make_env("mujoco_hopper")
    weights = 0.3 * jax.random.normal(jax.random.key(3), (11, 3))

    def act(obs, key):
        return jnp.tanh(obs @ weights)

    run = jax.jit(jax.vmap(lambda k: evaluate_policy(act, env, params, k, episodes, max_steps)))
    keys = jax.random.split(jax.random.key(0), seeds)
    t0 = time.perf_counter()
    jax.block_until_ready(run(keys))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(run(jax.random.split(jax.random.key(1), seeds)))
    return time.perf_counter() - t0, first


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="hopper,walker2d,halfcheetah")
    parser.add_argument("--rows", default="1,8,64")
    parser.add_argument("--steps", type=int, default=200, help="vectorised steps per timing")
    parser.add_argument("--no-eval", action="store_true")
    args = parser.parse_args(argv)
    from envs.mujoco_envs import env_name_for

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  ({os.cpu_count()} CPUs)")
    print(f"{'task':<12} {'rows':>5} {'raw steps/s':>12} {'env steps/s':>12} {'env/raw':>8} {'first call s':>13}")
    for task in args.tasks.split(","):
        for rows in (int(r) for r in args.rows.split(",")):
            steps = max(20, args.steps // max(1, rows // 8))
            raw = raw_steps_per_s(task, "v4", rows, steps)
            env, first = env_steps_per_s(env_name_for(task), rows, steps)
            raw_after = raw_steps_per_s(task, "v4", rows, steps)  # bracket the env timing: load drifts
            raw = max(raw, raw_after)
            print(f"{task:<12} {rows:>5} {raw:>12.0f} {env:>12.0f} {env / raw:>8.2f} {first:>13.1f}", flush=True)
    if not args.no_eval:
        for seeds in (1, 8):
            seconds, first = evaluation_seconds(seeds)
            print(f"hopper evaluation, 10 episodes x 1000 steps, {seeds} seed(s) ({10 * seeds} rows): "
                  f"{seconds:.2f} s (first call incl. compile {first:.1f} s)", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
