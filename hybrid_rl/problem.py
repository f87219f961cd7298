"""What an algorithm may use: the online env, an offline dataset, and (for H2O-style work) a simulator.

A ``Problem`` is built once from the config and shared by every seed: the offline dataset is one device
array that every vmapped seed reads (``in_axes=None``), never a copy per seed.

Continuous actions: agents act in [-1, 1]^d (the range of a tanh policy) and ``to_env_action`` maps to
the env's bounds; offline actions are mapped into [-1, 1] once, here, so online and offline transitions
live in the same action space.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

from envs.registry import EnvSpec, make_env
from hybrid_rl.types import Transition


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    env_name: str
    env: Any
    env_params: Any
    spec: EnvSpec
    obs_shape: tuple[int, ...]
    action_kind: str  # "continuous" | "discrete"
    action_dim: int  # continuous: dimension; discrete: number of actions
    action_low: Optional[np.ndarray] = None
    action_high: Optional[np.ndarray] = None
    dataset: Optional[Transition] = None
    dataset_info: dict = dataclasses.field(default_factory=dict)
    sim_env: Any = None
    sim_params: Any = None

    @property
    def obs_dim(self) -> int:
        return int(math.prod(self.obs_shape))

    @property
    def max_episode_steps(self) -> int:
        return int(self.env_params.max_steps_in_episode)

    def flat_obs(self, obs: jax.Array) -> jax.Array:
        """Observations as float vectors for MLPs; any leading batch axes are kept."""
        batch = obs.shape[: obs.ndim - len(self.obs_shape)]
        return obs.reshape(batch + (self.obs_dim,)).astype(jnp.float32)

    def to_env_action(self, action: jax.Array) -> jax.Array:
        """Agent action in [-1, 1]^d (continuous) or an index (discrete) -> the env's action."""
        if self.action_kind == "discrete":
            return action
        low, high = jnp.asarray(self.action_low), jnp.asarray(self.action_high)
        return low + (jnp.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)

    def from_env_action(self, action: jax.Array) -> jax.Array:
        if self.action_kind == "discrete":
            return action
        low, high = jnp.asarray(self.action_low), jnp.asarray(self.action_high)
        return jnp.clip(2.0 * (action - low) / (high - low) - 1.0, -1.0, 1.0)

    def reference_returns(self) -> Optional[tuple[float, float]]:
        """(random, expert) returns used to normalise scores, if known."""
        info = self.dataset_info
        if "ref_min_return" in info and "ref_max_return" in info:
            return float(info["ref_min_return"]), float(info["ref_max_return"])
        return None


def _action_info(env, params):
    space = env.action_space(params)
    if isinstance(space, spaces.Discrete):
        return "discrete", int(space.n), None, None
    if isinstance(space, spaces.Box):
        low = np.broadcast_to(np.asarray(space.low, np.float32), space.shape).copy()
        high = np.broadcast_to(np.asarray(space.high, np.float32), space.shape).copy()
        return "continuous", int(math.prod(space.shape)), low, high
    raise ValueError(f"unsupported action space {type(space).__name__}")


def load_dataset_for(problem: Problem, path: str | pathlib.Path) -> Problem:
    """Loads a D4RL-layout HDF5 file as the problem's offline dataset (checked against the env)."""
    from hybrid_rl import datasets as d4rl

    expected_action_dim = problem.action_dim if problem.action_kind == "continuous" else None
    raw = d4rl.load_d4rl_hdf5(path, obs_dim=problem.obs_dim, action_dim=expected_action_dim)
    q = d4rl.qlearning_dataset(raw)
    q["observations"] = q["observations"].reshape((-1,) + problem.obs_shape)
    q["next_observations"] = q["next_observations"].reshape((-1,) + problem.obs_shape)
    data = d4rl.to_transitions(q)
    if problem.action_kind == "continuous":
        data = data.replace(action=problem.from_env_action(data.action.reshape(-1, problem.action_dim)))
    else:
        data = data.replace(action=data.action.reshape(-1).astype(jnp.int32))
    info = {"path": str(path), "num_transitions": int(data.reward.shape[0])}
    refs = d4rl.reference_returns_from_metadata(raw)
    if refs is not None:
        info["ref_min_return"], info["ref_max_return"] = refs
    return dataclasses.replace(problem, dataset=data, dataset_info=info)


def build_problem(
    env_name: str,
    env_kwargs: Optional[dict] = None,
    dataset: Optional[Transition | str | pathlib.Path] = None,
) -> Problem:
    env, params, spec = make_env(env_name, **(env_kwargs or {}))
    obs, _ = env.reset(jax.random.key(0), params)
    kind, dim, low, high = _action_info(env, params)
    sim_env = sim_params = None
    if spec.make_sim is not None:
        sim_env, sim_params = spec.make_sim(**(env_kwargs or {}))
    problem = Problem(
        env_name=env_name,
        env=env,
        env_params=params,
        spec=spec,
        obs_shape=tuple(obs.shape),
        action_kind=kind,
        action_dim=dim,
        action_low=low,
        action_high=high,
        sim_env=sim_env,
        sim_params=sim_params,
    )
    if isinstance(dataset, (str, pathlib.Path)):
        problem = load_dataset_for(problem, dataset)
    elif dataset is not None:
        problem = dataclasses.replace(problem, dataset=dataset)
    return problem
