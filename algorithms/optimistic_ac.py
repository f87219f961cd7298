"""Optimistic actor-critic with rare-switching policy resets (Tan, Fan, Wei, ICML 2025), a tabular instantiation
(docs/algorithms/optimistic_ac.md), with its hybrid (offline-initialised) and non-optimistic variants.

A qualitative reproduction: the paper's algorithm could not be read (this is a reconstruction from its
abstract, a figure caption and the rates), so the uncertain choices are config options **[R]**: the critic is
frozen between switches (the caption's reading; ``switching="every_episode"`` refits, and resets the actor,
every episode as an ablation), the switching statistic is count (tabular) or determinant (linear) doubling,
the bonus scale and the actor step size are tuned constants, and regret is reported for the played policies
(not the mixture).

Per episode ``t = 0, 1, ...`` (statistics of :mod:`algorithms.ucbvi`; offline episodes are in the counts from
the start when ``offline_episodes > 0``):

    switch   iff  t = 0  or  some n_h(s,a) >= max(1, 2 n^{(k)}_h(s,a))     (count doubling since the last switch)
    at a switch:  k <- k+1,  t_k <- t,  n^{(k)} <- n,
                  f^k_h(s,a) = min(H-h, r_hat + p_hat . max_a' f^k_{h+1}(., a') + b_h(s,a))   (targets Q*: max)
                  (optimistic: b = c_b * bonus, f = H-h at unvisited pairs; non-optimistic: b = 0 and unvisited
                   pairs have f = r_hat = 0: fitted Q-iteration on the data)
    actor (KL mirror descent from uniform, restarted at each switch):
                  pi^t_h(.|s) ∝ pi^{t-1}_h(.|s) exp(eta f^k_h(s,.)) = softmax(eta (t - t_k + 1) f^k_h(s,.))
    play pi^t for one episode; add it to the counts.

Under ``vmap`` the critic is recomputed every episode and selected with ``where`` (tabular backups are
cheap). ``eta_rule="theory"`` uses ``eta = sqrt(log A / (H^2 K))`` (it leaves play near uniform: the actor never
sharpens within a short phase), ``"constant"`` the O(1) ``eta`` (default 1, a tuned value).

Linear instantiation (``optimistic_ac_linear``): the critic is LSVI-UCB with max targets
(:func:`algorithms._linear.lsvi`; non-optimistic: ``beta = 0``, ridge FQI), recomputed only when
``log det Lambda_h > log 2 + log det Lambda_h^{(k)}`` for some ``h`` (determinant doubling, O(d H log K) switches);
the same reset actor; hybrid data enter ``Lambda_h`` and the regression targets from the start.

Metrics per episode: ``regret_increment`` ``V* - V^{pi^t}`` (exact, expected), ``cumulative_regret``,
``num_switches`` (critic switches so far, the rare-switching count), ``switch`` and ``suboptimality`` (= the
regret increment: the played policy is the output).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from algorithms import _linear
from algorithms._tabular import (
    BONUSES,
    TabularModel,
    add_episode,
    bonus,
    empirical_model,
    optimistic_planning,
    sample_episode,
    tabular_model,
)
from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget, Phase
from hybrid_rl.problem import Problem

ETA_RULES = ("constant", "theory")
SWITCHING = ("doubling", "every_episode")


@dataclasses.dataclass(frozen=True)
class Config:
    episodes: int = 3000  # K: online episodes (one per iteration)
    optimistic: bool = True  # optimistic critic (bonus) or non-optimistic FQI critic (hybrid variant)
    offline_episodes: int = 0  # N_off episodes of an eps-greedy pi* initialising the critic's data (hybrid)
    offline_eps: float = 0.3  # exploration rate of the offline behaviour policy
    bonus: str = "hoeffding"  # "hoeffding" | "kl" (algorithms/ucbvi.py) [R]
    bonus_scale: float = 0.1  # c_b; a tuned 0.1, not the theory constant [R] (traced)
    delta: float = 0.05  # confidence level in the bonus (traced)
    eta: float = 1.0  # actor step size for eta_rule="constant" [R: the theory eta leaves play uniform] (traced)
    eta_rule: str = "constant"  # "constant" | "theory" (eta = sqrt(log A / (H^2 K))) [R]
    switching: str = "doubling"  # "doubling" (rare switches) | "every_episode" (ablation) [R]


TRACED = ("bonus_scale", "delta", "eta", "offline_eps")


@struct.dataclass
class ACState:
    key: jax.Array
    n_sas: jax.Array  # (H, S, A, S) transition counts (offline + online)
    r_sum: jax.Array  # (H, S, A) reward sums
    critic: jax.Array  # (H, S, A) f^k, frozen between switches
    n_at_switch: jax.Array  # (H, S, A) counts at the last switch
    t_switch: jax.Array  # () int32 t_k
    episode: jax.Array  # () int32 t
    num_switches: jax.Array  # () int32
    regret: jax.Array  # () float32
    hparams: dict


def md_policy(critic: jax.Array, eta, steps) -> jax.Array:
    """``softmax(eta * steps * f)``: ``steps`` mirror-descent updates ``pi <- pi exp(eta f) / Z`` from uniform."""
    return jax.nn.softmax(eta * steps * critic, axis=-1)


def doubling_switch(n: jax.Array, n_at_switch: jax.Array) -> jax.Array:
    """True iff some count has doubled (or a pair was visited for the first time) since the last switch."""
    return jnp.any((n >= jnp.maximum(1.0, 2.0 * n_at_switch)) & (n > n_at_switch))


def critic_fit(n_sas, r_sum, optimistic: bool, kind: str, scale, delta, num_episodes: int) -> jax.Array:
    """``f^k``: optimistic (bonus) or plain fitted Q-iteration on the empirical model, max targets."""
    p_hat, r_hat, n = empirical_model(n_sas, r_sum, unvisited="zero")
    b = bonus(n, kind, scale, delta, num_episodes) if optimistic else jnp.zeros(())
    Q, _, _ = optimistic_planning(p_hat, r_hat, b, clip=True)
    return Q


def behaviour_policy(model: TabularModel, eps) -> jax.Array:
    """eps-greedy pi*: the optimal action w.p. 1 - eps, else uniform."""
    greedy = jax.nn.one_hot(model.Q_star.argmax(-1), model.A)
    return (1.0 - eps) * greedy + eps / model.A


def make_agent(config: Config, model: TabularModel) -> Agent:
    if config.bonus not in BONUSES:
        raise ValueError(f"bonus must be one of {BONUSES}, got {config.bonus!r}")
    if config.eta_rule not in ETA_RULES:
        raise ValueError(f"eta_rule must be one of {ETA_RULES}, got {config.eta_rule!r}")
    if config.switching not in SWITCHING:
        raise ValueError(f"switching must be one of {SWITCHING}, got {config.switching!r}")
    H, S, A, K = model.H, model.S, model.A, config.episodes
    v_star = model.v_star

    def init(key, hparams):
        k_off, key = jax.random.split(key)
        n_sas, r_sum = jnp.zeros((H, S, A, S)), jnp.zeros((H, S, A))
        if config.offline_episodes > 0:
            beta = behaviour_policy(model, hparams["offline_eps"])
            s, a, r, s2 = jax.vmap(lambda k: sample_episode(k, model, beta))(
                jax.random.split(k_off, config.offline_episodes)
            )
            h = jnp.broadcast_to(jnp.arange(H), s.shape)
            n_sas = n_sas.at[h, s, a, s2].add(1.0)
            r_sum = r_sum.at[h, s, a].add(r)
        return ACState(
            key=key, n_sas=n_sas, r_sum=r_sum, critic=jnp.zeros((H, S, A)), n_at_switch=jnp.zeros((H, S, A)),
            t_switch=jnp.int32(0), episode=jnp.int32(0), num_switches=jnp.int32(0), regret=jnp.float32(0.0),
            hparams=hparams,
        )

    def eta_of(hp):
        if config.eta_rule == "theory":
            return jnp.sqrt(jnp.log(A) / (H**2 * K))
        return hp["eta"]

    def iteration(state):
        hp = state.hparams
        n = state.n_sas.sum(-1)
        if config.switching == "doubling":
            switch = (state.episode == 0) | doubling_switch(n, state.n_at_switch)
        else:
            switch = jnp.bool_(True)
        fresh = critic_fit(state.n_sas, state.r_sum, config.optimistic, config.bonus, hp["bonus_scale"],
                           hp["delta"], K)
        critic = jnp.where(switch, fresh, state.critic)
        t_switch = jnp.where(switch, state.episode, state.t_switch)
        n_at_switch = jnp.where(switch, n, state.n_at_switch)
        pi = md_policy(critic, eta_of(hp), (state.episode - t_switch + 1).astype(jnp.float32))
        key, k_ep = jax.random.split(state.key)
        s, a, r, s2 = sample_episode(k_ep, model, pi)
        n_sas, r_sum = add_episode(state.n_sas, state.r_sum, s, a, r, s2)
        regret_inc = v_star - model.value(pi)
        state = state.replace(
            key=key, n_sas=n_sas, r_sum=r_sum, critic=critic, n_at_switch=n_at_switch, t_switch=t_switch,
            episode=state.episode + 1, num_switches=state.num_switches + switch.astype(jnp.int32),
            regret=state.regret + regret_inc,
        )
        metrics = {
            "regret_increment": regret_inc,
            "suboptimality": regret_inc,
            "cumulative_regret": state.regret,
            "num_switches": state.num_switches.astype(jnp.float32),
            "switch": switch.astype(jnp.float32),
            "episode_return": r.sum(),
        }
        return state, metrics

    def policy(state, obs, key, deterministic):
        pi = md_policy(state.critic, eta_of(state.hparams), (state.episode - state.t_switch + 1))[0, obs]
        return jnp.where(deterministic, pi.argmax(), jax.random.categorical(key, jnp.log(pi)))

    phase = Phase("online", iteration, num_iterations=K, env_steps_per_iteration=H)
    return Agent(init=init, phases=(phase,), policy=policy)


def make(config: Config, problem: Problem) -> Agent:
    return make_agent(config, tabular_model(problem, "optimistic_ac"))


# --------------------------------------------------------------------------------------------------------------
# Linear MDPs
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LinearConfig:
    episodes: int = 3000  # K: online episodes (one per iteration)
    features: str = "env"  # "env" (linear_mdp) | "onehot" | "lowrank" (comblock_tabular)
    optimistic: bool = True  # LSVI-UCB critic, or ridge FQI (beta = 0) for the non-optimistic hybrid variant
    offline_episodes: int = 0  # N_off episodes of an eps-greedy pi* in the critic's data from the start (hybrid)
    offline_eps: float = 0.3  # exploration rate of the offline behaviour policy (traced)
    beta_scale: float = 0.01  # c in beta = c d H sqrt(log(2 d T / p)); tuned [R] (traced)
    p: float = 0.05  # failure probability in beta (traced)
    reg: float = 1.0  # ridge regulariser (traced)
    eta: float = 1.0  # actor step size for eta_rule="constant" [R] (traced)
    eta_rule: str = "constant"  # "constant" | "theory" (eta = sqrt(log A / (H^2 K))) [R]
    switching: str = "doubling"  # "doubling" (determinant doubling) | "every_episode" (ablation) [R]


LINEAR_TRACED = ("offline_eps", "beta_scale", "p", "reg", "eta")


@struct.dataclass
class LinearACState:
    key: jax.Array
    stats: Any  # _linear.LinearStats (offline + online)
    critic: jax.Array  # (H, S, A) f^k
    logdet_at_switch: jax.Array  # (H,) log det Lambda_h at the last switch
    t_switch: jax.Array
    episode: jax.Array
    num_switches: jax.Array
    regret: jax.Array
    hparams: dict


def log_dets(stats, reg) -> jax.Array:
    """``log det(reg I + sum phi phi^T)`` per step h."""
    d = stats.gram.shape[-1]
    return jnp.linalg.slogdet(stats.gram + reg * jnp.eye(d))[1]


def make_linear_agent(config: LinearConfig, model: TabularModel, phi: jax.Array) -> Agent:
    if config.eta_rule not in ETA_RULES:
        raise ValueError(f"eta_rule must be one of {ETA_RULES}, got {config.eta_rule!r}")
    if config.switching not in SWITCHING:
        raise ValueError(f"switching must be one of {SWITCHING}, got {config.switching!r}")
    H, S, A, K = model.H, model.S, model.A, config.episodes
    phi = jnp.asarray(phi, jnp.float32)
    d = phi.shape[-1]
    v_star = model.v_star

    def init(key, hparams):
        k_off, key = jax.random.split(key)
        stats = _linear.init_stats(H, d, S)
        if config.offline_episodes > 0:
            beta = behaviour_policy(model, hparams["offline_eps"])
            eps = jax.vmap(lambda k: sample_episode(k, model, beta))(jax.random.split(k_off, config.offline_episodes))
            stats = jax.lax.fori_loop(
                0, config.offline_episodes,
                lambda i, st: _linear.add_to_stats(st, phi, *jax.tree.map(lambda x: x[i], eps)), stats,
            )
        return LinearACState(
            key=key, stats=stats, critic=jnp.zeros((H, S, A)), logdet_at_switch=jnp.zeros((H,)),
            t_switch=jnp.int32(0), episode=jnp.int32(0), num_switches=jnp.int32(0), regret=jnp.float32(0.0),
            hparams=hparams,
        )

    def eta_of(hp):
        return jnp.sqrt(jnp.log(A) / (H**2 * K)) if config.eta_rule == "theory" else hp["eta"]

    def iteration(state):
        hp = state.hparams
        ld = log_dets(state.stats, hp["reg"])
        if config.switching == "doubling":
            switch = (state.episode == 0) | jnp.any(ld > jnp.log(2.0) + state.logdet_at_switch)
        else:
            switch = jnp.bool_(True)
        beta = _linear.confidence_radius(hp, d, H, K) if config.optimistic else 0.0
        fresh, _ = _linear.lsvi(state.stats, phi, beta, hp["reg"])
        critic = jnp.where(switch, fresh, state.critic)
        t_switch = jnp.where(switch, state.episode, state.t_switch)
        pi = md_policy(critic, eta_of(hp), (state.episode - t_switch + 1).astype(jnp.float32))
        key, k_ep = jax.random.split(state.key)
        s, a, r, s2 = sample_episode(k_ep, model, pi)
        regret_inc = v_star - model.value(pi)
        state = state.replace(
            key=key, stats=_linear.add_to_stats(state.stats, phi, s, a, r, s2), critic=critic,
            logdet_at_switch=jnp.where(switch, ld, state.logdet_at_switch), t_switch=t_switch,
            episode=state.episode + 1, num_switches=state.num_switches + switch.astype(jnp.int32),
            regret=state.regret + regret_inc,
        )
        return state, {"regret_increment": regret_inc, "suboptimality": regret_inc,
                       "cumulative_regret": state.regret, "num_switches": state.num_switches.astype(jnp.float32),
                       "switch": switch.astype(jnp.float32), "episode_return": r.sum()}

    def policy(state, obs, key, deterministic):
        pi = md_policy(state.critic, eta_of(state.hparams), (state.episode - state.t_switch + 1))[0, obs]
        return jnp.where(deterministic, pi.argmax(), jax.random.categorical(key, jnp.log(pi)))

    phase = Phase("online", iteration, num_iterations=K, env_steps_per_iteration=H)
    return Agent(init=init, phases=(phase,), policy=policy)


def make_linear(config: LinearConfig, problem: Problem) -> Agent:
    model, phi = _linear.linear_setup(problem, config.features, "optimistic_ac_linear")
    return make_linear_agent(config, model, phi)


SPEC_OPTIMISTIC_AC = AlgorithmSpec(
    name="optimistic_ac",
    description=(
        "Optimistic actor-critic: optimistic Q* critic recomputed at count-doubling switches, softmax mirror-descent "
        "actor reset at each switch; hybrid (algo.offline_episodes) and non-optimistic (algo.optimistic=false) variants."
    ),
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="none",
    action_kinds=("discrete",),
    paper="Tan, Fan, Wei, Actor-Critics Can Achieve Optimal Sample Efficiency, ICML 2025",
    evaluation=False,
    budget=Budget("episodes", "env_steps", counts_iterations=True),
)
SPEC_OPTIMISTIC_AC_LINEAR = AlgorithmSpec(
    name="optimistic_ac_linear",
    description=(
        "Optimistic actor-critic for linear MDPs: LSVI-UCB (or ridge FQI) Q* critic recomputed at determinant-doubling "
        "switches, softmax mirror-descent actor reset at each switch; hybrid via algo.offline_episodes."
    ),
    config_cls=LinearConfig,
    make=make_linear,
    traced=LINEAR_TRACED,
    dataset="none",
    action_kinds=("discrete",),
    paper="Tan, Fan, Wei, Actor-Critics Can Achieve Optimal Sample Efficiency, ICML 2025",
    evaluation=False,
    budget=Budget("episodes", "env_steps", counts_iterations=True),
)
