"""Speed of the finite-horizon theory baselines (docs/speed.md): UCBVI on the 5x5 grid world (H = 15) and
LSVI-UCB with one-hot features on the same grid world, env steps per second summed over 16 vmapped seeds.

    python -m benchmarks.theory_speed [--seeds 16] [--episodes 2000]

Reference (measured on this kind of 2-core machine): rlberry-scool 0.7.3 runs UCBVI at ~1.9k steps/s and
LSVI-UCB one-hot (d = 92, H = 15) at ~85 steps/s for one seed. Targets: >= 10x and >= 20x those, summed over 16
seeds. Our grid world has 25 states (no wall cells), so one-hot d = 100 (> 92: slightly more work per step).
The timing excludes compilation (one warm-up call with the same shapes); every step includes the exact
per-episode regret computation (two exact policy evaluations), which the reference does not do.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from algorithms import _tabular, lsvi_ucb, ucbvi
from experiments.catalog import build_problem, default_hparams, get_algorithm

REFERENCE = {"ucbvi": 1900.0, "lsvi_ucb": 85.0}
TARGET = {"ucbvi": 10.0, "lsvi_ucb": 20.0}


def steps_per_second(name, config, problem, seeds, episodes):
    spec = get_algorithm(name)
    if name == "lsvi_ucb":
        model = ucbvi.tabular_model(problem)
        phi = np.eye(model.S * model.A, dtype=np.float32).reshape(model.S, model.A, -1)
        agent = lsvi_ucb.make_agent(config, model, phi)
    else:
        agent = spec.make(config, problem)
    hp = default_hparams(spec, config)
    run = jax.jit(jax.vmap(lambda k: _tabular.learning_curve(agent, k, hp, episodes, "regret_increment")[1]))
    keys = jax.random.split(jax.random.key(0), seeds)
    jax.block_until_ready(run(keys))  # compile
    t = time.perf_counter()
    out = jax.block_until_ready(run(jax.random.split(jax.random.key(1), seeds)))
    dt = time.perf_counter() - t
    H = ucbvi.tabular_model(problem).H
    return seeds * episodes * H / dt, float(np.asarray(out)[:, -100:].mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--lsvi-episodes", type=int, default=500)
    parser.add_argument("--tiny", action="store_true", help="2 seeds, 5 episodes each: checks the script runs")
    args = parser.parse_args(argv)
    if args.tiny:
        args.seeds, args.episodes, args.lsvi_episodes = 2, 5, 5
    problem = build_problem("gridworld")
    print(f"devices: {jax.devices()}")
    for name, config, episodes in [
        ("ucbvi", ucbvi.Config(episodes=args.episodes), args.episodes),
        ("lsvi_ucb", lsvi_ucb.Config(episodes=args.lsvi_episodes, features="onehot"), args.lsvi_episodes),
    ]:
        sps, late_regret = steps_per_second(name, config, problem, args.seeds, episodes)
        ratio = sps / REFERENCE[name]
        verdict = "meets" if ratio >= TARGET[name] else "BELOW"
        print(f"{name:9s} {args.seeds} seeds x {episodes} episodes: {sps:,.0f} steps/s summed "
              f"= {ratio:.1f}x rlberry's {REFERENCE[name]:,.0f} (target {TARGET[name]:.0f}x: {verdict}); "
              f"mean regret/episode over the last 100 episodes {late_regret:.3f}")


if __name__ == "__main__":
    main()
