"""Exact planners for finite MDPs in JAX (jittable, vmappable).

Conventions (shared by every function here):

* ``P[s, a, s']`` is a transition kernel (rows sum to 1) of shape ``(S, A, S)``; finite-horizon planners also
  accept a time-inhomogeneous kernel ``P[h, s, a, s']`` of shape ``(H, S, A, S)``.
* ``R[s, a]`` is the *mean* reward, shape ``(S, A)`` (or ``(H, S, A)`` for finite horizon).
* Finite horizon uses steps ``h = 0..H-1`` and ``V[H] = 0``; ``Q`` has shape ``(H, S, A)`` and ``V`` has shape
  ``(H+1, S)``. ``H`` is a Python int (it fixes a ``lax.scan`` length): mark it static under ``jax.jit``.
* Scalars that are hyper-parameters (``gamma``, ``lam``, tolerances, confidence radii) may be traced, so a sweep
  over them vmaps without recompiling.
* Policies are either deterministic, an int array ``pi[s]`` (or ``pi[h, s]``), or stochastic, a float array
  ``pi[s, a]`` (or ``pi[h, s, a]``) whose last axis sums to 1.

Contents: finite-horizon value iteration and policy evaluation, discounted value iteration and exact policy
evaluation (linear solve), average-reward relative value iteration (gain, bias, span), KL-regularised ("soft")
finite-horizon value iteration toward a reference policy, and UCRL2's extended value iteration with its L1-ball
inner maximisation and confidence radii.
"""

from __future__ import annotations

import numbers
from typing import Optional

import chex
import jax
import jax.numpy as jnp
from flax import struct
from jax.scipy.special import logsumexp, xlogy

# --------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------


def span(v: jax.Array, axis: int = -1) -> jax.Array:
    """Span semi-norm ``sp(v) = max_s v(s) - min_s v(s)`` along ``axis``."""
    return jnp.max(v, axis=axis) - jnp.min(v, axis=axis)


def bellman_q(P: jax.Array, R: jax.Array, V: jax.Array) -> jax.Array:
    """One Bellman backup ``Q(s,a) = R(s,a) + sum_s' P(s'|s,a) V(s')`` (no discount; scale ``V`` for one)."""
    return R + jnp.einsum("...sat,...t->...sa", P, V)


def _as_stochastic(pi: jax.Array, num_actions: int, stoch_ndim: int) -> jax.Array:
    """Deterministic policies (int arrays) become one-hot stochastic ones, so one code path serves both."""
    if jnp.issubdtype(pi.dtype, jnp.integer):
        return jax.nn.one_hot(pi, num_actions, dtype=jnp.float32)
    chex.assert_rank(pi, stoch_ndim)
    return pi


def _check_mdp(P: jax.Array, R: jax.Array) -> tuple[int, int]:
    chex.assert_rank(P, 3)
    chex.assert_rank(R, 2)
    S, A, _ = P.shape
    chex.assert_shape(P, (S, A, S))
    chex.assert_shape(R, (S, A))
    return S, A


def _check_finite_horizon(P: jax.Array, R: jax.Array, H: int) -> tuple[int, int]:
    """Accepts stationary ``(S,A,S)``/``(S,A)`` or time-indexed ``(H,S,A,S)``/``(H,S,A)`` arrays."""
    if not isinstance(H, numbers.Integral) or isinstance(H, bool) or H < 1:
        raise ValueError(f"H must be a positive Python int (it is a scan length), got {H!r}")
    if P.ndim not in (3, 4) or R.ndim not in (2, 3):
        raise ValueError(f"P must be (S,A,S) or (H,S,A,S) and R (S,A) or (H,S,A); got {P.shape} and {R.shape}")
    S, A = P.shape[-3], P.shape[-2]
    chex.assert_shape(P, ((H,) if P.ndim == 4 else ()) + (S, A, S))
    chex.assert_shape(R, ((H,) if R.ndim == 3 else ()) + (S, A))
    return S, A


def _backward_scan(P: jax.Array, R: jax.Array, H: int, extra_xs, step_fn):
    """Backward induction ``h = H-1, ..., 0`` as one ``lax.scan``.

    ``step_fn(P_h, R_h, V_{h+1}, extra_h) -> (Q_h, V_h, aux_h)``. Time-indexed ``P``/``R``/``extra`` are scanned
    over (reversed); stationary ones are closed over, so a stationary kernel is never copied H times.
    """
    S = P.shape[-1]
    P_tv, R_tv = P.ndim == 4, R.ndim == 3
    xs = (P if P_tv else None, R if R_tv else None, extra_xs)

    def body(V_next, x):
        P_h = x[0] if P_tv else P
        R_h = x[1] if R_tv else R
        Q_h, V_h, aux_h = step_fn(P_h, R_h, V_next, x[2])
        return V_h, (Q_h, V_h, aux_h)

    V_H = jnp.zeros((S,), jnp.result_type(R.dtype, jnp.float32))
    _, (Q, V, aux) = jax.lax.scan(body, V_H, xs, length=H, reverse=True)
    V = jnp.concatenate([V, V_H[None]], axis=0)
    return Q, V, aux


# --------------------------------------------------------------------------------------------------------------
# Finite horizon
# --------------------------------------------------------------------------------------------------------------


def finite_horizon_value_iteration(P: jax.Array, R: jax.Array, H: int) -> tuple[jax.Array, jax.Array]:
    """Optimal finite-horizon values by backward induction.

    ``V_H = 0``;  ``Q_h(s,a) = R_h(s,a) + sum_s' P_h(s'|s,a) V_{h+1}(s')``;  ``V_h(s) = max_a Q_h(s,a)``.

    Args:
      P: ``(S,A,S)`` or ``(H,S,A,S)``.  R: ``(S,A)`` or ``(H,S,A)``.  H: horizon (static Python int).
    Returns:
      ``(Q, V)`` with shapes ``(H,S,A)`` and ``(H+1,S)``; the greedy policy is ``Q.argmax(-1)``.
    """
    _check_finite_horizon(P, R, H)

    def step(P_h, R_h, V_next, _):
        Q_h = bellman_q(P_h, R_h, V_next)
        return Q_h, Q_h.max(-1), None

    Q, V, _ = _backward_scan(P, R, H, None, step)
    return Q, V


def finite_horizon_policy_evaluation(
    P: jax.Array,
    R: jax.Array,
    pi: jax.Array,
    H: int,
    lam: float | jax.Array = 0.0,
    pi_ref: Optional[jax.Array] = None,
) -> tuple[jax.Array, jax.Array]:
    """Exact (optionally KL-regularised) value of a policy over ``H`` steps.

    ``Q^pi_h(s,a) = R_h(s,a) + sum_s' P_h(s'|s,a) V^pi_{h+1}(s')`` and
    ``V^pi_h(s) = sum_a pi_h(a|s) [ Q^pi_h(s,a) - lam * log(pi_h(a|s) / pi_ref_h(a|s)) ]`` (``lam = 0``: plain
    evaluation; ``0 log 0 = 0``).

    Args:
      pi: ``(S,)``/``(H,S)`` ints or ``(S,A)``/``(H,S,A)`` probabilities.  pi_ref: ``(S,A)`` or ``(H,S,A)``
        (needed only when ``lam > 0``; uniform if omitted).
    Returns: ``(Q, V)`` with shapes ``(H,S,A)``, ``(H+1,S)``.
    """
    S, A = _check_finite_horizon(P, R, H)
    pi_is_int = jnp.issubdtype(pi.dtype, jnp.integer)
    pi_tv = pi.ndim == (2 if pi_is_int else 3)
    pi = _as_stochastic(pi, A, 3 if pi_tv else 2)
    if pi_ref is None:
        pi_ref = jnp.full((S, A), 1.0 / A)
    ref_tv = pi_ref.ndim == 3
    chex.assert_shape(pi, ((H,) if pi_tv else ()) + (S, A))
    chex.assert_shape(pi_ref, ((H,) if ref_tv else ()) + (S, A))

    # KL penalty per state, computed once: sum_a pi log(pi / pi_ref) (xlogy makes 0 log 0 = 0).
    kl = (xlogy(pi, pi) - xlogy(pi, pi_ref)).sum(-1)
    kl_tv = kl.ndim == 2
    extra = (pi if pi_tv else None, kl if kl_tv else None)

    def step(P_h, R_h, V_next, x):
        pi_h = x[0] if pi_tv else pi
        kl_h = x[1] if kl_tv else kl
        Q_h = bellman_q(P_h, R_h, V_next)
        return Q_h, (pi_h * Q_h).sum(-1) - lam * kl_h, None

    Q, V, _ = _backward_scan(P, R, H, extra, step)
    return Q, V


def soft_value_iteration(
    P: jax.Array,
    R: jax.Array,
    H: int,
    lam: float | jax.Array,
    pi_ref: Optional[jax.Array] = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Finite-horizon KL-regularised value iteration toward a reference policy (log-space backups).

    ``Q_h(s,a) = R_h(s,a) + sum_s' P_h(s'|s,a) V_{h+1}(s')``,
    ``V_h(s) = lam * log sum_a pi_ref_h(a|s) exp(Q_h(s,a) / lam)
            = max_q { <q, Q_h(s,.)> - lam KL(q || pi_ref_h(.|s)) }``,
    ``pi_h(a|s) = pi_ref_h(a|s) exp((Q_h(s,a) - V_h(s)) / lam)`` (the maximiser, the "soft-greedy" policy).

    ``V_h`` is computed as ``lam * logsumexp(log pi_ref + Q / lam)`` so large ``Q / lam`` never overflows; actions
    with ``pi_ref = 0`` get probability 0. Limits: ``lam -> 0`` gives ``max`` over the support of ``pi_ref``;
    ``lam -> inf`` gives ``E_{pi_ref}[Q]``.

    Args:
      lam: temperature ``> 0`` (may be traced).  pi_ref: ``(S,A)`` or ``(H,S,A)``; uniform if omitted (then ``V``
        is the entropy-regularised value shifted by ``-lam log A`` per step).
    Returns: ``(Q, V, pi)`` with shapes ``(H,S,A)``, ``(H+1,S)``, ``(H,S,A)``.
    """
    S, A = _check_finite_horizon(P, R, H)
    if pi_ref is None:
        pi_ref = jnp.full((S, A), 1.0 / A)
    ref_tv = pi_ref.ndim == 3
    chex.assert_shape(pi_ref, ((H,) if ref_tv else ()) + (S, A))
    log_ref = jnp.log(pi_ref)  # -inf outside the support: logsumexp and exp handle it exactly

    def step(P_h, R_h, V_next, x):
        log_ref_h = x if ref_tv else log_ref
        Q_h = bellman_q(P_h, R_h, V_next)
        logits = log_ref_h + Q_h / lam
        V_h = lam * logsumexp(logits, axis=-1)
        # Normalise with logsumexp rather than exp((Q - V)/lam): same number, no cancellation for small lam.
        pi_h = jnp.exp(logits - logsumexp(logits, axis=-1, keepdims=True))
        return Q_h, V_h, pi_h

    Q, V, pi = _backward_scan(P, R, H, log_ref if ref_tv else None, step)
    return Q, V, pi


# --------------------------------------------------------------------------------------------------------------
# Discounted
# --------------------------------------------------------------------------------------------------------------


def discounted_value_iteration(
    P: jax.Array,
    R: jax.Array,
    gamma: float | jax.Array,
    tol: float | jax.Array = 1e-5,
    max_iters: int = 100_000,
    num_iters: Optional[int] = None,
) -> tuple[jax.Array, jax.Array]:
    """Optimal discounted values by value iteration.

    ``Q_{k+1}(s,a) = R(s,a) + gamma sum_s' P(s'|s,a) V_k(s')``, ``V_{k+1}(s) = max_a Q_{k+1}(s,a)``, from ``V_0 = 0``.

    Stops when the standard error bound ``||V_{k+1} - V*||_inf <= gamma / (1 - gamma) ||V_{k+1} - V_k||_inf``
    falls below ``tol * max(1, ||V_{k+1}||_inf)`` (relative, because float32 cannot resolve absolute differences
    far below ``1e-7 |V|``), or after ``max_iters`` sweeps; with ``num_iters`` set it runs exactly that many
    sweeps (a ``fori_loop``, e.g. for reverse-mode differentiation).

    Returns: ``(Q, V)`` with shapes ``(S,A)`` and ``(S,)``.
    """
    S, A = _check_mdp(P, R)
    dtype = jnp.result_type(R.dtype, jnp.float32)

    def sweep(V):
        Q = bellman_q(P, R, gamma * V)
        return Q, Q.max(-1)

    V0 = jnp.zeros((S,), dtype)
    if num_iters is not None:
        V = jax.lax.fori_loop(0, num_iters, lambda _, V: sweep(V)[1], V0)
        Q, _ = sweep(V)
        return Q, Q.max(-1)

    def cond(c):
        _, _, it, done = c
        return (~done) & (it < max_iters)

    def body(c):
        V, _, it, _ = c
        Q, V_new = sweep(V)
        err_bound = gamma / (1.0 - gamma) * jnp.max(jnp.abs(V_new - V))
        done = err_bound <= tol * jnp.maximum(1.0, jnp.max(jnp.abs(V_new)))
        return V_new, Q, it + 1, done

    _, Q, _, _ = jax.lax.while_loop(cond, body, (V0, jnp.zeros((S, A), dtype), jnp.int32(0), jnp.bool_(False)))
    return Q, Q.max(-1)


def policy_evaluation(
    P: jax.Array, R: jax.Array, pi: jax.Array, gamma: float | jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Exact discounted value of a stationary policy by one linear solve.

    ``V^pi = (I - gamma P_pi)^{-1} r_pi`` with ``P_pi(s'|s) = sum_a pi(a|s) P(s'|s,a)`` and
    ``r_pi(s) = sum_a pi(a|s) R(s,a)``; then ``Q^pi = R + gamma P V^pi``. Requires ``gamma < 1``.

    Args: pi: ``(S,)`` ints or ``(S,A)`` probabilities.
    Returns: ``(Q, V)`` with shapes ``(S,A)`` and ``(S,)``.
    """
    S, A = _check_mdp(P, R)
    pi = _as_stochastic(pi, A, 2)
    chex.assert_shape(pi, (S, A))
    P_pi = jnp.einsum("sa,sat->st", pi, P)
    r_pi = (pi * R).sum(-1)
    V = jnp.linalg.solve(jnp.eye(S, dtype=P_pi.dtype) - gamma * P_pi, r_pi)
    return bellman_q(P, R, gamma * V), V


# --------------------------------------------------------------------------------------------------------------
# Average reward
# --------------------------------------------------------------------------------------------------------------


@struct.dataclass
class AverageRewardSolution:
    """Result of :func:`relative_value_iteration` (leading batch axes under vmap).

    ``gain + bias(s) = max_a q(s,a)`` with ``q = R + P bias`` (average-reward optimality equation),
    ``bias`` normalised so ``min_s bias(s) = 0``; ``bias_span = sp(bias)``; ``policy = argmax_a q``.
    """

    gain: jax.Array  # ()
    bias: jax.Array  # (S,)
    bias_span: jax.Array  # ()
    policy: jax.Array  # (S,) int32
    q: jax.Array  # (S, A)
    num_iters: jax.Array  # ()
    converged: jax.Array  # () bool


def relative_value_iteration(
    P: jax.Array,
    R: jax.Array,
    tol: float | jax.Array = 1e-6,
    max_iters: int = 100_000,
    aperiodicity: float | jax.Array = 0.9,
) -> AverageRewardSolution:
    """Average-reward (gain-optimal) planning for unichain / communicating MDPs by relative value iteration.

    Runs undiscounted value iteration on the aperiodic transform ``P_tau = tau P + (1 - tau) I``
    (``tau = aperiodicity``): ``u_{i+1}(s) = max_a [R(s,a) + sum_s' P_tau(s'|s,a) u_i(s')]``, re-centred by
    ``min_s u_{i+1}`` after each sweep (``u`` otherwise grows like ``i * gain``), and stops when
    ``sp(u_{i+1} - u_i) < tol``; then ``min(u_{i+1} - u_i) <= gain <= max(u_{i+1} - u_i)`` and the midpoint is
    returned.

    Why the transform: plain value iteration need not converge on periodic MDPs. The transform keeps the gain
    and the greedy policy and scales the bias: if ``g + h' = max_a [R + P_tau h']`` then ``h = tau h'`` solves
    ``g + h = max_a [R + P h]``, so the returned ``bias`` is that of the original MDP. ``aperiodicity = 1``
    disables it. [R] The default 0.9 is a convenience choice; the solution does not depend on it.
    """
    S, A = _check_mdp(P, R)
    dtype = jnp.result_type(R.dtype, jnp.float32)
    P_tau = aperiodicity * P + (1.0 - aperiodicity) * jnp.eye(S, dtype=P.dtype)[:, None, :]

    def cond(c):
        _, _, it, sp = c
        return (sp >= tol) & (it < max_iters)

    def body(c):
        u, _, it, _ = c
        u_new = bellman_q(P_tau, R, u).max(-1)
        diff = u_new - u
        return u_new - u_new.min(), diff, it + 1, span(diff)

    u0 = jnp.zeros((S,), dtype)
    u, diff, it, sp = jax.lax.while_loop(cond, body, (u0, u0, jnp.int32(0), jnp.asarray(jnp.inf, dtype)))
    gain = 0.5 * (diff.max() + diff.min())
    bias = aperiodicity * u
    bias = bias - bias.min()
    q = bellman_q(P, R, bias)
    return AverageRewardSolution(
        gain=gain,
        bias=bias,
        bias_span=span(bias),
        policy=jnp.argmax(q, -1).astype(jnp.int32),
        q=q,
        num_iters=it,
        converged=sp < tol,
    )


def average_reward_policy_evaluation(P: jax.Array, R: jax.Array, pi: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Exact gain and bias of a stationary policy in a unichain MDP, by one linear solve.

    Solves ``g + h(s) = r_pi(s) + sum_s' P_pi(s'|s) h(s')`` with the normalisation ``h(0) = 0``
    (``S + 1`` unknowns, ``S + 1`` equations), then shifts ``h`` so ``min h = 0``.
    Returns ``(gain, bias)``.
    """
    S, A = _check_mdp(P, R)
    pi = _as_stochastic(pi, A, 2)
    P_pi = jnp.einsum("sa,sat->st", pi, P)
    r_pi = (pi * R).sum(-1)
    # Unknowns x = [g, h(0..S-1)]: rows  g + h - P_pi h = r_pi  and  h(0) = 0.
    M = jnp.zeros((S + 1, S + 1), P_pi.dtype)
    M = M.at[:S, 0].set(1.0).at[:S, 1:].set(jnp.eye(S, dtype=P_pi.dtype) - P_pi).at[S, 1].set(1.0)
    x = jnp.linalg.solve(M, jnp.concatenate([r_pi, jnp.zeros((1,), r_pi.dtype)]))
    h = x[1:]
    return x[0], h - h.min()


# --------------------------------------------------------------------------------------------------------------
# UCRL2: confidence radii, L1-ball inner maximisation, extended value iteration
# --------------------------------------------------------------------------------------------------------------


def ucrl2_radii(
    counts: jax.Array,
    t: jax.Array | float,
    delta: float | jax.Array,
    scale: float | jax.Array = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """UCRL2's confidence radii (Jaksch, Ortner, Auer 2010), for counts ``N(s,a)`` of shape ``(S, A)``.

    ``d_r(s,a) = c * sqrt(7 log(2 S A t / delta) / (2 max(1, N(s,a))))``  (reward interval half-width)
    ``d_p(s,a) = c * sqrt(14 S log(2 A t / delta) / max(1, N(s,a)))``   (L1 radius of ``p(.|s,a)``)

    ``t`` is the time at the episode start (time since the last restart for restarting variants).
    ``scale`` = c is a confidence multiplier; c = 1 is the theory (exposed because theory-constant
    radii explore for a very long time). [R]
    """
    chex.assert_rank(counts, 2)
    S, A = counts.shape
    n = jnp.maximum(1.0, counts.astype(jnp.float32))
    d_r = scale * jnp.sqrt(7.0 * jnp.log(2.0 * S * A * t / delta) / (2.0 * n))
    d_p = scale * jnp.sqrt(14.0 * S * jnp.log(2.0 * A * t / delta) / n)
    return d_r, d_p


def empirical_kernel(transition_counts: jax.Array) -> jax.Array:
    """``p_hat(s'|s,a) = N(s,a,s') / N(s,a)``, uniform where ``N(s,a) = 0`` (EVI needs every row to be a
    distribution; with no data the L1 radius covers the whole simplex anyway)."""
    chex.assert_rank(transition_counts, 3)
    c = transition_counts.astype(jnp.float32)
    n = c.sum(-1, keepdims=True)
    return jnp.where(n > 0, c / jnp.maximum(n, 1.0), 1.0 / c.shape[-1])


def _l1_ball_max_sorted(p_sorted: jax.Array, d: jax.Array) -> jax.Array:
    """Inner maximisation with next states already sorted best-first along the last axis."""
    p0 = jnp.minimum(1.0, p_sorted[..., 0] + 0.5 * d)
    rest = p_sorted[..., 1:]
    excess = jnp.maximum(0.0, p0 + rest.sum(-1) - 1.0)
    # Remove the excess from the worst states first. With q = masses listed worst -> best and c = cumsum(q),
    # state j keeps clip(c_j - excess, 0, q_j): the states whose whole prefix fits in the excess go to 0, the
    # first one that does not keeps c_j - excess, the rest are untouched. One cumsum, no data-dependent loop.
    q = rest[..., ::-1]
    kept = jnp.clip(jnp.cumsum(q, axis=-1) - excess[..., None], 0.0, q)
    return jnp.concatenate([p0[..., None], kept[..., ::-1]], axis=-1)


def l1_ball_max(p_hat: jax.Array, d: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``max_p <p, u>`` over ``{p in simplex : ||p - p_hat||_1 <= d}``, in closed form.

    The maximiser moves ``min(d/2, 1 - p_hat(s*))`` mass onto the best state ``s* = argmax u`` and removes the
    same mass from the worst states first (Jaksch et al. 2010, Fig. 2). Exact for any ``d >= 0`` (ties in ``u``
    are broken arbitrarily, which does not change the value).

    Args:
      p_hat: ``(..., S)`` distributions.  d: radius, shape ``p_hat.shape[:-1]`` (or broadcastable).  u: ``(S,)``.
    Returns: ``(p, value)`` with ``p`` shaped like ``p_hat`` and ``value = <p, u>``.
    """
    chex.assert_rank(u, 1)
    chex.assert_equal(p_hat.shape[-1], u.shape[0])
    order = jnp.argsort(-u)
    d = jnp.broadcast_to(d, p_hat.shape[:-1])
    p_sorted = _l1_ball_max_sorted(jnp.take(p_hat, order, axis=-1), d)
    p = jnp.zeros_like(p_sorted).at[..., order].set(p_sorted)
    return p, p @ u


@struct.dataclass
class EVIResult:
    """Result of :func:`extended_value_iteration` (leading batch axes under vmap).

    ``policy`` is greedy for the optimistic MDP ``(P, R)`` returned here; ``gain`` estimates its optimal gain
    (within ``eps/2`` when converged); ``bias`` is the last iterate ``u`` (min 0, in the units of the original
    optimistic MDP), usable as the ``u0`` warm start of the next call.
    """

    policy: jax.Array  # (S,) int32
    gain: jax.Array  # ()
    bias: jax.Array  # (S,)
    P: jax.Array  # (S, A, S) optimistic kernel of the last sweep
    R: jax.Array  # (S, A) optimistic rewards
    num_iters: jax.Array  # ()
    converged: jax.Array  # () bool


def extended_value_iteration(
    p_hat: jax.Array,
    r_hat: jax.Array,
    d_p: jax.Array,
    d_r: Optional[jax.Array] = None,
    eps: float | jax.Array = 1e-2,
    max_iters: int = 10_000,
    u0: Optional[jax.Array] = None,
    r_max: float | jax.Array = 1.0,
    aperiodicity: float | jax.Array = 1.0,
) -> EVIResult:
    """UCRL2's extended value iteration on the set of plausible MDPs.

    Plausible set: rewards ``r(s,a) <= min(r_max, r_hat(s,a) + d_r(s,a))`` and kernels with
    ``||p(.|s,a) - p_hat(.|s,a)||_1 <= d_p(s,a)``. From ``u_0`` (zeros or a warm start):

    ``u_{i+1}(s) = max_a [ r~(s,a) + max_{p in ball(s,a)} sum_s' p(s') u_i(s') ]``

    where the inner max is :func:`l1_ball_max` (one sort of ``u_i`` shared by every ``(s,a)`` per sweep).
    Stops when ``sp(u_{i+1} - u_i) < eps`` (UCRL2 uses ``eps = 1/sqrt(t_k)``) or after ``max_iters`` sweeps;
    then the greedy policy is ``eps``-optimal for the optimistic MDP, whose gain lies in
    ``[min(u_{i+1}-u_i), max(u_{i+1}-u_i)]`` (midpoint returned). ``u`` is re-centred by its minimum each sweep
    (the iterates otherwise grow like ``i * gain``; the stopping rule only sees differences). Ties in the argmax
    go to the lowest action index (deterministic; the reference code breaks them with noise).

    Args:
      p_hat: ``(S,A,S)`` empirical kernel (any distribution for unvisited pairs).  r_hat: ``(S,A)`` mean rewards.
      d_p: ``(S,A)`` L1 radii.  d_r: ``(S,A)`` reward radii (``None``: rewards known, ``r~ = r_hat``).
      eps: stopping threshold.  u0: ``(S,)`` warm start.  r_max: cap on optimistic rewards.
      aperiodicity: ``tau``; ``tau < 1`` runs EVI on ``tau p + (1 - tau) e_s`` (the aperiodicity
        transformation, a fix for oscillation on periodic optimistic MDPs; gain and policy unchanged). Default 1 =
        plain UCRL2.
    """
    S, A = _check_mdp(p_hat, r_hat)
    chex.assert_shape(d_p, (S, A))
    dtype = jnp.result_type(r_hat.dtype, jnp.float32)
    r_opt = r_hat if d_r is None else jnp.minimum(r_max, r_hat + d_r)
    chex.assert_shape(r_opt, (S, A))
    eye = jnp.eye(S, dtype=dtype)[:, None, :]

    def optimistic_kernel(u):
        order = jnp.argsort(-u)
        p_sorted = _l1_ball_max_sorted(jnp.take(p_hat, order, axis=-1), d_p)
        return jnp.zeros_like(p_sorted).at[..., order].set(p_sorted)

    def cond(c):
        _, _, it, sp = c
        return (sp >= eps) & (it < max_iters)

    def body(c):
        u, _, it, _ = c
        p = aperiodicity * optimistic_kernel(u) + (1.0 - aperiodicity) * eye
        u_new = bellman_q(p, r_opt, u).max(-1)
        diff = u_new - u
        return u_new - u_new.min(), diff, it + 1, span(diff)

    # A warm start is a bias of the original MDP; the transformed iteration works with u = bias / tau.
    u_init = jnp.zeros((S,), dtype) if u0 is None else (jnp.asarray(u0, dtype) - jnp.min(u0)) / aperiodicity
    u, diff, it, sp = jax.lax.while_loop(
        cond, body, (u_init, jnp.zeros((S,), dtype), jnp.int32(0), jnp.asarray(jnp.inf, dtype))
    )
    # Greedy policy and kernel of the converged u (one more sort: the kernel must be optimistic for this u).
    # The kernel returned is the untransformed one (inside the L1 balls); the transform does not move the argmax.
    # The transformed MDP's bias is u = h / tau, so the original optimistic MDP has bias tau * u.
    P_opt = optimistic_kernel(u)
    bias = aperiodicity * u
    q = bellman_q(P_opt, r_opt, bias)
    return EVIResult(
        policy=jnp.argmax(q, -1).astype(jnp.int32),
        gain=0.5 * (diff.max() + diff.min()),
        bias=bias,
        P=P_opt,
        R=r_opt,
        num_iters=it,
        converged=sp < eps,
    )


__all__ = [
    "AverageRewardSolution",
    "EVIResult",
    "average_reward_policy_evaluation",
    "bellman_q",
    "discounted_value_iteration",
    "empirical_kernel",
    "extended_value_iteration",
    "finite_horizon_policy_evaluation",
    "finite_horizon_value_iteration",
    "l1_ball_max",
    "policy_evaluation",
    "relative_value_iteration",
    "soft_value_iteration",
    "span",
    "ucrl2_radii",
]
