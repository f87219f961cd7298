"""TD3+BC (Fujimoto and Gu, NeurIPS 2021, "A Minimalist Approach to Offline Reinforcement Learning").

TD3 with a behaviour-cloning term in the actor's loss and normalised states; defaults from the authors'
code (sfujim/TD3_BC). Networks: a deterministic actor pi(s) = tanh(MLP(s)) in [-1, 1]^d, twin critics
Q_1, Q_2 with Polyak targets, a target actor.

Losses on a batch (s, a, r, s', terminated), states normalised as below:

    target:  a'  = clip( pi_targ(s') + clip(eps, -c, c), -1, 1 ),   eps ~ N(0, sigma^2)
             y   = r + gamma (1 - terminated) min_i Qbar_i(s', a')
    critic:  L_Q  = sum_i mean_B ( Q_i(s, a) - y )^2
    actor:   L_pi = - lambda mean_B Q_1(s, pi(s)) + mean_{B,d} (pi(s) - a)^2

with lambda = alpha / mean_B |Q_1(s, pi(s))| taken without gradient; the BC term averages over the batch
*and* the action dimensions, as the official ``F.mse_loss(pi, a)`` does. sigma = ``policy_noise``, c = ``noise_clip`` (both in units of the
[-1, 1] action range, as in the official code with max_action = 1).

Policy delay: the official loop updates the critics every step and the actor and all targets on every
``policy_delay``-th step. Here one iteration is exactly one such cycle: ``policy_delay`` critic updates,
then one actor update and the Polyak step of the target actor and critics, so nothing is computed and
thrown away under ``vmap`` (``grad_steps_per_iteration = policy_delay``; ``num_steps`` counts critic
updates, as the official ``max_timesteps`` does). The official loop samples one batch per step, so its actor
update reuses that step's critic batch; here too, the actor trains on the batch of the cycle's last critic
update.

State normalisation (``normalize_states``): s <- (s - mu) / (sigma + 1e-3) with the dataset's per-dimension
mean and std, computed once from the dataset's states and applied to every state the agent sees
(evaluation included). Rewards are not scaled (the official code does not).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.training.train_state import TrainState

from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget, Phase
from hybrid_rl.buffers import dataset_sample
from hybrid_rl.networks import MLP, CriticEnsemble, check_matmul_dtype
from hybrid_rl.problem import Problem
from hybrid_rl.training import adam, polyak
from hybrid_rl.types import Transition


@dataclasses.dataclass(frozen=True)
class Config:
    num_steps: int = 1_000_000  # critic updates on the dataset (official max_timesteps: 1M)
    batch_size: int = 256
    hidden_sizes: tuple[int, ...] = (256, 256)
    matmul_dtype: str = "float32"  # or "bfloat16": operands of the Dense products (hybrid_rl/networks.py)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target actor and critics
    alpha: float = 2.5  # lambda = alpha / mean |Q|: the weight of the Q term against the BC term
    policy_noise: float = 0.2  # std of the target policy smoothing noise
    noise_clip: float = 0.5  # the smoothing noise is clipped to [-noise_clip, noise_clip]
    policy_delay: int = 2  # critic updates per actor (and target) update
    normalize_states: bool = True
    normalize_eps: float = 1e-3  # added to the std of the state normalisation


TRACED = ("actor_lr", "critic_lr", "gamma", "tau", "alpha", "policy_noise", "noise_clip")


class DeterministicActor(nn.Module):
    """pi(s) = tanh(MLP(s)) in [-1, 1]^d."""

    action_dim: int
    hidden_sizes: tuple[int, ...] = (256, 256)
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, obs):
        return jnp.tanh(MLP(self.hidden_sizes, self.action_dim, matmul_dtype=self.matmul_dtype)(obs))


@struct.dataclass
class TD3BCState:
    actor: TrainState
    critic: TrainState
    target_actor_params: Any
    target_critic_params: Any
    key: chex.PRNGKey
    hparams: dict


# ------------------------------------------------------------------------------------------------
# Losses
# ------------------------------------------------------------------------------------------------


def critic_target(target_actor_apply, target_actor_params, target_critic_apply, target_critic_params,
                  batch: Transition, key, gamma, policy_noise, noise_clip):
    """y = r + gamma (1 - terminated) min_i Qbar_i(s', clip(pi_targ(s') + clip(eps, -c, c), -1, 1))."""
    next_action = target_actor_apply(target_actor_params, batch.next_obs)
    noise = jnp.clip(policy_noise * jax.random.normal(key, next_action.shape), -noise_clip, noise_clip)
    next_action = jnp.clip(next_action + noise, -1.0, 1.0)
    next_q = target_critic_apply(target_critic_params, batch.next_obs, next_action).min(axis=0)
    return batch.reward + gamma * (1.0 - batch.terminated.astype(jnp.float32)) * next_q


def critic_loss(critic_params, critic_apply, obs, action, target):
    """sum over critics of mean_B (Q_i(s, a) - y)^2 (the official loss adds the two critics' MSEs)."""
    q = critic_apply(critic_params, obs, action)  # (E, B)
    chex.assert_equal_shape([q[0], target])
    return jnp.sum(jnp.mean((q - jax.lax.stop_gradient(target)) ** 2, axis=-1)), q


def actor_loss(actor_params, actor_apply, critic_params, critic_apply, obs, action, alpha):
    """-lambda mean_B Q_1(s, pi(s)) + mean_{B,d} (pi(s) - a)^2, lambda = alpha / mean_B |Q_1| (no gradient)."""
    pi = actor_apply(actor_params, obs)
    chex.assert_equal_shape([pi, action])
    q1 = critic_apply(critic_params, obs, pi)[0]
    lmbda = jax.lax.stop_gradient(alpha / jnp.mean(jnp.abs(q1)))
    bc = jnp.mean((pi - action) ** 2)
    return -lmbda * jnp.mean(q1) + bc, {"bc_loss": bc, "lambda": lmbda, "q_pi_mean": q1.mean()}


def state_normalizer(obs: np.ndarray, enabled: bool, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std + eps) of the dataset's states per dimension; (0, 1) when disabled."""
    obs = np.asarray(obs, np.float64).reshape(obs.shape[0], -1)
    if not enabled:
        return np.zeros(obs.shape[1], np.float32), np.ones(obs.shape[1], np.float32)
    return obs.mean(0).astype(np.float32), (obs.std(0) + eps).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Agent
# ------------------------------------------------------------------------------------------------


def make(config: Config, problem: Problem, name: str = "td3_bc") -> Agent:
    problem.require_dataset(name)
    if problem.action_kind != "continuous":
        raise ValueError(f"{name} needs continuous actions; env {problem.env_name!r} has discrete actions")
    if config.policy_delay < 1 or config.num_steps < 0:
        raise ValueError(f"policy_delay must be >= 1 and num_steps >= 0, got {config.policy_delay}, {config.num_steps}")
    flat_obs = problem.flat_obs(problem.dataset.obs)
    mean, std = state_normalizer(np.asarray(flat_obs), config.normalize_states, config.normalize_eps)
    mean, std = jnp.asarray(mean), jnp.asarray(std)

    def normalize(obs):
        return (obs - mean) / std

    data = problem.dataset.replace(obs=normalize(flat_obs),
                                   next_obs=normalize(problem.flat_obs(problem.dataset.next_obs)))
    action_dim = problem.action_dim
    check_matmul_dtype(config.matmul_dtype)
    actor_net = DeterministicActor(action_dim, config.hidden_sizes, config.matmul_dtype)
    critic_net = CriticEnsemble(2, config.hidden_sizes, matmul_dtype=config.matmul_dtype)

    def init(key, hparams) -> TD3BCState:
        k_actor, k_critic, k_state = jax.random.split(key, 3)
        obs0, act0 = jnp.zeros((1, problem.obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor_net.init(k_actor, obs0)
        critic_params = critic_net.init(k_critic, obs0, act0)
        return TD3BCState(
            actor=TrainState.create(apply_fn=actor_net.apply, params=actor_params, tx=adam(hparams["actor_lr"])),
            critic=TrainState.create(apply_fn=critic_net.apply, params=critic_params, tx=adam(hparams["critic_lr"])),
            target_actor_params=actor_params,
            target_critic_params=critic_params,
            key=k_state,
            hparams=hparams,
        )

    def critic_update(state: TD3BCState, key):
        hp = state.hparams
        k_batch, k_noise = jax.random.split(key)
        batch = dataset_sample(data, k_batch, config.batch_size)
        target = critic_target(actor_net.apply, state.target_actor_params, critic_net.apply,
                               state.target_critic_params, batch, k_noise, hp["gamma"], hp["policy_noise"],
                               hp["noise_clip"])
        (loss, q), grads = jax.value_and_grad(critic_loss, has_aux=True)(
            state.critic.params, critic_net.apply, batch.obs, batch.action, target)
        state = state.replace(critic=state.critic.apply_gradients(grads=grads))
        return state, ({"critic_loss": loss, "q_mean": q.mean()}, batch)

    def iteration(state: TD3BCState):
        hp = state.hparams
        key, k_critic = jax.random.split(state.key)
        state, (critic_metrics, batches) = jax.lax.scan(critic_update, state.replace(key=key),
                                                        jax.random.split(k_critic, config.policy_delay))
        batch = jax.tree.map(lambda x: x[-1], batches)  # the last critic update's batch, as the official loop
        (a_loss, info), grads = jax.value_and_grad(actor_loss, has_aux=True)(
            state.actor.params, actor_net.apply, state.critic.params, critic_net.apply, batch.obs, batch.action,
            hp["alpha"])
        actor = state.actor.apply_gradients(grads=grads)
        state = state.replace(
            actor=actor,
            target_actor_params=polyak(state.target_actor_params, actor.params, hp["tau"]),
            target_critic_params=polyak(state.target_critic_params, state.critic.params, hp["tau"]),
        )
        return state, {**jax.tree.map(jnp.mean, critic_metrics), "actor_loss": a_loss, **info}

    def policy(state: TD3BCState, obs, key, deterministic: bool):
        # The official evaluation acts with pi(s) (no exploration noise); ``deterministic`` changes nothing.
        action = actor_net.apply(state.actor.params, normalize(problem.flat_obs(obs)))
        return problem.to_env_action(action)

    return Agent(
        init=init,
        phases=(Phase("offline", iteration, -(-config.num_steps // config.policy_delay),
                      grad_steps_per_iteration=config.policy_delay),),
        policy=policy,
    )


SPEC = AlgorithmSpec(
    name="td3_bc",
    description="TD3+BC: TD3 with a BC term (weight alpha / mean|Q|) in the actor loss, normalised states; offline.",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="required",
    action_kinds=("continuous",),
    paper="Fujimoto, Gu. A Minimalist Approach to Offline Reinforcement Learning. NeurIPS 2021",
    budget=Budget("num_steps", "grad_steps"),
)
