"""Brax locomotion behind gymnax's interface: shapes, determinism, traced gravity/friction, time limits.

Skipped without the brax extra (CI installs ``.[test]`` only), except the test of the missing-extra error.
One jitted, vmapped rollout (module fixture) serves most tests, so Brax compiles once.
"""

from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import brax_envs

T = 12  # steps per rollout
TRUNC = 5  # the time limit of the last env in the batch


def _rollout(env, params, key, actions):
    """``T`` steps of fixed actions: per step the returned obs, final obs, reward, flags, discount."""
    k_reset, k_run = jax.random.split(key)
    obs, state = env.reset(k_reset, params)

    def body(carry, xs):
        obs, state = carry
        k, a = xs
        obs2, state2, r, term, trunc, info = env.step(k, state, a, params)
        return (obs2, state2), (obs2, info["final_observation"], r, term, trunc, info["discount"], state2.time)

    return obs, jax.lax.scan(body, (obs, state), (jax.random.split(k_run, T), actions))[1]


@pytest.fixture(scope="module")
def hopper():
    pytest.importorskip("brax")
    env, params, spec = envs.make_env("brax_hopper")
    return env, params, spec


@pytest.fixture(scope="module")
def batch(hopper):
    """4 hoppers in one vmapped program: [nominal, nominal, gravity x2, nominal with a 5-step limit], all
    with the same reset key and the same small random actions."""
    env, params, _ = hopper
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *[
        params, params, params.replace(gravity_scale=jnp.float32(2.0)), params.replace(max_steps_in_episode=TRUNC)
    ])
    actions = 0.1 * jax.random.uniform(jax.random.key(3), (T, env.action_size), minval=-1.0, maxval=1.0)
    run = jax.jit(jax.vmap(functools.partial(_rollout, env), in_axes=(0, None, None)))
    first = run(stacked, jax.random.key(0), actions)
    again = run(stacked, jax.random.key(0), actions)
    return jax.device_get(first), jax.device_get(again)


def test_shapes_spaces_and_params(hopper):
    env, params, spec = hopper
    assert spec.action_kind == "continuous" and "brax" in spec.tags
    assert env.backend == "positional" and env.obs_shape == (11,) and env.action_size == 3
    space = env.action_space(params)
    assert space.shape == (3,) and float(space.low) == -1.0 and float(space.high) == 1.0
    assert int(params.max_steps_in_episode) == 1000
    assert float(params.gravity_scale) == 1.0 and float(params.friction_scale) == 1.0


def test_rollout_shapes_determinism_and_gravity(batch):
    (obs0, (obs, final, r, term, trunc, disc, time)), again = batch
    assert obs0.shape == (4, 11) and obs.shape == (4, T, 11) and r.shape == (4, T)
    assert obs.dtype == np.float32 and r.dtype == np.float32 and term.dtype == np.bool_
    assert np.isfinite(obs).all() and np.isfinite(r).all()
    # Same key, same params, same actions: identical trajectories, within a batch and across calls.
    np.testing.assert_array_equal(final[0], final[1])
    jax.tree.map(np.testing.assert_array_equal, batch[0], again)
    # Gravity x2 (traced: the same compiled program) changes the dynamics.
    assert np.abs(final[0] - final[2]).max() > 1e-2
    np.testing.assert_array_equal(obs0[0], obs0[2])  # reset does not depend on gravity
    np.testing.assert_array_equal(disc, 1.0 - term)


def test_time_limit_truncates_and_auto_resets(batch):
    obs0, (obs, final, r, term, trunc, disc, time) = batch[0]
    assert not term[:, :TRUNC].any(), "small actions should not make the hopper fall within 5 steps"
    assert not trunc[:3].any()  # the 1000-step envs
    assert trunc[3].tolist() == [t % TRUNC == TRUNC - 1 for t in range(T)]
    assert time[3].tolist() == [(t + 1) % TRUNC for t in range(T)]
    # At truncation the returned obs is a fresh reset; the true last obs is in info["final_observation"].
    i = TRUNC - 1
    assert np.abs(obs[3, i] - final[3, i]).max() > 1e-3
    np.testing.assert_array_equal(final[3, :i], final[0, :i])  # same physics until the limit
    np.testing.assert_allclose(obs[3, i], obs0[3], atol=0.011)  # a reset: initial pose +- 5e-3 noise


def test_sim_real_pair_shares_the_env_and_sets_the_shift(hopper):
    from envs.sim_real import shift_value, with_shift

    spec = envs.get_env_spec("brax_hopper_gravity_2x")
    assert "sim_real" in spec.tags and spec.make_sim is not None
    real_env, real = spec.make()
    sim_env, sim = spec.make_sim()
    assert real_env == sim_env and hash(real_env) == hash(sim_env) and real_env == hopper[0]
    assert float(shift_value(real)) == 1.0 and float(shift_value(sim)) == 2.0
    assert float(with_shift(sim, 0.5).gravity_scale) == 0.5 and float(sim.friction_scale) == 1.0

    sys_ = real_env.shifted_system(with_shift(sim, 3.0).replace(friction_scale=jnp.float32(0.5)))
    base = real_env.brax_env.sys
    np.testing.assert_allclose(sys_.gravity, 3.0 * base.gravity)
    np.testing.assert_allclose(sys_.opt.gravity, 3.0 * base.opt.gravity)
    np.testing.assert_allclose(sys_.geom_friction[:, 0], 0.5 * base.geom_friction[:, 0])
    np.testing.assert_array_equal(sys_.geom_friction[:, 1:], base.geom_friction[:, 1:])


def test_overrides_and_problem(hopper):
    from experiments.catalog import build_problem

    env, params, _ = envs.make_env("brax_hopper", max_steps_in_episode=200, gravity_scale=1.5)
    assert int(params.max_steps_in_episode) == 200 and float(params.gravity_scale) == 1.5
    with pytest.raises(ValueError, match="no parameter"):
        envs.make_env("brax_hopper", mass_scale=2.0)
    problem = build_problem("brax_hopper_gravity_2x")
    assert problem.obs_shape == (11,) and problem.action_dim == 3 and problem.max_episode_steps == 1000
    assert float(problem.sim_params.gravity_scale) == 2.0 and problem.sim_env == problem.env


@pytest.mark.slow
def test_friction_changes_generalized_walker2d():
    pytest.importorskip("brax")
    from envs.sim_real import shift_value

    spec = envs.get_env_spec("brax_walker2d_friction_0.5x")
    env, params = spec.make()
    _, sim = spec.make_sim()
    assert env.backend == "generalized" and env.obs_shape == (17,) and env.action_size == 6
    assert sim.shift_field == "friction_scale" and float(shift_value(sim)) == 0.5
    actions = 0.5 * jnp.ones((T, env.action_size))
    run = jax.jit(functools.partial(_rollout, env))
    final = run(params, jax.random.key(0), actions)[1][1]
    shifted = run(params.replace(friction_scale=jnp.float32(0.1)), jax.random.key(0), actions)[1][1]
    assert np.abs(np.asarray(final) - np.asarray(shifted)).max() > 1e-2


def test_missing_brax_is_a_one_line_error(monkeypatch):
    # A fresh cache (restored afterwards), and every brax import failing as in a venv without the extra.
    monkeypatch.setattr(brax_envs, "_brax_env", functools.lru_cache(maxsize=None)(brax_envs._brax_env.__wrapped__))
    for mod in [m for m in sys.modules if m == "brax" or m.startswith("brax.")] + ["brax"]:
        monkeypatch.setitem(sys.modules, mod, None)
    assert "brax_hopper" in envs.list_envs()  # listed even without Brax
    with pytest.raises(ImportError) as err:
        envs.make_env("brax_hopper")
    msg = str(err.value)
    assert 'pip install -e ".[brax]"' in msg and "\n" not in msg
