"""Sim/real pairs: the real member is the plain gymnax env, the sim member really differs, and the shift
is a traced param that one compiled program sweeps."""

from __future__ import annotations

import functools

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.sim_real import PAIRS, SHIFTS, ShiftedEnv, shift_value, with_shift

T = 40  # steps per comparison


@functools.partial(jax.jit, static_argnames=("env", "num_steps"))
def rollout(env, params, key, actions, num_steps: int = T):
    """``num_steps`` steps of a fixed action sequence with fixed keys: observations, rewards, flags."""
    k_reset, k_run = jax.random.split(key)
    obs, state = env.reset(k_reset, params)

    def body(carry, xs):
        obs, state = carry
        k, a = xs
        obs2, state2, r, term, trunc, info = env.step(k, state, a, params)
        return (obs2, state2), (info["final_observation"], r, term, trunc)

    return jax.lax.scan(body, (obs, state), (jax.random.split(k_run, num_steps), actions))[1]


def action_sequence(env, params, n=T, seed=0):
    space = env.action_space(params)
    return jax.vmap(space.sample)(jax.random.split(jax.random.PRNGKey(seed), n))


@pytest.mark.parametrize("name", [p[0] for p in PAIRS])
def test_pair_members_differ_under_the_same_actions(name):
    spec = envs.get_env_spec(name)
    assert spec.make_sim is not None and "sim_real" in spec.tags
    real_env, real = spec.make()
    sim_env, sim = spec.make_sim()
    # One env class, two params: equal env objects share every compiled program.
    assert real_env == sim_env and hash(real_env) == hash(sim_env)
    assert spec.action_kind == ("discrete" if hasattr(real_env.action_space(real), "n") else "continuous")
    assert float(shift_value(real)) == (0.0 if real_env.shift == "action_noise" else 1.0)
    assert float(shift_value(sim)) == next(p[3] for p in PAIRS if p[0] == name)
    actions = action_sequence(real_env, real)
    key = jax.random.PRNGKey(1)
    obs_real = rollout(real_env, real, key, actions)[0]
    obs_sim = rollout(sim_env, sim, key, actions)[0]
    assert np.abs(np.asarray(obs_real) - np.asarray(obs_sim)).max() > 1e-3
    # Same params, same keys, same actions: the same trajectory.
    np.testing.assert_array_equal(obs_real, rollout(real_env, real, key, actions)[0])


@pytest.mark.parametrize("gymnax_id", sorted({g for g, _ in SHIFTS}))
def test_real_member_is_the_plain_gymnax_env(gymnax_id):
    shift = next(s for g, s in SHIFTS if g == gymnax_id)
    env = ShiftedEnv(gymnax_id, shift)
    base, base_params = gymnax.make(gymnax_id)
    params = env.default_params
    actions = action_sequence(base, base_params)
    ours = rollout(env, params, jax.random.PRNGKey(2), actions)
    # Same keys, same actions: the real member reproduces the plain env (observations, rewards, flags).
    k_reset, k_run = jax.random.split(jax.random.PRNGKey(2))
    obs, state = base.reset(k_reset, base_params)
    for t, k in enumerate(jax.random.split(k_run, T)):
        obs, state, r, term, trunc, info = base.step(k, state, actions[t], base_params)
        # (float32 rounding differs between the compiled scan with traced physics and the constant-folded
        # plain step, so equality is up to 1e-4.)
        np.testing.assert_allclose(ours[0][t], info["final_observation"], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ours[1][t], r, rtol=1e-4, atol=1e-4)
        assert bool(ours[2][t]) == bool(term) and bool(ours[3][t]) == bool(trunc)


def test_shift_is_traced_one_program_sweeps_it():
    spec = envs.get_env_spec("pendulum_gravity_2x")
    env, real = spec.make()
    actions = action_sequence(env, real)
    factors = jnp.array([1.0, 1.5, 2.0, 0.5])
    sweep = jax.jit(jax.vmap(lambda f: rollout(env, with_shift(real, f), jax.random.PRNGKey(3), actions)[0]))
    obs = np.asarray(sweep(factors))
    assert obs.shape == (4, T, 3)
    np.testing.assert_allclose(obs[0], rollout(env, real, jax.random.PRNGKey(3), actions)[0], atol=1e-6)
    _, sim = spec.make_sim()
    np.testing.assert_allclose(obs[2], rollout(env, sim, jax.random.PRNGKey(3), actions)[0], atol=1e-6)
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(obs[i] - obs[j]).max() > 1e-3
    # A second sweep with other values reuses the compiled program.
    sweep(jnp.array([0.8, 1.2, 3.0, 1.1]))
    assert sweep._cache_size() == 1
    # The effective physics is the nominal one times the factor.
    assert float(env.effective_params(with_shift(real, 2.0)).g) == pytest.approx(20.0)


def test_cartpole_masspole_recomputes_derived_fields():
    env, sim = envs.get_env_spec("cartpole_masspole_2x").make_sim()
    eff = env.effective_params(sim)
    assert float(eff.masspole) == pytest.approx(0.2)
    assert float(eff.total_mass) == pytest.approx(1.2)
    assert float(eff.polemass_length) == pytest.approx(0.2 * 0.5)
    eff = envs.get_env_spec("acrobot_mass_2x").make_sim()[0].effective_params(
        envs.get_env_spec("acrobot_mass_2x").make_sim()[1])
    assert float(eff.link_mass_1) == float(eff.link_mass_2) == pytest.approx(2.0)


def test_action_noise_is_added_to_the_executed_action_only():
    env, sim = envs.get_env_spec("pendulum_action_noise").make_sim()
    real = env.default_params
    obs, state = env.reset(jax.random.PRNGKey(0), sim)
    clean = jnp.array([0.3])
    executed = jax.jit(jax.vmap(lambda k, p: env.step(k, state, clean, p)[5]["executed_action"], (0, None)))
    ks = jax.random.split(jax.random.PRNGKey(4), 4000)
    noisy = np.asarray(executed(ks, sim))
    assert noisy.shape == (4000, 1)
    assert abs(noisy.mean() - 0.3) < 0.06 and abs(noisy.std() - 1.0) < 0.05  # sigma = 1.0
    np.testing.assert_array_equal(np.asarray(executed(ks, real)), np.float32(0.3))  # sigma = 0: the clean action
    # The noise std is the swept shift of this pair, and a physics pair can add noise too.
    assert float(with_shift(sim, 0.25).noise_std) == 0.25 and float(with_shift(sim, 0.25).factor) == 1.0
    _, g2 = envs.get_env_spec("pendulum_gravity_2x").make_sim(noise_std=0.1)
    assert float(g2.noise_std) == pytest.approx(0.1) and float(g2.factor) == 2.0


def test_truncation_auto_reset_and_overrides():
    env, real = envs.get_env_spec("pendulum_mass_2x").make(max_steps_in_episode=5, max_torque=1.0)
    assert real.max_steps_in_episode == 5 and real.base.max_torque == 1.0
    actions = action_sequence(env, real)
    final_obs, r, term, trunc = (np.asarray(x) for x in rollout(env, real, jax.random.PRNGKey(5), actions))
    assert np.all(trunc == np.tile([False] * 4 + [True], T // 5)) and not term.any()
    with pytest.raises(ValueError, match="no parameter"):
        envs.get_env_spec("pendulum_mass_2x").make(bogus=1)
    with pytest.raises(ValueError, match="valid shifts"):
        ShiftedEnv("Pendulum-v1", "friction")
    assert env.observation_space(real).shape == (3,) and env.num_actions == 1


def test_jit_vmap_over_256_envs_and_factors():
    env, real = envs.get_env_spec("cartpole_gravity_2x").make()
    factors = jnp.linspace(0.5, 2.0, 256)
    keys = jax.random.split(jax.random.PRNGKey(6), 256)
    actions = action_sequence(env, real)

    @jax.jit
    def many(keys, factors):
        return jax.vmap(lambda k, f: rollout(env, with_shift(real, f), k, actions))(keys, factors)

    final_obs, r, term, trunc = many(keys, factors)
    assert final_obs.shape == (256, T, 4) and np.all(np.isfinite(np.asarray(final_obs)))
    assert np.asarray(r).sum() > 0
