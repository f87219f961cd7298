"""The conservative (CQL) family's shared pieces: CQL(H)'s importance-sampled logsumexp, optionally with
Cal-QL's lower bound on the policy actions' Q-values, and the reward transform r' = scale r + bias.

Used by ``algorithms/cql.py`` and ``algorithms/cal_ql.py`` (one implementation, so the two cannot drift).

Importance-sampled logsumexp at temperature T over M sampled actions a_j with proposal log-densities
log mu_j (the official CQL and Cal-QL code's form, which divides log mu by T as well):

    T * logsumexp_j ( (Q(s, a_j) - log mu_j) / T )

Proposals, N each, all scored by Q(s, .): uniform on [-1, 1]^d (log mu = -d log 2), a ~ pi(.|s) and
a ~ pi(.|s') (their own log pi). Cal-QL replaces Q(s, a_j) of the 2N policy actions by max(Q(s, a_j), G(s))
with G(s) the Monte-Carlo return-to-go bound (no gradient); a bound of -inf leaves CQL's term.
"""

from __future__ import annotations

import math
from typing import Optional

import chex
import jax
import jax.numpy as jnp


def importance_logsumexp(q, log_density, temp):
    """T * logsumexp_j ((q_j - log mu_j) / T) over the first axis (the sampled actions)."""
    return temp * jax.nn.logsumexp((q - log_density) / temp, axis=0)


def ood_logsumexp(critic_apply, critic_params, actor, obs, next_obs, key, num_actions: int, temp,
                  lower_bound: Optional[jax.Array] = None):
    """Per critic, shape (E, B): the importance-sampled logsumexp over ``num_actions`` uniform actions and
    ``num_actions`` each from pi(.|s) and pi(.|s'), all scored at s. With ``lower_bound`` (B,), the policy
    actions' Q-values are bounded below by it (Cal-QL); the uniform ones never are. Actions and densities
    carry no gradient."""
    k_rand, k_pi, k_next = jax.random.split(key, 3)
    a_pi, log_pi = actor.apply_fn(actor.params, obs).sample_and_log_prob(seed=k_pi, sample_shape=num_actions)
    a_next, log_next = actor.apply_fn(actor.params, next_obs).sample_and_log_prob(seed=k_next,
                                                                                  sample_shape=num_actions)
    batch, action_dim = obs.shape[0], a_pi.shape[-1]
    chex.assert_shape(a_pi, (num_actions, batch, action_dim))
    a_rand = jax.random.uniform(k_rand, (num_actions, batch, action_dim), minval=-1.0, maxval=1.0)
    log_rand = jnp.full((num_actions, batch), -action_dim * math.log(2.0))
    actions = jax.lax.stop_gradient(jnp.concatenate([a_rand, a_pi, a_next], axis=0))  # (3N, B, d)
    log_density = jax.lax.stop_gradient(jnp.concatenate([log_rand, log_pi, log_next], axis=0))  # (3N, B)
    obs_rep = jnp.broadcast_to(obs[None], (actions.shape[0],) + obs.shape)
    q = critic_apply(critic_params, obs_rep, actions)  # (E, 3N, B)
    chex.assert_shape(q, (None, 3 * num_actions, batch))
    if lower_bound is not None:
        chex.assert_shape(lower_bound, (batch,))
        is_policy = (jnp.arange(3 * num_actions) >= num_actions)[None, :, None]
        q = jnp.where(is_policy, jnp.maximum(q, jax.lax.stop_gradient(lower_bound)[None, None, :]), q)
    return jax.vmap(lambda q_i: importance_logsumexp(q_i, log_density, temp))(q)


def scale_rewards(reward, scale, bias):
    """r' = scale r + bias: the reward the critic, the conservative term and Cal-QL's bound all see."""
    return scale * reward + bias
