"""UCBVI (Azar, Osband, Munos, ICML 2017) and UCBVI-Ent (Tiapkin et al., ICML 2023) for finite-horizon tabular
MDPs: the finite-horizon tabular family core that ``ucbvi``, ``demo_regularized``, ``bc_tabular`` and
``optimistic_ac`` build on.

Setting (docs/algorithms/ucbvi.md): episodes of exactly ``H`` steps ``h = 0..H-1`` (the papers' ``h = 1..H``),
``S`` states observed by index, ``A`` actions, rewards in [0, 1]. The env must expose its exact model
(``comblock_tabular``, ``linear_mdp``: ``to_tabular``; ``gridworld``/finite MDPs with ``horizon > 0``: ``P``, ``R``).
One runner iteration is one episode. Episodes are sampled from that exact model (the same law as ``env.step``;
this keeps an iteration one ``lax.scan`` over ``h`` and lets the metrics be computed exactly).

Statistics after ``k`` episodes: ``n_h(s,a,s')`` transition counts and ``r_h(s,a)`` reward sums, per step ``h``
(the theory's time-inhomogeneous model), giving

    p_hat_h(.|s,a) = n_h(s,a,.) / n_h(s,a)        (uniform, or 0 for the "zero" convention, when n_h(s,a) = 0)
    r_hat_h(s,a)   = r_h(s,a) / max(1, n_h(s,a))

UCBVI's optimistic backup (Azar et al. 2017), ``M_h = H - h`` the range of ``Q_h`` (0-based ``h``):

    Qbar_h(s,a) = min( M_h, r_hat_h(s,a) + p_hat_h(.|s,a) . Vbar_{h+1} + b_h(s,a) ),   Qbar_h = M_h where n = 0
    Vbar_h(s)   = max_a Qbar_h(s,a)                                    (UCBVI, greedy policy; ties -> lowest index)
    Vbar_h(s)   = lam log sum_a pi_ref_h(a|s) exp(Qbar_h(s,a)/lam)      (UCBVI-Ent / regularised: soft-greedy policy
    pi_h(a|s)   = pi_ref_h(a|s) exp((Qbar_h(s,a) - Vbar_h(s))/lam)       toward pi_ref; uniform for UCBVI-Ent)

Bonuses (``bonus=``; all scaled by ``bonus_scale`` = c_b, a tuned constant, never the paper's) **[R]**:

* ``"hoeffding"``: ``b = c_b M_h sqrt(L / n)``, ``L = log(4 H S A K / delta)`` (UCBVI-CH's form; CH's constant 7 and the
  tuned ``c_b = 0.1`` of docs/algorithms/optimistic_ac.md are both "c_b"); ``M_h`` (not ``M_h - 1``) so the last
  step, whose reward is learnt, also gets a bonus.
* ``"kl"`` (KL concentration of ``p_hat``): ``b = c_b ( (M_h - 1) sqrt(beta(n)/(2n)) + sqrt(beta_r(n)/(2n)) )`` with
  ``beta(n) = log(3SAH/delta) + S log(8e(n+1))``, ``beta_r(n) = log(3SAH/delta) + log(8e(n+1))``.

Output (BPI) **[R, docs/algorithms/ucbvi.md]**: with ``recommend="empirical"`` (default) the reported policy after
``k`` episodes is the greedy (UCBVI) or soft-greedy (UCBVI-Ent) policy of the *bonus-free* empirical model
(unvisited pairs: uniform ``p_hat``, ``r_hat = 0``), the same rule for every BPI method here; ``"sampling"``
reports the optimistic policy that is played.

Metrics per iteration (= per episode ``k``, 0-based; the runner averages them over a chunk): ``suboptimality``
``V*_1(s_1) - V^{pi_rec}_1(s_1)`` of the policy recommended from the ``k`` episodes collected *before* this one
(computed exactly from the model; ``k = 0`` is "no online data"), ``regret_increment``
``V* - V^{pi_k}`` of the played policy (exact, expected), ``cumulative_regret``, ``optimistic_value``
``E_{s_1} Vbar_1`` and ``episode``. Pure curves for figures: :func:`learning_curve`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.special import logsumexp, xlogy

from hybrid_rl import tabular
from hybrid_rl.algorithm import Agent, Phase
from hybrid_rl.problem import Problem

BONUSES = ("hoeffding", "kl")
RECOMMENDATIONS = ("empirical", "sampling")


# --------------------------------------------------------------------------------------------------------------
# The exact model of a finite-horizon env (for sampling episodes and exact metrics)
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class TabularModel:
    P: jax.Array  # (H, S, A, S)
    R: jax.Array  # (H, S, A), mean rewards in [0, 1]
    mu0: jax.Array  # (S,) initial distribution
    H: int
    Q_star: jax.Array  # (H, S, A)
    V_star: jax.Array  # (H + 1, S)

    @property
    def S(self) -> int:
        return int(self.P.shape[1])

    @property
    def A(self) -> int:
        return int(self.P.shape[2])

    @property
    def v_star(self) -> jax.Array:
        return self.mu0 @ self.V_star[0]

    def value(self, pi: jax.Array) -> jax.Array:
        """``E_{s_1 ~ mu0} V^pi_1(s_1)``, exactly."""
        _, V = tabular.finite_horizon_policy_evaluation(self.P, self.R, pi, self.H)
        return self.mu0 @ V[0]


def model_from_arrays(P, R, mu0, H: int) -> TabularModel:
    P = jnp.asarray(P, jnp.float32)
    R = jnp.asarray(R, jnp.float32)
    if P.ndim == 3:
        P = jnp.broadcast_to(P, (H,) + P.shape)
    if R.ndim == 2:
        R = jnp.broadcast_to(R, (H,) + R.shape)
    S, A = P.shape[1], P.shape[2]
    chex.assert_shape([P, R], [(H, S, A, S), (H, S, A)])
    mu0 = jnp.asarray(mu0, jnp.float32)
    chex.assert_shape(mu0, (S,))
    Q, V = jax.jit(tabular.finite_horizon_value_iteration, static_argnames="H")(P, R, H=H)
    return TabularModel(P=P, R=R, mu0=mu0, H=int(H), Q_star=Q, V_star=V)


def tabular_model(problem: Problem, name: str = "this algorithm") -> TabularModel:
    """The exact finite-horizon model of ``problem``'s env (``to_tabular`` envs and finite MDPs with a horizon)."""
    env, params = problem.env, problem.env_params
    if problem.action_kind != "discrete":
        raise ValueError(f"{name} needs discrete actions; env {problem.env_name!r} has continuous ones")
    if hasattr(env, "to_tabular"):
        P, R = env.to_tabular(params)
        return model_from_arrays(P, R, env.initial_distribution(params), int(env.horizon))
    P, R = getattr(params, "P", None), getattr(params, "R", None)
    horizon = int(np.asarray(getattr(params, "horizon", 0)))
    if P is None or R is None or horizon <= 0:
        raise ValueError(
            f"{name} is a finite-horizon tabular algorithm: env {problem.env_name!r} has no exact finite-horizon "
            "model (to_tabular, or P/R with horizon > 0)"
        )
    return model_from_arrays(P, R, params.init_dist, horizon)


def _sample_index(u: jax.Array, p: jax.Array) -> jax.Array:
    """Inverse-CDF draw from the last axis of ``p`` with one uniform ``u``."""
    return jnp.minimum(jnp.sum(jnp.cumsum(p, -1) < u * p.sum(-1, keepdims=True), -1), p.shape[-1] - 1)


def sample_episode(key: jax.Array, model: TabularModel, pi: jax.Array):
    """One episode of the stochastic policy ``pi[H, S, A]`` in the exact model: ``(s, a, r, s_next)``, each ``(H,)``."""
    chex.assert_shape(pi, (model.H, model.S, model.A))
    k0, key = jax.random.split(key)
    s0 = _sample_index(jax.random.uniform(k0), model.mu0)

    def step(s, xs):
        h, k = xs
        u = jax.random.uniform(k, (2,))
        a = _sample_index(u[0], pi[h, s])
        s_next = _sample_index(u[1], model.P[h, s, a])
        return s_next, (s, a, model.R[h, s, a], s_next)

    _, (s, a, r, s_next) = jax.lax.scan(step, s0, (jnp.arange(model.H), jax.random.split(key, model.H)))
    return s.astype(jnp.int32), a.astype(jnp.int32), r, s_next.astype(jnp.int32)


def add_episode(n_sas: jax.Array, r_sum: jax.Array, s, a, r, s_next, weight=1.0):
    """Counts ``n_h(s,a,s') += 1`` and reward sums ``r_h(s,a) += r`` for one episode (``weight`` 0 drops it)."""
    h = jnp.arange(s.shape[0])
    return n_sas.at[h, s, a, s_next].add(weight), r_sum.at[h, s, a].add(weight * r)


def empirical_model(n_sas: jax.Array, r_sum: jax.Array, unvisited: str = "uniform"):
    """``(p_hat, r_hat, n)`` from counts; unvisited rows of ``p_hat`` are uniform or (``"zero"``) all zero."""
    chex.assert_rank([n_sas, r_sum], [4, 3])
    n = n_sas.sum(-1)
    S = n_sas.shape[-1]
    fill = 1.0 / S if unvisited == "uniform" else 0.0
    p_hat = jnp.where(n[..., None] > 0, n_sas / jnp.maximum(n, 1.0)[..., None], fill)
    return p_hat, r_sum / jnp.maximum(n, 1.0), n


def bonus(n: jax.Array, kind: str, scale, delta, num_episodes: int) -> jax.Array:
    """Exploration bonus ``b_h(s,a)`` (module doc) for counts ``n[H, S, A]``; ``inf`` where ``n = 0``."""
    H, S, A = n.shape
    M = (H - jnp.arange(H, dtype=jnp.float32))[:, None, None]
    nn = jnp.maximum(n, 1.0)
    if kind == "hoeffding":
        L = jnp.log(4.0 * H * S * A * num_episodes / delta)
        b = M * jnp.sqrt(L / nn)
    elif kind == "kl":
        base = jnp.log(3.0 * S * A * H / delta)
        beta = base + S * jnp.log(8.0 * jnp.e * (nn + 1.0))
        beta_r = base + jnp.log(8.0 * jnp.e * (nn + 1.0))
        b = (M - 1.0) * jnp.sqrt(beta / (2 * nn)) + jnp.sqrt(beta_r / (2 * nn))
    else:
        raise ValueError(f"bonus must be one of {BONUSES}, got {kind!r}")
    return jnp.where(n > 0, scale * b, jnp.inf)


def optimistic_planning(p_hat, r_hat, b, lam=None, log_ref=None, clip: bool = True):
    """The optimistic backup of the module doc. ``lam=None``: greedy (max); else soft toward ``exp(log_ref)``.

    ``b`` may be 0 (no optimism: plain empirical (soft) value iteration) or ``inf`` at unvisited pairs (then
    ``Qbar = M_h`` there when ``clip``). Returns ``(Q[H,S,A], V[H+1,S], pi[H,S,A])``; ``pi`` is one-hot for greedy.
    """
    H, S, A = r_hat.shape
    chex.assert_shape(p_hat, (H, S, A, S))
    soft = lam is not None
    if soft and log_ref is None:
        log_ref = jnp.full((H, S, A), -jnp.log(A))

    def step(V_next, xs):
        h, p_h, r_h, b_h, lr_h = xs
        Q = r_h + p_h @ V_next + b_h
        if clip:
            Q = jnp.minimum(Q, (H - h).astype(jnp.float32))
        if soft:
            logits = lr_h + Q / lam
            V = lam * logsumexp(logits, -1)
            pi = jax.nn.softmax(logits, -1)
        else:
            V = Q.max(-1)
            pi = jax.nn.one_hot(Q.argmax(-1), A)
        return V, (Q, V, pi)

    xs = (jnp.arange(H), p_hat, r_hat, jnp.broadcast_to(b, (H, S, A)),
          log_ref if soft else jnp.zeros((H, S, A)))
    _, (Q, V, pi) = jax.lax.scan(step, jnp.zeros((S,)), xs, reverse=True)
    return Q, jnp.concatenate([V, jnp.zeros((1, S))]), pi


def lower_regularized_value(p_hat, r_hat, b, pi, log_ref, lam):
    """The lower critic (docs/algorithms/demo_regularized.md, step 3) of the regularised value of ``pi`` (not
    clipped below: it can be negative):

    ``Qlo_h = r_hat + p_hat . Vlo_{h+1} - b``,  ``Vlo_h(s) = sum_a pi (Qlo_h - lam log(pi / pi_ref))``.
    Returns ``Vlo[H+1, S]``.
    """
    H, S, A = r_hat.shape
    kl = (xlogy(pi, pi) - pi * log_ref).sum(-1)  # (H, S)

    def step(V_next, xs):
        p_h, r_h, b_h, pi_h, kl_h = xs
        Q = r_h + p_h @ V_next - b_h
        V = (pi_h * Q).sum(-1) - lam * kl_h
        return V, V

    _, V = jax.lax.scan(step, jnp.zeros((S,)), (p_hat, r_hat, jnp.broadcast_to(b, (H, S, A)), pi, kl), reverse=True)
    return jnp.concatenate([V, jnp.zeros((1, S))])


# --------------------------------------------------------------------------------------------------------------
# The agent (shared by UCBVI, UCBVI-Ent, DemoReg and tabular BC)
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Config:
    episodes: int = 300  # K: online episodes (one per iteration)
    bonus: str = "hoeffding"  # "hoeffding" | "kl" (module doc) [R]
    bonus_scale: float = 0.1  # c_b multiplying the bonus; tuned, not the paper's constant [R] (traced)
    delta: float = 0.05  # confidence level inside the bonus (traced)
    recommend: str = "empirical"  # reported policy: "empirical" (bonus-free model) | "sampling" [R] (module doc)


@dataclasses.dataclass(frozen=True)
class EntConfig(Config):
    lam: float = 0.01  # temperature of the entropy (KL-to-uniform) regulariser (traced)


TRACED = ("bonus_scale", "delta")


@struct.dataclass
class TabularState:
    key: jax.Array
    n_sas: jax.Array  # (H, S, A, S) float32 transition counts
    r_sum: jax.Array  # (H, S, A) float32 reward sums
    log_ref: jax.Array  # (H, S, A) log reference policy (uniform; pi^BC for DemoReg)
    episode: jax.Array  # () int32
    regret: jax.Array  # () float32 cumulative expected regret
    extra: Any  # algorithm-specific (DemoReg: its BC policy's suboptimality, ...)
    hparams: dict


def make_episodic_agent(
    model: TabularModel,
    num_episodes: int,
    bonus_kind: str,
    recommend: str,
    *,
    soft: bool,
    temperature=lambda hp: hp["lam"],
    init_reference=None,
    online: bool = True,
    reward_fn=None,
) -> Agent:
    """The episode loop of the module doc.

    ``soft``: soft-greedy toward the reference (``temperature(hparams)``) instead of greedy.
    ``init_reference(key, hparams) -> (log_ref[H,S,A], extra)``: the reference policy (default uniform).
    ``online=False``: never plans; plays and recommends ``exp(log_ref)`` (behaviour cloning).
    ``reward_fn(state) -> r_hat[H,S,A]`` replaces the empirical reward (RLHF: a learnt reward).
    """
    if bonus_kind not in BONUSES:
        raise ValueError(f"bonus must be one of {BONUSES}, got {bonus_kind!r}")
    if recommend not in RECOMMENDATIONS:
        raise ValueError(f"recommend must be one of {RECOMMENDATIONS}, got {recommend!r}")
    H, S, A = model.H, model.S, model.A
    v_star = model.v_star

    def init(key, hparams):
        k_ref, key = jax.random.split(key)
        if init_reference is None:
            log_ref, extra = jnp.full((H, S, A), -jnp.log(A)), {}
        else:
            log_ref, extra = init_reference(k_ref, hparams)
        chex.assert_shape(log_ref, (H, S, A))
        return TabularState(
            key=key,
            n_sas=jnp.zeros((H, S, A, S)),
            r_sum=jnp.zeros((H, S, A)),
            log_ref=log_ref,
            episode=jnp.int32(0),
            regret=jnp.float32(0.0),
            extra=extra,
            hparams=hparams,
        )

    def plans(state):
        """(sampling policy, recommended policy, optimistic value at s_1)."""
        hp = state.hparams
        if not online:
            pi = jnp.exp(state.log_ref)
            return pi, pi, jnp.float32(jnp.nan)
        lam = temperature(hp) if soft else None
        ref = state.log_ref if soft else None
        p_hat, r_hat, n = empirical_model(state.n_sas, state.r_sum)
        if reward_fn is not None:
            r_hat = reward_fn(state)
        b = bonus(n, bonus_kind, hp["bonus_scale"], hp["delta"], num_episodes)
        _, V_up, pi_play = optimistic_planning(p_hat, r_hat, b, lam, ref)
        if recommend == "empirical":
            _, _, pi_rec = optimistic_planning(p_hat, r_hat, jnp.zeros(()), lam, ref, clip=False)
        else:
            pi_rec = pi_play
        return pi_play, pi_rec, model.mu0 @ V_up[0]

    def iteration(state):
        pi_play, pi_rec, v_up = plans(state)
        key, k_ep = jax.random.split(state.key)
        s, a, r, s_next = sample_episode(k_ep, model, pi_play)
        n_sas, r_sum = add_episode(state.n_sas, state.r_sum, s, a, r, s_next)
        regret_inc = v_star - model.value(pi_play)
        state = state.replace(
            key=key, n_sas=n_sas, r_sum=r_sum, episode=state.episode + 1, regret=state.regret + regret_inc
        )
        metrics = {
            "suboptimality": v_star - model.value(pi_rec),
            "regret_increment": regret_inc,
            "cumulative_regret": state.regret,
            "optimistic_value": v_up,
            "episode_return": r.sum(),
            "episode": state.episode.astype(jnp.float32),
        }
        return state, metrics

    def policy(state, obs, key, deterministic):
        # Step-0 recommended policy (the runner never evaluates these algorithms: evaluation=False).
        pi = plans(state)[1][0, jnp.asarray(obs, jnp.int32)]
        return jnp.where(deterministic, pi.argmax(), jax.random.categorical(key, jnp.log(pi)))

    phase = Phase("online", iteration, num_iterations=num_episodes, env_steps_per_iteration=H)
    return Agent(init=init, phases=(phase,), policy=policy)


def learning_curve(agent: Agent, key, hparams, num_episodes: int, metric: str = "suboptimality"):
    """Pure per-episode curve ``metric[k]``, ``k = 0..num_episodes-1`` for one seed (jit + vmap it)."""
    iteration = agent.phases[0].iteration
    state = agent.init(key, hparams)
    state, metrics = jax.lax.scan(lambda s, _: iteration(s), state, None, length=num_episodes)
    return state, metrics[metric]
