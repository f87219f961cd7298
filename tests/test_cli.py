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
    from experiments.catalog import build_problem
    from hybrid_rl.datasets import write_d4rl_hdf5
    from hybrid_rl.datasets.rollout import rollout_d4rl

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
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"
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
    from experiments.catalog import apply_budget, get_algorithm

    assert apply_budget(get_algorithm("sac"), sac.Config(), None, 123_000).total_steps == 123_000
    for name, cls in [("iql", iql.Config), ("cal_ql", cal_ql.Config)]:
        spec = get_algorithm(name)
        config = apply_budget(spec, cls(), None, 123)
        assert config.online_steps == 123 and config.offline_steps == cls().offline_steps
        config = apply_budget(spec, cls(), None, 123, offline_steps=45)
        assert config.online_steps == 123 and config.offline_steps == 45
        config = apply_budget(spec, cls(), None, 77, offline_only=True)
        assert config.offline_steps == 77 and config.online_steps == cls().online_steps


def test_warmup_longer_than_the_budget_is_clipped_with_one_line():
    from algorithms import sac
    from experiments.catalog import apply_budget, get_algorithm

    lines = []
    config = apply_budget(get_algorithm("sac"), sac.Config(), None, 3000, log=lines.append)
    assert config.total_steps == 3000 and config.warmup_steps == 1500
    assert len(lines) == 1 and "warmup_steps=5000" in lines[0] and "clipped to 1500" in lines[0]
    assert apply_budget(get_algorithm("sac"), sac.Config(), None, 6000, log=lines.append).warmup_steps == 5000


def test_every_algorithm_declares_a_budget_that_total_steps_sets():
    """total_steps means env steps (to within one whole iteration) for every interacting algorithm and
    gradient steps for offline-only ones; each algorithm's agent then runs that many."""
    from experiments.catalog import apply_budget, list_algorithms
    from experiments.smoke import smoke_problem

    for name, spec in list_algorithms().items():
        problem = smoke_problem(spec)
        config = apply_budget(spec, spec.config_cls(), problem, 1000, log=lambda _: None)
        phase = spec.make(config, problem).phases[-1]
        if spec.budget.unit == "grad_steps":
            assert phase.num_iterations * phase.grad_steps_per_iteration == 1000, name
        else:
            steps = phase.num_iterations * phase.env_steps_per_iteration + getattr(config, "warmup_steps", 0)
            assert abs(steps - 1000) < max(phase.env_steps_per_iteration, 1), name  # whole iterations


def test_env_parameter_shortcut_means_env_kwargs():
    from experiments.run import _force_dict_keys

    assert _force_dict_keys(["env=comblock", "env.horizon=20", "env.name=x", "env.kwargs.noise=0.1"]) == [
        "env=comblock", "++env.kwargs.horizon=20", "env.name=x", "++env.kwargs.noise=0.1"]


@pytest.mark.parametrize("args", [["seeds=0"], ["seeds=-1"], ["num_evals=0"], ["eval_episodes=-2"],
                                  ["dataset_size=0"], ["seeds=two"]])
def test_out_of_range_run_values_are_one_line_before_anything_runs(args):
    from experiments.run import check_overrides

    message = check_overrides(args)
    key = args[0].split("=")[0]
    assert message is not None and "\n" not in message and message.startswith(f"error: {key} must be an integer")


def test_flags_may_stand_anywhere_on_the_line():
    from experiments.run import split_flags

    assert split_flags(["algo=rlpd", "--cfg", "job", "seeds=2"]) == (["algo=rlpd", "seeds=2"], ["--cfg", "job"])
    assert split_flags(["--help", "algo=sac"]) == (["algo=sac"], ["--help"])
    assert split_flags(["-m", "algo=sac,rlpd", "--info", "x=1"]) == (["algo=sac,rlpd", "x=1"], ["-m", "--info"])


def test_cfg_job_and_help_work_anywhere(tmp_path):
    out = _cli("algo=rlpd", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "name: rlpd" in out.stdout and "utd: 20" in out.stdout
    out = _cli("algo=sac", "seeds=2", "--help", cwd=tmp_path)
    assert out.returncode == 0 and "Algorithms (algo=...)" in out.stdout, out.stderr[-2000:]
    assert not (tmp_path / "runs").exists()


def test_a_run_that_fails_before_its_first_chunk_leaves_no_folder(tmp_path):
    out = _cli("algo=bc", "env=cartpole", cwd=tmp_path)  # bc needs offline data
    assert out.returncode == 2 and "needs offline data" in out.stderr
    leftovers = [p for p in (tmp_path / "runs").rglob("*")] if (tmp_path / "runs").exists() else []
    assert not leftovers, leftovers
    out = _cli("algo=sac", "seeds=0", cwd=tmp_path)
    assert out.returncode == 2 and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_ctrl_c_stops_within_seconds_with_the_resume_command(tmp_path):
    import signal
    import time

    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.run", "algo=sac", "env=pendulum", "total_steps=400000", "num_evals=400",
         "eval_episodes=1", "algo.warmup_steps=1000", "algo.hidden_sizes=[16,16]", f"out_dir={run_dir}",
         "progress=false"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    from experiments.run import has_checkpoint

    deadline = time.time() + 600
    while not has_checkpoint(run_dir):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.5)
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert time.time() - sent < 10
    assert proc.returncode == 130
    assert "Traceback" not in err and f"resume={run_dir}" in err, err
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"


def test_dataset_size_reports_what_was_delivered_and_why(tmp_path):
    import types

    from experiments.run import report_dataset_size
    from hybrid_rl.datasets import write_d4rl_hdf5

    data = {"observations": np.zeros((90, 3), np.float32), "actions": np.zeros((90, 1), np.float32),
            "rewards": np.zeros(90, np.float32), "terminals": np.zeros(90, bool), "timeouts": np.zeros(90, bool)}
    path = write_d4rl_hdf5(tmp_path / "d.hdf5", data, {"kind": "medium-replay"})
    lines = []
    report_dataset_size(str(path), types.SimpleNamespace(dataset_info={"num_transitions": 89}), 100, lines.append)
    assert len(lines) == 1 and "dataset_size=100: delivered 89 transitions" in lines[0]
    assert "holds 90 rows" in lines[0] and "medium-replay" in lines[0] and "no next observation" in lines[0]
    lines.clear()
    report_dataset_size(str(path), types.SimpleNamespace(dataset_info={"num_transitions": 90}), 90, lines.append)
    assert lines == []
