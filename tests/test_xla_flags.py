"""The CPU deadlock of jaxlib 0.10.2 (two batched QR decompositions scheduled side by side) stays fixed:
importing ``hybrid_rl`` sets the XLA flag, and the minimal reproduction finishes in a fresh process."""

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

REPRO = """
import hybrid_rl  # sets XLA_FLAGS before the backend starts
import jax
init = jax.nn.initializers.orthogonal()
layers = lambda key: [init(jax.random.fold_in(key, i), (256, 256)) for i in range(2)]
jax.block_until_ready(jax.jit(jax.vmap(layers))(jax.random.split(jax.random.key(0), 8)))
print("done")
"""


def test_importing_hybrid_rl_sets_the_scheduler_flag_and_keeps_the_users_choice(monkeypatch):
    from hybrid_rl import xla_flags

    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=true --foo=1")
    xla_flags.add_xla_flags(*xla_flags.CPU_FLAGS)
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_concurrency_optimized_scheduler=true --foo=1"
    monkeypatch.setenv("XLA_FLAGS", "--foo=1")
    xla_flags.add_xla_flags(*xla_flags.CPU_FLAGS)
    assert os.environ["XLA_FLAGS"] == "--foo=1 --xla_cpu_enable_concurrency_optimized_scheduler=false"


def test_vmapped_orthogonal_initialisers_do_not_deadlock_on_cpu():
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # exactly what a user's fresh shell has
    result = subprocess.run([sys.executable, "-c", REPRO], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and "done" in result.stdout, result.stderr[-2000:]
