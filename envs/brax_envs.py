"""Brax locomotion (hopper, walker2d, halfcheetah) behind gymnax's ``Environment`` interface.

Needs the optional extra: ``pip install -e ".[brax]"``. Brax is imported when an env is built, never when
this module is imported, so the registry lists the names everywhere and building one without Brax is a
one-line ``ImportError`` that says what to install.

``BraxEnv(name, backend)`` wraps ``brax.envs.get_environment(name, backend=backend)``; its params carry two
traced physics multipliers, applied to the Brax ``System`` inside ``reset``/``step``:

    gravity_scale   sys.gravity and sys.opt.gravity (the mjx pipeline reads the latter) -> k * g
    friction_scale  sys.geom_friction[:, 0] (sliding friction) -> k * mu; a contact uses the max over its
                    two geoms, so every contact's friction is scaled by k

so one compiled program runs the real env, the simulator of a sim/real pair and any sweep of the shift
(``envs.sim_real.with_shift`` sets the pair's field; ``jax.vmap`` over values sweeps it). Equal wrappers
(same name and backend) hash equal, so the real and sim member of a pair share every compiled program.

Observations are Brax's (hopper 11, walker2d 17, halfcheetah 17 floats: the D4RL/MuJoCo layout), actions
are in Box(-1, 1). ``terminated`` is Brax's ``done`` (hopper and walker2d fall over; halfcheetah never
terminates), ``truncated`` is the time limit ``max_steps_in_episode`` (1000), and gymnax's ``step``
auto-resets and keeps the true last observation in ``info["final_observation"]``.

Backends: ``positional`` by default for hopper and walker2d (the only one above 20k vmapped steps/s on
the 2-core CPU), ``generalized`` for halfcheetah (no backend reaches 20k there). Positional physics
ignores mass changes and uses the friction coefficient only for sliding contacts, so its friction shift
is weak; the friction pair uses ``generalized`` (see ``PAIRS``). ``env.kwargs.backend=...`` overrides.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from envs.physics import BoxPhysicsEnv, check_param_keys, physics_params
from envs.registry import EnvSpec, register_env

INSTALL_HINT = 'Brax locomotion envs need the brax extra: pip install -e ".[brax]"'

# Brax env name -> default physics backend.
DEFAULT_BACKEND = {"hopper": "positional", "walker2d": "positional", "halfcheetah": "generalized"}


def _import_brax_envs():
    try:
        from brax import envs as brax_envs
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from None
    return brax_envs


@functools.lru_cache(maxsize=None)
def _brax_env(name: str, backend: str):
    # Building a Brax env parses its MJCF (seconds on a small CPU): once per (name, backend) per process.
    return _import_brax_envs().get_environment(name, backend=backend)


@struct.dataclass
class BraxEnvState:
    brax: Any  # brax.envs.base.State (pipeline state, obs, reward, done, metrics)
    time: jax.Array


@struct.dataclass
class BraxParams:
    gravity_scale: jax.Array = 1.0
    friction_scale: jax.Array = 1.0
    max_steps_in_episode: int = 1000
    # Which field ``envs.sim_real.with_shift`` sets on a sim/real pair. Static (not data).
    shift_field: str = struct.field(pytree_node=False, default="gravity_scale")


class BraxEnv(BoxPhysicsEnv):
    """A Brax locomotion env with traced gravity and friction multipliers (see the module doc)."""

    def __init__(self, name: str, backend: str | None = None):
        super().__init__()
        if name not in DEFAULT_BACKEND:
            raise ValueError(f"no Brax env {name!r}; valid: {sorted(DEFAULT_BACKEND)}")
        self.brax_name = name
        self.backend = backend or DEFAULT_BACKEND[name]
        self.brax_env = _brax_env(name, self.backend)
        self.obs_shape = (int(self.brax_env.observation_size),)
        self.action_size = int(self.brax_env.action_size)

    def __eq__(self, other):
        return isinstance(other, BraxEnv) and (self.brax_name, self.backend) == (other.brax_name, other.backend)

    def __hash__(self):
        return hash((BraxEnv, self.brax_name, self.backend))

    @property
    def default_params(self) -> BraxParams:
        return BraxParams(gravity_scale=jnp.float32(1.0), friction_scale=jnp.float32(1.0))

    def shifted_system(self, params: BraxParams):
        """The Brax ``System`` with the params' gravity and friction multipliers applied."""
        sys = self.brax_env.sys
        g, mu = params.gravity_scale, params.friction_scale
        return sys.replace(
            gravity=sys.gravity * g,
            opt=sys.opt.replace(gravity=sys.opt.gravity * g),
            geom_friction=sys.geom_friction.at[:, 0].multiply(mu),
        )

    def _shifted_env(self, params: BraxParams):
        # A shallow copy with the shifted System: the cached Brax env itself is never mutated.
        env = copy.copy(self.brax_env)
        env.sys = self.shifted_system(params)
        return env

    def step_env(self, key, state: BraxEnvState, action, params: BraxParams):
        del key  # Brax dynamics are deterministic
        action = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
        # Brax's step updates ``metrics`` in place: hand it a copy so the caller's state stays unchanged.
        before = state.brax.replace(metrics=dict(state.brax.metrics))
        after = self._shifted_env(params).step(before, action)
        terminated = after.done > 0.5
        new_state = BraxEnvState(brax=after, time=state.time + 1)
        info = {"discount": 1.0 - terminated.astype(jnp.float32)}
        return after.obs, new_state, after.reward.astype(jnp.float32), terminated, info

    def reset_env(self, key, params: BraxParams):
        brax_state = self._shifted_env(params).reset(key)
        return brax_state.obs, BraxEnvState(brax=brax_state, time=jnp.int32(0))

    def get_obs(self, state: BraxEnvState, params=None, key=None):
        return state.brax.obs

    def is_terminated(self, state: BraxEnvState, params: BraxParams) -> jax.Array:
        return state.brax.done > 0.5

    @property
    def name(self) -> str:
        return f"brax-{self.brax_name}[{self.backend}]"



_PARAM_FIELDS = ("gravity_scale", "friction_scale", "max_steps_in_episode")


def _build(env_name: str, brax_name: str, overrides: dict, shift_field: str = "gravity_scale", sim_value=None):
    """(env, params) with ``env.kwargs`` applied: ``backend`` goes to the constructor, the rest to params."""
    overrides = dict(overrides)
    backend = overrides.pop("backend", None)
    check_param_keys(env_name, overrides, _PARAM_FIELDS, other_keys=("backend",))
    env = BraxEnv(brax_name, backend)
    return env, physics_params(env.default_params, overrides, shift_field, sim_value)


# short name, Brax env, description
ENVS = [
    ("brax_hopper", "hopper", "Brax Hopper (positional backend): hop forward; obs 11, action 3, 1000 steps."),
    ("brax_walker2d", "walker2d", "Brax Walker2d (positional backend): walk forward; obs 17, action 6, 1000 steps."),
    ("brax_halfcheetah", "halfcheetah",
     "Brax HalfCheetah (generalized backend): run forward; obs 17, action 6, 1000 steps."),
]

# name, Brax env, shifted field, sim value, backend (None: the env's default), description
PAIRS = [
    ("brax_hopper_gravity_2x", "hopper", "gravity_scale", 2.0, None, "gravity x2"),
    ("brax_walker2d_gravity_2x", "walker2d", "gravity_scale", 2.0, None, "gravity x2"),
    ("brax_halfcheetah_gravity_2x", "halfcheetah", "gravity_scale", 2.0, None, "gravity x2"),
    ("brax_walker2d_friction_0.5x", "walker2d", "friction_scale", 0.5, "generalized",
     "sliding friction x0.5 (generalized backend)"),
]

_NEEDS = " Needs the brax extra."


def _maker(name: str, brax_name: str, field: str = "gravity_scale", value=None, backend=None):
    def make(**overrides):
        if backend is not None:
            overrides = {"backend": backend, **overrides}
        return _build(name, brax_name, overrides, field, value)

    return make


for _name, _brax, _what in ENVS:
    register_env(EnvSpec(name=_name, description=_what + _NEEDS, make=_maker(_name, _brax),
                         action_kind="continuous", tags=("brax",)))

for _name, _brax, _field, _value, _backend, _what in PAIRS:
    register_env(EnvSpec(
        name=_name,
        description=f"Sim/real pair on Brax {_brax}: real = nominal, sim = {_what} (traced).{_NEEDS}",
        make=_maker(_name, _brax, _field, None, _backend),
        make_sim=_maker(_name, _brax, _field, _value, _backend),
        action_kind="continuous",
        tags=("sim_real", "brax"),
    ))
