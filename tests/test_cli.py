"""The command line: bad input is one line on stderr with exit code 2; a run writes its outputs; resume."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _cli(*args, cwd=REPO):
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["algo=nope"], "unknown algo 'nope'; valid: "),
        (["env=nope"], "unknown env 'nope'; valid: "),
        (["algo.actor_lrr=1e-3"], "algo 'sac' has no key 'actor_lrr'"),
        (["algo.actor_lr=fast"], "could not be converted to Float"),
        (["seedz=3"], "unknown key 'seedz'"),
        (["-m", "algo=sac,nope"], "unknown algo 'nope'"),
    ],
)
def test_bad_overrides_are_caught_before_hydra_in_one_line(args, needle):
    from experiments.run import check_overrides

    message = check_overrides(args)
    assert message is not None and "\n" not in message and message.startswith("error: ") and needle in message


@pytest.mark.parametrize(
    "args,needle",
    [
        (["algo=nope"], "unknown algo 'nope'; valid: "),
        (["algo=bc", "env=cartpole"], "needs offline data"),
        (["dataset=/no/such/file.hdf5"], "dataset file not found: /no/such/file.hdf5"),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_exit_code_2(args, needle):
    out = _cli(*args)
    assert out.returncode == 2, out.stderr[-1000:]
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], out.stderr


def test_corrupt_hdf5_is_one_line(tmp_path):
    bad = tmp_path / "broken.hdf5"
    bad.write_bytes(b"this is not an HDF5 file" * 10)
    out = _cli("algo=bc", "env=cartpole", f"dataset={bad}")
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "broken.hdf5" in lines[0], out.stderr


def test_run_writes_outputs_and_resume_finishes(tmp_path):
    import jax

    from envs.scripted_experts import cartpole_expert
    from hybrid_rl.datasets import write_d4rl_hdf5
    from hybrid_rl.datasets.rollout import rollout_d4rl
    from hybrid_rl.problem import build_problem

    data = rollout_d4rl(build_problem("cartpole"), cartpole_expert, jax.random.key(0), 2_000, num_envs=4)
    path = write_d4rl_hdf5(tmp_path / "cartpole-expert.hdf5", data)
    run_dir = tmp_path / "run"
    args = ["algo=bc", "env=cartpole", f"dataset={path}", "seeds=2", "total_steps=600", "num_evals=3",
            "eval_episodes=2", "algo.hidden_sizes=[32,32]", f"out_dir={run_dir}", "progress=false"]
    out = _cli(*args)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "final eval return" in out.stdout
    for name in ("config.yaml", "metrics.csv", "summary.json", "eval_returns.json", "learning_curve.png"):
        assert (run_dir / name).exists(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["0"]["num_seeds"] == 2 and summary["0"]["grad_steps"] == 600
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3 * 2  # header + one row per seed per evaluation
    raw = json.loads((run_dir / "eval_returns.json").read_text())
    assert np.asarray(raw[-1]["returns"]).shape == (1, 2, 2)  # (hparam points, seeds, episodes)

    resumed = _cli(f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    assert json.loads((run_dir / "summary.json").read_text()) == summary


def test_regret_algorithm_reports_its_metric_and_env_kwargs_need_no_plus(tmp_path):
    out = _cli("algo=ucrl2", "env=riverswim_switching", "seeds=2", "total_steps=2000", "env.kwargs.total_steps=2000",
               "num_evals=2", f"out_dir={tmp_path / 'r'}", "progress=false")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "final cumulative_regret" in out.stdout
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["0"]["final_metrics"]["cumulative_regret"] > 0


def test_algorithm_fields_work_as_top_level_shortcuts():
    from experiments.run import _algo_key_shortcuts

    assert _algo_key_shortcuts(["algo=demo_regularized", "env=gridworld", "demos=100", "seeds=16"]) == [
        "algo=demo_regularized", "env=gridworld", "algo.demos=100", "seeds=16"]
    assert _algo_key_shortcuts(["algo=sac", "utd=2", "total_steps=10"]) == ["algo=sac", "algo.utd=2", "total_steps=10"]
    assert _algo_key_shortcuts(["algo=sac", "nonsense=1"]) == ["algo=sac", "nonsense=1"]  # still an error later


def test_total_steps_sets_the_env_step_budget_of_two_phase_algorithms():
    from algorithms import cal_ql, iql, sac
    from experiments.run import _apply_total_steps

    assert _apply_total_steps("sac", sac.Config(), 123).total_steps == 123
    for name, cls in [("iql", iql.Config), ("cal_ql", cal_ql.Config)]:
        config = _apply_total_steps(name, cls(), 123)
        assert config.online_steps == 123 and config.offline_steps == cls().offline_steps
        config = _apply_total_steps(name, cls(), 77, phase="offline")
        assert config.offline_steps == 77 and config.online_steps == cls().online_steps


def test_env_parameter_shortcut_means_env_kwargs():
    from experiments.run import _force_dict_keys

    assert _force_dict_keys(["env=comblock", "env.horizon=20", "env.name=x", "env.kwargs.noise=0.1"]) == [
        "env=comblock", "++env.kwargs.horizon=20", "env.name=x", "++env.kwargs.noise=0.1"]
