"""Proximal Policy Optimisation (Schulman et al., 2017), clipped, as PureJaxRL writes it, with two fixes.

Each iteration collects ``num_steps`` steps from ``num_envs`` vectorised envs, computes GAE advantages,
then runs ``update_epochs`` epochs of ``num_minibatches`` minibatch steps under ``lax.scan``. With
r_t(theta) = pi_theta(a_t|s_t) / pi_old(a_t|s_t) and advantages A normalised per minibatch:

    L_clip  = -mean min( r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t )
    L_V     =  0.5 mean max( (V(s_t) - R_t)^2, (V_old + clip(V(s_t) - V_old, -eps, eps) - R_t)^2 )
    L       =  L_clip + vf_coef L_V - ent_coef mean H(pi(.|s_t))

Fixes over PureJaxRL (docs/algorithms/ppo.md): GAE bootstraps through time-limit truncation with the true final
observation (``hybrid_rl.onpolicy.gae``), and every seed gets its own initialisation (the runner's keys).
Discrete envs use a categorical policy; continuous envs a Gaussian with state-independent log-std whose
samples are clipped to [-1, 1] by ``problem.to_env_action`` (the stored action is the unclipped sample).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget, Phase
from hybrid_rl.networks import MLP
from hybrid_rl.onpolicy import gae
from hybrid_rl.problem import Problem
from hybrid_rl.training import reset_envs, step_envs


@dataclasses.dataclass(frozen=True)
class Config:
    total_steps: int = 500_000  # env steps over all parallel envs
    num_envs: int = 4  # parallel envs (PureJaxRL's CartPole setting)
    num_steps: int = 128  # steps per env per rollout
    update_epochs: int = 4  # passes over each rollout
    num_minibatches: int = 4  # minibatches per epoch
    lr: float = 2.5e-4  # Adam learning rate (annealed linearly to 0 when anneal_lr)
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2  # ratio (and value) clipping
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    normalize_advantages: bool = True


TRACED = ("lr", "gamma", "gae_lambda", "clip_eps", "ent_coef", "vf_coef")


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs; the actor head is a categorical or a state-independent Gaussian."""

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs):
        out = MLP(self.hidden_sizes, self.action_dim, activation=self.activation, output_scale=0.01)(obs)
        value = MLP(self.hidden_sizes, 1, activation=self.activation, output_scale=1.0)(obs)[..., 0]
        if self.discrete:
            return distrax.Categorical(logits=out), value
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return distrax.MultivariateNormalDiag(out, jnp.exp(log_std)), value


@struct.dataclass
class PPOState:
    params: Any
    opt_state: Any
    env_state: Any
    obs: chex.Array
    env_steps: chex.Array
    updates: chex.Array  # minibatch steps taken (drives the learning-rate annealing)
    key: chex.PRNGKey
    hparams: dict


# ------------------------------------------------------------------------------------------------
# Loss
# ------------------------------------------------------------------------------------------------


def ppo_loss(log_prob, old_log_prob, advantages, value, old_value, returns, entropy, clip_eps, vf_coef, ent_coef,
             normalize_advantages: bool = True):
    """The clipped PPO loss of the module docstring on arrays of per-sample numbers; returns (loss, parts)."""
    chex.assert_equal_shape([log_prob, old_log_prob, advantages, value, old_value, returns])
    if normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    ratio = jnp.exp(log_prob - old_log_prob)
    policy_loss = -jnp.mean(jnp.minimum(ratio * advantages, jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * advantages))
    v_clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
    value_loss = 0.5 * jnp.mean(jnp.maximum((value - returns) ** 2, (v_clipped - returns) ** 2))
    ent = jnp.mean(entropy)
    total = policy_loss + vf_coef * value_loss - ent_coef * ent
    return total, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": ent,
                   "clip_fraction": jnp.mean(jnp.abs(ratio - 1) > clip_eps)}


# ------------------------------------------------------------------------------------------------
# make
# ------------------------------------------------------------------------------------------------


def make(config: Config, problem: Problem) -> Agent:
    discrete = problem.action_kind == "discrete"
    net = ActorCritic(problem.action_dim, discrete, config.hidden_sizes, config.activation)
    num_envs, num_steps = config.num_envs, config.num_steps
    batch = num_envs * num_steps
    if batch % config.num_minibatches:
        raise ValueError(f"num_envs * num_steps ({batch}) must divide into num_minibatches ({config.num_minibatches})")
    minibatch = batch // config.num_minibatches
    num_iterations = max(1, config.total_steps // batch)
    total_updates = num_iterations * config.update_epochs * config.num_minibatches
    # Adam with the learning rate applied by hand (so the traced lr and its annealing need no schedule object).
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.scale_by_adam(eps=1e-5))

    def init(key, hparams) -> PPOState:
        k_net, k_env, k_state = jax.random.split(key, 3)
        params = net.init(k_net, jnp.zeros((1, problem.obs_dim)))
        obs, env_state = reset_envs(problem, k_env, num_envs)
        return PPOState(params, tx.init(params), env_state, obs, jnp.int32(0), jnp.int32(0),
                        k_state, hparams)

    def rollout_step(carry, key):
        state = carry
        k_act, k_env = jax.random.split(key)
        dist, value = net.apply(state.params, state.obs)
        action, log_prob = dist.sample_and_log_prob(seed=k_act)
        obs, env_state, tr, finished = step_envs(problem, k_env, state.env_state, state.obs, action)
        state = state.replace(env_state=env_state, obs=obs)
        return state, (tr, log_prob, value, finished)

    def iteration(state: PPOState):
        hp = state.hparams
        key, k_roll, k_perm = jax.random.split(state.key, 3)
        state, (tr, old_log_prob, values, finished) = jax.lax.scan(
            rollout_step, state.replace(key=key), jax.random.split(k_roll, num_steps)
        )
        # V of the true next observation of every step: bootstraps through truncation (fix 1).
        _, next_values = net.apply(state.params, tr.next_obs)
        advantages, returns = gae(tr.reward, values, next_values, tr.terminated, tr.truncated,
                                  hp["gamma"], hp["gae_lambda"])
        data = (tr.obs, tr.action, old_log_prob, values, advantages, returns)
        data = jax.tree.map(lambda x: x.reshape((batch,) + x.shape[2:]), data)

        def minibatch_step(carry, mb):
            params, opt_state, updates = carry
            obs, action, old_lp, old_v, adv, ret = mb

            def loss_fn(p):
                dist, value = net.apply(p, obs)
                return ppo_loss(dist.log_prob(action), old_lp, adv, value, old_v, ret, dist.entropy(),
                                hp["clip_eps"], hp["vf_coef"], hp["ent_coef"], config.normalize_advantages)

            (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            step, opt_state = tx.update(grads, opt_state, params)
            frac = 1.0 - updates.astype(jnp.float32) / total_updates if config.anneal_lr else 1.0
            lr = hp["lr"] * frac
            params = jax.tree.map(lambda p, s: p - lr * s, params, step)
            return (params, opt_state, updates + 1), {"loss": loss, **parts}

        def epoch(carry, key):
            perm = jax.random.permutation(key, batch)
            mbs = jax.tree.map(lambda x: x[perm].reshape((config.num_minibatches, minibatch) + x.shape[1:]), data)
            return jax.lax.scan(minibatch_step, carry, mbs)

        (params, opt_state, updates), metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state, state.updates), jax.random.split(k_perm, config.update_epochs)
        )
        state = state.replace(params=params, opt_state=opt_state, updates=updates, env_steps=state.env_steps + batch)
        metrics = jax.tree.map(jnp.mean, metrics)
        return state, {**metrics, "train_episode_return": jnp.nanmean(finished)}

    def policy(state: PPOState, obs, key, deterministic: bool):
        dist, _ = net.apply(state.params, problem.flat_obs(obs))
        action = dist.mode() if deterministic else dist.sample(seed=key)
        return problem.to_env_action(action)

    return Agent(
        init=init,
        phases=(Phase("online", iteration, num_iterations, env_steps_per_iteration=batch,
                      grad_steps_per_iteration=config.update_epochs * config.num_minibatches),),
        policy=policy,
    )


SPEC = AlgorithmSpec(
    name="ppo",
    description="Clipped PPO over vectorised envs (PureJaxRL layout; GAE bootstraps through truncation).",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="none",
    action_kinds=("continuous", "discrete"),
    paper="Schulman et al., Proximal Policy Optimization Algorithms, 2017",
    budget=Budget("total_steps", "env_steps"),
)
