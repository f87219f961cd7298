"""Environments by short name.

Every environment follows gymnax's ``Environment`` interface (``reset(key, params)``, ``step(key, state,
action, params)`` returning ``(obs, state, reward, terminated, truncated, info)`` with automatic reset
and ``info["final_observation"]``), so the runner, the evaluation loop and gymnax wrappers work on all of
them unchanged.

An entry says how to build the env and its params (keyword overrides become ``params.replace`` or
constructor arguments), what kind of actions it takes, and, for sim/real pairs, how to build the
mismatched simulator.

The table is filled as the env modules are imported; ``import envs`` (the package) imports them all, so look
names up through the package (``from envs import get_env_spec``) or the catalog (``experiments/catalog.py``).
"""

from __future__ import annotations

from hybrid_rl.env_spec import EnvSpec

__all__ = ["EnvSpec", "UnknownEnvError", "register_env", "get_env_spec", "make_env", "list_envs"]


_REGISTRY: dict[str, EnvSpec] = {}


class UnknownEnvError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it a plain sentence
        return self.args[0]


def register_env(spec: EnvSpec) -> EnvSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"env {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def get_env_spec(name: str) -> EnvSpec:
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
    return dict(sorted(_REGISTRY.items()))
