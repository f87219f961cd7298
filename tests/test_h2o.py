"""H2O: discriminator losses, dynamics ratio, gap score, omega weights and the penalty on hand-made
numbers; a short run that checks the sim (with a traced shift) is what gets stepped; the learning test."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import _sim, h2o
from envs.scripted_experts import pendulum_expert
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.datasets import write_d4rl_hdf5
from hybrid_rl.datasets.rollout import rollout_d4rl
from hybrid_rl.runner import Runner, RunSettings, hparam_grid, make_train

# Cheap XLA settings for the short runs of the unit tests: a third of the compile time, and these runs are
# a few hundred tiny updates. (Only via ``Lowered.compile``; the Runner and the figure use the defaults.)
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def run_short(name, config, problem, num_seeds=2, hp_grid=None):
    """Runs every phase of ``name`` for ``num_seeds`` seeds (x an hparam grid) in one program like the Runner
    (leaves of the state have leading axes (hp point, seed)); returns (state, metrics of the last phase,
    each (hp point, seed, chunk))."""
    spec = get_algorithm(name)
    agent = spec.make(config, problem)
    stacked, _ = hparam_grid(default_hparams(spec, config), hp_grid or {})
    train = make_train(agent, problem, num_evals=1, eval_episodes=2)
    program = jax.jit(jax.vmap(jax.vmap(train, in_axes=(0, None)), in_axes=(None, 0)))
    keys = jax.random.split(jax.random.key(0), num_seeds)
    state, metrics = program.lower(keys, stacked).compile(compiler_options=FAST_COMPILE)(keys, stacked)
    return jax.device_get(state), jax.device_get(metrics[-1])


def _neg_log_softmax(logits, k):
    logits = np.asarray(logits, np.float64)
    return -(logits[..., k] - np.log(np.exp(logits).sum(-1)))


# ------------------------------------------------------------------------------------------------
# Discriminators and the dynamics ratio
# ------------------------------------------------------------------------------------------------


def test_classifier_losses_on_hand_made_logits():
    l_sa_real = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    l_sas_real = jnp.array([[0.0, 1.0], [0.5, -0.5]])
    l_sa_sim = jnp.array([[0.0, 0.0], [-1.0, 1.0]])
    l_sas_sim = jnp.array([[-1.0, 1.0], [2.0, 0.0]])
    loss_sa, loss_sas = _sim.classifier_losses(l_sa_real, l_sas_real, l_sa_sim, l_sas_sim)
    # L_sa: real rows want class 0, sim rows class 1; the two means are summed
    expected_sa = np.mean([math.log(1 + math.exp(-1)), math.log(1 + math.exp(2))]) + np.mean(
        [math.log(2), math.log(1 + math.exp(-2))]
    )
    np.testing.assert_allclose(loss_sa, expected_sa, rtol=1e-6)
    # L_sas uses softmax(l_sas + l_sa): real sums [1, 1] and [0.5, 1.5]; sim sums [-1, 1] and [1, 1]
    expected_sas = np.mean([math.log(2), math.log(1 + math.exp(1))]) + np.mean(
        [math.log(1 + math.exp(-2)), math.log(2)]
    )
    np.testing.assert_allclose(loss_sas, expected_sas, rtol=1e-6)
    # D_sa also receives the (s, a, s') loss's gradient
    grad_sa = jax.grad(lambda l: _sim.classifier_losses(l, l_sas_real, l_sa_sim, l_sas_sim)[1])(l_sa_real)
    assert np.abs(grad_sa).sum() > 0


def test_discriminator_loss_is_summed_and_noise_free_without_noise():
    net = _sim.BoundedClassifier((8,), 2.0)
    params = {"sa": net.init(jax.random.key(0), jnp.zeros((1, 3))),
              "sas": net.init(jax.random.key(1), jnp.zeros((1, 5)))}
    from hybrid_rl.types import Transition

    def batch(seed):
        k = jax.random.split(jax.random.key(seed), 3)
        return Transition(jax.random.normal(k[0], (6, 2)), jax.random.normal(k[1], (6, 1)), jnp.zeros(6),
                          jax.random.normal(k[2], (6, 2)), jnp.zeros(6, bool), jnp.zeros(6, bool))

    real, sim = batch(2), batch(3)
    total, (loss_sa, loss_sas) = _sim.discriminator_loss(params, net.apply, real, sim, jax.random.key(4), 0.0)
    l_sa_r, l_sas_r = _sim.discriminator_logits(net.apply, params, real.obs, real.action, real.next_obs)
    l_sa_s, l_sas_s = _sim.discriminator_logits(net.apply, params, sim.obs, sim.action, sim.next_obs)
    np.testing.assert_allclose(total, loss_sa + loss_sas, rtol=1e-6)
    np.testing.assert_allclose(loss_sa, _neg_log_softmax(l_sa_r, 0).mean() + _neg_log_softmax(l_sa_s, 1).mean(),
                               rtol=1e-5)
    noisy, _ = _sim.discriminator_loss(params, net.apply, real, sim, jax.random.key(4), 0.1)
    assert noisy != total  # input noise is applied while training


def test_dynamics_ratio_is_exp_of_the_sas_logit_difference_and_clipped():
    key = jax.random.key(0)
    l_sa = jax.random.normal(key, (50, 2)) * 2.0
    l_sas = jnp.clip(jax.random.normal(jax.random.key(1), (50, 2)) * 2.0, -2.0, 2.0)
    # the full classifiers' ratio [p(real|sas) / p(sim|sas)] / [p(real|sa) / p(sim|sa)] is exp(l_sas,0 - l_sas,1)
    p_sas = jax.nn.softmax(l_sas + l_sa)
    p_sa = jax.nn.softmax(l_sa)
    full = (p_sas[:, 0] * p_sa[:, 1]) / (p_sas[:, 1] * p_sa[:, 0])
    np.testing.assert_allclose(jnp.exp(_sim.log_dynamics_ratio(l_sas)), full, rtol=1e-4)
    log_w = h2o.clipped_log_ratio(l_sas, 1e-5, 1.0)
    w = jnp.exp(log_w)
    expected = np.clip(np.exp(np.asarray(l_sas[:, 0] - l_sas[:, 1], np.float64)), 1e-5, 1.0)
    np.testing.assert_allclose(w, expected, rtol=1e-5)
    hand = jnp.exp(h2o.clipped_log_ratio(jnp.array([[2.0, -2.0], [-2.0, 2.0], [-1.0, 0.5]]), 1e-5, 1.0))
    np.testing.assert_allclose(hand, [1.0, math.exp(-4.0), math.exp(-1.5)], rtol=1e-6)
    # a bounded (2 tanh) discriminator keeps w in [e^-4, 1] even on wild inputs
    net = _sim.BoundedClassifier((16, 16), 2.0)
    params = net.init(jax.random.key(2), jnp.zeros((1, 7)))
    logits = net.apply(params, 1e3 * jax.random.normal(jax.random.key(3), (500, 7)))
    w = jnp.exp(h2o.clipped_log_ratio(logits, 1e-5, 1.0))
    assert float(jnp.abs(logits).max()) <= 2.0
    assert float(w.min()) >= math.exp(-4.0) * (1 - 1e-5) and float(w.max()) <= 1.0


def test_gap_score_averages_the_sim_over_real_log_ratio_over_noisy_next_states():
    def fake_apply(params, x):  # l_sas,1 - l_sas,0 = first coordinate of s' (the last 2 inputs are s')
        return jnp.stack([jnp.zeros(x.shape[:-1]), x[..., -2]], axis=-1) if params == "sas" else jnp.zeros(x.shape[:-1] + (2,))

    params = {"sa": "sa", "sas": "sas"}
    obs, action = jnp.ones((4, 2)), jnp.zeros((4, 1))
    next_obs = jnp.array([[0.5, 0.0], [-1.0, 0.0], [2.0, 0.0], [0.0, 0.0]])
    u = h2o.gap_score(fake_apply, params, obs, action, next_obs, jax.random.key(0), jnp.zeros(2), 10)
    np.testing.assert_allclose(u, next_obs[:, 0], atol=1e-6)
    noisy = h2o.gap_score(fake_apply, params, obs, action, next_obs, jax.random.key(0), jnp.ones(2), 10)
    assert 0.0 < float(jnp.abs(noisy - next_obs[:, 0]).max()) < 3.0  # mean of 10 N(0, 1) draws


# ------------------------------------------------------------------------------------------------
# omega and the penalty
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "u,expected",
    [
        ([1.0, 2.0, 3.0, 4.0], [0.1, 0.2, 0.3, 0.4]),  # all positive
        ([-1.0, 0.0, 2.0, 6.0], [0.0, 0.0, 0.25, 0.75]),  # some positive: the others get exactly 0
        ([-1.0, -2.0, 0.0, -0.5], [0.25, 0.25, 0.25, 0.25]),  # none positive: uniform
        ([1e-45, 0.0, -3.0, 0.0], None),  # float32 denormal: flushed or not, never 0/0
        ([1e-30, 1e3, 1e-38, 5.0], None),
    ],
)
def test_omega_weights_never_nan_and_sum_to_one(u, expected):
    log_om = jax.jit(h2o.log_omega)(jnp.asarray(u, jnp.float32))
    omega = np.asarray(jnp.exp(log_om))
    assert not np.any(np.isnan(np.asarray(log_om)))
    np.testing.assert_allclose(omega.sum(), 1.0, rtol=1e-5)
    assert np.all(omega[np.asarray(u) <= 0] == 0) or np.all(np.asarray(u) <= 1e-44)
    if expected is not None:
        np.testing.assert_allclose(omega, expected, rtol=1e-5, atol=1e-7)


def test_penalty_with_uniform_omega_is_logsumexp_minus_log_b_minus_mean_real_q():
    k1, k2 = jax.random.split(jax.random.key(0))
    q_real = jax.random.normal(k1, (2, 5)) * 3.0
    q_sim = jax.random.normal(k2, (2, 8)) * 3.0 + 1.0
    uniform = h2o.log_omega(jnp.full((8,), -1.0))  # no positive gap -> uniform
    penalty, bracket = h2o.h2o_penalty(q_real, q_sim, uniform, 0.01, 1000.0)
    expected = jax.nn.logsumexp(q_sim, axis=-1) - math.log(8) - q_real.mean(axis=-1)
    np.testing.assert_allclose(bracket, expected, rtol=1e-5)
    np.testing.assert_allclose(penalty, 0.01 * expected.mean(), rtol=1e-5)
    # the clip bounds the bracket
    big, _ = h2o.h2o_penalty(q_real, q_sim + 5e3, uniform, 1.0, 1000.0)
    assert float(big) == pytest.approx(1000.0)


def test_penalty_gradient_is_finite_with_zero_weights_and_pushes_real_q_up():
    log_om = h2o.log_omega(jnp.array([-1.0, 0.0, 2.0, 0.5]))
    q_real, q_sim = jnp.zeros((2, 3)), jnp.array([[1.0, 2.0, 3.0, 4.0]] * 2)
    g_real, g_sim = jax.grad(lambda a, b: h2o.h2o_penalty(a, b, log_om, 1.0, 1000.0)[0], argnums=(0, 1))(q_real, q_sim)
    assert np.all(np.isfinite(g_real)) and np.all(np.isfinite(g_sim))
    assert np.all(np.asarray(g_real) < 0)  # descending the penalty raises real-data Q
    np.testing.assert_array_equal(np.asarray(g_sim)[:, :2], 0.0)  # zero-gap sim pairs are not pushed down
    assert np.all(np.asarray(g_sim)[:, 2:] > 0)


def test_bellman_weights_give_mean_real_plus_weighted_mean_sim():
    err = jnp.array([1.0, 3.0, 2.0, 4.0, 6.0])  # 2 real rows, 3 sim rows
    log_w = jnp.log(jnp.array([1.0, 0.5, 0.25]))
    weights = h2o.bellman_weights(log_w, 2)
    np.testing.assert_allclose((weights * err).mean(), 2.0 + (2.0 + 2.0 + 1.5) / 3, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# A short run: the sim (with the traced shift) is what H2O steps; metrics are logged; errors are clear
# ------------------------------------------------------------------------------------------------


def _noisy_expert(p_random):
    def act(obs, key):
        k_coin, k_u = jax.random.split(key)
        random = jax.random.uniform(k_u, (1,), minval=-2.0, maxval=2.0)
        return jnp.where(jax.random.uniform(k_coin) < p_random, random, pendulum_expert(obs))

    return act


def real_dataset(path, size, p_random=0.5, seed=0):
    """A small medium-replay-like real set: the scripted expert with 50% uniform random actions."""
    data = rollout_d4rl(build_problem("pendulum_gravity_2x"), _noisy_expert(p_random), jax.random.key(seed),
                        num_steps=size, num_envs=10)
    write_d4rl_hdf5(path, data, {"ref_min_return": -1200.0, "ref_max_return": -150.0})
    return path


@pytest.fixture(scope="module")
def pendulum_data(tmp_path_factory):
    return real_dataset(tmp_path_factory.mktemp("data") / "pendulum-real.hdf5", 1_000)


def predicted_thdot(obs, action, g):
    """gymnax Pendulum: thdot' = clip(thdot + (3 g / 2 sin th + 3 u) dt, -8, 8), u = 2 * action, dt = 0.05."""
    return np.clip(obs[..., 2] + (1.5 * g * obs[..., 1] + 3.0 * 2.0 * action[..., 0]) * 0.05, -8.0, 8.0)


def test_short_run_steps_the_shifted_sim_and_logs_gap_metrics(pendulum_data):
    problem = build_problem("pendulum_gravity_2x", dataset=pendulum_data)
    config = h2o.Config(total_steps=100, hidden_sizes=(16, 16), disc_hidden_sizes=(16, 16), batch_size=32,
                        disc_batch_size=32)
    state, metrics = run_short("h2o", config, problem, hp_grid={"sim_shift": [-1.0, 1.0, 1.5]})
    for key in ("gap_score", "sim_weight", "critic_loss", "disc_sas_loss", "penalty_bracket", "eval_return"):
        assert np.all(np.isfinite(metrics[key])), key
    assert np.all((metrics["sim_weight"] >= math.exp(-4) - 1e-6) & (metrics["sim_weight"] <= 1.0))
    data = state.sac.buffer.data
    assert int(state.sac.buffer.size[0, 0]) == 100
    # each hparam point's sim has its own gravity: -1 -> the registered 2x (g = 20), then 10 and 15
    for point, g in enumerate([20.0, 10.0, 15.0]):
        obs, act, nxt = data.obs[point, 0], data.action[point, 0], data.next_obs[point, 0]
        np.testing.assert_allclose(nxt[:, 2], predicted_thdot(obs, act, g), atol=1e-3)


def test_errors_name_what_is_missing(pendulum_data):
    with pytest.raises(ValueError, match="needs a sim/real env pair.*pendulum_gravity_2x"):
        h2o.make(h2o.Config(), build_problem("pendulum", dataset=pendulum_data))
    with pytest.raises(ValueError, match="needs the real offline dataset"):
        h2o.make(h2o.Config(), build_problem("pendulum_gravity_2x"))
    with pytest.raises(ValueError, match="weighting"):
        h2o.make(h2o.Config(weighting="bogus"), build_problem("pendulum_gravity_2x", dataset=pendulum_data))


def test_mismatched_dataset_is_one_line_naming_both_shapes(tmp_path):
    from envs.scripted_experts import cartpole_expert
    from hybrid_rl.datasets import DatasetError

    data = rollout_d4rl(build_problem("cartpole"), cartpole_expert, jax.random.key(0), 200, num_envs=2)
    path = write_d4rl_hdf5(tmp_path / "cartpole.hdf5", data)
    with pytest.raises(DatasetError) as err:
        build_problem("pendulum_gravity_2x", dataset=path)
    message = str(err.value)
    assert "\n" not in message and "(4,)" in message and "(3,)" in message, message


# ------------------------------------------------------------------------------------------------
# Learning test
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_h2o_beats_sac_sim_on_the_real_pendulum_with_gravity_2x_sim(tmp_path):
    """Real data: 5k transitions of the scripted expert with 50% uniform random actions (nominal gravity).
    SAC trained in the g x2 simulator transfers badly (about -1300 in the real env after 5k steps); H2O,
    which also sees the real data, should be far better. 4 seeds each, one program per algorithm.
    Measured (idle 2-core CPU, 45 s): H2O -714 / -543 / -919 / -631, SAC-sim -1388 / -1188 / -1234 / -1368."""
    from algorithms import darc

    problem = build_problem("pendulum_gravity_2x", dataset=real_dataset(tmp_path / "real.hdf5", 5_000))
    common = dict(total_steps=5_000, hidden_sizes=(64, 64))
    results = {}
    for name, config in [("h2o", h2o.Config(disc_hidden_sizes=(64, 64), **common)),
                         ("sac_sim", darc.SimSACConfig(warmup_steps=1_000, **common))]:
        spec = get_algorithm(name)
        runner = Runner(spec.make(config, problem), problem, default_hparams(spec, config),
                        RunSettings(num_seeds=4, num_evals=2, eval_episodes=10, progress=False))
        _, summary = runner.run()
        results[name] = summary["0"]["final_eval_return_per_seed"]
    print("final real-env returns per seed:", results)
    h2o_mean, sac_sim_mean = np.mean(results["h2o"]), np.mean(results["sac_sim"])
    assert h2o_mean > sac_sim_mean + 300, results
