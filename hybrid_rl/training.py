"""Small training helpers shared by algorithms: optimisers with traced learning rates, Polyak updates,
and stepping a batch of envs as the agent sees them (``hybrid_rl.rollout`` on the env with flat
observations, agent actions and episode statistics) while recording transitions with the true next
observation."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from hybrid_rl.rollout import reset_batch, step_batch
from hybrid_rl.wrappers import EpisodeStatistics, FlatObservations, MappedActions


def adam(learning_rate, max_grad_norm: float | None = None) -> optax.GradientTransformation:
    """Adam whose learning rate lives in the optimiser state (``optax.inject_hyperparams``), so a traced
    learning rate can be swept under ``vmap`` without recompiling."""
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
    if max_grad_norm is not None:
        opt = optax.chain(optax.clip_by_global_norm(max_grad_norm), opt)
    return opt


def polyak(target, online, tau):
    """target <- (1 - tau) target + tau online."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def agent_env(problem: Any):
    """The env as an agent sees it: flat float32 observations (``problem.flat_obs``), agent actions
    (``problem.to_env_action``: [-1, 1]^d scaled to the env's bounds, or a discrete index) and episode
    statistics in the env state."""
    return EpisodeStatistics(FlatObservations(MappedActions(problem.env, problem.to_env_action), problem.obs_shape))


def step_envs(problem: Any, key, env_state, obs, agent_action):
    """Steps ``num_envs`` envs of ``agent_env(problem)`` (leading axis, env keys ``split(key, num_envs)``)
    with agent actions. Returns the new (auto-reset, flat) obs and env state, the stored ``Transition``
    (flat observations, ``next_obs`` the true next observation, the agent's action, ``terminated`` and
    ``truncated`` kept apart) and the mean return of the episodes that ended this step (NaN if none)."""
    keys = jax.random.split(key, obs.shape[0])
    next_obs, env_state, transition, info = step_batch(agent_env(problem), problem.env_params, keys, env_state, obs,
                                                       agent_action)
    done = transition.terminated | transition.truncated
    n_done = done.sum()
    finished = jnp.where(n_done > 0, jnp.sum(jnp.where(done, info["episode_return"], 0.0)) / jnp.maximum(n_done, 1),
                         jnp.nan)
    return next_obs, env_state, transition, finished


def reset_envs(problem: Any, key, num_envs: int):
    """``num_envs`` envs of ``agent_env(problem)`` reset with ``split(key, num_envs)``: (flat obs, env state)."""
    return reset_batch(agent_env(problem), problem.env_params, key, num_envs)
