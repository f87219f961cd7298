"""MOORL: Meta Offline-Online Reinforcement Learning (Chaudhary et al., 2025), on SAC's core.

No official code is public. What the paper's abstract and its Algorithm 1 establish [P], and what we
reconstructed [R] (each reconstructed choice is a config option; nothing here claims to be the paper's
exact setting; docs/algorithms/moorl.md):

* [P] A SAC learner whose actor and critic parameters are *meta-parameters* (phi_meta, theta_meta), an
  offline buffer D_off (the dataset) and an online buffer D_on that starts empty; no offline
  pre-training phase, no large ensemble, no high update-to-data ratio.
* [P] Each iteration n:
    (a) pick one buffer as this iteration's task: B_n in {D_off, D_on};
    (b) take one env step with the meta-policy pi_{phi_meta} into D_on;
    (c) from (phi_0, theta_0) = (phi_meta, theta_meta), take K SAC steps on minibatches from B_n:
            theta_{k+1} = theta_k - Adam(grad L_Q(theta_k)),   phi_{k+1} = phi_k - Adam(grad L_pi(phi_k))
        (L_Q, L_pi, L_alpha are SAC's, ``algorithms/sac.py``);
    (d) first-order (Reptile) meta-step:
            phi_meta   <- phi_meta   + eta_meta (phi_K   - phi_meta)
            theta_meta <- theta_meta + eta_meta (theta_K - theta_meta)
* [R] defaults: B_n by a fair coin (``buffer_choice="coin"``, ``offline_prob=0.5``), D_off only until D_on
  holds one batch; inner Adam state persistent across iterations (``inner_optimizer="persistent"``, or
  "reset" each iteration); target critics Polyak-averaged toward theta_meta after each meta-step
  (``target_update="meta"``, or "inner": keep the inner steps' own Polyak updates); the temperature is
  shared, updated in the inner steps and not meta-learned; K = 2, eta_meta = 0.5; a LayerNorm critic
  (``critic_layer_norm=True``: RLPD's critic without its ensemble; the paper only says "no large ensembles",
  and the plain SAC critic learns several times slower here, see ``Config``); SAC defaults otherwise;
  the meta-policy acts and is evaluated.

Consistency check (tests/test_moorl.py): with eta_meta = 1 and K = 1 the meta-step is the identity on the
adapted parameters, so MOORL is SAC alternating offline and online batches (the step is computed as
(1 - eta) meta + eta adapted, which is exactly the adapted parameters at eta = 1).

``eta_meta`` and ``offline_prob`` are traced: a sweep over them compiles once.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from algorithms import _sac_core as sac
from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget, Phase
from hybrid_rl.buffers import buffer_sample, dataset_sample, sample_mixed
from hybrid_rl.problem import Problem
from hybrid_rl.training import polyak
from hybrid_rl.types import Transition


@dataclasses.dataclass(frozen=True)
class Config(sac.Config):
    total_steps: int = 100_000  # online env steps (one per iteration per env); no offline pre-training
    warmup_steps: int = 0  # Algorithm 1 acts with the meta-policy from the first step
    inner_steps: int = 2  # K: inner SAC updates per iteration, from the meta-parameters  [R]
    eta_meta: float = 0.5  # Reptile step size of the meta-update (traced)  [R]
    buffer_choice: str = "coin"  # "coin": B_n by a biased coin; "alternate": offline/online in turn; "mixed": 50/50 batches  [R]
    offline_prob: float = 0.5  # P(B_n = offline) under "coin" (traced)  [R]
    inner_optimizer: str = "persistent"  # "persistent": inner Adam state carried across iterations; "reset"  [R]
    target_update: str = "meta"  # "meta": Polyak toward theta_meta after the meta-step; "inner": per inner step  [R]
    meta_learning: bool = True  # False: no meta-parameters, K plain SAC steps on B_n (the alternating-SAC ablation)
    # LayerNorm in the twin critics (RLPD's critic without its ensemble)  [R]. Without it the reconstruction
    # barely learns from mixed data in a few thousand steps (Pendulum `medium`, 4k steps, 8 seeds: 22.9 vs 93.9
    # normalized; paper_figures/README.md, F1); False gives SAC's plain critic (docs/algorithms/sac.md).
    critic_layer_norm: bool = True


TRACED = sac.TRACED + ("eta_meta", "offline_prob")


# ------------------------------------------------------------------------------------------------
# Inner SAC step and meta-step
# ------------------------------------------------------------------------------------------------


def sac_step(state: sac.SACState, key, batch: Transition, target_entropy: float, config: Config):
    """One SAC update (critic with its Polyak step, then actor and temperature) on ``batch``: SAC's
    own pieces, with the key split (critic, actor) as here. This is the alternating-SAC update."""
    k_critic, k_actor = jax.random.split(key)
    state, critic_metrics = sac.update_critic(state, k_critic, batch, config)
    state, actor_metrics = sac.update_actor_and_temperature(state, k_actor, batch.obs, target_entropy, config)
    return state, {**critic_metrics, **actor_metrics}


def reptile(meta, adapted, eta):
    """meta + eta (adapted - meta), written as (1 - eta) meta + eta adapted (exact at eta = 1)."""
    return jax.tree.map(lambda m, a: (1.0 - eta) * m + eta * a, meta, adapted)


def meta_update(state: sac.SACState, keys, batches: Transition, eta, target_entropy: float, config: Config):
    """K inner SAC steps from the meta-parameters on ``batches`` (leading axis K, with ``keys``), then the
    Reptile step of actor and critic parameters with ``eta``. Returns (state, metrics averaged over K)."""
    if not config.meta_learning:  # the ablation: SAC on this iteration's buffer, no meta-step
        state, metrics = jax.lax.scan(lambda s, kb: sac_step(s, kb[0], kb[1], target_entropy, config),
                                      state, (keys, batches))
        return state, {**jax.tree.map(jnp.mean, metrics), "meta_step_norm": jnp.float32(0.0)}
    meta_actor, meta_critic = state.actor.params, state.critic.params
    meta_target = state.target_critic_params
    inner = state
    if config.inner_optimizer == "reset":
        inner = state.replace(
            actor=state.actor.replace(opt_state=state.actor.tx.init(meta_actor)),
            critic=state.critic.replace(opt_state=state.critic.tx.init(meta_critic)),
        )
    adapted, metrics = jax.lax.scan(
        lambda s, kb: sac_step(s, kb[0], kb[1], target_entropy, config), inner, (keys, batches)
    )
    actor_params = reptile(meta_actor, adapted.actor.params, eta)
    critic_params = reptile(meta_critic, adapted.critic.params, eta)
    if config.target_update == "meta":
        target = polyak(meta_target, critic_params, state.hparams["tau"])
    else:
        target = adapted.target_critic_params
    state = adapted.replace(
        actor=adapted.actor.replace(params=actor_params),
        critic=adapted.critic.replace(params=critic_params),
        target_critic_params=target,
    )
    metrics = jax.tree.map(jnp.mean, metrics)
    metrics["meta_step_norm"] = jnp.sqrt(
        sum(jnp.sum((a - m) ** 2) for a, m in zip(jax.tree.leaves(actor_params), jax.tree.leaves(meta_actor)))
    )
    return state, metrics


def _check(config: Config, problem: Problem):
    problem.require_dataset("moorl", example_kind="medium_replay")
    if config.inner_steps < 1:
        raise ValueError(f"inner_steps (K) must be >= 1, got {config.inner_steps}")
    if config.buffer_choice not in ("coin", "alternate", "mixed"):
        raise ValueError(f"buffer_choice must be 'coin', 'alternate' or 'mixed', got {config.buffer_choice!r}")
    if config.inner_optimizer not in ("persistent", "reset"):
        raise ValueError(f"inner_optimizer must be 'persistent' or 'reset', got {config.inner_optimizer!r}")
    if config.target_update not in ("meta", "inner"):
        raise ValueError(f"target_update must be 'meta' or 'inner', got {config.target_update!r}")


# ------------------------------------------------------------------------------------------------
# Agent
# ------------------------------------------------------------------------------------------------


def make(config: Config, problem: Problem) -> Agent:
    _check(config, problem)
    # SAC's init (networks, Adam, temperature, online buffer, env) and policy; MOORL replaces the loop.
    base = sac.make(dataclasses.replace(config, offline_fraction=0.0), problem, name="moorl")
    data = problem.dataset.replace(obs=problem.flat_obs(problem.dataset.obs),
                                   next_obs=problem.flat_obs(problem.dataset.next_obs))
    target_entropy = -config.target_entropy_scale * problem.action_dim
    num_envs, K, B = config.num_envs, config.inner_steps, config.batch_size

    def choose_batches(state: sac.SACState, key):
        """K minibatches from this iteration's buffer (a), and 1.0 if it is the offline one."""
        k_coin, k_off, k_on = jax.random.split(key, 3)
        if config.buffer_choice == "mixed":
            batches = jax.vmap(lambda k: sample_mixed(k, state.buffer, data, B, 0.5))(jax.random.split(k_on, K))
            return batches, jnp.float32(0.5)
        if config.buffer_choice == "coin":
            offline = jax.random.uniform(k_coin) < state.hparams["offline_prob"]
        else:
            offline = (state.env_steps // num_envs) % 2 == 0
        offline = offline | (state.buffer.size < B)  # offline only until the online buffer holds a batch
        off = jax.vmap(lambda k: dataset_sample(data, k, B))(jax.random.split(k_off, K))
        on = jax.vmap(lambda k: buffer_sample(state.buffer, k, B))(jax.random.split(k_on, K))
        batches = jax.tree.map(lambda a, b: jnp.where(offline, a, b.astype(a.dtype)), off, on)
        return batches, offline.astype(jnp.float32)

    def iteration(state: sac.SACState):
        key, k_choice, k_collect, k_inner = jax.random.split(state.key, 4)
        state = state.replace(key=key)
        batches, offline = choose_batches(state, k_choice)  # (a) before this step's data arrives
        state, finished = sac.collect(state, k_collect, problem, False)  # (b) the meta-policy acts
        state, metrics = meta_update(  # (c) + (d)
            state, jax.random.split(k_inner, K), batches, state.hparams["eta_meta"], target_entropy, config
        )
        return state, {**metrics, "offline_task": offline, "train_episode_return": finished}

    def init(key, hparams) -> sac.SACState:
        state = base.init(key, hparams)
        # gymnax env states can hold weak-typed leaves that the first step makes strong; fixing the types
        # here keeps the scanned chunk from compiling twice (once for the first chunk, once after).
        return state.replace(env_state=jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), state.env_state))

    return Agent(
        init=init,
        phases=(
            Phase("online", iteration, -(-config.total_steps // num_envs), env_steps_per_iteration=num_envs,
                  grad_steps_per_iteration=K),
        ),
        policy=base.policy,
    )


SPEC = AlgorithmSpec(
    name="moorl",
    description="MOORL: SAC with Reptile meta-parameters; K inner updates on an offline or online task per env step.",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="required",
    action_kinds=("continuous",),
    paper="Chaudhary et al. MOORL: A Framework for Integrating Offline-Online Reinforcement Learning. 2025",
    budget=Budget("total_steps", "env_steps", warmup_field="warmup_steps"),
)
