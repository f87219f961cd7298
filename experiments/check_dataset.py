"""Replay a dataset's rows through this MuJoCo: ``python -m experiments.check_dataset FILE [env=NAME] [rows=N]``.

For rows that carry the simulator state (``infos/qpos``, ``infos/qvel``: D4RL's Gym-MuJoCo files), the
state is set as gymnasium's ``set_state`` sets it, the stored action is stepped, and the result is compared
with the stored ``next_observations`` and ``rewards``. The errors say how far the MuJoCo here (and its env
semantics) is from the one that recorded the file: a file made here gives float32 rounding; D4RL's files
were made with MuJoCo 2.x through mujoco-py, and the state they store has no solver warm start.

FILE is a D4RL-layout HDF5 file or a Minari dataset; its env comes from its name (``hopper_medium-v2``) or
its Minari metadata unless ``env=`` names one. ``rows`` (default 2000) rows are taken evenly over the file.
"""

from __future__ import annotations

import sys

import numpy as np

DEFAULT_ROWS = 2000


class CheckError(ValueError):
    """Bad input; printed as one line."""


def _env_for_file(path: str, raw: dict, env_name: str | None) -> str:
    from envs.mujoco_envs import env_for_d4rl_family, env_for_gym_id
    from hybrid_rl.datasets import d4rl_family, infer_d4rl_task

    if env_name:
        return env_name
    minari_id = raw.get("metadata/minari_env_id")
    if minari_id is not None:
        name = env_for_gym_id(minari_id)
        if name is None:
            raise CheckError(f"{path}: the Minari dataset names {minari_id}, which is no MuJoCo env here")
        return name
    task = infer_d4rl_task(path)
    name = env_for_d4rl_family(d4rl_family(task)) if task else None
    if name is None:
        raise CheckError(f"{path}: its name is no D4RL MuJoCo task (hopper, walker2d, halfcheetah, ant); pass env=<name>")
    return name


def check_dataset(path: str, env_name: str | None = None, rows: int = DEFAULT_ROWS) -> dict:
    """Errors of replaying up to ``rows`` rows of the file (see the module doc): a dict of statistics."""
    import jax
    import jax.numpy as jnp

    from envs.mujoco_envs import MujocoEnv
    from experiments.catalog import make_env
    from hybrid_rl.datasets.minari import load_dataset_file

    raw = load_dataset_file(path)
    name = _env_for_file(path, raw, env_name)
    env, params, _ = make_env(name)
    if not isinstance(env, MujocoEnv):
        raise CheckError(f"env {name!r} is not a MuJoCo env; check_dataset replays MuJoCo states")
    for key in ("infos/qpos", "infos/qvel"):
        if key not in raw:
            raise CheckError(f"{path}: key '{key}' is missing: the rows carry no simulator state to replay")
    qpos, qvel = np.asarray(raw["infos/qpos"]), np.asarray(raw["infos/qvel"])
    if qpos.shape[1:] != (env.nq,) or qvel.shape[1:] != (env.nv,):
        raise CheckError(f"{path}: infos/qpos {qpos.shape[1:]} / infos/qvel {qvel.shape[1:]} do not fit {name}'s "
                         f"model (nq {env.nq}, nv {env.nv})")
    obs, actions, rewards = raw["observations"], raw["actions"], raw["rewards"]
    if obs.shape[1:] != env.obs_shape:
        raise CheckError(f"{path}: observations {obs.shape[1:]} do not fit {name}'s {env.obs_shape}")
    n = len(obs)
    if "next_observations" in raw:
        next_obs, usable = raw["next_observations"], np.ones(n, bool)
    else:  # the next row, within an episode
        next_obs = np.concatenate([obs[1:], obs[-1:]])
        usable = ~(raw["terminals"] | raw["timeouts"])
        usable[-1] = False
    candidates = np.flatnonzero(usable)
    if len(candidates) == 0:
        raise CheckError(f"{path}: no row has a next observation to compare with")
    idx = candidates[np.unique(np.linspace(0, len(candidates) - 1, min(rows, len(candidates))).astype(int))]
    states = env.states_from_qpos_qvel(qpos[idx], qvel[idx], params)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    keys = jax.random.split(jax.random.key(0), len(idx))
    _, _, reward, _, _, info = step(keys, states, jnp.asarray(actions[idx]), params)
    state_obs_err = np.abs(np.asarray(states.obs) - obs[idx]).max(axis=1)
    next_err = np.abs(np.asarray(info["final_observation"]) - next_obs[idx]).max(axis=1)
    reward_err = np.abs(np.asarray(reward) - rewards[idx])
    stats = {"env": name, "rows": int(len(idx))}
    for label, err in (("obs_from_state", state_obs_err), ("next_obs", next_err), ("reward", reward_err)):
        stats[f"{label}_median"] = float(np.median(err))
        stats[f"{label}_p99"] = float(np.quantile(err, 0.99))
        stats[f"{label}_max"] = float(err.max())
    return stats


def _parse(argv: list[str]) -> tuple[str, dict]:
    if not argv or argv[0] in ("-h", "--help", "help"):
        raise SystemExit(__doc__)
    path, options = None, {}
    for arg in argv:
        if "=" in arg:
            key, value = arg.split("=", 1)
            if key not in ("env", "rows"):
                raise CheckError(f"unknown option {key!r}; options: env=<name>, rows=<int>")
            options[key] = value
        elif path is None:
            path = arg
        else:
            raise CheckError(f"one file at a time (got {path!r} and {arg!r})")
    if path is None:
        raise CheckError("give a dataset file: python -m experiments.check_dataset FILE [env=NAME] [rows=N]")
    if "rows" in options:
        try:
            options["rows"] = int(options["rows"])
        except ValueError:
            raise CheckError(f"rows must be an integer, got {options['rows']!r}") from None
        if options["rows"] <= 0:
            raise CheckError(f"rows must be positive, got {options['rows']}")
    return path, options


def main(argv: list[str] | None = None) -> int:
    from hybrid_rl.datasets import DatasetError

    try:
        path, options = _parse(sys.argv[1:] if argv is None else argv)
        stats = check_dataset(path, options.get("env"), options.get("rows", DEFAULT_ROWS))
    except (CheckError, DatasetError, ValueError, KeyError, ImportError) as err:
        text = str(err).strip().splitlines()
        print(f"error: {text[0] if text else type(err).__name__}", file=sys.stderr)
        return 2
    print(f"{path}: {stats['rows']} rows replayed in {stats['env']}")
    for label, what in (("obs_from_state", "observation rebuilt from infos/qpos, qvel"),
                        ("next_obs", "next observation after the stored action"),
                        ("reward", "reward")):
        print(f"  {what}: max abs error median {stats[label + '_median']:.3g}, "
              f"99% {stats[label + '_p99']:.3g}, max {stats[label + '_max']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
