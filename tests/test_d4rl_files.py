"""Real D4RL files on the command line: ``python -m experiments.run algo=iql dataset=<hopper-medium-v2.hdf5>
phase=offline`` with no ``env=``. The file's name gives its D4RL task (reference returns, and the Brax env
that may stand in for MuJoCo); without one the run trains offline with no evaluation and says so. The
files here are small fakes in D4RL's layout (11-d observations, 3-d actions, as in hopper)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from hybrid_rl.datasets import DatasetError, infer_d4rl_task, write_d4rl_hdf5

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["seeds=1", "num_evals=2", "algo.hidden_sizes=[16,16]", "algo.batch_size=32", "progress=false"]


def fake_d4rl(n=2_000, obs_dim=11, action_dim=3, episode=100, seed=0, **drop):
    """A dict in D4RL's Gym-MuJoCo v2 layout: timeouts every ``episode`` steps, next_observations, infos."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    data = {
        "observations": obs,
        "next_observations": np.concatenate([obs[1:], rng.normal(size=(1, obs_dim))]).astype(np.float32),
        "actions": rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
        "rewards": rng.normal(1.0, 0.5, n).astype(np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": np.arange(n) % episode == episode - 1,
        "infos/qpos": rng.normal(size=(n, 6)).astype(np.float32),
    }
    return {k: v for k, v in data.items() if k not in drop}


def _write_raw(path, data):
    """Writes ``data`` as given (no validation), so a broken file can be made."""
    import h5py

    with h5py.File(path, "w") as f:
        for key, value in data.items():
            f.create_dataset(key, data=value)
    return path


def _compose(*overrides):
    from hydra import compose, initialize

    import experiments.run  # noqa: F401  (registers the configs)

    with initialize(version_base="1.3", config_path=None):
        return compose(config_name="config", overrides=list(overrides))


def test_d4rl_task_is_inferred_from_the_file_name():
    assert infer_d4rl_task("/data/hopper-medium-v2.hdf5") == "hopper-medium-v2"
    assert infer_d4rl_task("~/.d4rl/datasets/hopper_medium-v2.hdf5") == "hopper-medium-v2"  # D4RL's own name
    assert infer_d4rl_task("halfcheetah_medium_replay-v2.hdf5") == "halfcheetah-medium-replay-v2"
    assert infer_d4rl_task("walker2d_medium_expert-v2.hdf5") == "walker2d-medium-expert-v2"
    assert infer_d4rl_task("ant-expert-v2.h5") == "ant-expert-v2"
    assert infer_d4rl_task("maze2d-umaze-dense-v1.hdf5") == "maze2d-umaze-dense-v1"
    assert infer_d4rl_task("Ant_maze_u-maze_noisy_multistart_False_multigoal_False_sparse_fixed.hdf5") == \
        "antmaze-umaze-v2"
    assert infer_d4rl_task("Ant_maze_big-maze_noisy_multistart_True_multigoal_False_sparse_fixed.hdf5") == \
        "antmaze-medium-play-v2"
    assert infer_d4rl_task("Ant_maze_hardest-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5") == \
        "antmaze-large-diverse-v2"
    for name in ("pendulum-expert.hdf5", "pendulum-medium-100000-1a2b3c.hdf5", "my_data.hdf5", "antelope.hdf5"):
        assert infer_d4rl_task(name) is None, name


def test_cli_offline_on_a_d4rl_file_without_an_env(tmp_path):
    """The user's command on a machine without MuJoCo or Brax (stub ``brax`` and ``mujoco`` packages that
    fail to import stand in for "not installed"): offline losses logged, checkpoints written, no evaluation, one line
    saying so."""
    path = write_d4rl_hdf5(tmp_path / "hopper-medium-v2.hdf5", fake_d4rl())
    no_brax = tmp_path / "no_brax" / "brax"
    no_brax.mkdir(parents=True)
    (no_brax / "__init__.py").write_text("raise ImportError('brax is hidden in this test')\n")
    (no_brax.parent / "mujoco").mkdir()
    (no_brax.parent / "mujoco" / "__init__.py").write_text("raise ImportError('mujoco is hidden in this test')\n")
    env = {**os.environ, "PYTHONPATH": f"{no_brax.parent}{os.pathsep}{REPO}", "MPLBACKEND": "Agg"}
    run_dir = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "experiments.run", "algo=iql", f"dataset={path}", "phase=offline",
                          "total_steps=200", f"out_dir={run_dir}", *TINY],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("no env to evaluate hopper-medium-v2 in")]
    assert len(lines) == 1 and "no D4RL-normalized score is reported" in lines[0], out.stdout
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    header = rows[0].split(",")
    assert len(rows) == 3 and "value_loss" in header and "eval_return" not in header
    assert all(r.startswith("offline,") for r in rows[1:])
    assert list((run_dir / "checkpoints").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())["0"]
    assert summary["grad_steps"] == 200 and summary["env_steps"] == 0  # total_steps = offline_steps, no online
    assert np.isfinite(summary["final_metrics"]["critic_loss"])
    assert "name: none" in (run_dir / "config.yaml").read_text()


def test_cal_ql_without_phase_skips_its_online_phase_when_nothing_simulates_the_file(tmp_path):
    from experiments.run import train_from_config

    path = write_d4rl_hdf5(tmp_path / "hopper_medium-v2.hdf5", fake_d4rl())
    cfg = _compose("algo=cal_ql", f"dataset={path}", "env=none", "algo.offline_steps=40", "algo.online_steps=100",
                   "algo.cql_num_actions=2", *TINY)
    lines = []
    summary = train_from_config(cfg, tmp_path / "run", log=lines.append)["0"]
    assert any(ln.startswith("no env to evaluate hopper-medium-v2 in (env=none)") for ln in lines), lines
    assert any("online phase is skipped" in ln for ln in lines), lines
    assert summary["grad_steps"] == 40 and summary["env_steps"] == 0
    assert np.isfinite(summary["final_metrics"]["critic_loss"])


def test_a_file_that_fits_no_env_and_has_no_d4rl_name_is_trained_offline(tmp_path):
    from experiments.catalog import problem_for_dataset_file

    path = write_d4rl_hdf5(tmp_path / "robot_logs.hdf5", fake_d4rl(obs_dim=5, action_dim=2))
    lines = []
    problem = problem_for_dataset_file("pendulum", {}, str(path), log=lines.append)
    assert not problem.has_simulator and problem.obs_shape == (5,) and problem.action_dim == 2
    assert problem.reference_returns() is None
    assert len(lines) == 1 and "do not fit the default env 'pendulum'" in lines[0]
    # The default env is kept when the file fits it (the file name says nothing).
    fits = write_d4rl_hdf5(tmp_path / "pendulum-data.hdf5", fake_d4rl(obs_dim=3, action_dim=1))
    assert problem_for_dataset_file("pendulum", {}, str(fits), log=lines.append).env_name == "pendulum"


def test_brax_stands_in_for_mujoco_with_d4rl_normalized_scores(tmp_path, monkeypatch):
    pytest.importorskip("brax")
    import envs.mujoco_envs
    from experiments.catalog import problem_for_dataset_file

    monkeypatch.setattr(envs.mujoco_envs, "mujoco_available", lambda: False)  # Brax is the fallback

    path = write_d4rl_hdf5(tmp_path / "hopper-medium-v2.hdf5", fake_d4rl())
    lines = []
    problem = problem_for_dataset_file("pendulum", {}, str(path), log=lines.append)
    assert problem.env_name == "brax_hopper" and problem.has_simulator
    assert "stands in for D4RL's MuJoCo hopper-medium-v2" in lines[0]
    assert problem.reference_returns() == pytest.approx((-20.272305, 3234.3))  # D4RL's hopper references


@pytest.mark.parametrize(
    "overrides,data,needle",
    [
        ([], fake_d4rl(rewards=True), "key 'rewards': required key is missing"),
        ([], {**fake_d4rl(), "actions": np.zeros((1_999, 3), np.float32)}, "key 'actions': has 1999 steps"),
        ([], {**fake_d4rl(), "actions": np.zeros(2_000, np.float32)}, "with no env the actions must be continuous"),
        (["env=pendulum"], fake_d4rl(), "key 'observations': shape (11,) per step, expected obs_dim (3,)"),
        (["phase=online"], fake_d4rl(), "unknown phase 'online'; valid: offline, offline_to_online"),
        (["algo=sac", "phase=offline"], fake_d4rl(), "algo 'sac' has no offline and online phases"),
        (["phase=offline_to_online", "env=none"], fake_d4rl(), "phase=offline_to_online needs an env to fine-tune in"),
        (["algo=sac", "env=none"], fake_d4rl(), "algo 'sac' steps an env, and no env simulates hopper-medium-v2"),
    ],
)
def test_bad_files_and_options_are_one_line_errors(tmp_path, overrides, data, needle):
    from experiments.catalog import CatalogError
    from experiments.run import UserError, _one_line_error, train_from_config

    path = _write_raw(tmp_path / "hopper-medium-v2.hdf5", data)
    algo = [] if any(o.startswith("algo=") for o in overrides) else ["algo=iql"]
    cfg = _compose(*algo, f"dataset={path}", *overrides, *TINY)
    env_given = any(o.startswith("env=") for o in overrides)
    with pytest.raises((UserError, DatasetError, CatalogError)) as err:
        train_from_config(cfg, tmp_path / "run", env_given=env_given, log=lambda _: None)
    message = _one_line_error(err.value)
    assert "\n" not in message and needle in message, message
