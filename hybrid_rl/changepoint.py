"""Online change-point detection for categorical streams: BOCPD and restarted BOCPD (R-BOCPD).

Both detectors are pairs of pure functions over a ``flax.struct`` state with fixed shapes, so they jit, scan over
a stream and vmap over independent streams (seeds, or the ``(S, A)`` grid of detectors of R-BOCPD-UCRL2):

    state = bocpd_init(params);   state, info = bocpd_update(params, state, x)
    state = rbocpd_init(params);  state, info = rbocpd_update(params, state, x)

Observations ``x`` are int scalars in ``{0..O-1}``. Parameters are ``flax.struct`` dataclasses whose shape-fixing
fields are static (``pytree_node=False``) and whose statistical knobs (hazard, prior, ``delta``) are array leaves,
so a sweep over the knobs vmaps without recompiling.

**BOCPD** (Adams & MacKay 2007) with a Dirichlet-multinomial predictive. Run length ``r_t`` = number
of samples since the last change; ``n^(r)`` = counts of the last ``r`` samples; hazard ``H(r)``::

    pi^(r)_t(o)  = (n^(r)_o + alpha_o) / (n^(r) + sum_o alpha_o)
    m_t(r+1)     = m_{t-1}(r) + log pi^(r)_t(x_t) + log(1 - H(r+1))                # growth
    m_t(0)       = logsumexp_r [ m_{t-1}(r) + log pi^(r)_t(x_t) + log H(r+1) ]      # change point
    P(r_t = r | x_{1:t}) = exp(m_t(r) - logsumexp_r' m_t(r'))

all in log space. Jittable truncation: run lengths are capped at ``L = max_run_length`` and the last bin means
"``r >= L``": the growth messages out of ``r = L-1`` and ``r = L`` are merged into it (log-sum-exp, so no mass is
lost and ``P(r_t = 0) = h`` still holds), and its counts are the posterior-weighted average of the two runs'
counts (fractional pseudo-counts; a moment-matching collapse). Exact while ``t < L``; in a long stationary stretch
the top bin carries the whole run's counts, as the untruncated recursion would. [R] Dropping the overflowing
run instead (fixed-memory BOCPD) would remove the dominant hypothesis of a long stationary stream every step, so
we merge. Note: with a constant
hazard ``P(r_t = 0 | x_{1:t}) = h`` identically, so detect with a drop of the MAP run length (``info``), not with
``P(r_t = 0)``.

**R-BOCPD** (Alami, Maillard, Féraud, ICML 2020; docs/algorithms/rbocpd_ucrl2.md) [R: reconstructed]. Since the last
restart the detector has seen ``n`` samples with counts ``cnt``; candidate change points split them after ``m``
samples. With the Laplace (Dirichlet(1)) log-marginal
``ell(c) = log Gamma(O) + sum_o log Gamma(c_o + 1) - log Gamma(sum_o c_o + O)``::

    Z_m = ell(cnt_{1:m}) + ell(cnt_{m+1:n}) - ell(cnt_{1:n})                # Bayesian GLR "one change after m"
    restart iff  max_m (Z_m - thr_m) > 0
    thr_m = log(1/delta) + log(m (m+1)) + log C(n + O - 1, O - 1)             # "delta" rule (P(false alarm) <= delta)
    thr_m = log(T)                                                          # "code" rule (authors' code, eta = 1/T)

Each ``Z_m`` is accumulated one sample at a time (the forecasters' sequential predictives, see
:func:`rbocpd_update`); :func:`rbocpd_glr` is the closed form. On a restart every statistic is forgotten
(``n <- 0``; the sample that triggered it is not kept). Candidates are the split points ``m = g, 2g, 3g, ...``
(stride ``g``) whose prefix counts sit in a ring buffer of ``J`` slots; once more than ``J`` grid points exist
the oldest candidates are overwritten (flag ``overflowed``), which keeps memory fixed while keeping the recent
split points, the ones a new change needs. The no-change forecaster (the one started at the restart) is never
dropped: every ``Z_m`` is measured against it, using the running counts. [R] The ring
(rather than thinning the grid) is our choice: a change after a long stationary stretch is detected as fast as
one shortly after a restart. For ``S*A`` detectors in one MDP, pass ``delta / (S*A)`` (and, if wanted,
``delta / (k+1)^2`` after ``k`` restarts): ``delta`` is a leaf of the params, so callers can change it per step.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct
from jax.scipy.special import gammaln, logsumexp

# --------------------------------------------------------------------------------------------------------------
# Dirichlet-multinomial marginal likelihood
# --------------------------------------------------------------------------------------------------------------


def dirichlet_log_marginal(counts: jax.Array, alpha: float | jax.Array = 1.0) -> jax.Array:
    """Log-probability of a *sequence* with the given category counts under a Dirichlet(alpha) mixture.

    ``log Gamma(sum alpha) - sum log Gamma(alpha_o) + sum log Gamma(c_o + alpha_o) - log Gamma(n + sum alpha)``
    = ``sum_i log pi(x_i | x_{<i})`` for the sequential Dirichlet-multinomial predictive (order-free). With
    ``alpha = 1`` this is the Laplace marginal ``ell`` of the module doc. Reduces over the last axis.
    """
    c = counts.astype(jnp.float32) if jnp.issubdtype(counts.dtype, jnp.integer) else counts
    a = jnp.broadcast_to(jnp.asarray(alpha, c.dtype), c.shape[-1:])
    return (
        gammaln(a.sum())
        - gammaln(a).sum()
        + gammaln(c + a).sum(-1)
        - gammaln(c.sum(-1) + a.sum())
    )


def log_binom(n: jax.Array, k: jax.Array) -> jax.Array:
    """``log C(n, k)`` via log-Gamma (float)."""
    n = jnp.asarray(n, jnp.float32)
    k = jnp.asarray(k, jnp.float32)
    return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)


# --------------------------------------------------------------------------------------------------------------
# BOCPD (Adams & MacKay) with a Dirichlet-multinomial predictive
# --------------------------------------------------------------------------------------------------------------


@struct.dataclass
class BOCPDParams:
    """BOCPD settings. ``hazard``: constant ``h`` or an ``(L+1,)`` array with ``hazard[r] = H(r+1)``, the
    probability that a run of length ``r`` ends before the next sample. ``alpha``: Dirichlet prior (scalar or
    ``(O,)``; 1 = Laplace)."""

    hazard: Any = 1.0 / 100.0
    alpha: Any = 1.0
    num_categories: int = struct.field(pytree_node=False, default=2)
    max_run_length: int = struct.field(pytree_node=False, default=500)


@struct.dataclass
class BOCPDState:
    log_post: jax.Array  # (L+1,) log P(r_t = r | x_{1:t}), r = 0..L (the last bin is r >= L)
    counts: jax.Array  # (L+1, O) float32, n^(r): counts of the last r samples (pseudo-counts in the last bin)
    log_evidence: jax.Array  # () sum_t log p(x_t | x_{<t}) under the (truncated) model
    map_run_length: jax.Array  # () int32, argmax_r of log_post
    t: jax.Array  # () int32, samples seen


def bocpd_init(params: BOCPDParams) -> BOCPDState:
    """Before any sample: ``r_0 = 0`` with probability 1 (``m_0(0) = 0``)."""
    L, O = params.max_run_length, params.num_categories
    log_post = jnp.full((L + 1,), -jnp.inf, jnp.float32).at[0].set(0.0)
    return BOCPDState(
        log_post=log_post,
        counts=jnp.zeros((L + 1, O), jnp.float32),
        log_evidence=jnp.zeros((), jnp.float32),
        map_run_length=jnp.zeros((), jnp.int32),
        t=jnp.zeros((), jnp.int32),
    )


def bocpd_update(params: BOCPDParams, state: BOCPDState, x: jax.Array) -> tuple[BOCPDState, dict]:
    """One step of the run-length recursion (module docstring) for the sample ``x``.

    ``info``: ``map_run_length``; ``map_drop`` (the MAP run length fell: the detection rule of the module doc);
    ``log_pred`` = ``log p(x_t | x_{<t})``. Other statistics (e.g. the mass of short runs) come from
    ``state.log_post``, the whole posterior.
    """
    L, O = params.max_run_length, params.num_categories
    if L < 1:
        raise ValueError("max_run_length must be >= 1")
    chex.assert_shape(state.log_post, (L + 1,))
    chex.assert_shape(state.counts, (L + 1, O))
    x = jnp.asarray(x, jnp.int32)
    alpha = jnp.broadcast_to(jnp.asarray(params.alpha, jnp.float32), (O,))
    hazard = jnp.broadcast_to(jnp.asarray(params.hazard, jnp.float32), (L + 1,))

    cnt = state.counts
    log_pred = jnp.log(cnt[:, x] + alpha[x]) - jnp.log(cnt.sum(-1) + alpha.sum())  # (L+1,)
    joint = state.log_post + log_pred  # log P(r_{t-1} = r, x_t | x_{<t})
    growth = joint + jnp.log1p(-hazard)  # growth[r] -> run length r + 1
    change = logsumexp(joint + jnp.log(hazard))
    # Truncation: runs L-1 -> L and L -> L+1 both land in the last bin "r >= L" (no mass lost).
    top_pair = growth[L - 1:]
    top = logsumexp(top_pair)
    unnorm = jnp.concatenate([change[None], growth[: L - 1], top[None]])
    log_post = unnorm - logsumexp(unnorm)
    step_evidence = logsumexp(joint)  # log p(x_t | x_{<t}); log_post was normalised

    grown = cnt + jax.nn.one_hot(x, O, dtype=cnt.dtype)[None]
    w = jnp.where(jnp.isfinite(top), jnp.exp(top_pair - top), 0.5)  # weights of the two merged runs
    top_counts = w[0] * grown[L - 1] + w[1] * grown[L]
    counts = jnp.concatenate([jnp.zeros((1, O), cnt.dtype), grown[: L - 1], top_counts[None]], axis=0)
    map_rl = jnp.argmax(log_post).astype(jnp.int32)
    new_state = BOCPDState(
        log_post=log_post,
        counts=counts,
        log_evidence=state.log_evidence + step_evidence,
        map_run_length=map_rl,
        t=state.t + 1,
    )
    info = {
        "map_run_length": map_rl,
        "map_drop": map_rl < state.map_run_length,
        "log_pred": step_evidence,
    }
    return new_state, info


# --------------------------------------------------------------------------------------------------------------
# R-BOCPD (restarted BOCPD, likelihood-ratio form with a ring buffer of candidate split points)
# --------------------------------------------------------------------------------------------------------------


THRESHOLD_RULES = ("delta", "code")


@struct.dataclass
class RBOCPDParams:
    """R-BOCPD settings.

    ``delta``: false-alarm level of the "delta" rule. ``horizon``: ``T`` of the "code" rule ``log T``.
    ``stride`` (g): candidate split points every ``g`` samples. ``num_candidates`` (J): ring-buffer slots, i.e.
    the most recent ``J`` split points are tested (size it ``>= T / g`` for an exact test over a horizon ``T``).
    ``threshold``: "delta" (default, the false-alarm-controlled rule) or "code". [R]
    """

    delta: Any = 0.05
    horizon: Any = 1e5
    num_categories: int = struct.field(pytree_node=False, default=2)
    stride: int = struct.field(pytree_node=False, default=5)
    num_candidates: int = struct.field(pytree_node=False, default=256)
    threshold: str = struct.field(pytree_node=False, default="delta")


@struct.dataclass
class RBOCPDState:
    n: jax.Array  # () int32, samples since the last restart
    counts: jax.Array  # (O,) int32, counts since the last restart
    grid_counts: jax.Array  # (J, O) int32, prefix counts at the stored split points
    grid_m: jax.Array  # (J,) int32, split size m of each slot (0 = empty slot)
    z: jax.Array  # (J,) float32, Z_m of each slot, accumulated one sample at a time
    num_restarts: jax.Array  # () int32
    overflowed: jax.Array  # () bool, some candidate split point has been overwritten since the last restart


def rbocpd_init(params: RBOCPDParams, batch_shape: tuple[int, ...] = ()) -> RBOCPDState:
    """A fresh detector (or a ``batch_shape`` grid of them, e.g. ``(S, A)``)."""
    if params.threshold not in THRESHOLD_RULES:
        raise ValueError(f"threshold must be one of {THRESHOLD_RULES}, got {params.threshold!r}")
    if params.stride < 1 or params.num_candidates < 1:
        raise ValueError("stride and num_candidates must be >= 1")
    J, O = params.num_candidates, params.num_categories
    b = tuple(batch_shape)
    return RBOCPDState(
        n=jnp.zeros(b, jnp.int32),
        counts=jnp.zeros(b + (O,), jnp.int32),
        grid_counts=jnp.zeros(b + (J, O), jnp.int32),
        grid_m=jnp.zeros(b + (J,), jnp.int32),
        z=jnp.zeros(b + (J,), jnp.float32),
        num_restarts=jnp.zeros(b, jnp.int32),
        overflowed=jnp.zeros(b, jnp.bool_),
    )


def rbocpd_glr(counts: jax.Array, prefix_counts: jax.Array) -> jax.Array:
    """Closed form ``Z = ell(prefix) + ell(counts - prefix) - ell(counts)`` (Laplace marginals, log-Gamma).

    :func:`rbocpd_update` computes the same number incrementally; this form is the reference used in tests and
    for offline analysis. ``prefix_counts`` may carry leading axes (one row per split point).
    """
    ell = partial(dirichlet_log_marginal, alpha=1.0)
    return ell(prefix_counts) + ell(counts - prefix_counts) - ell(counts)


def rbocpd_thresholds(params: RBOCPDParams, n: jax.Array, m: jax.Array) -> jax.Array:
    """``thr_m`` for split sizes ``m`` after ``n`` samples (module docstring; "delta" or "code" rule)."""
    O = params.num_categories
    m = jnp.asarray(m, jnp.float32)
    if params.threshold == "delta":
        return (
            -jnp.log(jnp.asarray(params.delta, jnp.float32))
            + jnp.log(m * (m + 1.0))
            + log_binom(n + O - 1, O - 1)
        )
    return jnp.broadcast_to(jnp.log(jnp.asarray(params.horizon, jnp.float32)), m.shape)


def rbocpd_update(params: RBOCPDParams, state: RBOCPDState, x: jax.Array) -> tuple[RBOCPDState, dict]:
    """Feed one sample; restart (forget everything) if ``max_m (Z_m - thr_m) > 0``.

    ``Z_m`` is kept per slot and updated with the new sample's sequential predictives (Laplace), which is
    the closed form of :func:`rbocpd_glr` written as a running sum:

    ``Z_m <- Z_m + log((s_{m,x} + 1) / (n - m + O)) - log((cnt_x + 1) / (n + O))``

    (``s_m = cnt - G_m``: suffix counts, both before adding ``x``; ``Z_m = 0`` when the split point is created,
    because then the prefix is everything). Why incremental: it costs ``O(J)`` logs per sample instead of
    ``O(J * O)`` log-Gammas, and it accumulates the *difference* (tens of nats) rather than subtracting
    log-marginals of size ``~n log O``, so float32 keeps it accurate for long streams.

    ``info``: ``restart`` (bool), ``score`` = ``max_m (Z_m - thr_m)`` before the restart (``-inf`` without
    candidates), ``max_z``, ``split`` = the best candidate ``m`` (samples before the estimated change, counted
    from the last restart), ``n`` = samples since the restart including this one.
    """
    J, O, g = params.num_candidates, params.num_categories, params.stride
    chex.assert_shape(state.counts, (O,))
    chex.assert_shape(state.grid_counts, (J, O))
    x = jnp.asarray(x, jnp.int32)

    # Sequential predictive of x under every suffix forecaster and under the restart forecaster.
    cnt_x = state.counts[x].astype(jnp.float32)
    n_old = state.n.astype(jnp.float32)
    suffix_x = cnt_x - state.grid_counts[:, x].astype(jnp.float32)
    suffix_n = n_old - state.grid_m.astype(jnp.float32)
    dz = jnp.log((suffix_x + 1.0) / (suffix_n + O)) - jnp.log((cnt_x + 1.0) / (n_old + O))
    z = jnp.where(state.grid_m > 0, state.z + dz, 0.0)

    n = state.n + 1
    counts = state.counts + jax.nn.one_hot(x, O, dtype=jnp.int32)
    # Record a split point every g samples (Z = 0: prefix = everything); a candidate from the next sample on.
    on_grid = (n % g) == 0
    slot = ((n // g) - 1) % J
    grid_counts = jnp.where(on_grid, state.grid_counts.at[slot].set(counts), state.grid_counts)
    grid_m = jnp.where(on_grid, state.grid_m.at[slot].set(n), state.grid_m)
    z = jnp.where(on_grid, z.at[slot].set(0.0), z)
    overflowed = state.overflowed | (on_grid & (n // g > J))

    valid = (grid_m > 0) & (grid_m < n)
    excess = jnp.where(valid, z - rbocpd_thresholds(params, n, grid_m), -jnp.inf)
    best = jnp.argmax(excess)
    score = excess[best]
    restart = score > 0.0

    kept = RBOCPDState(
        n=n,
        counts=counts,
        grid_counts=grid_counts,
        grid_m=grid_m,
        z=z,
        num_restarts=state.num_restarts,
        overflowed=overflowed,
    )
    # Select rather than lax.cond: under vmap a cond would run both branches anyway.
    new_state = jax.tree.map(lambda a, b: jnp.where(restart, a, b), rbocpd_init(params), kept)
    new_state = new_state.replace(num_restarts=state.num_restarts + restart.astype(jnp.int32))
    info = {
        "restart": restart,
        "score": score,
        "max_z": jnp.max(jnp.where(valid, z, -jnp.inf)),
        "split": jnp.where(jnp.isfinite(score), grid_m[best], 0),
        "n": n,
    }
    return new_state, info


def rbocpd_update_at(
    params: RBOCPDParams, states: RBOCPDState, index: tuple, x: jax.Array
) -> tuple[RBOCPDState, dict]:
    """Update only the detector at ``index`` of a batched state (e.g. the ``(s, a)`` just visited).

    Gathers one detector, updates it, scatters it back: per step cost is one detector, not ``S*A``.
    """
    one = jax.tree.map(lambda a: a[index], states)
    one, info = rbocpd_update(params, one, x)
    states = jax.tree.map(lambda a, b: a.at[index].set(b), states, one)
    return states, info


def bocpd_run(params: BOCPDParams, xs: jax.Array) -> tuple[BOCPDState, dict]:
    """Scan :func:`bocpd_update` over a stream ``xs`` of shape ``(T,)``; returns the final state and stacked info."""
    def body(s, x):
        return bocpd_update(params, s, x)

    return jax.lax.scan(body, bocpd_init(params), xs)


def rbocpd_run(params: RBOCPDParams, xs: jax.Array) -> tuple[RBOCPDState, dict]:
    """Scan :func:`rbocpd_update` over a stream ``xs`` of shape ``(T,)``; returns the final state and stacked info."""
    def body(s, x):
        return rbocpd_update(params, s, x)

    return jax.lax.scan(body, rbocpd_init(params), xs)


__all__ = [
    "BOCPDParams",
    "BOCPDState",
    "RBOCPDParams",
    "RBOCPDState",
    "bocpd_init",
    "bocpd_run",
    "bocpd_update",
    "dirichlet_log_marginal",
    "log_binom",
    "rbocpd_glr",
    "rbocpd_init",
    "rbocpd_run",
    "rbocpd_thresholds",
    "rbocpd_update",
    "rbocpd_update_at",
]
