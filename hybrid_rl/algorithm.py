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
class Agent:
    init: Callable[..., State]  # init(key, hparams) -> state
    phases: tuple[Phase, ...]
    policy: Callable[..., Any]  # policy(state, obs, key, deterministic) -> env action
    # Optional ``eval_env_params(state) -> env params`` for evaluation (default: the problem's): an agent
    # whose seeds each draw their own env (a combination lock per seed) evaluates on its seed's params.
    eval_env_params: Optional[Callable[[State], Any]] = None


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


class UnknownAlgorithmError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


_REGISTRY: dict[str, AlgorithmSpec] = {}


def register(spec: AlgorithmSpec) -> AlgorithmSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"algorithm {spec.name!r} is registered twice")
    for field in spec.traced:
        if field not in {f.name for f in dataclasses.fields(spec.config_cls)}:
            raise ValueError(f"algorithm {spec.name!r}: traced field {field!r} is not in its Config")
    _REGISTRY[spec.name] = spec
    return spec


def get_algorithm(name: str) -> AlgorithmSpec:
    import algorithms  # noqa: F401  (registers every algorithm)

    if name not in _REGISTRY:
        raise UnknownAlgorithmError(
            f"unknown algo {name!r}; registered algorithms: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def list_algorithms() -> dict[str, AlgorithmSpec]:
    import algorithms  # noqa: F401

    return dict(sorted(_REGISTRY.items()))


def default_hparams(spec: AlgorithmSpec, config: Any) -> dict[str, jnp.ndarray]:
    """The traced hyper-parameters of ``config`` as float32 scalars."""
    return {name: jnp.float32(getattr(config, name)) for name in spec.traced}
