"""hybrid-rl: shared machinery for hybrid offline/online RL in JAX.

Nothing algorithm-specific lives in this package: algorithms are in ``algorithms/``, environments in
``envs/``. See README.md for the architecture.
"""

from hybrid_rl import xla_flags  # noqa: F401  (sets XLA_FLAGS before JAX starts its backend)

__version__ = "0.1.0"
