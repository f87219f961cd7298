"""R-BOCPD-UCRL2: no restart and UCRL2's exact trajectory on a stationary MDP, a planted change detected within a
bounded delay (and only after it), the reward-detector / local-reset options, and config validation."""

import functools

import jax
import numpy as np
import pytest

from algorithms import _ucrl2, rbocpd_ucrl2, ucrl2  # noqa: F401  (registers them)
from experiments.catalog import build_problem, default_hparams, get_algorithm


@functools.lru_cache(maxsize=None)
def problem(env, **kwargs):
    return build_problem(env, kwargs)


def curves(name, prob, num_seeds, num_steps, stride=500, **overrides):
    spec = get_algorithm(name)
    config = spec.config_cls(total_steps=num_steps, **overrides)
    agent = spec.make(config, prob)
    hp = default_hparams(spec, config)
    run = jax.jit(jax.vmap(lambda k: _ucrl2.regret_curve(agent, k, hp, num_steps, stride)))
    return run(jax.random.split(jax.random.key(0), num_seeds))


def test_stationary_riverswim_no_restart_and_exactly_ucrl2():
    prob = problem("riverswim", num_states=3)
    T = 10_000
    state, detected = curves("rbocpd_ucrl2", prob, 4, T)
    _, plain = curves("ucrl2", prob, 4, T)
    assert int(state.num_restarts.sum()) == 0
    np.testing.assert_array_equal(detected, plain)  # same keys, no restart: trajectory for trajectory


def test_planted_change_is_detected_within_a_bounded_delay():
    change = 4_000
    prob = problem("riverswim_switching", total_steps=8_000, change_times=(change,))  # one action swap
    state, curve = curves("rbocpd_ucrl2", prob, 8, 8_000)
    log = np.asarray(state.restart_log)
    first = log[:, 0]
    assert np.all(first >= change), f"restart before the change: {first}"
    assert np.all(first <= change + 500), f"detection delays {first - change}"
    assert np.all(np.asarray(state.num_restarts) == 1), log[:, :3]  # no false alarm after the restart
    # After the detection the fresh UCRL2 relearns: regret per step in the last quarter is small.
    late = (curve[:, -1] - curve[:, -5]) / 2_000
    assert float(late.mean()) < 0.2, late


def test_reward_detectors_catch_a_reward_only_change_with_local_resets():
    change = 3_000
    prob = problem("riverswim_switching", total_steps=6_000, change_times=(change,), change_type="reward")
    state, _ = curves("rbocpd_ucrl2", prob, 2, 6_000, reward_detectors=True, reset_scope="local")
    resets = np.asarray(state.variant.local_resets)
    assert np.all(resets >= 1), resets
    assert int(state.num_restarts.sum()) == 0  # local scope: no global restart
    # The reward that moved: (S-1, swim) paid 1 and now pays 0.1; its statistics were forgotten at detection,
    # so its mean reward estimate reflects the new segment.
    n, r = np.asarray(state.n_sa)[:, 2, 0], np.asarray(state.r_sum)[:, 2, 0]
    assert np.all(r / np.maximum(n, 1) < 0.5), (n, r)


def test_config_is_validated():
    spec = get_algorithm("rbocpd_ucrl2")
    prob = problem("riverswim", num_states=3)
    with pytest.raises(ValueError, match="reset_scope"):
        spec.make(spec.config_cls(reset_scope="partial"), prob)
    with pytest.raises(ValueError, match="threshold"):
        spec.make(spec.config_cls(threshold="bayes"), prob)
    with pytest.raises(ValueError, match="index observations"):
        spec.make(spec.config_cls(), problem("riverswim", num_states=3, obs_type="onehot"))
