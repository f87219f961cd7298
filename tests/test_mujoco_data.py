"""D4RL and Minari data in MuJoCo: a D4RL-layout file with no env= trains and evaluates in the matching
MuJoCo env with D4RL-normalized scores; a Minari dataset loads and picks its v5 env; the replay check;
shapes that fit no task are one line; a killed run on a MuJoCo env resumes to identical numbers; the
builder makes its kinds for a MuJoCo env."""

import json
import pathlib

import h5py
import jax
import numpy as np
import pytest

from hybrid_rl.datasets import DatasetError, write_d4rl_hdf5

pytest.importorskip("mujoco", reason='needs the mujoco extra (pip install -e ".[mujoco]")')

from experiments.catalog import make_env  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["seeds=1", "num_evals=2", "eval_episodes=2", "algo.hidden_sizes=[16,16]", "algo.batch_size=32",
        "progress=false"]


def rollout_episodes(env_name, steps, num_envs=4, max_steps=60, seed=0):
    """Random-action data from our env in D4RL's layout, with the state before each step in infos/qpos, qvel,
    and per-episode lists in Minari's layout. Streams are cut (timeout) at their last step."""
    env, params, _ = make_env(env_name, max_steps_in_episode=max_steps)
    keys = jax.random.split(jax.random.key(seed), num_envs)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

    def body(state, key):
        k_act, k_step = jax.random.split(key)
        action = jax.random.uniform(k_act, (num_envs, env.action_size), minval=-1, maxval=1)
        obs, new_state, reward, term, trunc, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_step, num_envs), state, action, params)
        return new_state, (state, action, reward, term, trunc, info["final_observation"])

    _, (states, actions, rewards, terms, truncs, finals) = jax.lax.scan(
        jax.jit(body), state, jax.random.split(jax.random.key(seed + 1), steps))
    qpos, qvel = env.qpos_qvel(states)  # (steps, num_envs, n)
    terms, truncs = np.asarray(terms), np.asarray(truncs).copy()
    truncs[-1] |= ~terms[-1]
    swap = lambda x: np.swapaxes(np.asarray(x), 0, 1).reshape((steps * num_envs,) + np.asarray(x).shape[2:])  # noqa: E731
    data = {
        "observations": swap(states.obs), "next_observations": swap(finals), "actions": swap(actions),
        "rewards": swap(rewards), "terminals": swap(terms), "timeouts": swap(truncs),
        "infos/qpos": swap(qpos).astype(np.float32), "infos/qvel": swap(qvel).astype(np.float32),
    }
    return data


def split_episodes(data):
    ends = np.flatnonzero(data["terminals"] | data["timeouts"])
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [(s, e + 1) for s, e in zip(starts, ends)]


def write_minari(root, data, env_id="Hopper-v5", refs=None):
    """A dataset directory in Minari's layout: data/main_data.hdf5 (episode groups) + data/metadata.json."""
    data_dir = root / "data"
    data_dir.mkdir(parents=True)
    with h5py.File(data_dir / "main_data.hdf5", "w") as f:
        for i, (s, e) in enumerate(split_episodes(data)):
            g = f.create_group(f"episode_{i}")
            g.create_dataset("observations", data=np.concatenate([data["observations"][s:e], data["next_observations"][e - 1:e]]))
            g.create_dataset("actions", data=data["actions"][s:e])
            g.create_dataset("rewards", data=data["rewards"][s:e].astype(np.float64))
            g.create_dataset("terminations", data=data["terminals"][s:e])
            g.create_dataset("truncations", data=data["timeouts"][s:e])
            g.attrs["id"] = i
    spec = {"id": env_id, "entry_point": "gymnasium.envs.mujoco.hopper_v5:HopperEnv", "max_episode_steps": 1000,
            "kwargs": {}}
    metadata = {"dataset_id": "local/hopper/random-v0", "total_episodes": len(split_episodes(data)),
                "total_steps": int(len(data["actions"])), "data_format": "hdf5", "env_spec": json.dumps(spec)}
    if refs:
        metadata["ref_min_score"], metadata["ref_max_score"] = refs
    (data_dir / "metadata.json").write_text(json.dumps(metadata))
    return root


@pytest.fixture(scope="module")
def hopper_data():
    return rollout_episodes("mujoco_hopper", steps=150)


def _compose(*overrides):
    from hydra import compose, initialize

    import experiments.run  # noqa: F401  (registers the configs)

    with initialize(version_base="1.3", config_path=None):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.slow  # ~2 min on the loaded 2-core CPU (IQL compile, two phases, MuJoCo evaluation)
def test_d4rl_file_without_env_trains_and_evaluates_in_mujoco(tmp_path, hopper_data):
    from experiments.run import train_from_config

    path = write_d4rl_hdf5(tmp_path / "hopper_medium-v2.hdf5", hopper_data)
    cfg = _compose("algo=iql", f"dataset={path}", "algo.offline_steps=60", "algo.online_steps=40", *TINY)
    lines = []
    summary = train_from_config(cfg, tmp_path / "run", env_given=False, log=lines.append)["0"]
    assert any(ln.startswith("env: mujoco_hopper (MuJoCo, D4RL's semantics) for hopper-medium-v2") for ln in lines), lines
    assert any("hopper-medium-v2's reference returns (random -20.3, expert 3234.3)" in ln for ln in lines), lines
    assert summary["env_steps"] == 40 and np.isfinite(summary["final_eval_return_mean"])
    expected = 100 * (summary["final_eval_return_mean"] + 20.272305) / (3234.3 + 20.272305)
    assert summary["final_normalized_score_mean"] == pytest.approx(expected, rel=1e-4)
    assert "name: mujoco_hopper" in (tmp_path / "run" / "config.yaml").read_text()


def test_minari_dataset_loads_and_picks_its_v5_env(tmp_path, hopper_data):
    from experiments.catalog import problem_for_dataset_file
    from hybrid_rl.datasets.minari import is_minari_dataset, load_minari

    root = write_minari(tmp_path / "local" / "hopper" / "random-v0", hopper_data, refs=(-20.0, 3000.0))
    assert is_minari_dataset(root) and is_minari_dataset(root / "data" / "main_data.hdf5")
    data, metadata = load_minari(root)
    for key in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts"):
        np.testing.assert_array_equal(data[key], hopper_data[key].astype(data[key].dtype), err_msg=key)
    assert metadata["total_episodes"] == len(split_episodes(hopper_data))
    lines = []
    problem = problem_for_dataset_file("pendulum", {}, str(root), log=lines.append)
    assert problem.env_name == "mujoco_hopper_v5" and problem.has_simulator
    assert lines == ["env: mujoco_hopper_v5 (MuJoCo Hopper-v5), the env this Minari dataset names"]
    assert problem.reference_returns() == (-20.0, 3000.0)
    assert problem.dataset.reward.shape[0] == len(hopper_data["rewards"])


def test_minari_dataset_with_env_given_loads(tmp_path, hopper_data):
    from experiments.catalog import build_problem

    root = write_minari(tmp_path / "m", hopper_data)
    problem = build_problem("mujoco_hopper_v5", {}, str(root))
    assert problem.dataset.obs.shape == (len(hopper_data["rewards"]), 11)


def test_bad_minari_metadata_and_shapes_are_one_line(tmp_path, hopper_data):
    from experiments.catalog import problem_for_dataset_file

    root = write_minari(tmp_path / "w", hopper_data, env_id="Walker2d-v5")  # 11-d observations, walker has 17
    with pytest.raises(DatasetError) as err:
        problem_for_dataset_file("pendulum", {}, str(root), log=lambda _: None)
    assert "match no task" in str(err.value) and "\n" not in str(err.value)
    broken = write_minari(tmp_path / "b", hopper_data)
    (broken / "data" / "metadata.json").write_text("{not json")
    from hybrid_rl.datasets.minari import load_minari

    with pytest.raises(DatasetError, match="cannot be read as JSON") as err:
        load_minari(broken)
    assert "\n" not in str(err.value)


def test_a_d4rl_file_whose_shapes_match_no_task_is_one_line(tmp_path, hopper_data):
    from experiments.run import _one_line_error, train_from_config

    data = {**hopper_data, "observations": np.zeros((len(hopper_data["rewards"]), 12), np.float32),
            "next_observations": np.zeros((len(hopper_data["rewards"]), 12), np.float32)}
    path = write_d4rl_hdf5(tmp_path / "hopper_medium-v2.hdf5", data)
    cfg = _compose("algo=iql", f"dataset={path}", *TINY)
    with pytest.raises(DatasetError) as err:
        train_from_config(cfg, tmp_path / "run", env_given=False, log=lambda _: None)
    message = _one_line_error(err.value)
    assert "\n" not in message and "observations (12,) / actions (3,) match no task" in message
    assert "mujoco_hopper has observations (11,)" in message


def test_check_dataset_replays_a_file_made_here_to_float32_rounding(tmp_path, hopper_data, capsys):
    from experiments.check_dataset import check_dataset, main

    path = write_d4rl_hdf5(tmp_path / "hopper_random-v2.hdf5", hopper_data)
    stats = check_dataset(str(path), rows=200)
    assert stats["env"] == "mujoco_hopper" and stats["rows"] == 200
    # qpos/qvel were stored as float32 (as D4RL stores them) and the warm start is not stored: small errors
    assert stats["obs_from_state_max"] < 1e-6
    assert stats["next_obs_median"] < 1e-3 and stats["reward_median"] < 1e-3
    assert main([str(path), "rows=50"]) == 0
    out = capsys.readouterr().out
    assert "50 rows replayed in mujoco_hopper" in out and "next observation after the stored action" in out
    # bad input: one line, exit code 2
    no_state = {k: v for k, v in hopper_data.items() if not k.startswith("infos/")}
    bare = write_d4rl_hdf5(tmp_path / "hopper_medium-v2.hdf5", no_state)
    assert main([str(bare)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "infos/qpos' is missing" in err and "\n" not in err
    assert main([str(path), "rowz=3"]) == 2


class _Killed(Exception):
    pass


@pytest.mark.slow  # three runners, each compiling SAC: ~4 min under load
def test_killed_run_on_mujoco_resumes_to_identical_numbers(tmp_path):
    from algorithms import sac
    from experiments.catalog import build_problem, default_hparams, get_algorithm
    from hybrid_rl.runner import Runner, RunSettings

    cfg = sac.Config(total_steps=240, warmup_steps=80, hidden_sizes=(16, 16), batch_size=16, buffer_size=240)
    problem = build_problem("mujoco_hopper_gravity_2x", {"max_steps_in_episode": 30})

    def runner(out):
        return Runner(sac.make(cfg, problem), problem, default_hparams(get_algorithm("sac"), cfg),
                      RunSettings(num_seeds=2, num_evals=4, eval_episodes=2, progress=False), out_dir=out)

    full = runner(tmp_path / "full")
    full_state, _ = full.run()
    killed = runner(tmp_path / "killed")
    original_save = killed._save

    def save_then_die(step, state, progress):
        original_save(step, state, progress)
        if step == 2:
            raise _Killed()

    killed._save = save_then_die
    with pytest.raises(_Killed):
        killed.run()
    resumed = runner(tmp_path / "killed")
    resumed_state, _ = resumed.run(resume=True)
    assert [r["eval_return"] for r in resumed.rows] == [r["eval_return"] for r in full.rows]
    # the agent's env state is the MuJoCo state inside the episode-statistics wrapper
    np.testing.assert_array_equal(np.asarray(resumed_state.env_state.env_state.sim),
                                  np.asarray(full_state.env_state.env_state.sim))
    for a, b in zip(jax.tree.leaves(full_state.critic.params), jax.tree.leaves(resumed_state.critic.params)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # ~75 s: SAC training, candidate evaluations and five files
def test_builder_makes_every_kind_for_a_mujoco_env(tmp_path):
    from experiments.dataset_builder import KINDS, get_or_build_dataset, sac_budget
    from hybrid_rl.datasets import load_d4rl_hdf5

    assert sac_budget("mujoco_hopper") == sac_budget("mujoco_halfcheetah_gravity_2x")
    options = dict(train_steps=300, warmup_steps=100, hidden_sizes=(16, 16), num_checkpoints=3, eval_episodes=2,
                   max_eval_steps=50, num_envs=2)
    for kind in KINDS:
        path = get_or_build_dataset("mujoco_hopper", kind, 200, data_dir=tmp_path, log=None,
                                    env_kwargs={"max_steps_in_episode": 50}, **options)
        raw = load_d4rl_hdf5(path)
        # medium-replay is the SAC buffer up to the medium checkpoint: at most the size asked for
        rows = raw["observations"].shape[0]
        assert (rows == 200 or (kind == "medium-replay" and 0 < rows <= 200)), (kind, rows)
        assert raw["observations"].shape[1:] == (11,) and raw["actions"].shape == (rows, 3), kind
        assert np.abs(raw["actions"]).max() <= 1.0 + 1e-6
