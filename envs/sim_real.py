"""Sim/real pairs with a dynamics gap (H2O's setting) built on gymnax's classic-control envs.

A pair is ONE env class, ``ShiftedEnv(base, shift)``, and two params: the real params have the nominal
physics (``factor = 1``, ``noise_std = 0``: exactly the plain gymnax env), the sim params the shifted
physics. ``EnvSpec.make`` returns the real pair member (used for evaluation and the real dataset),
``EnvSpec.make_sim`` the simulator. Because the env objects of both are equal (same class, base and shift)
a program compiled for one runs the other, and because the shift is a param field it is traced:
``with_shift(params, value)`` sets it, so ``jax.vmap`` over values sweeps the gap in one compiled program.

Shifts (``shift`` constructor argument; k = ``params.factor``, sigma = ``params.noise_std``)::

    gravity      Pendulum g -> k g;  CartPole gravity -> k gravity
    mass         Pendulum m -> k m;  Acrobot link_mass_1, link_mass_2 -> k m_1, k m_2 (the link moment of
                 inertia stays gym's fixed 1.0, as in gym's Acrobot model)
    length       Pendulum l -> k l
    masspole     CartPole masspole -> k masspole, with total_mass = masscart + masspole and
                 polemass_length = masspole * length recomputed (gymnax stores both and uses them directly)
    power        MountainCarContinuous power -> k power (actuator gain)
    action_noise the executed action is a + sigma * N(0, I) (before the base env's own clipping); the agent
                 sees and stores its clean action a. The swept value is sigma.

Every pair also carries ``noise_std`` (0 unless it is the shifted quantity), so a physics shift can be
combined with actuator noise by setting it; it is ignored for discrete-action envs.
Truncation follows the wrapper's ``max_steps_in_episode`` (the base env's time limit by default).
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import gymnax
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from envs.gymnax_envs import apply_param_overrides
from envs.registry import EnvSpec, register_env


def _scale(field: str) -> Callable[[Any, jax.Array], Any]:
    return lambda p, k: p.replace(**{field: getattr(p, field) * k})


def _scale_many(*fields: str) -> Callable[[Any, jax.Array], Any]:
    return lambda p, k: p.replace(**{f: getattr(p, f) * k for f in fields})


def _cartpole_masspole(p, k):
    masspole = p.masspole * k
    return p.replace(
        masspole=masspole,
        total_mass=p.masscart + masspole,
        polemass_length=masspole * p.length,
    )


def _no_physics_change(p, k):
    return p


# (gymnax id, shift) -> how the factor k changes the base params. "action_noise" changes no physics.
SHIFTS: dict[tuple[str, str], Callable[[Any, jax.Array], Any]] = {
    ("Pendulum-v1", "gravity"): _scale("g"),
    ("Pendulum-v1", "mass"): _scale("m"),
    ("Pendulum-v1", "length"): _scale("l"),
    ("Pendulum-v1", "action_noise"): _no_physics_change,
    ("CartPole-v1", "gravity"): _scale("gravity"),
    ("CartPole-v1", "masspole"): _cartpole_masspole,
    ("Acrobot-v1", "mass"): _scale_many("link_mass_1", "link_mass_2"),
    ("MountainCarContinuous-v0", "power"): _scale("power"),
    ("MountainCarContinuous-v0", "action_noise"): _no_physics_change,
}


@struct.dataclass
class ShiftedParams:
    base: Any  # the gymnax env's own params: the nominal (real) physics
    factor: jax.Array  # physics multiplier k of the named shift (1 = real)
    noise_std: jax.Array  # std of Gaussian noise on the executed continuous action (0 = real)
    max_steps_in_episode: int
    # Which quantity ``with_shift`` sets: "factor" or "noise_std". Static (not data).
    shift_field: str = struct.field(pytree_node=False, default="factor")


def with_shift(params: ShiftedParams, value) -> ShiftedParams:
    """Set the pair's shift magnitude: the physics factor k, or sigma for ``action_noise`` pairs.

    Pure and traceable: ``jax.vmap(lambda v: with_shift(params, v))(values)`` gives a batch of sims.
    """
    value = jnp.asarray(value, jnp.float32)
    chex.assert_shape(value, ())  # one value per params; sweep by vmapping, not by passing an array
    return params.replace(**{params.shift_field: value})


def shift_value(params: ShiftedParams) -> jax.Array:
    """The pair's current shift magnitude (k, or sigma for ``action_noise``)."""
    return getattr(params, params.shift_field)


class ShiftedEnv(environment.Environment):
    """A gymnax env whose physics (or executed action) is shifted by traced params (see the module doc)."""

    def __init__(self, gymnax_id: str, shift: str):
        super().__init__()
        if (gymnax_id, shift) not in SHIFTS:
            valid = sorted(s for g, s in SHIFTS if g == gymnax_id)
            raise ValueError(f"no shift {shift!r} for {gymnax_id}; valid shifts: {valid}")
        self.gymnax_id = gymnax_id
        self.shift = shift
        self.base_env, self._base_default = gymnax.make(gymnax_id)
        self._apply_shift = SHIFTS[(gymnax_id, shift)]
        self.continuous = not hasattr(self.base_env.action_space(self._base_default), "n")
        self.obs_shape = getattr(self.base_env, "obs_shape", None)

    # Equal wrappers are interchangeable, so jit (which keys on the static ``self``) compiles once for
    # the real and the sim member of a pair.
    def __eq__(self, other):
        return isinstance(other, ShiftedEnv) and (self.gymnax_id, self.shift) == (other.gymnax_id, other.shift)

    def __hash__(self):
        return hash((ShiftedEnv, self.gymnax_id, self.shift))

    @property
    def default_params(self) -> ShiftedParams:
        """The REAL params: nominal physics, no action noise."""
        return ShiftedParams(
            base=self._base_default,
            factor=jnp.float32(1.0),
            noise_std=jnp.float32(0.0),
            max_steps_in_episode=self._base_default.max_steps_in_episode,
            shift_field="noise_std" if self.shift == "action_noise" else "factor",
        )

    def effective_params(self, params: ShiftedParams):
        """The base env's params with the shift applied: what the physics actually uses."""
        return self._apply_shift(params.base, params.factor)

    def step_env(self, key, state, action, params: ShiftedParams):
        executed = action
        if self.continuous:
            action = jnp.asarray(action, jnp.float32)

            def add_noise(a):
                # fold_in: a key independent of the one the base step gets, so noise-free pairs (the real
                # env, physics shifts) see exactly the keys of the plain gymnax env.
                return a + params.noise_std * jax.random.normal(jax.random.fold_in(key, 1), a.shape)

            # A real branch while noise_std is unbatched: noise-free pairs never pay for the Gaussian draw.
            executed = jax.lax.cond(params.noise_std > 0, add_noise, lambda a: a, action)
        obs, state, reward, terminated, info = self.base_env.step_env(
            key, state, executed, self.effective_params(params)
        )
        return obs, state, reward, terminated, {**info, "executed_action": executed}

    def reset_env(self, key, params: ShiftedParams):
        return self.base_env.reset_env(key, self.effective_params(params))

    def get_obs(self, state, params=None, key=None):
        return self.base_env.get_obs(state)

    def is_terminated(self, state, params: ShiftedParams) -> jax.Array:
        return self.base_env.is_terminated(state, self.effective_params(params))

    def is_truncated(self, state, params: ShiftedParams) -> jax.Array:
        return state.time >= params.max_steps_in_episode

    @property
    def name(self) -> str:
        return f"{self.base_env.name}[{self.shift}]"

    @property
    def num_actions(self) -> int:
        return self.base_env.num_actions

    def action_space(self, params: ShiftedParams | None = None):
        return self.base_env.action_space(self._base_default if params is None else params.base)

    def observation_space(self, params: ShiftedParams | None = None):
        return self.base_env.observation_space(self._base_default if params is None else params.base)

    def state_space(self, params: ShiftedParams | None = None):
        return self.base_env.state_space(self._base_default if params is None else params.base)


def _apply_overrides(name: str, env: ShiftedEnv, params: ShiftedParams, overrides: dict) -> ShiftedParams:
    """Wrapper fields (factor, noise_std, max_steps_in_episode) go to the wrapper, the rest to the base."""
    own = {"factor", "noise_std", "max_steps_in_episode"}
    mine = {k: v for k, v in overrides.items() if k in own}
    base = {k: v for k, v in overrides.items() if k not in own}
    for k in ("factor", "noise_std"):
        if k in mine:
            mine[k] = jnp.float32(mine[k])
    return params.replace(base=apply_param_overrides(name, params.base, base), **mine)


def _pair(name: str, gymnax_id: str, shift: str, sim_value: float):
    def make(**overrides):
        env = ShiftedEnv(gymnax_id, shift)
        return env, _apply_overrides(name, env, env.default_params, overrides)

    def make_sim(**overrides):
        env = ShiftedEnv(gymnax_id, shift)
        return env, _apply_overrides(name, env, with_shift(env.default_params, sim_value), overrides)

    return make, make_sim


# name, gymnax id, shift, sim value (k or sigma), action kind, description
PAIRS = [
    ("pendulum_gravity_2x", "Pendulum-v1", "gravity", 2.0, "continuous", "gravity x2"),
    ("pendulum_gravity_0.5x", "Pendulum-v1", "gravity", 0.5, "continuous", "gravity x0.5"),
    ("pendulum_mass_2x", "Pendulum-v1", "mass", 2.0, "continuous", "mass x2"),
    ("pendulum_length_2x", "Pendulum-v1", "length", 2.0, "continuous", "length x2"),
    # sigma = 1.0: H2O's README runs joint noise std 1.0 (on [-1, 1] actions); here half the torque range.
    ("pendulum_action_noise", "Pendulum-v1", "action_noise", 1.0, "continuous",
     "Gaussian noise std 1.0 on the executed torque"),
    ("cartpole_gravity_2x", "CartPole-v1", "gravity", 2.0, "discrete", "gravity x2"),
    ("cartpole_masspole_2x", "CartPole-v1", "masspole", 2.0, "discrete",
     "pole mass x2 (total_mass, polemass_length recomputed)"),
    ("acrobot_mass_2x", "Acrobot-v1", "mass", 2.0, "discrete", "both link masses x2"),
    ("mountaincar_continuous_power_0.5x", "MountainCarContinuous-v0", "power", 0.5, "continuous",
     "engine power x0.5"),
]

for _name, _gid, _shift, _value, _kind, _what in PAIRS:
    _make, _make_sim = _pair(_name, _gid, _shift, _value)
    register_env(
        EnvSpec(
            name=_name,
            description=f"Sim/real pair on {_gid}: real = nominal, sim = {_what} (traced; with_shift sweeps it).",
            make=_make,
            action_kind=_kind,
            make_sim=_make_sim,
            tags=("sim_real", "gymnax"),
        )
    )
