"""The benchmark scripts: fast unit tests of the timing helpers and of the fixes, and every script in
``benchmarks/`` run at its ``--tiny`` size in a subprocess (slow: each compiles a few programs)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import _measure
from benchmarks.anchors import FiveTupleEnv, markdown_table
from benchmarks.seed_scaling import config_overrides
from experiments.catalog import get_algorithm

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
NOT_SCRIPTS = {"__init__.py", "_measure.py"}  # helpers; anchors_impl/ is a package of anchor programs

# ----------------------------------------------------------------------------------------------------
# Fast unit tests
# ----------------------------------------------------------------------------------------------------


def test_summary_min_median_loads_threads():
    samples = [_measure.Sample(2.0, 3.0, 1.0, 1.5, 10), _measure.Sample(1.0, 1.0, 0.5, 2.5, 12),
               _measure.Sample(4.0, 4.0, 1.2, 1.1, 11)]
    s = _measure.Summary.of(samples)
    assert (s.n, s.min_s, s.median_s) == (3, 1.0, 2.0)
    assert s.cores_busy == pytest.approx(1.0)  # cores busy 1.5, 1.0, 1.0 -> median 1.0
    assert (s.load_min, s.load_max, s.threads) == (0.5, 2.5, 12)
    with pytest.raises(ValueError, match="no samples"):
        _measure.Summary.of([])


def test_measure_counts_wall_cpu_and_threads():
    sample, out = _measure.measure(lambda: sum(i * i for i in range(200_000)))
    assert out == sum(i * i for i in range(200_000))
    assert sample.wall_s > 0 and sample.cpu_s >= 0
    if sys.platform.startswith("linux"):
        assert sample.threads >= 1 and _measure.os_thread_count() >= 1


def test_seed_scaling_overrides_follow_the_config():
    # PPO has no warm-up: passing warmup_steps to its Config was the script's crash.
    ppo = config_overrides(get_algorithm("ppo"), 1_000, 100, None)
    assert ppo == {"total_steps": 1_000}
    get_algorithm("ppo").config_cls(**ppo)
    sac = config_overrides(get_algorithm("sac"), 1_000, 100, 32)
    assert sac == {"total_steps": 1_000, "warmup_steps": 100, "hidden_sizes": (32, 32)}


def test_five_tuple_env_merges_terminated_and_truncated():
    import gymnax

    env, params = gymnax.make("Pendulum-v1")
    wrapped = FiveTupleEnv(env)
    key = jax.random.key(0)
    obs, state = wrapped.reset(key, params)
    assert wrapped.action_space(params).shape == env.action_space(params).shape
    out = wrapped.step(key, state, jnp.zeros(1), params)
    assert len(out) == 5
    assert not bool(out[3])
    # At the time limit the 6-tuple's truncated becomes the 5-tuple's done.
    last = state.replace(time=params.max_steps_in_episode - 1)
    assert bool(wrapped.step(key, last, jnp.zeros(1), params)[3])
    # Rejax deep-copies its config, env included.
    copied = copy.deepcopy(wrapped)
    assert len(copied.step(key, state, jnp.zeros(1), params)) == 5


def test_markdown_table_ratio_and_returns():
    def side(name, run_med, comp, ret):
        run = {"n": 2, "min_s": run_med / 2, "median_s": run_med, "cores_busy": 1.0, "load_min": 1.0,
               "load_max": 2.0, "threads": 5}
        return {"name": name, "run": run, "compile": {**run, "min_s": comp, "median_s": comp}, "final_return": ret}

    row = {"pair": "ppo", "seeds": 8, "ours": side("a", 1.0, 2.0, 500.0), "anchor": side("b", 2.0, 4.0, None),
           "run_ratio_median": 0.5, "run_ratio_min": 0.5, "compile_ratio_median": 0.5}
    table = markdown_table([row]).splitlines()
    assert len(table) == 3 and table[0].count("|") == table[1].count("|") == table[2].count("|")
    assert "| 0.50 (0.50) |" in table[2] and "500.0 / -" in table[2]


def test_kernel_profile_splits_busy_time_into_products_other_kernels_and_the_rest():
    from benchmarks.kernel_profile import summarize_events

    # One worker thread: an executor span (0-100 ns) holding a product (10-40), an elementwise kernel (50-60) and
    # a pool wait (70-80); a second top-level executor span (200-230) holding one library-fused product.
    lines = {"t0": [(0, 100, "ThunkExecutor::Execute"), (10, 40, "dot.3"), (50, 60, "add_fusion.1"),
                    (70, 80, "SlinkyThreadPool::Await"), (200, 230, "ThunkExecutor::Execute"),
                    (205, 225, "ynn_fusion.2")]}
    p = summarize_events(lines, wall_s=1e-6)
    assert p.busy_s == pytest.approx(130e-9)
    assert (p.matmul_s, p.matmul_kernels) == (pytest.approx(50e-9), 2)
    assert (p.other_s, p.other_kernels) == (pytest.approx(10e-9), 1)
    assert p.dispatch_s == pytest.approx(70e-9)  # busy time in no kernel: the wait and the executor's own time
    assert p.top_other == [("add_fusion", pytest.approx(10e-9), 1)]


def test_loop_copies_counts_buffer_sized_copies_in_loop_bodies_only():
    from benchmarks.replay_copies import loop_copies

    hlo = """HloModule m, entry_computation_layout={()->f32[]}

%fused_computation.1 (p: f32[500,3]) -> f32[500,3] {
  %p = f32[500,3]{1,0} parameter(0)
  ROOT %copy.9 = f32[500,3]{1,0} copy(%p)
}

%body (arg: (f32[500,3], f32[500], f32[5000])) -> (f32[500,3], f32[500], f32[5000]) {
  %arg = (f32[500,3]{1,0}, f32[500]{0}, f32[5000]{0}) parameter(0)
  %g0 = f32[500,3]{1,0} get-tuple-element(%arg), index=0
  %copy.1 = f32[500,3]{1,0} copy(%g0)
  %g1 = f32[500]{0} get-tuple-element(%arg), index=1
  %copy.2 = f32[500]{0} copy(%g1)
  %g2 = f32[5000]{0} get-tuple-element(%arg), index=2
  %copy.3 = f32[5000]{0} copy(%g2)
  ROOT %t = (f32[500,3]{1,0}, f32[500]{0}, f32[5000]{0}) tuple(%copy.1, %copy.2, %copy.3)
}

ENTRY %main.5 () -> f32[] {
  %copy.4 = f32[500,3]{1,0} copy(%c)
}
"""
    # in the body: the [500, 3] and [500] copies; not the [5000] one, the fused one or the entry's
    assert loop_copies(hlo, 500) == 2
    assert loop_copies(hlo, 5000) == 1
    assert loop_copies(hlo, 3) == 1  # any dimension of that size counts


# ----------------------------------------------------------------------------------------------------
# Every script at its tiny size
# ----------------------------------------------------------------------------------------------------

HAS_BRAX = importlib.util.find_spec("brax") is not None
HAS_REJAX = importlib.util.find_spec("rejax") is not None
HAS_MUJOCO = importlib.util.find_spec("mujoco") is not None
# find_spec of a submodule imports its parent package, which raises when hydra_plugins itself is missing
HAS_SUBMITIT = (importlib.util.find_spec("hydra_plugins") is not None
                and importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None)

# (test id, script file, command after the interpreter, text the output must contain, reason to skip or None)
RUNS = [
    ("accelerator", "accelerator.py", ["-m", "benchmarks.accelerator", "{tmp}", "--tiny", "--matmul-dtypes",
                                       "float32,bfloat16"], "time / time(1 seed)", None),
    ("anchors", "anchors.py", ["-m", "benchmarks.anchors", "--tiny", "--json", "{tmp}/anchors.json"], "ratio = ours",
     None),
    ("brax_throughput", "brax_throughput.py", ["-m", "benchmarks.brax_throughput", "--tiny"], "steps/s",
     None if HAS_BRAX else "brax is not installed (the brax extra)"),
    ("env_throughput", "env_throughput.py", ["-m", "benchmarks.env_throughput", "--tiny"], "pendulum", None),
    ("f1c_first_difference", "f1c_first_difference.py", ["-m", "benchmarks.f1c_first_difference", "--tiny", "--repeat"],
     "bit-identical for 5 iterations", None),
    ("h2o_speed", "h2o_speed.py", ["-m", "benchmarks.h2o_speed", "--tiny"], "time / SAC time", None),
    ("offline_speed", "offline_speed.py", ["-m", "benchmarks.offline_speed", "--tiny"], "Unifloral IQL", None),
    ("onpolicy_speed", "onpolicy_speed.py", ["-m", "benchmarks.onpolicy_speed", "--tiny"], "final eval return", None),
    ("seed_scaling_sac", "seed_scaling.py", ["-m", "benchmarks.seed_scaling", "--tiny"], "time / time(1 seed)", None),
    ("seed_scaling_ppo", "seed_scaling.py",
     ["-m", "benchmarks.seed_scaling", "--tiny", "--algo", "ppo", "--env", "cartpole", "--total-steps", "1024"],
     "time / time(1 seed)", None),
    ("kernel_profile", "kernel_profile.py", ["-m", "benchmarks.kernel_profile", "--tiny", "--only", "iql,ppo"],
     "outside kernels", None),
    ("mujoco_throughput", "mujoco_throughput.py",
     ["-m", "benchmarks.mujoco_throughput", "--tasks", "hopper", "--rows", "1,8", "--row-steps", "20", "--repeats", "1", "--no-eval"],
     "env/raw", None if HAS_MUJOCO else "mujoco is not installed (the mujoco extra)"),
    ("replay_copies", "replay_copies.py", ["-m", "benchmarks.replay_copies", "--tiny"], "in-loop buffer copies", None),
    ("split_sweep", "split_sweep.py",
     ["-m", "benchmarks.split_sweep", "--seeds", "2", "--jobs", "2", "--steps", "600", "--out", "{tmp}"],
     "one run of 2 seeds", None if HAS_SUBMITIT else "hydra-submitit-launcher is not installed (the cluster extra)"),
    ("tabular_speed", "tabular_speed.py", ["-m", "benchmarks.tabular_speed", "--tiny"], "steps/s", None),
    ("theory_speed", "theory_speed.py", ["-m", "benchmarks.theory_speed", "--tiny"], "steps/s", None),
    ("run_all", "run_all.sh", ["bash", "benchmarks/run_all.sh", "{tmp}", "--tiny", "--skip", "rlpd,ppo"], "devices:",
     None),
]


def test_every_script_has_a_tiny_run():
    scripts = {p.name for p in BENCH.iterdir() if p.suffix in (".py", ".sh")} - NOT_SCRIPTS
    assert scripts == {script for _, script, *_ in RUNS}


def _env() -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    cache = os.environ.get("HYBRID_RL_TEST_JAX_CACHE", os.path.expanduser("~/.cache/hybrid-rl/jax-tests"))
    if cache:  # the test suite's persistent compilation cache: a second run reads the programs back
        env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
    return env


@pytest.mark.slow
@pytest.mark.timeout(1500)  # tens of seconds idle, but minutes per compile on a 2-core CPU at load 30
@pytest.mark.parametrize("name,script,command,expected,skip", RUNS, ids=[r[0] for r in RUNS])
def test_script_runs_tiny(name, script, command, expected, skip, tmp_path):
    if skip:
        pytest.skip(skip)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in command]
    if argv[0] != "bash":
        argv = [sys.executable] + argv
    proc = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert expected in out, out[-3000:]
    assert "Traceback" not in out and " failed: " not in out, out[-3000:]
    if name == "anchors":
        result = json.loads((tmp_path / "anchors.json").read_text())
        pairs = {(r["pair"], r["seeds"]) for r in result["rows"]}
        want = {(pair, seeds) for pair in ("ppo", "iql", "td3_bc") for seeds in (1, 2)}
        want |= {("sac", 1), ("sac", 2)} if HAS_REJAX else set()
        assert pairs == want
        for r in result["rows"]:
            assert r["run_ratio_median"] > 0 and r["ours"]["run"]["threads"] > 0
            if r["pair"] in ("ppo", "sac"):
                assert np.isfinite(r["ours"]["final_return"]) and np.isfinite(r["anchor"]["final_return"])
    if name in ("accelerator", "run_all"):
        result = json.loads((tmp_path / "accelerator.json").read_text())
        assert result["sweeps"] and all(r["run"]["median_s"] > 0 for r in result["sweeps"])
        if name == "accelerator":
            assert {r["matmul_dtype"] for r in result["sweeps"]} == {"float32", "bfloat16"}
