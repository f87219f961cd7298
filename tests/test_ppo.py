"""PPO: the clipped loss and GAE on hand-computed numbers, a short run on discrete and continuous envs,
and (slow) CartPole solved with PureJaxRL's settings."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import ppo
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.onpolicy import gae
from hybrid_rl.runner import make_train


def test_clipped_loss_hand_computed():
    ratio = jnp.array([1.5, 0.5, 1.0, 0.5])
    adv = jnp.array([1.0, 1.0, -2.0, -1.0])
    # min(rA, clip(r)A): 1.2 (clipped), 0.5, -2, -0.8 (clipped) -> mean -0.275
    value = jnp.array([1.0, 2.0, 3.0, 4.0])
    old_value = jnp.array([0.0, 2.0, 2.5, 4.0])
    returns = jnp.array([0.0, 0.0, 3.0, 5.0])
    # clipped values 0.2, 2, 2.7, 4: max of squared errors 1, 4, 0.09, 1 -> 0.5 * 6.09 / 4
    total, parts = ppo.ppo_loss(jnp.log(ratio), jnp.zeros(4), adv, value, old_value, returns, jnp.ones(4),
                                0.2, 0.5, 0.01, normalize_advantages=False)
    np.testing.assert_allclose(parts["policy_loss"], 0.275, rtol=1e-6)
    np.testing.assert_allclose(parts["value_loss"], 0.76125, rtol=1e-6)
    np.testing.assert_allclose(total, 0.275 + 0.5 * 0.76125 - 0.01, rtol=1e-6)
    np.testing.assert_allclose(parts["clip_fraction"], 0.75)


def test_gae_gamma_one_by_hand_and_truncation_bootstraps():
    r = jnp.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])  # (T=3, envs=2)
    v = jnp.array([[0.5, 0.5], [1.0, 1.0], [1.5, 1.5]])
    next_v = jnp.array([[1.0, 1.0], [1.5, 7.0], [9.0, 9.0]])  # env 1: 7 is V(true final obs) at its time limit
    term = jnp.array([[False, False], [False, False], [True, False]])
    trunc = jnp.array([[False, False], [False, True], [False, False]])
    adv, ret = gae(r, v, next_v, term, trunc, 1.0, 0.5)
    # env 0: deltas 1.5, 2.5, 1.5 (terminal: no bootstrap); A2 = 1.5, A1 = 2.5 + .5*1.5, A0 = 1.5 + .5*3.25
    # env 1: deltas 1.5, 2 + 7 - 1 = 8 (truncated: bootstraps, then cuts the trace), 3 + 9 - 1.5 = 10.5
    np.testing.assert_allclose(adv[:, 0], [3.125, 3.25, 1.5], rtol=1e-6)
    np.testing.assert_allclose(adv[:, 1], [5.5, 8.0, 10.5], rtol=1e-6)
    np.testing.assert_allclose(ret, adv + v, rtol=1e-6)


@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
def test_short_run_and_independent_seeds(env):
    problem = build_problem(env)
    cfg = ppo.Config(total_steps=2 * 4 * 16, num_steps=16, hidden_sizes=(8,))
    agent = ppo.make(cfg, problem)
    hp = default_hparams(get_algorithm("ppo"), cfg)
    keys = jax.random.split(jax.random.key(0), 2)
    states, metrics = jax.jit(jax.vmap(make_train(agent, problem, num_evals=1, eval_episodes=1), in_axes=(0, None)))(keys, hp)
    assert np.all(np.isfinite(metrics[0]["loss"]))
    assert int(states.env_steps[0]) == 2 * 4 * 16
    leaf = jax.flatten_util.ravel_pytree(agent.init(jax.random.key(1), hp).params)[0]
    other = jax.flatten_util.ravel_pytree(agent.init(jax.random.key(2), hp).params)[0]
    assert not np.allclose(leaf, other)  # seeds start from different networks


@pytest.mark.slow
def test_ppo_solves_cartpole_with_purejaxrl_settings():
    problem = build_problem("cartpole")
    cfg = ppo.Config()
    agent = ppo.make(cfg, problem)
    hp = default_hparams(get_algorithm("ppo"), cfg)
    train = jax.jit(make_train(agent, problem, num_evals=2, eval_episodes=10))
    _, metrics = train(jax.random.key(0), hp)
    assert float(metrics[0]["eval_return"][-1]) > 450
