"""Command-line entry points: ``python -m experiments.run`` (train) and ``python -m experiments.make_dataset``."""

import hybrid_rl.xla_flags  # noqa: F401  (first: XLA flags must be set before JAX starts its backend)

# Inside a SLURM step of several tasks (srun, a submitit job with tasks_per_node > 1), every process joins
# one JAX job here, before any import touches a device (importing gymnax does); elsewhere this does nothing.
from hybrid_rl import distributed as _distributed  # noqa: E402

_distributed.initialize()
