"""H2O: dynamics-aware hybrid offline-and-online RL (Niu et al., NeurIPS 2022).

Setting: a fixed, small dataset D_real from the real system (the real env is only used to evaluate) and a
simulator M_sim that may be stepped freely but whose dynamics differ by a named shift (gravity x2, ...).
Every iteration takes ONE sim env step (policy action, stored in the sim buffer, no warm-up), one step of
two discriminators, then one SAC-style update on a batch of real + sim transitions in which

* each sim Bellman error is weighted by the estimated dynamics ratio w = P_real(s'|s,a) / P_sim(s'|s,a),
* a CQL-like penalty pushes Q down on sim pairs with a large dynamics gap and up on real pairs.

Discriminators (class 0 = real, 1 = sim; logits squashed to [-b, b] by b*tanh, b = 2):

    D_sa(s, a) -> l_sa,   D_sas(s, a, s') -> l_sas,   p(.|s,a) = softmax(l_sa),  p(.|s,a,s') = softmax(l_sas + l_sa)
    L_sa  = mean_real[-log p(0|s,a)]     + mean_sim[-log p(1|s,a)]
    L_sas = mean_real[-log p(0|s,a,s')]  + mean_sim[-log p(1|s,a,s')]
    minimise L_sa + L_sas over both networks (D_sa also gets L_sas's gradient), inputs + N(0, 0.1^2) noise.

Dynamics ratio and gap score (just-updated discriminators, no input noise; the D_sa terms cancel):

    log w(s,a,s') = clip(l_sas,0 - l_sas,1, log 1e-5, log 1)                    (so w in [e^-4, 1])
    u(s,a)        = mean_{k=1..10} ( l_sas,1 - l_sas,0 )(s, a, s' + sigma_s eps_k)  (estimated log P_sim/P_real)
    omega_i       = u_i / sum_{j: u_j > 0} u_j  over the sim batch for u_i > 0, else 0   (all <= 0: uniform)

Critic loss (twin critics, y = r + gamma (1 - terminated) min_j Qbar_j(s', a'), a' ~ pi(.|s'), no entropy
term in the backup):

    L_Q = mean_real (Q - y)^2 + mean_sim w (Q - y)^2
          + beta * clip( log sum_{i in sim batch} omega_i exp Q(s_i, a_i) - mean_real Q(s, a), -1000, 1000 )

Actor and temperature: SAC's losses over all real + sim states of the batch (``algorithms/sac.py``).

Numerics: log omega is computed in log space with a mask (non-positive gaps get log omega = -inf, i.e. a
weight of exactly 0, and the all-non-positive case falls back to uniform weights), so the case where every
gap is clamped cannot produce 0/0 = NaN as the official code's clamp-to-1e-45-then-normalise does.

``weighting="none"`` is the naive sim+real mix (SAC + the same penalty with w = 1 and uniform omega).
Numbers follow the official code (t6-thu/H2O; docs/algorithms/h2o.md). Deviations: the
policy's log-std is SAC's clamped head, not the official m*raw + o with learnable scalars; the discriminator
step runs before the critic and actor steps, and the actor step after the critic step (SAC's order).
"""

from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.training.train_state import TrainState

from algorithms import _sac_core as sac
from algorithms._sac_core import strong_types
from algorithms._sim import (
    discriminator_logits,
    flat_dataset,
    init_discriminator,
    log_dynamics_ratio,
    require_sim,
    sim_problem,
    update_discriminators,
)
from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget, Phase
from hybrid_rl.buffers import buffer_sample, dataset_sample, offline_batch_split, sample_mixed
from hybrid_rl.problem import Problem


@dataclasses.dataclass(frozen=True)
class Config(sac.Config):
    total_steps: int = 100_000  # sim env steps = gradient steps (one sim step per update)
    warmup_steps: int = 0  # the official code starts updating at once
    buffer_size: int = 0  # sim buffer capacity; 0 = 10x the real dataset size (capped at total_steps)
    batch_size: int = 256  # RL batch: offline_fraction real + the rest sim
    offline_fraction: float = 0.5  # share of real transitions in the RL batch (128 real + 128 sim)
    backup_entropy: bool = False  # no entropy term in the target
    weighting: str = "h2o"  # "h2o": w and omega from the discriminators; "none": naive mix (w = 1, uniform omega)
    beta: float = 0.01  # weight of the omega-weighted conservative penalty (official cql_min_q_weight)
    penalty_clip: float = 1000.0  # the penalty's bracket is clipped to [-clip, clip]
    disc_batch_size: int = 256  # real and sim transitions each for the discriminator step
    disc_hidden_sizes: tuple[int, ...] = (256, 256)
    disc_lr: float = 3e-4  # Adam, one step per update
    disc_noise_std: float = 0.1  # Gaussian noise on s, a, s' of both classes while training the discriminators
    logit_bound: float = 2.0  # discriminator logits = bound * tanh(raw)
    ratio_clip_min: float = 1e-5  # w is clipped to [min, max]
    ratio_clip_max: float = 1.0
    gap_num_next_states: int = 10  # noisy copies of s' averaged in the gap score u
    gap_noise_scale: float = 1.0  # their noise std = scale * per-dimension std of the real data's states
    sim_shift: float = -1.0  # the sim's shift magnitude (k, or sigma for action noise); < 0: the pair's registered value


TRACED = sac.TRACED + ("disc_lr", "beta", "sim_shift")


# ------------------------------------------------------------------------------------------------
# The simulator (shared with DARC, SAC-sim and RLPD-sim)
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# Discriminators
# ------------------------------------------------------------------------------------------------


def clipped_log_ratio(l_sas, clip_min: float, clip_max: float):
    """log w, with w clipped to [clip_min, clip_max], computed in log space."""
    return jnp.clip(log_dynamics_ratio(l_sas), math.log(clip_min), math.log(clip_max))


def gap_score(apply_fn, params, obs, action, next_obs, key, noise_std, num_next_states: int):
    """u(s, a) = mean over noisy copies s' + noise_std * eps of (l_sas,1 - l_sas,0): estimated log P_sim/P_real.

    Not clamped here (log_omega masks the non-positive entries)."""
    noise = noise_std * jax.random.normal(key, (num_next_states,) + next_obs.shape)
    noisy_next = next_obs[None] + noise
    bcast = lambda x: jnp.broadcast_to(x[None], (num_next_states,) + x.shape)  # noqa: E731
    _, l_sas = discriminator_logits(apply_fn, params, bcast(obs), bcast(action), noisy_next)
    return -log_dynamics_ratio(l_sas).mean(axis=0)


def log_omega(u):
    """log omega_i = log u_i - log sum_{j: u_j > 0} u_j for u_i > 0, -inf (weight 0) otherwise; uniform
    (-log B) when no u is positive. Never NaN; exp(log omega) sums to 1."""
    chex.assert_rank(u, 1)
    positive = u > 0
    log_u = jnp.where(positive, jnp.log(jnp.where(positive, u, 1.0)), -jnp.inf)
    any_positive = positive.any()
    norm = jnp.where(any_positive, jax.nn.logsumexp(jnp.where(any_positive, log_u, 0.0)), 0.0)
    return jnp.where(any_positive, log_u - norm, -jnp.log(jnp.float32(u.shape[0])))


def h2o_penalty(q_real, q_sim, log_w_omega, beta, clip: float):
    """beta * mean over critics of clip( logsumexp_i (Q_sim,i + log omega_i) - mean Q_real, -clip, clip ).

    q_real: (E, B_real), q_sim: (E, B_sim), log_w_omega: (B_sim,). Returns (penalty, bracket per critic)."""
    chex.assert_equal_shape([q_sim[0], log_w_omega])
    bracket = jax.nn.logsumexp(q_sim + jax.lax.stop_gradient(log_w_omega)[None], axis=-1) - q_real.mean(axis=-1)
    return beta * jnp.mean(jnp.clip(bracket, -clip, clip)), bracket


def bellman_weights(log_w, n_real: int):
    """Per-sample weights for ``sac.critic_loss`` on [real rows; sim rows] so that its mean equals
    mean_real (Q - y)^2 + mean_sim w (Q - y)^2."""
    n_sim = log_w.shape[0]
    total = n_real + n_sim
    return jnp.concatenate([jnp.full((n_real,), total / n_real), (total / n_sim) * jnp.exp(log_w)])


# ------------------------------------------------------------------------------------------------
# Agent
# ------------------------------------------------------------------------------------------------


@struct.dataclass
class H2OState:
    sac: sac.SACState  # actor, twin critics, temperature, the SIM buffer and the SIM env's state
    discriminator: TrainState  # params {"sa": D_sa, "sas": D_sas}


def make(config: Config, problem: Problem, name: str = "h2o") -> Agent:
    require_sim(problem, name)
    real = flat_dataset(problem, name)
    if config.weighting not in ("h2o", "none"):
        raise ValueError(f"weighting must be 'h2o' or 'none', got {config.weighting!r}")
    if config.utd != 1:
        raise ValueError(f"{name} takes one update per sim step; utd must be 1, got {config.utd}")
    n_real, n_sim = offline_batch_split(config.batch_size, config.offline_fraction)
    if n_real == 0 or n_sim == 0:
        raise ValueError(f"{name} needs real and sim rows in each batch; offline_fraction={config.offline_fraction}")
    num_real = int(real.reward.shape[0])
    buffer_size = config.buffer_size if config.buffer_size > 0 else 10 * num_real
    config = dataclasses.replace(config, buffer_size=buffer_size)
    to_sim = lambda hparams: sim_problem(problem, hparams["sim_shift"])  # noqa: E731
    base = sac.make(config, problem, name=name, env_problem=to_sim)
    target_entropy = -config.target_entropy_scale * problem.action_dim
    state_std = jnp.asarray(np.std(np.asarray(real.obs), axis=0), jnp.float32) * config.gap_noise_scale

    def init(key, hparams) -> H2OState:
        k_sac, k_disc = jax.random.split(key)
        disc = init_discriminator(k_disc, config, problem.obs_dim, problem.action_dim, hparams["disc_lr"])
        return strong_types(H2OState(sac=base.init(k_sac, hparams), discriminator=disc))

    def update(state: H2OState, key):
        s, disc = state.sac, state.discriminator
        k_dr, k_ds, k_dn, k_batch, k_gap, k_critic, k_actor = jax.random.split(key, 7)
        # 1. the discriminators, on their own 256 real + 256 sim batch
        disc, disc_metrics = update_discriminators(
            disc, k_dn, dataset_sample(real, k_dr, config.disc_batch_size),
            buffer_sample(s.buffer, k_ds, config.disc_batch_size), config.disc_noise_std,
        )
        # 2. dynamics ratio w and gap score u on the sim part of the RL batch (real rows first)
        batch = sample_mixed(k_batch, s.buffer, real, config.batch_size, config.offline_fraction)
        sim_rows = jax.tree.map(lambda x: x[n_real:], batch)
        _, l_sas = discriminator_logits(disc.apply_fn, disc.params, sim_rows.obs, sim_rows.action, sim_rows.next_obs)
        log_w = clipped_log_ratio(l_sas, config.ratio_clip_min, config.ratio_clip_max)
        u = gap_score(disc.apply_fn, disc.params, sim_rows.obs, sim_rows.action, sim_rows.next_obs, k_gap,
                      state_std, config.gap_num_next_states)
        if config.weighting == "h2o":
            log_w_used, log_om = log_w, log_omega(u)
        else:
            log_w_used, log_om = jnp.zeros(n_sim), jnp.full((n_sim,), -math.log(n_sim))
        log_w_used, log_om = jax.lax.stop_gradient(log_w_used), jax.lax.stop_gradient(log_om)
        # 3. critic: weighted Bellman errors + beta * omega-weighted penalty
        beta = s.hparams["beta"]

        def penalty(critic_params, q, _key):
            value, bracket = h2o_penalty(q[:, :n_real], q[:, n_real:], log_om, beta, config.penalty_clip)
            return value, {"penalty_bracket": bracket.mean()}

        s, critic_metrics = sac.update_critic(
            s, k_critic, batch, config, penalty=penalty, weights=bellman_weights(log_w_used, n_real)
        )
        # 4. actor and temperature on every state of the batch
        s, actor_metrics = sac.update_actor_and_temperature(s, k_actor, batch.obs, target_entropy, config)
        metrics = {
            **disc_metrics, **critic_metrics, **actor_metrics,
            "gap_score": u.mean(),  # mean estimated log P_sim/P_real on sim transitions (E1c)
            "sim_weight": jnp.exp(log_w).mean(),  # mean dynamics ratio w on sim transitions
            "omega_max": jnp.exp(log_om).max(),
        }
        return H2OState(sac=s, discriminator=disc), metrics

    def iteration(state: H2OState):
        s = state.sac
        key, k_collect, k_update = jax.random.split(s.key, 3)
        s, finished = sac.collect(s.replace(key=key), k_collect, to_sim(s.hparams), random_actions=False)
        state, metrics = jax.lax.scan(update, state.replace(sac=s), jax.random.split(k_update, config.num_envs))
        metrics = jax.tree.map(jnp.mean, metrics)
        return state, {**metrics, "train_episode_return": finished}

    def policy(state: H2OState, obs, key, deterministic: bool):
        return base.policy(state.sac, obs, key, deterministic)

    iters = -(-config.total_steps // config.num_envs)
    return Agent(
        init=init,
        phases=(
            Phase("online", iteration, iters, env_steps_per_iteration=config.num_envs,
                  grad_steps_per_iteration=config.num_envs),
        ),
        policy=policy,
    )


@dataclasses.dataclass(frozen=True)
class NaiveMixConfig(Config):
    weighting: str = "none"  # SAC + CQL-style penalty on real + sim with w = 1 and uniform omega


SPEC_H2O = AlgorithmSpec(
    name="h2o",
    description="H2O: sim steps + real data, discriminator-weighted Bellman errors and gap-weighted penalty.",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="required",
    action_kinds=("continuous",),
    paper="Niu et al. When to Trust Your Simulator: Dynamics-Aware Hybrid Offline-and-Online RL. NeurIPS 2022",
    budget=Budget("total_steps", "env_steps", warmup_field="warmup_steps"),
)

SPEC_H2O_NAIVE = AlgorithmSpec(
    name="h2o_naive",
    description="Naive sim+real mix: H2O with w = 1 and uniform omega (no dynamics weighting).",
    config_cls=NaiveMixConfig,
    make=lambda config, problem: make(config, problem, name="h2o_naive"),
    traced=TRACED,
    dataset="required",
    action_kinds=("continuous",),
    paper="Niu et al. NeurIPS 2022 (its naive-mix baseline)",
    budget=Budget("total_steps", "env_steps", warmup_field="warmup_steps"),
)
