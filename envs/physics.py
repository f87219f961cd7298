"""What the simulator-backed locomotion envs (MuJoCo, Brax) share: a gymnax env with actions in [-1, 1]^d,
flat float32 observations and a time limit in its params, and the building of its traced physics params
(the shift a sim/real pair applies, then ``env.kwargs`` overrides) from the registry."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces


class BoxPhysicsEnv(environment.Environment):
    """Subclasses set ``action_size`` and ``obs_shape``; their state has ``time`` (steps into the episode)
    and their params ``max_steps_in_episode``."""

    action_size: int
    obs_shape: tuple[int, ...]

    def is_truncated(self, state, params) -> jax.Array:
        return state.time >= params.max_steps_in_episode

    @property
    def num_actions(self) -> int:
        return self.action_size

    def action_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (self.action_size,), jnp.float32)

    def observation_space(self, params=None):
        return spaces.Box(-jnp.inf, jnp.inf, self.obs_shape, jnp.float32)


def check_param_keys(env_name: str, overrides: dict, fields: tuple[str, ...], other_keys: tuple[str, ...] = ()):
    """A one-line error naming every ``env.kwargs`` key outside ``fields`` and listing the valid ones
    (``other_keys``: keys the caller consumes itself). Checked before the simulator is loaded."""
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"env {env_name!r} has no parameter(s) {unknown}; its parameters are "
                         f"{sorted(fields + other_keys)}")


def physics_params(defaults: Any, overrides: dict, shift_field: str, sim_value: Optional[float] = None) -> Any:
    """``defaults`` with the pair's shifted field recorded (and set to ``sim_value`` for a simulator), then
    ``overrides`` applied (``max_steps_in_episode`` an int, the rest float32)."""
    params = defaults.replace(shift_field=shift_field)
    if sim_value is not None:
        params = params.replace(**{shift_field: jnp.float32(sim_value)})
    for field, value in overrides.items():
        params = params.replace(**{field: int(value) if field == "max_steps_in_episode" else jnp.float32(value)})
    return params
