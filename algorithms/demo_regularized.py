"""Demonstration-regularized RL (Tiapkin, Belomestny, Calandriello, Moulines, Munos, Naumov, Perrault, Valko,
Ménard; ICLR 2024), tabular, and its behaviour-cloning baseline (docs/algorithms/demo_regularized.md).

A qualitative reproduction, not the paper's constants: the paper's full text could not be read, so
every choice below marked [R] is a reconstruction exposed as a config option.

Data: ``demos`` = N^E expert trajectories without rewards, drawn in ``init`` (one set per seed) from an expert
``pi^E`` on the env's exact model (:mod:`algorithms.ucbvi`): ``expert="eps_greedy"`` plays the optimal action
w.p. ``1 - expert_eps`` and spreads ``expert_eps`` over the others (``expert_eps = 0.005``: optimal w.p. 0.995);
``"softmax"`` plays ``softmax(Q*_h / expert_temperature)`` (Figure A1's grid-world expert: 0.15).

1. Behaviour cloning with the add-kappa floor **[R]**: maximising
   ``sum_i log pi_h(a_i|s_i) + kappa sum_{h,s,a} log pi_h(a|s)`` over the simplex gives

       pi^BC_h(a|s) = (n_h(s,a) + kappa) / (n_h(s) + kappa A)     (unvisited states: uniform)

   with ``n_h`` the demonstration counts (pooled over ``h`` when ``bc_pool_steps``; the theory is per ``h``).
2. Temperature **[R]**: ``lam`` if ``> 0``, else the theory-consistent rule
   ``lam = epsilon N^E / (3 S A H)`` (Figures A1, A2: ``epsilon = 0.1``).
3. Regularised BPI toward ``pi^BC`` ("UCBVI-Ent+"-style; bonuses of :mod:`algorithms.ucbvi`):

       Qup_h = min(H-h+1, r_hat + p_hat . Vup_{h+1} + b_h)                  (= H-h+1 where n = 0)
       Vup_h(s) = lam log sum_a pi^BC_h(a|s) exp(Qup_h(s,a) / lam)         (log space)
       pi_h(a|s) = pi^BC_h(a|s) exp((Qup_h(s,a) - Vup_h(s)) / lam)          (played)
       Qlo_h = r_hat + p_hat . Vlo_{h+1} - b_h,   Vlo_h = sum_a pi_h (Qlo_h - lam log(pi_h / pi^BC_h))

   ``Vup_1 - Vlo_1`` at ``s_1`` is the certified regularised gap (logged as ``certified_gap``; a stopping
   rule would stop when it is ``<= epsilon/3``; we run fixed budgets, as experiments do).
4. Output **[R]**: the soft-optimal policy of the *bonus-free* empirical model with the same
   reference and temperature (``recommend="empirical"``); never the argmax. The metric is the *unregularised*
   suboptimality ``V* - V^{pi_hat}``, exact.

RLHF variant (``demo_regularized_rlhf``, **[P structure, R details]**): no reward is ever observed.
``pref_pairs`` trajectory pairs ``(tau^0, tau^1)`` are drawn from ``pi^BC`` with labels
``o ~ Bernoulli(sigmoid(R(tau^1) - R(tau^0)))`` (``R`` = the true return, Bradley-Terry); the reward is the MLE

    r_hat = argmax_{r in [0,1]^{H S A}} sum_i [ o_i log sig(R_r(tau^1_i) - R_r(tau^0_i)) + (1 - o_i) log sig(R_r(tau^0_i) - R_r(tau^1_i)) ]
            - reward_l2 ||r||^2 / 2

fitted by ``reward_steps`` projected Adam steps (clip to [0, 1] after each) from ``r = 0`` in ``init`` [R: the
normalisation; pairs never visited by the data keep reward 0, which fixes the trajectory-constant shift]; then the regularised solver above runs with ``r_hat`` in place of
the empirical reward (transitions are still explored online); the KL to ``pi^BC`` replaces pessimism.

Linear MDPs (``demo_regularized_linear``, **[R]**): a log-linear clone
``pi^BC_h(a|s) = (1 - bc_mix) softmax_a(theta_h^T phi(s,a)) + bc_mix / A`` fitted per step ``h`` by L2-regularised
multinomial logistic regression (``bc_steps`` Adam steps, convex; ``bc_mix`` = the uniform mixing weight, default
0), then LSVI-UCB with the soft backup toward ``pi^BC`` (:func:`algorithms._linear.lsvi` with
``lam``): ``Qup_h = min(H-h, w_h^T phi + beta ||phi||_{Lambda_h^{-1}})``, ``Vup_h = lam log sum_a pi^BC exp(Qup/lam)``;
the output is the soft-optimal policy of the bonus-free ridge model. ``lam`` rule: ``epsilon N^E / (3 d H)``.

``bc_tabular``: the clone alone, played every episode; the same metrics (flat curve).

Helpers for tests and figures: :func:`bc_policy`, :func:`expert_policy`, :func:`trajectory_kl` (exact
``KL_traj(pi || pi_ref) = E_pi sum_h KL(pi_h(.|s_h) || pi_ref_h(.|s_h))`` by dynamic programming).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct
from jax.scipy.special import xlogy

from algorithms import _linear
from algorithms._tabular import (
    TabularModel,
    bonus,
    empirical_model,
    lower_regularized_value,
    make_episodic_agent,
    optimistic_planning,
    sample_episode,
    tabular_model,
)
from hybrid_rl import tabular
from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget, Phase
from hybrid_rl.problem import Problem

EXPERTS = ("eps_greedy", "softmax")


# --------------------------------------------------------------------------------------------------------------
# Expert, demonstrations, behaviour cloning, trajectory KL
# --------------------------------------------------------------------------------------------------------------


def expert_policy(model: TabularModel, kind: str, eps: float = 0.005, temperature: float = 0.15) -> jax.Array:
    """``pi^E[H, S, A]`` (module doc)."""
    A = model.A
    if kind == "eps_greedy":
        greedy = jax.nn.one_hot(model.Q_star.argmax(-1), A)
        return greedy * (1.0 - eps) + (1.0 - greedy) * eps / (A - 1)
    if kind == "softmax":
        return jax.nn.softmax(model.Q_star / temperature, -1)
    raise ValueError(f"expert must be one of {EXPERTS}, got {kind!r}")


def demo_counts(key: jax.Array, model: TabularModel, pi_e: jax.Array, num_demos: int) -> jax.Array:
    """``n_h(s, a)`` of ``num_demos`` expert trajectories (rewards are not kept)."""
    s, a, _, _ = jax.vmap(lambda k: sample_episode(k, model, pi_e))(jax.random.split(key, num_demos))
    h = jnp.broadcast_to(jnp.arange(model.H), s.shape)
    return jnp.zeros((model.H, model.S, model.A)).at[h, s, a].add(1.0)


def bc_policy(counts: jax.Array, kappa, pool_steps: bool = False) -> jax.Array:
    """Add-kappa behaviour cloning ``(n_h(s,a) + kappa) / (n_h(s) + kappa A)`` from counts ``[H, S, A]``."""
    chex.assert_rank(counts, 3)
    if pool_steps:
        counts = jnp.broadcast_to(counts.sum(0, keepdims=True), counts.shape)
    A = counts.shape[-1]
    n_s = counts.sum(-1, keepdims=True)
    pi = (counts + kappa) / (n_s + kappa * A)
    return jnp.where(n_s > 0, pi, 1.0 / A)  # unvisited states uniform (also when kappa = 0)


def trajectory_kl(model: TabularModel, pi: jax.Array, pi_ref: jax.Array) -> jax.Array:
    """``KL_traj(pi || pi_ref)`` from ``s_1 ~ mu0``: policy evaluation of ``pi`` with per-step reward
    ``KL(pi_h(.|s) || pi_ref_h(.|s))`` (exact dynamic programming)."""
    kl = (xlogy(pi, pi) - xlogy(pi, pi_ref)).sum(-1)  # (H, S)
    R = jnp.broadcast_to(kl[..., None], pi.shape)
    _, V = tabular.finite_horizon_policy_evaluation(model.P, R, pi, model.H)
    return model.mu0 @ V[0]


# --------------------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BCConfig:
    episodes: int = 300  # online episodes played by the clone (metrics only; BC never learns online)
    demos: int = 100  # N^E expert trajectories
    bc_kappa: float = 1.0  # add-kappa floor of the BC log-barrier (1 = Laplace) [R] (traced)
    bc_pool_steps: bool = False  # pool demonstration counts over h (stationary expert and MDP) [R]
    expert: str = "eps_greedy"  # "eps_greedy" | "softmax" (module doc)
    expert_eps: float = 0.005  # eps_greedy: probability mass on non-optimal actions
    expert_temperature: float = 0.15  # softmax: temperature tau_E of softmax(Q*/tau_E)


@dataclasses.dataclass(frozen=True)
class Config(BCConfig):
    lam: float = 0.0  # KL temperature; 0 = rule lam = epsilon N^E / (3 S A H) [R] (traced)
    epsilon: float = 0.1  # target accuracy in the lam rule (traced)
    bonus: str = "hoeffding"  # "hoeffding" | "kl" bonus of the optimistic solver [R]
    bonus_scale: float = 0.05  # c_b (0.05 in Figure A2); tuned, not the paper's [R] (traced)
    delta: float = 0.05  # confidence level (traced)
    recommend: str = "empirical"  # output: "empirical" (bonus-free soft-optimal) | "sampling" [R]


BC_TRACED = ("bc_kappa",)
TRACED = BC_TRACED + ("lam", "epsilon", "bonus_scale", "delta")


def temperature(hparams, num_demos: int, model: TabularModel):
    """``lam`` if > 0 else ``epsilon N^E / (3 S A H)``."""
    rule = hparams["epsilon"] * num_demos / (3.0 * model.S * model.A * model.H)
    return jnp.where(hparams["lam"] > 0, hparams["lam"], rule)


def _reference(config: BCConfig, model: TabularModel):
    pi_e = expert_policy(model, config.expert, config.expert_eps, config.expert_temperature)

    def init_reference(key, hparams):
        counts = demo_counts(key, model, pi_e, config.demos)
        pi_bc = bc_policy(counts, hparams["bc_kappa"], config.bc_pool_steps)
        extra = {"bc_kl": trajectory_kl(model, pi_e, pi_bc), "bc_suboptimality": model.v_star - model.value(pi_bc)}
        return jnp.log(pi_bc), extra

    return init_reference


def certified_gap(state, model: TabularModel, config: Config) -> jax.Array:
    """``E_{s_1}[Vup_1 - Vlo_1]`` of the played soft-greedy policy (the stopping statistic)."""
    hp = state.hparams
    lam = temperature(hp, config.demos, model)
    p_hat, r_hat, n = empirical_model(state.n_sas, state.r_sum)
    b = bonus(n, config.bonus, hp["bonus_scale"], hp["delta"], config.episodes)
    _, V_up, pi = optimistic_planning(p_hat, r_hat, b, lam, state.log_ref)
    # Unvisited pairs: the lower critic uses the range bound -2(H-h+1) instead of an infinite bonus.
    H = model.H
    b_lo = jnp.where(jnp.isinf(b), 2.0 * (H - jnp.arange(H))[:, None, None], b)
    V_lo = lower_regularized_value(p_hat, r_hat, b_lo, pi, state.log_ref, lam)
    return model.mu0 @ (V_up[0] - V_lo[0])


def make(config: Config, problem: Problem) -> Agent:
    model = tabular_model(problem, "demo_regularized")
    agent = make_episodic_agent(
        model, config.episodes, config.bonus, config.recommend, soft=True,
        temperature=lambda hp: temperature(hp, config.demos, model),
        init_reference=_reference(config, model),
    )
    phase = agent.phases[0]

    def iteration(state):
        gap = certified_gap(state, model, config)
        state, metrics = phase.iteration(state)
        metrics = {**metrics, "certified_gap": gap, "bc_kl": state.extra["bc_kl"],
                   "bc_suboptimality": state.extra["bc_suboptimality"],
                   "lam": temperature(state.hparams, config.demos, model)}
        return state, metrics

    return dataclasses.replace(agent, phases=(dataclasses.replace(phase, iteration=iteration),))


@dataclasses.dataclass(frozen=True)
class RLHFConfig(Config):
    pref_pairs: int = 200  # N_pref trajectory pairs from pi^BC with Bradley-Terry labels
    reward_steps: int = 300  # Adam steps of the reward MLE
    reward_lr: float = 0.05  # Adam learning rate of the reward MLE
    reward_l2: float = 1e-3  # L2 on the reward table [R]


def preference_data(key, model: TabularModel, pi: jax.Array, num_pairs: int):
    """``(D, o)``: ``D[i] = c(tau^1_i) - c(tau^0_i)`` (visit counts over (h, s, a), flattened) and labels ``o``."""
    H, S, A = model.H, model.S, model.A

    def one(k):
        k0, k1, ko = jax.random.split(k, 3)
        counts, ret = [], []
        for kk in (k0, k1):
            s, a, r, _ = sample_episode(kk, model, pi)
            counts.append(jnp.zeros((H, S, A)).at[jnp.arange(H), s, a].add(1.0).reshape(-1))
            ret.append(r.sum())
        o = jax.random.bernoulli(ko, jax.nn.sigmoid(ret[1] - ret[0])).astype(jnp.float32)
        return counts[1] - counts[0], o

    return jax.vmap(one)(jax.random.split(key, num_pairs))


def fit_reward(D, o, shape, steps: int, lr: float, l2: float) -> jax.Array:
    """Bradley-Terry reward MLE over ``[0,1]^{H S A}`` (module doc)."""
    import optax

    def loss(r):
        logits = D @ r
        nll = -(o * jax.nn.log_sigmoid(logits) + (1 - o) * jax.nn.log_sigmoid(-logits)).mean()
        return nll + 0.5 * l2 * (r**2).sum()

    opt = optax.adam(lr)
    r0 = jnp.zeros(D.shape[-1])

    def body(_, carry):
        r, st = carry
        updates, st = opt.update(jax.grad(loss)(r), st)
        return jnp.clip(optax.apply_updates(r, updates), 0.0, 1.0), st

    r, _ = jax.lax.fori_loop(0, steps, body, (r0, opt.init(r0)))
    return r.reshape(shape)


def make_rlhf(config: RLHFConfig, problem: Problem) -> Agent:
    model = tabular_model(problem, "demo_regularized_rlhf")
    base_reference = _reference(config, model)
    H, S, A = model.H, model.S, model.A

    def init_reference(key, hparams):
        k_ref, k_pref = jax.random.split(key)
        log_ref, extra = base_reference(k_ref, hparams)
        D, o = preference_data(k_pref, model, jnp.exp(log_ref), config.pref_pairs)
        r_hat = fit_reward(D, o, (H, S, A), config.reward_steps, config.reward_lr, config.reward_l2)
        # How well r_hat ranks policies: the true value of the r_hat-optimal policy.
        Q_r, _ = tabular.finite_horizon_value_iteration(model.P, r_hat, H)
        extra = {**extra, "r_hat": r_hat,
                 "reward_greedy_suboptimality": model.v_star - model.value(Q_r.argmax(-1).astype(jnp.int32))}
        return log_ref, extra

    agent = make_episodic_agent(
        model, config.episodes, config.bonus, config.recommend, soft=True,
        temperature=lambda hp: temperature(hp, config.demos, model),
        init_reference=init_reference, reward_fn=lambda state: state.extra["r_hat"],
    )
    phase = agent.phases[0]

    def iteration(state):
        state, metrics = phase.iteration(state)
        return state, {**metrics, "bc_suboptimality": state.extra["bc_suboptimality"],
                       "reward_greedy_suboptimality": state.extra["reward_greedy_suboptimality"]}

    return dataclasses.replace(agent, phases=(dataclasses.replace(phase, iteration=iteration),))


@dataclasses.dataclass(frozen=True)
class LinearConfig:
    episodes: int = 300  # K: online episodes
    demos: int = 100  # N^E expert trajectories
    features: str = "env"  # "env" (linear_mdp) | "onehot" | "lowrank" (comblock_tabular)
    bc_l2: float = 1e-3  # L2 weight of the logistic regression (traced)
    bc_mix: float = 0.0  # uniform mixing weight gamma_mix of the log-linear clone [R] (traced)
    bc_steps: int = 300  # Adam steps of the logistic regression
    bc_lr: float = 0.1  # Adam learning rate of the logistic regression
    expert: str = "eps_greedy"  # "eps_greedy" | "softmax"
    expert_eps: float = 0.005
    expert_temperature: float = 0.15
    lam: float = 0.0  # KL temperature; 0 = rule lam = epsilon N^E / (3 d H) [R] (traced)
    epsilon: float = 0.1  # target accuracy in the lam rule (traced)
    beta_scale: float = 0.01  # c in beta = c d H sqrt(log(2 d T / p)) [R] (traced)
    p: float = 0.05  # failure probability in beta (traced)
    reg: float = 1.0  # ridge regulariser (traced)


LINEAR_TRACED = ("bc_l2", "bc_mix", "lam", "epsilon", "beta_scale", "p", "reg")


def fit_log_linear_bc(phi, s, a, l2, mix, steps: int, lr: float) -> jax.Array:
    """Per-step multinomial logistic regression on demos ``s, a`` (``(N, H)``); returns ``pi^BC[H, S, A]``."""
    import optax

    d = phi.shape[-1]
    A = phi.shape[1]

    def fit_h(s_h, a_h):
        def loss(theta):
            logp = jax.nn.log_softmax(phi[s_h] @ theta, -1)  # (N, A)
            return -jnp.take_along_axis(logp, a_h[:, None], -1).mean() + 0.5 * l2 * (theta**2).sum()

        opt = optax.adam(lr)
        theta0 = jnp.zeros(d)

        def body(_, carry):
            theta, st = carry
            updates, st = opt.update(jax.grad(loss)(theta), st)
            return optax.apply_updates(theta, updates), st

        theta, _ = jax.lax.fori_loop(0, steps, body, (theta0, opt.init(theta0)))
        return (1.0 - mix) * jax.nn.softmax(phi @ theta, -1) + mix / A

    return jax.vmap(fit_h, in_axes=(1, 1))(s, a)


@struct.dataclass
class LinearDemoState:
    key: jax.Array
    stats: Any
    log_ref: jax.Array
    episode: jax.Array
    regret: jax.Array
    extra: dict
    hparams: dict


def make_linear(config: LinearConfig, problem: Problem) -> Agent:
    model, phi = _linear.linear_setup(problem, config.features, "demo_regularized_linear")
    H, S, K = model.H, model.S, config.episodes
    d = phi.shape[-1]
    v_star = model.v_star
    pi_e = expert_policy(model, config.expert, config.expert_eps, config.expert_temperature)

    def lam_of(hp):
        return jnp.where(hp["lam"] > 0, hp["lam"], hp["epsilon"] * config.demos / (3.0 * d * H))

    def init(key, hparams):
        k_demo, key = jax.random.split(key)
        s, a, _, _ = jax.vmap(lambda k: sample_episode(k, model, pi_e))(jax.random.split(k_demo, config.demos))
        pi_bc = fit_log_linear_bc(phi, s, a, hparams["bc_l2"], hparams["bc_mix"], config.bc_steps, config.bc_lr)
        extra = {"bc_kl": trajectory_kl(model, pi_e, pi_bc), "bc_suboptimality": v_star - model.value(pi_bc)}
        return LinearDemoState(key=key, stats=_linear.init_stats(H, d, S), log_ref=jnp.log(pi_bc),
                               episode=jnp.int32(0), regret=jnp.float32(0.0), extra=extra, hparams=hparams)

    def plans(state):
        hp = state.hparams
        lam = lam_of(hp)
        Q, V = _linear.lsvi(state.stats, phi, _linear.confidence_radius(hp, d, H, K), hp["reg"], "step", lam,
                             state.log_ref)
        pi_play = jax.nn.softmax(state.log_ref + Q / lam, -1)
        Q0, _ = _linear.lsvi(state.stats, phi, 0.0, hp["reg"], "step", lam, state.log_ref)
        return pi_play, jax.nn.softmax(state.log_ref + Q0 / lam, -1), model.mu0 @ V[0]

    def iteration(state):
        pi_play, pi_rec, v_up = plans(state)
        key, k_ep = jax.random.split(state.key)
        s, a, r, s2 = sample_episode(k_ep, model, pi_play)
        regret_inc = v_star - model.value(pi_play)
        state = state.replace(key=key, stats=_linear.add_to_stats(state.stats, phi, s, a, r, s2),
                              episode=state.episode + 1, regret=state.regret + regret_inc)
        return state, {"suboptimality": v_star - model.value(pi_rec), "regret_increment": regret_inc,
                       "cumulative_regret": state.regret, "optimistic_value": v_up, "episode_return": r.sum(),
                       "bc_kl": state.extra["bc_kl"], "bc_suboptimality": state.extra["bc_suboptimality"],
                       "lam": lam_of(state.hparams)}

    def policy(state, obs, key, deterministic):
        pi = plans(state)[1][0, obs]
        return jnp.where(deterministic, pi.argmax(), jax.random.categorical(key, jnp.log(pi)))

    return Agent(init=init, phases=(Phase("online", iteration, num_iterations=K, env_steps_per_iteration=H),),
                 policy=policy)


def make_bc(config: BCConfig, problem: Problem) -> Agent:
    model = tabular_model(problem, "bc_tabular")
    agent = make_episodic_agent(
        model, config.episodes, "hoeffding", "sampling", soft=True, init_reference=_reference(config, model),
        online=False,
    )
    phase = agent.phases[0]

    def iteration(state):
        state, metrics = phase.iteration(state)
        return state, {**metrics, "bc_kl": state.extra["bc_kl"]}

    return dataclasses.replace(agent, phases=(dataclasses.replace(phase, iteration=iteration),))


SPEC_DEMO_REGULARIZED = AlgorithmSpec(
    name="demo_regularized",
    description="Demonstration-regularized BPI: add-kappa BC, then optimistic soft VI with a KL penalty to BC (tabular).",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="none",
    action_kinds=("discrete",),
    paper="Tiapkin et al., Demonstration-Regularized RL, ICLR 2024",
    evaluation=False,
    budget=Budget("episodes", "env_steps", counts_iterations=True),
)
SPEC_DEMO_REGULARIZED_RLHF = AlgorithmSpec(
    name="demo_regularized_rlhf",
    description="Demonstration-regularized RLHF: BC, Bradley-Terry reward MLE from BC trajectory pairs, KL-to-BC optimistic soft VI.",
    config_cls=RLHFConfig,
    make=make_rlhf,
    traced=TRACED,
    dataset="none",
    action_kinds=("discrete",),
    paper="Tiapkin et al., Demonstration-Regularized RL, ICLR 2024 (RLHF section)",
    evaluation=False,
    budget=Budget("episodes", "env_steps", counts_iterations=True),
)
SPEC_DEMO_REGULARIZED_LINEAR = AlgorithmSpec(
    name="demo_regularized_linear",
    description="Demonstration-regularized RL on linear MDPs: log-linear BC, soft LSVI-UCB toward it, bonus-free soft output.",
    config_cls=LinearConfig,
    make=make_linear,
    traced=LINEAR_TRACED,
    dataset="none",
    action_kinds=("discrete",),
    paper="Tiapkin et al., Demonstration-Regularized RL, ICLR 2024 (linear MDPs)",
    evaluation=False,
    budget=Budget("episodes", "env_steps", counts_iterations=True),
)
SPEC_BC_TABULAR = AlgorithmSpec(
    name="bc_tabular",
    description="Tabular behaviour cloning with the add-kappa floor from N^E expert demos (exact suboptimality).",
    config_cls=BCConfig,
    make=make_bc,
    traced=BC_TRACED,
    dataset="none",
    action_kinds=("discrete",),
    paper="Tiapkin et al., Demonstration-Regularized RL, ICLR 2024 (BC stage)",
    evaluation=False,
    budget=Budget("episodes", "env_steps", counts_iterations=True),
)
