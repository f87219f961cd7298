"""HNPG: hybrid natural policy gradient (Zhou, Sekhari, Song, Sun, ICLR 2024), and its on-policy NPG baseline.

Follows the authors' official code (docs/algorithms/hnpg.md, docs/algorithms/npg.md). On a finite-horizon problem
with levels h = 0..H-1 (the rich-observation combination lock), every level has its own policy pi_h and
critic Q_h, kept as ONE pytree whose leaves have a leading axis of length H. One iteration:

1. Roll out N = ceil(min_online_steps / H) whole episodes with the current (stochastic) policies.
2. Monte-Carlo returns-to-go G_h = sum_{t >= h} gamma^(t-h) r_t on the online episodes.
3. Per level, draw n_off = N offline tuples (s, a, r, s') of that level, fresh each iteration.
4. Critic fit, backward over h = H-1..0 (a reversed ``lax.scan``), ``critic_steps`` full-batch Adam steps:

       L(Q_h) = mean_online (Q_h(s, a) - G_h)^2  +  mean_offline (Q_h(s, a) - y)^2,
       y = r                                   at h = H-1
         = r + gamma Q_{h+1}(s', a'),  a' ~ pi_{h+1}(.|s')   otherwise (the Q_{h+1} just fitted)

   (``hybrid=False``: the online term only.)
5. V_h(s) = mean of ``value_samples`` samples a ~ pi_h(.|s) of Q_h(s, a); online advantages by GAE
   (gamma, lambda) with these values.
6. Offline advantages: a fresh a ~ pi_h(.|s) per offline state, A = Q_h(s, a) - V_h(s) (stored actions
   are not used by the actor).
7. Actor: per level (``vmap`` over h), one TRPO step (``hybrid_rl.onpolicy.trpo_step``) on the surrogate
   mean(A pi(a|s) / pi_old(a|s)) over the union of online and offline samples, Fisher from the mean
   KL(pi_old || pi) + damping, CG, step scaled to ``max_kl``, backtracking line search.

``hybrid=False`` is the NPG baseline (registered as ``npg``): online MC critic, online states only.

Every other env (gymnax CartPole, Pendulum, ...) runs the stationary mode of ``algorithms._hnpg_stationary``
([R]): one policy and one critic shared over time steps, discounted (gamma 0.99 by default), vectorised
rollouts, the offline data from ``problem.dataset`` (``dataset=expert`` on the command line). It uses this
file's policy/critic networks and the pieces below (``npg_actor_step``, ``sampled_advantage``, ...);
config fields marked [lock] or [stationary] apply to one mode only.

Policies: the ``logits`` lock (continuous 10-vectors) uses an unclipped Gaussian with a state-independent
log-std (the official code's); discrete actions use a categorical head ([R]). Each seed draws its own
lock from its key (``redraw_lock``): it lives in ``state.env_params``, which the agent acts on, makes its
offline data with, and is evaluated on (``Agent.eval_env_params``).

Deviations ([R], documented config options): ``offline_episodes`` defaults to 2,000 (the official code
keeps 50,000; memory per vmapped seed); ``check_kl`` also rejects a line-search candidate whose exact KL
exceeds ``max_kl`` (the official search checks only the improvement; set False for that); the
``critic_order="jacobi"`` option fits every level against last iteration's Q_{h+1}.
"""

from __future__ import annotations

import dataclasses
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
    level_slice,
    network_fns,
    npg_actor_step,
    resolve_gamma,
    sample,
    sampled_advantage,
)
from algorithms._hnpg_stationary import make_stationary
from envs.combination_lock import OFFLINE_KINDS, RichCombinationLock, collect_comblock_episodes, randomize
from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget, Phase
from hybrid_rl.onpolicy import gae
from hybrid_rl.problem import Problem
from hybrid_rl.rollout import rollout


@dataclasses.dataclass(frozen=True)
class Config:
    """Fields marked [lock] apply only to the per-level mode (combination lock), [stationary] only to the
    stationary mode of ``algorithms._hnpg_stationary`` (every other env); the rest apply to both."""

    num_iterations: int = 300  # NPG iterations (the official code hard-codes 1500)
    min_online_steps: int = 1000  # online env steps per iteration: [lock] ceil(this / H) whole episodes;
    # [stationary] ceil(this / num_envs) steps of each of num_envs envs
    hybrid: bool = True  # False: on-policy NPG (online MC critic, online states only)
    offline: str = "hnpg"  # [lock] offline data kind: hnpg | epsilon | mixed | random ([stationary]: dataset=)
    offline_episodes: int = 2000  # [lock] offline episodes per seed (official: 50,000)
    offline_epsilon: float = -1.0  # [lock] noise of the offline behaviour; < 0 means 1/H
    gamma: float = -1.0  # < 0: the mode's default, 1 on the lock (finite horizon; the official --gamma flag
    # is unused) and 0.99 in the stationary mode
    gae_lambda: float = 0.97
    critic_lambda: float = 1.0  # [stationary] lambda of the online critic targets (1: Monte-Carlo returns,
    # bootstrapped with V(s') at a time-limit end and at the end of the rollout); [lock] always MC
    num_envs: int = 8  # [stationary] parallel envs, stepped on across iterations (like PPO)
    critic_lr: float = 3e-4  # Adam, fresh for every fit (critic_reset_optimizer)
    critic_steps: int = 30  # full-batch steps per level per iteration
    critic_reset_optimizer: bool = True  # official: a new optimizer for every critic fit
    critic_order: str = "backward"  # [lock] "backward" (official) or "jacobi" ([R]: last iteration's Q_{h+1})
    value_samples: int = 10  # samples of pi_h in V_h(s) = E_a Q_h(s, a)
    max_kl: float = 0.01
    damping: float = 0.1
    cg_iters: int = 10
    backtracks: int = 10  # line-search fractions 0.5^k, k < backtracks
    accept_ratio: float = 0.1  # accept when actual / expected improvement > this and actual > 0
    check_kl: bool = True  # [R] also require KL(pi_old || pi_new) <= max_kl
    policy_hidden: tuple[int, ...] = (16, 16)
    critic_hidden: tuple[int, ...] = (64, 64)
    init_log_std: float = 0.0
    redraw_lock: bool = True  # [lock] each seed draws its own lock from its key
    # Evaluation follows the runner's ``deterministic`` request like every algorithm's: the Gaussian mean
    # (arg-max for categorical) by default, samples with ``deterministic_eval=False`` (the official code
    # evaluates the sampled policy).


TRACED = ("gamma", "gae_lambda", "critic_lr", "max_kl", "damping")


@struct.dataclass
class HNPGState:
    policy_params: Any  # leaves (H, ...)
    critic_params: Any  # leaves (H, ...)
    critic_opt: Any  # leaves (H, ...) (used when critic_reset_optimizer=False)
    env_params: Any  # this seed's lock
    offline: Any  # Transition with leaves (H, E, ...), or None
    env_steps: chex.Array
    key: chex.PRNGKey
    hparams: dict


# ------------------------------------------------------------------------------------------------
# The pieces of one iteration (pure; tested on their own)
# ------------------------------------------------------------------------------------------------


def fit_critics_backward(critic_apply, critic_params, fit_level, H: int, jacobi: bool = False):
    """Backward sweep h = H-1..0: ``fit_level(h, params_h, next_params) -> (new params_h, loss)`` where
    ``next_params`` are Q_{h+1}'s freshly fitted parameters (``jacobi``: last iteration's). A reversed
    ``lax.scan`` over the stacked (H, ...) parameters; returns (new stacked params, losses (H,))."""

    def body(next_params, xs):
        h, params_h, old_next = xs
        use_next = old_next if jacobi else next_params
        new_params, loss = fit_level(h, params_h, use_next)
        return new_params, (new_params, loss)

    old_next = jax.tree.map(lambda x: jnp.concatenate([x[1:], x[-1:]], 0), critic_params)
    init = level_slice(critic_params, H - 1)
    _, (new_params, losses) = jax.lax.scan(body, init, (jnp.arange(H), critic_params, old_next), reverse=True)
    return new_params, losses


def make(config: Config, problem: Problem, name: str = "hnpg") -> Agent:
    env = problem.env
    if not isinstance(env, RichCombinationLock):
        return make_stationary(config, problem, name)
    if config.offline not in OFFLINE_KINDS:
        raise ValueError(f"offline must be one of {OFFLINE_KINDS}, got {config.offline!r}")
    if config.critic_order not in ("backward", "jacobi"):
        raise ValueError(f"critic_order must be 'backward' or 'jacobi', got {config.critic_order!r}")
    H = env.horizon
    D = problem.obs_dim
    A = env.num_actions
    discrete = env.action_mode == "discrete"
    N = math.ceil(config.min_online_steps / H)
    hybrid = config.hybrid
    pi_net = LevelPolicy(A, config.policy_hidden, config.init_log_std)
    q_net = LevelCritic(config.critic_hidden)
    epsilon = 1.0 / H if config.offline_epsilon < 0 else config.offline_epsilon

    def features(action):
        return jax.nn.one_hot(action, A) if discrete else action

    def critic_tx(hp):
        return optax.adam(hp["critic_lr"])

    def init(key, hparams) -> HNPGState:
        k_lock, k_pi, k_q, k_off, k_state = jax.random.split(key, 5)
        env_params = randomize(problem.env_params, k_lock) if config.redraw_lock else problem.env_params
        obs0 = jnp.zeros((1, D))
        pi_params = jax.vmap(lambda k: pi_net.init(k, obs0))(jax.random.split(k_pi, H))
        q_params = jax.vmap(lambda k: q_net.init(k, obs0, jnp.zeros((1, A))))(jax.random.split(k_q, H))
        offline = None
        if hybrid:
            data = collect_comblock_episodes(k_off, env, env_params, config.offline_episodes, config.offline, epsilon)
            # episode-major (E*H) -> level-major (H, E)
            offline = jax.tree.map(
                lambda x: jnp.swapaxes(x.reshape((config.offline_episodes, H) + x.shape[1:]), 0, 1), data
            )
        return HNPGState(
            policy_params=pi_params,
            critic_params=q_params,
            critic_opt=jax.vmap(critic_tx(hparams).init)(q_params),
            env_params=env_params,
            offline=offline,
            env_steps=jnp.int32(0),
            key=k_state,
            hparams=resolve_gamma(hparams, 1.0),
        )

    pi_apply, q_apply, value = network_fns(pi_net, q_net, features, discrete, config.value_samples)

    def collect_episodes(key, pi_params, env_params):
        """N whole episodes, synchronous over levels: leaves of the returned batch are (H, N, ...)."""

        def policy(obs, env_state, h, k_act):
            out, log_std = pi_apply(level_slice(pi_params, h), obs)
            return sample(discrete, k_act, out, log_std), ()

        _, (tr, info, _) = rollout(env, env_params, policy, key, N, H, info_keys=("success", "max_reach"))
        return dict(obs=tr.obs, action=tr.action, reward=tr.reward, next_obs=tr.next_obs,
                    terminated=tr.terminated, **info)

    def iteration(state: HNPGState):
        hp = state.hparams
        gamma = hp["gamma"]
        key, k_roll, k_off, k_fit, k_val, k_adv = jax.random.split(state.key, 6)
        on = collect_episodes(k_roll, state.policy_params, state.env_params)
        chex.assert_shape(on["reward"], (H, N))
        # 2. Monte-Carlo returns-to-go
        _, mc = jax.lax.scan(lambda g, r: (r + gamma * g, r + gamma * g), jnp.zeros(N), on["reward"], reverse=True)

        # 3. n_off = N offline tuples per level, fresh each iteration
        if hybrid:
            E = config.offline_episodes
            idx = jax.random.randint(k_off, (H, N), 0, E)
            off = jax.tree.map(lambda x: jax.vmap(lambda xl, il: xl[il])(x, idx), state.offline)

        # 4. critic fit, backward over levels
        def fit_level(h, params_h, next_params):
            k = jax.random.fold_in(k_fit, h)
            on_obs, on_act, on_target = on["obs"][h], on["action"][h], mc[h]
            if hybrid:
                o = level_slice(off, h)
                h_next = jnp.minimum(h + 1, H - 1)
                nout, nls = pi_apply(level_slice(state.policy_params, h_next), o.next_obs)
                next_a = sample(discrete, k, nout, nls)
                next_q = q_apply(next_params, o.next_obs, next_a)
                y = critic_targets(o.reward, o.terminated, gamma * next_q, h == H - 1)
                y = jax.lax.stop_gradient(y)

            def loss_fn(p):
                loss = jnp.mean((q_apply(p, on_obs, on_act) - on_target) ** 2)
                if hybrid:
                    loss = loss + jnp.mean((q_apply(p, o.obs, o.action) - y) ** 2)
                return loss

            tx = critic_tx(hp)
            opt0 = tx.init(params_h) if config.critic_reset_optimizer else level_slice(state.critic_opt, h)
            p, _, loss = fit_regression(loss_fn, params_h, tx, opt0, config.critic_steps)
            return p, loss

        critic_params, critic_losses = fit_critics_backward(
            q_apply, state.critic_params, fit_level, H, jacobi=config.critic_order == "jacobi"
        )

        # 5. values and online GAE advantages with the updated critic
        level_keys = jax.random.split(k_val, H)
        values = jax.vmap(value)(level_keys, state.policy_params, critic_params, on["obs"])  # (H, N)
        next_values = jnp.concatenate([values[1:], jnp.zeros((1, N))], 0)
        adv_on, _ = gae(on["reward"], values, next_values, on["terminated"], jnp.zeros_like(on["terminated"]),
                        gamma, hp["gae_lambda"])

        # 6. offline states with on-policy actions: A = Q_h(s, a) - V_h(s)
        obs_all, act_all, adv_all = on["obs"], on["action"], adv_on
        if hybrid:
            def offline_adv(k, pp, qp, s):
                return sampled_advantage(pi_apply, q_apply, discrete, config.value_samples, k, pp, qp, s)

            a_off, adv_off = jax.vmap(offline_adv)(jax.random.split(k_adv, H), state.policy_params, critic_params,
                                                   off.obs)
            obs_all = jnp.concatenate([obs_all, off.obs], 1)
            act_all = jnp.concatenate([act_all, a_off], 1)
            adv_all = jnp.concatenate([adv_all, adv_off], 1)

        # 7. one TRPO step per level, vmapped over levels
        def actor_level(pp, obs, act, adv):
            return npg_actor_step(pi_apply, discrete, config, hp, pp, obs, act, adv)

        policy_params, info = jax.vmap(actor_level)(state.policy_params, obs_all, act_all, adv_all)
        state = state.replace(policy_params=policy_params, critic_params=critic_params, key=key,
                              env_steps=state.env_steps + N * H)
        returns = on["reward"].sum(0)
        metrics = {
            "train_episode_return": returns.mean(),
            "train_success_rate": on["success"][-1].astype(jnp.float32).mean(),
            "train_max_reach": on["max_reach"][-1].astype(jnp.float32).mean(),
            "critic_loss": critic_losses.mean(),
            "kl": info["kl"].mean(),
            "step_fraction": info["step_fraction"].mean(),
            "accepted_levels": (info["step_fraction"] > 0).astype(jnp.float32).mean(),
        }
        return state, metrics

    def policy(state: HNPGState, obs, key, deterministic: bool):
        g = env.decode_observation(obs)
        h = jnp.clip(jnp.argmax(g[3 : 3 + H]), 0, H - 1)  # the step one-hot sits at 3 + h
        out, log_std = pi_apply(level_slice(state.policy_params, h), problem.flat_obs(obs))
        greedy = jnp.argmax(out).astype(jnp.int32) if discrete else out
        return greedy if deterministic else sample(discrete, key, out, log_std)

    return Agent(
        init=init,
        phases=(Phase("online", iteration, config.num_iterations, env_steps_per_iteration=N * H,
                      grad_steps_per_iteration=H * config.critic_steps),),
        policy=policy,
        eval_env_params=lambda state: state.env_params,
    )


@dataclasses.dataclass(frozen=True)
class NPGConfig(Config):
    hybrid: bool = False  # on-policy NPG: online MC critic, online states only


def make_npg(config: Config, problem: Problem) -> Agent:
    return make(config, problem, name="npg")


SPEC_HNPG = AlgorithmSpec(
    name="hnpg",
    description="HNPG: NPG/TRPO actor, critic fit on online MC returns + offline TD (per level on the lock).",
    config_cls=Config,
    make=make,
    traced=TRACED,
    # the lock: its own per-seed offline data (``offline=`` kind); other envs: needs ``dataset=``
    dataset="optional",
    action_kinds=("continuous", "discrete"),
    paper="Zhou, Sekhari, Song, Sun, Offline Data Enhanced On-Policy Policy Gradient with Provable Guarantees, ICLR 2024",
    budget=Budget("num_iterations", "env_steps", counts_iterations=True),
)

SPEC_NPG = AlgorithmSpec(
    name="npg",
    description="NPG/TRPO (per level on the lock) with an online Monte-Carlo critic (HNPG with hybrid=False).",
    config_cls=NPGConfig,
    make=make_npg,
    traced=TRACED,
    dataset="none",
    action_kinds=("continuous", "discrete"),
    paper="Kakade 2001; Schulman et al. 2015 (HNPG's on-policy baseline)",
    budget=Budget("num_iterations", "env_steps", counts_iterations=True),
)
