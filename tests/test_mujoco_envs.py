"""MuJoCo locomotion envs: bit-identical to gymnasium's v4/v5 over whole episodes, one host call per step
under nested vmap, sim/real pairs with traced shifts, multi-device == one device, one-line errors."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.catalog import make_env

REPO = pathlib.Path(__file__).resolve().parents[1]

mujoco = pytest.importorskip("mujoco", reason='needs the mujoco extra (pip install -e ".[mujoco]")')
gym = pytest.importorskip("gymnasium")
pytest.importorskip("imageio", reason='gymnasium.make of MuJoCo envs needs imageio (in the mujoco extra)')

from envs.mujoco_envs import TASKS, MujocoEnv, env_name_for  # noqa: E402
from envs.sim_real import shift_value, with_shift  # noqa: E402


def _gym_env(task, version, max_steps):
    spec = TASKS[(task, version)]
    kwargs = {"use_contact_forces": True} if (task, version) == ("ant", "v4") else {}
    return gym.make(spec.gym_id, max_episode_steps=max_steps, **kwargs)


def _gym_state(gym_env, size):
    row = np.zeros(size)
    u = gym_env.unwrapped
    mujoco.mj_getState(u.model, u.data, row, mujoco.mjtState.mjSTATE_INTEGRATION)
    return row


# halfcheetah never terminates: its episode is the time limit, cut to 300 steps to keep the suite fast
# (the truncation step and its auto-reset are checked all the same).
@pytest.mark.parametrize("task,version", sorted(k for k in TASKS if k[1] != "d4rl"))
def test_whole_episode_is_bit_identical_to_gymnasium(task, version):
    max_steps = 300 if task == "halfcheetah" else 1000
    env, params, _ = make_env(env_name_for(task, version), max_steps_in_episode=max_steps)
    g = _gym_env(task, version, max_steps)
    obs_g, _ = g.reset(seed=3)
    state = env.state_from_data(g.unwrapped.data)
    np.testing.assert_array_equal(np.asarray(state.obs), obs_g.astype(np.float32))
    rng = np.random.default_rng(7)
    key = jax.random.key(0)
    for t in range(max_steps):
        action = rng.uniform(-1, 1, env.action_size).astype(np.float32)
        obs_g, reward_g, term_g, trunc_g, _ = g.step(action)
        key, k = jax.random.split(key)
        obs, state, reward, term, trunc, info = env.step(k, state, jnp.asarray(action), params)
        np.testing.assert_array_equal(np.asarray(info["final_observation"]), obs_g.astype(np.float32))
        assert np.float32(reward) == np.float32(reward_g), (t, float(reward), reward_g)
        assert (bool(term), bool(trunc)) == (term_g, trunc_g), t
        if term_g or trunc_g:
            break
        np.testing.assert_array_equal(env.integration_state(state), _gym_state(g, env.host.state_size))
        np.testing.assert_array_equal(np.asarray(obs), obs_g.astype(np.float32))
    assert term_g or trunc_g, "episode did not end"
    # auto-reset: a fresh episode, time 0, qpos within the reset noise of the initial pose
    assert int(state.time) == 0
    qpos = env.integration_state(state)[1: 1 + env.nq]
    assert np.all(np.abs(qpos - env.host.init_qpos) <= env.spec.reset_noise_scale + 1e-7)
    assert not np.array_equal(np.asarray(obs), np.asarray(info["final_observation"]))


def test_d4rl_ant_has_ant_v4_physics_with_zero_contact_forces():
    """``mujoco_ant_d4rl``: gymnasium Ant-v4's trajectory (same integration states, same first 27 observation
    entries), the 84 contact entries 0, and Ant-v4's reward without its contact cost, as in D4RL's files."""
    env, params, spec = make_env("mujoco_ant_d4rl", max_steps_in_episode=200)
    assert spec.d4rl_name == "ant-medium-v2"
    g = _gym_env("ant", "v4", 200)
    obs_g, _ = g.reset(seed=5)
    state = env.state_from_data(g.unwrapped.data)
    rng, key = np.random.default_rng(2), jax.random.key(0)
    for t in range(100):
        action = rng.uniform(-1, 1, env.action_size).astype(np.float32)
        obs_g, reward_g, term_g, _, info_g = g.step(action)
        key, k = jax.random.split(key)
        obs, state, reward, term, _, _ = env.step(k, state, jnp.asarray(action), params)
        if term_g:
            break
        np.testing.assert_array_equal(env.integration_state(state), _gym_state(g, env.host.state_size))
        np.testing.assert_array_equal(np.asarray(obs)[:27], obs_g[:27].astype(np.float32))
        assert not np.asarray(obs)[27:].any()
        # gymnasium's info overwrites reward_ctrl with the contact cost, so the control cost is recomputed
        expected = info_g["reward_forward"] + info_g["reward_survive"] - 0.5 * np.sum(np.square(action))
        assert float(reward) == pytest.approx(expected, abs=1e-4), t
    assert t > 10


def test_observation_and_action_shapes():
    dims = {("hopper", "v4"): (11, 3), ("walker2d", "v4"): (17, 6), ("halfcheetah", "v4"): (17, 6),
            ("ant", "v4"): (111, 8), ("ant", "v5"): (105, 8)}
    for (task, version), (obs_dim, act_dim) in dims.items():
        env, params, spec = make_env(env_name_for(task, version))
        obs, _ = env.reset(jax.random.key(1), params)
        assert obs.shape == (obs_dim,) and env.action_space(params).shape == (act_dim,)
        assert spec.action_kind == "continuous"


def test_v4_pays_the_healthy_reward_on_the_falling_step_and_v5_does_not():
    # Same state, same action, both fall: the rewards differ by exactly gymnasium's healthy reward (1).
    out = {}
    for version in ("v4", "v5"):
        env, params, _ = make_env(env_name_for("hopper", version))
        _, state = env.reset(jax.random.key(0), params)
        key = jax.random.key(1)
        for t in range(1000):
            key, k = jax.random.split(key)
            _, state, reward, term, _, _ = env.step(k, state, jnp.ones(3), params)
            if bool(term):
                out[version] = (t, float(reward))
                break
    assert out["v4"][0] == out["v5"][0]
    assert out["v4"][1] - out["v5"][1] == pytest.approx(1.0, abs=1e-5)


def test_nested_vmap_is_one_host_call_per_step():
    env, params, _ = make_env("mujoco_hopper_gravity_2x")
    host = env.host
    grid = jax.vmap(lambda g: with_shift(params, g))(jnp.array([1.0, 2.0]))  # a hyper-parameter-like axis
    keys = jax.random.split(jax.random.key(0), 2 * 3 * 4).reshape(2, 3, 4)

    def rollout(key, p):
        _, state = env.reset(key, p)

        def body(carry, k):
            s, total = carry
            _, s, r, _, _, _ = env.step(k, s, jnp.full((3,), 0.5), p)
            return (s, total + r), None

        (state, total), _ = jax.lax.scan(body, (state, 0.0), jax.random.split(key, 6))
        return total

    # params axis outermost, then seeds, then envs
    nested = jax.jit(jax.vmap(lambda ks, p: jax.vmap(lambda kk: jax.vmap(lambda k: rollout(k, p))(kk))(ks)))
    nested(keys, grid).block_until_ready()  # compile
    before = host.calls
    totals = np.asarray(nested(keys, grid))
    assert host.calls - before == 1 + 6  # one reset call, then one call per step, with all 24 rows
    assert totals.shape == (2, 3, 4)
    # every row is the unbatched env: the same key and params give the same return
    single = jax.jit(rollout)
    for idx in [(0, 0, 0), (1, 2, 3), (1, 0, 2)]:
        p = jax.tree.map(lambda x: x[idx[0]], grid)
        assert float(single(keys[idx], p)) == pytest.approx(float(totals[idx]), abs=1e-5)
    # the gravity axis matters
    assert not np.allclose(totals[0], totals[1])


@pytest.mark.parametrize("task", ["hopper", "ant"])
def test_rows_stepped_on_threads_equal_one_thread_bit_for_bit(task):
    # Rows split across host threads (each with its own MjModel and MjData) must give the bits one simulator
    # gives: every row's whole integration state is set before its step. Gravity and friction differ per row,
    # so a thread that kept another row's physics would show; resets (hopper falls) run in the row's physics.
    from envs.mujoco_envs import _Host

    spec = TASKS[(task, "v4")]
    one, many = _Host(spec), _Host(spec)
    one.threads, many.threads = 1, 3
    rows = 13  # shares of 4, 4 and 5 rows
    rng = np.random.default_rng(0)
    nq, nv = one.nq, one.nv
    gravity = rng.choice([1.0, 2.0], rows).astype(np.float32)
    friction = rng.choice([0.3, 1.0], rows).astype(np.float32)
    sim, _ = one.reset(rng.uniform(-0.1, 0.1, (rows, nq)), rng.uniform(-0.1, 0.1, (rows, nv)), gravity, friction)
    outs = {}
    for name, host in [("one", one), ("many", many)]:
        state, steps = sim.copy(), []
        for t in range(40):
            action = np.random.default_rng(t).uniform(-1, 1, (rows, one.model.nu)).astype(np.float32)
            noise = np.random.default_rng(100 + t)
            out = host.step(state, action, noise.uniform(-0.005, 0.005, (rows, nq)).astype(np.float32),
                            noise.uniform(-0.005, 0.005, (rows, nv)).astype(np.float32), gravity, friction,
                            np.full(rows, t % 17 == 16))
            state = out[0]
            steps.append(out)
        outs[name] = steps
    assert len(many.physics) == 3
    for a, b in zip(outs["one"], outs["many"]):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert any(out[4].any() for out in outs["one"]) or task == "ant"  # hopper terminates: resets are covered


def test_host_threads_setting(monkeypatch):
    from envs.mujoco_envs import host_threads

    monkeypatch.setenv("HYBRID_RL_MUJOCO_THREADS", "3")
    assert host_threads() == 3
    monkeypatch.setenv("HYBRID_RL_MUJOCO_THREADS", "0")
    with pytest.raises(ValueError, match="HYBRID_RL_MUJOCO_THREADS must be a positive integer"):
        host_threads()
    monkeypatch.delenv("HYBRID_RL_MUJOCO_THREADS")
    assert host_threads() >= 1


def test_sim_real_pairs_shift_the_traced_field():
    for name, field, value in [("mujoco_halfcheetah_gravity_2x", "gravity_scale", 2.0),
                               ("mujoco_hopper_friction_0.3x", "friction_scale", 0.3),
                               ("mujoco_walker2d_joint_noise", "noise_std", 1.0)]:
        env, real, spec = make_env(name)
        sim_env, sim = spec.make_sim()
        assert env == sim_env and hash(env) == hash(sim_env)  # one compiled program for both
        assert float(shift_value(real)) == pytest.approx({"noise_std": 0.0}.get(field, 1.0))
        assert float(getattr(sim, field)) == pytest.approx(value)
        _, state = env.reset(jax.random.key(0), real)
        action = jnp.full((env.action_size,), 0.3)
        obs_r, _, _, _, _, info_r = env.step(jax.random.key(1), state, action, real)
        obs_s, _, _, _, _, info_s = env.step(jax.random.key(1), state, action, sim)
        np.testing.assert_array_equal(np.asarray(info_r["executed_action"]), np.asarray(action))
        if field == "noise_std":
            assert not np.allclose(info_s["executed_action"], action)  # the sim runs a noisy action
        if field != "friction_scale":  # friction acts once feet touch the ground, not on the first step
            assert not np.array_equal(np.asarray(obs_r), np.asarray(obs_s))


def test_friction_shift_changes_a_rollout():
    env, real, spec = make_env("mujoco_hopper_friction_0.3x")
    _, sim = spec.make_sim()

    def rollout(p):
        _, state = env.reset(jax.random.key(0), p)

        def body(s, k):
            obs, s, _, _, _, _ = env.step(k, s, jnp.array([0.5, -0.5, 0.5]), p)
            return s, obs

        return jax.lax.scan(body, state, jax.random.split(jax.random.key(1), 60))[1]

    f = jax.jit(rollout)
    assert np.abs(np.asarray(f(real)) - np.asarray(f(sim))).max() > 1e-3
    # the host model is back to nominal physics for the real env afterwards
    np.testing.assert_array_equal(np.asarray(f(real)), np.asarray(f(real)))


_TWO_DEVICE_SCRIPT = """
import json, jax
from algorithms import sac
from experiments.catalog import default_hparams, get_algorithm
from experiments.catalog import build_problem
from hybrid_rl.runner import RunSettings, Runner
cfg = sac.Config(total_steps=200, warmup_steps=100, hidden_sizes=(16, 16), batch_size=16, buffer_size=200)
problem = build_problem("mujoco_hopper", {"max_steps_in_episode": 40})
runner = Runner(sac.make(cfg, problem), problem, default_hparams(get_algorithm("sac"), cfg),
                RunSettings(num_seeds=2, num_evals=2, eval_episodes=2, progress=False))
state, _ = runner.run()
leaf = jax.tree.leaves(state.critic.params)[0]
print(json.dumps({"devices": len(jax.devices()), "sharded": runner.mesh is not None,
                  "returns": [r["eval_return"] for r in runner.rows],
                  "critic": leaf.reshape(leaf.shape[0] * leaf.shape[1], -1).sum(-1).tolist()}))
"""


def _run_two_device_script(devices):
    flags = f"--xla_force_host_platform_device_count={devices} --xla_cpu_multi_thread_eigen=false"
    env = {**os.environ, "XLA_FLAGS": flags, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", _TWO_DEVICE_SCRIPT], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_forced_host_devices_give_the_numbers_of_one():
    one, two = _run_two_device_script(1), _run_two_device_script(2)
    assert one["devices"] == 1 and not one["sharded"]
    assert two["devices"] == 2 and two["sharded"]
    assert one["returns"] == two["returns"]  # the simulator is exact; the learner matches to float rounding
    np.testing.assert_allclose(one["critic"], two["critic"], rtol=1e-4, atol=1e-4)


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match="no MuJoCo task 'cheetah'") as err:
        MujocoEnv("cheetah")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"has no parameter\(s\) \['gravity'\]") as err:
        make_env("mujoco_hopper", gravity=2.0)
    assert "\n" not in str(err.value)


def test_missing_extra_is_a_one_line_error():
    # A fresh interpreter in which ``import mujoco`` fails: the names are listed, building one says what to install.
    script = (
        "import sys; sys.modules['mujoco'] = None\n"
        "from envs.registry import list_envs, make_env\n"
        "assert 'mujoco_hopper' in list_envs()\n"
        "try:\n    make_env('mujoco_hopper')\nexcept ImportError as e:\n    print(str(e))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip()
    assert "\n" not in line and 'pip install -e ".[mujoco]"' in line
