"""Hy-Q: the regression target by hand, a short run with per-seed locks, and (slow) solving the H=5 lock."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import hyq
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.runner import make_train


def test_regression_target_hand_computed():
    r = jnp.array([0.0, 0.1, 1.0])
    next_q = jnp.array([[0.2, 0.9, -1.0], [0.5, 0.4, 0.3], [7.0, 8.0, 9.0]])
    term = jnp.array([False, False, True])
    np.testing.assert_allclose(hyq.regression_target(r, term, next_q, False), [0.9, 0.6, 1.0], rtol=1e-6)
    np.testing.assert_allclose(hyq.regression_target(r, term, next_q, True), r)  # last level: y = r


def test_latent_q_is_bilinear_in_action_and_encoding():
    net = hyq.LatentQ(4, 3)
    params = net.init(jax.random.key(0), jnp.zeros((1, 8)))
    obs = jax.random.normal(jax.random.key(1), (5, 8))
    z = jax.nn.softmax(obs @ params["params"]["encoder"]["kernel"])
    expected = z @ params["params"]["w"].T + params["params"]["b"]
    np.testing.assert_allclose(net.apply(params, obs), expected, rtol=1e-5, atol=1e-6)


def _run(H, rounds, seeds, grad_steps, offline=200, eval_episodes=4):
    problem = build_problem("comblock_logits", {"horizon": H})
    cfg = hyq.Config(num_rounds=rounds, envs_per_level=10, offline_per_level=offline, grad_steps=grad_steps,
                     batch_size=64)
    agent = hyq.make(cfg, problem)
    hp = default_hparams(get_algorithm("hyq"), cfg)
    train = jax.jit(jax.vmap(make_train(agent, problem, num_evals=1, eval_episodes=eval_episodes), in_axes=(0, None)))
    return train(jax.random.split(jax.random.key(0), seeds), hp)


def test_short_run_per_seed_locks_and_buffers():
    state, metrics = _run(3, 2, 2, 5)
    assert not np.array_equal(state.env_params.opt_a[0], state.env_params.opt_a[1])
    assert state.offline["obs"].shape[:3] == (2, 3, 200)
    assert int(state.num_online[0]) == 20 and int(state.env_steps[0]) == 2 * 10 * 3 * 4 // 2
    assert np.all(np.isfinite(metrics[0]["q_loss"]))


@pytest.mark.slow
def test_hyq_solves_the_h5_lock():
    # 499 Adam steps per level per round (the official count) are needed. With 100 the per-level regressions
    # are left unfinished each round and some locks keep A and B confused at a level for all 30 rounds: seed 0
    # of this key ends at 0.2, and one extra round of 1000 steps (10 new tuples per level) brings it to 1.0,
    # so the data suffice and the fit does not. Seeds ending above 0.9, over four key sets of 8: 24/32 with
    # 100 steps, 29/32 with 200, 32/32 with 499 (all at 0.98 or above).
    _, metrics = _run(5, 30, 2, 499, offline=2000, eval_episodes=50)
    success = (np.asarray(metrics[0]["eval_returns"])[:, -1] >= 0.99).mean(-1)
    assert (success > 0.9).all(), success
