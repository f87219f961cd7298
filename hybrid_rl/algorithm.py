"""The contract between an algorithm and the shared machinery.

An algorithm file defines a frozen ``Config`` dataclass and a ``make(config, problem) -> Agent``; the
``Agent`` is a bundle of pure functions:

* ``init(key, hparams) -> state``: networks, optimisers, buffers, env state, counters;
* one or more ``Phase``s, each with ``iteration(state) -> (state, metrics)`` that the runner scans
  (offline pre-training then online fine-tuning is two phases);
* ``policy(state, obs, key, deterministic) -> env action`` for one observation, used by the evaluation
  loop (which vmaps it over episodes).

``hparams`` is a dict of float32 scalars: the *traced* hyper-parameters (learning rates, discount,
regulariser weights...) that do not change shapes. Because they are arguments, not Python constants,
the runner can ``vmap`` over a grid of them as well as over seeds, and the grid compiles once. Which
config fields are traced is declared by each algorithm (``traced=...`` in its ``AlgorithmSpec``).

This module is data only: it names no algorithm. The table of algorithms is ``algorithms.ALGORITHMS``;
lookups by name go through ``experiments.catalog``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax.numpy as jnp

State = Any
Metrics = dict


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    iteration: Callable[[State], tuple[State, Metrics]]
    num_iterations: int
    env_steps_per_iteration: int = 0  # env transitions collected per iteration (all parallel envs)
    grad_steps_per_iteration: int = 0
    # Evaluations in this phase (None: the run's ``num_evals``); a warm-up phase of random actions needs 1.
    num_evals: int | None = None


@dataclasses.dataclass(frozen=True)
class PolicyExport:
    """What dataset generation may read from a trained agent, declared by the algorithm that trains it.

    ``params(state)`` is the policy's parameters (a pytree, stacked over checkpoints by the builder);
    ``act(params, obs, key, deterministic)`` is the policy from those parameters alone, returning the env's
    action for one (unbatched or batched) observation; ``env_steps(state)`` counts env steps taken;
    ``replay(state)`` is the experience so far in time order, as ``(Transition with leading axis capacity,
    number of valid rows)``, actions in the agent's units ([-1, 1] for continuous actions)."""

    params: Callable[[State], Any]
    act: Callable[..., Any]
    env_steps: Callable[[State], Any]
    replay: Optional[Callable[[State], tuple[Any, Any]]] = None


@dataclasses.dataclass(frozen=True)
class Agent:
    init: Callable[..., State]  # init(key, hparams) -> state
    phases: tuple[Phase, ...]
    policy: Callable[..., Any]  # policy(state, obs, key, deterministic) -> env action
    # Optional ``eval_env_params(state) -> env params`` for evaluation (default: the problem's): an agent
    # whose seeds each draw their own env (a combination lock per seed) evaluates on its seed's params.
    eval_env_params: Optional[Callable[[State], Any]] = None
    # How dataset generation reads the trained policy (``PolicyExport``); None: this agent cannot be a source.
    export: Optional[PolicyExport] = None


BUDGET_UNITS = ("env_steps", "grad_steps")


@dataclasses.dataclass(frozen=True)
class Budget:
    """How a run's length, ``total_steps``, maps onto an algorithm's Config: declared once, in its spec.

    ``total_steps`` counts env steps for anything that interacts (``unit="env_steps"``; for two-phase
    algorithms, the online phase's env steps, ``offline_field`` being the first phase's gradient steps) and
    gradient steps for offline-only ones (``unit="grad_steps"``). ``field`` is the Config field that holds the
    length; with ``counts_iterations=True`` it counts iterations or episodes rather than steps, and becomes
    ``ceil(total_steps / n)`` for ``n`` the env steps per iteration of the agent's last phase.
    ``warmup_field`` (random-action steps before learning) is clipped to half the budget when it does not fit.
    """

    field: str
    unit: str = "env_steps"
    counts_iterations: bool = False
    offline_field: Optional[str] = None
    warmup_field: Optional[str] = None

    def __post_init__(self):
        if self.unit not in BUDGET_UNITS:
            raise ValueError(f"budget unit must be one of {BUDGET_UNITS}, got {self.unit!r}")


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    description: str
    config_cls: type
    make: Callable[[Any, Any], Agent]
    # Config fields that are passed to ``init`` as traced scalars (may be swept with one compile).
    traced: tuple[str, ...] = ()
    # "none": never uses offline data; "optional": uses it if given; "required": cannot run without it.
    dataset: str = "none"
    action_kinds: tuple[str, ...] = ("continuous", "discrete")
    paper: str = ""
    # False for algorithms judged by a metric they log themselves (regret on a continuing problem):
    # the runner then runs no evaluation episodes.
    evaluation: bool = True
    # What the run's ``total_steps`` sets (see ``Budget``); every entry point applies it the same way.
    budget: "Budget" = None

    def __post_init__(self):
        names = {f.name for f in dataclasses.fields(self.config_cls)}
        for field in self.traced:
            if field not in names:
                raise ValueError(f"algorithm {self.name!r}: traced field {field!r} is not in its Config")
        if self.budget is None:
            object.__setattr__(self, "budget", Budget("total_steps", "env_steps"))
        for field in (self.budget.field, self.budget.offline_field, self.budget.warmup_field):
            if field is not None and field not in names:
                raise ValueError(f"algorithm {self.name!r}: budget field {field!r} is not in its Config")


def default_hparams(spec: AlgorithmSpec, config: Any) -> dict[str, jnp.ndarray]:
    """The traced hyper-parameters of ``config`` as float32 scalars."""
    return {name: jnp.float32(getattr(config, name)) for name in spec.traced}
