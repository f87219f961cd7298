"""Minari datasets read directly (no ``minari`` package needed) and turned into D4RL's flat layout.

A Minari dataset is a directory ``<root>/<namespace>/<name>-vN/`` holding ``data/main_data.hdf5`` and
``data/metadata.json`` (``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets`` is the usual root). The HDF5
file has one group per episode, ``episode_{i}``, with

    observations (T+1, obs...)   the reset observation, then one per step (the last is the final one)
    actions (T, act)  rewards (T,)  terminations (T,)  truncations (T,)  infos/<name> (T+1 or T, ...)

and ``metadata.json`` names the env it was recorded in (``env_spec``, gymnasium's serialised EnvSpec, whose
``id`` is e.g. ``"Hopper-v5"``) and, for datasets with published references, ``ref_min_score`` /
``ref_max_score``.

Conversion to D4RL's layout, per episode: ``observations = obs[:-1]``, ``next_observations = obs[1:]``
(so the true final observation of every episode is kept), ``terminals = terminations``,
``timeouts = truncations``; per-step infos with T+1 rows drop their last row (row t then describes the
state of observation t, as D4RL's ``infos/qpos`` do). Episodes are concatenated in index order.

Here nothing names an env of this project: :func:`minari_env_id` returns gymnasium's id and the caller
maps it to an env.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hybrid_rl.datasets.d4rl import DatasetError, _canonicalize, load_d4rl_hdf5, reference_returns_from_metadata

__all__ = ["is_minari_dataset", "minari_files", "load_minari", "minari_env_id", "load_dataset_file"]

_EPISODE = re.compile(r"^episode_(\d+)$")


def minari_files(path: str | os.PathLike) -> tuple[Path, Path] | None:
    """``(main_data.hdf5, metadata.json)`` of a Minari dataset given as its directory, its ``data/``
    directory or its ``main_data.hdf5``; None when ``path`` is none of these."""
    p = Path(path).expanduser()
    for data_dir in (p / "data", p) if p.is_dir() else (p.parent,):
        main = data_dir / "main_data.hdf5" if p.is_dir() else p
        meta = data_dir / "metadata.json"
        if main.is_file() and meta.is_file():
            return main, meta
    return None


def is_minari_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Minari dataset: its files exist and the HDF5 file is grouped by episode."""
    files = minari_files(path)
    if files is None:
        return False
    try:
        with h5py.File(files[0], "r") as f:
            return any(_EPISODE.match(k) for k in f.keys())
    except OSError:
        return False


def _fail(source, key, problem) -> DatasetError:
    where = f"{source}: key '{key}'" if key else str(source)
    return DatasetError(" ".join(f"{where}: {problem}".split()))


def _read_metadata(meta_path: Path) -> dict:
    try:
        metadata = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise _fail(meta_path, None, f"cannot be read as JSON ({err})") from None
    if not isinstance(metadata, dict):
        raise _fail(meta_path, None, "is not a JSON object")
    return metadata


def minari_env_id(metadata: dict) -> str | None:
    """gymnasium's env id (``"Hopper-v5"``) from a Minari ``metadata.json``, or None if it names none."""
    spec = metadata.get("env_spec")
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            return None
    return spec.get("id") if isinstance(spec, dict) else None


def minari_env_kwargs(metadata: dict) -> dict:
    """The ``kwargs`` the recording env was made with (``gym.make(id, **kwargs)``), {} if none."""
    spec = metadata.get("env_spec")
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            return {}
    kwargs = spec.get("kwargs") if isinstance(spec, dict) else None
    return dict(kwargs or {})


def load_minari(path: str | os.PathLike) -> tuple[dict[str, Any], dict]:
    """``(data, metadata)``: the dataset in D4RL's flat layout (validated like a D4RL file) and the parsed
    ``metadata.json``. References in the metadata become ``metadata/ref_{min,max}_return``."""
    files = minari_files(path)
    if files is None:
        raise _fail(Path(path).expanduser(), None,
                    "is not a Minari dataset (expected <dataset>/data/main_data.hdf5 and data/metadata.json)")
    main, meta_path = files
    metadata = _read_metadata(meta_path)
    parts: dict[str, list[np.ndarray]] = {}
    try:
        with h5py.File(main, "r") as f:
            episodes = sorted((int(m.group(1)), k) for k in f.keys() if (m := _EPISODE.match(k)))
            if not episodes:
                raise _fail(main, None, "has no episode_{i} groups")
            for _, name in episodes:
                ep = f[name]
                for key in ("observations", "actions", "rewards", "terminations", "truncations"):
                    if key not in ep:
                        raise _fail(main, f"{name}/{key}", "required key is missing")
                obs = np.asarray(ep["observations"][()])
                steps = int(np.asarray(ep["actions"]).shape[0])
                if obs.ndim < 1 or obs.shape[0] != steps + 1:
                    raise _fail(main, f"{name}/observations",
                                f"has {obs.shape[0] if obs.ndim else 0} rows; an episode of {steps} steps needs {steps + 1}")
                step_arrays = {
                    "observations": obs[:-1],
                    "next_observations": obs[1:],
                    "actions": np.asarray(ep["actions"][()]),
                    "rewards": np.asarray(ep["rewards"][()]).reshape(steps, -1)[:, 0] if steps else np.zeros(0),
                    "terminals": np.asarray(ep["terminations"][()]).reshape(steps),
                    "timeouts": np.asarray(ep["truncations"][()]).reshape(steps),
                }
                if "infos" in ep and isinstance(ep["infos"], h5py.Group):
                    for info_key, value in ep["infos"].items():
                        if isinstance(value, h5py.Dataset) and value.ndim >= 1 and value.shape[0] in (steps, steps + 1):
                            step_arrays[f"infos/{info_key}"] = np.asarray(value[()])[:steps]
                for key, value in step_arrays.items():
                    parts.setdefault(key, []).append(value)
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise _fail(main, None, f"cannot be read ({err})") from None
    counts = {len(v) for k, v in parts.items() if not k.startswith("infos/")}
    data: dict[str, Any] = {k: np.concatenate(v) for k, v in parts.items() if len(v) == max(counts)}
    if "ref_min_score" in metadata and "ref_max_score" in metadata:
        data["metadata/ref_min_return"] = np.float64(metadata["ref_min_score"])
        data["metadata/ref_max_return"] = np.float64(metadata["ref_max_score"])
    data = _validate(data, str(main))
    return data, metadata


def _validate(data: dict, source: str) -> dict:
    # The D4RL loader's checks (ranks, lengths, dtypes, NaN) on the converted arrays.
    out = _canonicalize(data, source)
    reference_returns_from_metadata(out)
    return out


def load_dataset_file(path: str | os.PathLike, **checks) -> dict[str, Any]:
    """A D4RL-layout HDF5 file or a Minari dataset, as D4RL's flat dict (``checks``: ``obs_dim``,
    ``action_dim``, as for :func:`load_d4rl_hdf5`). A Minari dataset's metadata is kept under
    ``metadata/minari_env_id``."""
    if not is_minari_dataset(path):
        return load_d4rl_hdf5(path, **checks)
    data, metadata = load_minari(path)
    if checks:
        data = _canonicalize(data, str(path), **checks)
    env_id = minari_env_id(metadata)
    if env_id is not None:
        data["metadata/minari_env_id"] = env_id
    return data
