"""UCBVI (Azar, Osband, Munos, ICML 2017) and UCBVI-Ent (Tiapkin et al., ICML 2023): finite-horizon tabular MDPs.

The model statistics, bonuses, optimistic (soft) planning and the episodic agent are the tabular family core
(``algorithms/_tabular.py``, whose docstring gives the equations); this file picks UCBVI's and UCBVI-Ent's
settings. See docs/algorithms/ucbvi.md.
"""

from __future__ import annotations

from algorithms._tabular import TRACED, Config, EntConfig, make_episodic_agent, tabular_model
from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget
from hybrid_rl.problem import Problem

__all__ = ["Config", "EntConfig", "make", "make_ent", "SPEC_UCBVI", "SPEC_UCBVI_ENT"]


def make(config: Config, problem: Problem) -> Agent:
    model = tabular_model(problem, "ucbvi")
    return make_episodic_agent(model, config.episodes, config.bonus, config.recommend, soft=False)


def make_ent(config: EntConfig, problem: Problem) -> Agent:
    model = tabular_model(problem, "ucbvi_ent")
    return make_episodic_agent(model, config.episodes, config.bonus, config.recommend, soft=True)


SPEC_UCBVI = AlgorithmSpec(
    name="ucbvi",
    description="UCBVI: optimistic finite-horizon value iteration with Hoeffding/KL bonuses (tabular, exact regret).",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="none",
    action_kinds=("discrete",),
    paper="Azar, Osband, Munos, Minimax Regret Bounds for Reinforcement Learning, ICML 2017",
    evaluation=False,
    budget=Budget("episodes", "env_steps", counts_iterations=True),
)
SPEC_UCBVI_ENT = AlgorithmSpec(
    name="ucbvi_ent",
    description="UCBVI-Ent: optimistic soft (entropy-regularised) value iteration, soft-greedy policy (tabular).",
    config_cls=EntConfig,
    make=make_ent,
    traced=TRACED + ("lam",),
    dataset="none",
    action_kinds=("discrete",),
    paper="Tiapkin et al., Fast Rates for Maximum Entropy Exploration, ICML 2023",
    evaluation=False,
    budget=Budget("episodes", "env_steps", counts_iterations=True),
)
