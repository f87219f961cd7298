"""UCRL2 (Jaksch, Ortner, Auer, JMLR 2010): optimism in L1 confidence sets, extended value iteration, doubling episodes.

The algorithm and its pieces are the UCRL2 family core (``algorithms/_ucrl2.py``, whose docstring gives the
equations), shared with the restarted, sliding-window and change-detecting variants; this file is plain UCRL2's
entry in the algorithm table. See docs/algorithms/ucrl2.md.
"""

from __future__ import annotations

from algorithms._ucrl2 import TRACED, Config, make_family
from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget
from hybrid_rl.problem import Problem

__all__ = ["Config", "make", "SPEC"]


def make(config: Config, problem: Problem) -> Agent:
    return make_family(config, problem, "ucrl2")


SPEC = AlgorithmSpec(
    name="ucrl2",
    description="UCRL2: optimism in the L1 confidence set, extended value iteration, doubling episodes "
                "(average reward).",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="none",
    action_kinds=("discrete",),
    paper="Jaksch, Ortner, Auer, Near-optimal Regret Bounds for Reinforcement Learning, JMLR 2010",
    evaluation=False,
    budget=Budget("total_steps", "env_steps"),
)
