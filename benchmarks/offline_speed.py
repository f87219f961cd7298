"""Offline update speed of IQL and the per-env-step cost of MOORL vs SAC: ``python -m benchmarks.offline_speed``.

1. IQL offline updates/s on a synthetic hopper-sized dataset (default 1M transitions, 11-d observations,
   3-d actions; 2x256 networks, batch 256), for 1 and 8 vmapped seeds that share the one dataset (it is a
   constant of the compiled program, never copied per seed). Updates/s counts updates of one seed; the
   8-seed row also gives the total over seeds. Beside each row, in the same run and alternated with it, the
   same numbers for Unifloral's IQL update (``benchmarks/anchors_impl/unifloral_offline.py``, a faithful
   reimplementation written here) on the same dataset; ``--skip-anchor`` leaves it out.
2. MOORL's cost per env step as a ratio to SAC's (both 2x256, batch 256, UTD 1 for SAC; MOORL with K inner
   updates), on Pendulum with a small offline set, one seed, steady state (compile excluded).

Measured on the idle 2-core CPU (2026-11-25, defaults): IQL on the 1M set, 1 seed 277 updates/s; 8 seeds
61 updates/s per seed, 492 in all (seeds are initialised one at a time, ``hybrid_rl.runner.init_one_by_one``,
because a vmapped initialisation can deadlock jaxlib on CPU: docs/known_issues.md). Under load (average 4-13)
the 1-seed row gave 156-191 updates/s, and the dataset's size does not matter (161 on a 1k set). MOORL (K=2,
plain critic) / SAC (UTD 1) per env step: 3.87 / 2.04 ms = 1.90 (K inner updates plus the meta-step, against
one update); 1.23 in a run under load.

Idle CPU, 2026-11-26: IQL 470 updates/s (1 seed, 100k set).
Per env step: SAC 2.01 ms, SAC with a LayerNorm critic 4.42, MOORL K=2 with LayerNorm 9.45 (13.2 in one
noisier run), MOORL K=2 plain 4.0-4.2: MOORL / SAC is 2.0 at equal critics and 4.7 against plain SAC. On
this CPU LayerNorm about doubles an update's cost (XLA CPU's normalisation reductions; a bare 2-critic
forward+backward goes 0.75 -> 1.17 ms), a cost RLPD pays too.

The dataset's env is irrelevant offline (IQL with online_steps=0 never steps it); a Pendulum problem is
re-shaped to 11-d observations and 3-d actions to carry the synthetic data.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.runner import init_one_by_one, make_chunk
from hybrid_rl.types import Transition


def synthetic_dataset(n: int, obs_dim: int, action_dim: int, episode_length: int = 1000) -> Transition:
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((n, obs_dim), dtype=np.float32)
    ends = (np.arange(n) % episode_length) == episode_length - 1
    return Transition(
        obs=jnp.asarray(obs), action=jnp.asarray(rng.uniform(-1, 1, (n, action_dim)).astype(np.float32)),
        reward=jnp.asarray(rng.standard_normal(n, dtype=np.float32)),
        next_obs=jnp.asarray(np.roll(obs, -1, axis=0)), terminated=jnp.zeros(n, bool), truncated=jnp.asarray(ends),
    )


def hopper_sized_problem(data: Transition):
    """A Pendulum problem re-shaped to carry a dataset of 11-d observations and 3-d actions (offline only)."""
    base = build_problem("pendulum")
    obs_dim, action_dim = data.obs.shape[-1], data.action.shape[-1]
    return dataclasses.replace(base, obs_shape=(obs_dim,), action_dim=action_dim,
                               action_low=-np.ones(action_dim, np.float32), action_high=np.ones(action_dim, np.float32),
                               dataset=data, dataset_info={})


def time_anchor_iql(data: Transition, hidden: int, seeds: int, chunk: int, repeats: int):
    """(compile seconds, best seconds per chunk) of the Unifloral IQL reimplementation, ``seeds`` vmapped."""
    from benchmarks.anchors_impl import unifloral_offline

    anchor_data = unifloral_offline.OfflineData(data.obs, data.action, data.reward, data.next_obs,
                                                data.terminated.astype(jnp.float32))
    init, train_step = unifloral_offline.make_iql(unifloral_offline.IQLConfig(hidden=hidden), anchor_data)
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    agents = jax.jit(jax.vmap(init))(keys)
    run = jax.jit(jax.vmap(lambda rng, agent: jax.lax.scan(train_step, (rng, agent), None, chunk)[0]))
    t0 = time.perf_counter()
    compiled = run.lower(keys, agents).compile()
    compile_s = time.perf_counter() - t0
    keys, agents = compiled(keys, agents)  # warm
    jax.block_until_ready(agents)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        keys, agents = compiled(keys, agents)
        jax.block_until_ready(agents)
        best = min(best, time.perf_counter() - t0)
    return compile_s, best


def time_chunk(algo: str, config, problem, seeds: int, chunk: int, repeats: int):
    """(compile seconds, best seconds per chunk of ``chunk`` iterations) for ``seeds`` vmapped seeds."""
    spec = get_algorithm(algo)
    agent = spec.make(config, problem)
    phase = [p for p in agent.phases if p.num_iterations > 0][-1]
    run = jax.jit(jax.vmap(make_chunk(agent, problem, phase, chunk, 0)))
    keys = jax.random.split(jax.random.key(0), seeds)
    hp = default_hparams(spec, config)
    state = jax.jit(lambda ks: init_one_by_one(agent.init, ks, hp))(keys)
    t0 = time.perf_counter()
    compiled = run.lower(state, keys).compile()
    compile_s = time.perf_counter() - t0
    state, _ = compiled(state, keys)  # warm
    jax.block_until_ready(state)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, _ = compiled(state, keys)
        jax.block_until_ready(state)
        best = min(best, time.perf_counter() - t0)
    return compile_s, best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true",
                        help="2k transitions, 16-wide nets, chunks of 10: checks the script runs, measures nothing")
    parser.add_argument("--skip-anchor", action="store_true", help="leave out the Unifloral IQL rows")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--seeds", default="1,8")
    parser.add_argument("--chunk", type=int, default=500, help="updates per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--moorl-k", type=int, default=2)
    parser.add_argument("--skip-moorl", action="store_true")
    args = parser.parse_args(argv)
    if args.tiny:
        args.size, args.chunk, args.hidden, args.repeats, args.seeds = 2_000, 10, 16, 1, "1,2"
    hidden = (args.hidden, args.hidden)
    print(f"devices: {jax.devices()}, load average {os.getloadavg()[0]:.1f}")

    data = synthetic_dataset(args.size, 11, 3)
    problem = hopper_sized_problem(data)
    iql_config = get_algorithm("iql").config_cls(offline_steps=args.chunk, online_steps=0, hidden_sizes=hidden)
    print(f"\nIQL offline, {args.size:,} transitions (11-d obs, 3-d actions), {hidden} nets, batch 256")
    print(f"{'seeds':>5} {'program':>34} {'compile s':>10} {'s/chunk':>9} {'updates/s/seed':>15} {'updates/s total':>16}")
    for seeds in [int(s) for s in args.seeds.split(",")]:
        c, t = time_chunk("iql", iql_config, problem, seeds, args.chunk, args.repeats)
        per_seed = args.chunk / t
        print(f"{seeds:>5} {'hybrid-rl iql':>34} {c:>10.1f} {t:>9.3f} {per_seed:>15.0f} {per_seed * seeds:>16.0f}")
        if not args.skip_anchor:
            c_a, t_a = time_anchor_iql(data, args.hidden, seeds, args.chunk, args.repeats)
            per_seed = args.chunk / t_a
            print(f"{seeds:>5} {'Unifloral IQL (reimplementation)':>34} {c_a:>10.1f} {t_a:>9.3f} {per_seed:>15.0f} "
                  f"{per_seed * seeds:>16.0f}   time ratio ours/anchor {t / t_a:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")

    if args.skip_moorl:
        return
    small = build_problem("pendulum", dataset=synthetic_dataset(min(20_000, args.size), 3, 1, 200))
    print(f"\nCost per env step, Pendulum, 1 seed, {hidden} nets, batch 256")
    sac_config = get_algorithm("sac").config_cls(total_steps=10 * args.chunk, warmup_steps=args.chunk,
                                                 hidden_sizes=hidden)
    moorl_config = get_algorithm("moorl").config_cls(total_steps=10 * args.chunk, hidden_sizes=hidden,
                                                     inner_steps=args.moorl_k)
    _, t_sac = time_chunk("sac", sac_config, small, 1, args.chunk, args.repeats)
    _, t_sac_ln = time_chunk("sac", dataclasses.replace(sac_config, critic_layer_norm=True), small, 1, args.chunk,
                             args.repeats)
    _, t_moorl = time_chunk("moorl", moorl_config, small, 1, args.chunk, args.repeats)
    # MOORL's default critic has LayerNorm and SAC's has not: the plain-critic row separates that cost.
    plain = dataclasses.replace(moorl_config, critic_layer_norm=False)
    _, t_plain = time_chunk("moorl", plain, small, 1, args.chunk, args.repeats)
    print(f"SAC (UTD 1):                         {1e3 * t_sac / args.chunk:.3f} ms/env step")
    print(f"SAC (UTD 1, LayerNorm critic):       {1e3 * t_sac_ln / args.chunk:.3f} ms/env step")
    print(f"MOORL (K={args.moorl_k}, LayerNorm critic):      {1e3 * t_moorl / args.chunk:.3f} ms/env step  "
          f"ratio to SAC {t_moorl / t_sac:.2f}")
    print(f"MOORL (K={args.moorl_k}, plain critic as SAC's): {1e3 * t_plain / args.chunk:.3f} ms/env step  "
          f"ratio to SAC {t_plain / t_sac:.2f}")


if __name__ == "__main__":
    main()
