"""hybrid-rl: shared machinery for hybrid offline/online RL in JAX.

Nothing algorithm-specific lives in this package: algorithms are in ``algorithms/``, environments in
``envs/``. See README.md for the architecture.
"""

from hybrid_rl import xla_flags  # noqa: F401  (first: sets XLA_FLAGS before JAX starts its backend)

__version__ = "0.1.0"

# After xla_flags (this one imports JAX): random numbers without a loop per call on CPU.
from hybrid_rl import threefry_cpu  # noqa: E402,F401
