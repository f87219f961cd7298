"""hybrid-rl: shared machinery for hybrid offline/online RL in JAX.

Nothing algorithm-specific lives in this package: algorithms are in ``algorithms/``, environments in
``envs/``. See README.md for the architecture.
"""

__version__ = "0.1.0"
