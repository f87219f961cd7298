"""Sweeps through Hydra's launchers, run for real on this machine: submitit's local executor (SLURM's job
mechanics, requeue on pre-emption included) and a local Ray instance. Each must end with exactly the
numbers of the same jobs run directly. Skipped when the extra is not installed (.[cluster], .[ray])."""

import csv
import importlib.util
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from experiments.aggregate import find_runs

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["algo=sac", "env=pendulum", "env.max_steps_in_episode=50", "seeds=2", "total_steps=200",
        "algo.warmup_steps=100", "algo.hidden_sizes=[16,16]", "algo.batch_size=16", "algo.buffer_size=200",
        "num_evals=2", "eval_episodes=2", "progress=false"]
OFFSETS = (0, 2)
needs_submitit = pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
                                    reason="hydra-submitit-launcher not installed (pip install -e '.[cluster]')")
needs_ray = pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
                               reason="hydra-ray-launcher not installed (pip install -e '.[ray]')")


def _start(args, log):
    return subprocess.Popen([sys.executable, "-m", "experiments.run", *args], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})


def _finish(proc, log_path, timeout=600):
    assert proc.wait(timeout=timeout) == 0, log_path.read_text()[-3000:]


def _rows(run_dir):
    with (run_dir / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def _by_offset(sweep_dir):
    runs = {}
    for run in find_runs([sweep_dir]):
        offset = int((run / "config.yaml").read_text().split("seed_offset:")[1].split()[0])
        runs[offset] = run
    return runs


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    """The sweep's jobs run directly, one process each (started together)."""
    root = tmp_path_factory.mktemp("direct")
    procs = []
    for offset in OFFSETS:
        log = root / f"{offset}.log"
        procs.append((_start([*TINY, f"seed_offset={offset}", f"out_dir={root / str(offset)}"], log.open("w")), log))
    for proc, log in procs:
        _finish(proc, log)
    return {offset: _rows(root / str(offset)) for offset in OFFSETS}


def _sweep(tmp_path, launcher_args):
    log = tmp_path / "sweep.log"
    sweep_dir = tmp_path / "sweep"
    proc = _start(["-m", *launcher_args, *TINY, f"seed_offset={','.join(map(str, OFFSETS))}",
                   f"hydra.sweep.dir={sweep_dir}"], log.open("w"))
    _finish(proc, log)
    return sweep_dir, log


@pytest.mark.slow  # four tiny SAC runs (two direct, two through the launcher): ~40 s idle, minutes under load
@needs_submitit
def test_submitit_local_sweep_equals_direct_runs(tmp_path, direct):
    sweep_dir, _ = _sweep(tmp_path, ["hydra/launcher=local"])
    runs = _by_offset(sweep_dir)
    assert sorted(runs) == list(OFFSETS)
    for offset, run in runs.items():
        assert _rows(run) == direct[offset]
        assert {int(r["seed"]) for r in _rows(run)} == {offset, offset + 1}
    assert list((sweep_dir / ".submitit").iterdir())  # the jobs went through submitit


@pytest.mark.slow
@needs_ray
def test_ray_sweep_equals_direct_runs(tmp_path, direct):
    # address null: the launcher starts a local Ray instance for the sweep (stopped when the sweep ends)
    sweep_dir, log = _sweep(tmp_path, ["hydra/launcher=ray", "++hydra.launcher.ray.init.num_cpus=2",
                                       f"++hydra.launcher.ray.init._temp_dir={tmp_path / 'ray'}"])
    assert "Ray Launcher is launching 2 jobs" in log.read_text()
    runs = _by_offset(sweep_dir)
    assert sorted(runs) == list(OFFSETS)
    for offset, run in runs.items():
        assert _rows(run) == direct[offset]


def _submitit_tasks(folder: pathlib.Path) -> list[int]:
    """Process ids of the submitit task processes (not their controller) working for ``folder``."""
    pids = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in cmd and any(str(folder).encode() in c for c in cmd):
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow  # two tiny SAC runs with 4 evaluations each, one of them pre-empted and requeued
@needs_submitit
def test_preempted_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    args = [a if not a.startswith("num_evals=") else "num_evals=4" for a in TINY] + ["seed_offset=0"]
    direct_log = tmp_path / "direct.log"
    direct_proc = _start([*args, f"out_dir={tmp_path / 'direct'}"], direct_log.open("w"))
    sweep_dir, log = tmp_path / "sweep", tmp_path / "sweep.log"
    proc = _start(["-m", "hydra/launcher=local", *args, f"hydra.sweep.dir={sweep_dir}"], log.open("w"))
    # Pre-empt the job once its first checkpoint is on disk: SIGUSR2 is what SLURM (and submitit's local
    # executor, at its time limit) sends; submitit requeues the job and our run continues from there.
    deadline = time.time() + 600
    signalled = False
    while not signalled and time.time() < deadline and proc.poll() is None:
        steps = [p for p in sweep_dir.glob("*/checkpoints/*") if p.name.isdigit()]
        tasks = _submitit_tasks(sweep_dir / ".submitit")
        if steps and tasks:
            for pid in tasks:
                os.kill(pid, signal.SIGUSR2)
            signalled = True
        time.sleep(0.2)
    assert signalled, "the job finished or never checkpointed before it could be pre-empted"
    _finish(proc, log)
    _finish(direct_proc, direct_log)
    (run,) = find_runs([sweep_dir])
    job_logs = "".join(p.read_text() for p in (sweep_dir / ".submitit").rglob("*.out"))
    assert "resuming from it" in job_logs or "resumed from" in job_logs
    assert _rows(run) == _rows(tmp_path / "direct")
