"""Tests for envs/finite_mdp.py and envs/piecewise_stationary.py."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import make_env
from envs.finite_mdp import (
    CONTINUING,
    FiniteMDP,
    _garnet_arrays,
    garnet,
    gridworld_params,
    make_params,
    optimal_discounted_values,
    optimal_finite_horizon_values,
    optimal_gain,
    riverswim_arrays,
    riverswim_params,
)
from envs.piecewise_stationary import (
    PiecewiseStationaryMDP,
    evenly_spaced_change_times,
    make_riverswim_switching,
    switching_riverswim_arrays,
)


@partial(jax.jit, static_argnames=("env", "num_steps"))
def rollout(env, params, key, policy, num_steps):
    """Runs ``num_steps`` of gymnax ``step`` with a table policy ``policy[s]`` (int) or, if ``policy`` is None-like
    (all -1), uniformly random actions. Returns the stacked (obs, state, reward, terminated, truncated, info)."""
    k_reset, k_run = jax.random.split(key)
    obs, state = env.reset(k_reset, params)

    def body(carry, k):
        obs, state = carry
        k_act, k_step = jax.random.split(k)
        random_a = jax.random.randint(k_act, (), 0, env.num_actions)
        a = jnp.where(policy[state.s] >= 0, policy[state.s], random_a)
        obs2, state2, r, term, trunc, info = env.step(k_step, state, a, params)
        return (obs2, state2), (obs, a, state, r, term, trunc, info)

    _, out = jax.lax.scan(body, (obs, state), jax.random.split(k_run, num_steps))
    return out


N = 50  # rollout length shared by the single-env tests (one compile per env object)
RS_ENV = FiniteMDP(6, 2)  # one env object for every 6-state RiverSwim variant (params differ, code is shared)
# 256 Garnets per call; `sparse` is traced (one compile for both reward types).
garnets = jax.jit(jax.vmap(
    lambda k, sparse: garnet(k, 5, 2, 2).replace(R=_garnet_arrays(k, 5, 2, 2, sparse)[1]), in_axes=(0, None)))


def np_gain_of_policy(P, R, pi):
    """Gain of a deterministic policy from the stationary distribution of P_pi (left eigenvector, numpy)."""
    S = P.shape[0]
    P_pi = P[np.arange(S), pi]
    w, v = np.linalg.eig(P_pi.T)
    mu = np.real(v[:, np.argmin(np.abs(w - 1))])
    mu = mu / mu.sum()
    return float(mu @ R[np.arange(S), pi])


def np_average_value(P, R, iters=200):
    """Gain-optimal policy by brute-force policy iteration on the stationary distributions (numpy, unichain)."""
    S, A = R.shape
    pi = np.zeros(S, int)
    for _ in range(iters):
        P_pi = P[np.arange(S), pi]
        M = np.zeros((S + 1, S + 1))
        M[:S, 0], M[:S, 1:], M[S, 1] = 1.0, np.eye(S) - P_pi, 1.0
        x = np.linalg.solve(M, np.concatenate([R[np.arange(S), pi], [0.0]]))
        Q = R + P @ x[1:]
        new = np.where(Q.max(-1) > Q[np.arange(S), pi] + 1e-10, Q.argmax(-1), pi)
        if np.array_equal(new, pi):
            return x[0], x[1:], pi
        pi = new
    raise RuntimeError("policy iteration did not converge")


# ------------------------------------------------------------------------------------------------ MDP instances


@pytest.mark.parametrize("S", [3, 6])
def test_riverswim_definition_and_gain(S):
    P, R = riverswim_arrays(S)
    assert P.shape == (S, 2, S) and R.shape == (S, 2)
    np.testing.assert_allclose(P.sum(-1), 1.0)
    assert P[0, 0, 1] == 0.6 and P[0, 0, 0] == 0.4 and P[1, 0, 0] == 0.05 and P[1, 0, 1] == 0.35
    assert P[S - 1, 0, S - 1] == 0.95 and P[2, 1, 1] == 1.0 and P[0, 1, 0] == 1.0
    assert R[S - 1, 0] == 1.0 and R[0, 1] == 0.1 and R.sum() == 1.1
    sol = optimal_gain(riverswim_params(S))
    np.testing.assert_array_equal(np.asarray(sol.policy), np.zeros(S))  # always swim right
    # Independent check: enumerate every deterministic policy, gain from its stationary distribution.
    gains = [np_gain_of_policy(P, R, np.array(pi)) for pi in np.ndindex(*(2,) * S)]
    assert np.argmax(gains) == 0
    np.testing.assert_allclose(float(sol.gain), max(gains), atol=1e-5)
    np.testing.assert_allclose(float(sol.gain), {3: 0.9172, 6: 0.9167}[S], atol=1e-4)


def test_garnet_structure_determinism_and_vmap():
    keys = jax.random.split(jax.random.PRNGKey(0), 256)
    g1, g2 = garnets(keys, jnp.bool_(False)), garnets(keys, jnp.bool_(False))
    np.testing.assert_array_equal(g1.P, g2.P)  # same key, same MDP
    np.testing.assert_array_equal(g1.R, g2.R)
    assert g1.P.shape == (256, 5, 2, 5) and g1.R.shape == (256, 5, 2) and g1.init_dist.shape == (256, 5)
    np.testing.assert_allclose(g1.P.sum(-1), 1.0, atol=1e-6)
    assert np.all((np.asarray(g1.P) > 0).sum(-1) == 2)  # exactly `branching` successors
    assert np.all((np.asarray(g1.R) >= 0) & (np.asarray(g1.R) <= 1))
    assert not np.allclose(g1.P[0], g1.P[1])  # different keys, different MDPs
    sparse = garnets(keys, jnp.bool_(True))
    np.testing.assert_array_equal(sparse.P, g1.P)
    frac = float((np.asarray(sparse.R) > 0).mean())
    assert 0.05 < frac < 0.15  # about 10% of pairs rewarded



def test_gridworld_definition_and_optimal_values():
    params = gridworld_params(size=5, horizon=15)
    P = np.asarray(params.P)
    assert P.shape == (25, 4, 25)
    np.testing.assert_allclose(P.sum(-1), 1.0, atol=1e-6)
    # Interior cell 12 = (2, 2): intended move w.p. 0.9, each other direction 0.1 / 3.
    np.testing.assert_allclose(P[12, 3, 13], 0.9, atol=1e-6)
    np.testing.assert_allclose(P[12, 3, 7], 0.1 / 3, atol=1e-6)
    # Corner (0, 0): "up" and "left" hit walls and stay.
    np.testing.assert_allclose(P[0, 0, 0], 0.9 + 0.1 / 3, atol=1e-6)
    assert float(params.R[24].min()) == 1.0 and float(params.R.sum()) == 4.0
    Q, V = optimal_finite_horizon_values(params, 15)
    assert Q.shape == (15, 25, 4) and V.shape == (16, 25)
    # From the start (Manhattan distance 8), at most 15 - 8 = 7 steps can be taken from the goal.
    v0 = float(params.init_dist @ V[0])
    assert 4.0 < v0 <= 7.0
    Qd, Vd = optimal_discounted_values(params, gamma=0.9)
    assert Vd.shape == (25,) and float(Vd[24]) == pytest.approx(float(Vd.max()))


# ------------------------------------------------------------------------------------------------ env behaviour


def test_reset_step_shapes_determinism_and_obs_types():
    env, params, spec = make_env("riverswim")
    assert spec.action_kind == "discrete" and env.num_actions == 2
    key = jax.random.PRNGKey(1)
    obs, state = env.reset(key, params)
    assert obs.shape == () and obs.dtype == jnp.int32 and int(obs) == 0 and int(state.time) == 0
    env = RS_ENV
    out1 = rollout(env, params, key, -jnp.ones(6, jnp.int32), N)
    out2 = rollout(env, params, key, -jnp.ones(6, jnp.int32), N)
    for a, b in zip(jax.tree.leaves(out1), jax.tree.leaves(out2)):
        np.testing.assert_array_equal(a, b)
    out3 = rollout(env, params, jax.random.PRNGKey(2), -jnp.ones(6, jnp.int32), N)
    assert not np.array_equal(out1[0], out3[0])
    # Rewards are the means R[s, a] (deterministic) and info carries them; the continuing env never ends.
    obs_seq, a_seq, _, r, term, trunc, info = out1
    np.testing.assert_allclose(r, np.asarray(params.R)[np.asarray(obs_seq), np.asarray(a_seq)])
    np.testing.assert_array_equal(info["expected_reward"], r)
    assert not np.any(term) and not np.any(trunc)
    env_oh, params_oh, _ = make_env("riverswim", obs_type="onehot", num_states=4)
    obs, _ = env_oh.reset(key, params_oh)
    assert obs.shape == (4,) and obs.dtype == jnp.float32 and float(obs[0]) == 1.0
    assert env_oh.observation_space(params_oh).shape == (4,)
    assert env.observation_space(params).n == 6 and env.action_space(params).n == 2


def test_truncation_auto_reset_and_horizon_termination():
    # Discounted-style step limit: truncated (not terminated) every 5 steps, then auto-reset to time 0.
    _, params, _ = make_env("riverswim", max_steps_in_episode=5, discount=0.95)
    obs_seq, _, state_seq, _, term, trunc, info = rollout(RS_ENV, params, jax.random.PRNGKey(3),
                                                          jnp.zeros(6, jnp.int32), N)
    np.testing.assert_array_equal(np.asarray(trunc), np.arange(N) % 5 == 4)
    assert not np.any(term)
    np.testing.assert_array_equal(np.asarray(state_seq.time), np.arange(N) % 5)
    assert int(obs_seq[5]) == 0  # reset to the start state
    assert "final_observation" in info
    # Finite horizon (grid world, H = 15): terminated at the horizon, not truncated.
    env, params, _ = make_env("gridworld")
    _, _, state_seq, _, term, trunc, info = rollout(env, params, jax.random.PRNGKey(4),
                                                    -jnp.ones(25, jnp.int32), N)
    np.testing.assert_array_equal(np.nonzero(np.asarray(term))[0], [14, 29, 44])
    assert not np.any(trunc)
    np.testing.assert_array_equal(np.asarray(info["discount"])[[13, 14]], [1.0, 0.0])
    # Absorbing terminal states: entering state 1 ends the episode.
    P, R = riverswim_arrays(6)
    p = make_params(P, R, terminal_states=np.arange(6) == 1)
    obs_seq, _, state_seq, _, term, _, info = rollout(RS_ENV, p, jax.random.PRNGKey(5), jnp.zeros(6, jnp.int32), N)
    fin = np.asarray(info["final_observation"])
    np.testing.assert_array_equal(np.asarray(term), fin == 1)
    assert np.any(np.asarray(term))


def test_jit_vmap_256_envs_empirical_kernel_and_bernoulli_rewards():
    env, params, _ = make_env("riverswim", num_states=3, reward_noise="bernoulli")
    keys = jax.random.split(jax.random.PRNGKey(6), 256)
    run = jax.jit(jax.vmap(lambda k: rollout(env, params, k, jnp.zeros(3, jnp.int32), 200)))
    obs_seq, a_seq, _, r, _, _, info = run(keys)
    assert obs_seq.shape == (256, 200)
    s, s2 = np.asarray(obs_seq[:, :-1]).ravel(), np.asarray(obs_seq[:, 1:]).ravel()
    # Empirical "swim right" kernel from the middle state matches P[1, 0] = (0.05, 0.35, 0.6).
    counts = np.bincount(s2[s == 1], minlength=3)
    np.testing.assert_allclose(counts / counts.sum(), [0.05, 0.35, 0.6], atol=0.02)
    # Bernoulli rewards: values in {0, 1} with the mean reward of the visited pair.
    rew = np.asarray(r)
    assert set(np.unique(rew)) <= {0.0, 1.0}
    exp_r = np.asarray(info["expected_reward"])
    assert abs(rew.mean() - exp_r.mean()) < 0.02
    # vmap over 256 different MDPs (Garnet params batched) as well as keys.
    gp = garnets(keys, jnp.bool_(False))
    genv = FiniteMDP(5, 2)
    out = jax.jit(jax.vmap(lambda p, k: rollout(genv, p, k, -jnp.ones(5, jnp.int32), 20)))(gp, keys)
    assert out[0].shape == (256, 20)
    # Each env followed its own kernel: every observed transition has positive probability in its MDP.
    s, s2, a = np.asarray(out[0][:, :-1]), np.asarray(out[0][:, 1:]), np.asarray(out[1][:, :-1])
    Pb = np.asarray(gp.P)
    probs = Pb[np.arange(256)[:, None], s, a, s2]
    assert np.all(probs > 0)


def test_registry_names_and_overrides():
    # Stepping each env is covered by the rollouts above; here: every name builds and has valid params.
    for name in ("riverswim", "garnet", "gridworld", "riverswim_switching", "piecewise_garnet"):
        env, params, spec = make_env(name)
        assert spec.description and spec.action_kind == "discrete"
        assert env.default_params is params
        np.testing.assert_allclose(np.asarray(params.P).sum(-1), 1.0, atol=1e-5)
    env, params, _ = make_env("garnet", num_states=7, num_actions=4, branching=2, seed=3)
    assert params.P.shape == (7, 4, 7)
    with pytest.raises(TypeError, match="bogus"):
        make_env("riverswim", bogus=1)


# ------------------------------------------------------------------------------------------------ piecewise


def test_switching_riverswim_segments_at_change_points():
    env, params = make_riverswim_switching(num_states=3, change_times=(10, 20))
    assert params.P.shape == (3, 3, 2, 3) and params.R.shape == (3, 3, 2)
    np.testing.assert_allclose(params.P.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(params.optimal_gain, 0.9172, atol=1e-4)  # swaps keep the optimal gain
    P, R = switching_riverswim_arrays(3, 3, "swap")
    np.testing.assert_array_equal(P[1], P[0][:, ::-1])
    np.testing.assert_array_equal(P[2], P[0])
    _, a_seq, state_seq, r, term, trunc, info = rollout(env, params, jax.random.PRNGKey(7),
                                                        -jnp.ones(3, jnp.int32), 30)
    seg = np.asarray(info["segment"])
    np.testing.assert_array_equal(seg, [0] * 10 + [1] * 10 + [2] * 10)
    np.testing.assert_array_equal(np.asarray(state_seq.segment), seg)
    np.testing.assert_array_equal(np.nonzero(np.asarray(info["changed"]))[0], [9, 19])
    # Rewards come from the active segment's kernel: R_l[s, a].
    s = np.asarray(info["state"])
    np.testing.assert_allclose(r, R[seg, s, np.asarray(a_seq)])
    assert not np.any(term) and not np.any(trunc)
    # Defaults = the figure's schedule: S = 3, T = 60k, changes at 20k and 40k; continuing.
    env, params, _ = make_env("riverswim_switching")
    np.testing.assert_array_equal(params.change_times, [20_000, 40_000])
    assert int(params.max_steps_in_episode) == CONTINUING
    assert evenly_spaced_change_times(90_000, 2) == [30_000, 60_000]


def test_dynamic_regret_per_segment_and_no_reset_across_segments():
    # Always swimming (action 0) is optimal in segments 0 and 2 and earns ~0.1 in the swapped segment 1.
    env, params = make_riverswim_switching(num_states=3, change_times=(1000, 2000))
    keys = jax.random.split(jax.random.PRNGKey(8), 16)
    out = jax.vmap(lambda k: rollout(env, params, k, jnp.zeros(3, jnp.int32), 3000))(keys)
    _, _, state_seq, _, term, trunc, info = out
    regret = np.asarray(info["optimal_gain"] - info["expected_reward"])
    per_seg = regret.reshape(16, 3, 1000)[:, :, 200:].mean(axis=(0, 2))  # skip the transients
    assert abs(per_seg[0]) < 0.05 and abs(per_seg[2]) < 0.05
    assert per_seg[1] > 0.7  # the swapped segment: about 0.82 per step until adaptation
    np.testing.assert_array_equal(np.asarray(state_seq.time[0]), np.arange(3000))  # one long episode
    assert not np.any(term) and not np.any(trunc)


def test_random_schedules_and_other_change_types():
    # Uniform change times: drawn at reset, sorted, inside [1, T); different per key.
    env, params = make_riverswim_switching(num_states=3, total_steps=N, num_changes=2, schedule="uniform")
    outs = [rollout(env, params, jax.random.PRNGKey(i), -jnp.ones(3, jnp.int32), N) for i in (0, 1)]
    cts = [np.asarray(out[2].change_times[0]) for out in outs]
    for ct, out in zip(cts, outs):
        assert np.all(np.diff(ct) >= 0) and ct.min() >= 1 and ct.max() < N
        seg = np.asarray(out[-1]["segment"])
        np.testing.assert_array_equal(seg, (np.arange(N)[:, None] >= ct[None]).sum(-1))
        assert np.all(np.asarray(out[2].change_times) == ct)  # fixed for the whole episode
    assert not np.array_equal(cts[0], cts[1])
    # Geometric: about switch_prob * T changes; kernels cycle.
    env, params = make_riverswim_switching(num_states=3, num_changes=1, schedule="geometric", switch_prob=0.2)
    out = rollout(env, params, jax.random.PRNGKey(9), -jnp.ones(3, jnp.int32), N)
    n_changes = int(np.asarray(out[-1]["changed"]).sum())
    assert 2 <= n_changes <= 20
    np.testing.assert_array_equal(np.asarray(out[-1]["kernel"]), np.asarray(out[-1]["segment"]) % 2)
    # Reward relocation: the optimum moves to "go left" with gain 1; redraw keeps distributions.
    _, params = make_riverswim_switching(change_type="reward")
    np.testing.assert_allclose(params.optimal_gain, [0.9172, 1.0, 0.9172], atol=1e-4)
    P, R = switching_riverswim_arrays(3, 3, "reward")
    assert R[1, 0, 1] == 1.0 and R[1, 2, 0] == 0.1 and np.array_equal(P[1], P[0])
    _, params = make_riverswim_switching(change_type="redraw", seed=1)
    np.testing.assert_allclose(params.P.sum(-1), 1.0, atol=1e-5)
    assert not np.allclose(params.P[1], params.P[0])
    assert np.all(np.isfinite(np.asarray(params.optimal_gain)))


def test_piecewise_garnet():
    env, params, _ = make_env("piecewise_garnet", total_steps=300)
    assert isinstance(env, PiecewiseStationaryMDP)
    assert params.P.shape == (3, 10, 3, 10)
    np.testing.assert_array_equal(params.change_times, [100, 200])
    assert not np.allclose(params.P[0], params.P[1])
    for k in range(3):
        g, _, _ = np_average_value(np.asarray(params.P[k], np.float64), np.asarray(params.R[k], np.float64))
        np.testing.assert_allclose(params.optimal_gain[k], g, atol=1e-4)
