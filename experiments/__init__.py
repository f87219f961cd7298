"""Command-line entry points: ``python -m experiments.run`` (train) and ``python -m experiments.make_dataset``."""

import hybrid_rl.xla_flags  # noqa: F401  (first: XLA flags must be set before JAX starts its backend)
