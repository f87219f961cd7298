"""CQL: the importance-sampled logsumexp against an exact integral on a 1-D action space, the penalty on
hand-made numbers, and a short offline run with the Lagrange multiplier moving the right way."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_h2o import run_short

from algorithms import cql
from envs.scripted_experts import pendulum_expert
from experiments.catalog import build_problem
from hybrid_rl.datasets import write_d4rl_hdf5
from hybrid_rl.datasets.rollout import rollout_d4rl
from hybrid_rl.networks import TanhGaussianPolicy


def q_of_action(a):
    return 2.0 * jnp.sin(3.0 * a) + a**2


def exact_log_integral(temp=1.0):
    """log integral_{-1}^{1} exp(Q(a) / T) da by the trapezoid rule on 200001 points (exact to ~1e-9)."""
    grid = np.linspace(-1.0, 1.0, 200_001)
    values = np.exp(np.asarray(q_of_action(grid), np.float64) / temp)
    return math.log(np.trapezoid(values, grid))


def test_importance_logsumexp_with_uniform_actions_matches_the_exact_integral():
    n = 50_000
    a = jax.random.uniform(jax.random.key(0), (n, 1), minval=-1.0, maxval=1.0)
    q = q_of_action(a)
    for temp in (1.0, 0.5):
        # The official form divides log mu by T too: with a uniform proposal (mu = 1/2) that is the
        # importance-sampling estimate of T log integral exp(Q/T) da plus (1 - T) log 2 (0 at T = 1).
        estimate = cql.importance_logsumexp(q, jnp.full((n, 1), -math.log(2.0)), temp) - temp * math.log(n)
        np.testing.assert_allclose(estimate[0], temp * exact_log_integral(temp) + (1 - temp) * math.log(2.0),
                                   atol=0.03)


def test_cql_estimator_with_its_three_proposals_matches_the_exact_integral():
    """ood_logsumexp (uniform, pi(.|s), pi(.|s') proposals, each weighted by its own density) minus log 3N
    estimates log integral exp Q(s, a) da on a 1-D action space."""
    net = TanhGaussianPolicy(1, (8,))
    actor = types.SimpleNamespace(apply_fn=net.apply, params=net.init(jax.random.key(1), jnp.zeros((1, 2))))
    critic_apply = lambda params, obs, action: jnp.stack([q_of_action(action[..., 0]), 0.5 * q_of_action(action[..., 0])])  # noqa: E731
    obs = jax.random.normal(jax.random.key(2), (3, 2))
    n = 20_000
    lse = cql.ood_logsumexp(critic_apply, None, actor, obs, obs + 1.0, jax.random.key(3), n, 1.0)
    assert lse.shape == (2, 3)
    exact_full = exact_log_integral()
    grid = np.linspace(-1.0, 1.0, 200_001)
    exact_half = math.log(np.trapezoid(np.exp(0.5 * np.asarray(q_of_action(grid), np.float64)), grid))
    np.testing.assert_allclose(lse[0] - math.log(3 * n), exact_full, atol=0.05)
    np.testing.assert_allclose(lse[1] - math.log(3 * n), exact_half, atol=0.05)


class _FixedDist:
    def __init__(self, action, log_prob):
        self.action, self.log_prob = action, log_prob

    def sample_and_log_prob(self, seed, sample_shape):
        n = sample_shape
        return jnp.broadcast_to(self.action, (n,) + self.action.shape), jnp.broadcast_to(self.log_prob, (n,) + self.log_prob.shape)


def test_penalty_on_hand_made_numbers():
    # a constant critic c: every term of the logsumexp is c - log mu, with mu = 1/2 (uniform on [-1, 1]),
    # exp(-1) (pi at s) and exp(0.5) (pi at s'); N = 2 of each
    c = 1.5
    actor = types.SimpleNamespace(
        apply_fn=lambda p, obs: _FixedDist(jnp.zeros((obs.shape[0], 1)), jnp.where(obs[:, 0] > 5, 0.5, -1.0)),
        params=None,
    )
    critic_apply = lambda params, obs, action: jnp.full((1,) + action.shape[:-1], c)  # noqa: E731
    obs, next_obs = jnp.zeros((4, 1)), jnp.full((4, 1), 10.0)
    q_data = jnp.array([[0.0, 1.0, 2.0, 3.0]])
    value, gap = cql.cql_penalty(critic_apply, None, q_data, actor, obs, next_obs, jax.random.key(0), 2, 1.0, 5.0)
    terms = np.array([c + math.log(2.0)] * 2 + [c + 1.0] * 2 + [c - 0.5] * 2)
    lse = math.log(np.exp(terms).sum())
    np.testing.assert_allclose(gap, [lse - 1.5], rtol=1e-5)
    np.testing.assert_allclose(value, 5.0 * (lse - 1.5), rtol=1e-5)
    # the gradient raises Q on the data (descent direction) and lowers it on the sampled actions
    g = jax.grad(lambda q: cql.cql_penalty(critic_apply, None, q, actor, obs, next_obs, jax.random.key(0), 2, 1.0, 5.0)[0])(q_data)
    np.testing.assert_allclose(g, np.full((1, 4), -5.0 / 4), rtol=1e-6)


@pytest.fixture(scope="module")
def pendulum_data(tmp_path_factory):
    data = rollout_d4rl(build_problem("pendulum"), pendulum_expert, jax.random.key(0), num_steps=1_000, num_envs=4)
    path = tmp_path_factory.mktemp("data") / "pendulum-expert.hdf5"
    write_d4rl_hdf5(path, data, {"ref_min_return": -1200.0, "ref_max_return": -150.0})
    return path


def test_offline_run_never_steps_the_env_and_lagrange_moves_alpha_prime_toward_the_target(pendulum_data):
    problem = build_problem("pendulum", dataset=pendulum_data)
    config = cql.Config(total_steps=60, hidden_sizes=(16, 16), batch_size=32, cql_num_actions=4,
                        cql_lagrange=True, cql_alpha_lr=0.05)
    state, metrics = run_short("cql", config, problem, hp_grid={"cql_target_gap": [-1000.0, 1000.0]})
    assert int(np.asarray(state.sac.env_steps).max()) == 0  # offline: the env is only used to evaluate
    for key in ("critic_loss", "bellman_loss", "cql_gap", "actor_loss", "eval_return"):
        assert np.all(np.isfinite(metrics[key])), key
    log_alpha_prime = np.asarray(state.log_alpha_prime.params["log_alpha_prime"])
    assert np.all(log_alpha_prime[0] > 0.5)  # gap above a target of -1000: more conservatism
    assert np.all(log_alpha_prime[1] < -0.5)  # gap below a target of +1000: less


def test_needs_a_dataset():
    with pytest.raises(ValueError, match="cql needs an offline dataset"):
        cql.make(cql.Config(), build_problem("pendulum"))
