"""Small training helpers shared by algorithms: optimisers with traced learning rates, Polyak updates,
and stepping a batch of envs while recording transitions with the true next observation."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from hybrid_rl.types import Transition


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


def step_envs(problem: Any, key, env_state, obs, agent_action):
    """Steps ``num_envs`` envs (leading axis) with agent actions; returns the new (auto-reset) obs and env
    state, and the stored ``Transition`` whose ``next_obs`` is the true next observation
    (``info["final_observation"]``), whose action is the agent's (normalised) action, and whose
    ``terminated``/``truncated`` are kept apart."""
    num_envs = obs.shape[0]
    env_action = problem.to_env_action(agent_action)
    next_obs, env_state, reward, terminated, truncated, info = jax.vmap(
        problem.env.step, in_axes=(0, 0, 0, None)
    )(jax.random.split(key, num_envs), env_state, env_action, problem.env_params)
    transition = Transition(
        obs=obs.astype(jnp.float32),
        action=agent_action,
        reward=reward.astype(jnp.float32),
        next_obs=info["final_observation"].astype(jnp.float32),
        terminated=terminated.astype(jnp.bool_),
        truncated=truncated.astype(jnp.bool_),
    )
    return next_obs, env_state, transition


def reset_envs(problem: Any, key, num_envs: int):
    return jax.vmap(problem.env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), problem.env_params)


def track_episode_returns(running_return, transition: Transition):
    """Adds this step's rewards; returns (new running returns, mean return of the episodes that ended
    this step or NaN if none ended)."""
    running = running_return + transition.reward
    done = transition.terminated | transition.truncated
    n_done = done.sum()
    finished = jnp.where(n_done > 0, jnp.sum(jnp.where(done, running, 0.0)) / jnp.maximum(n_done, 1), jnp.nan)
    return jnp.where(done, 0.0, running), finished
