"""Random linear MDPs: an exact linear structure, a consistent sampler, and optimal values checked in numpy."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.linear_mdp import LinearMDP, LinearMDPState, sample_linear_mdp_params

ENV = LinearMDP(num_states=6, num_actions=3, dim=4, horizon=4, param_seed=3)
PARAMS = ENV.default_params
N = 20_000


@functools.partial(jax.jit, static_argnames=("env", "num_steps"))
def run(env, params, keys, policy, num_steps: int):
    """Vmapped over ``keys`` and the batched ``params`` (one MDP per episode): ``num_steps`` steps of the
    deterministic policy ``policy[h, s]`` (traced). Returns per-step arrays (num_envs, num_steps).
    Every call below has the same shapes, so the file compiles this once."""

    def one(key, p):
        k_reset, k_run = jax.random.split(key)
        obs, state = env.reset(k_reset, p)

        def body(carry, k):
            obs, state = carry
            a = policy[jnp.minimum(state.time, env.horizon - 1), state.state]
            obs2, state2, r, term, trunc, info = env.step(k, state, a, p)
            out = dict(obs=obs, reward=r, terminated=term, truncated=trunc, next_obs=obs2,
                       final_obs=info["final_observation"], time=state2.time, state=info["state"])
            return (obs2, state2), out

        return jax.lax.scan(body, (obs, state), jax.random.split(k_run, num_steps))[1]

    return jax.vmap(one)(keys, params)


STEPS = 8  # two episodes of H = 4


def tile(params, n=N):
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), params)


def keys(n, seed=0):
    return jax.random.split(jax.random.PRNGKey(seed), n)


def numpy_value_iteration(P, R):
    """Independent float64 backward induction."""
    P, R = np.asarray(P, np.float64), np.asarray(R, np.float64)
    H, S, A, _ = P.shape
    V = np.zeros((H + 1, S))
    Q = np.zeros((H, S, A))
    for h in reversed(range(H)):
        Q[h] = R[h] + P[h] @ V[h + 1]
        V[h] = Q[h].max(-1)
    return Q, V


def test_structure_is_an_exact_linear_mdp():
    P, R = ENV.to_tabular(PARAMS)
    H, S, A, d = 4, 6, 3, 4
    phi = np.asarray(ENV.features(PARAMS))
    assert P.shape == (H, S, A, S) and R.shape == (H, S, A) and phi.shape == (S, A, d)
    assert np.all(phi >= 0) and np.allclose(phi.sum(-1), 1.0, atol=1e-5)  # phi in the simplex
    P = np.asarray(P)
    assert np.all(P >= 0) and np.allclose(P.sum(-1), 1.0, atol=1e-5)
    R = np.asarray(R)
    assert np.all((R >= 0) & (R <= 1))
    np.testing.assert_allclose(P, np.einsum("sai,hit->hsat", phi, np.asarray(PARAMS.mu)), atol=1e-6)
    np.testing.assert_allclose(R, np.einsum("sai,hi->hsa", phi, np.asarray(PARAMS.theta)), atol=1e-6)
    for h in range(H):  # rank(P_h) <= d: the low-rank structure linear algorithms rely on
        assert np.linalg.matrix_rank(P[h].reshape(S * A, S), tol=1e-5) <= d
    assert not np.allclose(P[0], P[1])  # time-inhomogeneous by default
    stat = sample_linear_mdp_params(jax.random.PRNGKey(1), 6, 3, 4, 4, stationary=True)
    np.testing.assert_array_equal(stat.mu[0], stat.mu[3])
    np.testing.assert_array_equal(stat.theta[0], stat.theta[2])


def test_optimal_value_matches_numpy_and_brute_force():
    # Independent numpy backward induction on a default-size instance ...
    env, params, spec = envs.make_env("linear_mdp")
    assert spec.action_kind == "discrete" and env.num_states == 20 and env.dim == 8
    Q, V = env.optimal_values(params)
    Qn, Vn = numpy_value_iteration(*env.to_tabular(params))
    np.testing.assert_allclose(Q, Qn, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(V, Vn, rtol=1e-5, atol=1e-5)
    assert float(env.optimal_value(params)) == pytest.approx(Vn[0, 0], rel=1e-5)  # start state 0
    # ... and a brute force over every deterministic Markov policy of a tiny one.
    tiny = LinearMDP(num_states=3, num_actions=2, dim=2, horizon=2, param_seed=7)
    tp = tiny.default_params
    P, R = (np.asarray(x, np.float64) for x in tiny.to_tabular(tp))
    best = -np.inf
    for flat in itertools.product(range(2), repeat=2 * 3):
        pi = np.array(flat).reshape(2, 3)
        dist, total = np.asarray(tp.init_dist, np.float64), 0.0
        for h in range(2):
            total += dist @ R[h, np.arange(3), pi[h]]
            dist = dist @ P[h, np.arange(3), pi[h]]
        best = max(best, total)
    assert float(tiny.optimal_value(tp)) == pytest.approx(best, rel=1e-5)


def test_sampled_transitions_and_returns_match_the_model():
    # The greedy policy of Q*: Monte-Carlo returns average to V*_0(s_0), next-state frequencies match P.
    Q, V = ENV.optimal_values(PARAMS)
    policy = jnp.argmax(Q, -1).astype(jnp.int32)
    out = run(ENV, tile(PARAMS), keys(N), policy, STEPS)
    ret = np.asarray(out["reward"])[:, :4].sum(-1)
    assert abs(ret.mean() - float(V[0, 0])) < 5 * ret.std() / np.sqrt(N) + 1e-4
    P = np.asarray(ENV.to_tabular(PARAMS)[0])
    pol = np.asarray(policy)
    s0, s1 = np.asarray(out["state"])[:, 0], np.asarray(out["final_obs"])[:, 0]
    assert np.all(s0 == 0)  # the fixed start state
    freq = np.bincount(s1, minlength=6) / N
    expected = P[0, 0, pol[0, 0]]
    assert np.all(np.abs(freq - expected) < 5 * np.sqrt(expected * (1 - expected) / N) + 1e-3)
    # Step 1 from a visited state: frequencies of (s_1 -> s_2) against P[1].
    s2 = np.asarray(out["final_obs"])[:, 1]
    for s in np.unique(s1):
        m = s1 == s
        if m.sum() < 2000:
            continue
        exp = P[1, s, pol[1, s]]
        f = np.bincount(s2[m], minlength=6) / m.sum()
        assert np.all(np.abs(f - exp) < 5 * np.sqrt(exp * (1 - exp) / m.sum()) + 1e-3)


def test_flags_auto_reset_determinism():
    policy = jnp.zeros((4, 6), jnp.int32)
    out = run(ENV, tile(PARAMS), keys(N), policy, STEPS)
    assert np.all(np.asarray(out["terminated"]) == [False, False, False, True] * 2)
    assert not np.asarray(out["truncated"]).any()
    assert np.all(np.asarray(out["time"])[:, 3] == 0)  # auto-reset after H steps ...
    assert np.all(np.asarray(out["next_obs"])[:, 3] == 0)  # ... to the start state
    np.testing.assert_array_equal(out["next_obs"][:, 3], out["obs"][:, 4])
    again = run(ENV, tile(PARAMS), keys(N), policy, STEPS)
    np.testing.assert_array_equal(out["final_obs"], again["final_obs"])
    other = run(ENV, tile(PARAMS), keys(N, seed=1), policy, STEPS)
    assert not np.array_equal(out["final_obs"], other["final_obs"])
    # A time limit below H truncates (a data field: no recompilation).
    out = run(ENV, tile(PARAMS.replace(max_steps_in_episode=2)), keys(N), policy, STEPS)
    assert np.all(np.asarray(out["truncated"]) == [False, True] * 4)
    assert not np.asarray(out["terminated"]).any()


def test_one_mdp_per_seed_under_jit_vmap():
    # N >= 256 envs, each its own MDP drawn from its seed's key, in one jit(vmap(...)).
    many = jax.jit(jax.vmap(ENV.randomize, in_axes=(None, 0)))(PARAMS, keys(N, seed=2))
    assert many.phi.shape == (N, 6, 3, 4) and many.mu.shape == (N, 4, 4, 6)
    assert not np.allclose(many.phi[0], many.phi[1])
    one = ENV.randomize(PARAMS, keys(N, seed=2)[9])
    np.testing.assert_allclose(one.theta, many.theta[9], rtol=1e-6)
    out = run(ENV, many, keys(N), jnp.zeros((4, 6), jnp.int32), STEPS)
    assert out["reward"].shape == (N, STEPS) and np.all(np.isfinite(np.asarray(out["reward"])))
    values = jax.jit(jax.vmap(ENV.optimal_value))(jax.tree.map(lambda x: x[:256], many))
    assert values.shape == (256,) and np.all((values > 0) & (values <= 4))
    # Each MDP's episodes follow its own model: the mean first reward matches each phi . theta at s_0.
    r0 = np.asarray(out["reward"])[:, 0]
    np.testing.assert_allclose(r0, np.asarray(many.phi[:, 0, 0] * many.theta[:, 0]).sum(-1), rtol=1e-5)


def test_obs_modes_and_overrides():
    env, params, _ = envs.make_env("linear_mdp", num_states=5, dim=3, horizon=2, obs_mode="onehot")
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    assert obs.shape == (5,) and float(obs[0]) == 1.0 and env.observation_space(params).shape == (5,)
    assert env.features(params).shape == (5, 4, 3)
    env, params, _ = envs.make_env("linear_mdp")
    obs, _ = env.reset(jax.random.PRNGKey(0), params)
    assert obs.shape == () and obs.dtype == jnp.int32 and env.observation_space(params).n == 20
    stat_env = LinearMDP(num_states=6, num_actions=3, dim=4, horizon=4, stationary=True, param_seed=1)
    np.testing.assert_array_equal(stat_env.default_params.mu, sample_linear_mdp_params(
        jax.random.PRNGKey(1), 6, 3, 4, 4, stationary=True).mu)
    with pytest.raises(ValueError, match="no parameter"):
        envs.make_env("linear_mdp", bogus=1)
    _, st, r, *_ = ENV.step_env(jax.random.PRNGKey(0), LinearMDPState(state=jnp.int32(2), time=jnp.int32(1)), 1, PARAMS)
    assert float(r) == pytest.approx(float(ENV.to_tabular(PARAMS)[1][1, 2, 1]))
