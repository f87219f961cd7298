"""Soft Actor-Critic (Haarnoja et al., 2018): twin critics, tanh-Gaussian actor, automatic temperature.

The losses, updates and the agent are the SAC family core (``algorithms/_sac_core.py``), which RLPD,
CQL, Cal-QL, IQL, MOORL, H2O and DARC build on; this file is SAC's entry in the algorithm table.
See docs/algorithms/sac.md.
"""

from __future__ import annotations

from algorithms._sac_core import TRACED, Config, make
from hybrid_rl.algorithm import AlgorithmSpec, Budget

__all__ = ["Config", "make", "SPEC"]

SPEC = AlgorithmSpec(
    name="sac",
    description="Soft Actor-Critic: twin critics, tanh-Gaussian actor, automatic temperature (online).",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="optional",
    action_kinds=("continuous",),
    paper="Haarnoja et al., Soft Actor-Critic Algorithms and Applications, 2018",
    budget=Budget("total_steps", "env_steps", warmup_field="warmup_steps"),
)
