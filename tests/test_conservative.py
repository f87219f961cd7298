"""The CQL family's shared conservative term (``algorithms/_conservative.py``): one importance-weighted
logsumexp for CQL and Cal-QL, checked by hand at a temperature other than 1, and the reward transform."""

import math

import jax.numpy as jnp
import numpy as np

from algorithms import _conservative, cal_ql, cql


def test_importance_logsumexp_by_hand_at_temperature_one_half():
    # Two actions, Q = (1, 2), log mu = (0, log 2), T = 0.5:
    # T log( exp((1 - 0) / T) + exp((2 - log 2) / T) ) = 0.5 log(e^2 + e^4 / 4).
    q = jnp.array([[1.0], [2.0]])
    log_mu = jnp.array([[0.0], [math.log(2.0)]])
    expected = 0.5 * math.log(math.exp(2.0) + math.exp(4.0) / 4.0)
    np.testing.assert_allclose(_conservative.importance_logsumexp(q, log_mu, 0.5)[0], expected, rtol=1e-6)
    # T = 2: 2 log(exp(1/2) + exp((2 - log 2)/2)) = 2 log(e^0.5 + e / sqrt 2).
    expected = 2.0 * math.log(math.exp(0.5) + math.e / math.sqrt(2.0))
    np.testing.assert_allclose(_conservative.importance_logsumexp(q, log_mu, 2.0)[0], expected, rtol=1e-6)


def test_cql_and_cal_ql_use_the_one_implementation():
    assert cql.importance_logsumexp is _conservative.importance_logsumexp
    assert cal_ql.importance_logsumexp is _conservative.importance_logsumexp
    assert cql.ood_logsumexp is _conservative.ood_logsumexp


def test_reward_transform():
    np.testing.assert_allclose(_conservative.scale_rewards(jnp.array([-1.0, 0.5]), 10.0, -5.0), [-15.0, 0.0])
