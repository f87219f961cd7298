"""Where do MOORL with eta_meta = 1, K = 1 and the alternating-SAC ablation (figure F1's exactness check F1c)
first differ, bit for bit? ``python -m benchmarks.f1c_first_difference --env mujoco_hopper``.

Both programs are run as the runner runs them (the runner's initial states, then the online iteration scanned,
vmapped over seeds), on a random dataset of the env's shapes, and after every iteration a bit digest of
every state leaf is recorded: parameters, Adam moments, temperature, targets, replay buffer and env state.
The first iteration at which a leaf's digest differs is printed per seed, with the leaves that differ there.
``--repeat`` also runs MOORL's program a second time in the same process (determinism). Set ``XLA_FLAGS``
before the run to change code generation, e.g. ``--xla_cpu_max_isa=AVX`` (no fused multiply-adds):
paper_figures/README.md, "F1 on MuJoCo", has what this measured.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.runner import Runner, RunSettings
from hybrid_rl.types import Transition

PAIR = {"MOORL eta=1 K=1": dict(inner_steps=1, eta_meta=1.0),
        "alternating SAC": dict(inner_steps=1, meta_learning=False)}


def random_dataset(key, size: int, obs_dim: int, action_dim: int) -> Transition:
    k = jax.random.split(key, 4)
    return Transition(obs=jax.random.normal(k[0], (size, obs_dim)),
                      action=jax.random.uniform(k[1], (size, action_dim), minval=-1.0, maxval=1.0),
                      reward=jax.random.normal(k[2], (size,)), next_obs=jax.random.normal(k[3], (size, obs_dim)),
                      terminated=jnp.zeros((size,), bool), truncated=jnp.zeros((size,), bool))


def bit_digest(x) -> jax.Array:
    """A uint32 digest of an array's bit pattern: changes when any element changes in any bit."""
    x = jnp.asarray(x)
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_ or x.dtype.itemsize != 4:
        x = x.astype(jnp.uint32) if x.dtype == jnp.bool_ else x.astype(jnp.float32)
    words = jax.lax.bitcast_convert_type(x, jnp.uint32).ravel()
    position = jnp.arange(words.size, dtype=jnp.uint32)
    return jnp.sum((words * jnp.uint32(2654435761)) ^ (position * jnp.uint32(40503)))


def digests(label: str, problem, args) -> dict:
    """(seeds, iterations) digests of every state leaf except hparams (the two configs' eta_meta differ)."""
    spec = get_algorithm("moorl")
    config = spec.config_cls(total_steps=args.iterations, hidden_sizes=(args.hidden, args.hidden),
                             batch_size=args.batch, **PAIR[label])
    agent = spec.make(config, problem)
    (phase,) = agent.phases
    # The runner's own initial states (its seed keys, one (hyper-parameter point, seed) at a time): leading axes
    # (1, seeds), as in a figure run.
    runner = Runner(agent, problem, default_hparams(spec, config),
                    RunSettings(num_seeds=args.seeds, seed=args.seed, num_evals=1, eval_episodes=0, progress=False,
                                checkpoint=False), log_fn=lambda _: None)
    state = runner.init_state()

    def record(s):
        return jax.tree.map(bit_digest, s.replace(hparams={}))

    def run(s):
        return jax.lax.scan(lambda c, _: (lambda n: (n, record(n)))(phase.iteration(c)[0]), s, None,
                            length=args.iterations)[1]

    out = jax.device_get(jax.jit(jax.vmap(jax.vmap(run)))(state))
    return {jax.tree_util.keystr(path): np.asarray(leaf)[0] for path, leaf in jax.tree_util.tree_leaves_with_path(out)}


def first_differences(a: dict, b: dict) -> list[tuple[int, list[str]]]:
    """Per seed: (first iteration where some leaf differs, those leaves), or (-1, []) if none does."""
    seeds, iterations = next(iter(a.values())).shape
    result = []
    for s in range(seeds):
        first = {name: int(np.flatnonzero(a[name][s] != b[name][s])[0]) for name in a
                 if np.any(a[name][s] != b[name][s])}
        if not first:
            result.append((-1, []))
            continue
        it = min(first.values())
        result.append((it, sorted(name for name, i in first.items() if i == it)))
    return result


def report(title: str, diffs, iterations: int) -> None:
    print(title)
    for seed, (it, leaves) in enumerate(diffs):
        if it < 0:
            print(f"  seed {seed}: bit-identical for {iterations} iterations")
        else:
            shown = ", ".join(leaves[:6]) + (f" (+{len(leaves) - 6} more)" if len(leaves) > 6 else "")
            print(f"  seed {seed}: first differs after iteration {it}: {shown}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="mujoco_hopper")
    parser.add_argument("--seeds", type=int, default=4, help="vmapped seeds (the F1c figure runs 4)")
    parser.add_argument("--iterations", type=int, default=300, help="online iterations (one env step each)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dataset-size", type=int, default=2_000)
    parser.add_argument("--episode-steps", type=int, default=None, help="episode length cap (default: the env's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", action="store_true", help="run MOORL's program twice (determinism check)")
    parser.add_argument("--tiny", action="store_true", help="smoke size: pendulum, 2 seeds, 5 iterations, 2x16")
    args = parser.parse_args(argv)
    if args.tiny:
        args.env, args.seeds, args.iterations, args.hidden, args.batch, args.dataset_size = "pendulum", 2, 5, 16, 8, 64
    env_kwargs = {"max_steps_in_episode": args.episode_steps} if args.episode_steps else {}
    probe = build_problem(args.env, env_kwargs)
    data = random_dataset(jax.random.key(args.seed), args.dataset_size, probe.obs_dim, probe.action_dim)
    problem = build_problem(args.env, env_kwargs, dataset=data)
    print(f"{args.env}: {args.seeds} seeds, {args.iterations} iterations, {args.hidden}x{args.hidden}, batch "
          f"{args.batch}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load average {os.getloadavg()}")
    moorl, alternating = (digests(label, problem, args) for label in PAIR)
    if args.repeat:
        report("MOORL eta=1 K=1, run twice in one process:", first_differences(moorl, digests(
            "MOORL eta=1 K=1", problem, args)), args.iterations)
    report("MOORL eta=1 K=1 vs alternating SAC:", first_differences(moorl, alternating), args.iterations)


if __name__ == "__main__":
    main()
