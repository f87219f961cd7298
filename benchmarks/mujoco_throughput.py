"""MuJoCo env steps/s against a raw MuJoCo stepping loop, in the same run:
``pip install -e ".[mujoco]"`` then ``python -m benchmarks.mujoco_throughput``.

For each task and each number of rows N (1, 8, 64):

* ``raw``: C MuJoCo alone, N ``MjData`` stepped in a Python loop (``ctrl`` set, ``mj_step`` for the frame
  skip): no observation, reward, state copy or JAX. The floor of any Python-driven MuJoCo env.
* ``env``: ``envs.mujoco_envs.MujocoEnv`` as the algorithms use it: a jitted ``lax.scan`` of vmapped
  ``step`` calls (random actions, auto-reset, time limit), one host callback per step for all N rows, the
  state restored from and saved to the JAX env state every step. The host call steps its rows on up to
  ``HYBRID_RL_MUJOCO_THREADS`` threads (default: every CPU; at least 4 rows each); ``env 1 thread`` is the
  same program with one, like the raw loop.

Then the time of a 10-episode x 1000-step evaluation of hopper through ``hybrid_rl.evaluation`` (a fixed
random linear policy; the loop always runs 1000 steps), for 1 seed and for 8 vmapped seeds (80 rows).
Raw and env timings alternate, --repeats times, and the best of each is kept (the same row-steps at every
width). The load average is printed with the numbers: the machine is shared, so read ratios, not absolutes.
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


def env_program(env_name: str, rows: int, steps: int):
    """(timed call, first-call seconds): the env as the algorithms use it, compiled and called once."""
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
    calls = iter(range(2, 1 << 30))
    default_threads = env.host.threads

    def timed(threads: int = default_threads) -> float:
        env.host.threads = threads  # read by every host call
        t0 = time.perf_counter()
        jax.block_until_ready(rollout(state, jax.random.key(next(calls))))
        rate = rows * steps / (time.perf_counter() - t0)
        env.host.threads = default_threads
        return rate

    return timed, first


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
    parser.add_argument("--row-steps", type=int, default=12_800,
                        help="row-steps per timing (vectorised steps = this / rows, at least 200 and at most 3200)")
    parser.add_argument("--repeats", type=int, default=3, help="alternated timings of raw and env (the best of each is kept)")
    parser.add_argument("--no-eval", action="store_true")
    args = parser.parse_args(argv)
    from envs.mujoco_envs import env_name_for, host_threads

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  ({os.cpu_count()} CPUs); "
          f"env host threads {host_threads()} (HYBRID_RL_MUJOCO_THREADS), the raw loop one")
    print(f"{'task':<12} {'rows':>5} {'raw steps/s':>12} {'env steps/s':>12} {'env/raw':>8} {'env 1 thread':>12} "
          f"{'1 thr/raw':>8} {'first call s':>13}")
    for task in args.tasks.split(","):
        for rows in (int(r) for r in args.rows.split(",")):
            # The same number of row-steps at every width (within bounds): a 64-row timing of 25 steps was
            # short enough for the program's fixed costs and the machine's noise to halve the measured ratio.
            steps = min(3200, max(args.row_steps // rows, min(200, args.row_steps)))
            env_timed, first = env_program(env_name_for(task), rows, steps)
            raw = env = env_one = 0.0
            for _ in range(args.repeats):  # alternated, the best of each: the load drifts between timings
                raw = max(raw, raw_steps_per_s(task, "v4", rows, steps))
                env = max(env, env_timed())
                env_one = max(env_one, env_timed(threads=1))
            print(f"{task:<12} {rows:>5} {raw:>12.0f} {env:>12.0f} {env / raw:>8.2f} {env_one:>12.0f} "
                  f"{env_one / raw:>8.2f} {first:>13.1f}", flush=True)
    if not args.no_eval:
        for seeds in (1, 8):
            seconds, first = evaluation_seconds(seeds)
            print(f"hopper evaluation, 10 episodes x 1000 steps, {seeds} seed(s) ({10 * seeds} rows): "
                  f"{seconds:.2f} s (first call incl. compile {first:.1f} s)", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
