"""The one env-rollout primitive: a batch of envs stepped under ``vmap`` with auto-reset, inside ``lax.scan``.

Every loop that plays a policy in an env (evaluation, dataset rollouts, the dataset builder, on-policy
collection in HNPG, HyQ and unified PG, one env step of an off-policy agent) is built from three pieces:

* ``reset_batch(env, params, key, n)``: ``n`` envs reset from ``split(key, n)``;
* ``step_batch(env, params, env_keys, state, obs, action)``: one vmapped ``env.step`` (one key per env) and
  the stored ``Transition`` (float32 observations, ``next_obs`` the true next observation
  ``info["final_observation"]`` rather than the auto-reset one, ``terminated`` and ``truncated`` apart);
* ``rollout(env, params, policy, key, n, T)``: reset, then ``T`` steps of ``policy`` under ``lax.scan``.

Random streams. ``rollout`` splits ``key`` into (reset key, run key), the run key into one key per step,
and each step key with ``split_key`` into (the policy's key, one key per env). Two layouts are in use and
both are kept exactly, so that moving a loop onto this module changes no number:

* ``split_policy_env`` (default): ``k_policy, k_env = split(k)``, env keys ``split(k_env, n)``; the policy
  decides what its one key means (one key per env, or one batched draw);
* ``split_per_env``: ``split(k, 2 n)``, the first ``n`` keys for the policy (one per env), the last ``n``
  for the envs (the evaluation loop's layout).

Env hygiene (flat observations, action scaling, episode statistics) is done by the wrappers of
``hybrid_rl.wrappers``, not by the loops.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import chex
import jax
import jax.numpy as jnp

from hybrid_rl.types import Transition

# policy(obs (n, ...), env_state (n, ...), t (step index), key) -> (action (n, ...), aux pytree)
Policy = Callable[[chex.Array, Any, chex.Array, Any], tuple[chex.Array, Any]]
SplitKey = Callable[[chex.PRNGKey, int], tuple[Any, chex.Array]]


def split_policy_env(key: chex.PRNGKey, num_envs: int) -> tuple[chex.PRNGKey, chex.Array]:
    """(one policy key, ``num_envs`` env keys): ``k_policy, k_env = split(key)``, ``split(k_env, num_envs)``."""
    k_policy, k_env = jax.random.split(key)
    return k_policy, jax.random.split(k_env, num_envs)


def split_per_env(key: chex.PRNGKey, num_envs: int) -> tuple[chex.Array, chex.Array]:
    """(``num_envs`` policy keys, ``num_envs`` env keys): the two halves of ``split(key, 2 num_envs)``."""
    policy_keys, env_keys = jnp.split(jax.random.split(key, 2 * num_envs), 2)
    return policy_keys, env_keys


def reset_batch(env: Any, env_params: Any, key: chex.PRNGKey, num_envs: int) -> tuple[chex.Array, Any]:
    """``num_envs`` envs reset with ``split(key, num_envs)``: (obs, env state), leading axis ``num_envs``."""
    return jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), env_params)


def step_batch(
    env: Any, env_params: Any, env_keys: chex.Array, env_state: Any, obs: chex.Array, action: chex.Array
) -> tuple[chex.Array, Any, Transition, dict]:
    """One step of a batch of envs (leading axis), one key each. Returns the next observation (after an
    automatic reset where an episode ended), the env state, the ``Transition`` and the env's info dict.

    The transition's ``action`` is the action given here (the agent's, when ``env`` is wrapped to map agent
    actions to env actions); its ``next_obs`` is the true next observation."""
    next_obs, env_state, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
        env_keys, env_state, action, env_params
    )
    transition = Transition(
        obs=obs.astype(jnp.float32),
        action=action,
        reward=reward.astype(jnp.float32),
        next_obs=info["final_observation"].astype(jnp.float32),
        terminated=terminated.astype(jnp.bool_),
        truncated=truncated.astype(jnp.bool_),
    )
    return next_obs, env_state, transition, info


def rollout(
    env: Any,
    env_params: Any,
    policy: Policy,
    key: chex.PRNGKey,
    num_envs: int,
    num_steps: int,
    split_key: SplitKey = split_policy_env,
    info_keys: Sequence[str] = (),
    record: bool = True,
) -> tuple[tuple[chex.Array, Any], Any]:
    """``num_steps`` steps of ``policy`` in ``num_envs`` freshly reset envs, as one ``lax.scan``.

    ``policy(obs, env_state, t, key) -> (action, aux)`` acts for the whole batch at step ``t`` with the
    policy part of ``split_key(step key, num_envs)``. Returns ``((obs, env_state) after the last step,
    steps)`` where ``steps = (Transition, {k: info[k] for k in info_keys}, aux)`` with leading axes
    ``(num_steps, num_envs)``, or ``None`` with ``record=False`` (a loop that only needs the final state,
    such as episode statistics kept by a wrapper)."""
    k_reset, k_run = jax.random.split(key)
    obs, env_state = reset_batch(env, env_params, k_reset, num_envs)

    def body(carry, xs):
        obs, env_state = carry
        t, k = xs
        k_policy, env_keys = split_key(k, num_envs)
        action, aux = policy(obs, env_state, t, k_policy)
        next_obs, env_state, transition, info = step_batch(env, env_params, env_keys, env_state, obs, action)
        steps = (transition, {name: info[name] for name in info_keys}, aux) if record else None
        return (next_obs, env_state), steps

    xs = (jnp.arange(num_steps), jax.random.split(k_run, num_steps))
    return jax.lax.scan(body, (obs, env_state), xs)


def per_env(act: Callable[[chex.Array, chex.PRNGKey], chex.Array], num_envs: int) -> Policy:
    """A batch policy from ``act(obs, key) -> action`` for one env: the policy key is split into one key
    per env (``split(key, num_envs)``); no aux output."""

    def policy(obs, env_state, t, key):
        return jax.vmap(act)(obs, jax.random.split(key, num_envs)), ()

    return policy
