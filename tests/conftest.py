import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("WANDB_MODE", "disabled")

# XLA's multi-threaded Eigen pool on CPU can wedge (every thread waiting, 0% CPU) on large vmapped
# programs; we saw it in long learning tests, figure scripts and benchmarks with jax 0.10.2. Single-threaded
# Eigen avoids it (also reported upstream). Must be set before JAX initialises its backend.
_FLAG = "--xla_cpu_multi_thread_eigen=false"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
