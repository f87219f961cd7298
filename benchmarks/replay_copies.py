"""Does an online step cost O(replay capacity)? SAC's online loop with XLA's CPU copy insertion as the project
sets it and as XLA's default, in one process: ``python -m benchmarks.replay_copies``.

Every online step of an off-policy agent writes one row into its replay buffer and gathers a batch from it.
Both happen on arrays carried by the training loop, and XLA's default CPU copy insertion cannot always prove
that the reads come before the in-place write, so it copies the buffer (or some of its fields) every step.
``hybrid_rl/xla_flags.py`` turns on ``--xla_cpu_copy_insertion_use_region_analysis``, which removes those copies.
This script measures what that is worth. Per env and capacity, it compiles one program, a ``lax.scan`` over
``--iterations`` of SAC's online iteration (2x256, batch 256, one update per env step, the state vmapped over
``--seeds``), twice:

* ``region`` with the flag on (the project's setting);
* ``default`` with it off, through ``compiler_options`` (XLA's own default).

It fills the buffer's first ``--warmup`` rows with the random warm-up phase, then times both programs A/B
alternated (the order flips every repeat). The table gives the min and median time per iteration, and the
number of buffer-sized ``copy`` instructions XLA left inside loop bodies of each optimized program
(``loop_copies``). The same seeds and state go into both, and the outputs are checked to be bit-identical,
because copies never change values. The state is not donated, so each call also copies it once on entry;
over ``--iterations`` steps that cost is small. MuJoCo Hopper (obs 11, action 3) is measured too where the
``mujoco`` extra is installed.

    python -m benchmarks.replay_copies                              # pendulum (+ mujoco_hopper), 100k and 1M
    python -m benchmarks.replay_copies --tiny                       # seconds: checks the harness
    python -m benchmarks.replay_copies --envs pendulum --capacities 20000,1000000 --repeats 5
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re

import jax
import numpy as np

from benchmarks._measure import Summary, load_average, measure, os_thread_count
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.xla_flags import XLA_DEFAULT_COPY_INSERTION

_COMPUTATION_HEAD = re.compile(r"\n(?=(?:ENTRY )?%[\w.\-]+ \(.*\) -> .* \{)")
_COPY = re.compile(r" = (\S+) copy\(")


def loop_copies(optimized_hlo: str, size: int) -> int:
    """``copy`` instructions inside loop bodies (every computation but the entry and fused ones) whose result has
    a dimension of ``size``: with ``size`` a replay capacity, the buffer copies a program pays every step."""
    dim = re.compile(rf"[\[,]{size}[\],]")
    count = 0
    for computation in _COMPUTATION_HEAD.split(optimized_hlo):
        head = computation.split("\n", 1)[0]
        if head.startswith(("ENTRY", "HloModule")) or "fused_computation" in head:
            continue
        for line in computation.split("\n"):
            match = _COPY.search(line)
            if match and dim.search(match.group(1)):
                count += 1
    return count


def sac_online_programs(env: str, capacity: int, hidden: int, seeds: int, warmup: int, iterations: int):
    """SAC on ``env`` with a ``capacity``-row buffer, warmed up: returns (state, {setting: compiled program})."""
    spec = get_algorithm("sac")
    config = spec.config_cls(total_steps=capacity, buffer_size=capacity, warmup_steps=warmup,
                             hidden_sizes=(hidden, hidden))
    problem = build_problem(env)
    agent = spec.make(config, problem)
    warmup_phase, online = agent.phases
    keys = jax.random.split(jax.random.key(0), seeds)
    hp = default_hparams(spec, config)

    def warm(key):
        state = agent.init(key, hp)
        return jax.lax.scan(lambda s, _: (warmup_phase.iteration(s)[0], None), state, None, length=warmup)[0]

    state = jax.jit(jax.vmap(warm))(keys)

    def train(states):
        step = lambda s, _: (online.iteration(s)[0], None)  # noqa: E731
        return jax.vmap(lambda s: jax.lax.scan(step, s, None, length=iterations)[0])(states)

    lowered = jax.jit(train).lower(state)
    return state, {"region": lowered.compile(), "default": lowered.compile(compiler_options=XLA_DEFAULT_COPY_INSERTION)}


def _plain(x) -> np.ndarray:
    """A state leaf as numbers (typed PRNG keys as their key data)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def measure_row(env: str, capacity: int, args) -> dict:
    state, programs = sac_online_programs(env, capacity, args.hidden, args.seeds, args.warmup, args.iterations)
    row = {"env": env, "capacity": capacity, "seeds": args.seeds, "iterations": args.iterations}
    outputs, samples = {}, {name: [] for name in programs}
    for name, program in programs.items():
        row[f"{name}_loop_copies"] = loop_copies(program.as_text(), capacity)
        outputs[name] = jax.block_until_ready(program(state))  # untimed first call
    for r in range(args.repeats):
        for name in (list(programs) if r % 2 == 0 else list(programs)[::-1]):
            sample, _ = measure(lambda p=programs[name]: jax.block_until_ready(p(state)))
            samples[name].append(sample)
    for name in programs:
        summary = Summary.of(samples[name])
        row[name] = {**summary.as_dict(), "ms_per_iteration_min": 1e3 * summary.min_s / args.iterations,
                     "ms_per_iteration_median": 1e3 * summary.median_s / args.iterations}
    row["bit_identical"] = all(np.array_equal(_plain(a), _plain(b)) for a, b in
                               zip(jax.tree.leaves(outputs["region"]), jax.tree.leaves(outputs["default"])))
    row["speedup_median"] = row["default"]["median_s"] / row["region"]["median_s"]
    return row


def markdown_table(rows: list[dict]) -> str:
    lines = ["| env | capacity | seeds | ms / iteration, region analysis (min / med) | ms / iteration, XLA default "
             "(min / med) | default / region | in-loop buffer copies region / default | bit-identical | load |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        g, d = r["region"], r["default"]
        load = f"{min(g['load_min'], d['load_min']):.1f}-{max(g['load_max'], d['load_max']):.1f}"
        lines.append(f"| {r['env']} | {r['capacity']:,} | {r['seeds']} | {g['ms_per_iteration_min']:.2f} / "
                     f"{g['ms_per_iteration_median']:.2f} | {d['ms_per_iteration_min']:.2f} / "
                     f"{d['ms_per_iteration_median']:.2f} | {r['speedup_median']:.2f} | {r['region_loop_copies']} / "
                     f"{r['default_loop_copies']} | {'yes' if r['bit_identical'] else 'NO'} | {load} |")
    return "\n".join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: checks the harness in seconds")
    ap.add_argument("--envs", default=None, help="comma-separated (default pendulum, plus mujoco_hopper if installed)")
    ap.add_argument("--capacities", default=None, help="comma-separated replay capacities (default 100000,1000000)")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=None, help="width of both hidden layers (default 256)")
    ap.add_argument("--warmup", type=int, default=None, help="random warm-up steps that fill the buffer (default 1000)")
    ap.add_argument("--iterations", type=int, default=None, help="online iterations per timed call (default 200)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args(argv)
    tiny = args.tiny
    default_envs = "pendulum" if tiny or importlib.util.find_spec("mujoco") is None else "pendulum,mujoco_hopper"
    args.envs = [e for e in (args.envs or default_envs).split(",") if e]
    args.capacities = [int(c) for c in (args.capacities or ("3000" if tiny else "100000,1000000")).split(",")]
    args.hidden = args.hidden or (32 if tiny else 256)
    args.warmup = args.warmup or (20 if tiny else 1000)
    args.iterations = args.iterations or (5 if tiny else 200)
    if tiny:
        args.repeats = 1
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    print(f"replay_copies: {jax.devices()[0].device_kind}, jax {jax.__version__}, load average {load_average():.1f}, "
          f"{os_thread_count()} threads; SAC {args.hidden}x{args.hidden}, {args.seeds} seed(s), {args.iterations} "
          f"online iterations per call after {args.warmup} warm-up steps", flush=True)
    rows = []
    for env in args.envs:
        for capacity in args.capacities:
            row = measure_row(env, capacity, args)
            print(f"  {env} capacity {capacity:,}: {row['region']['ms_per_iteration_median']:.2f} ms/iteration with "
                  f"region analysis, {row['default']['ms_per_iteration_median']:.2f} without; in-loop buffer copies "
                  f"{row['region_loop_copies']} / {row['default_loop_copies']}", flush=True)
            rows.append(row)
    print()
    print(markdown_table(rows))
    print("\nregion = --xla_cpu_copy_insertion_use_region_analysis=true (hybrid_rl/xla_flags.py); default = XLA's "
          f"own setting. Load average {load_average():.1f} at the end on a machine with the CPUs above.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
