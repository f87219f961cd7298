"""The simulator side of the sim/real family (H2O, its naive mix, DARC, SAC-sim, RLPD-sim).

What they share: checking that the problem is a sim/real pair and building the simulator at a traced shift,
the real dataset as flat transitions, and the two dynamics classifiers D_sa(s, a) and D_sas(s, a, s') that
tell real from simulated transitions. log P_real(s'|s,a) / P_sim(s'|s,a) = log D_sas(real|s,a,s') / D_sas(sim|s,a,s')
- log D_sa(real|s,a) / D_sa(sim|s,a) (Eysenbach et al. 2021, eq. 5; Niu et al. 2022, eq. 4). See
docs/algorithms/h2o.md and docs/algorithms/darc.md.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from hybrid_rl.networks import MLP
from hybrid_rl.problem import Problem
from hybrid_rl.training import adam
from hybrid_rl.types import Transition


def require_sim(problem: Problem, name: str) -> None:
    if problem.sim_env is None:
        from envs import list_envs

        pairs = [n for n, s in list_envs().items() if s.make_sim is not None]
        raise ValueError(
            f"{name} needs a sim/real env pair; env {problem.env_name!r} has no simulator "
            f"(pairs: {', '.join(pairs)})"
        )


def sim_problem(problem: Problem, shift) -> Problem:
    """``problem`` with the simulator as its env. ``shift`` (may be traced) sets the pair's shift magnitude
    (``envs.sim_real.with_shift``); a negative value keeps the registered sim value."""
    params = problem.sim_params
    if hasattr(params, "shift_field"):  # envs.sim_real pairs; other simulators are used as registered
        from envs.sim_real import shift_value, with_shift

        params = with_shift(params, jnp.where(shift < 0, shift_value(params), shift))
    return dataclasses.replace(problem, env=problem.sim_env, env_params=params)


class BoundedClassifier(nn.Module):
    """MLP with 2 outputs (real, sim) squashed to [-bound, bound] by bound * tanh (``bound <= 0``: unbounded
    logits, DARC's official classifier)."""

    hidden_sizes: Sequence[int] = (256, 256)
    bound: float = 2.0

    @nn.compact
    def __call__(self, x):
        logits = MLP(self.hidden_sizes, 2)(x)
        return self.bound * jnp.tanh(logits) if self.bound > 0 else logits


def discriminator_logits(apply_fn, params, obs, action, next_obs):
    """(l_sa, l_sas), each (..., 2): D_sa on [s, a] and D_sas on [s, a, s']."""
    l_sa = apply_fn(params["sa"], jnp.concatenate([obs, action], axis=-1))
    l_sas = apply_fn(params["sas"], jnp.concatenate([obs, action, next_obs], axis=-1))
    return l_sa, l_sas


def classifier_losses(l_sa_real, l_sas_real, l_sa_sim, l_sas_sim):
    """(L_sa, L_sas): cross-entropies with the real (class 0) and sim (class 1) terms summed; the (s, a, s')
    classifier's probabilities are softmax(l_sas + l_sa) (DARC's construction)."""
    chex.assert_equal_shape([l_sa_real, l_sas_real])
    chex.assert_equal_shape([l_sa_sim, l_sas_sim])
    log_p = jax.nn.log_softmax
    loss_sa = -jnp.mean(log_p(l_sa_real)[..., 0]) - jnp.mean(log_p(l_sa_sim)[..., 1])
    loss_sas = -jnp.mean(log_p(l_sas_real + l_sa_real)[..., 0]) - jnp.mean(log_p(l_sas_sim + l_sa_sim)[..., 1])
    return loss_sa, loss_sas


def discriminator_loss(params, apply_fn, real: Transition, sim: Transition, key, noise_std):
    """L_sa + L_sas on noisy inputs; aux: (L_sa, L_sas)."""
    keys = jax.random.split(key, 6)
    noisy = lambda k, x: x + noise_std * jax.random.normal(k, x.shape)  # noqa: E731
    l_sa_r, l_sas_r = discriminator_logits(
        apply_fn, params, noisy(keys[0], real.obs), noisy(keys[1], real.action), noisy(keys[2], real.next_obs)
    )
    l_sa_s, l_sas_s = discriminator_logits(
        apply_fn, params, noisy(keys[3], sim.obs), noisy(keys[4], sim.action), noisy(keys[5], sim.next_obs)
    )
    loss_sa, loss_sas = classifier_losses(l_sa_r, l_sas_r, l_sa_s, l_sas_s)
    return loss_sa + loss_sas, (loss_sa, loss_sas)


def update_discriminators(disc: TrainState, key, real: Transition, sim: Transition, noise_std):
    (_, (loss_sa, loss_sas)), grads = jax.value_and_grad(discriminator_loss, has_aux=True)(
        disc.params, disc.apply_fn, real, sim, key, noise_std
    )
    return disc.apply_gradients(grads=grads), {"disc_sa_loss": loss_sa, "disc_sas_loss": loss_sas}


def log_dynamics_ratio(l_sas):
    """log P_real(s'|s,a) / P_sim(s'|s,a) = l_sas,0 - l_sas,1 (the D_sa logits cancel)."""
    return l_sas[..., 0] - l_sas[..., 1]


def flat_dataset(problem: Problem, name: str) -> Transition:
    data = problem.require_dataset(name, what="the real offline dataset (transitions of the real env)")
    return data.replace(obs=problem.flat_obs(data.obs), next_obs=problem.flat_obs(data.next_obs))


def init_discriminator(key, config, obs_dim: int, action_dim: int, lr) -> TrainState:
    net = BoundedClassifier(config.disc_hidden_sizes, config.logit_bound)
    k_sa, k_sas = jax.random.split(key)
    params = {
        "sa": net.init(k_sa, jnp.zeros((1, obs_dim + action_dim))),
        "sas": net.init(k_sas, jnp.zeros((1, 2 * obs_dim + action_dim))),
    }
    return TrainState.create(apply_fn=net.apply, params=params, tx=adam(lr))
