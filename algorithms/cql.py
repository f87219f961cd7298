"""CQL(H): Conservative Q-Learning (Kumar, Zhou, Tucker, Levine; NeurIPS 2020), offline, on SAC's core.

The critic loss is SAC's Bellman error plus a conservative term that pushes Q down on actions the policy
and a uniform proposal pick and up on the dataset's actions:

    L_Q = mean_i mean_D (Q_i(s, a) - y)^2
          + alpha_cql * mean_i ( mean_D [ T * log sum_{a_j} exp( Q_i(s, a_j) / T - log mu(a_j|s) ) ] - mean_D Q_i(s, a) )

with y = r + gamma (1 - terminated) min_i Qbar_i(s', a'), a' ~ pi(.|s') (no entropy term in the backup, as
in CORL), and the logsumexp over 3N actions (N = 10 each), importance-weighted by their proposal densities
mu (CQL(H) with importance sampling):

    a_j ~ U[-1, 1]^d    (log mu = -d log 2),   a_j ~ pi(.|s),   a_j ~ pi(.|s')   (log mu = their log pi)

all evaluated at Q(s, .), as T logsumexp_j ((Q(s, a_j) - log mu_j) / T) (``algorithms/_conservative.py``,
shared with Cal-QL; the official code's form). At T = 1 and up to the constant log 3N this is the
importance-sampling estimate of log integral exp(Q(s, a)) da; the official code and CORL omit the constant,
and so do we, so the Lagrange target gap means what it means there.

Rewards are transformed as r' = ``reward_scale`` r + ``reward_bias`` before anything sees them (official CQL
locomotion: 1 and 0, the defaults; the Cal-QL code's CQL runs use 10).

Lagrange variant (``cql_lagrange=True``): alpha_cql is multiplied by alpha' = clip(exp(log alpha'), 0, 1e6)
and the term becomes alpha' * alpha_cql * (gap - target_gap); log alpha' ascends on that term (so the gap is
driven toward the target).

The actor and temperature losses are SAC's (``algorithms/sac.py``); batches come only from the dataset.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
from flax import struct
from flax.training.train_state import TrainState

from algorithms import _sac_core as sac
from algorithms._conservative import importance_logsumexp, ood_logsumexp, scale_rewards  # noqa: F401
from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget, Phase
from hybrid_rl.buffers import dataset_sample
from hybrid_rl.problem import Problem
from hybrid_rl.training import adam


@dataclasses.dataclass(frozen=True)
class Config(sac.Config):
    total_steps: int = 100_000  # gradient steps on the offline data (CQL never steps an env)
    warmup_steps: int = 0  # no warm-up offline
    buffer_size: int = 1  # no online buffer is used
    offline_fraction: float = 1.0  # every batch comes from the dataset
    backup_entropy: bool = False  # CORL's default
    actor_lr: float = 1e-4  # the CQL paper's policy learning rate
    critic_lr: float = 3e-4
    cql_alpha: float = 5.0  # weight of the conservative term (locomotion)
    cql_num_actions: int = 10  # actions per proposal (uniform, pi(.|s), pi(.|s')) in the logsumexp
    cql_temp: float = 1.0  # temperature T of the logsumexp
    cql_lagrange: bool = False  # tune alpha' toward cql_target_gap
    cql_target_gap: float = 10.0  # Lagrange target of logsumexp - Q(data)
    cql_alpha_lr: float = 3e-4  # Adam on log alpha' (Lagrange only)
    reward_scale: float = 1.0  # r' = reward_scale r + reward_bias (official CQL locomotion: 1, 0)
    reward_bias: float = 0.0


TRACED = sac.TRACED + ("cql_alpha", "cql_alpha_lr", "cql_target_gap")


# ------------------------------------------------------------------------------------------------
# The conservative term
# ------------------------------------------------------------------------------------------------


def cql_penalty(critic_apply, critic_params, q_data, actor, obs, next_obs, key, num_actions, temp, weight,
                target_gap=0.0):
    """weight * mean_i (mean_B logsumexp_i - mean_B Q_i(s, a) - target_gap); also the gap per critic."""
    lse = ood_logsumexp(critic_apply, critic_params, actor, obs, next_obs, key, num_actions, temp)
    chex.assert_equal_shape([lse, q_data])
    gap = lse.mean(axis=-1) - q_data.mean(axis=-1)  # (E,)
    return weight * jnp.mean(gap - target_gap), gap


# ------------------------------------------------------------------------------------------------
# Agent
# ------------------------------------------------------------------------------------------------


def offline_data(config: Config, problem: Problem):
    """The dataset as CQL learns from it: flat observations, rewards r' = reward_scale r + reward_bias."""
    data = problem.dataset.replace(obs=problem.flat_obs(problem.dataset.obs),
                                   next_obs=problem.flat_obs(problem.dataset.next_obs))
    return data.replace(reward=scale_rewards(data.reward, config.reward_scale, config.reward_bias))


@struct.dataclass
class CQLState:
    sac: sac.SACState
    log_alpha_prime: TrainState  # Lagrange multiplier (unused unless cql_lagrange)


def make(config: Config, problem: Problem, name: str = "cql") -> Agent:
    problem.require_dataset(name)
    data = offline_data(config, problem)
    base = sac.make(dataclasses.replace(config, warmup_steps=0, total_steps=max(config.total_steps, 1)),
                    problem, name=name)
    target_entropy = -config.target_entropy_scale * problem.action_dim

    def init(key, hparams) -> CQLState:
        lagrange = TrainState.create(apply_fn=None, params={"log_alpha_prime": jnp.float32(0.0)},
                                     tx=adam(hparams["cql_alpha_lr"]))
        return sac.strong_types(CQLState(sac=base.init(key, hparams), log_alpha_prime=lagrange))

    def iteration(state: CQLState):
        s = state.sac
        key, k_batch, k_critic, k_penalty, k_actor = jax.random.split(s.key, 5)
        batch = dataset_sample(data, k_batch, config.batch_size)
        log_alpha_prime = state.log_alpha_prime.params["log_alpha_prime"]
        if config.cql_lagrange:
            weight = jnp.clip(jnp.exp(log_alpha_prime), 0.0, 1e6) * s.hparams["cql_alpha"]
            target_gap = s.hparams["cql_target_gap"]
        else:
            weight, target_gap = s.hparams["cql_alpha"], 0.0

        def penalty(critic_params, q, _key):
            value, gap = cql_penalty(s.critic.apply_fn, critic_params, q, s.actor, batch.obs, batch.next_obs,
                                     k_penalty, config.cql_num_actions, config.cql_temp,
                                     jax.lax.stop_gradient(weight), target_gap)
            return value, {"cql_gap": gap.mean()}

        s, critic_metrics = sac.update_critic(s.replace(key=key), k_critic, batch, config, penalty=penalty)
        s, actor_metrics = sac.update_actor_and_temperature(s, k_actor, batch.obs, target_entropy, config)
        lagrange = state.log_alpha_prime
        if config.cql_lagrange:
            gap = critic_metrics["cql_gap"]

            def lagrange_loss(p):  # ascend alpha' * (gap - target): descend its negative
                alpha_prime = jnp.clip(jnp.exp(p["log_alpha_prime"]), 0.0, 1e6)
                return -alpha_prime * s.hparams["cql_alpha"] * jax.lax.stop_gradient(gap - target_gap)

            lagrange = lagrange.apply_gradients(grads=jax.grad(lagrange_loss)(lagrange.params))
        metrics = {**critic_metrics, **actor_metrics, "cql_weight": weight}
        return CQLState(sac=s, log_alpha_prime=lagrange), metrics

    def policy(state: CQLState, obs, key, deterministic: bool):
        return base.policy(state.sac, obs, key, deterministic)

    return Agent(
        init=init,
        phases=(Phase("offline", iteration, config.total_steps, grad_steps_per_iteration=1),),
        policy=policy,
    )


SPEC = AlgorithmSpec(
    name="cql",
    description="CQL(H): SAC + importance-sampled logsumexp conservative penalty, offline (fixed or Lagrange alpha).",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="required",
    action_kinds=("continuous",),
    paper="Kumar, Zhou, Tucker, Levine. Conservative Q-Learning for Offline RL. NeurIPS 2020",
    budget=Budget("total_steps", "grad_steps"),
)
