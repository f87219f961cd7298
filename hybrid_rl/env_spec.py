"""What an environment entry declares (the data half of the env registry in ``envs/registry.py``).

It lives on the lowest floor because a ``Problem`` carries the spec of its env; this module names no env.
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
