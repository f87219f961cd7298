"""One evaluation loop for every algorithm: episodes run in parallel under ``vmap``, all inside jit.

The loop runs ``max_steps`` env steps (the env's episode limit) for ``num_episodes`` episodes at once and
counts each episode's first episode only (``hybrid_rl.wrappers.EpisodeStatistics``), so its length is
static and it scans without a while loop. It is ``hybrid_rl.rollout.rollout`` with one key per episode for
the policy and one for the env at every step (``split_per_env``).
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax

from hybrid_rl.rollout import rollout, split_per_env
from hybrid_rl.wrappers import EpisodeStatistics


def evaluate_policy(
    act: Callable[[chex.Array, chex.PRNGKey], chex.Array],
    env: Any,
    env_params: Any,
    key: chex.PRNGKey,
    num_episodes: int,
    max_steps: int,
) -> tuple[chex.Array, chex.Array]:
    """Returns (episode returns, episode lengths), each of shape (num_episodes,).

    ``act(obs, key) -> env action`` maps one observation to one env action.
    """

    def policy(obs, env_state, t, keys):
        return jax.vmap(act)(obs, keys), ()

    (_, stats), _ = rollout(EpisodeStatistics(env), env_params, policy, key, num_episodes, max_steps,
                            split_key=split_per_env, record=False)
    return stats.first_return, stats.first_length
