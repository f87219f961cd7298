"""Roll a policy out in a registered env and return the transitions in D4RL's flat layout.

The rollout is one jitted ``lax.scan`` over steps with ``num_envs`` envs vmapped; each env's stream is
then laid out contiguously so episodes are contiguous, as in D4RL files. The last step of every stream
is marked as a timeout (its true next observation is stored, so ``qlearning_dataset`` keeps it as a
truncated transition and no pair ever crosses two streams).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def rollout_d4rl(
    problem: Any,
    act: Callable[[jax.Array, jax.Array], jax.Array],
    key: jax.Array,
    num_steps: int,
    num_envs: int = 1,
) -> dict[str, np.ndarray]:
    """``num_steps`` transitions (rounded down to a multiple of ``num_envs``) of ``act(obs, key) -> env
    action`` in ``problem.env``. Returns observations, actions (env units), rewards, terminals, timeouts,
    next_observations, all numpy."""
    steps_per_env = num_steps // num_envs
    if steps_per_env <= 0:
        raise ValueError(f"num_steps ({num_steps}) must be at least num_envs ({num_envs})")
    env, params = problem.env, problem.env_params

    @jax.jit
    def run(key):
        k_reset, k_run = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_envs), params)

        def step(carry, k):
            obs, state = carry
            k_act, k_env = jax.random.split(k)
            action = jax.vmap(act)(obs, jax.random.split(k_act, num_envs))
            nobs, state, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_env, num_envs), state, action, params
            )
            out = {
                "observations": obs.astype(jnp.float32),
                "actions": action,
                "rewards": reward.astype(jnp.float32),
                "terminals": terminated,
                "timeouts": truncated,
                "next_observations": info["final_observation"].astype(jnp.float32),
            }
            return (nobs, state), out

        _, traj = jax.lax.scan(step, (obs, state), jax.random.split(k_run, steps_per_env))
        return traj

    traj = jax.device_get(run(key))
    out = {}
    for name, value in traj.items():
        value = np.asarray(value)
        value = np.swapaxes(value, 0, 1)  # (num_envs, steps, ...): each env's stream contiguous
        if name == "timeouts":
            value = value.copy()
            value[:, -1] = ~np.asarray(traj["terminals"]).swapaxes(0, 1)[:, -1]
        out[name] = value.reshape((num_envs * steps_per_env,) + value.shape[2:])
    if out["actions"].dtype.kind in "iu":
        out["actions"] = out["actions"].astype(np.int32)
    out["observations"] = out["observations"].reshape(len(out["rewards"]), -1)
    out["next_observations"] = out["next_observations"].reshape(len(out["rewards"]), -1)
    out["terminals"] = out["terminals"].astype(bool)
    out["timeouts"] = out["timeouts"].astype(bool)
    return out
