"""Sweeps through Hydra's launchers, run for real on this machine: submitit's local executor (SLURM's job
mechanics, requeue on pre-emption included) and a local Ray instance. Each must end with exactly the
numbers of the same jobs run directly. Skipped when the extra is not installed (.[cluster], .[ray])."""

import csv
import importlib.util
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
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
    # RAY_AUTH_MODE: a local Ray instance would otherwise write a token to ~/.ray
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    return subprocess.Popen([sys.executable, "-m", "experiments.run", *args], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, env=env)


def _finish(proc, log_path, timeout=1200):
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
    # address null: the launcher starts a local Ray instance for the sweep (stopped when the sweep ends).
    # Ray's socket paths must stay under 107 bytes, hence a short temp dir rather than tmp_path.
    ray_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    try:
        sweep_dir, log = _sweep(tmp_path, ["hydra/launcher=ray_sweep", "++hydra.launcher.ray.init.num_cpus=2",
                                           f"++hydra.launcher.ray.init._temp_dir={ray_dir}"])
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
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
    deadline = time.time() + 1200
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


def _launcher_config(overrides):
    from hydra import compose, initialize_config_dir

    import experiments.run  # noqa: F401  (registers the run config)

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "experiments" / "conf")):
        return compose("config", overrides=overrides, return_hydra_config=True).hydra.launcher


@needs_submitit
def test_shipped_slurm_and_local_configs_have_defaults_and_take_overrides():
    slurm = _launcher_config(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.mem_gb=128"])
    assert slurm._target_.endswith("SlurmLauncher")
    assert (slurm.partition, slurm.mem_gb, slurm.timeout_min, slurm.gpus_per_node) == ("gpu", 128, 240, 1)
    assert slurm.signal_delay_s == 120 and slurm.max_num_timeout == 10
    local = _launcher_config(["hydra/launcher=local", "hydra.launcher.timeout_min=5"])
    assert local._target_.endswith("LocalLauncher") and local.timeout_min == 5 and local.gpus_per_node == 0


@needs_ray
def test_shipped_ray_config_has_defaults_and_takes_overrides():
    ray = _launcher_config(["hydra/launcher=ray_sweep", "hydra.launcher.ray.remote.num_gpus=1"])
    assert ray._target_.endswith("RayLauncher")
    assert ray.ray.init.address is None and ray.ray.remote.num_gpus == 1 and ray.ray.remote.max_retries == 3
