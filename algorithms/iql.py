"""IQL: Implicit Q-Learning (Kostrikov, Nair, Levine; ICLR 2022), offline and then fine-tuned online.

Defaults follow the authors' code (ikostrikov/implicit_q_learning) and CORL for locomotion
(docs/algorithms/iql.md). Three networks: twin critics Q_i(s, a) with Polyak targets Qbar_i,
a state value V(s), and a Gaussian policy pi(a|s) = N(tanh(mu(s)), diag exp(log_std)^2) with a
state-independent log-std (as in the official code; no tanh squashing of the samples, so the
log-likelihood of dataset actions at the action bounds stays finite).

Losses on a batch (s, a, r, s', terminated), with r scaled as below:

    expectile:   L_tau(u)  = | tau - 1(u < 0) | u^2            (tau = 0.5: u^2 / 2, half the squared error)
    value:       L_V       = mean_B L_tau( min_i Qbar_i(s, a) - V(s) )
    critic:      L_Q       = mean_i mean_B ( Q_i(s, a) - [ r + gamma (1 - terminated) V(s') ] )^2
    actor:       L_pi      = - mean_B min( exp( beta (min_i Qbar_i(s, a) - V(s)) ), 100 ) log pi(a|s)

One update: V first, then the actor and the critic with the new V, then the Polyak step of Qbar (the
official order). The actor's learning rate is cosine-decayed over the offline steps (the official
code); online it is the constant ``actor_lr`` again [R: the decay has reached 0 by then].

Reward scaling (``reward_scaling``): "locomotion" multiplies rewards by L / (max - min) of the dataset's
complete-episode returns, L = ``reward_spread``, by default the env's episode length (the reference code
hard-codes 1000 for D4RL's 1000-step locomotion episodes; CORL passes the episode length): the scaled returns
then span one reward unit per step, so per-step rewards are O(1) whatever the episode length. "antmaze" uses
r - 1; "none" leaves them. The factor is computed once from the dataset and applied to online rewards too.

Fine-tuning (``online_steps > 0``): a second phase continues the same losses, one env step (with a policy
sample) and one update per iteration, sampling uniformly from the union of the dataset and the online
transitions (the official code appends online data to the dataset's buffer: no mixing ratio). The union
is sampled without copying the dataset per seed: an index in [0, N + n_online) picks a row of either.

Two phases, "offline" then "online", run by the runner in one run with one progress bar; metrics.csv's
``phase`` column tells them apart. ``online_steps=0`` (and ``eval_episodes=0`` if the env cannot be
simulated) trains offline only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training.train_state import TrainState

from algorithms import _sac_core as sac
from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget, Phase
from hybrid_rl.buffers import ReplayBuffer, buffer_add, buffer_init, dataset_sample
from hybrid_rl.networks import MLP, CriticEnsemble, check_matmul_dtype, dense
from hybrid_rl.problem import Problem
from hybrid_rl.training import adam, polyak, reset_envs, step_envs
from hybrid_rl.types import Transition


@dataclasses.dataclass(frozen=True)
class Config:
    offline_steps: int = 1_000_000  # gradient steps on the dataset (official: 1M)
    online_steps: int = 1_000_000  # fine-tuning env steps after the offline phase (0: offline only)
    num_envs: int = 1  # parallel envs online; one update per env step
    online_buffer_size: int = 1_000_000  # capacity for online transitions (capped at online_steps)
    batch_size: int = 256
    hidden_sizes: tuple[int, ...] = (256, 256)
    matmul_dtype: str = "float32"  # or "bfloat16": operands of the Dense products (hybrid_rl/networks.py)
    num_critics: int = 2  # twin critics; the value and actor use their min
    expectile: float = 0.7  # tau of the value's expectile regression (0.9 on AntMaze)
    beta: float = 3.0  # inverse temperature of the advantage weights (10 on AntMaze)
    max_weight: float = 100.0  # advantage weights exp(beta A) are clipped at this
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    actor_cosine_decay: bool = True  # cosine-decay the actor lr to 0 over the offline steps
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics
    log_std_min: float = -5.0  # clamp of the policy's state-independent log-std
    log_std_max: float = 2.0
    reward_scaling: str = "locomotion"  # "locomotion": reward_spread/(max-min episode return); "antmaze": r-1; "none"
    # locomotion: the scaled returns' spread; <= 0 (default): the env's episode length (1000 on D4RL locomotion,
    # the official constant; 200 on Pendulum, 100 on Reacher)
    reward_spread: float = -1.0


TRACED = ("actor_lr", "critic_lr", "value_lr", "gamma", "tau", "expectile", "beta")


# ------------------------------------------------------------------------------------------------
# Networks
# ------------------------------------------------------------------------------------------------


class GaussianPolicy(nn.Module):
    """N(tanh(mu(s)), diag exp(log_std)^2) with a learned state-independent log-std (official IQL)."""

    action_dim: int
    hidden_sizes: tuple[int, ...] = (256, 256)
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, obs) -> distrax.Distribution:
        h = MLP(self.hidden_sizes, None, matmul_dtype=self.matmul_dtype)(obs)
        mean = jnp.tanh(dense(self.action_dim, nn.initializers.orthogonal(0.01), self.matmul_dtype)(h))
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        std = jnp.exp(jnp.clip(log_std, self.log_std_min, self.log_std_max))
        return distrax.MultivariateNormalDiag(mean, jnp.broadcast_to(std, mean.shape))


class ValueNetwork(nn.Module):
    hidden_sizes: tuple[int, ...] = (256, 256)
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, obs):
        return MLP(self.hidden_sizes, 1, matmul_dtype=self.matmul_dtype)(obs)[..., 0]


# ------------------------------------------------------------------------------------------------
# Losses
# ------------------------------------------------------------------------------------------------


def expectile_loss(diff, expectile):
    """mean | tau - 1(u < 0) | u^2 with u = ``diff`` = target - prediction (tau = 0.5 gives MSE / 2)."""
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return jnp.mean(weight * diff**2)


def advantage_weights(advantage, beta, max_weight: float):
    """min(exp(beta A), max_weight), computed without overflow (exp is taken of a clipped exponent)."""
    return jnp.exp(jnp.minimum(beta * advantage, jnp.log(max_weight)))


def value_loss(value_params, value_apply, obs, q_target, expectile):
    """L_V = mean L_tau(min_i Qbar_i(s, a) - V(s)); also returns V(s)."""
    v = value_apply(value_params, obs)
    chex.assert_equal_shape([v, q_target])
    return expectile_loss(jax.lax.stop_gradient(q_target) - v, expectile), v


def awr_actor_loss(actor_params, actor_apply, obs, action, weights):
    """L_pi = -mean w log pi(a|s) with w the (clipped, gradient-free) advantage weights."""
    log_prob = actor_apply(actor_params, obs).log_prob(action)
    chex.assert_equal_shape([log_prob, weights])
    return -jnp.mean(jax.lax.stop_gradient(weights) * log_prob)


def dataset_episode_returns(data: Transition) -> np.ndarray:
    """Undiscounted returns of the complete episodes in a (flat, file-ordered) transition dataset.

    An episode ends at ``terminated | truncated``, or where the next row does not continue it
    (``next_obs[i] != obs[i+1]`` beyond float rounding: ``qlearning_dataset`` drops the timeout rows of files without
    next_observations). A trailing episode with no end is left out."""
    obs = np.asarray(data.obs).reshape(data.reward.shape[0], -1)
    next_obs = np.asarray(data.next_obs).reshape(obs.shape)
    ends = np.asarray(data.terminated | data.truncated).astype(bool).copy()
    ends[:-1] |= ~np.all(np.isclose(next_obs[:-1], obs[1:], rtol=1e-5, atol=1e-6), axis=-1)
    csum = np.concatenate([[0.0], np.cumsum(np.asarray(data.reward, np.float64))])
    end_idx = np.flatnonzero(ends) + 1
    return np.diff(csum[np.concatenate([[0], end_idx])])


def spread_target(config: Config, problem: Problem) -> float:
    """The locomotion scaling's target spread: ``reward_spread`` if positive, else the episode length (1000 for
    an env without a finite episode limit)."""
    if config.reward_spread > 0:
        return float(config.reward_spread)
    length = problem.max_episode_steps
    return float(length) if 0 < length <= 1_000_000 else 1000.0


def reward_transform(data: Transition, mode: str, spread_target: float = 1000.0) -> tuple[float, float]:
    """(scale, shift) with r' = scale * r + shift, from the dataset (see the module docstring)."""
    if mode == "none":
        return 1.0, 0.0
    if mode == "antmaze":
        return 1.0, -1.0
    if mode == "locomotion":
        returns = dataset_episode_returns(data)
        spread = float(returns.max() - returns.min()) if returns.size >= 2 else 0.0
        return (spread_target / spread if spread > 1e-6 else 1.0), 0.0
    raise ValueError(f"reward_scaling must be 'locomotion', 'antmaze' or 'none', got {mode!r}")


# ------------------------------------------------------------------------------------------------
# State and update
# ------------------------------------------------------------------------------------------------


@struct.dataclass
class IQLState:
    actor: TrainState
    critic: TrainState
    target_critic_params: Any
    value: TrainState
    buffer: ReplayBuffer  # online transitions (a 1-slot dummy when online_steps = 0)
    env_state: Any
    obs: chex.Array
    env_steps: chex.Array
    offline_step: chex.Array  # offline updates so far (drives the actor's cosine decay)
    key: chex.PRNGKey
    hparams: dict


def update(state: IQLState, batch: Transition, lr_factor, config: Config) -> tuple[IQLState, dict]:
    """One IQL update (V, then actor and Q with the new V, then Qbar). ``lr_factor`` scales the actor's
    Adam step (the cosine decay); ``batch.reward`` is already scaled."""
    hp = state.hparams
    q_target = state.critic.apply_fn(state.target_critic_params, batch.obs, batch.action).min(axis=0)

    (v_loss, v), v_grads = jax.value_and_grad(value_loss, has_aux=True)(
        state.value.params, state.value.apply_fn, batch.obs, q_target, hp["expectile"]
    )
    value = state.value.apply_gradients(grads=v_grads)

    v_new = value.apply_fn(value.params, batch.obs)
    weights = advantage_weights(q_target - v_new, hp["beta"], config.max_weight)
    a_loss, a_grads = jax.value_and_grad(awr_actor_loss)(
        state.actor.params, state.actor.apply_fn, batch.obs, batch.action, weights
    )
    updates, opt_state = state.actor.tx.update(a_grads, state.actor.opt_state, state.actor.params)
    updates = jax.tree.map(lambda u: lr_factor * u, updates)
    actor = state.actor.replace(
        step=state.actor.step + 1, params=optax.apply_updates(state.actor.params, updates), opt_state=opt_state
    )

    next_v = value.apply_fn(value.params, batch.next_obs)
    target = batch.reward + hp["gamma"] * (1.0 - batch.terminated.astype(jnp.float32)) * next_v
    (q_loss, q), q_grads = jax.value_and_grad(sac.critic_loss, has_aux=True)(
        state.critic.params, state.critic, batch, target
    )
    critic = state.critic.apply_gradients(grads=q_grads)
    target_params = polyak(state.target_critic_params, critic.params, hp["tau"])

    metrics = {
        "value_loss": v_loss, "actor_loss": a_loss, "critic_loss": q_loss, "q_mean": q.mean(), "v_mean": v.mean(),
        "adv_weight_mean": weights.mean(), "actor_lr_factor": jnp.asarray(lr_factor, jnp.float32),
    }
    return state.replace(actor=actor, critic=critic, target_critic_params=target_params, value=value), metrics


def sample_union(key, dataset: Transition, buffer: ReplayBuffer, batch_size: int) -> Transition:
    """Uniform over the dataset's N rows and the buffer's filled slots together, as if they were one
    buffer (the dataset is read, not copied)."""
    n = dataset.reward.shape[0]
    idx = jax.random.randint(key, (batch_size,), 0, n + buffer.size)
    from_dataset = idx < n
    off = jax.tree.map(lambda x: x[jnp.minimum(idx, n - 1)], dataset)
    on = jax.tree.map(lambda x: x[jnp.clip(idx - n, 0, buffer.capacity - 1)], buffer.data)
    pick = lambda a, b: jnp.where(from_dataset.reshape((-1,) + (1,) * (a.ndim - 1)), a, b.astype(a.dtype))  # noqa: E731
    return jax.tree.map(pick, off, on)


# ------------------------------------------------------------------------------------------------
# Agent
# ------------------------------------------------------------------------------------------------


def make(config: Config, problem: Problem, name: str = "iql") -> Agent:
    problem.require_dataset(name, example_kind="medium_replay")
    if problem.action_kind != "continuous":
        raise ValueError(f"{name} needs continuous actions; env {problem.env_name!r} has discrete actions")
    if config.offline_steps < 0 or config.online_steps < 0:
        raise ValueError("offline_steps and online_steps must be >= 0")
    data = problem.dataset.replace(obs=problem.flat_obs(problem.dataset.obs),
                                   next_obs=problem.flat_obs(problem.dataset.next_obs))
    scale, shift = reward_transform(data, config.reward_scaling, spread_target(config, problem))
    action_dim, num_envs = problem.action_dim, config.num_envs
    online = config.online_steps > 0
    capacity = min(config.online_buffer_size, config.online_steps) if online else 1
    check_matmul_dtype(config.matmul_dtype)
    actor_net = GaussianPolicy(action_dim, config.hidden_sizes, config.log_std_min, config.log_std_max,
                               config.matmul_dtype)
    critic_net = CriticEnsemble(config.num_critics, config.hidden_sizes, matmul_dtype=config.matmul_dtype)
    value_net = ValueNetwork(config.hidden_sizes, config.matmul_dtype)

    def scaled(batch: Transition) -> Transition:
        return batch.replace(reward=scale * batch.reward + shift)

    def init(key, hparams) -> IQLState:
        k_actor, k_critic, k_value, k_env, k_state = jax.random.split(key, 5)
        obs0, act0 = jnp.zeros((1, problem.obs_dim)), jnp.zeros((1, action_dim))
        critic_params = critic_net.init(k_critic, obs0, act0)
        if online:
            obs, env_state = reset_envs(problem, k_env, num_envs)
            # Strong dtypes: a weak-typed env-state leaf would make the online chunk compile twice.
            env_state = jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), env_state)
        else:  # offline only: the env is never stepped (it may not even be simulable)
            obs, env_state = jnp.zeros((num_envs, problem.obs_dim)), jnp.zeros(())
        return IQLState(
            actor=TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs0),
                                    tx=adam(hparams["actor_lr"])),
            critic=TrainState.create(apply_fn=critic_net.apply, params=critic_params, tx=adam(hparams["critic_lr"])),
            target_critic_params=critic_params,
            value=TrainState.create(apply_fn=value_net.apply, params=value_net.init(k_value, obs0),
                                    tx=adam(hparams["value_lr"])),
            buffer=buffer_init(Transition.zeros((problem.obs_dim,), (action_dim,)), capacity),
            env_state=env_state,
            obs=obs,
            env_steps=jnp.int32(0),
            offline_step=jnp.int32(0),
            key=k_state,
            hparams=hparams,
        )

    def offline_iteration(state: IQLState):
        key, k_batch = jax.random.split(state.key)
        batch = scaled(dataset_sample(data, k_batch, config.batch_size))
        if config.actor_cosine_decay and config.offline_steps > 0:
            progress = jnp.minimum(state.offline_step / config.offline_steps, 1.0)
            factor = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        else:
            factor = jnp.float32(1.0)
        state, metrics = update(state.replace(key=key), batch, factor, config)
        return state.replace(offline_step=state.offline_step + 1), metrics

    def online_iteration(state: IQLState):
        key, k_act, k_env, k_update = jax.random.split(state.key, 4)
        dist = state.actor.apply_fn(state.actor.params, state.obs)
        action = jnp.clip(dist.sample(seed=k_act), -1.0, 1.0)
        obs, env_state, tr, finished = step_envs(problem, k_env, state.env_state, state.obs, action)
        state = state.replace(
            key=key, buffer=buffer_add(state.buffer, tr), env_state=env_state, obs=obs,
            env_steps=state.env_steps + num_envs,
        )

        def one_update(state, k):
            batch = scaled(sample_union(k, data, state.buffer, config.batch_size))
            return update(state, batch, jnp.float32(1.0), config)

        state, metrics = jax.lax.scan(one_update, state, jax.random.split(k_update, num_envs))
        return state, {**jax.tree.map(jnp.mean, metrics), "train_episode_return": finished}

    def policy(state: IQLState, obs, key, deterministic: bool):
        dist = state.actor.apply_fn(state.actor.params, problem.flat_obs(obs))
        action = dist.mean() if deterministic else dist.sample(seed=key)
        return problem.to_env_action(jnp.clip(action, -1.0, 1.0))

    return Agent(
        init=init,
        phases=(
            Phase("offline", offline_iteration, config.offline_steps, grad_steps_per_iteration=1),
            Phase("online", online_iteration, -(-config.online_steps // num_envs),
                  env_steps_per_iteration=num_envs, grad_steps_per_iteration=num_envs),
        ),
        policy=policy,
    )


SPEC = AlgorithmSpec(
    name="iql",
    description="IQL: expectile value, Q on r + gamma V(s'), advantage-weighted policy; offline then online.",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="required",
    action_kinds=("continuous",),
    paper="Kostrikov, Nair, Levine. Offline Reinforcement Learning with Implicit Q-Learning. ICLR 2022",
    budget=Budget("online_steps", "env_steps", offline_field="offline_steps"),
)
