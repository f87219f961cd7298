"""Optimistic actor-critic (algorithms/optimistic_ac.py): the closed-form actor, the critic with exact counts and
no bonus against value iteration, optimism with the true model, the switch-count bound, and learning."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import _tabular, ucbvi
from algorithms import optimistic_ac as oac
from experiments.catalog import build_problem, default_hparams, get_algorithm

SPEC = get_algorithm("optimistic_ac")


def _random_model(key, H=3, S=3, A=2):
    kp, kr = jax.random.split(key)
    P = jax.random.dirichlet(kp, jnp.ones(S), (H, S, A))
    R = jax.random.uniform(kr, (H, S, A))
    return _tabular.model_from_arrays(P, R, jnp.eye(S)[0], H)


def _run(config, model, seeds=4):
    agent = oac.make_agent(config, model)
    hp = default_hparams(SPEC, config)

    def one(k):
        st, m = jax.lax.scan(lambda s, _: agent.phases[0].iteration(s), agent.init(k, hp), None,
                             length=config.episodes)
        return st, m

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), seeds))


def test_closed_form_actor_equals_sequential_mirror_descent():
    f = jax.random.normal(jax.random.key(0), (2, 3, 4))
    pi = jnp.full((2, 3, 4), 0.25)
    for _ in range(7):
        pi = pi * jnp.exp(0.3 * f)
        pi = pi / pi.sum(-1, keepdims=True)
    np.testing.assert_allclose(oac.md_policy(f, 0.3, 7.0), pi, atol=1e-6)


def test_critic_with_exact_counts_and_no_bonus_is_value_iteration_and_optimism():
    m = _random_model(jax.random.key(1))
    n_sas, r_sum = m.P * 100.0, m.R * 100.0  # a generative model's counts with p_hat = P exactly
    f = oac.critic_fit(n_sas, r_sum, False, "hoeffding", 0.1, 0.05, 100)
    np.testing.assert_allclose(f, m.Q_star, atol=1e-5)
    f_up = oac.critic_fit(n_sas, r_sum, True, "hoeffding", 0.1, 0.05, 100)
    assert np.all(np.asarray(f_up) >= np.asarray(m.Q_star) - 1e-6)


def test_doubling_rule_and_switch_count_bound():
    n_last = jnp.array([0.0, 1.0, 3.0])
    assert not bool(oac.doubling_switch(jnp.array([0.0, 1.0, 5.0]), n_last))
    assert bool(oac.doubling_switch(jnp.array([1.0, 1.0, 3.0]), n_last))  # first visit
    assert bool(oac.doubling_switch(jnp.array([0.0, 1.0, 6.0]), n_last))  # doubled
    m = _random_model(jax.random.key(2))
    K = 200
    st, metrics = _run(oac.Config(episodes=K), m)
    bound = m.H * m.S * m.A * (1 + math.log2(K)) + 1
    assert int(st.num_switches.max()) <= bound
    assert int(st.num_switches.min()) < K // 4  # rare: far fewer switches than episodes
    np.testing.assert_allclose(metrics["switch"].sum(-1), st.num_switches)


def test_optimistic_ac_regret_is_sublinear_and_non_optimistic_fails_without_data():
    problem = build_problem("comblock_tabular", {"horizon": 6, "num_actions": 4})
    m = ucbvi.tabular_model(problem)
    K = 400
    st, metrics = _run(oac.Config(episodes=K), m)
    regret = np.asarray(metrics["cumulative_regret"]).mean(0)
    assert regret[-1] - regret[K // 2 - 1] < 0.35 * (K // 2), regret[[K // 2 - 1, -1]]
    st0, metrics0 = _run(oac.Config(episodes=K, optimistic=False), m)
    assert float(np.asarray(metrics0["cumulative_regret"])[:, -1].mean()) > 0.8 * K  # uniform play finds the reward w.p. 4^-6 per episode
    st1, metrics1 = _run(oac.Config(episodes=K, optimistic=False, offline_episodes=50), m)
    assert float(np.asarray(metrics1["cumulative_regret"])[:, -1].mean()) < regret[-1]


def test_runs_through_the_registry():
    problem = build_problem("comblock_tabular", {"horizon": 3, "num_actions": 2})
    agent = SPEC.make(oac.Config(episodes=5, offline_episodes=3), problem)
    state = agent.init(jax.random.key(0), default_hparams(SPEC, oac.Config()))
    assert float(state.n_sas.sum()) == 3 * 3
    with pytest.raises(ValueError, match="eta_rule"):
        SPEC.make(oac.Config(eta_rule="bad"), problem)


@pytest.mark.slow
def test_b1_claims_on_the_lock():
    """Figure B1's claims (i)-(iii) (docs/algorithms/optimistic_ac.md) at 8 seeds, K = 3000, H = 10, A = 4 (tabular)."""
    m = ucbvi.tabular_model(build_problem("comblock_tabular"))
    K = 3000
    final = {}
    for name, cfg in [("opt", oac.Config(episodes=K)), ("nonopt", oac.Config(episodes=K, optimistic=False)),
                      ("h5", oac.Config(episodes=K, optimistic=False, offline_episodes=5)),
                      ("h50", oac.Config(episodes=K, optimistic=False, offline_episodes=50))]:
        st, metrics = _run(cfg, m, seeds=8)
        final[name] = np.asarray(metrics["cumulative_regret"]).mean(0)
    assert final["nonopt"][-1] > 0.95 * K
    assert (final["opt"][-1] - final["opt"][K // 2 - 1]) / (K // 2) < 0.35
    assert final["h50"][-1] < final["h5"][-1] and final["h50"][-1] < final["opt"][-1]
