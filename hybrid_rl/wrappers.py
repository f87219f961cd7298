"""Env hygiene as gymnax-style wrappers, so that no loop or algorithm repeats it.

* ``FlatObservations``: observations (and ``info["final_observation"]``) as float32 vectors, the input of
  an MLP. Unlike gymnax's ``FlattenObservationWrapper`` it also casts to float32 (MinAtar's observations
  are boolean) and flattens the true last observation the same way.
* ``MappedActions``: the env takes the agent's action and maps it to the env's action with a function;
  ``scaled_actions(env, low, high)`` is the continuous case, [-1, 1]^d (a tanh policy's range) clipped and
  mapped onto the env's box ``[low, high]``.
* ``EpisodeStatistics``: the state carries the running return and length of the current episode (reset to
  zero when one ends) and those of each env's first episode (frozen when it ends: the evaluation protocol);
  ``info["episode_return"]`` / ``info["episode_length"]`` give the return and length of the episode that
  the step ended (meaningful where ``terminated | truncated``).

They wrap one env (unbatched, as gymnax envs are); the loops of ``hybrid_rl.rollout`` vmap them. None of
them draws a random number, so a wrapped env's random stream is the env's own.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import chex
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.wrappers.purerl import GymnaxWrapper


def scale_action(action: chex.Array, low: chex.Array, high: chex.Array) -> chex.Array:
    """[-1, 1]^d -> [low, high]^d (the action is clipped to [-1, 1] first)."""
    low, high = jnp.asarray(low), jnp.asarray(high)
    return low + (jnp.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)


def flatten_observation(obs: chex.Array, obs_shape: tuple[int, ...]) -> chex.Array:
    """Observations of shape ``batch + obs_shape`` as float32 vectors ``batch + (prod(obs_shape),)``."""
    batch = obs.shape[: obs.ndim - len(obs_shape)]
    return obs.reshape(batch + (math.prod(obs_shape),)).astype(jnp.float32)


class FlatObservations(GymnaxWrapper):
    """Flat float32 observations; ``obs_shape`` is the wrapped env's observation shape."""

    def __init__(self, env: Any, obs_shape: tuple[int, ...]):
        super().__init__(env)
        self.obs_shape = tuple(obs_shape)

    def _flat(self, obs):
        return flatten_observation(obs, self.obs_shape)

    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return self._flat(obs), state

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        info = {**info, "final_observation": self._flat(info["final_observation"])}
        return self._flat(obs), state, reward, terminated, truncated, info


class MappedActions(GymnaxWrapper):
    """The env takes agent actions: ``to_env_action(agent action) -> env action`` before every step."""

    def __init__(self, env: Any, to_env_action: Callable[[chex.Array], chex.Array]):
        super().__init__(env)
        self.to_env_action = to_env_action

    def step(self, key, state, action, params=None):
        return self._env.step(key, state, self.to_env_action(action), params)


def scaled_actions(env: Any, low: np.ndarray, high: np.ndarray) -> MappedActions:
    """The env with continuous agent actions in [-1, 1]^d, clipped and scaled to its box ``[low, high]``."""
    return MappedActions(env, lambda action: scale_action(action, low, high))


@struct.dataclass
class EpisodeStatisticsState:
    env_state: Any
    episode_return: chex.Array  # current episode so far (0 right after an end)
    episode_length: chex.Array
    first_return: chex.Array  # first episode since the reset: so far while it runs, then frozen
    first_length: chex.Array
    first_running: chex.Array  # the first episode has not ended yet


class EpisodeStatistics(GymnaxWrapper):
    """Episode returns and lengths kept in the env state (see the module docstring)."""

    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        zero_f, zero_i = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
        return obs, EpisodeStatisticsState(env_state, zero_f, zero_i, zero_f, zero_i, jnp.ones((), jnp.bool_))

    def step(self, key, state: EpisodeStatisticsState, action, params=None):
        obs, env_state, reward, terminated, truncated, info = self._env.step(key, state.env_state, action, params)
        done = terminated | truncated
        ret = state.episode_return + reward
        length = state.episode_length + 1
        running = state.first_running
        new_state = EpisodeStatisticsState(
            env_state=env_state,
            episode_return=jnp.where(done, 0.0, ret),
            episode_length=jnp.where(done, 0, length),
            first_return=state.first_return + jnp.where(running, reward, 0.0),
            first_length=state.first_length + running.astype(jnp.int32),
            first_running=running & ~done,
        )
        info = {**info, "episode_return": ret, "episode_length": length}
        return obs, new_state, reward, terminated, truncated, info
