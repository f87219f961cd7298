"""Behaviour cloning: maximum likelihood of the dataset's actions (offline only).

    continuous, tanh-Gaussian:  L(phi) = - mean_{(s,a) in D} log pi_phi(clip(a, -1+eps, 1-eps) | s)
    continuous, deterministic:  L(phi) =   mean_{(s,a) in D} || mu_phi(s) - a ||^2
    discrete, categorical:      L(phi) = - mean_{(s,a) in D} log softmax(logits_phi(s))[a]

Actions at the bounds are pulled in by ``eps`` because atanh(+-1) is infinite. Evaluation acts with the
mode (tanh of the mean, or the arg-max), or samples when ``deterministic=False``.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
from flax import struct
from flax.training.train_state import TrainState

from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget, Phase
from hybrid_rl.buffers import dataset_sample
from hybrid_rl.networks import MLP, CategoricalPolicy, TanhGaussianPolicy, tanh_gaussian_mode
from hybrid_rl.problem import Problem
from hybrid_rl.training import adam


@dataclasses.dataclass(frozen=True)
class Config:
    num_steps: int = 20_000  # gradient steps
    batch_size: int = 256
    lr: float = 3e-4
    hidden_sizes: tuple[int, ...] = (256, 256)
    continuous_policy: str = "tanh_gaussian"  # or "deterministic" (MSE regression)
    action_eps: float = 1e-4  # actions are clipped to [-1+eps, 1-eps] for the tanh-Gaussian likelihood


@struct.dataclass
class BCState:
    policy: TrainState
    key: chex.PRNGKey
    hparams: dict


def bc_loss(params, apply_fn, obs, action, kind: str, eps: float):
    out = apply_fn(params, obs)
    if kind == "categorical":
        return -jnp.mean(out.log_prob(action))
    if kind == "deterministic":
        return jnp.mean(jnp.sum((jnp.tanh(out) - action) ** 2, axis=-1))
    return -jnp.mean(out.log_prob(jnp.clip(action, -1.0 + eps, 1.0 - eps)))


def make(config: Config, problem: Problem) -> Agent:
    dataset = problem.require_dataset("bc")
    data = dataset.replace(obs=problem.flat_obs(dataset.obs))
    if problem.action_kind == "discrete":
        kind, net = "categorical", CategoricalPolicy(problem.action_dim, config.hidden_sizes)
    elif config.continuous_policy == "deterministic":
        kind, net = "deterministic", MLP(config.hidden_sizes, problem.action_dim)
    elif config.continuous_policy == "tanh_gaussian":
        kind, net = "tanh_gaussian", TanhGaussianPolicy(problem.action_dim, config.hidden_sizes, -5.0, 2.0)
    else:
        raise ValueError(f"continuous_policy must be 'tanh_gaussian' or 'deterministic', got {config.continuous_policy!r}")

    def init(key, hparams):
        k_net, k_state = jax.random.split(key)
        params = net.init(k_net, jnp.zeros((1, problem.obs_dim)))
        policy = TrainState.create(apply_fn=net.apply, params=params, tx=adam(hparams["lr"]))
        return BCState(policy=policy, key=k_state, hparams=hparams)

    def iteration(state: BCState):
        key, k_batch = jax.random.split(state.key)
        batch = dataset_sample(data, k_batch, config.batch_size)
        loss, grads = jax.value_and_grad(bc_loss)(
            state.policy.params, state.policy.apply_fn, batch.obs, batch.action, kind, config.action_eps
        )
        return state.replace(policy=state.policy.apply_gradients(grads=grads), key=key), {"bc_loss": loss}

    def policy(state: BCState, obs, key, deterministic: bool):
        out = state.policy.apply_fn(state.policy.params, problem.flat_obs(obs))
        if kind == "categorical":
            action = jnp.argmax(out.logits, axis=-1) if deterministic else out.sample(seed=key)
        elif kind == "deterministic":
            action = jnp.tanh(out)
        else:
            action = tanh_gaussian_mode(out) if deterministic else out.sample(seed=key)
        return problem.to_env_action(action)

    return Agent(
        init=init,
        phases=(Phase("offline", iteration, config.num_steps, grad_steps_per_iteration=1),),
        policy=policy,
    )


SPEC = AlgorithmSpec(
    name="bc",
    description="Behaviour cloning from an offline dataset (tanh-Gaussian, deterministic or categorical).",
    config_cls=Config,
    make=make,
    traced=("lr",),
    dataset="required",
    action_kinds=("continuous", "discrete"),
    budget=Budget("num_steps", "grad_steps"),
)
