"""Unifloral's offline IQL update, restated (a reimplementation, NOT Unifloral's code) for ``benchmarks.anchors``.

Unifloral (Jackson et al., 2025, github.com/EmptyJackson/unifloral, ``algorithms/iql.py``) is a set of
single-file scripts, not a package, so this module rewrites its IQL training step with the same structure:

* networks 2x256 ReLU on observations normalised by the dataset's mean and std (+1e-3): a twin Q network
  (``nn.vmap`` over two members), a state value network, and a tanh-mean Gaussian actor with a learned
  state-independent log-std clipped to [-20, 2];
* Adam (eps 1e-5) with every learning rate cosine-decayed from 3e-4 over ``num_updates``;
* one step: sample a batch of 256 uniformly from the dataset (a constant of the program), Polyak-update the
  target twin Q first (rate 0.005), value target = min of the target twin Q at the dataset action, Q regressed
  to r + gamma (1 - done) V(s'), V by expectile regression (tau 0.7), actor by advantage-weighted log-likelihood
  with weights exp(3 A) clipped at 100;
* ``lax.scan`` of ``train_step`` over a chunk of updates; seeds vmapped over (rng, agent state).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState


@dataclasses.dataclass(frozen=True)
class IQLConfig:
    """Unifloral's IQL defaults (hopper / halfcheetah locomotion)."""

    lr: float = 3e-4
    batch_size: int = 256
    gamma: float = 0.99
    polyak_step_size: float = 0.005
    beta: float = 3.0
    iql_tau: float = 0.7
    exp_adv_clip: float = 100.0
    num_updates: int = 1_000_000  # sets the cosine decay of the learning rates
    hidden: int = 256


class OfflineData(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    done: jax.Array


class AgentState(NamedTuple):
    actor: TrainState
    dual_q: TrainState
    dual_q_target: TrainState
    value: TrainState


def _normalise(x, mean, std):
    return (x - mean) / (std + 1e-3)


class QNetwork(nn.Module):
    obs_mean: jax.Array
    obs_std: jax.Array
    hidden: int = 256

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([_normalise(obs, self.obs_mean, self.obs_std), action], axis=-1)
        for _ in range(2):
            x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(1)(x)[..., 0]


class TwinQNetwork(nn.Module):
    obs_mean: jax.Array
    obs_std: jax.Array
    hidden: int = 256

    @nn.compact
    def __call__(self, obs, action):
        members = nn.vmap(QNetwork, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None,
                          out_axes=-1, axis_size=2)
        return members(self.obs_mean, self.obs_std, self.hidden)(obs, action)


class ValueNetwork(nn.Module):
    obs_mean: jax.Array
    obs_std: jax.Array
    hidden: int = 256

    @nn.compact
    def __call__(self, obs):
        x = _normalise(obs, self.obs_mean, self.obs_std)
        for _ in range(2):
            x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(1)(x)[..., 0]


class TanhMeanGaussianActor(nn.Module):
    num_actions: int
    obs_mean: jax.Array
    obs_std: jax.Array
    hidden: int = 256
    log_std_min: float = -20.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs, eval: bool = False):
        x = _normalise(obs, self.obs_mean, self.obs_std)
        for _ in range(2):
            x = nn.relu(nn.Dense(self.hidden)(x))
        mean = nn.tanh(nn.Dense(self.num_actions)(x))
        if eval:
            return distrax.Deterministic(mean)
        log_std = self.param("logstd", lambda key: jnp.zeros(self.num_actions, jnp.float32))
        return distrax.Normal(mean, jnp.exp(jnp.clip(log_std, self.log_std_min, self.log_std_max)))


def make_iql(config: IQLConfig, data: OfflineData):
    """``(init(key) -> AgentState, train_step((rng, agent_state), _) -> ((rng, agent_state), losses))``."""
    obs_mean = data.obs.mean(axis=0)
    obs_std = jnp.nan_to_num(data.obs.std(axis=0), nan=1.0)
    num_actions = data.action.shape[-1]
    actor_net = TanhMeanGaussianActor(num_actions, obs_mean, obs_std, config.hidden)
    q_net = TwinQNetwork(obs_mean, obs_std, config.hidden)
    value_net = ValueNetwork(obs_mean, obs_std, config.hidden)
    dummy_obs, dummy_action = jnp.zeros(data.obs.shape[-1]), jnp.zeros(num_actions)
    size = data.obs.shape[0]

    def train_state(key, net, inputs):
        tx = optax.adam(optax.cosine_decay_schedule(config.lr, config.num_updates), eps=1e-5)
        return TrainState.create(apply_fn=net.apply, params=net.init(key, *inputs), tx=tx)

    def init(key) -> AgentState:
        k_actor, k_q, k_value = jax.random.split(key, 3)
        return AgentState(
            actor=train_state(k_actor, actor_net, [dummy_obs]),
            dual_q=train_state(k_q, q_net, [dummy_obs, dummy_action]),
            dual_q_target=train_state(k_q, q_net, [dummy_obs, dummy_action]),  # the same key: equal at start
            value=train_state(k_value, value_net, [dummy_obs]),
        )

    def train_step(carry, _):
        rng, agent = carry
        rng, k_batch = jax.random.split(rng)
        idx = jax.random.randint(k_batch, (config.batch_size,), 0, size)
        batch = jax.tree.map(lambda x: x[idx], data)

        target_params = optax.incremental_update(agent.dual_q.params, agent.dual_q_target.params,
                                                 config.polyak_step_size)
        agent = agent._replace(dual_q_target=agent.dual_q_target.replace(
            step=agent.dual_q_target.step + 1, params=target_params))

        v_target = q_net.apply(agent.dual_q_target.params, batch.obs, batch.action).min(-1)
        next_v = value_net.apply(agent.value.params, batch.next_obs)
        q_target = batch.reward + config.gamma * (1 - batch.done) * next_v

        def q_loss(params):
            return jnp.square(q_net.apply(params, batch.obs, batch.action) - q_target[:, None]).mean()

        def value_loss(params):
            adv = v_target - value_net.apply(params, batch.obs)
            return (jnp.abs(config.iql_tau - (adv < 0.0).astype(jnp.float32)) * adv**2).mean(), adv

        q_l, q_grad = jax.value_and_grad(q_loss)(agent.dual_q.params)
        (v_l, adv), v_grad = jax.value_and_grad(value_loss, has_aux=True)(agent.value.params)
        agent = agent._replace(dual_q=agent.dual_q.apply_gradients(grads=q_grad),
                               value=agent.value.apply_gradients(grads=v_grad))

        weight = jnp.minimum(jnp.exp(adv * config.beta), config.exp_adv_clip)

        def actor_loss(params):
            def one(obs, action, w):
                return w * -actor_net.apply(params, obs).log_prob(action).sum()

            return jax.vmap(one)(batch.obs, batch.action, weight).mean()

        a_l, a_grad = jax.value_and_grad(actor_loss)(agent.actor.params)
        agent = agent._replace(actor=agent.actor.apply_gradients(grads=a_grad))
        return (rng, agent), {"value_loss": v_l, "q_loss": q_l, "actor_loss": a_l}

    return init, train_step
