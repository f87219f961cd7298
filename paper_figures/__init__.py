"""One script per reproduced figure; each entry in README.md states its claim, command, CPU runtime and result."""

import hybrid_rl.xla_flags  # noqa: F401  (first: XLA flags must be set before JAX starts its backend)
