"""One run over two CPU processes on localhost (one JAX job, gloo collectives): the seed axis sharded over
both processes' devices gives exactly the numbers of one process holding both devices; each process
writes its own seeds' rows, process 0 the merged files; a killed run resumes across processes."""

import csv
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import pytest

from hybrid_rl import distributed

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["algo=sac", "env=pendulum", "env.max_steps_in_episode=50", "seeds=4", "total_steps=300",
        "algo.warmup_steps=100", "algo.hidden_sizes=[16,16]", "algo.batch_size=16", "algo.buffer_size=300",
        "num_evals=2", "eval_episodes=2", "progress=false", "checkpoint_interval_s=0"]


def _env(devices):
    flags = f"--xla_force_host_platform_device_count={devices} --xla_cpu_multi_thread_eigen=false"
    return {**os.environ, "XLA_FLAGS": flags, "PYTHONPATH": str(REPO)}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(args, log_dir):
    port = _free_port()
    procs = []
    for i in range(2):
        log = (log_dir / f"process{i}.log").open("w")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "experiments.run", *args, f"coordinator=127.0.0.1:{port}", "num_processes=2",
             f"process_id={i}"], cwd=REPO, env=_env(1), stdout=log, stderr=subprocess.STDOUT))
    codes = [p.wait(timeout=900) for p in procs]
    assert codes == [0, 0], "".join((log_dir / f"process{i}.log").read_text()[-2000:] for i in range(2))


def _rows(path):
    with path.open() as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


@pytest.mark.slow  # three tiny SAC runs in subprocesses: ~60 s idle
def test_two_processes_equal_one_process_and_resume_across_processes(tmp_path):
    one = tmp_path / "one"
    out = subprocess.run([sys.executable, "-m", "experiments.run", *TINY, f"out_dir={one}"], cwd=REPO, env=_env(2),
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    two = tmp_path / "two"
    _two_processes([*TINY, f"out_dir={two}"], tmp_path)
    assert "on 2 cpu device(s)" in (tmp_path / "process0.log").read_text()
    assert (tmp_path / "process1.log").read_text().count("final eval return") == 0  # process 0 reports
    merged = _rows(two / "metrics.csv")
    assert merged == _rows(one / "metrics.csv")
    for i, seeds in enumerate(({"0", "1"}, {"2", "3"})):
        mine = _rows(two / f"metrics.process{i}.csv")
        assert {r["seed"] for r in mine} == seeds
        assert mine == [r for r in merged if r["seed"] in seeds]
    assert (two / "summary.json").read_text() == (one / "summary.json").read_text()

    # Kill it after its next-to-last chunk: drop the last checkpoint and the final files, resume on 2 processes.
    steps = sorted(int(p.name) for p in (two / "checkpoints").iterdir() if p.name.isdigit())
    shutil.rmtree(two / "checkpoints" / str(steps[-1]))
    for name in ("summary.json", "metrics.csv"):
        (two / name).unlink()
    _two_processes([f"resume={two}"], tmp_path)
    assert f"at chunk {steps[-1] - 1}/{steps[-1]}" in (tmp_path / "process0.log").read_text()
    assert _rows(two / "metrics.csv") == merged
    assert (two / "summary.json").read_text() == (one / "summary.json").read_text()


def test_incomplete_process_options_are_a_clear_error():
    with pytest.raises(ValueError, match="needs all of coordinator"):
        distributed.initialize(coordinator="127.0.0.1:1234")
    with pytest.raises(ValueError, match="not an integer"):
        distributed.initialize_from_argv(["coordinator=h:1", "num_processes=two", "process_id=0"])
    with pytest.raises(ValueError, match=r"process_id=2 is not in \[0, num_processes=2\)"):
        distributed.initialize("127.0.0.1:1234", 2, 2)


def test_single_process_helpers_are_the_plain_operations():
    import jax
    import numpy as np

    assert distributed.initialize() is False  # no options, no SLURM step: nothing to join
    assert distributed.is_primary()
    assert distributed.broadcast_text("runs/x") == "runs/x"
    assert distributed.local_seed_positions(None, 3) == [0, 1, 2]
    x = jax.numpy.arange(4.0)
    np.testing.assert_array_equal(distributed.fetch({"x": x})["x"], np.arange(4.0))


def test_command_line_error_for_half_given_process_options():
    out = subprocess.run([sys.executable, "-m", "experiments.run", "coordinator=127.0.0.1:1"], cwd=REPO,
                         env=_env(1), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: a multi-process run needs all of coordinator")


def test_slurm_step_detection(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed._slurm_multi_task()  # not under SLURM
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert not distributed._slurm_multi_task()  # a batch script or salloc shell: one process
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert not distributed._slurm_multi_task()  # an srun step of one task
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert distributed._slurm_multi_task()  # srun -n 4: one JAX job of 4 processes
