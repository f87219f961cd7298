"""One evaluation loop for every algorithm: episodes run in parallel under ``vmap``, all inside jit.

The loop runs ``max_steps`` env steps (the env's episode limit) for ``num_episodes`` episodes at once and
masks rewards after each episode's first end, so its length is static and it scans without a while loop.
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp


def evaluate_policy(
    act: Callable[[chex.Array, chex.PRNGKey], chex.Array],
    env: Any,
    env_params: Any,
    key: chex.PRNGKey,
    num_episodes: int,
    max_steps: int,
) -> tuple[chex.Array, chex.Array]:
    """Returns (episode returns, episode lengths), each of shape (num_episodes,).

    ``act(obs, key)`` maps one observation to one env action.
    """
    reset_key, run_key = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(reset_key, num_episodes), env_params
    )

    def step(carry, step_key):
        obs, env_state, ret, length, alive = carry
        act_keys, env_keys = jnp.split(jax.random.split(step_key, 2 * num_episodes), 2)
        action = jax.vmap(act)(obs, act_keys)
        obs, env_state, reward, terminated, truncated, _ = jax.vmap(
            env.step, in_axes=(0, 0, 0, None)
        )(env_keys, env_state, action, env_params)
        ret = ret + jnp.where(alive, reward, 0.0)
        length = length + alive.astype(jnp.int32)
        alive = alive & ~(terminated | truncated)
        return (obs, env_state, ret, length, alive), None

    init = (
        obs,
        env_state,
        jnp.zeros(num_episodes, jnp.float32),
        jnp.zeros(num_episodes, jnp.int32),
        jnp.ones(num_episodes, jnp.bool_),
    )
    (_, _, returns, lengths, _), _ = jax.lax.scan(step, init, jax.random.split(run_key, max_steps))
    return returns, lengths
