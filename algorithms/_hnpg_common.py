"""Pieces of HNPG/NPG shared by its two modes: the per-level mode on the combination lock (``algorithms/hnpg.py``)
and the stationary mode on every other env (``algorithms/_hnpg_stationary.py``).

Policy distributions on raw network outputs (categorical, or a Gaussian with a state-independent log-std), the
sampled value and advantage estimates, the full-batch critic regression, the TRPO/NPG actor step and the
Monte-Carlo critic targets. See docs/algorithms/hnpg.md.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from hybrid_rl.networks import MLP
from hybrid_rl.onpolicy import trpo_step


class LevelPolicy(nn.Module):
    """pi_h: obs -> hidden (tanh) -> logits (categorical) or Gaussian mean (head x0.1); plus a log-std."""

    action_dim: int
    hidden_sizes: Sequence[int]
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs):
        out = MLP(self.hidden_sizes, self.action_dim, activation="tanh", output_scale=0.1)(obs)
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,))
        return out, log_std


class LevelCritic(nn.Module):
    """Q_h(s, a): concat(obs, action features) -> 64 -> tanh -> 64 -> tanh -> 1 (head x0.1)."""

    hidden_sizes: Sequence[int]

    @nn.compact
    def __call__(self, obs, action_features):
        x = jnp.concatenate([obs, action_features], axis=-1)
        return MLP(self.hidden_sizes, 1, activation="tanh", output_scale=0.1)(x)[..., 0]


def log_prob(discrete: bool, out, log_std, action):
    if discrete:
        return jnp.take_along_axis(jax.nn.log_softmax(out), action[..., None].astype(jnp.int32), -1)[..., 0]
    z = (action - out) / jnp.exp(log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def sample(discrete: bool, key, out, log_std):
    if discrete:
        return jax.random.categorical(key, out).astype(jnp.int32)
    return out + jnp.exp(log_std) * jax.random.normal(key, out.shape)


def kl_divergence(discrete: bool, old_out, old_log_std, out, log_std):
    """KL(pi_old || pi) per state."""
    if discrete:
        lp_old, lp = jax.nn.log_softmax(old_out), jax.nn.log_softmax(out)
        return jnp.sum(jnp.exp(lp_old) * (lp_old - lp), axis=-1)
    var_old, var = jnp.exp(2 * old_log_std), jnp.exp(2 * log_std)
    return jnp.sum(log_std - old_log_std + (var_old + (old_out - out) ** 2) / (2 * var) - 0.5, axis=-1)


def level_slice(tree, h):
    return jax.tree.map(lambda x: x[h], tree)


def resolve_gamma(hparams: dict, default: float) -> dict:
    """``gamma < 0`` in the config means the mode's default (1 on the lock, 0.99 on stationary envs)."""
    return {**hparams, "gamma": jnp.where(hparams["gamma"] < 0, jnp.float32(default), hparams["gamma"])}


def sampled_value(pi_apply, q_apply, discrete: bool, num_samples: int, key, pi_params, q_params, obs):
    """V(s) = mean over ``num_samples`` actions a ~ pi(.|s) of Q(s, a)."""
    out, log_std = pi_apply(pi_params, obs)
    keys = jax.random.split(key, num_samples)
    qs = jax.vmap(lambda k: q_apply(q_params, obs, sample(discrete, k, out, log_std)))(keys)
    return qs.mean(0)


def network_fns(pi_net, q_net, features, discrete: bool, value_samples: int):
    """(pi_apply, q_apply, value): pi(params, obs) -> (out, log_std), Q(params, obs, action) on the action's
    ``features``, and V(key, pi_params, q_params, obs) = mean of ``value_samples`` samples of Q(s, a ~ pi)."""

    def pi_apply(params, obs):
        return pi_net.apply(params, obs)

    def q_apply(params, obs, action):
        return q_net.apply(params, obs, features(action))

    def value(key, pi_params, q_params, obs):
        return sampled_value(pi_apply, q_apply, discrete, value_samples, key, pi_params, q_params, obs)

    return pi_apply, q_apply, value


def sampled_advantage(pi_apply, q_apply, discrete: bool, num_samples: int, key, pi_params, q_params, obs):
    """A fresh a ~ pi(.|s) per state and its advantage A = Q(s, a) - V(s) (the offline states' actions)."""
    k1, k2 = jax.random.split(key)
    out, log_std = pi_apply(pi_params, obs)
    a = sample(discrete, k1, out, log_std)
    return a, q_apply(q_params, obs, a) - sampled_value(pi_apply, q_apply, discrete, num_samples, k2, pi_params,
                                                         q_params, obs)


def fit_regression(loss_fn, params, tx, opt_state, steps: int):
    """``steps`` full-batch optimiser steps on ``loss_fn(params)``; returns (params, opt state, last loss)."""

    def gd(carry, _):
        p, s = carry
        loss, g = jax.value_and_grad(loss_fn)(p)
        upd, s = tx.update(g, s, p)
        return (optax.apply_updates(p, upd), s), loss

    (params, opt_state), losses = jax.lax.scan(gd, (params, opt_state), None, length=steps)
    return params, opt_state, losses[-1]


def npg_actor_step(pi_apply, discrete: bool, config, hp, pi_params, obs, action, adv):
    """One TRPO step (``hybrid_rl.onpolicy.trpo_step``) on mean(A pi(a|s) / pi_old(a|s)) with the Fisher
    of the mean KL(pi_old || pi) over ``obs``; returns (new params, info)."""
    adv = jax.lax.stop_gradient(adv)
    old_out, old_ls = jax.lax.stop_gradient(pi_apply(pi_params, obs))
    old_lp = log_prob(discrete, old_out, old_ls, action)

    def surrogate(p):
        out, ls = pi_apply(p, obs)
        return jnp.mean(adv * jnp.exp(log_prob(discrete, out, ls, action) - old_lp))

    def kl(p):
        out, ls = pi_apply(p, obs)
        return jnp.mean(kl_divergence(discrete, old_out, old_ls, out, ls))

    return trpo_step(surrogate, kl, pi_params, hp["max_kl"], hp["damping"], config.cg_iters, config.backtracks,
                     config.accept_ratio, config.check_kl)


def critic_targets(reward, terminated, next_q, is_last):
    """y = r at the last level (or a terminal), else r + gamma Q_{h+1}(s', a') (gamma applied by the caller)."""
    return reward + jnp.where(is_last | terminated, 0.0, next_q)
