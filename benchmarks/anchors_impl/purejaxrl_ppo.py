"""PureJaxRL's CartPole PPO, restated (a reimplementation, NOT PureJaxRL's code) for ``benchmarks.anchors``.

PureJaxRL (Lu et al., 2022, github.com/luchris429/purejaxrl, ``ppo.py``) is a single file, not a package, so
this module rewrites its training loop with the same structure and settings:

* one program ``train(key)``: ``lax.scan`` over ``total_timesteps // (num_envs * num_steps)`` updates, each a
  ``lax.scan`` rollout of ``num_steps`` steps of ``num_envs`` auto-resetting gymnax envs, GAE, then
  ``update_epochs`` epochs of ``num_minibatches`` shuffled minibatches;
* separate actor and critic MLPs (64, 64, tanh), orthogonal init (sqrt 2 hidden, 0.01 policy head, 1.0 value
  head), zero biases; categorical policy;
* Adam (eps 1e-5) after global-norm clipping at 0.5, learning rate 2.5e-4 annealed linearly per update;
* GAE masks with ``done = terminated or truncated`` (PureJaxRL's behaviour: no bootstrap through a time limit);
* clipped policy and value losses, advantages normalised per minibatch, vf 0.5, entropy 0.01;
* PureJaxRL's ``LogWrapper`` bookkeeping in every env step (running return and length of each env's episode,
  the return and length of its last finished episode, a step counter), and its four per-step ``info`` arrays
  kept in the rollout and returned as the run's metrics, as PureJaxRL returns ``traj_batch.info``.

Seeds are vmapped the way PureJaxRL's README does it: ``jax.jit(jax.vmap(make_train(config)))(keys)``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import distrax
import flax.linen as nn
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.linen.initializers import constant, orthogonal
from flax.training.train_state import TrainState


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PureJaxRL's CartPole-v1 settings."""

    lr: float = 2.5e-4
    num_envs: int = 4
    num_steps: int = 128
    total_timesteps: int = 500_000
    update_epochs: int = 4
    num_minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    anneal_lr: bool = True
    env_name: str = "CartPole-v1"

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.num_steps // self.num_envs


class ActorCritic(nn.Module):
    action_dim: int
    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, x):
        a = x
        for width in self.hidden:
            a = nn.tanh(nn.Dense(width, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(a))
        logits = nn.Dense(self.action_dim, kernel_init=orthogonal(0.01), bias_init=constant(0.0))(a)
        v = x
        for width in self.hidden:
            v = nn.tanh(nn.Dense(width, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(v))
        value = nn.Dense(1, kernel_init=orthogonal(1.0), bias_init=constant(0.0))(v)
        return distrax.Categorical(logits=logits), jnp.squeeze(value, axis=-1)


def make_train(config: PPOConfig):
    """``train(key) -> (train_state, metrics)``: the whole PPO run as one pure function (jit / vmap it).

    ``metrics`` holds ``LogWrapper``'s per-step info, each of shape (num_updates, num_steps, num_envs):
    ``returned_episode_returns`` / ``returned_episode_lengths`` (of each env's last finished episode),
    ``timestep`` and ``returned_episode`` (an episode ended at that step); plus ``loss`` per update."""
    env, env_params = gymnax.make(config.env_name)
    num_actions = env.action_space(env_params).n
    obs_dim = int(np.prod(env.observation_space(env_params).shape))
    num_updates = config.num_updates
    batch = config.num_envs * config.num_steps
    minibatch = batch // config.num_minibatches
    network = ActorCritic(num_actions)

    def schedule(count):
        # PureJaxRL decays once per update (every epochs * minibatches optimiser steps).
        frac = 1.0 - (count // (config.num_minibatches * config.update_epochs)) / num_updates
        return config.lr * frac

    lr = schedule if config.anneal_lr else config.lr
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(learning_rate=lr, eps=1e-5))

    reset = jax.vmap(env.reset, in_axes=(0, None))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def train(key):
        key, k_net, k_reset = jax.random.split(key, 3)
        params = network.init(k_net, jnp.zeros((obs_dim,)))
        state = TrainState.create(apply_fn=network.apply, params=params, tx=tx)
        obs, env_state = reset(jax.random.split(k_reset, config.num_envs), env_params)
        zeros, int_zeros = jnp.zeros(config.num_envs), jnp.zeros(config.num_envs, jnp.int32)
        # LogWrapper's state around each env: (env state, episode return, episode length, last finished
        # episode's return, its length, steps taken).
        log_state = (env_state, zeros, int_zeros, zeros, int_zeros, int_zeros)

        def update(carry, _):
            state, log_state, obs, key = carry

            def env_step(c, _):
                state, log_state, obs, key = c
                env_state, ep_return, ep_length, last_return, last_length, timestep = log_state
                key, k_act, k_step = jax.random.split(key, 3)
                pi, value = network.apply(state.params, obs)
                action = pi.sample(seed=k_act)
                log_prob = pi.log_prob(action)
                next_obs, env_state, reward, terminated, truncated, _ = step(
                    jax.random.split(k_step, config.num_envs), env_state, action, env_params)
                done = jnp.logical_or(terminated, truncated)
                # LogWrapper.step: arithmetic masks with done, as PureJaxRL writes them.
                ep_return, ep_length = ep_return + reward, ep_length + 1
                not_done = 1 - done
                last_return = last_return * not_done + ep_return * done
                last_length = last_length * not_done + ep_length * done
                log_state = (env_state, ep_return * not_done, ep_length * not_done, last_return, last_length,
                             timestep + 1)
                info = {"returned_episode_returns": last_return, "returned_episode_lengths": last_length,
                        "timestep": timestep + 1, "returned_episode": done}
                record = (done, action, value, reward, log_prob, obs, info)
                return (state, log_state, next_obs, key), record

            (state, log_state, obs, key), traj = jax.lax.scan(
                env_step, (state, log_state, obs, key), None, config.num_steps)
            done, action, value, reward, log_prob, traj_obs, info = traj
            _, last_value = network.apply(state.params, obs)

            def gae_step(c, x):
                gae, next_value = c
                d, v, r = x
                delta = r + config.gamma * next_value * (1 - d) - v
                gae = delta + config.gamma * config.gae_lambda * (1 - d) * gae
                return (gae, v), gae

            _, advantages = jax.lax.scan(gae_step, (jnp.zeros_like(last_value), last_value),
                                         (done.astype(jnp.float32), value, reward), reverse=True, unroll=16)
            targets = advantages + value

            def epoch(c, _):
                state, key = c
                key, k_perm = jax.random.split(key)
                perm = jax.random.permutation(k_perm, batch)
                data = (traj_obs, action, value, log_prob, advantages, targets)
                data = jax.tree.map(lambda x: x.reshape((batch,) + x.shape[2:])[perm], data)
                data = jax.tree.map(lambda x: x.reshape((config.num_minibatches, minibatch) + x.shape[1:]), data)

                def minibatch_step(state, mb):
                    mb_obs, mb_action, mb_value, mb_log_prob, mb_adv, mb_target = mb

                    def loss_fn(params):
                        pi, v = network.apply(params, mb_obs)
                        lp = pi.log_prob(mb_action)
                        v_clipped = mb_value + (v - mb_value).clip(-config.clip_eps, config.clip_eps)
                        v_loss = 0.5 * jnp.maximum((v - mb_target) ** 2, (v_clipped - mb_target) ** 2).mean()
                        ratio = jnp.exp(lp - mb_log_prob)
                        adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                        actor_loss = -jnp.minimum(
                            ratio * adv, jnp.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps) * adv).mean()
                        entropy = pi.entropy().mean()
                        return actor_loss + config.vf_coef * v_loss - config.ent_coef * entropy

                    loss, grads = jax.value_and_grad(loss_fn)(state.params)
                    return state.apply_gradients(grads=grads), loss

                state, losses = jax.lax.scan(minibatch_step, state, data)
                return (state, key), losses

            (state, key), losses = jax.lax.scan(epoch, (state, key), None, config.update_epochs)
            metrics = {**info, "loss": losses.mean()}
            return (state, log_state, obs, key), metrics

        (state, *_), metrics = jax.lax.scan(update, (state, log_state, obs, key), None, num_updates)
        return state, metrics

    return train


def greedy_policy(config: PPOConfig):
    """``act(params, obs, key) -> action``: the argmax action, for evaluating a trained ``train_state.params``."""
    env, env_params = gymnax.make(config.env_name)
    network = ActorCritic(env.action_space(env_params).n)

    def act(params, obs, key):
        pi, _ = network.apply(params, obs)
        return pi.mode()

    return act
