import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("WANDB_MODE", "disabled")

# Single-threaded Eigen in tests as well (belt and braces; the CPU deadlock we reproduced is fixed by
# hybrid_rl/xla_flags.py, which every package import applies). Must be set before JAX starts its backend.
_FLAG = "--xla_cpu_multi_thread_eigen=false"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

# A persistent compilation cache shared by test runs on this machine: the second run of the suite reads the
# compiled programs instead of compiling them again (most of the suite's time is XLA compilation). Set
# HYBRID_RL_TEST_JAX_CACHE to another directory, or to "" to switch it off.
_CACHE = os.environ.get("HYBRID_RL_TEST_JAX_CACHE", os.path.expanduser("~/.cache/hybrid-rl/jax-tests"))
if _CACHE:
    import jax

    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
