"""The rich-observation and tabular combination locks: structure, statistics, flags, offline data.

Compiling is what costs here (about 1-3 s per program on a 2-core CPU), so the tests share a few programs:
``run`` always takes one lock per episode (batched params) and a traced policy switch, and every run on an
H=3 lock uses the same batch shape.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.combination_lock import (
    LATENT_C,
    CombLockState,
    RichCombinationLock,
    TabularCombinationLock,
    TabularLockState,
    collect_comblock_episodes,
    comblock_obs_dim,
    optimal_action,
    randomize,
    sample_lock_params,
    sylvester_hadamard,
    tabular_optimal_action,
)

OPT, UNIF = 0.0, 1.0
N = 20_000  # episodes-in-parallel for every run on an H=3 lock (statistics need ~1e4)
STEPS = 6  # two H=3 episodes: covers the auto-reset


@functools.partial(jax.jit, static_argnames=("env", "num_steps"))
def run(env, params, keys, uniform, num_steps: int, logit_scale=10.0):
    """Vmapped over ``keys`` and the batched ``params``: ``num_steps`` steps of pi* (``uniform=0``) or of
    the uniform policy (``uniform=1``). In ``logits`` mode the action is ``logit_scale * onehot(a)``: 10
    executes ``a`` exactly, 1 is HNPG's one-hot behaviour vector. Returns arrays of shape (num_envs, num_steps, ...).
    """

    def one(key, p):
        k_reset, k_run = jax.random.split(key)
        obs, state = env.reset(k_reset, p)

        def body(carry, k):
            obs, state = carry
            k_act, k_step = jax.random.split(k)
            rand = jax.random.randint(k_act, (), 0, env.num_actions)
            pi_star = optimal_action if isinstance(env, RichCombinationLock) else tabular_optimal_action
            best = pi_star(p, state)
            a = jnp.where(uniform > 0.5, rand, best)
            if getattr(env, "action_mode", "discrete") == "logits":
                a = jax.nn.one_hot(a, env.num_actions) * logit_scale
            obs2, state2, r, term, trunc, info = env.step(k_step, state, a, p)
            out = dict(obs=obs, reward=r, terminated=term, truncated=trunc, next_obs=obs2,
                       final_obs=info["final_observation"], time=state2.time,
                       **{k: info[k] for k in ("latent", "max_reach", "success") if k in info})
            return (obs2, state2), out

        _, out = jax.lax.scan(body, (obs, state), jax.random.split(k_run, num_steps))
        return out

    return jax.vmap(one)(keys, params)


def keys(n, seed=0):
    return jax.random.split(jax.random.PRNGKey(seed), n)


def tile(params, n=N):
    """The same lock for every episode (``run`` takes one lock per episode)."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), params)


def returns(out, horizon):
    r = np.asarray(out["reward"])
    return r.reshape(r.shape[0], -1, horizon).sum(-1).ravel()


ENV3 = {mode: RichCombinationLock(horizon=3, reward_mode=mode) for mode in ("hyq", "hnpg", "dense")}
P3 = ENV3["hyq"].default_params
P3N = tile(P3)


# ------------------------------------------------------------------------------------------------ rich lock
def test_registry_spaces_and_hadamard():
    env, params, spec = envs.make_env("comblock")
    assert spec.action_kind == "discrete" and env.horizon == 10 and env.num_actions == 10
    assert params.opt_a.shape == params.opt_b.shape == (10,) and params.max_steps_in_episode == 10
    assert env.observation_space(params).shape == (16,) and env.action_space(params).n == 10
    env50, p50, _ = envs.make_env("comblock_h50")
    assert env50.obs_dim == 64 and p50.opt_a.shape == (50,)
    assert comblock_obs_dim(5) == 16 and comblock_obs_dim(100) == 128
    envl, pl, specl = envs.make_env("comblock_logits", horizon=4, reward_mode="hnpg", noise=0.2)
    assert specl.action_kind == "continuous" and envl.action_space(pl).shape == (10,)
    assert envl.horizon == 4 and envl.reward_mode == "hnpg" and pl.noise == 0.2 and pl.opt_a.shape == (4,)
    with pytest.raises(ValueError, match="no parameter"):
        envs.make_env("comblock", not_a_field=1)
    had = sylvester_hadamard(16)
    np.testing.assert_array_equal(had, had.T)
    np.testing.assert_array_equal(had @ had, 16 * np.eye(16))
    assert set(np.unique(had)) == {-1.0, 1.0}


def test_determinism_and_seed_dependence():
    a = run(ENV3["hyq"], P3N, keys(N), UNIF, STEPS)
    b = run(ENV3["hyq"], P3N, keys(N), UNIF, STEPS)
    c = run(ENV3["hyq"], P3N, keys(N, seed=1), UNIF, STEPS)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["obs"], c["obs"])


@pytest.mark.parametrize("mode", ["hyq", "hnpg"])
def test_optimal_policy_returns_one(mode):
    out = run(ENV3[mode], P3N, keys(N), OPT, STEPS)
    np.testing.assert_allclose(returns(out, 3), 1.0)
    assert np.all(out["success"][:, [2, 5]]) and np.all(out["max_reach"][:, [2, 5]] == 3)
    assert np.all(out["latent"] != LATENT_C)


def test_rewards_of_every_mode_step_by_step():
    # Every (latent, h, action) cell from a hand-built state, 400 coin draws each: the reward tables of the module doc.
    H = 3
    lat, h, a = (jnp.asarray(x.ravel(), jnp.int32)
                 for x in np.meshgrid(np.arange(3), np.arange(H), np.arange(10), indexing="ij"))
    target = np.where(lat == 0, np.asarray(P3.opt_a)[h], np.asarray(P3.opt_b)[h])
    correct = (np.asarray(lat) < 2) & (np.asarray(a) == target)
    fell = (np.asarray(lat) < 2) & ~correct
    last = np.asarray(h) == H - 1
    draws = jax.random.split(jax.random.PRNGKey(1), 400)
    for mode, env in ENV3.items():
        def cell(k, lat, h, a, env=env):
            return env.step_env(k, CombLockState(latent=lat, time=h, max_reach=jnp.int32(0)), a, P3)[2]

        r = np.asarray(jax.jit(jax.vmap(jax.vmap(cell, (None, 0, 0, 0)), (0, None, None, None)))(draws, lat, h, a))
        if mode == "dense":  # 0.1 per correct intermediate step, 1 for the correct last step
            np.testing.assert_allclose(r, np.broadcast_to(np.where(correct, np.where(last, 1.0, 0.1), 0.0), r.shape),
                                       atol=1e-6)
        elif mode == "hyq":  # 1 for the correct last step; 0.1 w.p. 1/2 at a fall; nothing else
            np.testing.assert_allclose(r[:, correct & last], 1.0)
            np.testing.assert_allclose(r[:, ~fell & ~(correct & last)], 0.0)
            assert np.all(np.isclose(r[:, fell], 0) | np.isclose(r[:, fell], 0.1))
            assert abs(r[:, fell].mean() - 0.05) < 0.005
        else:  # hnpg: only the last step pays: 1 on success, else 0.1 w.p. 1/2 (also from C)
            np.testing.assert_allclose(r[:, correct & last], 1.0)
            np.testing.assert_allclose(r[:, ~last], 0.0)
            fail_last = last & ~correct
            assert np.all(np.isclose(r[:, fail_last], 0) | np.isclose(r[:, fail_last], 0.1))
            assert abs(r[:, fail_last].mean() - 0.05) < 0.005


def test_uniform_policy_statistics_hyq():
    # H=3: survive w.p. 0.1^3; every fall pays 0.1 w.p. 0.5, so the mean return is 0.05 (1 - 1e-3) + 1e-3.
    out = run(ENV3["hyq"], P3N, keys(N), UNIF, STEPS)
    n = 2 * N  # two episodes per env
    success = np.asarray(out["success"][:, [2, 5]]).ravel()
    assert abs(success.mean() - 1e-3) < 5 * np.sqrt(1e-3 / n)
    reach = np.asarray(out["max_reach"][:, [2, 5]]).ravel()
    for k, p in [(0, 0.9), (1, 0.09), (2, 0.009)]:
        assert abs((reach == k).mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    ret = returns(out, 3)
    mean = 0.05 * (1 - 1e-3) + 1e-3
    assert abs(ret.mean() - mean) < 5 * ret.std() / np.sqrt(n)
    # The anti reward alone: 0.1 w.p. 1/2, so its mean over failed episodes is 0.05 ...
    anti = ret[~success]
    assert np.all(np.isclose(anti, 0.0) | np.isclose(anti, 0.1))
    assert abs(anti.mean() - 0.05) < 5 * 0.05 / np.sqrt(anti.size)
    # ... and it is paid at the fall step (max_reach = the number of correct steps = the fall step).
    r = np.asarray(out["reward"])[:, :3]
    fall_step = np.asarray(out["max_reach"])[:, 2]
    paid = r > 0
    assert np.all(np.where(paid.any(-1), paid.argmax(-1) == np.minimum(fall_step, 2), True))


def test_uniform_policy_statistics_hnpg():
    # hnpg: nothing until the last step, then 1 on success, else 0.1 w.p. 1/2 (also when already in C).
    out = run(ENV3["hnpg"], P3N, keys(N), UNIF, STEPS)
    assert np.all(np.asarray(out["reward"])[:, [0, 1, 3, 4]] == 0)
    ret = returns(out, 3)
    mean = 1e-3 + 0.05 * (1 - 1e-3)
    assert abs(ret.mean() - mean) < 5 * ret.std() / np.sqrt(ret.size)


def test_observation_structure():
    env = ENV3["hyq"]
    out = run(env, P3N, keys(N), UNIF, STEPS)
    g = np.asarray(env.decode_observation(out["final_obs"]))  # (n, 6, D): Had^T o / D = g
    latent = np.asarray(out["latent"])
    time = np.broadcast_to(np.tile(np.arange(1, 4), 2), latent.shape)  # final_obs shows step (t mod 3) + 1
    D, H = env.obs_dim, env.horizon
    assert g.shape[-1] == D == 8
    mean = np.zeros_like(g)
    np.put_along_axis(mean, latent[..., None], 1.0, axis=-1)
    np.put_along_axis(mean, (3 + time)[..., None], 1.0, axis=-1)
    resid = g - mean
    # Noise on the first H+3 entries only; the padding (and the slot of step H) stays exactly 0.
    assert np.abs(resid[..., H + 3:]).max() < 1e-5
    noisy = resid[..., : H + 3].ravel()
    assert abs(noisy.std() - 0.1) < 0.003 and abs(noisy.mean()) < 0.003
    # The argmax recovers the latent and step one-hots.
    assert np.array_equal(np.argmax(g[..., :3], -1), latent)
    assert np.array_equal(np.argmax(g[..., 3:], -1), time)


def test_termination_truncation_and_auto_reset():
    env = ENV3["hyq"]
    out = run(env, P3N, keys(N), OPT, STEPS)  # two full episodes
    term, trunc = np.asarray(out["terminated"]), np.asarray(out["truncated"])
    assert np.all(term == [False, False, True] * 2) and not trunc.any()
    g_final = np.asarray(env.decode_observation(out["final_obs"][:, 2]))
    g_next = np.asarray(env.decode_observation(out["next_obs"][:, 2]))
    g_obs3 = np.asarray(env.decode_observation(out["obs"][:, 3]))
    # At the end: final_observation shows step H; the returned observation is a fresh reset at step 0,
    # and it is the one the next episode starts from.
    assert np.all(np.argmax(g_final[:, 3:], -1) == 3)
    assert np.all(np.argmax(g_next[:, 3:], -1) == 0)
    np.testing.assert_array_equal(out["next_obs"][:, 2], out["obs"][:, 3])
    assert np.all(np.argmax(g_obs3[:, :3], -1) < 2)  # the reset latent is A or B ...
    assert 0.48 < np.mean(np.argmax(g_obs3[:, :3], -1) == 0) < 0.52  # ... w.p. 1/2 each
    assert np.all(np.asarray(out["time"])[:, 2] == 0)
    # A time limit shorter than H truncates instead (same shapes: the same compiled program).
    out = run(env, tile(P3.replace(max_steps_in_episode=2)), keys(N), OPT, STEPS)
    assert np.all(np.asarray(out["truncated"]) == [False, True] * 3)
    assert not np.asarray(out["terminated"]).any()


def test_randomize_gives_one_lock_per_seed_under_jit_vmap():
    env, params, _ = envs.make_env("comblock", horizon=3)
    locks = jax.jit(jax.vmap(randomize, in_axes=(None, 0)))(params, keys(N, seed=3))
    assert locks.opt_a.shape == (N, 3) and np.all(locks.p_switch == params.p_switch)
    assert len({tuple(x) for x in np.asarray(locks.opt_a[:256])}) > 200  # locks differ across seeds
    same = randomize(params, keys(N, seed=3)[7])
    np.testing.assert_array_equal(same.opt_a, locks.opt_a[7])
    np.testing.assert_array_equal(env.randomize(params, keys(N, seed=3)[7]).opt_b, locks.opt_b[7])
    # jit(vmap) over N >= 256 envs, each with its own lock: each pi* opens its own lock ...
    out = run(ENV3["hyq"], locks, keys(N), OPT, STEPS)
    np.testing.assert_allclose(returns(out, 3), 1.0)
    fixed = sample_lock_params(jax.random.PRNGKey(0), 5, p_switch=0.3)
    assert fixed.opt_a.dtype == jnp.int32 and fixed.p_switch == 0.3 and fixed.max_steps_in_episode == 5


# ------------------------------------------------------------------------------------------------ logits mode
ENV_LOGITS = RichCombinationLock(horizon=3, action_mode="logits")
P_LOGITS = ENV_LOGITS.default_params


def test_logits_mode_executes_softmax():
    # A one-hot vector executes its action w.p. p = e^10 / (e^10 + 9) ~ 0.99959 (tau = 0.1).
    draws = jax.jit(jax.vmap(lambda k: ENV_LOGITS.executed_action(k, jax.nn.one_hot(3, 10), P_LOGITS)))(keys(N))
    p = np.exp(10) / (np.exp(10) + 9)
    assert abs(np.mean(np.asarray(draws) == 3) - p) < 5 * np.sqrt(p * (1 - p) / N)
    scaled = ENV_LOGITS.executed_action(jax.random.PRNGKey(0), jnp.array([0.0, 0.5, 0.2] + [0.0] * 7), P_LOGITS)
    assert int(scaled) in range(10)


# ------------------------------------------------------------------------------------------------ offline data
def _levels(batch, n, H):
    return jax.tree.map(lambda x: np.asarray(x).reshape((n, H) + x.shape[1:]), batch)


NOFF = 4000  # every offline call on ENV3 uses this size: one compiled program for all kinds


def test_offline_hnpg_data():
    env, H = ENV3["hyq"], 3
    b = collect_comblock_episodes(jax.random.PRNGKey(0), env, P3, NOFF, "hnpg", 0.0)
    assert b.obs.shape == (NOFF * H, 8) and b.action.shape == (NOFF * H,) and b.action.dtype == jnp.int32
    np.testing.assert_allclose(returns({"reward": b.reward[None]}, H), 1.0)  # epsilon = 0: pi* itself
    lv = _levels(b, NOFF, H)
    assert np.all(lv.terminated[:, -1]) and not lv.terminated[:, :-1].any() and not lv.truncated.any()
    # next_obs of level h is the obs of level h+1 within an episode (the true next observation) ...
    np.testing.assert_array_equal(lv.next_obs[:, :-1], lv.obs[:, 1:])
    g = np.asarray(env.decode_observation(lv.next_obs[:, -1]))
    assert np.all(np.argmax(g[:, 3:], -1) == H)  # ... and the last one is the final one, not a reset
    # Default epsilon = 1/H: success w.p. (1 - eps + eps / 10)^H.
    b = collect_comblock_episodes(jax.random.PRNGKey(1), env, P3, NOFF, "hnpg")
    p = (1 - 1 / 3 + 1 / 30) ** 3
    success = np.asarray(b.reward).reshape(NOFF, H)[:, -1] == 1.0
    assert abs(success.mean() - p) < 5 * np.sqrt(p * (1 - p) / NOFF)


def test_offline_hyq_epsilon_and_mixed_data():
    env, H = ENV3["hyq"], 3
    b = _levels(collect_comblock_episodes(jax.random.PRNGKey(0), env, P3, NOFF, "epsilon"), NOFF, H)
    alive = np.argmax(np.asarray(env.decode_observation(b.next_obs))[..., :3], -1) != LATENT_C
    # Step H//2 = 1 is uniformly random: ~10% of those alive before it survive it.
    assert abs(alive[:, 1][alive[:, 0]].mean() - 0.1) < 0.03
    assert abs(alive[:, 0].mean() - (1 - 1 / 3 + 1 / 30)) < 0.03  # epsilon-greedy elsewhere
    b = _levels(collect_comblock_episodes(jax.random.PRNGKey(1), env, P3, NOFF, "mixed"), NOFF, H)
    g_obs = np.asarray(env.decode_observation(b.obs))
    g_next = np.asarray(env.decode_observation(b.next_obs))
    # Every level is reached by pi* exactly (a good latent, the right step) and takes a uniform action.
    assert np.all(np.argmax(g_obs[..., :3], -1) < 2)
    assert np.all(np.argmax(g_obs[..., 3:], -1) == np.arange(H))
    assert np.all(np.argmax(g_next[..., 3:], -1) == np.arange(1, H + 1))
    survive = np.argmax(g_next[..., :3], -1) != LATENT_C
    assert np.all(np.abs(survive.mean(0) - 0.1) < 0.03)
    actions = np.asarray(b.action).ravel()
    assert np.all(np.abs(np.bincount(actions, minlength=10) / actions.size - 0.1) < 0.01)


def test_offline_random_data():
    b = collect_comblock_episodes(jax.random.PRNGKey(2), ENV3["hyq"], P3, NOFF, "random")
    ret = returns({"reward": b.reward[None]}, 3)
    assert abs(ret.mean() - (0.05 * 0.999 + 1e-3)) < 5 * ret.std() / np.sqrt(NOFF)
    with pytest.raises(ValueError, match="kind"):
        collect_comblock_episodes(jax.random.PRNGKey(2), ENV3["hyq"], P3, NOFF, "expert")


def test_offline_data_logits_mode():
    # The logits-mode tests share the offline program (one compile): its episodes run the env's softmax.
    n, H = 2000, 3
    b = collect_comblock_episodes(jax.random.PRNGKey(0), ENV_LOGITS, P_LOGITS, n, "hnpg", 0.0)
    a = np.asarray(b.action)
    assert a.shape == (n * H, 10) and a.dtype == np.float32
    np.testing.assert_array_equal(a.max(-1), 1.0)  # epsilon = 0: one-hot vectors of pi*'s actions ...
    p = (np.exp(10) / (np.exp(10) + 9)) ** H  # ... which succeed w.p. 0.99959^H
    success = np.asarray(b.reward).reshape(n, H)[:, -1] == 1.0
    assert success.mean() > p - 5 * np.sqrt(p * (1 - p) / n) - 1e-3
    eps = 0.5
    b = collect_comblock_episodes(jax.random.PRNGKey(1), ENV_LOGITS, P_LOGITS, n, "hnpg", eps)
    a = np.asarray(b.action)
    onehot = np.isclose(a.max(-1), 1.0) & np.isclose(a.sum(-1), 1.0)
    assert abs(onehot.mean() - (1 - eps)) < 0.03
    noise = a[~onehot]  # U[0,1)^10 noise vectors
    assert noise.min() >= 0.0 and noise.max() < 1.0 and abs(noise.mean() - 0.5) < 0.02
    # mixed: the pi* roll-in (10 x one-hot logits) executes exactly, so every level is reached.
    b = _levels(collect_comblock_episodes(jax.random.PRNGKey(2), ENV_LOGITS, P_LOGITS, n, "mixed"), n, H)
    g = np.asarray(ENV_LOGITS.decode_observation(b.obs))
    assert np.all(np.argmax(g[..., :3], -1) < 2) and np.all(np.argmax(g[..., 3:], -1) == np.arange(H))


# ------------------------------------------------------------------------------------------------ tabular lock
TAB = TabularCombinationLock(horizon=3, num_actions=4, num_good=2, lock_seed=1)
TAB_P = TAB.default_params


def test_tabular_model_matches_the_env():
    P, R = TAB.to_tabular(TAB_P)
    H, S, A = 3, 3, 4
    assert P.shape == (H, S, A, S) and R.shape == (H, S, A)
    np.testing.assert_allclose(P.sum(-1), 1.0)
    assert np.all(np.asarray(P) >= 0)
    # Every (h, s, a): the env's (deterministic) step lands where P says and pays R.
    grid = np.meshgrid(np.arange(H), np.arange(S), np.arange(A), indexing="ij")
    hh, ss, aa = (jnp.asarray(x.ravel(), jnp.int32) for x in grid)

    def step(h, s, a):
        _, st, r, *_ = TAB.step_env(jax.random.PRNGKey(0), TabularLockState(state=s, time=h), a, TAB_P)
        return st.state, r

    s_next, r = jax.jit(jax.vmap(step))(hh, ss, aa)
    np.testing.assert_array_equal(s_next, np.asarray(P).argmax(-1).ravel())
    np.testing.assert_allclose(r, np.asarray(R).ravel())
    assert float(TAB.optimal_value(TAB_P)) == pytest.approx(1.0)
    np.testing.assert_allclose(TAB.initial_distribution(TAB_P), [0.5, 0.5, 0.0])


@pytest.mark.parametrize("kind, d", [("onehot", 12), ("lowrank", 9)])
def test_tabular_linear_structure(kind, d):
    P, R = TAB.to_tabular(TAB_P)
    phi, mu, theta = TAB.linear_structure(TAB_P, kind)
    assert phi.shape == (3, 4, d) and mu.shape == (3, d, 3) and theta.shape == (3, d)
    np.testing.assert_allclose(jnp.einsum("sai,hit->hsat", phi, mu), P, atol=1e-6)
    np.testing.assert_allclose(jnp.einsum("sai,hi->hsa", phi, theta), R, atol=1e-6)
    np.testing.assert_allclose(TAB.features(TAB_P, kind), phi)


def test_tabular_lock_policies_and_flags():
    env, params, _ = envs.make_env("comblock_tabular", horizon=3, distractor_r=0.05)
    assert env.num_states == 2 and params.distractor_r == 0.05
    out = run(env, tile(params), keys(N), OPT, STEPS)
    np.testing.assert_allclose(returns(out, 3), 1.0)
    assert np.all(np.asarray(out["terminated"]) == [False, False, True] * 2)
    assert not np.asarray(out["truncated"]).any()
    assert np.all(np.asarray(out["final_obs"])[:, 2] == 0) and np.all(np.asarray(out["time"])[:, 2] == 0)
    # Uniform policy: success w.p. A^-H = 1/64; otherwise the distractor pays 0.05, once.
    out = run(env, tile(params), keys(N), UNIF, STEPS)
    success = np.asarray(out["success"])[:, [2, 5]].ravel()
    p = 4.0**-3
    assert abs(success.mean() - p) < 5 * np.sqrt(p * (1 - p) / success.size)
    np.testing.assert_allclose(returns(out, 3)[~success], 0.05, rtol=1e-6)
    env1h, p1h, _ = envs.make_env("comblock_tabular", obs_mode="onehot")
    obs, _ = env1h.reset(jax.random.PRNGKey(0), p1h)
    np.testing.assert_array_equal(obs, [1.0, 0.0])
    # Locks redraw per key (same shapes, valid permutations), the other fields are kept.
    r1, r2 = (randomize(TAB_P.replace(distractor_r=0.3), jax.random.PRNGKey(i)) for i in (5, 6))
    assert r1.opt.shape == (3, 2) and r1.distractor_r == 0.3 and not np.array_equal(r1.opt, r2.opt)
    assert np.all(np.sort(np.asarray(r1.perm), -1) == np.arange(2))
