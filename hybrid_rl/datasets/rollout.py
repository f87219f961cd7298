"""Roll a policy out in a registered env and return the transitions in D4RL's flat layout.

The rollout is ``hybrid_rl.rollout.rollout`` (one jitted ``lax.scan``, ``num_envs`` envs vmapped); each env's
stream is then laid out contiguously so episodes are contiguous, as in D4RL files. The last step of every stream
is marked as a timeout (its true next observation is stored, so ``qlearning_dataset`` keeps it as a
truncated transition and no pair ever crosses two streams).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from hybrid_rl.rollout import per_env, rollout


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

    @jax.jit
    def run(key):
        _, (tr, _, _) = rollout(problem.env, problem.env_params, per_env(act, num_envs), key, num_envs, steps_per_env)
        return {"observations": tr.obs, "actions": tr.action, "rewards": tr.reward, "terminals": tr.terminated,
                "timeouts": tr.truncated, "next_observations": tr.next_obs}

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
