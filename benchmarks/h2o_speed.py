"""Updates per second of H2O vs SAC at batch 256: ``python -m benchmarks.h2o_speed``.

Both run their online iteration (one env step, then one update; H2O's update also takes one step of its two
discriminators and scores 10 noisy next states per sim transition) under ``lax.scan``, ``vmap``ped over seeds,
in one jitted program. The ratio time(H2O) / time(SAC) is the price of the dynamics weighting. The env is
``pendulum_gravity_2x`` (SAC steps the real pendulum, H2O the g x2 sim); H2O's real data is 10k transitions
of the scripted expert with 50% random actions (its contents do not change the cost).

Measured (2026-11-25, ``--iterations 200 --repeats 2`` on CPU, ``--iterations 1000 --repeats 3`` on GPU):

    device                    seeds  SAC updates/s (all seeds)  H2O updates/s (all seeds)  H2O time / SAC time
    2-core CPU (idle machine)     1                        491                        227                 2.16
    2-core CPU (idle machine)     8                        516                        224                 2.30
    H100 (jax 0.11.2, CUDA 13)    1                      6,258                      3,358                 1.86
    H100                          8                     33,508                     16,437                 2.04
    H100                         32                     64,074                     29,057                 2.21
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax

from algorithms import h2o, sac
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.runner import init_one_by_one


def real_data_file(directory: str, size: int = 10_000) -> str:
    import jax.numpy as jnp

    from envs.scripted_experts import pendulum_expert
    from hybrid_rl.datasets import write_d4rl_hdf5
    from hybrid_rl.datasets.rollout import rollout_d4rl

    def act(obs, key):
        k_coin, k_u = jax.random.split(key)
        random = jax.random.uniform(k_u, (1,), minval=-2.0, maxval=2.0)
        return jnp.where(jax.random.uniform(k_coin) < 0.5, random, pendulum_expert(obs))

    data = rollout_d4rl(build_problem("pendulum_gravity_2x"), act, jax.random.key(0), size, num_envs=10)
    return str(write_d4rl_hdf5(f"{directory}/real.hdf5", data, {"ref_min_return": -1200.0, "ref_max_return": -150.0}))


def measure(name: str, config, problem, seeds: int, iterations: int, repeats: int):
    """(compile seconds, best run seconds) for ``iterations`` updates of ``seeds`` vmapped seeds."""
    spec = get_algorithm(name)
    agent = spec.make(config, problem)
    phase = agent.phases[-1]
    hparams = default_hparams(spec, config)
    keys = jax.random.split(jax.random.key(0), seeds)
    # Seeds one at a time (init_one_by_one): the jaxlib CPU deadlock in vmapped orthogonal initialisers.
    state = jax.jit(lambda ks: init_one_by_one(agent.init, ks, hparams))(keys)

    def run(state):
        return jax.lax.scan(lambda s, _: phase.iteration(s), state, None, length=iterations)[0]

    t0 = time.perf_counter()
    program = jax.jit(jax.vmap(run)).lower(state).compile()
    compile_s = time.perf_counter() - t0
    state = jax.block_until_ready(program(state))  # warm-up call (buffers filled a little)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        state = jax.block_until_ready(program(state))
        best = min(best, time.perf_counter() - t0)
    return compile_s, best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,8", help="comma-separated seed counts")
    parser.add_argument("--iterations", type=int, default=500, help="updates per timed call")
    parser.add_argument("--hidden", type=int, default=256, help="width of the 2-layer actor, critic and discriminators")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="1 seed, 10 updates, 16-wide nets, batch 32")
    args = parser.parse_args(argv)
    if args.tiny:
        args.seeds, args.iterations, args.hidden, args.batch, args.repeats = "1", 10, 16, 32, 1
    hidden = (args.hidden, args.hidden)
    steps = 10 * args.iterations * (args.repeats + 1)
    with tempfile.TemporaryDirectory() as tmp:
        problem = build_problem("pendulum_gravity_2x", dataset=real_data_file(tmp))
        configs = {
            "sac": sac.Config(total_steps=steps, warmup_steps=0, hidden_sizes=hidden, batch_size=args.batch),
            "h2o": h2o.Config(total_steps=steps, hidden_sizes=hidden, disc_hidden_sizes=hidden, batch_size=args.batch,
                              disc_batch_size=args.batch),
        }
        device = jax.devices()[0]
        print(f"H2O vs SAC, batch {args.batch}, {args.hidden}x{args.hidden} nets, {args.iterations} updates per call, "
              f"device: {device.platform} ({device.device_kind}) x{len(jax.devices())}")
        print(f"{'seeds':>5} {'algo':>5} {'compile s':>10} {'updates/s (per seed)':>21} {'updates/s (all seeds)':>22} "
              f"{'time / SAC time':>16}")
        for n in [int(s) for s in args.seeds.split(",")]:
            base = None
            for name, config in configs.items():
                compile_s, run_s = measure(name, config, problem, n, args.iterations, args.repeats)
                base = base or run_s
                per_seed = args.iterations / run_s
                print(f"{n:>5} {name:>5} {compile_s:>10.1f} {per_seed:>21,.0f} {n * per_seed:>22,.0f} "
                      f"{run_s / base:>16.2f}", flush=True)


if __name__ == "__main__":
    main()
