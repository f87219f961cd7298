import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("WANDB_MODE", "disabled")

# Single-threaded Eigen in tests as well (belt and braces; the CPU deadlock we reproduced is fixed by
# hybrid_rl/xla_flags.py, which every package import applies). Must be set before JAX starts its backend.
_FLAG = "--xla_cpu_multi_thread_eigen=false"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
