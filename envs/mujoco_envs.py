"""MuJoCo locomotion (hopper, walker2d, halfcheetah, ant) behind gymnax's ``Environment`` interface.

Needs the optional extra: ``pip install -e ".[mujoco]"`` (C MuJoCo; the model files come with gymnasium,
which gymnax already installs). MuJoCo is imported when an env is built, never when this module is
imported, so the registry lists the names everywhere and building one without MuJoCo is a one-line
``ImportError`` that says what to install.

Semantics. ``mujoco_<task>`` is gymnasium's ``<Task>-v4``: the env D4RL's ``*-v2`` files were recorded
in (same observation layout, reward, termination, reset noise and frame skip; ant is ``Ant-v4`` with
``use_contact_forces=True``, D4RL's 111 floats). ``mujoco_<task>_v5`` is ``<Task>-v5``, the env Minari's
MuJoCo data was made in (no healthy reward on the step that falls; walker2d's v5 model has right-foot
friction 1.9; ant has 105 floats). ``mujoco_ant_d4rl`` is the env a D4RL ant file describes: Ant-v4's physics
with the 84 contact-force entries of the observation and the contact cost read as 0, as mujoco-py 2.x (which
recorded D4RL) reported them; a D4RL ant file trains and evaluates in it. Stepping is bit-identical to gymnasium's env from the same simulator
state (tested over whole episodes). Actions are the env's (Box(-1, 1) for all four tasks; MuJoCo clamps
``ctrl`` to the model's range, and the control cost is taken on the action as given, as in gymnasium).

How it stays one jitted, vmapped program. C MuJoCo runs on the host through ``jax.pure_callback``; the
whole simulator state is carried in the JAX env state: MuJoCo's ``mjSTATE_INTEGRATION`` row (time, qpos,
qvel, actuator state, warm start, applied forces...) in float64, stored as uint32 bits (so JAX needs no
x64 mode), plus the main body's x-y position that gymnasium's ant reward differences. Stepping from that
row is deterministic and statelessly reproduces gymnasium's stateful env bit for bit (the warm start is
what makes it exact: without it halfcheetah drifts). Each vectorised ``step`` is ONE host call that does
the physics, reward, termination, the true final observation and the auto-reset for every row; the reset
noise is drawn in JAX from the step's key. ``vmap_method="broadcast_all"`` makes nested vmaps (a
hyper-parameter grid x seeds x envs) still one call per step with all rows, and the env state is plain
arrays, so checkpoints hold it and a resumed run continues exactly.

Traced physics for sim/real pairs (``MujocoParams``): ``gravity_scale`` (k g), ``friction_scale`` (every
geom's sliding friction x k) and ``noise_std`` (Gaussian noise on the executed action, drawn in JAX; the
agent keeps its clean action; ``info["executed_action"]`` has the noisy one). ``envs.sim_real.with_shift``
sets the field a pair shifts, so a sweep over shift values compiles once.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import os
import pathlib
import threading
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.physics import BoxPhysicsEnv, check_param_keys, physics_params
from envs.registry import EnvSpec, register_env

INSTALL_HINT = 'MuJoCo envs need the mujoco extra: pip install -e ".[mujoco]"'


def import_mujoco():
    """The ``mujoco`` module, or a one-line ImportError saying what to install."""
    try:
        import mujoco
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from None
    return mujoco


def mujoco_available() -> bool:
    try:
        import_mujoco()
    except ImportError:
        return False
    return True


def _assets_dir() -> pathlib.Path:
    # gymnax depends on gymnasium, which ships the model files; found without importing gymnasium's MuJoCo
    # package (that one needs imageio for rendering).
    import importlib.util

    return pathlib.Path(importlib.util.find_spec("gymnasium").origin).parent / "envs" / "mujoco" / "assets"


# ---------------------------------------------------------------------------------------------------------
# Task definitions: gymnasium v4 / v5 constants
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    task: str  # hopper | walker2d | halfcheetah | ant
    version: str  # v4 | v5
    xml: str
    frame_skip: int
    ctrl_cost_weight: float
    reset_noise_scale: float
    qvel_noise: str  # "uniform" | "normal": how the reset perturbs qvel
    obs_dim: int
    d4rl_family: str
    # D4RL's ant files were recorded under mujoco-py 2.x, whose cfrc_ext was all zeros: the 84 contact
    # entries of every observation are 0 and the reward's contact cost is 0. True reproduces that.
    zero_contact_forces: bool = False

    @property
    def gym_id(self) -> str:
        name = {"hopper": "Hopper", "walker2d": "Walker2d", "halfcheetah": "HalfCheetah", "ant": "Ant"}[self.task]
        return f"{name}-{self.version}"


TASKS: dict[tuple[str, str], TaskSpec] = {
    ("hopper", "v4"): TaskSpec("hopper", "v4", "hopper.xml", 4, 1e-3, 5e-3, "uniform", 11, "hopper"),
    ("hopper", "v5"): TaskSpec("hopper", "v5", "hopper.xml", 4, 1e-3, 5e-3, "uniform", 11, "hopper"),
    ("walker2d", "v4"): TaskSpec("walker2d", "v4", "walker2d.xml", 4, 1e-3, 5e-3, "uniform", 17, "walker2d"),
    ("walker2d", "v5"): TaskSpec("walker2d", "v5", "walker2d_v5.xml", 4, 1e-3, 5e-3, "uniform", 17, "walker2d"),
    ("halfcheetah", "v4"): TaskSpec("halfcheetah", "v4", "half_cheetah.xml", 5, 0.1, 0.1, "normal", 17,
                                    "halfcheetah"),
    ("halfcheetah", "v5"): TaskSpec("halfcheetah", "v5", "half_cheetah.xml", 5, 0.1, 0.1, "normal", 17,
                                    "halfcheetah"),
    ("ant", "v4"): TaskSpec("ant", "v4", "ant.xml", 5, 0.5, 0.1, "normal", 111, "ant"),
    ("ant", "v5"): TaskSpec("ant", "v5", "ant.xml", 5, 0.5, 0.1, "normal", 105, "ant"),
    # the env D4RL's ant-*-v2 data describe: Ant-v4's physics, contact forces read as zeros
    ("ant", "d4rl"): TaskSpec("ant", "v4", "ant.xml", 5, 0.5, 0.1, "normal", 111, "ant", zero_contact_forces=True),
}

_CONTACT_COST_WEIGHT = 5e-4  # ant


# gymnasium computes these per env with numpy; here they are computed for all rows at once, with the same
# operations in the same dtypes (a float32 action keeps a float32 control cost, as in gymnasium), so the
# results are the same bits (the tests compare them with gymnasium's).


def _observations(spec: TaskSpec, qpos: np.ndarray, qvel: np.ndarray, cfrc: Optional[np.ndarray]) -> np.ndarray:
    """gymnasium's ``_get_obs`` for rows of (qpos, qvel[, cfrc_ext]), float64 (rows, obs_dim)."""
    if spec.task in ("hopper", "walker2d"):
        return np.concatenate((qpos[:, 1:], np.clip(qvel, -10, 10)), axis=1)
    if spec.task == "halfcheetah":
        return np.concatenate((qpos[:, 1:], qvel), axis=1)
    contact = np.zeros_like(cfrc) if spec.zero_contact_forces else np.clip(cfrc, -1.0, 1.0)
    contact = contact.reshape(len(contact), -1) if spec.version == "v4" else contact[:, 1:].reshape(len(contact), -1)
    return np.concatenate((qpos[:, 2:], qvel, contact), axis=1)


def _healthy(spec: TaskSpec, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """gymnasium's ``is_healthy`` per row (NaN compares False, as in its chained comparisons)."""
    z, angle = qpos[:, 1], qpos[:, 2]
    if spec.task == "hopper":
        state = np.concatenate([qpos, qvel], axis=1)[:, 2:]
        healthy_state = np.all(np.logical_and(-100.0 < state, state < 100.0), axis=1)
        return healthy_state & (0.7 < z) & (z < float("inf")) & (-0.2 < angle) & (angle < 0.2)
    if spec.task == "walker2d":
        return (0.8 < z) & (z < 2.0) & (-1.0 < angle) & (angle < 1.0)
    if spec.task == "ant":
        state = np.concatenate([qpos, qvel], axis=1)
        return np.isfinite(state).all(axis=1) & (0.2 <= state[:, 2]) & (state[:, 2] <= 1.0)
    return np.ones(len(qpos), bool)


def _rewards_and_terminations(spec: TaskSpec, qpos, qvel, cfrc, action, x_before, xy_before, xy_after, dt):
    """gymnasium's reward and ``terminated`` after ``do_simulation``, per row."""
    ctrl_cost = spec.ctrl_cost_weight * np.sum(np.square(action), axis=1)
    if spec.task == "halfcheetah":
        x_velocity = (qpos[:, 0] - x_before) / dt
        return 1.0 * x_velocity - ctrl_cost, np.zeros(len(qpos), bool)
    healthy = _healthy(spec, qpos, qvel)
    # v4 pays the healthy reward on every step, the falling one included (terminate_when_unhealthy); v5 not
    healthy_reward = np.ones(len(qpos)) if spec.version == "v4" else healthy * 1.0
    if spec.task == "ant":
        x_velocity = ((xy_after - xy_before) / dt)[:, 0]
        rewards = x_velocity + healthy_reward
        contact = np.square(np.clip(cfrc, -1.0, 1.0)).reshape(len(cfrc), -1)
        costs = ctrl_cost if spec.zero_contact_forces else ctrl_cost + _CONTACT_COST_WEIGHT * np.sum(contact, axis=1)
        return rewards - costs, ~healthy
    x_velocity = (qpos[:, 0] - x_before) / dt
    rewards = 1.0 * x_velocity + healthy_reward
    return rewards - ctrl_cost, ~healthy


# ---------------------------------------------------------------------------------------------------------
# Host side: one model per (task, version), a lock, and the vectorised step/reset
# ---------------------------------------------------------------------------------------------------------


class _Host:
    """The MjModel/MjData of one task and the host functions the callbacks run (under a lock: with the
    seed axis sharded over devices, each device may call at the same time)."""

    def __init__(self, spec: TaskSpec):
        mujoco = import_mujoco()
        self.mujoco = mujoco
        self.spec = spec
        self.physics = [_Physics(mujoco, spec)]  # the first serves resets and helpers; copies serve threads
        self.model, self.data = self.physics[0].model, self.physics[0].data
        self.state_kind = mujoco.mjtState.mjSTATE_INTEGRATION
        self.state_size = int(mujoco.mj_stateSize(self.model, self.state_kind))
        self.init_qpos = self.data.qpos.ravel().copy()
        self.init_qvel = self.data.qvel.ravel().copy()
        self.nq, self.nv = int(self.model.nq), int(self.model.nv)
        self.dt = self.model.opt.timestep * spec.frame_skip
        self.main_body = 1  # the torso (ant's reward differences its x-y position)
        self.lock = threading.Lock()
        self.calls = 0  # host calls made (for tests and benchmarks)
        self.threads = host_threads()
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._pool_pid, self._pool_size = 0, 0

    @property
    def row_size(self) -> int:
        """float64 values per env state row: the integration state and the main body's x, y."""
        return self.state_size + 2

    def _set_physics(self, gravity_scale: float, friction_scale: float) -> None:
        self.physics[0].set_scales(gravity_scale, friction_scale)

    def _write_row(self, row: np.ndarray, physics: Optional[_Physics] = None) -> None:
        physics = physics or self.physics[0]
        self.mujoco.mj_getState(physics.model, physics.data, row[: self.state_size], self.state_kind)
        row[self.state_size:] = physics.data.xpos[self.main_body, :2] if self.spec.task == "ant" else 0.0

    def _obs_of_data(self, physics: Optional[_Physics] = None) -> np.ndarray:
        d = (physics or self.physics[0]).data
        return _observations(self.spec, d.qpos[None], d.qvel[None], d.cfrc_ext[None])[0]

    def _reset_into(self, row: np.ndarray, qpos_noise: np.ndarray, qvel_noise: np.ndarray,
                    physics: Optional[_Physics] = None) -> np.ndarray:
        # gymnasium's reset: mj_resetData, then set_state(init + noise) which runs mj_forward.
        physics = physics or self.physics[0]
        m, d = physics.model, physics.data
        self.mujoco.mj_resetData(m, d)
        d.qpos[:] = self.init_qpos + qpos_noise.astype(np.float64)
        d.qvel[:] = self.init_qvel + qvel_noise.astype(np.float64)
        self.mujoco.mj_forward(m, d)
        self._write_row(row, physics)
        return self._obs_of_data(physics)

    def reset(self, qpos_noise, qvel_noise, gravity, friction):
        qpos_noise, qvel_noise, gravity, friction = map(np.asarray, (qpos_noise, qvel_noise, gravity, friction))
        lead = qpos_noise.shape[:-1]
        n = math.prod(lead)
        qpos_noise = qpos_noise.reshape(n, -1)
        qvel_noise = qvel_noise.reshape(n, -1)
        gravity, friction = np.broadcast_to(gravity, lead).reshape(n), np.broadcast_to(friction, lead).reshape(n)
        rows = np.zeros((n, self.row_size), np.float64)
        obs = np.zeros((n, self.spec.obs_dim), np.float32)
        with self.lock:
            self.calls += 1
            for i in range(n):
                self._set_physics(float(gravity[i]), float(friction[i]))
                obs[i] = self._reset_into(rows[i], qpos_noise[i], qvel_noise[i])
        return rows.view(np.uint32).reshape(lead + (2 * self.row_size,)), obs.reshape(lead + (-1,))

    def _step_rows(self, physics: _Physics, rows, action, gravity, friction, cfrc, lo: int, hi: int) -> None:
        """mj_step rows lo..hi-1 in place (the frame skip's worth), on one simulator: one thread's share."""
        mujoco, m, d, size, kind = self.mujoco, physics.model, physics.data, self.state_size, self.state_kind
        frame_skip, ant = self.spec.frame_skip, cfrc is not None
        for i in range(lo, hi):
            physics.set_scales(gravity[i], friction[i])
            state = rows[i, :size]
            mujoco.mj_setState(m, d, state, kind)
            d.ctrl[:] = action[i]
            mujoco.mj_step(m, d, nstep=frame_skip)
            if ant:  # gymnasium computes the post-constraint forces (cfrc_ext) after every step
                mujoco.mj_rnePostConstraint(m, d)
                cfrc[i] = d.cfrc_ext
                rows[i, size:] = d.xpos[self.main_body, :2]
            mujoco.mj_getState(m, d, state, kind)

    def _shares(self, n: int) -> list[tuple[int, int]]:
        """Contiguous row ranges, one per thread used: at least _MIN_ROWS_PER_THREAD rows each."""
        count = max(1, min(self.threads, n // _MIN_ROWS_PER_THREAD))
        bounds = [n * k // count for k in range(count + 1)]
        return list(zip(bounds[:-1], bounds[1:]))

    def _step_all(self, rows, action, gravity, friction, cfrc) -> None:
        """Every row's physics step. mj_step releases the GIL, so rows split across threads step in parallel;
        each thread has its own MjModel and MjData (gravity and friction are set per row). A row's result does
        not depend on which simulator steps it: its whole integration state is set before the step."""
        shares = self._shares(len(rows))
        while len(self.physics) < len(shares):
            self.physics.append(_Physics(self.mujoco, self.spec))
        if len(shares) == 1:
            self._step_rows(self.physics[0], rows, action, gravity, friction, cfrc, 0, len(rows))
            return
        if self._pool is None or self._pool_pid != os.getpid() or self._pool_size < len(shares) - 1:
            # A forked child inherits the pool object but not its threads: it makes its own.
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.shutdown(wait=False)
            self._pool = concurrent.futures.ThreadPoolExecutor(len(shares) - 1, thread_name_prefix="mujoco-host")
            self._pool_pid, self._pool_size = os.getpid(), len(shares) - 1
        others = [self._pool.submit(self._step_rows, physics, rows, action, gravity, friction, cfrc, lo, hi)
                  for physics, (lo, hi) in zip(self.physics[1:], shares[1:])]
        self._step_rows(self.physics[0], rows, action, gravity, friction, cfrc, *shares[0])
        for future in others:
            future.result()

    def step(self, sim, action, qpos_noise, qvel_noise, gravity, friction, truncate):
        # The callback may hand over JAX arrays: work on numpy (float64 arithmetic needs it).
        sim, action, qpos_noise, qvel_noise, gravity, friction, truncate = map(
            np.asarray, (sim, action, qpos_noise, qvel_noise, gravity, friction, truncate))
        lead = sim.shape[:-1]
        n = math.prod(lead)
        rows = np.ascontiguousarray(sim.reshape(n, -1)).view(np.float64).copy()
        action = np.asarray(action, np.float32).reshape(n, -1)
        qpos_noise = qpos_noise.reshape(n, -1)
        qvel_noise = qvel_noise.reshape(n, -1)
        # Python floats: compared and used per row without numpy scalar overhead.
        gravity = np.broadcast_to(gravity, lead).reshape(n).tolist()
        friction = np.broadcast_to(friction, lead).reshape(n).tolist()
        truncate = np.broadcast_to(truncate, lead).reshape(n)
        size, nq, nv = self.state_size, self.nq, self.nv
        x_before, xy_before = rows[:, 1].copy(), rows[:, size:].copy()
        cfrc = np.zeros((n,) + self.data.cfrc_ext.shape) if self.spec.task == "ant" else None
        with self.lock:
            self.calls += 1
            self._step_all(rows, action, gravity, friction, cfrc)
            qpos, qvel = rows[:, 1: 1 + nq], rows[:, 1 + nq: 1 + nq + nv]
            reward, terminated = _rewards_and_terminations(self.spec, qpos, qvel, cfrc, action, x_before, xy_before,
                                                           rows[:, size:], self.dt)
            final_obs = _observations(self.spec, qpos, qvel, cfrc).astype(np.float32)
            obs = final_obs.copy()
            for i in np.flatnonzero(terminated | truncate):  # auto-reset, in the row's own physics
                self._set_physics(gravity[i], friction[i])
                obs[i] = self._reset_into(rows[i], qpos_noise[i], qvel_noise[i])
        reward = reward.astype(np.float32)
        bits = rows.view(np.uint32).reshape(lead + (2 * self.row_size,))
        shape = lead + (self.spec.obs_dim,)
        return bits, obs.reshape(shape), final_obs.reshape(shape), reward.reshape(lead), terminated.reshape(lead)


# Fewer rows than this per thread and the thread hand-off costs more than the parallel stepping saves.
_MIN_ROWS_PER_THREAD = 4


def host_threads() -> int:
    """Threads that step MuJoCo rows in one host call: HYBRID_RL_MUJOCO_THREADS, else the CPUs this process
    may use. The callback blocks the jitted program while it runs, so the program's own threads are idle."""
    value = os.environ.get("HYBRID_RL_MUJOCO_THREADS", "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"HYBRID_RL_MUJOCO_THREADS must be a positive integer, got {value!r}")
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _Physics:
    """One MjModel and MjData of a task, and the gravity and friction scales its model is set to."""

    def __init__(self, mujoco, spec: TaskSpec):
        self.model = mujoco.MjModel.from_xml_path(str(_assets_dir() / spec.xml))
        self.data = mujoco.MjData(self.model)
        self.nominal_gravity = self.model.opt.gravity.copy()
        self.nominal_friction = self.model.geom_friction[:, 0].copy()
        self.scales = (1.0, 1.0)

    def set_scales(self, gravity_scale: float, friction_scale: float) -> None:
        if (gravity_scale, friction_scale) != self.scales:
            self.model.opt.gravity[:] = self.nominal_gravity * gravity_scale
            self.model.geom_friction[:, 0] = self.nominal_friction * friction_scale
            self.scales = (gravity_scale, friction_scale)


@functools.lru_cache(maxsize=None)
def host_for(task: str, version: str) -> _Host:
    """The host simulator of a task (built once per process)."""
    return _Host(TASKS[(task, version)])


# ---------------------------------------------------------------------------------------------------------
# The gymnax env
# ---------------------------------------------------------------------------------------------------------


@struct.dataclass
class MujocoState:
    sim: jax.Array  # (2 * row_size,) uint32: the float64 integration state and main-body x, y
    obs: jax.Array  # (obs_dim,) float32: the observation of ``sim``
    time: jax.Array  # steps taken in this episode


@struct.dataclass
class MujocoParams:
    gravity_scale: jax.Array = 1.0
    friction_scale: jax.Array = 1.0
    noise_std: jax.Array = 0.0
    max_steps_in_episode: int = 1000
    # Which field ``envs.sim_real.with_shift`` sets on a sim/real pair. Static (not data).
    shift_field: str = struct.field(pytree_node=False, default="gravity_scale")


class MujocoEnv(BoxPhysicsEnv):
    """A gymnasium MuJoCo locomotion task stepped by C MuJoCo through one host callback per step."""

    def __init__(self, task: str, version: str = "v4"):
        super().__init__()
        if (task, version) not in TASKS:
            raise ValueError(f"no MuJoCo task {task!r} {version!r}; valid: {sorted(TASKS)}")
        self.task, self.version = task, version
        self.spec = TASKS[(task, version)]
        self.host = host_for(task, version)  # imports MuJoCo: the one-line install hint if it is missing
        self.nq, self.nv = int(self.host.model.nq), int(self.host.model.nv)
        self.action_size = int(self.host.model.nu)
        self.obs_shape = (self.spec.obs_dim,)

    def __eq__(self, other):
        return isinstance(other, MujocoEnv) and (self.task, self.version) == (other.task, other.version)

    def __hash__(self):
        return hash((MujocoEnv, self.task, self.version))

    @property
    def default_params(self) -> MujocoParams:
        return MujocoParams(gravity_scale=jnp.float32(1.0), friction_scale=jnp.float32(1.0),
                            noise_std=jnp.float32(0.0))

    # -- shapes of the host results ------------------------------------------------------------------------

    def _sim_struct(self):
        return jax.ShapeDtypeStruct((2 * self.host.row_size,), jnp.uint32)

    def _obs_struct(self):
        return jax.ShapeDtypeStruct(self.obs_shape, jnp.float32)

    def _reset_noise(self, key):
        kq, kv = jax.random.split(key)
        s = self.spec.reset_noise_scale
        qpos = jax.random.uniform(kq, (self.nq,), jnp.float32, -s, s)
        if self.spec.qvel_noise == "normal":
            qvel = s * jax.random.normal(kv, (self.nv,), jnp.float32)
        else:
            qvel = jax.random.uniform(kv, (self.nv,), jnp.float32, -s, s)
        return qpos, qvel

    # -- gymnax interface ----------------------------------------------------------------------------------

    @functools.partial(jax.jit, static_argnames=("self",))
    def reset(self, key, params: Optional[MujocoParams] = None):
        return self.reset_env(key, self.default_params if params is None else params)

    def reset_env(self, key, params: MujocoParams):
        qpos_noise, qvel_noise = self._reset_noise(key)
        sim, obs = jax.pure_callback(
            self.host.reset, (self._sim_struct(), self._obs_struct()),
            qpos_noise, qvel_noise, jnp.asarray(params.gravity_scale, jnp.float32),
            jnp.asarray(params.friction_scale, jnp.float32), vmap_method="broadcast_all",
        )
        return obs, MujocoState(sim=sim, obs=obs, time=jnp.int32(0))

    def executed_action(self, key, action, params: MujocoParams):
        """The action the simulator runs: the agent's, plus N(0, noise_std^2) joint noise when noise_std > 0."""
        action = jnp.asarray(action, jnp.float32).reshape(self.action_size)

        def add_noise(a):
            return a + params.noise_std * jax.random.normal(key, a.shape, jnp.float32)

        return jax.lax.cond(params.noise_std > 0, add_noise, lambda a: a, action)

    @functools.partial(jax.jit, static_argnames=("self",))
    def step(self, key, state: MujocoState, action, params: Optional[MujocoParams] = None):
        """One step with auto-reset, as ONE host call: (obs, state, reward, terminated, truncated, info)."""
        params = self.default_params if params is None else params
        key_noise, key_reset = jax.random.split(key)
        executed = self.executed_action(key_noise, action, params)
        qpos_noise, qvel_noise = self._reset_noise(key_reset)
        truncated = state.time + 1 >= params.max_steps_in_episode
        scalar = lambda dtype: jax.ShapeDtypeStruct((), dtype)  # noqa: E731
        sim, obs, final_obs, reward, terminated = jax.pure_callback(
            self.host.step,
            (self._sim_struct(), self._obs_struct(), self._obs_struct(), scalar(jnp.float32), scalar(jnp.bool_)),
            state.sim, executed, qpos_noise, qvel_noise, jnp.asarray(params.gravity_scale, jnp.float32),
            jnp.asarray(params.friction_scale, jnp.float32), truncated,
            vmap_method="broadcast_all",
        )
        truncated = jnp.logical_and(truncated, jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)
        new_state = MujocoState(sim=sim, obs=obs, time=jnp.where(done, 0, state.time + 1).astype(jnp.int32))
        info = {
            "discount": 1.0 - terminated.astype(jnp.float32),
            "terminated": terminated,
            "truncated": truncated,
            "final_observation": final_obs,
            "executed_action": executed,
        }
        return obs, new_state, reward, terminated, truncated, info

    def step_env(self, key, state, action, params):
        raise NotImplementedError("MujocoEnv.step does the step and the auto-reset in one host call")

    def get_obs(self, state: MujocoState, params=None, key=None):
        return state.obs

    @property
    def name(self) -> str:
        return f"mujoco-{self.spec.gym_id}"

    # -- host-side helpers (not jitted): states from and to a MuJoCo data --------------------------------

    def state_from_data(self, data, time: int = 0) -> MujocoState:
        """The env state of a MuJoCo ``MjData`` of this task's model (e.g. ``gym_env.unwrapped.data``),
        taken as it is: its integration state, main-body position and observation."""
        mujoco = self.host.mujoco
        row = np.zeros(self.host.row_size, np.float64)
        mujoco.mj_getState(self.host.model, data, row[: self.host.state_size], self.host.state_kind)
        if self.task == "ant":
            row[self.host.state_size:] = data.xpos[self.host.main_body, :2]
        obs = _observations(self.spec, data.qpos[None], data.qvel[None], data.cfrc_ext[None])[0].astype(np.float32)
        return MujocoState(sim=jnp.asarray(row.view(np.uint32)), obs=jnp.asarray(obs), time=jnp.int32(time))

    def states_from_qpos_qvel(self, qpos, qvel, params: Optional[MujocoParams] = None) -> MujocoState:
        """Env states (leading axis: rows) with these joint positions and velocities, set as gymnasium's
        ``set_state`` does (time 0, no warm start): what D4RL's ``infos/qpos``, ``infos/qvel`` describe."""
        params = self.default_params if params is None else params
        qpos = np.asarray(qpos, np.float64).reshape(-1, self.nq)
        qvel = np.asarray(qvel, np.float64).reshape(-1, self.nv)
        host = self.host
        rows = np.zeros((len(qpos), host.row_size), np.float64)
        obs = np.zeros((len(qpos), self.spec.obs_dim), np.float32)
        with host.lock:
            host._set_physics(float(params.gravity_scale), float(params.friction_scale))
            for i in range(len(qpos)):
                obs[i] = host._reset_into(rows[i], qpos[i] - host.init_qpos, qvel[i] - host.init_qvel)
        return MujocoState(sim=jnp.asarray(rows.view(np.uint32)), obs=jnp.asarray(obs),
                           time=jnp.zeros(len(qpos), jnp.int32))

    def integration_state(self, state: MujocoState) -> np.ndarray:
        """The float64 ``mjSTATE_INTEGRATION`` row(s) of an env state (host side)."""
        bits = np.asarray(state.sim)
        return np.ascontiguousarray(bits).view(np.float64)[..., : self.host.state_size]

    def qpos_qvel(self, state: MujocoState) -> tuple[np.ndarray, np.ndarray]:
        """(qpos, qvel) of an env state, float64 (host side). The integration row starts time, qpos, qvel."""
        row = self.integration_state(state)
        return row[..., 1: 1 + self.nq], row[..., 1 + self.nq: 1 + self.nq + self.nv]


# ---------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------

_PARAM_FIELDS = ("gravity_scale", "friction_scale", "noise_std", "max_steps_in_episode")


def _build(env_name: str, task: str, version: str, overrides: dict, shift_field: str = "gravity_scale",
           sim_value=None):
    check_param_keys(env_name, overrides, _PARAM_FIELDS)
    env = MujocoEnv(task, version)
    return env, physics_params(env.default_params, overrides, shift_field, sim_value)


def _maker(name, task, version, field="gravity_scale", value=None):
    def make(**overrides):
        return _build(name, task, version, overrides, field, value)

    return make


_WHAT = {
    "hopper": "hop forward; obs 11, action 3",
    "walker2d": "walk forward; obs 17, action 6",
    "halfcheetah": "run forward; obs 17, action 6",
    "ant": "walk forward; obs {obs}, action 8",
}
_NEEDS = " Needs the mujoco extra."

# D4RL env id (for reference scores) per task.
D4RL_NAMES = {"hopper": "hopper-medium-v2", "walker2d": "walker2d-medium-v2",
              "halfcheetah": "halfcheetah-medium-v2", "ant": "ant-medium-v2"}


def env_name_for(task: str, version: str = "v4") -> str:
    """``mujoco_hopper`` (v4), ``mujoco_hopper_v5``, ``mujoco_ant_d4rl``."""
    return f"mujoco_{task}" + ("" if version == "v4" else f"_{version}")


for (_task, _version), _spec in TASKS.items():
    _name = env_name_for(_task, _version)
    _what = _WHAT[_task].format(obs=_spec.obs_dim)
    _sem = {"v4": "D4RL v2 semantics", "v5": "Minari's semantics",
            "d4rl": "as D4RL's ant files were recorded: contact forces read as 0"}[_version]
    register_env(EnvSpec(
        name=_name, description=f"MuJoCo {_spec.gym_id} ({_sem}): {_what}, 1000 steps.{_NEEDS}",
        make=_maker(_name, _task, _version), action_kind="continuous",
        d4rl_name=D4RL_NAMES[_task] if _version != "v5" else None, tags=("mujoco",),
    ))

# H2O's sim/real settings: name suffix, shifted field, sim value, description
SHIFTS = [
    ("gravity_2x", "gravity_scale", 2.0, "gravity x2"),
    ("friction_0.3x", "friction_scale", 0.3, "sliding friction x0.3"),
    ("joint_noise", "noise_std", 1.0, "Gaussian noise std 1.0 on the executed action"),
]
PAIR_TASKS = ("halfcheetah", "hopper", "walker2d")

for _task in PAIR_TASKS:
    for _suffix, _field, _value, _what in SHIFTS:
        _name = f"mujoco_{_task}_{_suffix}"
        register_env(EnvSpec(
            name=_name,
            description=f"Sim/real pair on MuJoCo {TASKS[(_task, 'v4')].gym_id}: real = nominal, sim = {_what} "
                        f"(traced).{_NEEDS}",
            make=_maker(_name, _task, "v4", _field, None),
            make_sim=_maker(_name, _task, "v4", _field, _value),
            action_kind="continuous", d4rl_name=D4RL_NAMES[_task], tags=("sim_real", "mujoco"),
        ))


def env_for_gym_id(gym_id: str) -> Optional[str]:
    """Our env name for a gymnasium id (``"Hopper-v5"`` -> ``"mujoco_hopper_v5"``), None if we have none."""
    for (task, version), spec in TASKS.items():
        if spec.gym_id.lower() == str(gym_id).lower():
            return env_name_for(task, version)
    return None


def env_for_d4rl_family(family: Optional[str]) -> Optional[str]:
    """Our env for a D4RL locomotion family (``"hopper"`` -> ``"mujoco_hopper"``; ``"ant"`` ->
    ``"mujoco_ant_d4rl"``, whose zero contact forces match the files), None for other families."""
    if (family, "d4rl") in TASKS:
        return env_name_for(family, "d4rl")
    return env_name_for(family, "v4") if (family, "v4") in TASKS else None
