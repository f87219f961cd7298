"""Cal-QL: Calibrated Offline RL Pre-Training for Efficient Online Fine-Tuning (Nakamoto et al., NeurIPS 2023).

CQL (``algorithms/cql.py``, on SAC's core) whose push-down term is *calibrated*: the Q-values of the
policy's actions that enter the logsumexp are bounded below by V_mu(s), the Monte-Carlo discounted
return-to-go of the (behaviour) episode containing s. Defaults from the official code (nakamotoo/Cal-QL)
for locomotion (docs/algorithms/cal_ql.md).

Return-to-go (``return_to_go``), per episode of the dataset, ending at terminated or truncated:

    G_t = r_t + gamma G_{t+1},   G_{T+1} = 0 after a terminal step,
                                G_{T+1} = min(r_min, 0) / (1 - gamma) after a time-limit (truncated) end

(``timeout_tail="min_reward"``, the default). The critic bootstraps through time limits, so it estimates the
infinite-horizon value; a return that stops at the limit is not a lower bound of that value when rewards can be
negative (Pendulum: every reward <= 0). The tail is the value of receiving the dataset's smallest (scaled)
reward r_min forever, capped at 0: a valid lower bound whenever no reward is below r_min, and for nonnegative
rewards the same as no tail. ``timeout_tail="none"`` is the official code's (no tail: a lower bound only for
nonnegative rewards). For a sparse-reward episode that never succeeds (every reward =
``sparse_failure_reward``), G_t = r / (1 - gamma).

Online transitions get G computed when their episode ends (with the same tail after a time limit); until then
their bound is -inf, i.e. no bound (the official code adds an online episode to its buffer only once it has
ended, so an unfinished episode is never calibrated). CORL turns the calibration off online:
``online_calibration=False``.

Rewards: r' = ``reward_scale`` r + ``reward_bias`` before the critic, the conservative term and the bound see
them. The official scripts use scale 10 (AntMaze with bias -5, Adroit binary with bias +5, which map their 0/1
or -1/0 sparse rewards to +-5); the default here is scale 10 with bias 0, the scale applied to dense rewards
without moving them.

Critic loss, a_pi ~ pi(.|s), a'_pi ~ pi(.|s'), a_u ~ U[-1, 1]^d (N = 10 each), importance-weighted as CQL(H):

    Qc_i(s, a_pi)  = max( Q_i(s, a_pi),  G(s) ),    Qc_i(s, a'_pi) = max( Q_i(s, a'_pi), G(s) )
    L_Q = mean_i mean_B (Q_i(s, a) - y)^2
          + alpha_cql mean_i mean_B [ T logsumexp_j ( (Qc_i(s, a_j) - log mu(a_j|s)) / T ) - Q_i(s, a) ]
    y   = r + gamma (1 - terminated) max_{j<=N} min_i Qbar_i(s', a'_j)   (max-target backup, a'_j ~ pi(.|s'))
          or SAC's target (``max_target_backup=False``)

The actor and temperature losses are SAC's. Two phases: "offline" (``offline_steps`` updates on dataset
batches), then "online" (one env step and one update per iteration, batches ``mixing_ratio`` offline /
the rest online, 50/50 by default).

The conservative term is the CQL family's one (``algorithms/_conservative.py``, shared with CQL) with the
bound passed in; with the bound at -inf it is CQL's exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.training.train_state import TrainState

from algorithms import _sac_core as sac
from algorithms._conservative import importance_logsumexp, ood_logsumexp, scale_rewards  # noqa: F401
from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget, Phase
from hybrid_rl.buffers import ReplayBuffer
from hybrid_rl.problem import Problem
from hybrid_rl.training import adam, polyak
from hybrid_rl.types import Transition


@dataclasses.dataclass(frozen=True)
class Config(sac.Config):
    offline_steps: int = 1_000_000  # CQL updates on the dataset before any env step (official: 1M)
    online_steps: int = 1_000_000  # fine-tuning env steps, one update each (UTD 1)
    total_steps: int = 1_000_000  # unused (kept from CQL's config; the phases use offline_steps/online_steps)
    buffer_size: int = 1_000_000  # online buffer capacity (capped at online_steps)
    actor_lr: float = 1e-4  # policy lr (official)
    critic_lr: float = 3e-4
    warmup_steps: int = 0  # no random-action warm-up: the online phase acts with the pre-trained policy
    backup_entropy: bool = False  # no entropy in the backup (official and CORL)
    cql_alpha: float = 5.0  # weight of the conservative term: official 5 (CORL: 10)
    cql_num_actions: int = 10  # actions per proposal (uniform, pi(.|s), pi(.|s')) in the logsumexp
    cql_temp: float = 1.0  # temperature T of the logsumexp
    cql_lagrange: bool = False  # official: off for locomotion (on, gap 0.8, for AntMaze)
    cql_target_gap: float = 0.8  # Lagrange target of logsumexp - Q(data)
    cql_alpha_lr: float = 3e-4  # Adam on log alpha' (Lagrange only)
    max_target_backup: bool = True  # y uses the max over N next actions of the min-critic target
    mixing_ratio: float = 0.5  # offline share of each online-phase batch
    online_calibration: bool = True  # official: keep the bound online; CORL: False (plain CQL online)
    reward_scale: float = 10.0  # r' = reward_scale r + reward_bias (official scripts: 10; see the docstring)
    reward_bias: float = 0.0  # official scripts: -5 AntMaze, +5 Adroit binary (sparse rewards); dense: 0
    timeout_tail: str = "min_reward"  # bound's tail after a time-limit end: "min_reward" or "none" (official)
    sparse_reward: bool = False  # failed sparse episodes get r / (1 - gamma) as their return-to-go
    sparse_failure_reward: float = 0.0  # the reward of a failed sparse step (after scale and bias)


TRACED = sac.TRACED + ("cql_alpha", "cql_alpha_lr")


# ------------------------------------------------------------------------------------------------
# Monte-Carlo return-to-go (the calibration bound)
# ------------------------------------------------------------------------------------------------


def return_to_go(reward, ends, gamma: float, sparse_reward: bool = False, failure_reward: float = 0.0,
                 truncated_ends=None, tail: float = 0.0):
    """Discounted return-to-go of every step of a flat, file-ordered dataset (numpy, float32).

    ``ends[t]`` marks the last step of an episode (terminated or truncated); a trailing episode without
    an end is treated as ending at the last row. An episode whose last step is marked in ``truncated_ends``
    (cut by a time limit, not terminated) continues past it with value ``tail``: G_T = r_T + gamma tail.
    ``tail = 0`` is the official code's (no bootstrap)."""
    reward = np.asarray(reward, np.float64)
    ends = np.asarray(ends, bool).copy()
    truncated_ends = np.zeros_like(ends) if truncated_ends is None else np.asarray(truncated_ends, bool)
    if ends.size:
        ends[-1] = True
    out = np.zeros_like(reward)
    boundaries = np.flatnonzero(ends) + 1
    for start, stop in zip(np.concatenate([[0], boundaries[:-1]]), boundaries):
        r = reward[start:stop]
        if sparse_reward and np.all(r == failure_reward):
            out[start:stop] = failure_reward / (1.0 - gamma)
            continue
        g = tail if truncated_ends[stop - 1] else 0.0
        for t in range(stop - start - 1, -1, -1):
            g = r[t] + gamma * g
            out[start + t] = g
    return out.astype(np.float32)


def timeout_tail_value(reward, gamma: float, mode: str) -> float:
    """The bound's value after a time-limit end: min(r_min, 0) / (1 - gamma) ("min_reward") or 0 ("none")."""
    if mode == "none":
        return 0.0
    if mode == "min_reward":
        r_min = float(np.min(np.asarray(reward))) if np.size(reward) else 0.0
        return min(r_min, 0.0) / (1.0 - gamma)
    raise ValueError(f"timeout_tail must be 'min_reward' or 'none', got {mode!r}")


def prepare_dataset(config: Config, problem: Problem) -> tuple[Transition, np.ndarray, float]:
    """The offline data as the agent learns from it: flat observations and rewards r' = scale r + bias; the
    Monte-Carlo bound of every row (with the time-limit tail); and the tail value (also used online)."""
    data = problem.dataset.replace(obs=problem.flat_obs(problem.dataset.obs),
                                   next_obs=problem.flat_obs(problem.dataset.next_obs))
    data = data.replace(reward=scale_rewards(data.reward, config.reward_scale, config.reward_bias))
    ends = dataset_episode_ends(data)
    truncated_ends = ends & ~np.asarray(data.terminated, bool)
    truncated_ends[-1] = not bool(np.asarray(data.terminated)[-1])  # a trailing open episode was cut too
    tail = timeout_tail_value(data.reward, config.gamma, config.timeout_tail)
    rtg = return_to_go(data.reward, ends, config.gamma, config.sparse_reward, config.sparse_failure_reward,
                       truncated_ends, tail)
    return data, rtg, tail


def dataset_episode_ends(data: Transition) -> np.ndarray:
    """terminated | truncated | "the next row does not continue this one" (see ``iql.dataset_episode_returns``)."""
    obs = np.asarray(data.obs).reshape(data.reward.shape[0], -1)
    next_obs = np.asarray(data.next_obs).reshape(obs.shape)
    ends = np.asarray(data.terminated | data.truncated).astype(bool).copy()
    ends[:-1] |= ~np.all(np.isclose(next_obs[:-1], obs[1:], rtol=1e-5, atol=1e-6), axis=-1)
    return ends


def discount_matrix(length: int, gamma) -> jax.Array:
    """M[i, j] = gamma^(j - i) for j >= i, else 0: G = M r is the return-to-go of a window of rewards."""
    i = jnp.arange(length)
    power = (i[None, :] - i[:, None]).astype(jnp.float32)
    return jnp.where(power >= 0, gamma ** jnp.maximum(power, 0.0), 0.0)


def label_finished_episodes(rtg, buffer: ReplayBuffer, start, length, done, num_envs: int, gamma, max_len: int,
                            reward_scale: float = 1.0, reward_bias: float = 0.0, truncated=None, tail=0.0):
    """Writes the return-to-go of each env's episode that ended this step into ``rtg`` (capacity,).

    Env e's k-th step of an episode sits at slot (start_e + k num_envs) % capacity (``buffer_add`` writes
    the envs' transitions side by side); ``length_e`` steps, at most ``max_len``. Rewards are transformed
    as ``reward_scale r + reward_bias`` first. An episode that ended by a time limit (``truncated[e]``)
    continues past its last step with value ``tail``."""
    cap = buffer.capacity
    m = discount_matrix(max_len, gamma)
    k = jnp.arange(max_len)
    truncated = jnp.zeros_like(done) if truncated is None else truncated

    def one_env(rtg, e):
        slots = (start[e] + num_envs * k) % cap
        valid = (k < length[e]) & done[e]
        g = m @ jnp.where(k < length[e], scale_rewards(buffer.data.reward[slots], reward_scale, reward_bias), 0.0)
        g = g + jnp.where(truncated[e], tail, 0.0) * gamma ** jnp.maximum(length[e] - k, 0).astype(jnp.float32)
        return rtg.at[slots].set(jnp.where(valid, g, rtg[slots])), None

    rtg, _ = jax.lax.scan(one_env, rtg, jnp.arange(num_envs))
    return rtg


# ------------------------------------------------------------------------------------------------
# Calibrated conservative term and the critic update
# ------------------------------------------------------------------------------------------------


def calibrated_logsumexp(critic_apply, critic_params, actor, obs, next_obs, lower_bound, key, num_actions: int,
                         temp):
    """CQL(H)'s importance-sampled logsumexp per critic, shape (E, B), with the policy actions' Q-values
    (at s and s', scored by Q(s, .)) bounded below by ``lower_bound`` (B,); uniform ones are not."""
    return ood_logsumexp(critic_apply, critic_params, actor, obs, next_obs, key, num_actions, temp, lower_bound)


def max_backup_target(key, batch: Transition, actor, critic, target_params, gamma, num_actions: int):
    """y = r + gamma (1 - terminated) max_j min_i Qbar_i(s', a'_j), a'_j ~ pi(.|s'), j = 1..N."""
    a_next = actor.apply_fn(actor.params, batch.next_obs).sample(seed=key, sample_shape=num_actions)  # (N, B, d)
    next_rep = jnp.broadcast_to(batch.next_obs[None], (num_actions,) + batch.next_obs.shape)
    next_q = critic.apply_fn(target_params, next_rep, a_next).min(axis=0).max(axis=0)  # (B,)
    return batch.reward + gamma * (1.0 - batch.terminated.astype(jnp.float32)) * next_q


def update_critic(s: sac.SACState, key, batch: Transition, lower_bound, weight, target_gap, config: Config):
    """One critic step on Bellman error + weight * (calibrated logsumexp - Q(data) - target_gap), and Polyak."""
    k_target, k_penalty = jax.random.split(key)
    hp = s.hparams
    if config.max_target_backup:
        target = max_backup_target(k_target, batch, s.actor, s.critic, s.target_critic_params, hp["gamma"],
                                   config.cql_num_actions)
    else:
        target = sac.soft_target(k_target, batch, s.actor, s.critic, s.target_critic_params,
                                 s.temperature.params["log_alpha"], hp["gamma"], config.num_min_critics,
                                 config.backup_entropy)

    def loss_fn(params):
        bellman, q = sac.critic_loss(params, s.critic, batch, target)
        lse = calibrated_logsumexp(s.critic.apply_fn, params, s.actor, batch.obs, batch.next_obs, lower_bound,
                                   k_penalty, config.cql_num_actions, config.cql_temp)
        chex.assert_equal_shape([lse, q])
        gap = lse.mean(axis=-1) - q.mean(axis=-1)  # (E,)
        return bellman + weight * jnp.mean(gap - target_gap), (bellman, gap, q)

    (loss, (bellman, gap, q)), grads = jax.value_and_grad(loss_fn, has_aux=True)(s.critic.params)
    critic = s.critic.apply_gradients(grads=grads)
    s = s.replace(critic=critic, target_critic_params=polyak(s.target_critic_params, critic.params, hp["tau"]))
    return s, {"critic_loss": loss, "bellman_loss": bellman, "cql_gap": gap.mean(), "q_mean": q.mean(),
               "bound_active": jnp.mean(lower_bound > q.min(axis=0))}


# ------------------------------------------------------------------------------------------------
# Agent
# ------------------------------------------------------------------------------------------------


@struct.dataclass
class CalQLState:
    sac: sac.SACState
    log_alpha_prime: Any  # Lagrange multiplier's TrainState (unused unless cql_lagrange)
    online_rtg: chex.Array  # (capacity,) return-to-go of online transitions (-inf, no bound, until it ends)
    episode_start: chex.Array  # (num_envs,) buffer slot of each env's current episode's first step
    episode_length: chex.Array  # (num_envs,) steps so far in each env's current episode


def make(config: Config, problem: Problem) -> Agent:
    problem.require_dataset("cal_ql", example_kind="medium_replay")
    if not 0.0 <= config.mixing_ratio <= 1.0:
        raise ValueError(f"mixing_ratio must be in [0, 1], got {config.mixing_ratio}")
    online = config.online_steps > 0
    num_envs = config.num_envs
    base_config = dataclasses.replace(config, total_steps=max(config.online_steps, 1) + 1, warmup_steps=0,
                                      buffer_size=max(min(config.buffer_size, config.online_steps), 1))
    base = sac.make(base_config, problem, name="cal_ql")  # networks, Adam, temperature, online buffer, env
    data, data_rtg, tail = prepare_dataset(config, problem)
    data_rtg = jnp.asarray(data_rtg)
    n_data = data.reward.shape[0]
    target_entropy = -config.target_entropy_scale * problem.action_dim
    max_len = min(problem.max_episode_steps, 10_000)
    B = config.batch_size
    n_off = int(round(B * config.mixing_ratio))

    def init(key, hparams) -> CalQLState:
        s = base.init(key, hparams)
        cap = s.buffer.capacity
        # Strong dtypes: a weak-typed env-state leaf would make the online chunk compile twice.
        s = s.replace(env_state=jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), s.env_state))
        lagrange = TrainState.create(apply_fn=None, params={"log_alpha_prime": jnp.float32(0.0)},
                                     tx=adam(hparams["cql_alpha_lr"]))
        return CalQLState(sac=s, log_alpha_prime=lagrange, online_rtg=jnp.full(cap, -jnp.inf),
                          episode_start=jnp.arange(num_envs, dtype=jnp.int32) % cap,
                          episode_length=jnp.zeros(num_envs, jnp.int32))

    def cql_weight(state: CalQLState):
        hp = state.sac.hparams
        if config.cql_lagrange:
            alpha_prime = jnp.clip(jnp.exp(state.log_alpha_prime.params["log_alpha_prime"]), 0.0, 1e6)
            return alpha_prime * hp["cql_alpha"], config.cql_target_gap
        return hp["cql_alpha"], 0.0

    def update(state: CalQLState, key, batch: Transition, bound):
        k_critic, k_actor = jax.random.split(key)
        weight, target_gap = cql_weight(state)
        s, metrics = update_critic(state.sac, k_critic, batch, bound, jax.lax.stop_gradient(weight), target_gap, config)
        s, actor_metrics = sac.update_actor_and_temperature(s, k_actor, batch.obs, target_entropy, config)
        lagrange = state.log_alpha_prime
        if config.cql_lagrange:
            gap = metrics["cql_gap"]

            def lagrange_loss(p):
                alpha_prime = jnp.clip(jnp.exp(p["log_alpha_prime"]), 0.0, 1e6)
                return -alpha_prime * s.hparams["cql_alpha"] * jax.lax.stop_gradient(gap - config.cql_target_gap)

            lagrange = lagrange.apply_gradients(grads=jax.grad(lagrange_loss)(lagrange.params))
        return state.replace(sac=s, log_alpha_prime=lagrange), {**metrics, **actor_metrics, "cql_weight": weight}

    def offline_iteration(state: CalQLState):
        key, k_idx, k_update = jax.random.split(state.sac.key, 3)
        idx = jax.random.randint(k_idx, (B,), 0, n_data)
        batch = jax.tree.map(lambda x: x[idx], data)
        return update(state.replace(sac=state.sac.replace(key=key)), k_update, batch, data_rtg[idx])

    def online_iteration(state: CalQLState):
        key, k_collect, k_off, k_on, k_update = jax.random.split(state.sac.key, 5)
        s = state.sac.replace(key=key)
        position = s.buffer.position
        s, finished = sac.collect(s, k_collect, problem, False)
        # The transition just added by env e sits at position + e; record episode starts and label ends.
        slots = (position + jnp.arange(num_envs)) % s.buffer.capacity
        start = jnp.where(state.episode_length == 0, slots, state.episode_start)
        length = state.episode_length + 1
        added = s.buffer.data
        done = added.terminated[slots] | added.truncated[slots] | (length >= max_len)
        # The new transitions have no bound until their episode ends (a slot may hold an old label).
        rtg = state.online_rtg.at[slots].set(-jnp.inf)
        rtg = label_finished_episodes(rtg, s.buffer, start, length, done, num_envs, s.hparams["gamma"], max_len,
                                      config.reward_scale, config.reward_bias, ~added.terminated[slots], tail)
        state = state.replace(sac=s, online_rtg=rtg, episode_start=start,
                              episode_length=jnp.where(done, 0, length))

        i_off = jax.random.randint(k_off, (n_off,), 0, n_data)
        i_on = jax.random.randint(k_on, (B - n_off,), 0, jnp.maximum(s.buffer.size, 1))
        off = jax.tree.map(lambda x: x[i_off], data)
        on = jax.tree.map(lambda x: x[i_on], s.buffer.data)
        on = on.replace(reward=scale_rewards(on.reward, config.reward_scale, config.reward_bias))
        batch = jax.tree.map(lambda a, b: jnp.concatenate([a, b.astype(a.dtype)]), off, on)
        on_bound = rtg[i_on] if config.online_calibration else jnp.full((B - n_off,), -jnp.inf)
        off_bound = data_rtg[i_off] if config.online_calibration else jnp.full((n_off,), -jnp.inf)
        state, metrics = update(state, k_update, batch, jnp.concatenate([off_bound, on_bound]))
        return state, {**metrics, "train_episode_return": finished}

    def policy(state: CalQLState, obs, key, deterministic: bool):
        return base.policy(state.sac, obs, key, deterministic)

    phases = [Phase("offline", offline_iteration, config.offline_steps, grad_steps_per_iteration=1)]
    if online:
        phases.append(Phase("online", online_iteration, -(-config.online_steps // num_envs),
                            env_steps_per_iteration=num_envs, grad_steps_per_iteration=1))
    return Agent(init=init, phases=tuple(phases), policy=policy)


SPEC = AlgorithmSpec(
    name="cal_ql",
    description="Cal-QL: CQL whose push-down on policy actions is bounded below by the Monte-Carlo return-to-go; offline then online 50/50.",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="required",
    action_kinds=("continuous",),
    paper="Nakamoto, Zhai, Singh, Sobol Mark, Ma, Finn, Kumar, Levine. Cal-QL. NeurIPS 2023",
    budget=Budget("online_steps", "env_steps", offline_field="offline_steps"),
)
