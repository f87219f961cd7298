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
from flax import struct
from gymnax.environments import spaces

from hybrid_rl.env_spec import EnvSpec
from hybrid_rl.types import Transition
from hybrid_rl.wrappers import flatten_observation, scale_action


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
        return flatten_observation(obs, self.obs_shape)

    def to_env_action(self, action: jax.Array) -> jax.Array:
        """Agent action in [-1, 1]^d (continuous) or an index (discrete) -> the env's action."""
        if self.action_kind == "discrete":
            return action
        return scale_action(action, self.action_low, self.action_high)

    def from_env_action(self, action: jax.Array) -> jax.Array:
        if self.action_kind == "discrete":
            return action
        low, high = jnp.asarray(self.action_low), jnp.asarray(self.action_high)
        return jnp.clip(2.0 * (action - low) / (high - low) - 1.0, -1.0, 1.0)

    def require_dataset(self, who: str, *, example_kind: str = "medium", what: str = "an offline dataset",
                        hint: str = "") -> Transition:
        """The offline dataset, or a one-line ValueError naming ``who`` needs it and how to give one.

        ``who`` names the algorithm (and, when it matters, why: "sac with offline_fraction=0.5"); the
        message suggests ``dataset=<path>``, the builder kind ``example_kind``, and the command that writes
        a file; ``what`` names the data ("the real offline dataset"); ``hint`` is added in parentheses
        (e.g. an algorithm that needs no data)."""
        if self.dataset is not None:
            return self.dataset
        extra = f" ({hint})" if hint else ""
        raise ValueError(
            f"{who} needs {what}: pass dataset=<path to a D4RL-layout .hdf5> or a builder kind "
            f"(dataset={example_kind}), or make a file with `python -m experiments.make_dataset`{extra}"
        )

    @property
    def has_simulator(self) -> bool:
        return not isinstance(self.env, NoSimulator)

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


def load_dataset_for(problem: Problem, path: str | pathlib.Path, raw: Optional[dict] = None) -> Problem:
    """Loads a D4RL-layout HDF5 file as the problem's offline dataset (checked against the env).

    ``raw`` is the file already read by ``load_d4rl_hdf5`` (its shapes checked by the caller). Scores are
    normalized with the file's ``metadata/ref_{min,max}_return``, else with D4RL's reference returns when
    the env or the file name is a D4RL task (``hopper_medium-v2.hdf5``)."""
    from hybrid_rl import datasets as d4rl
    from hybrid_rl.datasets.minari import load_dataset_file

    expected_action_dim = problem.action_dim if problem.action_kind == "continuous" else None
    if raw is None:  # a D4RL-layout file or a Minari dataset
        raw = load_dataset_file(path, obs_dim=problem.obs_dim, action_dim=expected_action_dim)
    q = d4rl.qlearning_dataset(raw)
    q["observations"] = q["observations"].reshape((-1,) + problem.obs_shape)
    q["next_observations"] = q["next_observations"].reshape((-1,) + problem.obs_shape)
    data = d4rl.to_transitions(q)
    if problem.action_kind == "continuous":
        data = data.replace(action=problem.from_env_action(data.action.reshape(-1, problem.action_dim)))
    else:
        data = data.replace(action=data.action.reshape(-1).astype(jnp.int32))
    info = {"path": str(path), "num_transitions": int(data.reward.shape[0]), "num_rows": int(len(raw["rewards"]))}
    refs = d4rl.reference_returns_from_metadata(raw)
    task = problem.spec.d4rl_name or d4rl.infer_d4rl_task(path)
    if refs is None and task is not None and d4rl.d4rl_family(task) is not None:
        refs = d4rl.reference_scores(task)
        info["d4rl_task"] = task
    if refs is not None:
        info["ref_min_return"], info["ref_max_return"] = refs
    return dataclasses.replace(problem, dataset=data, dataset_info=info)


@struct.dataclass
class NoSimulatorParams:
    max_steps_in_episode: int = 1000


class NoSimulator:
    """The env of a dataset that nothing here simulates (a real D4RL MuJoCo file without MuJoCo).

    ``reset`` gives zero observations of the dataset's shape, so agents can build their state; ``step``
    fails when traced: such a problem trains offline only, with no evaluation episodes."""

    def __init__(self, name: str, obs_shape: tuple[int, ...], action_dim: int):
        self.name, self.obs_shape, self.action_dim = name, tuple(obs_shape), int(action_dim)

    def reset(self, key, params):
        return jnp.zeros(self.obs_shape, jnp.float32), jnp.zeros((), jnp.int32)

    def step(self, key, state, action, params):
        raise ValueError(f"no env simulates {self.name}: it can only be trained offline (phase=offline), "
                         "with no evaluation (eval_episodes=0)")

    def action_space(self, params):
        return spaces.Box(-1.0, 1.0, (self.action_dim,), jnp.float32)

    def observation_space(self, params):
        return spaces.Box(-jnp.inf, jnp.inf, self.obs_shape, jnp.float32)


def problem_from_dataset(path: str | pathlib.Path, raw: dict, task: Optional[str] = None) -> Problem:
    """A problem with no simulator, shaped by a D4RL file: observation shape and action dimension from
    its arrays, continuous actions in [-1, 1] (as in D4RL's MuJoCo, Adroit and AntMaze files; actions
    outside are clipped). ``task`` (a D4RL env id) names it and sets its episode limit and references."""
    from hybrid_rl import datasets as d4rl

    actions = np.asarray(raw["actions"])
    if actions.ndim != 2:
        raise d4rl.DatasetError(
            f"{path}: key 'actions': shape {actions.shape}; with no env the actions must be continuous "
            "(N, action_dim): pass env=<name> for a discrete-action dataset"
        )
    obs_shape, action_dim = tuple(raw["observations"].shape[1:]), int(actions.shape[1])
    name = task or pathlib.Path(path).stem
    family = d4rl.d4rl_family(task) if task else None
    params = NoSimulatorParams(max_steps_in_episode=d4rl.MAX_EPISODE_STEPS.get(family, 1000))
    env = NoSimulator(name, obs_shape, action_dim)
    spec = EnvSpec(name=name, description="a dataset with no simulator", make=lambda **_: (env, params),
                   action_kind="continuous", d4rl_name=task if family else None, tags=("no_simulator",))
    ones = np.ones(action_dim, np.float32)
    problem = Problem(env_name=name, env=env, env_params=params, spec=spec, obs_shape=obs_shape,
                      action_kind="continuous", action_dim=action_dim, action_low=-ones, action_high=ones)
    return load_dataset_for(problem, path, raw)


def problem_for_env(env_name: str, env, params, spec: EnvSpec, sim_env=None, sim_params=None) -> Problem:
    """The problem of an env instance: observation shape from a reset, action kind, size and bounds from its
    action space. Name lookups (``build_problem(name)``) are the catalog's (``experiments/catalog.py``)."""
    obs, _ = env.reset(jax.random.key(0), params)
    kind, dim, low, high = _action_info(env, params)
    return Problem(
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
