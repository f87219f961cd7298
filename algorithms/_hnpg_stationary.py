"""HNPG and NPG on stationary (discounted, episodic) envs: the gymnax envs with their offline datasets.

``algorithms.hnpg.make`` dispatches here for every env that is not the combination lock; the config is
``hnpg.Config`` (its fields marked [lock] are unused here). The level-based algorithm of ``algorithms/hnpg.py`` (docs/algorithms/hnpg.md)
with its levels collapsed, our adaptation ([R]):

* ONE policy pi and ONE critic Q(s, a), shared over time steps (the lock has one of each per level).
  pi: categorical for discrete actions, a Gaussian with a state-independent log-std for continuous ones
  (agent actions in [-1, 1]^d; the stored action is the unclipped sample, the env gets
  ``problem.to_env_action`` of it, the critic sees it clipped to [-1, 1] as the offline actions are).
* Rollouts from ``num_envs`` vectorised envs carried across iterations (as ``algorithms/ppo.py``),
  T = ceil(min_online_steps / num_envs) steps each; discount ``gamma`` (default 0.99).
* Critic fit (``critic_steps`` full-batch Adam steps, a fresh Adam per fit by default), with Q_old and
  V_old(s) = E_{a ~ pi} Q_old(s, a) the critic before this fit (one fitted-Q-evaluation iteration per
  NPG iteration: the stationary analogue of "Q_{h+1} just fitted"):

      L(Q) = mean_online (Q(s_t, a_t) - G_t)^2  +  mean_offline (Q(s, a) - y)^2
      G_t  = lambda-return (lambda = critic_lambda, 1 = Monte Carlo) on V_old, bootstrapping with
             V_old of the true next observation at a time-limit end and at the end of the rollout
      y    = r + gamma (1 - terminated) Q_old(s', a'),  a' ~ pi(.|s')  (n_off = online batch size offline
             transitions of ``problem.dataset``, drawn fresh each iteration)

  (``hybrid=False``: the online term only.)
* Online advantages: GAE(gamma, gae_lambda) with V = E_pi Q (``value_samples`` samples) of the fitted
  critic, through truncation as PPO. Offline advantages: a fresh a ~ pi(.|s) at each offline state,
  A = Q(s, a) - V(s); the stored actions are not used by the actor.
* Actor: one TRPO/NPG step (``hnpg.npg_actor_step``) on the union of online and offline samples.

``hybrid=False`` (``algo=npg``): online critic targets and online states only.

Measured (CartPole, 4 seeds, 2-core CPU): about 0.14-0.22 s per iteration for 4 seeds (1000 env steps
each). The lock's critic_lr 3e-4 lags returns of ~100: HNPG ended 150 iterations at a mean of 369;
``critic_lr=1e-3`` reaches 436-496 (tests/test_hnpg.py). Pendulum did not learn in 100 iterations with
either (HNPG -1096, NPG -1104 from about -1280; the critic is far from returns near -1000).
"""

from __future__ import annotations

import math
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from algorithms._hnpg_common import (
    LevelCritic,
    LevelPolicy,
    critic_targets,
    fit_regression,
    network_fns,
    npg_actor_step,
    resolve_gamma,
    sample,
    sampled_advantage,
)
from hybrid_rl.algorithm import Agent, Phase
from hybrid_rl.buffers import dataset_sample
from hybrid_rl.onpolicy import gae
from hybrid_rl.problem import Problem
from hybrid_rl.training import reset_envs, step_envs

DEFAULT_GAMMA = 0.99


@struct.dataclass
class StationaryState:
    policy_params: Any
    critic_params: Any
    critic_opt: Any  # used when critic_reset_optimizer=False
    env_state: Any
    obs: chex.Array  # (num_envs, obs_dim): flat, as the agent sees the env (hybrid_rl.training.agent_env)
    env_steps: chex.Array
    key: chex.PRNGKey
    hparams: dict


def make_stationary(config, problem: Problem, name: str = "hnpg") -> Agent:
    hybrid = config.hybrid
    if hybrid:
        problem.require_dataset(f"{name} on {problem.env_name!r}", example_kind="expert",
                                hint="or run algo=npg, HNPG without offline data")
    discrete = problem.action_kind == "discrete"
    A, D = problem.action_dim, problem.obs_dim
    num_envs = config.num_envs
    T = math.ceil(config.min_online_steps / num_envs)
    batch = T * num_envs
    pi_net = LevelPolicy(A, config.policy_hidden, config.init_log_std)
    q_net = LevelCritic(config.critic_hidden)
    offline = None
    if hybrid:
        data = problem.dataset
        action = data.action.reshape(-1).astype(jnp.int32) if discrete else data.action.reshape(-1, A)
        offline = data.replace(obs=problem.flat_obs(data.obs), next_obs=problem.flat_obs(data.next_obs),
                               action=action)

    def features(action):
        return jax.nn.one_hot(action, A) if discrete else jnp.clip(action, -1.0, 1.0)

    pi_apply, q_apply, value = network_fns(pi_net, q_net, features, discrete, config.value_samples)

    def critic_tx(hp):
        return optax.adam(hp["critic_lr"])

    def init(key, hparams) -> StationaryState:
        k_pi, k_q, k_env, k_state = jax.random.split(key, 4)
        obs0 = jnp.zeros((1, D))
        pi_params = pi_net.init(k_pi, obs0)
        q_params = q_net.init(k_q, obs0, jnp.zeros((1, A)))
        obs, env_state = reset_envs(problem, k_env, num_envs)
        return StationaryState(pi_params, q_params, critic_tx(hparams).init(q_params), env_state, obs,
                               jnp.int32(0), k_state, resolve_gamma(hparams, DEFAULT_GAMMA))

    def rollout_step(state: StationaryState, key):
        k_act, k_env = jax.random.split(key)
        out, log_std = pi_apply(state.policy_params, state.obs)
        action = sample(discrete, k_act, out, log_std)
        obs, env_state, tr, finished = step_envs(problem, k_env, state.env_state, state.obs, action)
        return state.replace(env_state=env_state, obs=obs), (tr, finished)

    def iteration(state: StationaryState):
        hp = state.hparams
        gamma = hp["gamma"]
        key, k_roll, k_off, k_next, k_old, k_new, k_adv = jax.random.split(state.key, 7)
        state, (on, finished) = jax.lax.scan(rollout_step, state, jax.random.split(k_roll, T))  # leaves (T, N, ...)
        chex.assert_shape(on.reward, (T, num_envs))
        pp, q_old = state.policy_params, state.critic_params

        # online critic targets: lambda-returns on the critic before this fit
        k1, k2 = jax.random.split(k_old)
        v_old, v_old_next = value(k1, pp, q_old, on.obs), value(k2, pp, q_old, on.next_obs)
        _, on_target = gae(on.reward, v_old, v_old_next, on.terminated, on.truncated, gamma, config.critic_lambda)
        on_flat = jax.tree.map(lambda x: x.reshape((batch,) + x.shape[2:]), on)
        on_target = on_target.reshape(batch)

        # offline TD targets, next actions from the current policy
        if hybrid:
            off = dataset_sample(offline, k_off, batch)
            nout, nls = pi_apply(pp, off.next_obs)
            next_q = q_apply(q_old, off.next_obs, sample(discrete, k_next, nout, nls))
            y = jax.lax.stop_gradient(critic_targets(off.reward, off.terminated, gamma * next_q, False))

        def loss_fn(p):
            loss = jnp.mean((q_apply(p, on_flat.obs, on_flat.action) - on_target) ** 2)
            if hybrid:
                loss = loss + jnp.mean((q_apply(p, off.obs, off.action) - y) ** 2)
            return loss

        tx = critic_tx(hp)
        opt0 = tx.init(q_old) if config.critic_reset_optimizer else state.critic_opt
        critic_params, critic_opt, critic_loss = fit_regression(loss_fn, q_old, tx, opt0, config.critic_steps)

        # online GAE advantages with the fitted critic (bootstrapping through truncation)
        k1, k2 = jax.random.split(k_new)
        values, next_values = value(k1, pp, critic_params, on.obs), value(k2, pp, critic_params, on.next_obs)
        adv_on, _ = gae(on.reward, values, next_values, on.terminated, on.truncated, gamma, hp["gae_lambda"])
        obs_all, act_all, adv_all = on_flat.obs, on_flat.action, adv_on.reshape(batch)

        # offline states with on-policy actions: A = Q(s, a) - V(s)
        if hybrid:
            a_off, adv_off = sampled_advantage(pi_apply, q_apply, discrete, config.value_samples, k_adv, pp,
                                               critic_params, off.obs)
            obs_all = jnp.concatenate([obs_all, off.obs], 0)
            act_all = jnp.concatenate([act_all, a_off], 0)
            adv_all = jnp.concatenate([adv_all, adv_off], 0)

        policy_params, info = npg_actor_step(pi_apply, discrete, config, hp, pp, obs_all, act_all, adv_all)
        state = state.replace(policy_params=policy_params, critic_params=critic_params, critic_opt=critic_opt,
                              key=key, env_steps=state.env_steps + batch)
        metrics = {
            "train_episode_return": jnp.nanmean(finished),
            "critic_loss": critic_loss,
            "kl": info["kl"],
            "step_fraction": info["step_fraction"],
            "accepted": (info["step_fraction"] > 0).astype(jnp.float32),
            "advantage_online": jnp.mean(adv_on),
        }
        if hybrid:
            metrics["advantage_offline"] = jnp.mean(adv_off)
        return state, metrics

    def policy(state: StationaryState, obs, key, deterministic: bool):
        out, log_std = pi_apply(state.policy_params, problem.flat_obs(obs))
        if deterministic:
            action = jnp.argmax(out).astype(jnp.int32) if discrete else out
        else:
            action = sample(discrete, key, out, log_std)
        return problem.to_env_action(action)

    return Agent(
        init=init,
        phases=(Phase("online", iteration, config.num_iterations, env_steps_per_iteration=batch,
                      grad_steps_per_iteration=config.critic_steps),),
        policy=policy,
    )
