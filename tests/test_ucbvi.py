"""UCBVI / UCBVI-Ent (algorithms/ucbvi.py): bonuses on hand counts, the empirical model, backups against the
exact planners of hybrid_rl.tabular, optimism with the true model, and learning on a small lock."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import _tabular, ucbvi
from envs.combination_lock import TabularCombinationLock
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl import tabular


def _random_model(key, H=4, S=4, A=3):
    kp, kr = jax.random.split(key)
    P = jax.random.dirichlet(kp, jnp.ones(S), (H, S, A))
    R = jax.random.uniform(kr, (H, S, A))
    return _tabular.model_from_arrays(P, R, jnp.eye(S)[0], H)


def test_bonuses_on_hand_counts():
    n = jnp.array([[[1.0, 4.0]], [[0.0, 9.0]]])  # H=2, S=1, A=2
    H, S, A, K, delta, c = 2, 1, 2, 10, 0.1, 0.5
    b = np.asarray(_tabular.bonus(n, "hoeffding", c, delta, K))
    L = math.log(4 * H * S * A * K / delta)
    np.testing.assert_allclose(b[0, 0], [c * 2 * math.sqrt(L), c * 2 * math.sqrt(L / 4)], rtol=1e-5)
    assert np.isinf(b[1, 0, 0])
    np.testing.assert_allclose(b[1, 0, 1], c * 1 * math.sqrt(L / 9), rtol=1e-5)
    bk = np.asarray(_tabular.bonus(n, "kl", 1.0, delta, K))
    base = math.log(3 * S * A * H / delta)
    beta = lambda m: base + S * math.log(8 * math.e * (m + 1))  # noqa: E731
    beta_r = lambda m: base + math.log(8 * math.e * (m + 1))  # noqa: E731
    np.testing.assert_allclose(bk[0, 0, 1], 1 * math.sqrt(beta(4) / 8) + math.sqrt(beta_r(4) / 8), rtol=1e-5)
    np.testing.assert_allclose(bk[1, 0, 1], math.sqrt(beta_r(9) / 18), rtol=1e-5)  # last step: reward term only


def test_empirical_model_and_counts():
    n_sas = jnp.zeros((1, 2, 2, 2))
    r_sum = jnp.zeros((1, 2, 2))
    s, a, r, s2 = jnp.array([0]), jnp.array([1]), jnp.array([0.5]), jnp.array([1])
    for _ in range(3):
        n_sas, r_sum = _tabular.add_episode(n_sas, r_sum, s, a, r, s2)
    n_sas, r_sum = _tabular.add_episode(n_sas, r_sum, s, a, jnp.array([1.0]), jnp.array([0]))
    p_hat, r_hat, n = _tabular.empirical_model(n_sas, r_sum)
    np.testing.assert_allclose(p_hat[0, 0, 1], [0.25, 0.75])
    np.testing.assert_allclose(r_hat[0, 0, 1], 2.5 / 4)
    np.testing.assert_allclose(p_hat[0, 1, 0], [0.5, 0.5])  # unvisited: uniform
    np.testing.assert_allclose(_tabular.empirical_model(n_sas, r_sum, "zero")[0][0, 1, 0], [0.0, 0.0])
    assert float(n[0, 0, 1]) == 4


def test_backups_match_exact_planners_and_optimism():
    m = _random_model(jax.random.key(0))
    Q, V, pi = _tabular.optimistic_planning(m.P, m.R, jnp.zeros(()), clip=False)
    np.testing.assert_allclose(Q, m.Q_star, atol=1e-5)
    np.testing.assert_allclose(V, m.V_star, atol=1e-5)
    lam = 0.3
    Qs, Vs, pis = _tabular.optimistic_planning(m.P, m.R, jnp.zeros(()), lam, clip=False)
    Qt, Vt, pit = tabular.soft_value_iteration(m.P, m.R, m.H, lam)
    np.testing.assert_allclose(Vs, Vt, atol=1e-5)
    np.testing.assert_allclose(pis, pit, atol=1e-5)
    # Optimism: true model + any nonnegative bonus (clipped at H-h) dominates Q*.
    b = jax.random.uniform(jax.random.key(1), m.R.shape)
    Qb, _, _ = _tabular.optimistic_planning(m.P, m.R, b)
    assert np.all(np.asarray(Qb) >= np.asarray(m.Q_star) - 1e-5)


def test_sample_episode_follows_the_model():
    env = TabularCombinationLock(horizon=3, num_actions=2)
    P, R = env.to_tabular(env.default_params)
    m = _tabular.model_from_arrays(P, R, env.initial_distribution(env.default_params), 3)
    pi_star = jax.nn.one_hot(m.Q_star.argmax(-1), 2)
    s, a, r, s2 = _tabular.sample_episode(jax.random.key(0), m, pi_star)
    assert float(r.sum()) == 1.0 and np.all(np.asarray(s) == 0)
    np.testing.assert_allclose(float(m.value(pi_star)), float(m.v_star))


def test_ucbvi_and_ucbvi_ent_learn_a_small_lock():
    problem = build_problem("comblock_tabular", {"horizon": 5, "num_actions": 3})
    keys = jax.random.split(jax.random.key(0), 4)
    for name, config in [("ucbvi", ucbvi.Config(episodes=60)), ("ucbvi_ent", ucbvi.EntConfig(episodes=60, lam=0.01))]:
        spec = get_algorithm(name)
        agent = spec.make(config, problem)
        hp = default_hparams(spec, config)
        curve = jax.jit(jax.vmap(lambda k: _tabular.learning_curve(agent, k, hp, 60)[1]))(keys)
        assert float(curve[:, 0].mean()) > 0.9  # nothing known at K = 0
        assert float(curve[:, -1].max()) < 0.05, (name, np.asarray(curve[:, -1]))


def test_rejects_envs_without_a_finite_horizon_model():
    with pytest.raises(ValueError, match="finite-horizon"):
        ucbvi.make(ucbvi.Config(), build_problem("riverswim"))
