"""DARC's reward correction on hand-made logits; DARC and SAC-sim step the (shifted) simulator; RLPD-sim
builds and traces; clear errors."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_h2o import predicted_thdot, real_dataset, run_short

from algorithms import darc
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.types import Transition


def test_reward_correction_is_the_classifiers_log_ratio_difference():
    l_sa = jnp.array([[0.3, -1.0], [2.0, 0.0], [-0.5, 0.5]])
    l_sas = jnp.array([[1.0, -1.0], [0.0, 0.0], [-2.0, 1.5]])
    disc = types.SimpleNamespace(apply_fn=lambda params, x: params, params={"sa": l_sa, "sas": l_sas})
    batch = Transition(jnp.zeros((3, 2)), jnp.zeros((3, 1)), jnp.zeros(3), jnp.zeros((3, 2)),
                       jnp.zeros(3, bool), jnp.zeros(3, bool))
    dr = darc.reward_correction(disc, batch)
    # dr = log p(real|s,a,s') - log p(sim|s,a,s') - log p(real|s,a) + log p(sim|s,a), p(.|s,a,s') = softmax(l_sas + l_sa)
    log_p_sas = np.asarray(jax.nn.log_softmax(l_sas + l_sa))
    log_p_sa = np.asarray(jax.nn.log_softmax(l_sa))
    expected = log_p_sas[:, 0] - log_p_sas[:, 1] - log_p_sa[:, 0] + log_p_sa[:, 1]
    np.testing.assert_allclose(dr, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dr, [2.0, 0.0, -3.5], rtol=1e-6)


def test_defaults_are_the_official_choices_and_the_correction_waits_for_its_warmup():
    config = darc.Config(total_steps=8_000)
    assert (config.disc_hidden_sizes, config.logit_bound, config.disc_noise_std, config.reward_scale) == \
        ((32,), 0.0, 1.0, 0.1)
    assert darc.correction_warmup(config) == 800  # a tenth of the run (official: 1e5 of 1e6 steps)
    assert darc.correction_warmup(darc.Config(total_steps=8_000, correction_warmup_steps=5)) == 5
    # y's reward: 0.1 (r + eta dr) once the warm-up is over, 0.1 r before.
    r, dr = jnp.array([-2.0, 1.0]), jnp.array([0.5, -3.0])
    np.testing.assert_allclose(darc.corrected_reward(r, dr, 2.0, jnp.int32(799), 800, 0.1), [-0.2, 0.1], rtol=1e-6)
    np.testing.assert_allclose(darc.corrected_reward(r, dr, 2.0, jnp.int32(800), 800, 0.1), [-0.1, -0.5], rtol=1e-6)
    # Unbounded logits (official) vs H2O's 2 tanh.
    from algorithms._sim import BoundedClassifier

    x = 100.0 * jnp.ones((1, 3))
    for bound in (0.0, 2.0):
        net = BoundedClassifier((4,), bound)
        out = net.apply(net.init(jax.random.key(0), x), x)
        assert (np.abs(out).max() <= 2.0) == (bound == 2.0)
    old = darc.Config(**darc.H2O_STYLE)
    assert (old.disc_hidden_sizes, old.logit_bound, old.correction_warmup_steps, old.reward_scale) == \
        ((256, 256), 2.0, 0, 1.0)


@pytest.fixture(scope="module")
def pendulum_data(tmp_path_factory):
    return real_dataset(tmp_path_factory.mktemp("data") / "pendulum-real.hdf5", 1_000)


def test_darc_steps_the_sim_and_logs_a_finite_correction(pendulum_data):
    problem = build_problem("pendulum_gravity_2x", dataset=pendulum_data)
    config = darc.Config(total_steps=60, warmup_steps=0, hidden_sizes=(16, 16), disc_hidden_sizes=(16, 16),
                         batch_size=32, disc_batch_size=32, logit_bound=2.0)
    state, metrics = run_short("darc", config, problem)
    for key in ("reward_correction", "critic_loss", "disc_sas_loss", "eval_return"):
        assert np.all(np.isfinite(metrics[key])), key
    assert np.all(np.abs(metrics["reward_correction"]) <= 4.0)  # 2 tanh-bounded logits
    data = state.sac.buffer.data
    np.testing.assert_allclose(data.next_obs[0, 0][:, 2], predicted_thdot(data.obs[0, 0], data.action[0, 0], 20.0), atol=1e-3)


def test_sac_sim_trains_in_the_sim_with_a_traced_shift():
    problem = build_problem("pendulum_mass_2x")
    config = darc.SimSACConfig(total_steps=40, warmup_steps=0, hidden_sizes=(16, 16), batch_size=16)
    state, metrics = run_short("sac_sim", config, problem, hp_grid={"sim_shift": [-1.0, 3.0]})
    assert np.all(np.isfinite(metrics["eval_return"]))
    data = state.buffer.data
    for point, mass in enumerate([2.0, 3.0]):  # thdot' = thdot + (3 g / 2 sin th + 3 u / m) dt, g = 10
        obs, act, nxt = data.obs[point, 0], data.action[point, 0], data.next_obs[point, 0]
        expected = np.clip(obs[:, 2] + (15.0 * obs[:, 1] + 3.0 * 2.0 * act[:, 0] / mass) * 0.05, -8, 8)
        np.testing.assert_allclose(nxt[:, 2], expected, atol=1e-3)


def test_rlpd_sim_builds_and_traces(pendulum_data):
    problem = build_problem("pendulum_gravity_2x", dataset=pendulum_data)
    config = darc.SimRLPDConfig(total_steps=60, warmup_steps=30, hidden_sizes=(16, 16), batch_size=16,
                                num_critics=4, utd=2)
    spec = get_algorithm("rlpd_sim")
    agent = spec.make(config, problem)
    hp = default_hparams(spec, config)
    state = jax.eval_shape(agent.init, jax.random.key(0), hp)
    _, metrics = jax.eval_shape(agent.phases[1].iteration, state)
    assert "critic_loss" in metrics


def test_errors_name_what_is_missing(pendulum_data):
    with pytest.raises(ValueError, match="darc needs the real offline dataset"):
        darc.make(darc.Config(total_steps=10, warmup_steps=5), build_problem("pendulum_gravity_2x"))
    with pytest.raises(ValueError, match="sac_sim needs a sim/real env pair"):
        darc.make_sac_sim(darc.SimSACConfig(), build_problem("pendulum"))
    with pytest.raises(ValueError, match="rlpd_sim needs the real offline dataset"):
        darc.make_rlpd_sim(darc.SimRLPDConfig(), build_problem("pendulum_gravity_2x"))
