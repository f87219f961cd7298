"""Small pytrees shared by buffers, datasets and algorithms."""

from __future__ import annotations

import chex
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Transition:
    """One (s, a, r, s') step, or a batch of them (leading axes are batch axes).

    ``terminated`` and ``truncated`` are kept apart: targets bootstrap through a time-limit end
    (``truncated``) and stop only at a true terminal state (``terminated``). ``next_obs`` is always the
    true next observation, never the observation after an automatic reset.
    """

    obs: chex.Array
    action: chex.Array
    reward: chex.Array
    next_obs: chex.Array
    terminated: chex.Array
    truncated: chex.Array

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.reward.shape

    @staticmethod
    def zeros(obs_shape, action_shape, action_dtype=jnp.float32, batch_shape=()) -> "Transition":
        return Transition(
            obs=jnp.zeros(batch_shape + tuple(obs_shape), jnp.float32),
            action=jnp.zeros(batch_shape + tuple(action_shape), action_dtype),
            reward=jnp.zeros(batch_shape, jnp.float32),
            next_obs=jnp.zeros(batch_shape + tuple(obs_shape), jnp.float32),
            terminated=jnp.zeros(batch_shape, jnp.bool_),
            truncated=jnp.zeros(batch_shape, jnp.bool_),
        )
