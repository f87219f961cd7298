"""Runs an ``Agent``: phases scanned in chunks, vmapped over seeds and a hyper-parameter grid, seeds
sharded over ``jax.devices()``, with evaluation, metrics, checkpoints and exact resume between chunks.

Two entry points:

* ``make_train(agent, problem, ...)`` gives a pure ``train(key, hparams)`` for one seed that runs every
  phase to the end under ``lax.scan`` (no host calls); ``make_seed_sweep`` is the whole seed sweep as one
  program, as in PureJaxRL (``jax.vmap(train)`` too, but see ``init_one_by_one`` for why the sweep
  initialises seeds one at a time).
* ``run(...)`` is the same computation driven chunk by chunk from the host (Stoix's pattern): one jitted
  chunk of iterations plus an evaluation per call, and between calls it writes metrics.csv, shows the
  progress bar, checks for NaN and saves an orbax checkpoint from which a killed run resumes to the same
  numbers as an uninterrupted one.

Shapes: every leaf of the running state has leading axes (num_hparams, num_seeds). Hyper-parameter
points share their seeds (common random numbers), so differences between grid points are not seed noise.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import pathlib
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from hybrid_rl import distributed
from hybrid_rl.algorithm import Agent, Phase
from hybrid_rl.evaluation import evaluate_policy
from hybrid_rl.problem import Problem


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the metric, phase, iteration and seeds."""


@dataclasses.dataclass(frozen=True)
class PhasePlan:
    """How one phase is cut into chunks: ``num_chunks`` calls of ``chunk_length`` iterations each."""

    phase: Phase
    chunk_length: int
    num_chunks: int

    @property
    def num_iterations(self) -> int:
        return self.chunk_length * self.num_chunks


def plan_phases(agent: Agent, num_evals: int) -> list[PhasePlan]:
    """Cuts every phase into about ``num_evals`` equal chunks (an evaluation after each).

    A phase whose iteration count does not divide evenly is rounded *up* to whole chunks, so each phase
    compiles exactly one chunk program.
    """
    plans = []
    for phase in agent.phases:
        if phase.num_iterations <= 0:
            continue
        wanted = num_evals if phase.num_evals is None else phase.num_evals
        n = max(1, min(wanted, phase.num_iterations))
        length = math.ceil(phase.num_iterations / n)
        n = math.ceil(phase.num_iterations / length)
        plans.append(PhasePlan(phase, length, n))
    if not plans:
        raise ValueError("the algorithm has no phase with a positive number of iterations")
    return plans


def _is_loss(name: str) -> bool:
    return "loss" in name


def make_chunk(
    agent: Agent,
    problem: Problem,
    phase: Phase,
    chunk_length: int,
    eval_episodes: int,
    deterministic: bool = True,
) -> Callable[[Any, jax.Array], tuple[Any, dict]]:
    """``chunk(state, eval_key) -> (state, metrics)`` for ONE seed: ``chunk_length`` iterations, then an
    evaluation of ``eval_episodes`` episodes on the problem's (real) env. Training metrics are averaged
    over the chunk (NaN entries, e.g. "no episode ended this iteration", are ignored).

    ``deterministic`` is the evaluation protocol, passed to every ``agent.policy`` call: True (the default)
    evaluates each algorithm's deterministic policy (mean action, arg-max, greedy), False its sampled
    policy. A figure compares methods under one protocol."""

    train = _train_chunk(phase, chunk_length)
    evaluate = make_evaluation(agent, problem, eval_episodes, deterministic)

    def chunk(state, eval_key):
        state, metrics = train(state)
        return state, {**metrics, **evaluate(state, eval_key)}

    return chunk


def _over_seed_blocks(fn: Callable, block: int) -> Callable:
    """``fn(state, key)`` for one seed -> the same over (hparam point, seed) leading axes: vmapped over both,
    or, with ``block`` > 0, over blocks of ``block`` seeds computed one after another (``lax.map``), each
    block the very program a ``block``-seed run compiles."""
    batched = jax.vmap(jax.vmap(fn))
    if not block:
        return batched

    def blocked(*args):
        num_seeds = jax.tree.leaves(args)[0].shape[1]
        if block >= num_seeds:
            return batched(*args)

        def to_blocks(x):  # (H, S, ...) -> (S / block, H, block, ...)
            x = x.reshape((x.shape[0], num_seeds // block, block) + x.shape[2:])
            return jnp.moveaxis(x, 1, 0)

        def from_blocks(x):
            x = jnp.moveaxis(x, 0, 1)
            return x.reshape((x.shape[0], num_seeds) + x.shape[3:])

        out = jax.lax.map(lambda blk: batched(*blk), jax.tree.map(to_blocks, args))
        return jax.tree.map(from_blocks, out)

    return blocked


def _train_chunk(phase: Phase, chunk_length: int):
    """``chunk(state) -> (state, metrics)``: ``chunk_length`` iterations of ``phase`` for ONE seed, metrics
    averaged over the chunk (NaN entries, e.g. "no episode ended this iteration", ignored)."""

    def chunk(state):
        state, metrics = jax.lax.scan(lambda s, _: phase.iteration(s), state, None, length=chunk_length)
        return state, {k: jnp.nanmean(v.astype(jnp.float32)) for k, v in metrics.items()}

    return chunk


def make_evaluation(agent: Agent, problem: Problem, eval_episodes: int, deterministic: bool = True):
    """``evaluate(state, eval_key) -> metrics`` for ONE seed: ``eval_episodes`` episodes of the agent's policy
    on the problem's (real) env (``eval_returns`` per episode, their mean ``eval_return``, ``eval_length``);
    an empty dict when ``eval_episodes`` is 0. The host-driven ``Runner`` compiles it once as its own program,
    shared by every phase, instead of into every chunk program."""

    def evaluate(state, eval_key):
        if eval_episodes <= 0:
            return {}
        act = lambda obs, key: agent.policy(state, obs, key, deterministic)  # noqa: E731
        env_params = problem.env_params if agent.eval_env_params is None else agent.eval_env_params(state)
        returns, lengths = evaluate_policy(act, problem.env, env_params, eval_key, eval_episodes,
                                           problem.max_episode_steps)
        return {"eval_returns": returns, "eval_return": returns.mean(),
                "eval_length": lengths.astype(jnp.float32).mean()}

    return evaluate


def init_one_by_one(init: Callable, keys: jax.Array, hparams):
    """``vmap(init)(keys, hparams)`` computed one key after another with ``lax.map``: the same numbers (bit
    for bit; tested), but never two batched QR decompositions at once. jaxlib 0.10.2's CPU runtime deadlocks
    (every thread idle on a futex) when a vmapped orthogonal initialiser's batched QRs run side by side on a
    2-core machine (IQL with 8 seeds and 256-wide layers reproduces it; see ``hybrid_rl/xla_flags.py``).
    Initialisation is a one-off, so doing it sequentially costs nothing that matters, on any backend."""
    return jax.lax.map(lambda key: init(key, hparams), keys)


def init_grid(init: Callable, keys: jax.Array, hparams, num_hp: int):
    """States for a (hyper-parameter point, seed) grid, leaves shaped (num_hp, num_seeds, ...): every pair
    initialised one after another, as in ``init_one_by_one`` (vmapping over the points would batch the QRs
    again). ``hparams`` leaves have a leading axis of ``num_hp``; the points share the seeds' keys."""
    num_seeds = keys.shape[0]
    flat_keys = jnp.concatenate([keys] * num_hp)  # point-major: (p0 s0, p0 s1, ..., p1 s0, ...)
    flat_hparams = jax.tree.map(lambda x: jnp.repeat(x, num_seeds, axis=0), hparams)
    states = jax.lax.map(lambda pair: init(*pair), (flat_keys, flat_hparams))
    return jax.tree.map(lambda x: x.reshape((num_hp, num_seeds) + x.shape[1:]), states)


def make_train(agent: Agent, problem: Problem, num_evals: int = 10, eval_episodes: int = 10,
               deterministic: bool = True):
    """A pure ``train(key, hparams) -> (final_state, metrics)`` for one seed, every phase to the end.

    ``metrics`` is a list with one dict per phase whose leaves have a leading axis of chunks. For a seed
    sweep use ``make_seed_sweep`` (the same computation, states initialised with ``init_one_by_one``);
    ``jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, hparams)`` also works but can deadlock on a CPU with
    wide orthogonally initialised networks.
    """
    train_from = make_train_from(agent, problem, num_evals, eval_episodes, deterministic)

    def train(key, hparams):
        # The same key derivation as ``Runner``, so a host-driven run and this pure one agree exactly.
        init_key, eval_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
        return train_from(agent.init(init_key, hparams), eval_key)

    return train


def make_seed_sweep(agent: Agent, problem: Problem, num_evals: int = 10, eval_episodes: int = 10,
                    deterministic: bool = True):
    """``sweep(keys, hparams) -> (final_states, metrics)``: ``make_train`` for a batch of seed keys sharing
    ``hparams``, as one program (``jax.jit`` it): states initialised one seed at a time, trained vmapped."""
    train_from = make_train_from(agent, problem, num_evals, eval_episodes, deterministic)

    def sweep(keys, hparams):
        init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
        eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        states = init_one_by_one(agent.init, init_keys, hparams)
        return jax.vmap(train_from)(states, eval_keys)

    return sweep


def make_train_from(agent: Agent, problem: Problem, num_evals: int, eval_episodes: int, deterministic: bool = True):
    """``train_from(state, eval_key)``: every phase from an initialised state, under ``lax.scan`` (the body
    of ``make_train`` and ``make_seed_sweep``; use it with ``init_grid`` for a hyper-parameter grid)."""
    plans = plan_phases(agent, num_evals)

    def train_from(state, eval_key):
        outputs = []
        offset = 0
        for plan in plans:
            chunk = make_chunk(agent, problem, plan.phase, plan.chunk_length, eval_episodes, deterministic)
            keys = jax.vmap(lambda i: jax.random.fold_in(eval_key, i))(offset + jnp.arange(plan.num_chunks))
            state, metrics = jax.lax.scan(chunk, state, keys)
            outputs.append(metrics)
            offset += plan.num_chunks
        return state, outputs

    return train_from


# ----------------------------------------------------------------------------------------------------
# Host-driven runs
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunSettings:
    num_seeds: int = 1
    seed: int = 0
    seed_offset: int = 0  # this run trains the study's seeds [seed_offset, seed_offset + num_seeds)
    num_evals: int = 10
    eval_episodes: int = 10
    deterministic_eval: bool = True  # False: evaluate the sampled policy (see ``make_chunk``)
    hp_grid: dict = dataclasses.field(default_factory=dict)  # traced name -> list of values
    checkpoint: bool = True
    # Seconds between checkpoints (saved asynchronously after the chunk that crosses the interval, and always
    # after a phase's last chunk); 0 saves after every chunk. A killed run resumes from the last one saved,
    # to the same numbers either way: only the work since that save is done again.
    checkpoint_interval_s: float = 0.0
    progress: bool = True
    max_checkpoints_to_keep: int = 2
    label: str = ""  # names the run in figures, e.g. "sac on pendulum"
    # Seeds computed together: 0 vmaps all of them at once; b > 0 runs blocks of b vmapped seeds one after
    # another (``seeds`` must be a multiple). XLA may compile a batch of 8 seeds and a batch of 32 into
    # different floating-point orders, so a study split into jobs of 8 seeds reproduces one 32-seed run
    # bit for bit only when that run uses ``seed_block=8`` too.
    seed_block: int = 0


def hparam_grid(base: dict[str, jax.Array], grid: dict[str, list]) -> tuple[dict[str, jax.Array], list[dict]]:
    """The cartesian product of ``grid`` over the traced hyper-parameters ``base``.

    Returns the stacked hparams (each leaf of shape (num_points,)) and one dict of swept values per point.
    """
    unknown = sorted(set(grid) - set(base))
    if unknown:
        raise ValueError(
            f"hp_sweep names {unknown}, which are not traced hyper-parameters of this algorithm; "
            f"traced ones: {sorted(base)}"
        )
    names = sorted(grid)
    points = [dict(zip(names, values)) for values in itertools.product(*(list(grid[n]) for n in names))]
    if not points:
        points = [{}]
    stacked = {
        name: jnp.asarray([float(pt.get(name, value)) for pt in points], jnp.float32)
        for name, value in base.items()
    }
    return stacked, points


def global_seed_keys(seed: int, offset: int, num_seeds: int) -> jax.Array:
    """Keys of the study's seeds ``offset .. offset + num_seeds - 1``: seed i's key is the i-th of
    ``split(key(seed), N)`` for any N > i, so a study split into jobs of a few seeds each trains every seed
    exactly as one big run does. That prefix property holds for partitionable threefry (JAX's default
    since 0.5), which is forced here so a user's setting cannot break it."""
    if offset < 0 or num_seeds < 1:
        raise ValueError(f"seed_offset must be >= 0 and seeds >= 1 (got seed_offset={offset}, seeds={num_seeds})")
    with jax.threefry_partitionable(True):
        return jax.random.split(jax.random.key(seed), offset + num_seeds)[offset:]


def seed_mesh(num_seeds: int) -> Optional[Mesh]:
    """A 1-D mesh over all devices (of every process) for the seed axis, or None when seeds do not split
    evenly (or 1 device). A multi-process run must split evenly: each process holds its devices' seeds."""
    devices = jax.devices()
    if jax.process_count() > 1 and num_seeds % len(devices) != 0:
        raise ValueError(f"seeds={num_seeds} must be a multiple of the {len(devices)} devices of this "
                         f"{jax.process_count()}-process run")
    if len(devices) <= 1 or num_seeds % len(devices) != 0:
        return None
    return Mesh(np.asarray(devices), ("seed",))


def _shard_state(state, mesh: Optional[Mesh]):
    if mesh is None:
        return state
    sharding = NamedSharding(mesh, P(None, "seed"))
    if jax.process_count() > 1:  # device_put cannot reach other processes' devices; a jitted copy can
        return jax.jit(lambda x: x, out_shardings=sharding)(state)
    return jax.device_put(state, sharding)


class Runner:
    """Drives one run: ``Runner(...).run()``. See the module docstring."""

    def __init__(
        self,
        agent: Agent,
        problem: Problem,
        hparams: dict[str, jax.Array],
        settings: RunSettings,
        out_dir: Optional[pathlib.Path] = None,
        log_fn: Callable[[str], None] = print,
        on_rows: tuple[Callable[[list[dict]], None], ...] = (),
    ):
        self.agent = agent
        self.problem = problem
        self.settings = settings
        self.out_dir = pathlib.Path(out_dir) if out_dir is not None else None
        self.log = log_fn
        self.on_rows = on_rows  # called with each chunk's new metric rows (TensorBoard, W&B mirrors)
        self.plans = plan_phases(agent, settings.num_evals)
        if settings.eval_episodes > 0 and problem.max_episode_steps > 1_000_000:
            raise ValueError(
                f"env {problem.env_name!r} is continuing (episode limit {problem.max_episode_steps} steps), so "
                "evaluation episodes would never end: set eval_episodes=0 and judge the run by its logged metrics"
            )
        self.hparams, self.hp_points = hparam_grid(hparams, settings.hp_grid)
        self.num_hp = len(self.hp_points)
        block = settings.seed_block
        if block < 0 or (block and settings.num_seeds % block):
            raise ValueError(f"seed_block={block} must be 0 or divide seeds={settings.num_seeds}")
        self.mesh = seed_mesh(settings.num_seeds)
        if block and block < settings.num_seeds and self.mesh is not None:
            raise ValueError("seed_block applies to one device; with several devices each holds its own seeds")

        seed_keys = global_seed_keys(settings.seed, settings.seed_offset, settings.num_seeds)
        self._init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(seed_keys)
        self._eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(seed_keys)

        # Outer axis: hyper-parameter points (keys shared); inner axis: seeds (hparams shared). Every
        # (point, seed) is initialised one at a time (``init_grid``: a jaxlib CPU deadlock).
        self._init = jax.jit(lambda keys, hp: init_grid(agent.init, keys, hp, self.num_hp))
        # One training program per phase and ONE evaluation program shared by all phases (compiled once,
        # not into every chunk program); ``_start_compiling`` compiles them side by side.
        self._chunks = [
            jax.jit(_over_seed_blocks(lambda state, _, plan=p: _train_chunk(plan.phase, plan.chunk_length)(state),
                                      block))
            for p in self.plans
        ]
        self._evaluate = None
        if settings.eval_episodes > 0:
            self._evaluate = jax.jit(_over_seed_blocks(
                make_evaluation(agent, problem, settings.eval_episodes, settings.deterministic_eval), block))
        self._compiled: dict = {}
        self._last_save = time.monotonic()
        self.rows: list[dict] = []
        self.eval_returns: list[dict] = []  # raw per-episode returns, one entry per evaluation
        self._ckpt = None
        if self.out_dir is not None and settings.checkpoint:
            import orbax.checkpoint as ocp

            self._ckpt = ocp.CheckpointManager(
                (self.out_dir / "checkpoints").absolute(),
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=settings.max_checkpoints_to_keep, create=True
                ),
            )

    # -- state ------------------------------------------------------------------------------------
    def init_state(self):
        keys = self._init_keys
        if self.mesh is not None:
            keys = distributed.global_array(keys, NamedSharding(self.mesh, P("seed")))
        state = self._init(keys, self.hparams)
        return _shard_state(state, self.mesh)

    def _eval_key(self, global_chunk: int):
        keys = jax.vmap(lambda k: jax.random.fold_in(k, global_chunk))(self._eval_keys)
        keys = jnp.broadcast_to(keys, (self.num_hp,) + keys.shape)
        if self.mesh is not None and jax.process_count() > 1:
            keys = distributed.global_array(keys, NamedSharding(self.mesh, P(None, "seed")))
        return keys

    # -- checkpoints ------------------------------------------------------------------------------
    def _save(self, step: int, state, progress: dict):
        if self._ckpt is None:
            return
        import orbax.checkpoint as ocp

        # Asynchronous: orbax writes in the background while the next chunk runs (it waits for the previous
        # save itself before starting another), and commits a step by renaming it into place.
        self._ckpt.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(progress)
            ),
        )
        self._last_save = time.monotonic()

    def _save_due(self, chunk_index: int, plan: PhasePlan) -> bool:
        last_of_phase = chunk_index == plan.num_chunks - 1
        return last_of_phase or time.monotonic() - self._last_save >= self.settings.checkpoint_interval_s

    def _restore(self):
        """(state, progress) from the latest checkpoint, or None when there is none."""
        if self._ckpt is None or self._ckpt.latest_step() is None:
            return None
        import orbax.checkpoint as ocp

        abstract = jax.eval_shape(self._init, self._init_keys, self.hparams)
        if self.mesh is not None:  # restore each process's shards straight onto its devices
            sharding = NamedSharding(self.mesh, P(None, "seed"))
            abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract)
        # A job killed while saving (a pre-emption signal mid-write) can leave its newest step unreadable:
        # fall back to the previous one (two are kept) and delete the broken step, so it is written again.
        for step in sorted(self._ckpt.all_steps(), reverse=True):
            try:
                restored = self._ckpt.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore()
                    ),
                )
            except Exception as err:  # orbax/tensorstore raise several types for a partial write
                self.log(f"warning: checkpoint step {step} is unreadable ({str(err).splitlines()[0][:200]}); "
                         "using the one before it")
                try:
                    self._ckpt.delete(step)
                except Exception:  # too broken for orbax to delete: remove its folder
                    import shutil

                    shutil.rmtree(self.out_dir / "checkpoints" / str(step), ignore_errors=True)
                continue
            return _shard_state(restored["state"], self.mesh), restored["progress"]
        return None

    # -- main loop --------------------------------------------------------------------------------
    def run(self, resume: bool = False):
        total_chunks = sum(p.num_chunks for p in self.plans)
        start_chunk = 0
        state = None
        if resume:
            restored = self._restore()
            if restored is not None:
                state, progress = restored
                start_chunk = int(progress["next_chunk"])
                self.rows = list(progress["rows"])
                self.eval_returns = list(progress["eval_returns"])
                self.log(f"resumed from {self.out_dir / 'checkpoints'} at chunk {start_chunk}/{total_chunks}")
        if state is None:
            state = self.init_state()
        self._start_compiling(state)

        bar = _progress_bar(total_chunks, start_chunk, self.settings.progress and distributed.is_primary())
        global_chunk = 0
        env_steps = grad_steps = 0
        for phase_index, plan in enumerate(self.plans):
            for chunk_index in range(plan.num_chunks):
                env_steps += plan.chunk_length * plan.phase.env_steps_per_iteration
                grad_steps += plan.chunk_length * plan.phase.grad_steps_per_iteration
                if global_chunk < start_chunk:
                    global_chunk += 1
                    continue
                t0 = time.perf_counter()
                eval_key = self._eval_key(global_chunk)
                state, metrics = self._call(("chunk", phase_index), self._chunks[phase_index], state, eval_key)
                if self._evaluate is not None:
                    metrics = {**metrics, **self._call(("evaluate",), self._evaluate, state, eval_key)}
                metrics = distributed.fetch(metrics)
                seconds = time.perf_counter() - t0
                self._check_finite(metrics, plan.phase.name, env_steps, grad_steps)
                first_new_row = len(self.rows)
                self._record(metrics, plan, chunk_index, global_chunk, env_steps, grad_steps, seconds)
                for callback in self.on_rows:
                    callback(self.rows[first_new_row:])
                global_chunk += 1
                self._write_outputs()
                if self._save_due(chunk_index, plan):
                    self._save(
                        global_chunk,
                        state,
                        # copies: the save is written in the background while these lists grow
                        {"next_chunk": global_chunk, "rows": list(self.rows),
                         "eval_returns": list(self.eval_returns)},
                    )
                bar.update(1)
                if "eval_return" in metrics:
                    bar.set_postfix_str(
                        f"{plan.phase.name} eval_return={float(np.mean(metrics['eval_return'])):.3g}"
                    )
        bar.close()
        if self._ckpt is not None:
            self._ckpt.wait_until_finished()
        summary = self._write_outputs(final=True)
        return state, summary

    # -- programs ---------------------------------------------------------------------------------
    def _start_compiling(self, state):
        """Lowers every chunk program and the evaluation program (in this thread: tracing holds the GIL), then
        compiles them side by side in worker threads (XLA compiles without the GIL), so a run's compile time
        is about its largest program's rather than the sum. Single-device runs only: a sharded state's
        layout is only known once it exists."""
        if self.mesh is not None or self._compiled:
            return
        from concurrent.futures import ThreadPoolExecutor

        eval_key = self._eval_key(0)
        programs = {("chunk", i): (fn, (state, eval_key)) for i, fn in enumerate(self._chunks)}
        if self._evaluate is not None:
            programs[("evaluate",)] = (self._evaluate, (state, eval_key))
        lowered = {name: fn.lower(*args) for name, (fn, args) in programs.items()}
        pool = ThreadPoolExecutor(max_workers=len(lowered), thread_name_prefix="compile")
        self._compiled = {name: pool.submit(low.compile) for name, low in lowered.items()}
        pool.shutdown(wait=False)

    def _call(self, name, fn, *args):
        """Runs the program compiled ahead by ``_start_compiling`` when its input types match ``args`` (a
        phase may hand the next one a state whose weak types differ), else the jitted function itself."""
        future = self._compiled.get(name)
        if future is not None:
            try:
                return future.result()(*args)
            except TypeError:  # argument types differ from the ones it was compiled for
                self._compiled.pop(name)
        return fn(*args)

    # -- bookkeeping ------------------------------------------------------------------------------
    def _check_finite(self, metrics, phase, env_steps, grad_steps):
        for name, value in metrics.items():
            if _is_loss(name) and not np.all(np.isfinite(value)):
                bad = np.argwhere(~np.isfinite(np.asarray(value)))
                raise NonFiniteLossError(
                    f"{name} became non-finite in phase {phase!r} by env step {env_steps} / gradient step "
                    f"{grad_steps} (hparam point, seed) = {bad[:4].tolist()}; the last good checkpoint "
                    f"is kept" + (f" in {self.out_dir / 'checkpoints'}" if self._ckpt else "")
                )

    def _record(self, metrics, plan, chunk_index, global_chunk, env_steps, grad_steps, seconds):
        refs = self.problem.reference_returns()
        n_seeds = self.settings.num_seeds
        for h, point in enumerate(self.hp_points):
            for s in range(n_seeds):
                row = {
                    "phase": plan.phase.name,
                    "chunk": global_chunk,
                    "env_steps": env_steps,
                    "grad_steps": grad_steps,
                    "hp_index": h,
                    **{f"hp.{k}": v for k, v in point.items()},
                    "seed": self.settings.seed_offset + s,
                    "seconds": seconds,
                }
                for name, value in metrics.items():
                    if name == "eval_returns":
                        continue
                    row[name] = float(np.asarray(value)[h, s])
                if refs is not None and "eval_return" in row:
                    lo, hi = refs
                    row["normalized_score"] = 100.0 * (row["eval_return"] - lo) / (hi - lo)
                self.rows.append(row)
        if "eval_returns" in metrics:
            self.eval_returns.append(
                {"chunk": global_chunk, "env_steps": env_steps, "returns": np.asarray(metrics["eval_returns"]).tolist()}
            )

    def _write_outputs(self, final: bool = False) -> dict:
        summary = summarize(self.rows)
        if self.out_dir is None:
            return summary
        from hybrid_rl import logging as run_logging

        if jax.process_count() > 1:  # each process its own seeds' rows; process 0 the merged files
            mine = {self.settings.seed_offset + s
                    for s in distributed.local_seed_positions(self.mesh, self.settings.num_seeds)}
            run_logging.write_metrics_csv(self.out_dir / f"metrics.process{jax.process_index()}.csv",
                                          [r for r in self.rows if r["seed"] in mine])
            if not distributed.is_primary():
                return summary

        run_logging.write_metrics_csv(self.out_dir / "metrics.csv", self.rows)
        if final:
            run_logging.write_json(self.out_dir / "summary.json", summary)
            run_logging.write_json(self.out_dir / "eval_returns.json", self.eval_returns)
            try:
                run_logging.plot_run(self.rows, self.out_dir / "learning_curve.png", self.settings.label)
            except Exception as err:  # a figure must never lose a finished run's numbers
                self.log(f"warning: could not draw the learning curve: {err}")
        return summary


def summarize(rows: list[dict]) -> dict:
    """Per hyper-parameter point: final and best mean evaluation return (and normalized score), per-seed
    final values, and every other metric's mean over seeds at the last evaluation."""
    if not rows:
        return {}
    out = {}
    by_hp: dict[int, list[dict]] = {}
    for row in rows:
        by_hp.setdefault(row["hp_index"], []).append(row)
    for h, hp_rows in sorted(by_hp.items()):
        chunks = sorted({r["chunk"] for r in hp_rows})
        entry = {k: v for k, v in hp_rows[0].items() if k.startswith("hp.")}
        for key in ("eval_return", "normalized_score"):
            if key not in hp_rows[0]:
                continue
            per_chunk = [np.mean([r[key] for r in hp_rows if r["chunk"] == c]) for c in chunks]
            last = [r[key] for r in hp_rows if r["chunk"] == chunks[-1]]
            entry[f"final_{key}_mean"] = float(np.mean(last))
            entry[f"final_{key}_std"] = float(np.std(last))
            entry[f"final_{key}_per_seed"] = [float(x) for x in last]
            entry[f"best_{key}_mean"] = float(np.max(per_chunk))
        # Every other logged metric at the last evaluation, averaged over seeds (regret, suboptimality...).
        last_rows = [r for r in hp_rows if r["chunk"] == chunks[-1]]
        skip = {"chunk", "env_steps", "grad_steps", "hp_index", "seed", "seconds", "eval_return", "normalized_score"}
        entry["final_metrics"] = {
            k: float(np.nanmean([r[k] for r in last_rows]))
            for k, v in last_rows[0].items()
            if isinstance(v, (int, float)) and k not in skip and not k.startswith("hp.")
            and not all(np.isnan(r[k]) for r in last_rows)
        }
        entry["env_steps"] = int(max(r["env_steps"] for r in hp_rows))
        entry["grad_steps"] = int(max(r["grad_steps"] for r in hp_rows))
        entry["num_seeds"] = len({r["seed"] for r in hp_rows})
        entry["seeds"] = [int(r["seed"]) for r in last_rows]  # global seed indices, in per_seed order
        out[str(h)] = entry
    return out


class _NoBar:
    def update(self, n):
        pass

    def set_postfix_str(self, s):
        pass

    def close(self):
        pass


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="chunk", dynamic_ncols=True)
