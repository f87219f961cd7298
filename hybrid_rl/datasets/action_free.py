"""Action-free trajectories (semi-supervised offline RL): files without actions, labelled/unlabelled
splits by episode, and the union dataset an inverse dynamics model labels.

* A file of *unlabelled* trajectories is D4RL's layout with the ``actions`` key left out
  (``observations, rewards, terminals, timeouts, next_observations, metadata/*``):
  :func:`write_action_free_hdf5` / :func:`load_action_free_hdf5`. A file that has actions can be read as
  unlabelled too (its actions are dropped).
* :func:`split_by_episodes` keeps actions on a chosen fraction of a dataset's trajectories (whole episodes,
  drawn at random) and drops them on the rest; the labelled part may come from another dataset (another
  quality) than the unlabelled part.
* :func:`union_dataset` makes one transition dataset of both parts, labelled rows first, with zero
  placeholder actions on the unlabelled rows, a mask of the labelled rows and, per row, the first and
  last row of its episode, from which an inverse dynamics model reads a window of states around each
  transition (never across an episode end or from one part into the other).

Host-side numpy; only the final ``Transition`` holds jnp arrays.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional

import h5py
import jax.numpy as jnp
import numpy as np

from hybrid_rl.datasets.d4rl import (
    DatasetError,
    decode_hdf5_strings,
    flatten_metadata,
    qlearning_dataset,
    to_hdf5_value,
)
from hybrid_rl.types import Transition

_PER_STEP = ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts")
_REQUIRED = ("observations", "rewards", "terminals")


def _fail(source: str, key: Optional[str], problem: str) -> DatasetError:
    where = f" (key {key!r})" if key else ""
    return DatasetError(f"{source}{where}: {problem}")


def num_steps(raw: Mapping[str, Any]) -> int:
    return int(np.asarray(raw["observations"]).shape[0])


def episode_ranges(raw: Mapping[str, Any]) -> list[tuple[int, int]]:
    """[start, stop) row ranges of the episodes of a flat D4RL dict, in file order. An episode ends at
    ``terminals | timeouts``; rows after the last end form one more (unfinished) episode."""
    n = num_steps(raw)
    ends = np.asarray(raw["terminals"]).reshape(-1).astype(bool)
    if "timeouts" in raw:
        ends = ends | np.asarray(raw["timeouts"]).reshape(-1).astype(bool)
    stops = list(np.flatnonzero(ends) + 1)
    if not stops or stops[-1] != n:
        stops.append(n)
    starts = [0] + stops[:-1]
    return [(int(a), int(b)) for a, b in zip(starts, stops) if b > a]


def select_episodes(raw: Mapping[str, Any], ranges: list[tuple[int, int]], drop_actions: bool = False) -> dict:
    """The rows of the given episodes (per-step keys, ``infos/*``), ``metadata/*`` kept as they are."""
    n = num_steps(raw)
    rows = np.concatenate([np.arange(a, b) for a, b in ranges]) if ranges else np.zeros(0, np.int64)
    out = {}
    for key, value in raw.items():
        if drop_actions and key == "actions":
            continue
        arr = np.asarray(value)
        per_step = key in _PER_STEP or key.startswith("infos/")
        out[key] = arr[rows] if per_step and arr.ndim >= 1 and arr.shape[0] == n else value
    return out


def split_by_episodes(
    raw: Mapping[str, Any],
    labelled_fraction: float,
    seed: int = 0,
    labelled_source: Optional[Mapping[str, Any]] = None,
    drop_actions: bool = True,
) -> tuple[dict, dict]:
    """(labelled, unlabelled) parts: ``round(labelled_fraction * episodes)`` episodes (at least one) drawn
    at random keep their actions, the rest lose them.

    With ``labelled_source`` (another dataset, e.g. a different quality), the unlabelled part is still
    ``raw`` less the drawn episodes, and the labelled part is the same fraction of ``labelled_source``'s
    episodes, drawn at random from it. ``drop_actions=False`` keeps the unlabelled part's actions (for
    measuring proxy labels against them; the pipeline never trains on them)."""
    if not 0.0 < labelled_fraction <= 1.0:
        raise ValueError(f"labelled_fraction must be in (0, 1], got {labelled_fraction}")
    rng = np.random.default_rng(seed)
    episodes = episode_ranges(raw)

    def draw(eps):
        count = min(len(eps), max(1, int(round(labelled_fraction * len(eps)))))
        return set(rng.choice(len(eps), count, replace=False).tolist())

    chosen = draw(episodes)
    unlabelled = select_episodes(raw, [r for i, r in enumerate(episodes) if i not in chosen], drop_actions)
    if labelled_source is None:
        labelled = select_episodes(raw, [r for i, r in enumerate(episodes) if i in chosen])
    else:
        source_eps = episode_ranges(labelled_source)
        picked = draw(source_eps)
        labelled = select_episodes(labelled_source, [r for i, r in enumerate(source_eps) if i in picked])
    return labelled, unlabelled


# ------------------------------------------------------------------------------------------------
# Files without actions
# ------------------------------------------------------------------------------------------------


def write_action_free_hdf5(path: str | os.PathLike, data: Mapping[str, Any],
                           metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """D4RL's layout without ``actions`` (an ``actions`` key in ``data`` is not written). Written to a
    temporary file and renamed, like ``write_d4rl_hdf5``."""
    p = Path(path).expanduser()
    src = str(p)
    for key in _REQUIRED:
        if key not in data:
            raise _fail(src, key, "required key is missing")
    n = num_steps(data)
    items = {}
    for key, value in data.items():
        if key == "actions":
            continue
        arr = np.asarray(value)
        if key in _PER_STEP and arr.shape[:1] != (n,):
            raise _fail(src, key, f"has {arr.shape[:1]} steps but 'observations' has {n}")
        if key in ("observations", "next_observations", "rewards"):
            arr = arr.astype(np.float32)
        elif key in ("terminals", "timeouts"):
            arr = arr.astype(bool)
        items[key.strip("/")] = to_hdf5_value(src, key, arr)
    items.setdefault("timeouts", np.zeros(n, bool))
    if metadata:
        items.update({k: to_hdf5_value(src, k, v) for k, v in flatten_metadata(metadata).items()})
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp_name, "w") as f:
            for key, value in items.items():
                f.create_dataset(key, data=value)
        os.replace(tmp_name, p)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return p


def load_action_free_hdf5(path: str | os.PathLike) -> dict:
    """A D4RL-layout file read as unlabelled trajectories: every key but ``actions``, float32 observations
    and rewards, bool terminals/timeouts (all-False timeouts when absent). One-line ``DatasetError`` on a
    missing or unreadable file, a missing key or mismatched lengths."""
    p = Path(path).expanduser()
    src = str(p)
    if not p.is_file():
        raise _fail(src, None, "file not found (nothing is downloaded)")
    raw: dict = {}
    try:
        with h5py.File(p, "r") as f:
            names: list[str] = []
            f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            for name in names:
                if name != "actions":
                    raw[name] = decode_hdf5_strings(f[name][()])
    except OSError as err:
        raise _fail(src, None, f"not a readable HDF5 file ({err})") from err
    for key in _REQUIRED:
        if key not in raw:
            raise _fail(src, key, "required key is missing")
    n = num_steps(raw)
    for key in _PER_STEP:
        if key in raw and np.asarray(raw[key]).shape[:1] != (n,):
            raise _fail(src, key, f"has {np.asarray(raw[key]).shape[:1]} steps but 'observations' has {n}")
    for key in ("observations", "next_observations", "rewards"):
        if key in raw:
            raw[key] = np.asarray(raw[key], np.float32)
    raw["rewards"] = raw["rewards"].reshape(n)
    for key in ("terminals", "timeouts"):
        raw[key] = np.asarray(raw.get(key, np.zeros(n)), bool).reshape(n)
    return raw


# ------------------------------------------------------------------------------------------------
# The union of labelled and unlabelled transitions
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class ActionFreeDataset:
    """Labelled rows then unlabelled rows of one transition dataset (``qlearning_dataset`` pairs).

    ``transitions.action`` holds the env's actions on labelled rows and zeros on unlabelled ones.
    ``episode_start[i]``/``episode_end[i]``: the first and last row of row i's episode, so the state
    s_{t+j} of row i is ``next_obs[min(i + j - 1, end)]`` for j >= 1 and ``obs[max(i + j, start)]`` for j <= 0
    (edge states repeat at an episode's ends). ``hidden_actions``: the true actions of the unlabelled rows
    when they are known (a split of a labelled file), for measuring the proxy labels; else None."""

    transitions: Transition
    labelled: np.ndarray  # bool (N,)
    episode_start: np.ndarray  # int32 (N,)
    episode_end: np.ndarray  # int32 (N,)
    hidden_actions: Optional[np.ndarray] = None  # (N_unlabelled, ...) env actions, or None

    @property
    def num_labelled(self) -> int:
        return int(self.labelled.sum())


def transition_episode_bounds(q: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) row of each row's episode in ``qlearning_dataset`` output: an episode ends at a
    terminal or timeout, or where the next row does not continue it (``next_obs[i] != obs[i+1]``; rows
    dropped by ``qlearning_dataset`` leave such breaks)."""
    obs = np.asarray(q["observations"]).reshape(len(q["rewards"]), -1)
    nxt = np.asarray(q["next_observations"]).reshape(obs.shape)
    ends = (np.asarray(q["terminals"]) | np.asarray(q["timeouts"])).astype(bool).copy()
    ends[:-1] |= ~np.all(np.isclose(nxt[:-1], obs[1:], rtol=1e-5, atol=1e-6), axis=-1)
    ends[-1] = True
    end_rows = np.flatnonzero(ends)
    episode = np.concatenate([[0], np.cumsum(ends)[:-1]])  # episode index of each row
    starts = np.concatenate([[0], end_rows[:-1] + 1])
    return starts[episode].astype(np.int32), end_rows[episode].astype(np.int32)


def union_dataset(labelled: Mapping[str, Any], unlabelled: Mapping[str, Any], action_shape: tuple[int, ...],
                  discrete: bool, hidden_actions: bool = True) -> ActionFreeDataset:
    """The union of a labelled and an unlabelled flat D4RL dict (see :class:`ActionFreeDataset`).

    Each part goes through ``qlearning_dataset`` on its own (no pair crosses the parts). ``hidden_actions``:
    keep the unlabelled part's actions for diagnostics when its dict still has them."""
    action_dtype = np.int32 if discrete else np.float32
    parts, masks, starts, ends, hidden = [], [], [], [], None
    offset = 0
    for raw, is_labelled in ((labelled, True), (unlabelled, False)):
        if raw is None or num_steps(raw) == 0:
            continue
        raw = dict(raw)
        has_actions = "actions" in raw
        if not is_labelled:
            if has_actions and hidden_actions:
                hidden_src = np.asarray(raw["actions"])
            raw["actions"] = np.zeros((num_steps(raw),) + tuple(action_shape), np.float32)
        elif not has_actions:
            raise DatasetError("the labelled part has no 'actions' key")
        q = qlearning_dataset(raw)
        if not is_labelled and has_actions and hidden_actions:
            # qlearning_dataset may drop rows; redo it on the real actions to keep the same rows.
            hidden = qlearning_dataset({**raw, "actions": hidden_src})["actions"].astype(action_dtype)
        start, end = transition_episode_bounds(q)
        parts.append(q)
        masks.append(np.full(len(q["rewards"]), is_labelled))
        starts.append(start + offset)
        ends.append(end + offset)
        offset += len(q["rewards"])
    if not parts:
        raise DatasetError("both the labelled and the unlabelled part are empty")
    cat = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    actions = cat["actions"].astype(action_dtype)
    if discrete:
        actions = actions.reshape(-1)
    transitions = Transition(
        obs=jnp.asarray(cat["observations"], jnp.float32), action=jnp.asarray(actions),
        reward=jnp.asarray(cat["rewards"], jnp.float32), next_obs=jnp.asarray(cat["next_observations"], jnp.float32),
        terminated=jnp.asarray(cat["terminals"], bool), truncated=jnp.asarray(cat["timeouts"], bool),
    )
    return ActionFreeDataset(transitions, np.concatenate(masks), np.concatenate(starts), np.concatenate(ends),
                             None if hidden is None else (hidden.reshape(-1) if discrete else hidden))


__all__ = [
    "ActionFreeDataset",
    "episode_ranges",
    "load_action_free_hdf5",
    "select_episodes",
    "split_by_episodes",
    "transition_episode_bounds",
    "union_dataset",
    "write_action_free_hdf5",
]
