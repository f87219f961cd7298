"""Speed measurements that print tables (never timing assertions in tests)."""

import hybrid_rl.xla_flags  # noqa: F401  (first: XLA flags must be set before JAX starts its backend)
