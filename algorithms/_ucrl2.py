"""UCRL2 (Jaksch, Ortner, Auer, JMLR 2010) for average-reward (continuing) finite MDPs: the UCRL2 family core
that ``ucrl2`` and its non-stationary variants build on (``ucrl2_restarts``, ``oracle_ucrl2``, ``sw_ucrl2``, ``rbocpd_ucrl2``).

Setting: one trajectory, no resets; ``S`` states observed by index, ``A`` actions, rewards in [0, 1]. The judge is
the (dynamic) regret ``R(T) = sum_t (rho*_{l(t)} - r_{l(t)}(s_t, a_t))`` with *expected* rewards and the optimal
gain of the segment the step belongs to (docs/algorithms/ucrl2.md); on a stationary MDP ``rho*`` is computed once by
relative value iteration.

The algorithm, per step ``t = 1, 2, ...`` (statistics counted since the last restart at ``t_r``; ``t_r = 1`` for
plain UCRL2):

    episode start (first step, the doubling rule fired at the previous step, or a restart):
        t_k       = t - t_r + 1                                     (time since the restart)
        N_k(s,a)  = visits so far;   v_k(s,a) = 0
        r_hat     = mean observed reward;  p_hat = empirical next-state frequencies (uniform when N_k = 0)
        d_r(s,a)  = c sqrt( 7 log(2 S A t_k / delta) / (2 max(1, N_k(s,a))) )
        d_p(s,a)  = c sqrt( 14 S log(2 A t_k / delta) / max(1, N_k(s,a)) )
        pi_k      = EVI(r_hat, p_hat, d_r, d_p, eps = 1/sqrt(t_k))   (optimistic MDP in the L1 balls;
                    greedy ties broken uniformly at random, as in the reference implementation)
    act a_t = pi_k(s_t); observe r_t, s_{t+1};  N(s_t,a_t) += 1, N(s_t,a_t,s_{t+1}) += 1, v_k(s_t,a_t) += 1
    regret += rho*_{l(t)} - r_{l(t)}(s_t, a_t)
    [variant: restart? -> forget every statistic, t_r <- t + 1, new episode]
    doubling rule: a new episode starts at t + 1 iff v_k(s_{t+1}, pi_k(s_{t+1})) >= max(1, N_k(s_{t+1}, pi_k(s_{t+1})))

EVI is :func:`hybrid_rl.tabular.extended_value_iteration`. Under ``vmap`` over seeds a ``lax.cond`` would run EVI
for every seed at every step, so the sweeps run in a ``lax.while_loop`` whose per-seed condition
is "this seed starts an episode now and has not converged": when no seed starts an episode the loop runs zero
sweeps, and EVI is warm-started from the previous episode's bias so it converges in a few sweeps.

The family differs only in a restart policy and a statistics window: a :class:`Variant` adds its
own state and an ``observe`` hook called after each transition, which may ask for a restart (forget everything),
end the episode, or edit the statistics (the sliding window evicts old transitions). Plain UCRL2 is the empty
variant. ``c`` (``confidence_scale``) = 1 is the theory; it is exposed because theory-constant radii keep UCRL2
exploring for a very long time on larger RiverSwims. [R]

Metrics per step (the runner averages them over a chunk, so a metrics.csv row holds chunk means):
``regret_increment`` (chunk mean = regret per step), ``cumulative_regret`` (chunk mean, close to the value at the
chunk's end), ``restart`` (chunk mean = restarts per step), ``num_restarts``, ``episode_index``, ``evi_sweeps``
(mean sweeps per EVI call in the chunk; NaN entries on steps without an episode start are ignored),
``episode_start``. Fine-grained curves: :func:`regret_curve`; restart times: ``state.restart_log``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

from hybrid_rl import tabular
from hybrid_rl.algorithm import Agent, Phase
from hybrid_rl.problem import Problem

CONFIDENCE_CLOCKS = ("restart", "global")
TIE_BREAKING = ("random", "first")


@dataclasses.dataclass(frozen=True)
class Config:
    total_steps: int = 60_000  # T: env steps (one step per iteration; the env never resets)
    delta: float = 0.05  # confidence level of the radii (traced)
    confidence_scale: float = 1.0  # c multiplying d_r and d_p; 1 = theory constants [R] (traced)
    evi_eps: float = 0.0  # EVI stopping threshold; 0 = UCRL2's 1/sqrt(t_k) (the reference code: fixed 0.01) (traced)
    evi_max_iters: int = 1000  # cap on EVI sweeps per episode start (the reference code's cap)
    aperiodicity: float = 1.0  # tau of EVI's transform p <- tau p + (1 - tau) e_s; 1 = plain EVI [R]
    confidence_clock: str = "restart"  # t_k in the radii: "restart" = time since the last restart, "global" = t
    warm_start: bool = True  # EVI starts from the previous episode's bias (few sweeps); False: from 0
    tie_breaking: str = "random"  # greedy ties in EVI's policy: "random" (as the reference code) or "first" action
    max_logged_restarts: int = 64  # restart times kept in state.restart_log (for figures; later ones are counted)
    steps_per_iteration: int = 1  # env steps per runner iteration (a scan inside); must divide total_steps


TRACED = ("delta", "confidence_scale", "evi_eps")


@struct.dataclass
class UCRL2State:
    env_state: Any
    s: jax.Array  # () int32, current state s_t
    key: jax.Array
    t: jax.Array  # () int32, steps taken so far (the next step has 0-based index t)
    t_restart: jax.Array  # () int32, 0-based index of the first step since the last restart
    n_sa: jax.Array  # (S, A) int32, visits since the restart (inside the window for SW-UCRL2)
    n_sas: jax.Array  # (S, A, S) int32, transition counts, same scope
    r_sum: jax.Array  # (S, A) float32, reward sums, same scope
    n_k: jax.Array  # (S, A) int32, N_k: visits at the start of the current episode
    v_k: jax.Array  # (S, A) int32, visits in the current episode
    episode_start: jax.Array  # () int32, 0-based step index at which the current episode began
    policy: jax.Array  # (S,) int32, pi_k
    bias: jax.Array  # (S,) float32, last EVI bias (warm start)
    new_episode: jax.Array  # () bool, an episode starts at the next step
    episode: jax.Array  # () int32, episodes started so far
    regret: jax.Array  # () float32, cumulative dynamic regret (Kahan-compensated sum)
    regret_carry: jax.Array  # () float32, Kahan compensation term
    num_restarts: jax.Array  # () int32
    restart_log: jax.Array  # (max_logged_restarts,) int32, 0-based step index of each restart's first step; -1 unused
    variant: Any  # the variant's own state (detectors, window buffer, schedule pointer)
    hparams: dict


@struct.dataclass
class Observation:
    """One transition as a variant's ``observe`` hook sees it."""

    s: jax.Array
    a: jax.Array
    r: jax.Array
    s_next: jax.Array
    info: dict


@struct.dataclass
class Decision:
    """What a variant asks for after a transition."""

    restart: jax.Array  # () bool: forget every statistic, t_r <- t + 1, new episode (a global restart)
    end_episode: jax.Array  # () bool: start a new episode at the next step (statistics kept)
    metrics: dict


@dataclasses.dataclass(frozen=True)
class Variant:
    """What distinguishes a member of the UCRL2 family.

    ``init(key, hparams) -> variant_state``; ``observe(state, obs) -> (state, Decision)``, called after the core
    added the transition to the statistics (it may edit ``state.n_sa`` etc., e.g. evict old samples);
    ``confidence_cap(hparams)``: cap on ``t_k`` in the radii (SW-UCRL2's ``min(t_k, W)``), ``None`` for no cap;
    ``delta_factor``: the radii use ``delta * delta_factor`` (UCRL2 with restarts: ``1 / l^2``);
    ``after_block(state) -> state``: called after every ``steps_per_iteration`` steps (SW-UCRL2 copies its staged
    transitions into its ring buffer there: an unconditional block write, cheap once per block).
    """

    init: Callable[[jax.Array, dict], Any] = lambda key, hparams: ()
    observe: Optional[Callable[[UCRL2State, Observation], tuple[UCRL2State, Decision]]] = None
    after_block: Optional[Callable[[UCRL2State], UCRL2State]] = None
    confidence_cap: Optional[Callable[[dict], jax.Array]] = None
    delta_factor: float = 1.0


# --------------------------------------------------------------------------------------------------------------
# The pieces of UCRL2 as functions (each tested on hand-checked counts)
# --------------------------------------------------------------------------------------------------------------


def plausible_set(n_sa, n_sas, r_sum, t_k, delta, scale=1.0):
    """Centre and radii of UCRL2's set of plausible MDPs at an episode start.

    ``r_hat = r_sum / max(1, N)`` (0 when unvisited), ``p_hat = N(s,a,.) / N(s,a)`` (uniform when unvisited),
    and ``(d_r, d_p)`` from :func:`hybrid_rl.tabular.ucrl2_radii` with time ``t_k``. Returns
    ``(r_hat, p_hat, d_r, d_p)``.
    """
    chex.assert_rank([n_sa, n_sas, r_sum], [2, 3, 2])
    chex.assert_equal_shape([n_sa, r_sum])
    n = n_sa.astype(jnp.float32)
    r_hat = r_sum / jnp.maximum(1.0, n)
    p_hat = tabular.empirical_kernel(n_sas)
    d_r, d_p = tabular.ucrl2_radii(n_sa, t_k, delta, scale)
    return r_hat, p_hat, d_r, d_p


def evi_eps(t_k, fixed_eps):
    """UCRL2's EVI accuracy ``1 / sqrt(t_k)``, or ``fixed_eps`` when it is > 0."""
    t_k = jnp.asarray(t_k, jnp.float32)
    return jnp.where(fixed_eps > 0, fixed_eps, 1.0 / jnp.sqrt(t_k))


def doubling_rule(v_k, n_k, s, policy):
    """True when the episode must end before acting in ``s``: ``v_k(s, pi(s)) >= max(1, N_k(s, pi(s)))``."""
    a = policy[s]
    return v_k[s, a] >= jnp.maximum(1, n_k[s, a])


def masked_evi(active, p_hat, r_hat, d_p, d_r, eps, u0, max_iters: int, aperiodicity):
    """Extended value iteration for the seeds where ``active`` holds; the others keep ``u0`` and run no sweep.

    One :func:`hybrid_rl.tabular.extended_value_iteration` sweep per loop iteration, warm-started from the
    previous sweep's bias, until ``sp(u_{i+1} - u_i) < eps`` or ``max_iters``. The loop condition is per seed,
    so under ``vmap`` an inactive seed costs nothing and a step where no seed is active runs zero sweeps.
    Returns ``(bias, q, sweeps, converged)`` with ``q(s,a) = r~(s,a) + <p~(.|s,a), bias>`` of the optimistic MDP
    (its argmax is EVI's greedy policy; zeros for an inactive seed).
    """
    S, A = r_hat.shape

    def cond(c):
        _, _, it, done = c
        return (~done) & (it < max_iters)

    def body(c):
        u, _, it, _ = c
        res = tabular.extended_value_iteration(
            p_hat, r_hat, d_p, d_r, eps=eps, max_iters=1, u0=u, aperiodicity=aperiodicity
        )
        return res.bias, tabular.bellman_q(res.P, res.R, res.bias), it + 1, res.converged

    q0 = jnp.zeros((S, A), jnp.float32)
    return jax.lax.while_loop(cond, body, (u0, q0, jnp.int32(0), ~active))


def greedy(q, key=None, tol: float = 1e-6):
    """``argmax_a q(s,a)``; with a ``key``, uniformly among the actions within ``tol (1 + |max|)`` of the max
    (the reference implementation breaks ties with noise; the first index would favour action 0 wherever no
    data separates the actions, e.g. right after a restart)."""
    if key is None:
        return jnp.argmax(q, -1).astype(jnp.int32)
    top = q.max(-1, keepdims=True)
    near = q >= top - tol * (1.0 + jnp.abs(top))
    return jnp.argmax(jnp.where(near, jax.random.uniform(key, q.shape), -1.0), -1).astype(jnp.int32)


def regret_curve(agent: Agent, key, hparams, num_steps: int, stride: int = 100):
    """Runs ``num_steps`` steps of a UCRL2-family agent from ``agent.init(key, hparams)`` and returns
    ``(final_state, curve)`` with ``curve[i]`` = cumulative regret after ``(i + 1) * stride`` steps.

    Pure and jittable (``num_steps`` and ``stride`` static): ``jax.jit(jax.vmap(...))`` over seeds gives the
    figure's curves without storing every step. Restart times are in ``final_state.restart_log``.
    """
    phase = agent.phases[0]
    k = phase.env_steps_per_iteration
    if num_steps % stride or stride % k:
        raise ValueError(f"num_steps ({num_steps}) must be a multiple of stride ({stride}), and stride of the "
                         f"agent's steps per iteration ({k})")

    def block(state, _):
        state, _ = jax.lax.scan(lambda s, _: (phase.iteration(s)[0], None), state, None, length=stride // k)
        return state, state.regret

    state = agent.init(key, hparams)
    return jax.lax.scan(block, state, None, length=num_steps // stride)


# --------------------------------------------------------------------------------------------------------------
# The family core
# --------------------------------------------------------------------------------------------------------------


def _kahan_add(total, carry, x):
    y = x - carry
    new_total = total + y
    return new_total, (new_total - total) - y


def check_tabular_problem(problem: Problem, name: str) -> tuple[int, int, Optional[float]]:
    """``(S, A, rho*)`` of a continuing finite MDP with index observations; ``rho*`` is ``None`` when the env
    reports the optimal gain of the current segment in ``info["optimal_gain"]`` (piecewise-stationary envs)."""
    env, params = problem.env, problem.env_params
    obs_space = env.observation_space(params)
    if not isinstance(obs_space, spaces.Discrete) or problem.action_kind != "discrete":
        raise ValueError(
            f"{name} needs a finite MDP with index observations and discrete actions; env {problem.env_name!r} "
            "has another observation or action space (for finite MDPs set env.kwargs.obs_type=index)"
        )
    if problem.max_episode_steps < 1_000_000:
        raise ValueError(
            f"{name} is an average-reward algorithm for continuing problems; env {problem.env_name!r} ends episodes "
            f"after {problem.max_episode_steps} steps"
        )
    S, A = int(obs_space.n), int(problem.action_dim)
    info = _info_shapes(problem)
    if "expected_reward" not in info:
        raise ValueError(f"{name} needs info['expected_reward'] from env {problem.env_name!r} to measure regret")
    if "optimal_gain" in info:
        return S, A, None
    P, R = getattr(params, "P", None), getattr(params, "R", None)
    if P is None or R is None or np.ndim(P) != 3:
        raise ValueError(f"{name}: cannot compute the optimal gain of env {problem.env_name!r} (no P, R arrays)")
    return S, A, float(jax.jit(tabular.relative_value_iteration)(P, R).gain)


def _info_shapes(problem: Problem) -> dict:
    env, params = problem.env, problem.env_params
    _, state = env.reset_env(jax.random.key(0), params)
    out = jax.eval_shape(lambda k, s: env.step_env(k, s, jnp.int32(0), params), jax.random.key(0), state)
    return out[4]


def make_family(config: Config, problem: Problem, name: str, variant: Variant = Variant()) -> Agent:
    """An :class:`Agent` for the UCRL2 family member described by ``variant`` (module docstring)."""
    if config.confidence_clock not in CONFIDENCE_CLOCKS:
        raise ValueError(f"confidence_clock must be one of {CONFIDENCE_CLOCKS}, got {config.confidence_clock!r}")
    if config.tie_breaking not in TIE_BREAKING:
        raise ValueError(f"tie_breaking must be one of {TIE_BREAKING}, got {config.tie_breaking!r}")
    if not 0.0 < config.aperiodicity <= 1.0:
        raise ValueError(f"aperiodicity must be in (0, 1], got {config.aperiodicity}")
    if min(config.total_steps, config.evi_max_iters, config.max_logged_restarts, config.steps_per_iteration) < 1:
        raise ValueError("total_steps, evi_max_iters, max_logged_restarts and steps_per_iteration must be >= 1")
    K = config.steps_per_iteration
    if config.total_steps % K:
        raise ValueError(f"total_steps ({config.total_steps}) must be a multiple of steps_per_iteration ({K})")
    S, A, stationary_gain = check_tabular_problem(problem, name)
    env, env_params = problem.env, problem.env_params
    L = config.max_logged_restarts

    def init(key, hparams) -> UCRL2State:
        k_env, k_state, k_var = jax.random.split(key, 3)
        obs, env_state = env.reset_env(k_env, env_params)
        return UCRL2State(
            env_state=env_state,
            s=jnp.asarray(obs, jnp.int32),
            key=k_state,
            t=jnp.int32(0),
            t_restart=jnp.int32(0),
            n_sa=jnp.zeros((S, A), jnp.int32),
            n_sas=jnp.zeros((S, A, S), jnp.int32),
            r_sum=jnp.zeros((S, A), jnp.float32),
            n_k=jnp.zeros((S, A), jnp.int32),
            v_k=jnp.zeros((S, A), jnp.int32),
            episode_start=jnp.int32(0),
            policy=jnp.zeros((S,), jnp.int32),
            bias=jnp.zeros((S,), jnp.float32),
            new_episode=jnp.bool_(True),
            episode=jnp.int32(0),
            regret=jnp.float32(0.0),
            regret_carry=jnp.float32(0.0),
            num_restarts=jnp.int32(0),
            restart_log=jnp.full((L,), -1, jnp.int32),
            variant=variant.init(k_var, hparams),
            hparams=hparams,
        )

    def start_episode(state: UCRL2State):
        """EVI on the plausible set, for the seeds whose ``new_episode`` flag is set."""
        hp = state.hparams
        clock = state.t_restart if config.confidence_clock == "restart" else 0
        t_k = (state.t - clock + 1).astype(jnp.float32)
        t_conf = t_k if variant.confidence_cap is None else jnp.minimum(t_k, variant.confidence_cap(hp))
        delta = hp["delta"] * variant.delta_factor
        r_hat, p_hat, d_r, d_p = plausible_set(state.n_sa, state.n_sas, state.r_sum, t_conf, delta,
                                               hp["confidence_scale"])
        u0 = state.bias if config.warm_start else jnp.zeros_like(state.bias)
        active = state.new_episode
        bias, q, sweeps, _ = masked_evi(
            active, p_hat, r_hat, d_p, d_r, evi_eps(t_k, hp["evi_eps"]), u0, config.evi_max_iters,
            config.aperiodicity,
        )
        key, k_tie = jax.random.split(state.key)
        policy = greedy(q, k_tie if config.tie_breaking == "random" else None)
        state = state.replace(
            key=key,
            bias=jnp.where(active, bias, state.bias),
            policy=jnp.where(active, policy, state.policy),
            n_k=jnp.where(active, state.n_sa, state.n_k),
            v_k=jnp.where(active, 0, state.v_k),
            episode_start=jnp.where(active, state.t, state.episode_start),
            episode=state.episode + active.astype(jnp.int32),
            new_episode=jnp.bool_(False),
        )
        return state, jnp.where(active, sweeps.astype(jnp.float32), jnp.nan)

    def step(state: UCRL2State):
        """One env step: episode start if due, act, update statistics, variant hook, restart / doubling rule."""
        chex.assert_shape([state.n_sa, state.n_k, state.v_k, state.r_sum], (S, A))
        chex.assert_shape(state.n_sas, (S, A, S))
        state, sweeps = start_episode(state)
        s = state.s
        a = state.policy[s]
        key, k_env = jax.random.split(state.key)
        obs, env_state, reward, _, info = env.step_env(k_env, state.env_state, a, env_params)
        s_next = jnp.asarray(obs, jnp.int32)
        reward = jnp.asarray(reward, jnp.float32)
        gain = info["optimal_gain"] if stationary_gain is None else jnp.float32(stationary_gain)
        increment = (gain - info["expected_reward"]).astype(jnp.float32)
        regret, carry = _kahan_add(state.regret, state.regret_carry, increment)
        state = state.replace(
            env_state=env_state,
            key=key,
            n_sa=state.n_sa.at[s, a].add(1),
            n_sas=state.n_sas.at[s, a, s_next].add(1),
            r_sum=state.r_sum.at[s, a].add(reward),
            v_k=state.v_k.at[s, a].add(1),
            regret=regret,
            regret_carry=carry,
        )
        metrics = {}
        restart = end_episode = jnp.bool_(False)
        if variant.observe is not None:
            state, decision = variant.observe(state, Observation(s=s, a=a, r=reward, s_next=s_next, info=info))
            restart, end_episode, metrics = decision.restart, decision.end_episode, dict(decision.metrics)
        state = apply_restart(state, restart)
        doubling = doubling_rule(state.v_k, state.n_k, s_next, state.policy)
        state = state.replace(s=s_next, t=state.t + 1, new_episode=restart | end_episode | doubling)
        metrics.update(
            regret_increment=increment,
            cumulative_regret=state.regret,
            restart=restart.astype(jnp.float32),
            num_restarts=state.num_restarts.astype(jnp.float32),
            episode_index=state.episode.astype(jnp.float32),
            episode_start=jnp.isfinite(sweeps).astype(jnp.float32),
            evi_sweeps=sweeps,
        )
        return state, metrics

    def iteration(state: UCRL2State):
        if K == 1:
            state, metrics = step(state)
        else:
            state, metrics = jax.lax.scan(lambda s, _: step(s), state, None, length=K)
            metrics = {k: jnp.nanmean(v) for k, v in metrics.items()}
        if variant.after_block is not None:
            state = variant.after_block(state)
        return state, metrics

    def policy(state: UCRL2State, obs, key, deterministic: bool):
        return state.policy[jnp.asarray(obs, jnp.int32)]

    return Agent(
        init=init,
        phases=(Phase("online", iteration, config.total_steps // K, env_steps_per_iteration=K),),
        policy=policy,
    )


def apply_restart(state: UCRL2State, restart) -> UCRL2State:
    """Full forgetting when ``restart``: statistics, episode counters and the EVI warm start are reset, the
    restart clock moves to the next step (``t_r <- t + 1``) and the restart time is logged."""
    zero = lambda x: jnp.where(restart, jnp.zeros_like(x), x)  # noqa: E731
    L = state.restart_log.shape[0]
    slot = jnp.minimum(state.num_restarts, L - 1)
    logged = state.restart_log.at[slot].set(state.t + 1)
    log = jnp.where(restart & (state.num_restarts < L), logged, state.restart_log)
    return state.replace(
        n_sa=zero(state.n_sa),
        n_sas=zero(state.n_sas),
        r_sum=zero(state.r_sum),
        n_k=zero(state.n_k),
        v_k=zero(state.v_k),
        bias=zero(state.bias),
        t_restart=jnp.where(restart, state.t + 1, state.t_restart),
        num_restarts=state.num_restarts + restart.astype(jnp.int32),
        restart_log=log,
    )
