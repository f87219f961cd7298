"""LSVI-UCB and the linear optimistic actor-critic (algorithms/lsvi_ucb.py, optimistic_ac_linear): one-hot features
reproduce the tabular empirical backup, per-step weights, clipping, the determinant-doubling switch bound, learning."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from algorithms import _tabular, lsvi_ucb, ucbvi
from algorithms import optimistic_ac as oac
from experiments.catalog import build_problem, default_hparams, get_algorithm


def _random_episodes(key, model, n):
    pi = jnp.full((model.H, model.S, model.A), 1.0 / model.A)
    return jax.vmap(lambda k: _tabular.sample_episode(k, model, pi))(jax.random.split(key, n))


def test_onehot_features_reproduce_the_tabular_empirical_backup():
    problem = build_problem("linear_mdp", {"num_states": 4, "num_actions": 2, "dim": 3, "horizon": 3})
    model = ucbvi.tabular_model(problem)
    S, A, H = model.S, model.A, model.H
    phi = jnp.eye(S * A).reshape(S, A, S * A)
    s, a, r, s2 = _random_episodes(jax.random.key(0), model, 200)
    def body(i, carry):
        stats, n_sas, r_sum = carry
        return (lsvi_ucb.add_to_stats(stats, phi, s[i], a[i], r[i], s2[i]),
                *_tabular.add_episode(n_sas, r_sum, s[i], a[i], r[i], s2[i]))

    init = (lsvi_ucb.init_stats(H, S * A, S), jnp.zeros((H, S, A, S)), jnp.zeros((H, S, A)))
    stats, n_sas, r_sum = jax.jit(lambda c: jax.lax.fori_loop(0, 200, body, c))(init)
    Q, V = lsvi_ucb.lsvi(stats, phi, 0.0, 1e-6, clip="H")
    p_hat, r_hat, n = _tabular.empirical_model(n_sas, r_sum, unvisited="zero")
    Qt, Vt, _ = _tabular.optimistic_planning(p_hat, r_hat, jnp.zeros(()), clip=False)
    visited = np.asarray(n) > 0
    np.testing.assert_allclose(np.asarray(Q)[visited], np.asarray(Qt)[visited], atol=1e-3)
    # Per-step weights: the values depend on the remaining horizon, so Q_0 != Q_{H-1}.
    assert not np.allclose(Q[0], Q[H - 1])
    # Clipping: a huge bonus gives Q_h = H - h ("step") or H.
    Qc, _ = lsvi_ucb.lsvi(stats, phi, 1e6, 1.0, clip="step")
    np.testing.assert_allclose(Qc, np.broadcast_to((H - np.arange(H))[:, None, None], Qc.shape))
    QH, _ = lsvi_ucb.lsvi(stats, phi, 1e6, 1.0, clip="H")
    np.testing.assert_allclose(QH, H)


def test_determinant_doubling_switches_are_within_the_bound_and_hybrid_data_enter():
    problem = build_problem("linear_mdp", {"num_states": 6, "num_actions": 3, "dim": 4, "horizon": 4})
    spec = get_algorithm("optimistic_ac_linear")
    K = 150
    for config in (oac.LinearConfig(episodes=K), oac.LinearConfig(episodes=K, optimistic=False, offline_episodes=10)):
        agent = spec.make(config, problem)
        hp = default_hparams(spec, config)

        def one(k):
            st, m = jax.lax.scan(lambda s, _: agent.phases[0].iteration(s), agent.init(k, hp), None, length=K)
            return st.num_switches, m["cumulative_regret"][-1], agent.init(k, hp).stats.gram.sum()

        switches, regret, offline_mass = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(1), 4))
        d, H, reg = 4, 4, 1.0
        bound = H * d * math.log2(1 + (K + config.offline_episodes) / (reg * d)) + H + 1
        assert int(switches.max()) <= bound and int(switches.min()) >= 1
        assert np.all(np.isfinite(np.asarray(regret)))
        if config.offline_episodes:
            assert float(offline_mass.min()) > 0


def test_lsvi_ucb_learns_the_low_rank_lock():
    problem = build_problem("comblock_tabular", {"horizon": 5, "num_actions": 3})
    spec = get_algorithm("lsvi_ucb")
    config = lsvi_ucb.Config(episodes=300, features="lowrank", beta_scale=0.01)
    agent = spec.make(config, problem)
    hp = default_hparams(spec, config)
    curve = jax.jit(jax.vmap(lambda k: _tabular.learning_curve(agent, k, hp, 300, "regret_increment")[1]))(
        jax.random.split(jax.random.key(0), 4))
    curve = np.asarray(curve)
    assert curve[:, :20].mean() > 0.9 and curve[:, -50:].mean() < 0.1, (curve[:, :20].mean(), curve[:, -50:].mean())
