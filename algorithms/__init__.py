"""One file per algorithm; importing this package registers all of them (hybrid_rl.algorithm.register)."""

import hybrid_rl.xla_flags  # noqa: F401  (first: XLA flags must be set before JAX starts its backend)
from algorithms import bc, rlpd, sac  # noqa: F401
from algorithms import cql, darc, h2o  # noqa: F401  (after sac/rlpd: they build on them)
from algorithms import hnpg, hyq, ppo  # noqa: F401  (on-policy: issue 7)
from algorithms import ucbvi, demo_regularized, optimistic_ac, lsvi_ucb  # noqa: F401  (tabular/linear theory: issue 5)
from algorithms import ucrl2, ucrl2_restarts, sw_ucrl2, rbocpd_ucrl2  # noqa: F401  (UCRL2 family, tabular)
from algorithms import iql, moorl  # noqa: F401  (offline-to-online: issue 9)
from algorithms import cal_ql  # noqa: F401  (offline-to-online: issue 9)
from algorithms import td3_bc  # noqa: F401  (offline, TD3+BC)
from algorithms import unified_pg  # noqa: F401  (SFT/PPO/GRPO/HPT as one estimator)
