"""Demonstration-regularized RL (algorithms/demo_regularized.py): soft backups against their limits, the
regularised-value consistency, the inequality of docs/algorithms/demo_regularized.md, the BC closed form and floor,
the trajectory KL by DP against Monte Carlo, its ~1/N^E decay, the stopping statistic, and (slow) the learning claim
of Figure A2."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algorithms import _tabular, ucbvi
from algorithms import demo_regularized as dr
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl import tabular


def _random_model(key, H=4, S=4, A=3):
    kp, kr = jax.random.split(key)
    P = jax.random.dirichlet(kp, jnp.ones(S), (H, S, A))
    R = jax.random.uniform(kr, (H, S, A))
    return _tabular.model_from_arrays(P, R, jnp.eye(S)[0], H)


def test_one_step_soft_backup_and_its_limits():
    r = jnp.array([[[0.2, 0.9, 0.5]]])  # H=1, S=1, A=3
    P = jnp.ones((1, 1, 3, 1))
    ref = jnp.array([[[0.5, 0.0, 0.5]]])  # action 1 outside the support
    for lam in (0.05, 0.5):
        _, V, pi = _tabular.optimistic_planning(P, r, jnp.zeros(()), lam, jnp.log(ref), clip=False)
        expected = lam * np.log(np.sum(np.array([0.5, 0.0, 0.5]) * np.exp(np.array([0.2, 0.9, 0.5]) / lam)))
        np.testing.assert_allclose(V[0, 0], expected, rtol=1e-5)
        w = np.array([0.5, 0.0, 0.5]) * np.exp(np.array([0.2, 0.9, 0.5]) / lam)
        np.testing.assert_allclose(pi[0, 0], w / w.sum(), atol=1e-6)
    _, V0, _ = _tabular.optimistic_planning(P, r, jnp.zeros(()), 1e-4, jnp.log(ref), clip=False)
    np.testing.assert_allclose(V0[0, 0], 0.5, atol=1e-3)  # max over the support, not 0.9
    _, Vinf, piinf = _tabular.optimistic_planning(P, r, jnp.zeros(()), 1e4, jnp.log(ref), clip=False)
    np.testing.assert_allclose(Vinf[0, 0], 0.35, atol=1e-3)  # E_ref[r]
    np.testing.assert_allclose(piinf[0, 0], ref[0, 0], atol=1e-4)


def test_regularised_evaluation_of_soft_optimum_and_inequality_star():
    lam = 0.2

    def one(key):
        k_m, k_e, k_b, k_p = jax.random.split(key, 4)
        m = _random_model(k_m)
        shape = (m.H, m.S, m.A)
        pi_ref = jax.nn.softmax(jax.random.normal(k_b, shape), -1)
        _, Vsoft, pi_soft = _tabular.optimistic_planning(m.P, m.R, jnp.zeros(()), lam, jnp.log(pi_ref), clip=False)
        _, Veval = tabular.finite_horizon_policy_evaluation(m.P, m.R, pi_soft, m.H, lam, pi_ref)
        v_lam = lambda pi: m.value(pi) - lam * dr.trajectory_kl(m, pi, pi_ref)  # noqa: E731
        pi_e = jax.nn.softmax(jax.random.normal(k_e, shape) * 3, -1)
        pi_hat = jax.nn.softmax(jax.random.normal(k_p, shape) * 3, -1)
        eps_e = m.v_star - m.value(pi_e)
        lhs = m.v_star - m.value(pi_hat)
        rhs = eps_e + lam * dr.trajectory_kl(m, pi_e, pi_ref) + (m.mu0 @ Vsoft[0] - v_lam(pi_hat))
        return Vsoft[0] - Veval[0], m.mu0 @ Vsoft[0] - v_lam(pi_soft), rhs - lhs

    diff, diff2, slack = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(3), 50))
    np.testing.assert_allclose(diff, 0.0, atol=1e-5)
    np.testing.assert_allclose(diff2, 0.0, atol=1e-5)
    assert float(slack.min()) >= -1e-5


def test_bc_closed_form_is_the_regularised_mle_and_has_the_floor():
    counts = jnp.array([[[5.0, 0.0, 2.0], [0.0, 0.0, 0.0]]])  # H=1, S=2, A=3
    kappa = 1.0
    pi = dr.bc_policy(counts, kappa)
    np.testing.assert_allclose(pi[0, 0], [6 / 10, 1 / 10, 3 / 10], rtol=1e-6)
    np.testing.assert_allclose(pi[0, 1], [1 / 3] * 3, rtol=1e-6)  # unvisited state: uniform
    assert float(pi.min()) >= kappa / (7 + 3 * kappa) - 1e-7  # the add-kappa floor
    # Numerical maximiser of sum n log pi + kappa sum log pi over logits.
    loss = lambda z: -((counts[0, 0] + kappa) * jax.nn.log_softmax(z)).sum()  # noqa: E731
    opt = optax.adam(0.05)
    z = jnp.zeros(3)
    st = opt.init(z)

    @jax.jit
    def step(z, st):
        g = jax.grad(loss)(z)
        u, st = opt.update(g, st)
        return optax.apply_updates(z, u), st

    for _ in range(2000):
        z, st = step(z, st)
    np.testing.assert_allclose(jax.nn.softmax(z), pi[0, 0], atol=1e-3)
    # Pooling over h uses the counts of every step.
    pooled = dr.bc_policy(jnp.stack([counts[0], jnp.zeros_like(counts[0])]), kappa, pool_steps=True)
    np.testing.assert_allclose(pooled[1], pi[0], rtol=1e-6)


def test_trajectory_kl_dp_matches_monte_carlo_and_decays_like_one_over_n():
    m = _random_model(jax.random.key(5), H=5, S=5, A=3)
    pi_e = dr.expert_policy(m, "softmax", temperature=0.3)
    pi_ref = jax.nn.softmax(jax.random.normal(jax.random.key(6), pi_e.shape), -1)
    kl_dp = float(dr.trajectory_kl(m, pi_e, pi_ref))
    kl_state = (pi_e * (jnp.log(pi_e) - jnp.log(pi_ref))).sum(-1)  # (H, S)

    def mc(key):
        s, _, _, _ = _tabular.sample_episode(key, m, pi_e)
        return kl_state[jnp.arange(m.H), s].sum()

    samples = jax.jit(jax.vmap(mc))(jax.random.split(jax.random.key(7), 8000))
    se = float(samples.std()) / np.sqrt(samples.size)
    assert abs(float(samples.mean()) - kl_dp) < 4 * se + 1e-4

    def kl_at(n, seeds=8):
        f = jax.jit(jax.vmap(lambda k: dr.trajectory_kl(m, pi_e, dr.bc_policy(dr.demo_counts(k, m, pi_e, n), 1.0))))
        return float(f(jax.random.split(jax.random.key(n), seeds)).mean())

    k_small, k_large = kl_at(300), kl_at(3000)
    slope = np.log(k_large / k_small) / np.log(10.0)
    assert k_large < k_small
    assert -1.3 < slope < -0.6, slope


def test_stopping_statistic_vanishes_with_the_true_model_and_no_bonus():
    m = _random_model(jax.random.key(8))
    pi_ref = jax.nn.softmax(jax.random.normal(jax.random.key(9), (m.H, m.S, m.A)), -1)
    lam = 0.1
    _, V_up, pi = _tabular.optimistic_planning(m.P, m.R, jnp.zeros(()), lam, jnp.log(pi_ref), clip=False)
    V_lo = _tabular.lower_regularized_value(m.P, m.R, jnp.zeros(()), pi, jnp.log(pi_ref), lam)
    np.testing.assert_allclose(V_up - V_lo, 0.0, atol=1e-5)


def test_cli_shaped_run_on_the_gridworld():
    problem = build_problem("gridworld")
    spec = get_algorithm("demo_regularized")
    config = dr.Config(episodes=4, demos=20, expert="softmax")
    agent = spec.make(config, problem)
    state, curve = jax.jit(lambda k: _tabular.learning_curve(agent, k, default_hparams(spec, config), 4))(
        jax.random.key(0)
    )
    assert np.all(np.isfinite(np.asarray(curve))) and float(curve.min()) >= -1e-4
    assert float(state.extra["bc_kl"]) > 0


@pytest.mark.slow
def test_demo_regularized_beats_bc_and_ucbvi_on_the_lock():
    """Figure A2's claim (docs/algorithms/demo_regularized.md): H=10, A=4 lock, N^E = 30, K = 30: DemoReg below BC and
    UCBVI in >= 14 of 16 seeds."""
    problem = build_problem("comblock_tabular")
    keys = jax.random.split(jax.random.key(0), 16)
    K = 31

    def final(name, config):
        spec = get_algorithm(name)
        agent = spec.make(config, problem)
        hp = default_hparams(spec, config)
        return np.asarray(jax.jit(jax.vmap(lambda k: _tabular.learning_curve(agent, k, hp, K)[1][-1]))(keys))

    demo = final("demo_regularized", dr.Config(episodes=K, demos=30))
    bc = final("bc_tabular", dr.BCConfig(episodes=K, demos=30))
    ucb = final("ucbvi", ucbvi.Config(episodes=K, bonus_scale=0.05))
    assert np.sum((demo < bc) & (demo < ucb)) >= 14, (demo, bc, ucb)


def test_rlhf_reward_mle_ranks_the_optimal_policy_and_the_variant_runs():
    problem = build_problem("comblock_tabular", {"horizon": 4, "num_actions": 3})
    model = ucbvi.tabular_model(problem)
    # Reward MLE on Bradley-Terry preferences between uniform trajectories.
    pi = jnp.full((model.H, model.S, model.A), 1.0 / model.A)
    D, o = dr.preference_data(jax.random.key(0), model, pi, 400)
    assert D.shape == (400, model.H * model.S * model.A)
    r_hat = dr.fit_reward(D, o, (model.H, model.S, model.A), 300, 0.05, 1e-3)
    assert float(r_hat.min()) >= 0.0 and float(r_hat.max()) <= 1.0
    # The learnt reward ranks pi* above the uniform policy that generated the pairs.
    learnt = _tabular.model_from_arrays(model.P, r_hat, model.mu0, model.H)
    pi_star = model.Q_star.argmax(-1).astype(jnp.int32)
    assert float(learnt.value(pi_star)) > float(learnt.value(pi)) + 0.1
    # The variant runs end to end (reward never observed online). Whether it beats BC is not asserted: on
    # this small lock it does not consistently (learnt dead-state rewards).
    spec = get_algorithm("demo_regularized_rlhf")
    config = dr.RLHFConfig(episodes=5, demos=30, pref_pairs=100, reward_steps=50)
    agent = spec.make(config, problem)
    state, curve = jax.jit(lambda k: _tabular.learning_curve(agent, k, default_hparams(spec, config), 5))(
        jax.random.key(1))
    assert np.all(np.isfinite(np.asarray(curve))) and float(state.r_sum.sum()) >= 0
    assert state.extra["r_hat"].shape == (model.H, model.S, model.A)


def test_log_linear_bc_and_the_linear_variant():
    problem = build_problem("linear_mdp", {"num_states": 6, "num_actions": 3, "dim": 4, "horizon": 4})
    model = ucbvi.tabular_model(problem)
    phi = problem.env.features(problem.env_params)
    pi_e = dr.expert_policy(model, "softmax", temperature=0.3)

    @jax.jit
    def kl_of(key, mix):
        s, a, _, _ = jax.vmap(lambda k: _tabular.sample_episode(k, model, pi_e))(jax.random.split(key, 400))
        kls = []
        for n in (20, 400):
            pi_bc = dr.fit_log_linear_bc(phi, s[:n], a[:n], 1e-3, mix, 200, 0.1)
            kls.append(dr.trajectory_kl(model, pi_e, pi_bc))
        return jnp.stack(kls), pi_bc

    kls, pi_bc = kl_of(jax.random.key(0), 0.0)
    assert np.all(np.isfinite(np.asarray(kls))) and float(kls[1]) < float(kls[0])
    np.testing.assert_allclose(pi_bc.sum(-1), 1.0, atol=1e-5)
    _, pi_mixed = kl_of(jax.random.key(0), 0.1)
    assert float(pi_mixed.min()) >= 0.1 / 3 - 1e-6  # the uniform mixing floor
    spec = get_algorithm("demo_regularized_linear")
    config = dr.LinearConfig(episodes=5, demos=20, bc_steps=50)
    agent = spec.make(config, problem)
    _, curve = jax.jit(lambda k: _tabular.learning_curve(agent, k, default_hparams(spec, config), 5))(jax.random.key(1))
    assert np.all(np.isfinite(np.asarray(curve))) and float(curve.min()) >= -1e-4
