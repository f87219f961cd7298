"""The project against its speed anchors, in one process: ``python -m benchmarks.anchors``.

Four pairs, each timed A/B alternated (the order flips every repeat) at every seed count:

* ``ppo`` vs PureJaxRL's CartPole PPO (``benchmarks/anchors_impl/purejaxrl_ppo.py``, a reimplementation
  written here: PureJaxRL is not a package). Both: 4 envs x 128 steps, 4 epochs x 4 minibatches, lr 2.5e-4
  annealed, gamma 0.99, GAE 0.95, clip 0.2, 64x64 tanh; seeds vmapped in one program; no evaluation inside
  the timed program. Final return: the greedy policy's mean return over ``--eval-episodes`` CartPole
  episodes per seed, the same evaluator (``hybrid_rl.evaluation.evaluate_policy``) for both, outside timing.
* ``sac`` vs Rejax's SAC (the ``rejax`` package from PyPI, extra ``anchors``), Pendulum-v1, 1 env, 2x256,
  batch 256, lr 3e-4 for actor, critics and temperature, gamma 0.99, Polyak 0.005 every step, one update per
  env step after ``--sac-warmup`` steps, buffer = the whole run. Rejax 0.1.3 unpacks gymnax's pre-1.0
  5-tuple ``step``; gymnax 1.0 returns 6 values, so Rejax gets the env through ``FiveTupleEnv`` (done =
  terminated or truncated, which is what the 5-tuple's ``done`` was). Both programs end with one evaluation
  of 128 episodes (Rejax's own evaluation samples its policy; ours takes the mean action).
* ``iql`` vs Unifloral's IQL update (``benchmarks/anchors_impl/unifloral_offline.py``, a reimplementation:
  Unifloral is scripts, not a package), 2x256, batch 256, on a synthetic hopper-sized dataset
  (``--iql-size`` transitions, 11-d observations, 3-d actions) that both programs hold as a constant. The
  timed call is ``--iql-updates`` updates from the same initial states. Returns are not comparable on
  random data, so the row gives none.
* ``td3_bc`` vs Unifloral's TD3+BC update (the same module, a reimplementation), 2x256, batch 256, alpha 2.5,
  policy noise 0.2 clipped at 0.5, gamma 0.99, Polyak 0.005, lr 3e-4, on its own synthetic hopper-sized set
  (``--td3-bc-size`` transitions; the same array as ``iql``'s when the sizes are equal). The timed call is
  ``--td3-bc-updates`` updates from the same initial states, an update being one policy-delay cycle: two
  critic updates, one actor update, one Polyak step of the targets. That is Unifloral's ``train_step``
  (``num_critic_updates_per_step = 2``) and one iteration of ours (``policy_delay = 2``, ``num_steps`` = 2 x
  the updates, as ours counts critic updates), so both do equal numbers of critic and actor updates. No return.

Per contender and seed count it reports the min and median of the run wall time over ``--repeats`` calls of
the compiled program, the min and median of lower+compile time over ``--compile-repeats`` fresh traces, the
median CPU-seconds/wall-second (cores kept busy), the largest OS thread count of the process, and the load
average range seen before/after every measurement. Ratios are ours / anchor: below 1 means the project is
faster. The XLA flags in force are printed: both contenders run under the same ones (``hybrid_rl`` sets its
CPU flags on import), except that by default each anchor is compiled with XLA's own copy insertion
(``compiler_options``), as its users get it, where the project turns region analysis on
(``hybrid_rl/xla_flags.py``). Random numbers differ in how they are lowered, not in value: ``hybrid_rl`` lowers
Threefry as straight-line code on CPU (``hybrid_rl.threefry_cpu``), while the anchors are lowered with JAX's
own rolled loop, as their users run them; ``--anchor-lowering project`` gives the anchors the project's
lowering and copy insertion as well, for a code-for-code comparison.

    python -m benchmarks.anchors                      # full size (PPO 500k steps; minutes on a 2-core CPU)
    python -m benchmarks.anchors --tiny               # seconds: checks the harness, measures nothing useful
    python -m benchmarks.anchors --only ppo,iql,td3_bc --seeds 1,8 --json out.json --markdown out.md
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import sys
from typing import Any, Callable, ContextManager, Optional

import jax
import jax.numpy as jnp

from benchmarks._measure import Summary, load_average, measure, os_thread_count
from benchmarks.anchors_impl import purejaxrl_ppo, unifloral_offline
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl import threefry_cpu
from hybrid_rl.evaluation import evaluate_policy
from hybrid_rl.networks import MATMUL_DTYPES
from hybrid_rl.runner import init_one_by_one, make_chunk, make_seed_sweep
from hybrid_rl.xla_flags import XLA_DEFAULT_COPY_INSERTION

PAIRS = ("ppo", "sac", "iql", "td3_bc")


@dataclasses.dataclass(frozen=True)
class Sizes:
    seeds: tuple[int, ...] = (1, 8)
    repeats: int = 3
    compile_repeats: int = 2
    ppo_steps: int = 500_000
    sac_steps: int = 20_000
    sac_warmup: int = 1_000
    hidden: int = 256
    iql_size: int = 1_000_000
    iql_updates: int = 1_000
    td3_bc_size: int = 1_000_000
    td3_bc_updates: int = 1_000  # policy-delay cycles: 2 critic updates + 1 actor update each
    eval_episodes: int = 16
    # The project's side of sac, iql and td3_bc: "bfloat16" runs its Dense products on bfloat16 operands with
    # float32 accumulation (hybrid_rl/networks.py); the anchors stay float32, as they ship.
    matmul_dtype: str = "float32"


TINY = Sizes(seeds=(1, 2), repeats=1, compile_repeats=1, ppo_steps=1_024, sac_steps=300, sac_warmup=100, hidden=16,
             iql_size=2_000, iql_updates=20, td3_bc_size=2_000, td3_bc_updates=10, eval_episodes=2)


@dataclasses.dataclass
class Contender:
    """One side of a pair: ``build()`` returns a fresh (untraced) function to jit, called with ``args``;
    ``final_return(output)`` reads the mean final return over seeds from its output (None if meaningless)."""

    name: str
    build: Callable[[], Callable]
    args: tuple
    final_return: Callable[[Any], Optional[float]]
    # Context the program is lowered in: an anchor is lowered as its own users get it (JAX's rolled CPU
    # threefry), unless --anchor-lowering project gives it this project's lowering too.
    lowering: Callable[[], ContextManager] = contextlib.nullcontext
    # XLA options for this program's compile only: an anchor is compiled with XLA's default CPU copy insertion
    # (hybrid_rl's process-wide flag turns region analysis on), unless --anchor-lowering project.
    compiler_options: Optional[dict] = None


# ----------------------------------------------------------------------------------------------------
# PPO vs PureJaxRL
# ----------------------------------------------------------------------------------------------------


def _greedy_return(act, env, env_params, keys, episodes: int, max_steps: int) -> float:
    """Mean greedy return over seeds; ``act(seed_index_params, obs, key)`` is vmapped over the seed axis."""
    returns = jax.jit(jax.vmap(lambda p, k: evaluate_policy(lambda o, kk: act(p, o, kk), env, env_params, k,
                                                             episodes, max_steps)[0].mean()))
    return float(jnp.mean(returns(*keys)))


def ppo_pair(seeds: int, sizes: Sizes) -> tuple[Contender, Contender]:
    import gymnax

    spec = get_algorithm("ppo")
    config = spec.config_cls(total_steps=sizes.ppo_steps)
    problem = build_problem("cartpole")
    agent = spec.make(config, problem)
    hp = default_hparams(spec, config)
    keys = jax.random.split(jax.random.key(0), seeds)
    eval_keys = jax.random.split(jax.random.key(1), seeds)
    env, env_params = gymnax.make("CartPole-v1")

    def ours_return(out):
        states, _ = out
        act = lambda s, o, k: agent.policy(s, o, k, True)  # noqa: E731
        return _greedy_return(act, env, env_params, (states, eval_keys), sizes.eval_episodes, 500)

    ours = Contender("hybrid-rl ppo", lambda: make_seed_sweep(agent, problem, num_evals=1, eval_episodes=0),
                     (keys, hp), ours_return)

    anchor_config = purejaxrl_ppo.PPOConfig(total_timesteps=sizes.ppo_steps)
    raw_keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    greedy = purejaxrl_ppo.greedy_policy(anchor_config)

    def anchor_return(out):
        train_state, _ = out
        return _greedy_return(greedy, env, env_params, (train_state.params, eval_keys), sizes.eval_episodes, 500)

    anchor = Contender("PureJaxRL PPO (reimplementation)",
                       lambda: jax.vmap(purejaxrl_ppo.make_train(anchor_config)), (raw_keys,), anchor_return)
    return ours, anchor


# ----------------------------------------------------------------------------------------------------
# SAC vs Rejax
# ----------------------------------------------------------------------------------------------------


class FiveTupleEnv:
    """A gymnax >= 1.0 env seen through the pre-1.0 ``step`` signature Rejax 0.1.3 unpacks:
    ``(obs, state, reward, done, info)`` with ``done = terminated or truncated``. Everything else is the env's."""

    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        # Only called for names the adapter lacks; "_env" itself missing (a copy being built) must not recurse.
        if name == "_env":
            raise AttributeError(name)
        return getattr(self._env, name)

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward, jnp.logical_or(terminated, truncated), info


def rejax_missing() -> Optional[str]:
    try:
        import rejax  # noqa: F401
    except ImportError:
        return "rejax is not installed (pip install -e '.[anchors]')"
    return None


def sac_pair(seeds: int, sizes: Sizes) -> tuple[Contender, Contender]:
    import gymnax
    from rejax import SAC

    spec = get_algorithm("sac")
    hidden = (sizes.hidden, sizes.hidden)
    config = spec.config_cls(total_steps=sizes.sac_steps, warmup_steps=sizes.sac_warmup, hidden_sizes=hidden,
                             batch_size=256, utd=1, actor_lr=3e-4, critic_lr=3e-4, temp_lr=3e-4, gamma=0.99,
                             tau=0.005, init_temperature=1.0, matmul_dtype=sizes.matmul_dtype)
    problem = build_problem("pendulum")
    agent = spec.make(config, problem)
    hp = default_hparams(spec, config)
    keys = jax.random.split(jax.random.key(0), seeds)
    ours = Contender(_our_name("sac", sizes), lambda: make_seed_sweep(agent, problem, num_evals=1, eval_episodes=128),
                     (keys, hp), lambda out: float(jnp.mean(out[1][-1]["eval_return"][:, -1])))

    env, env_params = gymnax.make("Pendulum-v1")
    algo = SAC.create(env=FiveTupleEnv(env), env_params=env_params, num_envs=1, total_timesteps=sizes.sac_steps,
                      fill_buffer=sizes.sac_warmup, buffer_size=sizes.sac_steps, batch_size=256, learning_rate=3e-4,
                      gamma=0.99, polyak=0.995, target_update_freq=1, num_epochs=1, hidden_layer_sizes=hidden,
                      eval_freq=sizes.sac_steps, skip_initial_evaluation=True)
    raw_keys = jax.random.split(jax.random.PRNGKey(0), seeds)

    def anchor_return(out):
        _, (lengths, returns) = out  # (seeds, evaluations, 128 episodes)
        return float(jnp.mean(returns[:, -1]))

    anchor = Contender(f"Rejax {_version('rejax')} SAC (PyPI)", lambda: jax.vmap(algo.train), (raw_keys,),
                       anchor_return)
    return ours, anchor


# ----------------------------------------------------------------------------------------------------
# IQL vs Unifloral
# ----------------------------------------------------------------------------------------------------


def iql_pair(seeds: int, sizes: Sizes, data=None) -> tuple[Contender, Contender]:
    from benchmarks.offline_speed import hopper_sized_problem, synthetic_dataset

    data = synthetic_dataset(sizes.iql_size, 11, 3) if data is None else data
    problem = hopper_sized_problem(data)
    spec = get_algorithm("iql")
    hidden = (sizes.hidden, sizes.hidden)
    config = spec.config_cls(offline_steps=sizes.iql_updates, online_steps=0, hidden_sizes=hidden, batch_size=256,
                             matmul_dtype=sizes.matmul_dtype)
    agent = spec.make(config, problem)
    phase = [p for p in agent.phases if p.num_iterations > 0][0]
    ours = _our_offline_contender(_our_name("iql", sizes), spec, config, agent, problem, phase, seeds, sizes.iql_updates)

    anchor_config = unifloral_offline.IQLConfig(hidden=sizes.hidden, num_updates=sizes.iql_updates)
    anchor = _unifloral_contender("Unifloral IQL (reimplementation)", unifloral_offline.make_iql, anchor_config,
                                  data, seeds, sizes.iql_updates)
    return ours, anchor


def _our_name(algo: str, sizes: Sizes) -> str:
    return f"hybrid-rl {algo}" + ("" if sizes.matmul_dtype == "float32" else f" ({sizes.matmul_dtype} matmuls)")


def _our_offline_contender(name: str, spec, config, agent, problem, phase, seeds: int, updates: int) -> Contender:
    """The project's side of an offline pair: ``updates`` iterations of ``phase`` as one runner chunk per seed,
    seeds vmapped, from states initialised untimed (one seed at a time, as the runner does)."""
    hp = default_hparams(spec, config)
    keys = jax.random.split(jax.random.key(0), seeds)
    states = jax.jit(lambda ks: init_one_by_one(agent.init, ks, hp))(keys)
    return Contender(name, lambda: jax.vmap(make_chunk(agent, problem, phase, updates, 0)), (states, keys),
                     lambda out: None)


def _unifloral_contender(name: str, make, anchor_config, data, seeds: int, updates: int) -> Contender:
    """A Unifloral-style offline anchor: ``make(config, data)`` gives ``(init, train_step)``; the timed program
    is ``updates`` scanned ``train_step`` calls per seed, seeds vmapped, from states initialised untimed."""
    anchor_data = unifloral_offline.OfflineData(data.obs, data.action, data.reward, data.next_obs,
                                                data.terminated.astype(jnp.float32))
    init, train_step = make(anchor_config, anchor_data)
    raw_keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    agents = jax.jit(jax.vmap(init))(raw_keys)

    def anchor_program():
        def run(rng, agent_state):
            return jax.lax.scan(train_step, (rng, agent_state), None, updates)

        return jax.vmap(run)

    return Contender(name, anchor_program, (raw_keys, agents), lambda out: None)


# ----------------------------------------------------------------------------------------------------
# TD3+BC vs Unifloral
# ----------------------------------------------------------------------------------------------------


def td3_bc_pair(seeds: int, sizes: Sizes, data=None) -> tuple[Contender, Contender]:
    """``sizes.td3_bc_updates`` policy-delay cycles on each side. Unifloral's ``train_step`` is
    ``num_critic_updates_per_step`` (2) critic updates and one actor update; one iteration of ours is
    ``policy_delay`` critic updates and one actor update. With ``policy_delay`` set to Unifloral's count and
    ``num_steps`` (ours counts critic updates) = that count x the cycles, a chunk of ``td3_bc_updates``
    iterations and a scan of as many ``train_step`` calls do the same numbers of critic updates (2N), actor
    updates (N) and target Polyak steps (N)."""
    from benchmarks.offline_speed import hopper_sized_problem, synthetic_dataset

    data = synthetic_dataset(sizes.td3_bc_size, 11, 3) if data is None else data
    problem = hopper_sized_problem(data)
    spec = get_algorithm("td3_bc")
    hidden = (sizes.hidden, sizes.hidden)
    anchor_config = unifloral_offline.TD3BCConfig(hidden=sizes.hidden)
    delay = anchor_config.num_critic_updates_per_step
    config = spec.config_cls(num_steps=delay * sizes.td3_bc_updates, hidden_sizes=hidden,
                             batch_size=anchor_config.batch_size, actor_lr=anchor_config.lr,
                             critic_lr=anchor_config.lr, gamma=anchor_config.gamma,
                             tau=anchor_config.polyak_step_size, alpha=anchor_config.td3_alpha,
                             policy_noise=anchor_config.policy_noise, noise_clip=anchor_config.noise_clip,
                             policy_delay=delay, matmul_dtype=sizes.matmul_dtype)
    agent = spec.make(config, problem)
    (phase,) = agent.phases
    assert phase.num_iterations == sizes.td3_bc_updates and phase.grad_steps_per_iteration == delay
    ours = _our_offline_contender(_our_name("td3_bc", sizes), spec, config, agent, problem, phase, seeds,
                                  sizes.td3_bc_updates)

    anchor = _unifloral_contender("Unifloral TD3+BC (reimplementation)", unifloral_offline.make_td3_bc,
                                  anchor_config, data, seeds, sizes.td3_bc_updates)
    return ours, anchor


# ----------------------------------------------------------------------------------------------------
# Harness
# ----------------------------------------------------------------------------------------------------


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def build_pair(pair: str, seeds: int, sizes: Sizes, offline_data: dict) -> tuple[Contender, Contender]:
    """The (ours, anchor) contenders of ``pair`` at ``seeds`` seeds. ``offline_data`` caches the synthetic
    hopper-sized sets by size across calls: iql and td3_bc share one when their sizes agree."""
    if pair == "ppo":
        return ppo_pair(seeds, sizes)
    if pair == "sac":
        return sac_pair(seeds, sizes)
    size = sizes.iql_size if pair == "iql" else sizes.td3_bc_size
    if size not in offline_data:
        from benchmarks.offline_speed import synthetic_dataset

        offline_data[size] = synthetic_dataset(size, 11, 3)
    return (iql_pair if pair == "iql" else td3_bc_pair)(seeds, sizes, offline_data[size])


def add_size_flags(ap: argparse.ArgumentParser) -> None:
    """``--<field>`` for every integer field of ``Sizes`` (``--seeds`` is the caller's), and ``--matmul-dtype``."""
    for field in dataclasses.fields(Sizes):
        if field.name not in ("seeds", "matmul_dtype"):
            ap.add_argument("--" + field.name.replace("_", "-"), type=int, default=None)
    ap.add_argument("--matmul-dtype", choices=MATMUL_DTYPES, default=None,
                    help="the project's Dense products in sac, iql and td3_bc (default float32; the anchors are "
                         "always float32)")


def sizes_from_args(args: argparse.Namespace, base: Sizes) -> Sizes:
    """``base`` with the size flags that were given (``add_size_flags``) and ``--seeds`` (comma-separated)."""
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Sizes)
                 if f.name != "seeds" and getattr(args, f.name) is not None}
    if args.seeds:
        overrides["seeds"] = tuple(int(s) for s in args.seeds.split(","))
    return dataclasses.replace(base, **overrides)


def compare(pair: str, seeds: int, ours: Contender, anchor: Contender, sizes: Sizes, log=None) -> dict:
    """Compiles and runs both contenders alternately; returns one result row."""
    log = log or (lambda line: print(line, flush=True))
    contenders = (ours, anchor)
    compile_samples = {c.name: [] for c in contenders}
    run_samples = {c.name: [] for c in contenders}
    compiled, outputs = {}, {}
    for r in range(sizes.compile_repeats):
        for c in contenders if r % 2 == 0 else contenders[::-1]:
            fn = jax.jit(c.build())  # a fresh trace every repeat: the compile is measured, not a cache hit

            def lower_and_compile(fn=fn, c=c):
                with c.lowering():
                    lowered = fn.lower(*c.args)
                return lowered.compile(compiler_options=c.compiler_options)

            sample, compiled[c.name] = measure(lower_and_compile)
            compile_samples[c.name].append(sample)
            log(f"  {pair} x{seeds} compile {c.name}: {sample.wall_s:.2f} s (load {sample.load_before:.1f})")
    for c in contenders:  # one untimed call each: first-call costs (allocation, page faults) stay out
        jax.block_until_ready(compiled[c.name](*c.args))
    for r in range(sizes.repeats):
        for c in contenders if r % 2 == 0 else contenders[::-1]:
            exe = compiled[c.name]
            sample, outputs[c.name] = measure(lambda: jax.block_until_ready(exe(*c.args)))
            run_samples[c.name].append(sample)
            log(f"  {pair} x{seeds} run {c.name}: {sample.wall_s:.3f} s (load {sample.load_before:.1f}, "
                f"{sample.cores_busy:.2f} cores, {sample.threads} threads)")
    row = {"pair": pair, "seeds": seeds}
    for side, c in (("ours", ours), ("anchor", anchor)):
        row[side] = {
            "name": c.name,
            "run": Summary.of(run_samples[c.name]).as_dict(),
            "compile": Summary.of(compile_samples[c.name]).as_dict(),
            "final_return": c.final_return(outputs[c.name]),
        }
    row["run_ratio_median"] = row["ours"]["run"]["median_s"] / row["anchor"]["run"]["median_s"]
    row["run_ratio_min"] = row["ours"]["run"]["min_s"] / row["anchor"]["run"]["min_s"]
    row["compile_ratio_median"] = row["ours"]["compile"]["median_s"] / row["anchor"]["compile"]["median_s"]
    return row


def machine() -> dict:
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": f"{jax.devices()[0].device_kind} x{len(jax.devices())}",
        "jax": jax.__version__,
        "rejax": _version("rejax"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # A persistent cache turns the compile columns into cache reads; say so when one is on.
        "compilation_cache_dir": jax.config.jax_compilation_cache_dir or "",
        "load_average_start": load_average(),
        "python": sys.version.split()[0],
    }


def _fmt_return(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def markdown_table(rows: list[dict]) -> str:
    head = ("| pair | seeds | ours run s (min / med) | anchor run s (min / med) | ratio med (min) | "
            "ours compile s (min / med) | anchor compile s (min / med) | compile ratio | cores busy ours / anchor | "
            "threads ours / anchor | load range | final return ours / anchor |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        o, a = r["ours"], r["anchor"]
        lo = min(o["run"]["load_min"], a["run"]["load_min"], o["compile"]["load_min"], a["compile"]["load_min"])
        hi = max(o["run"]["load_max"], a["run"]["load_max"], o["compile"]["load_max"], a["compile"]["load_max"])
        lines.append(
            f"| {o['name'].removeprefix('hybrid-rl ')} vs {a['name']} | {r['seeds']} "
            f"| {o['run']['min_s']:.3f} / {o['run']['median_s']:.3f} | {a['run']['min_s']:.3f} / {a['run']['median_s']:.3f} "
            f"| {r['run_ratio_median']:.2f} ({r['run_ratio_min']:.2f}) "
            f"| {o['compile']['min_s']:.2f} / {o['compile']['median_s']:.2f} "
            f"| {a['compile']['min_s']:.2f} / {a['compile']['median_s']:.2f} | {r['compile_ratio_median']:.2f} "
            f"| {o['run']['cores_busy']:.2f} / {a['run']['cores_busy']:.2f} | {o['run']['threads']} / {a['run']['threads']} "
            f"| {lo:.1f}-{hi:.1f} | {_fmt_return(o['final_return'])} / {_fmt_return(a['final_return'])} |")
    return "\n".join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: checks the harness in seconds")
    ap.add_argument("--only", default=",".join(PAIRS), help=f"comma-separated pairs out of {','.join(PAIRS)}")
    ap.add_argument("--seeds", default=None, help="comma-separated seed counts (default 1,8; tiny 1,2)")
    add_size_flags(ap)
    ap.add_argument("--anchor-lowering", choices=("jax", "project"), default="jax",
                    help="how the anchors are lowered and compiled on CPU: 'jax' (JAX's own rolled threefry and "
                         "XLA's default copy insertion, as the anchors' users run them; default) or 'project' (this "
                         "project's unrolled threefry, hybrid_rl.threefry_cpu, and its region-based copy insertion, "
                         "hybrid_rl.xla_flags: a code-for-code comparison)")
    ap.add_argument("--json", default=None, help="write the rows and machine facts here")
    ap.add_argument("--markdown", default=None, help="write the table here")
    return ap.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    sizes = sizes_from_args(args, TINY if args.tiny else Sizes())
    pairs = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(pairs) - set(PAIRS))
    if unknown:
        raise SystemExit(f"unknown pair(s) {', '.join(unknown)}; choose from {', '.join(PAIRS)}")
    info = machine()
    info["threefry_cpu"] = {"ours": "unrolled" if threefry_cpu.INSTALLED else "jax (rolled)",
                            "anchors": args.anchor_lowering if threefry_cpu.INSTALLED else "jax (rolled)"}
    # As the anchors' users run them (default): JAX's rolled threefry and XLA's default copy insertion.
    as_users_run_them = args.anchor_lowering == "jax"
    info["anchor_compiler_options"] = XLA_DEFAULT_COPY_INSERTION if as_users_run_them else {}
    print(f"anchors: {info['date_utc']} UTC, {info['device']}, {info['cpu_count']} CPUs, jax {info['jax']}, "
          f"load average {info['load_average_start']:.1f}, {os_thread_count()} threads at start")
    print(f"XLA_FLAGS={info['xla_flags']!r} (in force for both contenders"
          + (", but the anchors compile with XLA's default copy insertion)" if as_users_run_them else ")"))
    print(f"threefry CPU lowering: ours {info['threefry_cpu']['ours']}, anchors {info['threefry_cpu']['anchors']}")
    if info["compilation_cache_dir"]:
        print(f"persistent compilation cache on ({info['compilation_cache_dir']}): compile times may be cache reads")
    print(f"sizes: {dataclasses.asdict(sizes)}")
    rows, skipped = [], []
    offline_data = {}
    for pair in pairs:
        if pair == "sac" and rejax_missing():
            skipped.append(f"sac: {rejax_missing()}")
            print(f"skipping sac: {rejax_missing()}")
            continue
        for seeds in sizes.seeds:
            ours, anchor = build_pair(pair, seeds, sizes, offline_data)
            if as_users_run_them:
                anchor = dataclasses.replace(anchor, lowering=threefry_cpu.jax_rolled_lowering,
                                             compiler_options=info["anchor_compiler_options"])
            rows.append(compare(pair, seeds, ours, anchor, sizes))
            _write(args, info, sizes, rows, skipped)  # after every row: a cut-short run keeps what it measured
    info["load_average_end"] = load_average()
    _write(args, info, sizes, rows, skipped)
    table = markdown_table(rows)
    print()
    print(table)
    print(f"\nratio = ours / anchor (below 1: the project is faster). Load average {info['load_average_start']:.1f} "
          f"at start, {info['load_average_end']:.1f} at end on {info['cpu_count']} CPUs.")
    for s in skipped:
        print("skipped " + s)
    return rows


def _write(args, info: dict, sizes: Sizes, rows: list[dict], skipped: list[str]) -> None:
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "sizes": dataclasses.asdict(sizes), "rows": rows, "skipped": skipped}, f,
                      indent=2, default=float)
    if args.markdown and rows:
        with open(args.markdown, "w") as f:
            f.write(markdown_table(rows) + "\n")


if __name__ == "__main__":
    main()
