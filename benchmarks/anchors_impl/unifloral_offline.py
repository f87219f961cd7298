"""Unifloral's offline IQL and TD3+BC updates, restated (reimplementations, NOT Unifloral's code) for
``benchmarks.anchors``.

Unifloral (Jackson et al., 2025, github.com/EmptyJackson/unifloral, ``algorithms/iql.py`` and
``algorithms/td3_bc.py``) is a set of single-file scripts, not a package, so this module rewrites their
training steps with the same structure.

IQL (``make_iql``):

* networks 2x256 ReLU on observations normalised by the dataset's mean and std (+1e-3): a twin Q network
  (``nn.vmap`` over two members), a state value network, and a tanh-mean Gaussian actor with a learned
  state-independent log-std clipped to [-20, 2];
* Adam (eps 1e-5) with every learning rate cosine-decayed from 3e-4 over ``num_updates``;
* one step: sample a batch of 256 uniformly from the dataset (a constant of the program), Polyak-update the
  target twin Q first (rate 0.005), value target = min of the target twin Q at the dataset action, Q regressed
  to r + gamma (1 - done) V(s'), V by expectile regression (tau 0.7), actor by advantage-weighted log-likelihood
  with weights exp(3 A) clipped at 100;
* ``lax.scan`` of ``train_step`` over a chunk of updates; seeds vmapped over (rng, agent state).

TD3+BC (``make_td3_bc``):

* the same twin Q network and observation normalisation (inside every forward pass); a deterministic actor
  whose output is a ``distrax.Transformed(Deterministic(x), Tanh())`` of a 2x256 ReLU MLP; target copies of
  the actor and twin Q initialised from the same keys (equal at start);
* Adam (eps 1e-5) at a constant 3e-4 for actor and critics;
* one step: sample ONE batch of 256 uniformly from the dataset, then ``num_critic_updates_per_step`` (2)
  critic updates on that batch (``lax.scan``), each with its own target-policy noise: per transition a key
  split three ways, next action = clip(pi_targ(s') + clip(0.2 N(0, 1), -0.5, 0.5), -1, 1), target
  r + gamma (1 - done) min of the target twin Q, loss = the mean over batch AND both critics of the squared
  error; then one actor update on the same batch: per transition Q_1(s, pi(s)) (the twin Q evaluated,
  its first member kept) and the BC error mean_d (pi(s) - a)^2, loss -lambda mean Q_1 + mean BC with
  lambda = 2.5 / (mean |Q_1| + 1e-7) without gradient; then Polyak (0.005) of the target actor and twin Q
  from the updated networks;
* so one ``train_step`` is two critic updates and one actor update: Unifloral's ``num_updates`` (1M by
  default) counts these steps, i.e. 2M critic updates.
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


# ----------------------------------------------------------------------------------------------------
# TD3+BC
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TD3BCConfig:
    """Unifloral's TD3+BC defaults."""

    lr: float = 3e-4
    batch_size: int = 256
    gamma: float = 0.99
    polyak_step_size: float = 0.005
    td3_alpha: float = 2.5
    noise_clip: float = 0.5
    policy_noise: float = 0.2
    num_critic_updates_per_step: int = 2
    hidden: int = 256


class TD3BCState(NamedTuple):
    actor: TrainState
    actor_target: TrainState
    dual_q: TrainState
    dual_q_target: TrainState


class DeterministicTanhActor(nn.Module):
    """A Dirac policy at tanh(MLP(s)), as a distrax distribution (Unifloral samples it, with or without a key)."""

    num_actions: int
    obs_mean: jax.Array
    obs_std: jax.Array
    hidden: int = 256

    @nn.compact
    def __call__(self, obs):
        x = _normalise(obs, self.obs_mean, self.obs_std)
        for _ in range(2):
            x = nn.relu(nn.Dense(self.hidden)(x))
        return distrax.Transformed(distrax.Deterministic(nn.Dense(self.num_actions)(x)), distrax.Tanh())


def td3_bc_targets(key, actor_target_params, q_target_params, batch: OfflineData, actor_net: nn.Module,
                   q_net: nn.Module, config: TD3BCConfig):
    """Per transition (vmapped, one key each): r + gamma (1 - done) min_i Qbar_i(s', a'), with
    a' = clip(pi_targ(s') + clip(policy_noise N(0, 1), -noise_clip, noise_clip), -1, 1)."""

    def one(key, transition):
        next_pi = actor_net.apply(actor_target_params, transition.next_obs)
        _, k_action, k_noise = jax.random.split(key, 3)
        action = next_pi.sample(seed=k_action)
        noise = jnp.clip(config.policy_noise * jax.random.normal(k_noise, action.shape),
                         -config.noise_clip, config.noise_clip)
        action = jnp.clip(action + noise, -1.0, 1.0)
        next_q = jnp.min(q_net.apply(q_target_params, transition.next_obs, action))
        return transition.reward + config.gamma * (1.0 - transition.done) * next_q

    return jax.vmap(one)(jax.random.split(key, batch.reward.shape[0]), batch)


def td3_bc_actor_loss(actor_params, q_params, obs, action, actor_net: nn.Module, q_net: nn.Module, alpha):
    """-lambda mean_B Q_1(s, pi(s)) + mean_B mean_d (pi(s) - a)^2, lambda = alpha / (mean_B |Q_1| + 1e-7)
    without gradient; per transition (vmapped), the twin Q evaluated and its first member kept.
    Returns (loss, (mean Q_1, lambda, mean BC))."""

    def one(obs, action):
        pi_action = actor_net.apply(actor_params, obs).sample(seed=None)  # a Dirac: no key needed
        q1 = q_net.apply(q_params, obs, pi_action)[0]
        return q1, jnp.square(pi_action - action).mean()

    q1, bc = jax.vmap(one)(obs, action)
    lmbda = jax.lax.stop_gradient(alpha / (jnp.abs(q1).mean() + 1e-7))
    return -lmbda * q1.mean() + bc.mean(), (q1.mean(), lmbda, bc.mean())


def make_td3_bc(config: TD3BCConfig, data: OfflineData):
    """``(init(key) -> TD3BCState, train_step((rng, agent_state), _) -> ((rng, agent_state), losses))``.

    One ``train_step`` = ``config.num_critic_updates_per_step`` critic updates and one actor update, all on
    one sampled batch, then the Polyak step of both targets."""
    if config.num_critic_updates_per_step < 1:
        raise ValueError(f"num_critic_updates_per_step must be >= 1, got {config.num_critic_updates_per_step}")
    obs_mean = data.obs.mean(axis=0)
    obs_std = jnp.nan_to_num(data.obs.std(axis=0), nan=1.0)
    num_actions = data.action.shape[-1]
    actor_net = DeterministicTanhActor(num_actions, obs_mean, obs_std, config.hidden)
    q_net = TwinQNetwork(obs_mean, obs_std, config.hidden)
    dummy_obs, dummy_action = jnp.zeros(data.obs.shape[-1]), jnp.zeros(num_actions)
    size = data.obs.shape[0]

    def train_state(key, net, inputs):
        return TrainState.create(apply_fn=net.apply, params=net.init(key, *inputs),
                                 tx=optax.adam(config.lr, eps=1e-5))

    def init(key) -> TD3BCState:
        k_actor, k_q = jax.random.split(key)
        return TD3BCState(  # each target from its network's key: equal at start
            actor=train_state(k_actor, actor_net, [dummy_obs]),
            actor_target=train_state(k_actor, actor_net, [dummy_obs]),
            dual_q=train_state(k_q, q_net, [dummy_obs, dummy_action]),
            dual_q_target=train_state(k_q, q_net, [dummy_obs, dummy_action]),
        )

    def train_step(carry, _):
        rng, agent = carry
        rng, k_batch = jax.random.split(rng)
        idx = jax.random.randint(k_batch, (config.batch_size,), 0, size)
        batch = jax.tree.map(lambda x: x[idx], data)

        def critic_update(carry, _):
            rng, agent = carry
            rng, k_targets = jax.random.split(rng)
            targets = td3_bc_targets(k_targets, agent.actor_target.params, agent.dual_q_target.params, batch,
                                     actor_net, q_net, config)

            def q_loss(params):
                return jnp.square(q_net.apply(params, batch.obs, batch.action) - targets[:, None]).mean()

            loss, grads = jax.value_and_grad(q_loss)(agent.dual_q.params)
            return (rng, agent._replace(dual_q=agent.dual_q.apply_gradients(grads=grads))), loss

        (rng, agent), q_losses = jax.lax.scan(critic_update, (rng, agent), None,
                                              config.num_critic_updates_per_step)

        (a_loss, (q_mean, lmbda, bc)), a_grad = jax.value_and_grad(td3_bc_actor_loss, has_aux=True)(
            agent.actor.params, agent.dual_q.params, batch.obs, batch.action, actor_net, q_net, config.td3_alpha)
        agent = agent._replace(actor=agent.actor.apply_gradients(grads=a_grad))

        def polyak(online, target):
            return target.replace(step=target.step + 1, params=optax.incremental_update(
                online.params, target.params, config.polyak_step_size))

        agent = agent._replace(actor_target=polyak(agent.actor, agent.actor_target),
                               dual_q_target=polyak(agent.dual_q, agent.dual_q_target))
        losses = {"actor_loss": a_loss, "q_loss": q_losses.mean(), "q_mean": q_mean, "lambda": lmbda, "bc_loss": bc}
        return (rng, agent), losses

    return init, train_step
