"""Soft Actor-Critic (Haarnoja et al., 2018) with an ensemble of critics and automatic temperature.

Its loss pieces are the core that RLPD, CQL, H2O, Cal-QL and MOORL reuse (they add to the critic loss,
they do not copy it). With ``offline_fraction > 0`` and a dataset, each batch mixes offline and online
transitions, which is all RLPD needs on top (see ``algorithms/rlpd.py``).

Losses, for a batch of (s, a, r, s', terminated) and alpha = exp(log alpha):

    y            = r + gamma (1 - terminated) [ min_{i in M} Qbar_i(s', a') - alpha log pi(a'|s') ],  a' ~ pi(.|s')
    L_Q(theta)   = mean_i mean_batch ( Q_i(s, a) - y )^2
    L_pi(phi)    = mean_batch [ alpha log pi(a~|s) - reduce_i Q_i(s, a~) ],   a~ ~ pi(.|s) (reparameterised)
    L_alpha      = - mean_batch [ log alpha * ( log pi(a~|s) + H_target ) ]

M is a random subset of ``num_min_critics`` of the ensemble (the whole twin pair for SAC, 2 of 10 for
RLPD); ``reduce`` is min (SAC) or mean (RLPD); Qbar are Polyak-averaged target critics. Targets bootstrap
through time-limit truncation: only ``terminated`` stops them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct
from flax.training.train_state import TrainState

from hybrid_rl.algorithm import Agent, Phase, PolicyExport
from hybrid_rl.buffers import ReplayBuffer, buffer_add, buffer_init, sample_mixed
from hybrid_rl.networks import CriticEnsemble, TanhGaussianPolicy, check_matmul_dtype, tanh_gaussian_mode
from hybrid_rl.problem import Problem
from hybrid_rl.training import adam, polyak, reset_envs, step_envs
from hybrid_rl.types import Transition


@dataclasses.dataclass(frozen=True)
class Config:
    total_steps: int = 100_000  # env steps, warm-up included
    num_envs: int = 1  # parallel envs; each iteration steps all of them once
    warmup_steps: int = 5_000  # uniform random actions and no updates before this many env steps
    buffer_size: int = 1_000_000  # capped at total_steps
    batch_size: int = 256
    utd: int = 1  # critic updates per env step (update-to-data ratio); the actor updates once per step
    hidden_sizes: tuple[int, ...] = (256, 256)
    matmul_dtype: str = "float32"  # or "bfloat16": operands of the Dense products (hybrid_rl/networks.py)
    num_critics: int = 2  # twin critics
    num_min_critics: int = 2  # target takes the min over a random subset of this many critics
    critic_layer_norm: bool = False
    actor_q_reduce: str = "min"  # "min" (SAC) or "mean" (RLPD, REDQ) over critics in the actor loss
    backup_entropy: bool = True  # include -alpha log pi(a'|s') in the target
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temp_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics
    init_temperature: float = 1.0
    target_entropy_scale: float = 1.0  # target entropy = -scale * |A|
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    offline_fraction: float = 0.0  # share of each batch drawn from the offline dataset


TRACED = ("actor_lr", "critic_lr", "temp_lr", "gamma", "tau")


@struct.dataclass
class SACState:
    actor: TrainState
    critic: TrainState
    target_critic_params: Any
    temperature: TrainState
    buffer: ReplayBuffer
    env_state: Any
    obs: chex.Array
    env_steps: chex.Array
    key: chex.PRNGKey
    hparams: dict


# ------------------------------------------------------------------------------------------------
# Losses (each a pure function of parameters and a batch; reused by RLPD, CQL, H2O, Cal-QL, MOORL)
# ------------------------------------------------------------------------------------------------


def soft_target(
    key, batch: Transition, actor: TrainState, critic: TrainState, target_params, log_alpha, gamma,
    num_min_critics: int, backup_entropy: bool,
) -> chex.Array:
    """y = r + gamma (1 - terminated) [min over a random critic subset of Qbar(s', a') - alpha log pi(a'|s')]."""
    k_pi, k_subset = jax.random.split(key)
    next_action, next_log_prob = actor.apply_fn(actor.params, batch.next_obs).sample_and_log_prob(seed=k_pi)
    next_q = critic.apply_fn(target_params, batch.next_obs, next_action)  # (E, B)
    num_critics = next_q.shape[0]
    if num_min_critics < num_critics:
        subset = jax.random.choice(k_subset, num_critics, (num_min_critics,), replace=False)
        next_q = next_q[subset]
    next_v = next_q.min(axis=0)
    if backup_entropy:
        next_v = next_v - jnp.exp(log_alpha) * next_log_prob
    return batch.reward + gamma * (1.0 - batch.terminated.astype(jnp.float32)) * next_v


def critic_loss(critic_params, critic: TrainState, batch: Transition, target: chex.Array, weights=None):
    """mean over critics and batch of weights_b (Q_i(s, a) - y)^2 (weights default to 1); also returns Q.

    Per-sample ``weights`` (shape (B,), no gradient) let H2O weight sim transitions by a dynamics ratio."""
    q = critic.apply_fn(critic_params, batch.obs, batch.action)  # (E, B)
    chex.assert_equal_shape([q[0], target])
    squared = (q - jax.lax.stop_gradient(target)[None]) ** 2
    if weights is not None:
        chex.assert_equal_shape([weights, target])
        squared = squared * jax.lax.stop_gradient(weights)[None]
    return jnp.mean(squared), q


def actor_loss(actor_params, key, actor: TrainState, critic: TrainState, obs, log_alpha, q_reduce: str):
    """mean [alpha log pi(a~|s) - reduce_i Q_i(s, a~)] with a~ reparameterised; returns (loss, log_prob)."""
    action, log_prob = actor.apply_fn(actor_params, obs).sample_and_log_prob(seed=key)
    q = critic.apply_fn(critic.params, obs, action)
    q = q.min(axis=0) if q_reduce == "min" else q.mean(axis=0)
    return jnp.mean(jnp.exp(log_alpha) * log_prob - q), log_prob


def temperature_loss(log_alpha, log_prob, target_entropy):
    """-mean[log alpha (log pi + H_target)]: raises alpha when entropy is below the target."""
    return -jnp.mean(log_alpha * jax.lax.stop_gradient(log_prob + target_entropy))


# ------------------------------------------------------------------------------------------------
# Updates
# ------------------------------------------------------------------------------------------------


def update_critic(state: SACState, key, batch: Transition, config: Config, penalty=None, weights=None):
    """One critic step on L_Q (+ an optional penalty term) and a Polyak step of the targets.

    ``penalty(critic_params, q, key) -> (scalar, metrics)`` is added to the loss (CQL's and H2O's
    conservative terms; ``q`` is Q_i(s, a) on the batch, shape (E, B)); ``weights`` go to ``critic_loss``.
    """
    k_target, k_penalty = jax.random.split(key)
    log_alpha = state.temperature.params["log_alpha"]
    target = soft_target(
        k_target, batch, state.actor, state.critic, state.target_critic_params, log_alpha,
        state.hparams["gamma"], config.num_min_critics, config.backup_entropy,
    )

    def loss_fn(params):
        loss, q = critic_loss(params, state.critic, batch, target, weights)
        if penalty is None:
            return loss, (q, loss, {})
        extra, extra_metrics = penalty(params, q, k_penalty)
        return loss + extra, (q, loss, extra_metrics)

    (loss, (q, bellman, extra_metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)
    target_params = polyak(state.target_critic_params, critic.params, state.hparams["tau"])
    metrics = {"critic_loss": loss, "q_mean": q.mean(), **extra_metrics}
    if penalty is not None:
        metrics["bellman_loss"] = bellman
    return state.replace(critic=critic, target_critic_params=target_params), metrics


def update_actor_and_temperature(state: SACState, key, obs, target_entropy: float, config: Config):
    log_alpha = state.temperature.params["log_alpha"]
    (loss, log_prob), grads = jax.value_and_grad(actor_loss, has_aux=True)(
        state.actor.params, key, state.actor, state.critic, obs, log_alpha, config.actor_q_reduce
    )
    actor = state.actor.apply_gradients(grads=grads)
    t_loss, t_grads = jax.value_and_grad(lambda p: temperature_loss(p["log_alpha"], log_prob, target_entropy))(
        state.temperature.params
    )
    temperature = state.temperature.apply_gradients(grads=t_grads)
    return state.replace(actor=actor, temperature=temperature), {
        "actor_loss": loss,
        "temperature_loss": t_loss,
        "alpha": jnp.exp(temperature.params["log_alpha"]),
        "entropy": -log_prob.mean(),
    }


def _check_problem(problem: Problem, config: Config, name: str):
    if problem.action_kind != "continuous":
        raise ValueError(f"{name} needs continuous actions; env {problem.env_name!r} has discrete actions")
    if config.offline_fraction > 0:
        problem.require_dataset(f"{name} with offline_fraction={config.offline_fraction}")
    if config.num_min_critics > config.num_critics:
        raise ValueError(f"num_min_critics ({config.num_min_critics}) > num_critics ({config.num_critics})")
    if config.actor_q_reduce not in ("min", "mean"):
        raise ValueError(f"actor_q_reduce must be 'min' or 'mean', got {config.actor_q_reduce!r}")
    if config.total_steps <= config.warmup_steps:
        raise ValueError(f"total_steps ({config.total_steps}) must exceed warmup_steps ({config.warmup_steps})")


def collect(state: SACState, key, problem: Problem, random_actions: bool):
    """Steps every env of ``problem`` once (uniform random or policy actions) and stores the transitions.

    Returns the new state and the mean return of the episodes that ended (NaN if none). Works on any
    state with SACState's actor/buffer/env fields (H2O's and DARC's step the simulator through it)."""
    k_act, k_env = jax.random.split(key)
    num_envs = state.obs.shape[0]
    if random_actions:
        action = jax.random.uniform(k_act, (num_envs, problem.action_dim), minval=-1.0, maxval=1.0)
    else:
        action = state.actor.apply_fn(state.actor.params, state.obs).sample(seed=k_act)
    obs, env_state, tr, finished = step_envs(problem, k_env, state.env_state, state.obs, action)
    state = state.replace(
        buffer=buffer_add(state.buffer, tr),
        env_state=env_state,
        obs=obs,
        env_steps=state.env_steps + num_envs,
    )
    return state, finished


def make(config: Config, problem: Problem, name: str = "sac", env_problem=None) -> Agent:
    """``env_problem(hparams) -> Problem`` (default: ``problem`` itself) is the problem whose env the agent
    resets and steps to collect data; evaluation always uses ``problem.env`` (the runner's problem). SAC-sim
    and RLPD-sim (``algorithms/darc.py``) pass the simulator here, with its shift taken from ``hparams``."""
    _check_problem(problem, config, name)
    if env_problem is None:
        env_problem = lambda hparams: problem  # noqa: E731
    action_dim = problem.action_dim
    target_entropy = -config.target_entropy_scale * action_dim
    check_matmul_dtype(config.matmul_dtype)
    actor_net = TanhGaussianPolicy(action_dim, config.hidden_sizes, config.log_std_min, config.log_std_max,
                                   matmul_dtype=config.matmul_dtype)
    critic_net = CriticEnsemble(config.num_critics, config.hidden_sizes, config.critic_layer_norm,
                                matmul_dtype=config.matmul_dtype)
    num_envs = config.num_envs
    capacity = min(config.buffer_size, config.total_steps)
    offline = problem.dataset
    if offline is not None and config.offline_fraction > 0:
        offline = offline.replace(obs=problem.flat_obs(offline.obs), next_obs=problem.flat_obs(offline.next_obs))

    def init(key, hparams) -> SACState:
        k_actor, k_critic, k_env, k_state = jax.random.split(key, 4)
        dummy_obs = jnp.zeros((1, problem.obs_dim))
        dummy_action = jnp.zeros((1, action_dim))
        actor = TrainState.create(
            apply_fn=actor_net.apply, params=actor_net.init(k_actor, dummy_obs), tx=adam(hparams["actor_lr"])
        )
        critic_params = critic_net.init(k_critic, dummy_obs, dummy_action)
        critic = TrainState.create(apply_fn=critic_net.apply, params=critic_params, tx=adam(hparams["critic_lr"]))
        temp_params = {"log_alpha": jnp.log(jnp.float32(config.init_temperature))}
        temperature = TrainState.create(apply_fn=None, params=temp_params, tx=adam(hparams["temp_lr"]))
        example = Transition.zeros((problem.obs_dim,), (action_dim,))
        obs, env_state = reset_envs(env_problem(hparams), k_env, num_envs)
        return SACState(
            actor=actor,
            critic=critic,
            target_critic_params=critic_params,
            temperature=temperature,
            buffer=buffer_init(example, capacity),
            env_state=env_state,
            obs=obs,
            env_steps=jnp.int32(0),
            key=k_state,
            hparams=hparams,
        )

    def warmup_iteration(state: SACState):
        key, k_collect = jax.random.split(state.key)
        state, finished = collect(state.replace(key=key), k_collect, env_problem(state.hparams), True)
        return state, {"train_episode_return": finished}

    def train_iteration(state: SACState):
        key, k_collect, k_update = jax.random.split(state.key, 3)
        state, finished = collect(state.replace(key=key), k_collect, env_problem(state.hparams), False)

        def block(state, block_key):
            # ``utd`` critic updates, then one actor and temperature update (RLPD's schedule; utd=1 is SAC).
            critic_keys = jax.random.split(block_key, config.utd + 1)

            def critic_step(state, k):
                k_batch, k_loss = jax.random.split(k)
                batch = sample_mixed(k_batch, state.buffer, offline, config.batch_size, config.offline_fraction)
                return update_critic(state, k_loss, batch, config)

            state, critic_metrics = jax.lax.scan(critic_step, state, critic_keys[:-1])
            k_batch, k_actor = jax.random.split(critic_keys[-1])
            batch = sample_mixed(k_batch, state.buffer, offline, config.batch_size, config.offline_fraction)
            state, actor_metrics = update_actor_and_temperature(state, k_actor, batch.obs, target_entropy, config)
            return state, {**jax.tree.map(jnp.mean, critic_metrics), **actor_metrics}

        state, metrics = jax.lax.scan(block, state, jax.random.split(k_update, num_envs))
        metrics = jax.tree.map(jnp.mean, metrics)
        return state, {**metrics, "train_episode_return": finished}

    def act(actor_params, obs, key, deterministic: bool):
        dist = actor_net.apply(actor_params, problem.flat_obs(obs))
        action = tanh_gaussian_mode(dist) if deterministic else dist.sample(seed=key)
        return problem.to_env_action(action)

    def policy(state: SACState, obs, key, deterministic: bool):
        return act(state.actor.params, obs, key, deterministic)

    def replay(state: SACState):
        return state.buffer.data, state.buffer.size

    warmup_iters = -(-config.warmup_steps // num_envs)
    train_iters = -(-(config.total_steps - config.warmup_steps) // num_envs)
    return Agent(
        init=init,
        phases=(
            Phase("warmup", warmup_iteration, warmup_iters, env_steps_per_iteration=num_envs, num_evals=1),
            Phase(
                "online", train_iteration, train_iters, env_steps_per_iteration=num_envs,
                grad_steps_per_iteration=num_envs * config.utd,
            ),
        ),
        policy=policy,
        export=PolicyExport(params=lambda s: s.actor.params, act=act, env_steps=lambda s: s.env_steps, replay=replay),
    )


@dataclasses.dataclass(frozen=True)
class RLPDConfig(Config):
    """RLPD's settings of SAC (defaults from the authors' locomotion configs; ``algorithms/rlpd.py``)."""

    warmup_steps: int = 5_000  # random actions before learning (RLPD's start_training)
    utd: int = 20  # critic updates per env step
    num_critics: int = 10
    num_min_critics: int = 2
    critic_layer_norm: bool = True
    actor_q_reduce: str = "mean"
    backup_entropy: bool = True
    init_temperature: float = 1.0
    target_entropy_scale: float = 0.5  # target entropy -|A|/2
    offline_fraction: float = 0.5  # symmetric sampling


def strong_types(tree):
    """Drops JAX's weak types from a freshly initialised state (gymnax resets leave some, e.g. Pendulum's
    ``last_u``), so the first chunk and the later ones see the same input types and compile once."""
    def strong(x):
        if not hasattr(x, "dtype") or jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return x
        return jnp.asarray(x, dtype=x.dtype)

    return jax.tree.map(strong, tree)
