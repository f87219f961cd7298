"""UCRL2 and its restart / sliding-window / oracle variants: the pieces on hand-checked counts, the EVI masking
under vmap, the restart schedule, exact window statistics, learning on RiverSwim, oracle restarts on switching
RiverSwim, runner integration and reproducibility."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import _ucrl2, sw_ucrl2, ucrl2, ucrl2_restarts  # noqa: F401  (sw_ucrl2: registers it)
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl import tabular
from hybrid_rl.runner import Runner, RunSettings


@functools.lru_cache(maxsize=None)
def problem(env, **kwargs):
    return build_problem(env, kwargs)


@functools.lru_cache(maxsize=None)  # tests that need the same run share it (and its compile)
def curves(name, prob, num_seeds, num_steps, stride=500, **overrides):
    """(final states, cumulative-regret curves) of ``num_seeds`` vmapped seeds (keys split from key(0))."""
    spec = get_algorithm(name)
    config = spec.config_cls(total_steps=num_steps, **overrides)
    agent = spec.make(config, prob)
    hp = default_hparams(spec, config)
    run = jax.jit(jax.vmap(lambda k: _ucrl2.regret_curve(agent, k, hp, num_steps, stride)))
    return run(jax.random.split(jax.random.key(0), num_seeds))


def test_plausible_set_on_hand_checked_counts():
    n_sas = jnp.array([[[0, 0], [3, 1]], [[2, 2], [0, 0]]], jnp.int32)  # S = A = 2
    n_sa = n_sas.sum(-1)
    r_sum = jnp.array([[0.0, 3.0], [1.0, 0.0]])
    r_hat, p_hat, d_r, d_p = _ucrl2.plausible_set(n_sa, n_sas, r_sum, 100.0, 0.05, 1.0)
    np.testing.assert_allclose(r_hat, [[0.0, 0.75], [0.25, 0.0]])
    np.testing.assert_allclose(p_hat, [[[0.5, 0.5], [0.75, 0.25]], [[0.5, 0.5], [0.5, 0.5]]])
    n = np.array([[1, 4], [4, 1]], float)  # max(1, N)
    np.testing.assert_allclose(d_r, np.sqrt(7 * math.log(2 * 2 * 2 * 100 / 0.05) / (2 * n)), rtol=1e-6)
    np.testing.assert_allclose(d_p, np.sqrt(14 * 2 * math.log(2 * 2 * 100 / 0.05) / n), rtol=1e-6)
    # The confidence multiplier scales both radii.
    _, _, d_r2, d_p2 = _ucrl2.plausible_set(n_sa, n_sas, r_sum, 100.0, 0.05, 0.5)
    np.testing.assert_allclose(d_r2, 0.5 * d_r, rtol=1e-6)
    np.testing.assert_allclose(d_p2, 0.5 * d_p, rtol=1e-6)
    assert float(_ucrl2.evi_eps(400, 0.0)) == pytest.approx(0.05)
    assert float(_ucrl2.evi_eps(400, 0.01)) == pytest.approx(0.01)


def test_doubling_rule_on_hand_checked_counts():
    policy = jnp.array([1, 0])
    n_k = jnp.array([[9, 4], [0, 7]])
    for v01, v10, s, expected in [(3, 0, 0, False), (4, 0, 0, True), (5, 0, 0, True), (0, 0, 1, False),
                                  (0, 1, 1, True)]:  # N_k = 0 -> the first visit ends the episode (max(1, N))
        v_k = jnp.zeros((2, 2), jnp.int32).at[0, 1].set(v01).at[1, 0].set(v10)
        assert bool(_ucrl2.doubling_rule(v_k, n_k, s, policy)) == expected, (v01, v10, s)


def test_masked_evi_matches_tabular_evi_and_skips_inactive_seeds():
    key = jax.random.key(3)
    S, A = 4, 2
    p_hat = jax.random.dirichlet(key, jnp.ones(S), (S, A))
    r_hat = jax.random.uniform(jax.random.key(4), (S, A))
    d_p = jnp.full((S, A), 0.3)
    d_r = jnp.full((S, A), 0.05)
    u0 = jnp.array([0.0, 0.2, 0.1, 0.4])
    ref = tabular.extended_value_iteration(p_hat, r_hat, d_p, d_r, eps=1e-3, u0=u0)

    def run(active):
        return _ucrl2.masked_evi(active, p_hat, r_hat, d_p, d_r, 1e-3, u0, 1000, 1.0)

    bias, q, sweeps, converged = jax.jit(jax.vmap(run))(jnp.array([True, False]))
    np.testing.assert_allclose(bias[0], ref.bias, atol=1e-6)
    np.testing.assert_array_equal(_ucrl2.greedy(q[0]), ref.policy)
    assert int(sweeps[0]) == int(ref.num_iters) and bool(converged[0])
    np.testing.assert_array_equal(bias[1], u0)  # the inactive seed is untouched and ran no sweep
    assert int(sweeps[1]) == 0


def test_random_tie_breaking_picks_uniformly_among_maximisers():
    q = jnp.array([[1.0, 1.0, 0.5], [0.0, 2.0, 2.0 - 1e-9]])
    picks = jax.vmap(lambda k: _ucrl2.greedy(q, k))(jax.random.split(jax.random.key(0), 400))
    assert set(np.unique(picks[:, 0])) == {0, 1} and set(np.unique(picks[:, 1])) == {1, 2}
    assert 0.4 < float((picks[:, 0] == 0).mean()) < 0.6
    np.testing.assert_array_equal(_ucrl2.greedy(q), [0, 1])  # no key: the first maximiser


def test_jaksch_restart_schedule_and_its_run():
    cfg = ucrl2_restarts.Config(total_steps=100, num_changes=2)
    # tau_i = ceil(i^3 / 4) = 1, 2, 7, 16, 32, 54, 86, 128: fresh UCRL2s start at 0-based steps tau_i - 1 > 0.
    np.testing.assert_array_equal(ucrl2_restarts.restart_steps(cfg), [1, 6, 15, 31, 53, 85])
    periodic = ucrl2_restarts.Config(total_steps=100, schedule="periodic", period=30)
    np.testing.assert_array_equal(ucrl2_restarts.restart_steps(periodic), [30, 60, 90])
    state, _ = curves("ucrl2_restarts", problem("riverswim", num_states=3), 1, 100, stride=100)
    np.testing.assert_array_equal(state.restart_log[0, :7], [1, 6, 15, 31, 53, 85, -1])
    assert int(state.num_restarts[0]) == 6


def test_sliding_window_statistics_are_exactly_the_last_w_steps():
    T, W = 400, 37
    prob = problem("riverswim", num_states=3)
    # A ring as long as the run keeps the whole trajectory, so the window can be recounted from it.
    state, _ = curves("sw_ucrl2", prob, 1, T, stride=T, window=W, max_window=T, steps_per_iteration=8)
    state = jax.tree.map(lambda x: x[0], state)
    code = np.asarray(state.variant.ring_code)
    s, a, s_next = code // 6, (code // 3) % 2, code % 3
    np.testing.assert_array_equal(s_next[:-1], s[1:])  # the ring holds a real trajectory
    n_sas = np.zeros((3, 2, 3), int)
    np.add.at(n_sas, (s[-W:], a[-W:], s_next[-W:]), 1)
    np.testing.assert_array_equal(state.n_sas, n_sas)
    np.testing.assert_array_equal(state.n_sa, n_sas.sum(-1))
    np.testing.assert_allclose(state.r_sum, n_sas.sum(-1)[:, :] * np.array([[0, 0.1], [0, 0], [1, 0]]), atol=1e-5)


def test_ucrl2_regret_is_sublinear_on_riverswim_and_far_below_uniform():
    prob = problem("riverswim", num_states=3)
    T = 20_000
    _, curve = curves("ucrl2", prob, 4, T)
    mean = np.asarray(curve).mean(0)  # cumulative regret every 500 steps
    half, final = mean[T // 1000 - 1], mean[-1]
    slope = math.log(final / half) / math.log(2.0)  # log-log slope over the second half
    assert slope < 0.9, slope
    assert (final - half) / (T / 2) < half / (T / 2)  # regret per step falls
    # Uniform random policy: gain of the uniform mixture, exactly.
    P, R = prob.env_params.P, prob.env_params.R
    gain_uniform, _ = tabular.average_reward_policy_evaluation(P, R, jnp.full((3, 2), 0.5))
    rho = tabular.relative_value_iteration(P, R).gain
    assert final < 0.25 * T * float(rho - gain_uniform), (final, T * float(rho - gain_uniform))


def test_sliding_window_larger_than_the_run_is_ucrl2():
    prob = problem("riverswim", num_states=3)
    _, plain = curves("ucrl2", prob, 4, 20_000)  # the run of the sublinearity test
    _, windowed = curves("sw_ucrl2", prob, 4, 20_000, window=20_001, max_window=20_001)
    np.testing.assert_array_equal(plain, windowed)


@pytest.mark.slow
def test_oracle_restarts_beat_ucrl2_on_switching_riverswim():
    prob = problem("riverswim_switching", total_steps=15_000)  # swaps at 5000 and 10000
    _, plain = curves("ucrl2", prob, 4, 15_000)
    state, oracle = curves("oracle_ucrl2", prob, 4, 15_000)
    np.testing.assert_array_equal(state.restart_log[:, :3], [[5000, 10000, -1]] * 4)
    assert np.all(np.asarray(oracle[:, -1]) <= np.asarray(plain[:, -1]))
    assert float(oracle[:, -1].mean()) < 0.7 * float(plain[:, -1].mean())


def test_oracle_needs_a_piecewise_env():
    spec = get_algorithm("oracle_ucrl2")
    with pytest.raises(ValueError, match="change points"):
        spec.make(spec.config_cls(total_steps=100), problem("riverswim", num_states=3))
    with pytest.raises(ValueError, match="multiple of steps_per_iteration"):
        spec.make(spec.config_cls(total_steps=101, steps_per_iteration=10), problem("riverswim_switching"))


def test_runner_seeds_differ_and_same_seed_repeats():
    prob = problem("riverswim", num_states=3)
    spec = get_algorithm("ucrl2")
    config = ucrl2.Config(total_steps=2_000, steps_per_iteration=10)

    def run():
        runner = Runner(spec.make(config, prob), prob, default_hparams(spec, config),
                        RunSettings(num_seeds=2, num_evals=4, eval_episodes=0, progress=False, checkpoint=False))
        state, _ = runner.run()
        return state, runner.rows

    state, rows = run()
    assert {"regret_increment", "cumulative_regret", "restart", "episode_index", "evi_sweeps"} <= set(rows[0])
    assert len(rows) == 8  # 4 chunks x 2 seeds
    regret = np.asarray(state.regret)[0]  # (hparam point, seed)
    assert regret[0] != regret[1], "two seeds gave the same trajectory"
    again, rows_again = run()
    np.testing.assert_array_equal(state.regret, again.regret)
    assert [r["cumulative_regret"] for r in rows] == [r["cumulative_regret"] for r in rows_again]
