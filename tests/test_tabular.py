"""Tests for hybrid_rl.tabular: closed forms, independent numpy solvers, an LP for the L1-ball maximisation."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from hybrid_rl import tabular as T

# Shared jitted entry points (compiled once per shape for the whole file).
fh_vi = jax.jit(T.finite_horizon_value_iteration, static_argnames="H")
fh_pe = jax.jit(T.finite_horizon_policy_evaluation, static_argnames="H")
soft_vi = jax.jit(T.soft_value_iteration, static_argnames="H")
disc_vi = jax.jit(T.discounted_value_iteration)
pol_eval = jax.jit(T.policy_evaluation)
rvi = jax.jit(T.relative_value_iteration)
evi = jax.jit(T.extended_value_iteration)


def random_mdp(rng, S, A, H=None, dirichlet=1.0):
    shape = (S, A) if H is None else (H, S, A)
    P = rng.dirichlet(np.full(S, dirichlet), size=shape)
    R = rng.uniform(size=shape)
    return P, R


def riverswim(S):
    from envs.finite_mdp import riverswim_arrays

    return riverswim_arrays(S)


# ------------------------------------------------------------------------------------------------ numpy references


def np_backward_induction(P, R, H):
    S, A = R.shape[-2:]
    V = np.zeros((H + 1, S))
    Q = np.zeros((H, S, A))
    for h in reversed(range(H)):
        Ph = P[h] if P.ndim == 4 else P
        Rh = R[h] if R.ndim == 3 else R
        Q[h] = Rh + Ph @ V[h + 1]
        V[h] = Q[h].max(-1)
    return Q, V


def np_policy_iteration(P, R, gamma):
    S, A = R.shape
    pi = np.zeros(S, int)
    for _ in range(200):
        P_pi = P[np.arange(S), pi]
        V = np.linalg.solve(np.eye(S) - gamma * P_pi, R[np.arange(S), pi])
        Q = R + gamma * P @ V
        new = Q.argmax(-1)
        if np.all(Q[np.arange(S), new] <= Q[np.arange(S), pi] + 1e-12):
            break
        pi = new
    return Q, V, pi


def np_average_policy_iteration(P, R):
    """Unichain policy iteration (Puterman 8.6): solve g + h = r_pi + P_pi h, h[0] = 0; improve."""
    S, A = R.shape
    pi = np.zeros(S, int)
    for _ in range(200):
        P_pi = P[np.arange(S), pi]
        M = np.zeros((S + 1, S + 1))
        M[:S, 0] = 1.0
        M[:S, 1:] = np.eye(S) - P_pi
        M[S, 1] = 1.0
        x = np.linalg.solve(M, np.concatenate([R[np.arange(S), pi], [0.0]]))
        g, h = x[0], x[1:]
        Q = R + P @ h
        new = np.where(Q.max(-1) > Q[np.arange(S), pi] + 1e-10, Q.argmax(-1), pi)
        if np.all(new == pi):
            return g, h, pi
        pi = new
    raise RuntimeError("no convergence")


# ------------------------------------------------------------------------------------------------ basics


def test_span():
    assert float(T.span(jnp.array([3.0, -1.0, 2.0]))) == 4.0
    np.testing.assert_allclose(T.span(jnp.array([[1.0, 2.0], [5.0, 5.0]])), [1.0, 0.0])


def test_bandit_closed_forms():
    # One state, three arms: every planner must pick arm 1 and value it at its mean reward.
    P = jnp.ones((1, 3, 1))
    R = jnp.array([[0.1, 0.5, 0.3]])
    Q, V = fh_vi(P, R, H=7)
    np.testing.assert_allclose(V[:, 0], 0.5 * np.arange(7, -1, -1), rtol=1e-6)
    assert int(Q[0, 0].argmax()) == 1
    Qd, Vd = disc_vi(P, R, 0.9)
    np.testing.assert_allclose(Vd, [5.0], rtol=1e-4)
    np.testing.assert_allclose(Qd[0], np.array([0.1, 0.5, 0.3]) + 0.9 * 5.0, rtol=1e-4)
    sol = rvi(P, R)
    np.testing.assert_allclose(sol.gain, 0.5, atol=1e-6)
    assert int(sol.policy[0]) == 1


def test_two_state_chain_discounted_closed_form():
    # Single action, two states: P = [[1-p, p], [q, 1-q]], rewards r. By hand (Cramer's rule on I - gamma P):
    # det = (1 - g(1-p))(1 - g(1-q)) - g^2 p q;  V0 = [(1 - g(1-q)) r0 + g p r1] / det;  V1 symmetric.
    p, q, g = 0.3, 0.2, 0.9
    r0, r1 = 1.0, 0.0
    det = (1 - g * (1 - p)) * (1 - g * (1 - q)) - g * g * p * q
    V0 = ((1 - g * (1 - q)) * r0 + g * p * r1) / det
    V1 = (g * q * r0 + (1 - g * (1 - p)) * r1) / det
    P = jnp.array([[[1 - p, p]], [[q, 1 - q]]])
    R = jnp.array([[r0], [r1]])
    _, V = pol_eval(P, R, jnp.zeros(2, jnp.int32), g)
    np.testing.assert_allclose(V, [V0, V1], rtol=1e-5)
    _, Vvi = disc_vi(P, R, g)
    np.testing.assert_allclose(Vvi, [V0, V1], rtol=1e-4)
    # Average reward: stationary distribution (q, p)/(p+q), gain = (q r0 + p r1)/(p+q); bias difference
    # h0 - h1 = (r0 - r1)/(p+q) from g + h0 = r0 + (1-p) h0 + p h1.
    sol = rvi(P, R)
    np.testing.assert_allclose(sol.gain, (q * r0 + p * r1) / (p + q), atol=1e-5)
    np.testing.assert_allclose(sol.bias[0] - sol.bias[1], (r0 - r1) / (p + q), atol=1e-4)
    g_pe, h_pe = T.average_reward_policy_evaluation(P, R, jnp.zeros(2, jnp.int32))
    np.testing.assert_allclose(g_pe, (q * r0 + p * r1) / (p + q), atol=1e-5)


# ------------------------------------------------------------------------------------------------ random MDPs


def test_finite_horizon_matches_numpy_stationary_and_time_varying():
    rng = np.random.default_rng(0)
    P, R = random_mdp(rng, 5, 3)
    Q, V = fh_vi(jnp.asarray(P), jnp.asarray(R), H=6)
    Qn, Vn = np_backward_induction(P, R, 6)
    np.testing.assert_allclose(Q, Qn, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(V, Vn, rtol=1e-5, atol=1e-5)
    Pt, Rt = random_mdp(rng, 5, 3, H=6)
    Q, V = fh_vi(jnp.asarray(Pt), jnp.asarray(Rt), H=6)
    Qn, Vn = np_backward_induction(Pt, Rt, 6)
    np.testing.assert_allclose(V, Vn, rtol=1e-5, atol=1e-5)
    # Mixed: time-varying P, stationary R.
    Q, V = fh_vi(jnp.asarray(Pt), jnp.asarray(R), H=6)
    np.testing.assert_allclose(V, np_backward_induction(Pt, R, 6)[1], rtol=1e-5, atol=1e-5)
    # Evaluating the greedy policy returns the optimal values.
    greedy = jnp.asarray(np_backward_induction(Pt, Rt, 6)[0].argmax(-1), jnp.int32)
    _, Vpi = fh_pe(jnp.asarray(Pt), jnp.asarray(Rt), greedy, H=6)
    np.testing.assert_allclose(Vpi, Vn, rtol=1e-5, atol=1e-5)


def test_discounted_matches_numpy_policy_iteration():
    rng = np.random.default_rng(1)
    for _ in range(3):
        P, R = random_mdp(rng, 6, 3, dirichlet=0.5)
        Qn, Vn, pin = np_policy_iteration(P, R, 0.95)
        Q, V = disc_vi(jnp.asarray(P), jnp.asarray(R), 0.95)
        np.testing.assert_allclose(V, Vn, rtol=1e-4)
        np.testing.assert_array_equal(np.asarray(Q.argmax(-1)), pin)
        _, Vpe = pol_eval(jnp.asarray(P), jnp.asarray(R), jnp.asarray(pin, jnp.int32), 0.95)
        np.testing.assert_allclose(Vpe, Vn, rtol=1e-5)
        # Stochastic-policy evaluation equals the numpy linear solve.
        pi = rng.dirichlet(np.ones(3), size=6)
        P_pi = np.einsum("sa,sat->st", pi, P)
        V_ref = np.linalg.solve(np.eye(6) - 0.95 * P_pi, (pi * R).sum(-1))
        np.testing.assert_allclose(pol_eval(jnp.asarray(P), jnp.asarray(R), jnp.asarray(pi), 0.95)[1], V_ref,
                                   rtol=1e-4)
    # Fixed number of sweeps gives the same answer once converged.
    Qf, Vf = jax.jit(partial(T.discounted_value_iteration, num_iters=600))(jnp.asarray(P), jnp.asarray(R), 0.95)
    np.testing.assert_allclose(Vf, Vn, rtol=1e-4)


def test_average_reward_matches_numpy_policy_iteration():
    rng = np.random.default_rng(2)
    for _ in range(3):
        P, R = random_mdp(rng, 6, 3)
        g, h, pi = np_average_policy_iteration(P, R)
        sol = rvi(jnp.asarray(P), jnp.asarray(R))
        assert bool(sol.converged)
        np.testing.assert_allclose(sol.gain, g, atol=1e-5)
        np.testing.assert_allclose(sol.bias, h - h.min(), atol=1e-4)
        np.testing.assert_allclose(sol.bias_span, np.ptp(h), atol=1e-4)
        np.testing.assert_array_equal(np.asarray(sol.policy), pi)


@pytest.mark.parametrize("S,gain", [(3, 0.9172), (6, 0.9167)])
def test_riverswim_gain_and_policy(S, gain):
    P, R = riverswim(S)
    sol = rvi(jnp.asarray(P, jnp.float32), jnp.asarray(R, jnp.float32))
    np.testing.assert_allclose(sol.gain, gain, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(sol.policy), np.zeros(S))  # always swim right
    g, _, pi = np_average_policy_iteration(P, R)
    np.testing.assert_allclose(sol.gain, g, atol=1e-5)
    # A periodic MDP (deterministic 2-cycle) needs the aperiodicity transform; the gain is unchanged by it.
    Pc = jnp.array([[[0.0, 1.0]], [[1.0, 0.0]]])
    Rc = jnp.array([[1.0], [0.0]])
    sol = rvi(Pc, Rc)
    assert bool(sol.converged)
    np.testing.assert_allclose(sol.gain, 0.5, atol=1e-5)
    np.testing.assert_allclose(sol.bias, [0.5, 0.0], atol=1e-4)


# ------------------------------------------------------------------------------------------------ soft VI


def test_soft_value_iteration_limits_and_optimality():
    rng = np.random.default_rng(3)
    P, R = map(jnp.asarray, random_mdp(rng, 4, 3))
    H = 5
    pi_ref = jnp.asarray(rng.dirichlet(np.ones(3), size=4))
    _, V_hard = fh_vi(P, R, H=H)
    # lam -> 0: hard max (pi_ref has full support).
    _, V0, pi0 = soft_vi(P, R, H, 1e-4, pi_ref)
    np.testing.assert_allclose(V0, V_hard, atol=1e-3)
    # lam -> inf: expectation under pi_ref, policy -> pi_ref (lam = 1e3: the O(Var/lam) bias and float32
    # rounding, ~1e-7 * lam, are both ~1e-4 per step).
    _, V_ref = fh_pe(P, R, pi_ref, H=H)
    _, Vinf, piinf = soft_vi(P, R, H, 1e3, pi_ref)
    np.testing.assert_allclose(Vinf, V_ref, atol=3e-3)
    np.testing.assert_allclose(piinf[0], pi_ref, atol=1e-3)
    # Moderate lam: V equals the regularised value of the soft-greedy policy, and beats other policies.
    lam = 0.3
    _, V, pi = soft_vi(P, R, H, lam, pi_ref)
    np.testing.assert_allclose(pi.sum(-1), 1.0, atol=1e-5)
    _, V_self = fh_pe(P, R, pi, H=H, lam=lam, pi_ref=pi_ref)
    np.testing.assert_allclose(V, V_self, atol=1e-4)
    for other in (pi_ref, jnp.asarray(rng.dirichlet(np.ones(3), size=(H, 4))), jnp.zeros((H, 4), jnp.int32)):
        _, V_other = fh_pe(P, R, other, H=H, lam=lam, pi_ref=pi_ref)
        assert np.all(np.asarray(V_other[0]) <= np.asarray(V[0]) + 1e-5)
    # Actions outside the support of pi_ref get probability 0 and the max is over the support.
    masked = pi_ref.at[:, 0].set(0.0)
    masked = masked / masked.sum(-1, keepdims=True)
    _, Vm, pim = soft_vi(P, R, H, 1e-4, masked)
    assert float(jnp.max(pim[..., 0])) == 0.0
    _, V_sub = fh_vi(P, R - 1e3 * jax.nn.one_hot(0, 3)[None], H=H)
    np.testing.assert_allclose(Vm, V_sub, atol=1e-3)


# ------------------------------------------------------------------------------------------------ UCRL2 / EVI


def lp_l1_max(p_hat, d, u):
    """max <p,u> s.t. p >= 0, sum p = 1, sum |p - p_hat| <= d, as an LP in (p, t) with t >= |p - p_hat|."""
    S = len(u)
    c = np.concatenate([-u, np.zeros(S)])
    I = np.eye(S)
    A_ub = np.block([[I, -I], [-I, -I], [np.zeros((1, S)), np.ones((1, S))]])
    b_ub = np.concatenate([p_hat, -p_hat, [d]])
    A_eq = np.concatenate([np.ones(S), np.zeros(S)])[None]
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=[1.0], bounds=[(0, None)] * (2 * S), method="highs")
    assert res.success
    return -res.fun


def test_l1_ball_max_matches_linprog():
    rng = np.random.default_rng(4)
    f = jax.jit(T.l1_ball_max)
    for S in (2, 3, 5, 7):
        for _ in range(25):
            p_hat = rng.dirichlet(np.ones(S) * rng.choice([0.2, 1.0]))
            u = rng.normal(size=S) * 3
            if rng.uniform() < 0.3:
                u[rng.integers(S)] = u[rng.integers(S)]  # ties
            d = rng.choice([0.0, rng.uniform(0, 0.5), rng.uniform(0.5, 2.5)])
            p, val = f(jnp.asarray(p_hat, jnp.float32), jnp.asarray(d, jnp.float32), jnp.asarray(u, jnp.float32))
            p = np.asarray(p, np.float64)
            assert abs(p.sum() - 1) < 1e-5 and p.min() >= -1e-7
            assert np.abs(p - p_hat).sum() <= d + 1e-5
            np.testing.assert_allclose(float(val), lp_l1_max(p_hat, d, u), atol=1e-4)


def test_evi_without_uncertainty_is_relative_value_iteration():
    rng = np.random.default_rng(5)
    P, R = map(lambda x: jnp.asarray(x, jnp.float32), random_mdp(rng, 5, 3))
    zero = jnp.zeros((5, 3))
    res = evi(P, R, zero, zero, 1e-6)
    sol = rvi(P, R)
    assert bool(res.converged)
    np.testing.assert_allclose(res.gain, sol.gain, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(res.policy), np.asarray(sol.policy))
    np.testing.assert_allclose(res.P, P, atol=1e-6)
    # Warm start from the converged bias stops after one sweep.
    again = evi(P, R, zero, zero, 1e-4, u0=res.bias)
    assert int(again.num_iters) == 1


def test_evi_is_optimistic_when_true_model_is_in_the_ball():
    rng = np.random.default_rng(6)
    f = jax.jit(jax.vmap(T.extended_value_iteration, in_axes=(0, 0, 0, 0, None)))
    B, S, A, n = 8, 5, 2, 30
    Ps, Rs, Ph, Rh, Dp, Dr, gains = [], [], [], [], [], [], []
    for _ in range(B):
        P, R = random_mdp(rng, S, A, dirichlet=0.5)
        counts = np.stack([[rng.multinomial(n, P[s, a]) for a in range(A)] for s in range(S)])
        p_hat = counts / n
        r_hat = np.clip(R + rng.uniform(-0.1, 0.1, size=R.shape), 0, 1)
        Ps.append(P), Rs.append(R), Ph.append(p_hat), Rh.append(r_hat)
        Dp.append(np.abs(P - p_hat).sum(-1) + 1e-3)  # the true kernel is inside every ball
        Dr.append(np.abs(R - r_hat) + 1e-3)
        gains.append(np_average_policy_iteration(P, R)[0])
    res = f(*(jnp.asarray(np.stack(x), jnp.float32) for x in (Ph, Rh, Dp, Dr)), 1e-4)
    assert np.all(np.asarray(res.converged))
    assert np.all(np.asarray(res.gain) >= np.asarray(gains) - 1e-4)
    # The optimistic kernel is a distribution inside the ball and its rewards are capped by r_hat + d_r.
    Popt = np.asarray(res.P)
    np.testing.assert_allclose(Popt.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.abs(Popt - np.stack(Ph)).sum(-1) <= np.stack(Dp) + 1e-4)
    # The returned gain is the optimistic MDP's gain (re-solved by numpy policy iteration).
    for b in range(B):
        g_opt = np_average_policy_iteration(Popt[b].astype(np.float64), np.asarray(res.R[b], np.float64))[0]
        assert abs(g_opt - float(res.gain[b])) < 1e-3


def test_evi_riverswim_unvisited_is_maximally_optimistic_and_aperiodicity():
    # No data at all: radii cover the whole simplex, so the optimistic gain is r_max = 1.
    P, R = riverswim(3)
    counts = jnp.zeros((3, 2))
    d_r, d_p = T.ucrl2_radii(counts, 10.0, 0.05)
    assert float(d_p.min()) > 2.0
    p_hat = T.empirical_kernel(jnp.zeros((3, 2, 3)).at[0, 0, 1].set(4.0))
    np.testing.assert_allclose(p_hat[0, 0], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(p_hat[1, 1], [1 / 3] * 3)
    res = evi(p_hat, jnp.zeros((3, 2)), d_p, d_r, 0.01)
    np.testing.assert_allclose(res.gain, 1.0, atol=0.01)
    # True RiverSwim, no uncertainty, with and without the aperiodicity transform: same gain and policy.
    zero = jnp.zeros((3, 2))
    a = evi(jnp.asarray(P, jnp.float32), jnp.asarray(R, jnp.float32), zero, zero, 1e-6)
    b = evi(jnp.asarray(P, jnp.float32), jnp.asarray(R, jnp.float32), zero, zero, 1e-6, aperiodicity=0.7)
    np.testing.assert_allclose(a.gain, 0.9172, atol=1e-4)
    np.testing.assert_allclose(b.gain, a.gain, atol=1e-5)
    np.testing.assert_allclose(b.bias, a.bias, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(a.policy), np.asarray(b.policy))
    # Radii shrink like 1/sqrt(N) and follow the stated constants.
    d_r, d_p = T.ucrl2_radii(jnp.array([[4.0, 16.0]]), 100.0, 0.1)
    np.testing.assert_allclose(d_p, np.sqrt(14 * 1 * np.log(2 * 2 * 100 / 0.1) / np.array([[4.0, 16.0]])),
                               rtol=1e-5)
    np.testing.assert_allclose(d_r, np.sqrt(7 * np.log(2 * 1 * 2 * 100 / 0.1) / (2 * np.array([[4.0, 16.0]]))),
                               rtol=1e-5)


def test_vmap_over_mdps_and_traced_hyperparameters():
    rng = np.random.default_rng(7)
    Ps, Rs = zip(*(random_mdp(rng, 4, 2) for _ in range(6)))
    P, R = jnp.asarray(np.stack(Ps)), jnp.asarray(np.stack(Rs))
    Q, V = jax.jit(jax.vmap(partial(T.finite_horizon_value_iteration, H=4)))(P, R)
    assert Q.shape == (6, 4, 4, 2) and V.shape == (6, 5, 4)
    for b in range(6):
        np.testing.assert_allclose(V[b], np_backward_induction(Ps[b], Rs[b], 4)[1], rtol=1e-5, atol=1e-5)
    # gamma as a vmapped (traced) axis: one compile, values increase with gamma.
    _, Vg = jax.jit(jax.vmap(T.discounted_value_iteration, in_axes=(None, None, 0)))(
        P[0], R[0], jnp.array([0.5, 0.8, 0.9]))
    assert np.all(np.diff(np.asarray(Vg), axis=0) > 0)
    sols = jax.jit(jax.vmap(T.relative_value_iteration))(P, R)
    assert sols.gain.shape == (6,)


def test_shape_checks():
    with pytest.raises(AssertionError):
        T.finite_horizon_value_iteration(jnp.ones((3, 2, 4)), jnp.ones((3, 2)), 2)
    with pytest.raises(ValueError):
        T.finite_horizon_value_iteration(jnp.ones((3, 2, 3)) / 3, jnp.ones((3, 2)), 0)
