"""UCRL2 restarted on a schedule (Jaksch, Ortner, Auer 2010, "variations" section) and UCRL2
restarted at the true change points (the oracle; docs/algorithms/oracle_ucrl2.md).

``ucrl2_restarts``: with a known number of changes ``l``, run UCRL2 with confidence ``delta / l^2`` and restart it
(forget everything) at the steps

    tau_i = ceil(i^3 / l^2),   i = 1, 2, ...        (regret O(l^{1/3} T^{2/3} D S sqrt(A log(T / delta))))

so restarts come every ~3 i^2 / l^2 steps: dense early, sparse late. ``schedule="periodic"`` instead restarts every
``period`` steps: a periodic-restart UCRL2 in the style of Var-UCRL (Ortner, Gajane, Auer, UAI 2019), whose period
would come from known variation budgets [R, low confidence: the Var-UCRL schedule could not be verified, so it is
an option here, not a registered algorithm].

``oracle_ucrl2``: restarts exactly at the env's change points (``info["changed"]`` says the next step belongs to a
new segment), so each segment is learned from scratch by a fresh UCRL2: not a competitor but the target curve for
any detector-based method. Needs a piecewise-stationary env.

A restart is UCRL2's full forgetting (``algorithms.ucrl2.apply_restart``): statistics, episode counters and the
EVI warm start are reset and the confidence clock ``t_k`` restarts (``Config.confidence_clock``).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from algorithms import _ucrl2 as ucrl2
from algorithms._ucrl2 import Decision, Variant
from hybrid_rl.algorithm import AlgorithmSpec, Budget
from hybrid_rl.problem import Problem

SCHEDULES = ("jaksch", "periodic")


@dataclasses.dataclass(frozen=True)
class Config(ucrl2.Config):  # every field of ucrl2.Config, plus:
    schedule: str = "jaksch"  # "jaksch": tau_i = ceil(i^3 / l^2); "periodic": every `period` steps [R]
    num_changes: int = 2  # l, the known number of changes (Figure C1: 2)
    delta_per_restart: bool = True  # radii use delta / l^2 (Jaksch et al.); False: delta
    period: int = 10_000  # "periodic" schedule: steps between restarts


def restart_steps(config: Config) -> np.ndarray:
    """0-based indices of the first step of each fresh UCRL2 (``tau_i - 1``), strictly after step 0 and before
    ``total_steps``, sorted and unique (several ``i`` share a ``tau_i`` early on)."""
    T = config.total_steps
    if config.schedule == "jaksch":
        l2 = float(config.num_changes) ** 2
        i_max = int(np.ceil((T * l2) ** (1.0 / 3.0))) + 2
        i = np.arange(1, i_max + 1, dtype=np.float64)
        # i^3 / l^2 is exact in float64 for these sizes, so ceil is exact.
        tau = np.ceil(i**3 / l2).astype(np.int64)
    else:
        tau = np.arange(config.period, T + config.period, config.period, dtype=np.int64) + 1
    steps = np.unique(tau - 1)
    return steps[(steps >= 1) & (steps < T)].astype(np.int32)


def schedule_variant(config: Config) -> Variant:
    """Restart after step ``t`` iff ``t + 1`` is the next scheduled restart step (a pointer into the schedule)."""
    if config.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {config.schedule!r}")
    if config.num_changes < 1 or config.period < 1:
        raise ValueError("num_changes and period must be >= 1")
    steps = restart_steps(config)
    sentinel = np.iinfo(np.int32).max
    table = jnp.asarray(np.concatenate([steps, [sentinel]]), jnp.int32)

    def observe(state, obs):
        ptr = state.variant
        restart = state.t + 1 == table[ptr]
        return state.replace(variant=ptr + restart.astype(jnp.int32)), Decision(restart, jnp.bool_(False), {})

    factor = 1.0 / config.num_changes**2 if config.delta_per_restart else 1.0
    return Variant(init=lambda key, hp: jnp.int32(0), observe=observe, delta_factor=factor)


def make(config: Config, problem: Problem):
    return ucrl2.make_family(config, problem, "ucrl2_restarts", schedule_variant(config))


@dataclasses.dataclass(frozen=True)
class OracleConfig(ucrl2.Config):  # every field of ucrl2.Config; restarts come from the env
    pass


def oracle_variant() -> Variant:
    """Restart when the env says the next step starts a new segment (``info["changed"]``)."""

    def observe(state, obs):
        return state, Decision(jnp.asarray(obs.info["changed"], bool), jnp.bool_(False), {})

    return Variant(observe=observe)


def make_oracle(config: OracleConfig, problem: Problem):
    info = ucrl2._info_shapes(problem)
    if "changed" not in info:
        raise ValueError(
            f"oracle_ucrl2 restarts at the true change points, which env {problem.env_name!r} does not report "
            "(info['changed']); use a piecewise-stationary env such as riverswim_switching"
        )
    return ucrl2.make_family(config, problem, "oracle_ucrl2", oracle_variant())


SPEC_UCRL2_RESTARTS = AlgorithmSpec(
    name="ucrl2_restarts",
    description="UCRL2 restarted at tau_i = ceil(i^3/l^2) with confidence delta/l^2 (or periodically).",
    config_cls=Config,
    make=make,
    traced=ucrl2.TRACED,
    dataset="none",
    action_kinds=("discrete",),
    paper="Jaksch, Ortner, Auer, JMLR 2010 (variations: changing MDPs)",
    evaluation=False,
    budget=Budget("total_steps", "env_steps"),
)

SPEC_ORACLE_UCRL2 = AlgorithmSpec(
    name="oracle_ucrl2",
    description="UCRL2 restarted exactly at the env's true change points (reference for change detectors).",
    config_cls=OracleConfig,
    make=make_oracle,
    traced=ucrl2.TRACED,
    dataset="none",
    action_kinds=("discrete",),
    paper="Jaksch, Ortner, Auer, JMLR 2010, restarted at the true change points (a reference)",
    evaluation=False,
    budget=Budget("total_steps", "env_steps"),
)
