"""Pieces shared by the on-policy algorithms (PPO, NPG/TRPO, HNPG): advantage estimation, the
conjugate-gradient solver, Fisher-vector products and the TRPO step with its line search.

GAE over a time axis (axis 0), with ``next_value`` the value of the *true* next observation of each
step (so a time-limit end bootstraps and only a true terminal stops the return)::

    delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t)
    A_t     = delta_t + gamma lambda (1 - done_t) A_{t+1},      done_t = terminated_t or truncated_t

TRPO step for a surrogate L(theta) and a mean KL(pi_old || pi_theta) (Schulman et al., 2015)::

    g = grad L(theta_old),   F v = grad_theta (grad KL . v) + damping v   (Hessian-vector product)
    x ~= F^-1 g  (conjugate gradient, ``cg_iters`` iterations from 0)
    step = sqrt(2 max_kl / x.F x) x,   expected improvement at fraction f: f g.step
    accept the largest f in {0.5^k, k = 0..K-1} with  actual / expected > accept_ratio  and  actual > 0
    (and, by default, KL <= max_kl); if none, no step.
"""

from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Generalised advantage estimates and returns (A + V) over axis 0 (time); any trailing batch axes."""
    chex.assert_equal_shape([rewards, values, next_values, terminated, truncated])
    not_term = 1.0 - terminated.astype(jnp.float32)
    not_done = 1.0 - (terminated | truncated).astype(jnp.float32)
    deltas = rewards + gamma * not_term * next_values - values

    def back(carry, xs):
        delta, nd = xs
        adv = delta + gamma * lam * nd * carry
        return adv, adv

    _, adv = jax.lax.scan(back, jnp.zeros_like(rewards[0]), (deltas, not_done), reverse=True)
    return adv, adv + values


def conjugate_gradient(matvec: Callable, b: jax.Array, iters: int = 10, residual_tol: float = 1e-10) -> jax.Array:
    """Approximately solves ``matvec(x) = b`` (symmetric positive definite) with ``iters`` CG steps from 0.

    A fixed number of iterations (a ``fori_loop``) so it vmaps; once the residual is below the tolerance
    further iterations leave x unchanged."""

    def body(_, carry):
        x, r, p, rr = carry
        ap = matvec(p)
        live = rr > residual_tol
        alpha = jnp.where(live, rr / jnp.maximum(p @ ap, 1e-30), 0.0)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        beta = jnp.where(live, rr_new / jnp.maximum(rr, 1e-30), 0.0)
        p = jnp.where(live, r + beta * p, p)
        return x, r, p, jnp.where(live, rr_new, rr)

    x0 = jnp.zeros_like(b)
    x, *_ = jax.lax.fori_loop(0, iters, body, (x0, b, b, b @ b))
    return x


def fisher_vector_product(kl_fn: Callable, flat_params: jax.Array, damping: float) -> Callable:
    """v -> (Hessian of ``kl_fn`` at ``flat_params``) v + damping v, by forward-over-reverse autodiff."""
    grad_kl = jax.grad(kl_fn)

    def fvp(v):
        return jax.jvp(grad_kl, (flat_params,), (v,))[1] + damping * v

    return fvp


def trpo_step(
    surrogate: Callable,
    kl: Callable,
    params,
    max_kl: float = 0.01,
    damping: float = 0.1,
    cg_iters: int = 10,
    backtracks: int = 10,
    accept_ratio: float = 0.1,
    check_kl: bool = True,
):
    """One natural-gradient / TRPO step on ``params`` (any pytree).

    ``surrogate(params) -> scalar`` to maximise (equal to its value at the old params plus the change),
    ``kl(params) -> scalar`` the mean KL(pi_old || pi_params) (0 at ``params``). Returns the new params and
    a dict: the accepted fraction (0 if rejected), actual and expected improvement, the KL of the
    accepted step and the CG solution norm. Vmaps over independent problems (TRPO per level)."""
    flat, unravel = ravel_pytree(params)
    surr_flat = lambda f: surrogate(unravel(f))  # noqa: E731
    kl_flat = lambda f: kl(unravel(f))  # noqa: E731
    old_value, g = jax.value_and_grad(surr_flat)(flat)
    fvp = fisher_vector_product(kl_flat, flat, damping)
    x = conjugate_gradient(fvp, g, cg_iters)
    shs = 0.5 * x @ fvp(x)
    step = x * jnp.sqrt(max_kl / jnp.maximum(shs, 1e-12))  # so that 0.5 step.F step = max_kl
    expected = g @ step
    fractions = 0.5 ** jnp.arange(backtracks, dtype=jnp.float32)

    def candidate(frac):
        new = flat + frac * step
        actual = surr_flat(new) - old_value
        ok = (actual / jnp.maximum(frac * expected, 1e-12) > accept_ratio) & (actual > 0)
        kl_new = kl_flat(new)
        if check_kl:
            ok = ok & (kl_new <= max_kl)
        return ok, actual, kl_new

    ok, actual, kls = jax.vmap(candidate)(fractions)
    ok = ok & jnp.isfinite(actual)
    first = jnp.argmax(ok)
    accepted = ok.any()
    frac = jnp.where(accepted, fractions[first], 0.0)
    new_flat = flat + frac * step
    info = {
        "step_fraction": frac,
        "improvement": jnp.where(accepted, actual[first], 0.0),
        "expected_improvement": expected,
        "kl": jnp.where(accepted, kls[first], 0.0),
        "cg_norm": jnp.linalg.norm(x),
    }
    return unravel(new_flat), info
