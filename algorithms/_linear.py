"""The linear-MDP family core: least-squares value iteration on known features, as sufficient statistics.

Shared by ``lsvi_ucb``, ``optimistic_ac_linear`` and ``demo_regularized_linear`` (equations in
``algorithms/lsvi_ucb.py`` and docs/algorithms/lsvi_ucb.md). Because the envs' state spaces are finite, the data
enter only through ``Lambda_h = reg I + sum phi phi^T``, ``u_h = sum phi r`` and ``M_h = sum phi e_{s'}^T``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct

from algorithms._tabular import TabularModel, tabular_model
from hybrid_rl.problem import Problem

FEATURES = ("env", "onehot", "lowrank")


@struct.dataclass
class LinearStats:
    gram: jax.Array  # (H, d, d) sum phi phi^T (without the ridge term)
    phi_r: jax.Array  # (H, d) sum phi r
    phi_next: jax.Array  # (H, d, S) sum phi e_{s'}^T


def init_stats(H: int, d: int, S: int) -> LinearStats:
    return LinearStats(jnp.zeros((H, d, d)), jnp.zeros((H, d)), jnp.zeros((H, d, S)))


def add_to_stats(stats: LinearStats, phi: jax.Array, s, a, r, s_next, weight=1.0) -> LinearStats:
    """Adds one episode ``(s, a, r, s_next)`` (each ``(H,)``) with features ``phi[S, A, d]``."""
    f = phi[s, a] * weight  # (H, d)
    S = phi.shape[0]
    return LinearStats(
        gram=stats.gram + jnp.einsum("hi,hj->hij", f, phi[s, a]),
        phi_r=stats.phi_r + f * r[:, None],
        phi_next=stats.phi_next + jnp.einsum("hi,hs->his", f, jax.nn.one_hot(s_next, S)),
    )


def lsvi(stats: LinearStats, phi: jax.Array, beta, reg, clip: str = "step", lam=None, log_ref=None):
    """The backward pass of the module doc. ``beta = 0``: ridge fitted Q-iteration (non-optimistic).

    ``lam`` given: the soft backup of docs/algorithms/demo_regularized.md (linear variant) toward
    ``exp(log_ref[H, S, A])``,
    ``V_h(s) = lam log sum_a pi_ref_h(a|s) exp(Q_h(s,a) / lam)`` (log space), instead of ``max_a Q_h``.
    Returns ``(Q[H,S,A], V[H+1,S])``.
    """
    H, d, S = stats.phi_next.shape
    A = phi.shape[1]
    chex.assert_shape(phi, (S, A, d))
    soft = lam is not None
    if soft:
        chex.assert_shape(log_ref, (H, S, A))

    def step(V_next, xs):
        h, gram, phi_r, phi_next, lr_h = xs
        lam_mat = gram + reg * jnp.eye(d)
        chol = jax.scipy.linalg.cho_factor(lam_mat, lower=True)
        w = jax.scipy.linalg.cho_solve(chol, phi_r + phi_next @ V_next)
        lam_inv = jax.scipy.linalg.cho_solve(chol, jnp.eye(d))
        width = jnp.sqrt(jnp.maximum(jnp.einsum("sai,ij,saj->sa", phi, lam_inv, phi), 0.0))
        Q = phi @ w + beta * width
        cap = (H - h).astype(jnp.float32) if clip == "step" else jnp.float32(H)
        Q = jnp.minimum(Q, cap)
        V = lam * jax.scipy.special.logsumexp(lr_h + Q / lam, -1) if soft else Q.max(-1)
        return V, (Q, V)

    xs = (jnp.arange(H), stats.gram, stats.phi_r, stats.phi_next, log_ref if soft else jnp.zeros((H, S, A)))
    _, (Q, V) = jax.lax.scan(step, jnp.zeros((S,)), xs, reverse=True)
    return Q, jnp.concatenate([V, jnp.zeros((1, S))])


def linear_setup(problem: Problem, features: str, name: str) -> tuple[TabularModel, jax.Array]:
    """``(exact model, phi[S, A, d])`` of a linear env."""
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    model = tabular_model(problem, name)
    env, params = problem.env, problem.env_params
    if features == "env":
        if not hasattr(env, "features"):
            raise ValueError(f"{name}: env {problem.env_name!r} has no features(params)")
        phi = env.features(params)
    else:
        if not hasattr(env, "linear_structure"):
            raise ValueError(f"{name}: features={features!r} needs an env with linear_structure (comblock_tabular)")
        phi = env.linear_structure(params, features)[0]
    phi = jnp.asarray(phi, jnp.float32)
    chex.assert_shape(phi, (model.S, model.A, None))
    return model, phi


def confidence_radius(hp, d: int, H: int, K: int):
    """``beta = c d H sqrt(log(2 d T / p))`` with ``T = K H``."""
    return hp["beta_scale"] * d * H * jnp.sqrt(jnp.log(2.0 * d * K * H / hp["p"]))
