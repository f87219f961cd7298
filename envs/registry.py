"""Environments by short name.

Every environment follows gymnax's ``Environment`` interface (``reset(key, params)``, ``step(key, state,
action, params)`` returning ``(obs, state, reward, terminated, truncated, info)`` with automatic reset
and ``info["final_observation"]``), so the runner, the evaluation loop and gymnax wrappers work on all of
them unchanged.

An entry says how to build the env and its params (keyword overrides become ``params.replace`` or
constructor arguments), what kind of actions it takes, and, for sim/real pairs, how to build the
mismatched simulator.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    name: str
    description: str
    # make(**overrides) -> (env, env_params). Overrides are the user's ``env.kwargs``.
    make: Callable[..., tuple[Any, Any]]
    action_kind: str  # "discrete" or "continuous"
    # For sim/real pairs (H2O, DARC): make_sim(**overrides) -> (sim_env, sim_params). ``make`` builds the
    # real env. None for ordinary envs.
    make_sim: Optional[Callable[..., tuple[Any, Any]]] = None
    # Name under which D4RL-style reference returns are kept (hybrid_rl.datasets), if any.
    d4rl_name: Optional[str] = None
    tags: tuple[str, ...] = ()

    def __post_init__(self):
        if self.action_kind not in ("discrete", "continuous"):
            raise ValueError(f"env {self.name!r}: action_kind must be 'discrete' or 'continuous'")


_REGISTRY: dict[str, EnvSpec] = {}


class UnknownEnvError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it a plain sentence
        return self.args[0]


def register_env(spec: EnvSpec) -> EnvSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"env {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    # Importing the package registers every built-in env (envs/__init__.py imports the modules).
    import envs  # noqa: F401


def get_env_spec(name: str) -> EnvSpec:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise UnknownEnvError(
            f"unknown env {name!r}; registered envs: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def make_env(name: str, **overrides):
    """Returns ``(env, env_params, spec)`` for a registered name."""
    spec = get_env_spec(name)
    env, params = spec.make(**overrides)
    return env, params, spec


def list_envs() -> dict[str, EnvSpec]:
    _ensure_loaded()
    return dict(sorted(_REGISTRY.items()))
