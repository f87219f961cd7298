"""SAC's loss pieces on hand-computed cases, and a learning test."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import _sac_core, sac
from hybrid_rl.types import Transition


class _FixedDist:
    def __init__(self, action, log_prob):
        self.action, self.lp = action, log_prob

    def sample_and_log_prob(self, seed):
        return self.action, self.lp


def _fake(apply_fn, params=None):
    return types.SimpleNamespace(apply_fn=apply_fn, params=params)


BATCH = Transition(
    obs=jnp.zeros((3, 1)),
    action=jnp.zeros((3, 1)),
    reward=jnp.array([1.0, 0.0, -1.0]),
    next_obs=jnp.zeros((3, 1)),
    terminated=jnp.array([False, True, False]),
    truncated=jnp.array([False, False, True]),  # a time-limit end still bootstraps
)


def test_soft_target_hand_computed():
    actor = _fake(lambda p, obs: _FixedDist(jnp.zeros((3, 1)), jnp.array([0.5, 0.5, -1.0])))
    next_q = jnp.array([[2.0, 4.0, 6.0], [3.0, 1.0, 5.0]])  # (E=2, B=3)
    critic = _fake(lambda p, obs, a: next_q)
    alpha = 0.2
    y = _sac_core.soft_target(jax.random.key(0), BATCH, actor, critic, None, jnp.log(alpha), 0.9, 2, True)
    # min over critics: [2, 1, 5]; soft value: min - alpha * logp = [1.9, 0.9, 5.2]
    expected = np.array([1.0 + 0.9 * 1.9, 0.0, -1.0 + 0.9 * 5.2])
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    y_no_entropy = _sac_core.soft_target(jax.random.key(0), BATCH, actor, critic, None, jnp.log(alpha), 0.9, 2, False)
    np.testing.assert_allclose(y_no_entropy, [1.0 + 0.9 * 2.0, 0.0, -1.0 + 0.9 * 5.0], rtol=1e-6)


def test_soft_target_random_subset_is_a_min_over_a_pair_of_members():
    actor = _fake(lambda p, obs: _FixedDist(jnp.zeros((3, 1)), jnp.zeros(3)))
    next_q = jnp.arange(10.0)[:, None] * jnp.ones((10, 3))  # member i predicts i everywhere
    critic = _fake(lambda p, obs, a: next_q)
    batch = BATCH.replace(reward=jnp.zeros(3), terminated=jnp.zeros(3, bool))
    values = set()
    for seed in range(20):
        y = _sac_core.soft_target(jax.random.key(seed), batch, actor, critic, None, 0.0, 1.0, 2, False)
        assert np.allclose(y, y[0])
        values.add(float(y[0]))
    # the min of 2 distinct members out of 0..9 is never 9 and varies across draws
    assert 9.0 not in values and len(values) > 2


def test_critic_loss_hand_computed():
    q = jnp.array([[1.0, 2.0, 3.0], [0.0, 2.0, 5.0]])
    critic = _fake(lambda p, obs, a: q * p)
    target = jnp.array([1.0, 1.0, 1.0])
    loss, _ = _sac_core.critic_loss(1.0, critic, BATCH, target)
    # squared errors: [0, 1, 4] and [1, 1, 16] -> mean 23/6
    np.testing.assert_allclose(loss, 23.0 / 6.0, rtol=1e-6)


def test_actor_loss_min_and_mean():
    actor = _fake(lambda p, obs: _FixedDist(jnp.zeros((2, 1)), jnp.array([-1.0, 1.0])))
    critic = _fake(lambda p, obs, a: jnp.array([[1.0, 4.0], [3.0, 2.0]]), params=None)
    alpha = 0.5
    loss_min, _ = _sac_core.actor_loss(None, jax.random.key(0), actor, critic, jnp.zeros((2, 1)), jnp.log(alpha), "min")
    np.testing.assert_allclose(loss_min, np.mean([0.5 * -1 - 1.0, 0.5 * 1 - 2.0]), rtol=1e-6)
    loss_mean, _ = _sac_core.actor_loss(None, jax.random.key(0), actor, critic, jnp.zeros((2, 1)), jnp.log(alpha), "mean")
    np.testing.assert_allclose(loss_mean, np.mean([-0.5 - 2.0, 0.5 - 3.0]), rtol=1e-6)


def test_temperature_rises_when_entropy_is_below_target():
    target_entropy = -1.0
    low_entropy_log_prob = jnp.array([2.0, 3.0])  # entropy ~ -2.5 < -1
    grad = jax.grad(_sac_core.temperature_loss)(jnp.float32(0.0), low_entropy_log_prob, target_entropy)
    assert grad < 0  # gradient descent increases log alpha
    high_entropy_log_prob = jnp.array([-3.0, -2.0])
    assert jax.grad(_sac_core.temperature_loss)(jnp.float32(0.0), high_entropy_log_prob, target_entropy) > 0


def test_config_errors_are_clear():
    from experiments.catalog import build_problem

    with pytest.raises(ValueError, match="continuous actions"):
        sac.make(sac.Config(), build_problem("cartpole"))
    with pytest.raises(ValueError, match="offline dataset"):
        sac.make(sac.Config(offline_fraction=0.5), build_problem("pendulum"))
    with pytest.raises(ValueError, match="num_min_critics"):
        sac.make(sac.Config(num_critics=2, num_min_critics=3), build_problem("pendulum"))


@pytest.mark.slow
@pytest.mark.parametrize("matmul_dtype", ["float32", "bfloat16"])
def test_sac_learns_pendulum_4_seeds(matmul_dtype):
    """Mean eval return above -400 within 20k env steps, 4 vmapped seeds, with float32 and with bfloat16
    matmul operands (the same threshold: the lower precision must not cost the learning).

    A broken critic target or actor sign stays near -1200 (random)."""
    from experiments.catalog import build_problem
    from hybrid_rl.runner import Runner, RunSettings

    config = sac.Config(total_steps=20_000, warmup_steps=2_000, hidden_sizes=(128, 128), batch_size=128,
                        matmul_dtype=matmul_dtype)
    problem = build_problem("pendulum")
    agent = sac.make(config, problem)
    runner = Runner(
        agent, problem, default_hparams_for(config), RunSettings(num_seeds=4, num_evals=4, eval_episodes=10, progress=False)
    )
    _, summary = runner.run()
    final = summary["0"]["final_eval_return_mean"]
    print("SAC pendulum final eval returns per seed:", summary["0"]["final_eval_return_per_seed"])
    assert final > -400, summary


def default_hparams_for(config):
    return {name: jnp.float32(getattr(config, name)) for name in sac.TRACED}
