"""D4RL-layout HDF5 datasets: read, write, ``qlearning_dataset``, and normalized scores.

Layout (the one D4RL's generation scripts write and ``OfflineEnv.get_dataset`` reads): flat per-step
arrays at the top level of one HDF5 file,

    observations (N, obs...) float32     actions (N, act) float32 (or (N,) integers: discrete)
    rewards (N,) float32                 terminals (N,) bool        timeouts (N,) bool
    next_observations (N, obs...)        (optional; Gym-MuJoCo v2 files have it, AntMaze/Adroit don't)
    infos/<name>   (N, ...)              (optional per-step extras: qpos, qvel, goal, action_log_probs)
    metadata/<name>                      (optional: scalars such as ``algorithm`` = b"SAC", policy weights)

and the loader returns them as one flat dict keyed by the full HDF5 path (``"infos/qpos"``).

Where files live. Nothing here downloads anything: files are local only.

* D4RL keeps its files in ``$D4RL_DATASET_DIR`` or ``~/.d4rl/datasets``, named after the basename of
  the download URL, e.g. ``~/.d4rl/datasets/hopper_medium-v2.hdf5`` or
  ``~/.d4rl/datasets/Ant_maze_u-maze_noisy_multistart_False_multigoal_False_sparse_fixed.hdf5``.
  :func:`default_d4rl_dir` returns that directory.
* Minari keeps datasets in ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``, as
  ``<ns>/<name>-vN/data/main_data.hdf5`` (plus ``data/metadata.json``). That file is grouped by
  episode (``episode_{i}/observations`` has T+1 rows, ``terminations``/``truncations``), which is
  a different layout: this loader does not read it.

Everything here is host-side numpy (I/O, never jitted); only :func:`to_transitions` makes jnp arrays.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import jax.numpy as jnp
import numpy as np

from hybrid_rl.logging import readable_by_group
from hybrid_rl.types import Transition

__all__ = [
    "DatasetError",
    "UnknownEnvError",
    "REF_SCORES",
    "MAX_EPISODE_STEPS",
    "default_d4rl_dir",
    "load_d4rl_hdf5",
    "write_d4rl_hdf5",
    "qlearning_dataset",
    "to_transitions",
    "episode_returns",
    "reference_scores",
    "normalized_score",
    "reference_returns_from_metadata",
    "infer_d4rl_task",
    "d4rl_family",
]

# Per-step top-level keys. Float keys are cast to float32, flag keys to bool; all must share N.
_REQUIRED = ("observations", "actions", "rewards", "terminals")
_FLOAT_KEYS = ("observations", "next_observations", "actions", "rewards")
_FLAG_KEYS = ("terminals", "timeouts")
_PER_STEP_KEYS = ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts")
_QLEARNING_KEYS = ("observations", "actions", "next_observations", "rewards", "terminals", "timeouts")

_REF_MIN_KEY = "metadata/ref_min_return"
_REF_MAX_KEY = "metadata/ref_max_return"
_IN_MEMORY = "<in-memory dataset>"


class DatasetError(ValueError):
    """A dataset file (or in-memory dataset dict) is missing, unreadable or malformed.

    The message is one line and names the file path and, where there is one, the offending key.
    """


class UnknownEnvError(KeyError):
    """No D4RL reference scores for this environment name (and no explicit references were given)."""

    def __str__(self) -> str:
        # KeyError's default __str__ wraps the message in quotes; keep it a plain one-line message.
        return str(self.args[0]) if self.args else ""


def _fail(source: str, key: str | None, problem: str) -> DatasetError:
    where = f"{source}: key '{key}'" if key is not None else source
    # One line, always: nested library messages sometimes carry newlines.
    return DatasetError(" ".join(f"{where}: {problem}".split()))


# --------------------------------------------------------------------------------------------------
# Reference scores (d4rl 1.1 infos.py). The same per family for every dataset type and version.
# --------------------------------------------------------------------------------------------------

# family -> (REF_MIN_SCORE, REF_MAX_SCORE, max_episode_steps)
_FAMILIES: dict[str, tuple[float, float, int]] = {
    "halfcheetah": (-280.178953, 12135.0, 1000),
    "hopper": (-20.272305, 3234.3, 1000),
    "walker2d": (1.629008, 4592.3, 1000),
    "ant": (-325.6, 3879.7, 1000),
    "antmaze-umaze": (0.0, 1.0, 700),
    "antmaze-umaze-diverse": (0.0, 1.0, 700),
    "antmaze-medium": (0.0, 1.0, 1000),
    "antmaze-large": (0.0, 1.0, 1000),
    "pen": (96.262799, 3076.8331017826877, 100),
    "hammer": (-274.856578, 12794.134825156867, 200),
    "door": (-56.512833, 2880.5693087298737, 200),
    "relocate": (-6.425911, 4233.877797728884, 200),
    "kitchen": (0.0, 4.0, 280),
    "maze2d-umaze": (23.85, 161.86, 300),
    "maze2d-medium": (13.13, 277.39, 600),
    "maze2d-large": (6.7, 273.99, 800),
    "maze2d-umaze-dense": (68.537689, 193.66285642381482, 300),
    "maze2d-medium-dense": (44.264742, 297.4552547777125, 600),
    "maze2d-large-dense": (30.569041, 303.4857382709002, 800),
}

#: (REF_MIN, REF_MAX) return per D4RL env family; match a full env id with :func:`reference_scores`.
REF_SCORES: dict[str, tuple[float, float]] = {k: (lo, hi) for k, (lo, hi, _) in _FAMILIES.items()}
#: D4RL's time limit per family (the episode length at which ``timeouts`` is set).
MAX_EPISODE_STEPS: dict[str, int] = {k: steps for k, (_, _, steps) in _FAMILIES.items()}

_VERSION_SUFFIX = re.compile(r"-v\d+$")


def _family(env_name: str) -> str:
    """Most specific family whose name is ``env_name`` or a ``-``-separated prefix of it.

    ``"maze2d-umaze-dense-v1"`` -> ``"maze2d-umaze-dense"`` (not ``"maze2d-umaze"``);
    ``"antmaze-medium-play-v2"`` -> ``"antmaze-medium"``; ``"ant-medium-v2"`` -> ``"ant"`` (``"ant"``
    never matches ``"antmaze-..."`` because the prefix must end at a ``-``). File-name spellings with
    underscores (``"hopper_medium-v2"``) are accepted too.
    """
    name = _VERSION_SUFFIX.sub("", env_name.strip().lower().replace("_", "-"))
    matches = [f for f in _FAMILIES if name == f or name.startswith(f + "-")]
    if not matches:
        raise UnknownEnvError(
            f"no D4RL reference scores for env '{env_name}'; known families: "
            f"{', '.join(sorted(_FAMILIES))} (or pass ref_min and ref_max)"
        )
    return max(matches, key=len)


# D4RL's AntMaze files are named after their maze and start/goal options, not after the env id.
_ANTMAZE_FILES = {"u-maze": "umaze", "big-maze": "medium", "hardest-maze": "large"}


def d4rl_family(env_name: str) -> str | None:
    """The D4RL family (``"hopper"``, ``"antmaze-medium"``...) of a D4RL env id, or None if it has none."""
    try:
        return _family(env_name)
    except UnknownEnvError:
        return None


def infer_d4rl_task(path: str | os.PathLike) -> str | None:
    """The D4RL env id a dataset file is named after, or None: ``hopper_medium_replay-v2.hdf5`` (D4RL's
    own file name) and ``hopper-medium-replay-v2.hdf5`` both give ``"hopper-medium-replay-v2"``; D4RL's
    AntMaze files (``Ant_maze_big-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5``) give
    their env id (``"antmaze-medium-diverse-v2"``). Used to look up the reference returns of a real D4RL
    file and the env it came from."""
    stem = Path(path).name
    for suffix in (".hdf5", ".h5"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    lowered = stem.lower()
    if lowered.startswith("ant_maze_"):
        maze = next((v for k, v in _ANTMAZE_FILES.items() if f"_{k}_" in lowered), None)
        if maze is None:
            return None
        multistart, multigoal = "multistart_true" in lowered, "multigoal_true" in lowered
        variant = ("-diverse" if multigoal else "-play") if multistart else ""
        if maze == "umaze" and variant == "-play":
            return None  # D4RL has no umaze-play
        return f"antmaze-{maze}{variant}-v2"
    name = lowered.replace("_", "-")
    return name if d4rl_family(name) is not None else None


def reference_scores(env_name: str) -> tuple[float, float]:
    """(REF_MIN, REF_MAX) return for a D4RL env id such as ``"hopper-medium-v2"``.

    Raises :class:`UnknownEnvError` (a ``KeyError``) for names outside D4RL's families.
    """
    return REF_SCORES[_family(env_name)]


def normalized_score(env_name: str, returns: Any, ref_min: float | None = None, ref_max: float | None = None) -> Any:
    """D4RL normalized score ``100 * (R - ref_min) / (ref_max - ref_min)``, elementwise.

    ``returns`` may be a Python float, a numpy array or a jnp array (traceable: only arithmetic is
    used); the result has the same kind. Explicit ``ref_min``/``ref_max`` (e.g. from our own datasets'
    ``metadata/ref_{min,max}_return``, see :func:`reference_returns_from_metadata`) take precedence
    over the D4RL table, so ``env_name`` may then be any name.
    """
    if (ref_min is None) != (ref_max is None):
        raise ValueError("normalized_score: give both ref_min and ref_max, or neither")
    if ref_min is None:
        ref_min, ref_max = reference_scores(env_name)
    ref_min, ref_max = float(ref_min), float(ref_max)
    if ref_max == ref_min:
        raise ValueError(f"normalized_score: ref_max == ref_min == {ref_min} for env '{env_name}'")
    if isinstance(returns, (list, tuple)):
        returns = np.asarray(returns, dtype=np.float64)
    return 100.0 * (returns - ref_min) / (ref_max - ref_min)


def reference_returns_from_metadata(data: Mapping[str, Any]) -> tuple[float, float] | None:
    """``(metadata/ref_min_return, metadata/ref_max_return)`` as floats, or None if neither is there.

    Our own datasets store their normalization references this way; D4RL's files do not.
    Raises :class:`DatasetError` if only one of the two keys is present.
    """
    has_min, has_max = _REF_MIN_KEY in data, _REF_MAX_KEY in data
    if not has_min and not has_max:
        return None
    if not (has_min and has_max):
        missing = _REF_MAX_KEY if has_min else _REF_MIN_KEY
        raise _fail(_IN_MEMORY, missing, "missing (the other reference return is present)")
    return float(np.asarray(data[_REF_MIN_KEY])), float(np.asarray(data[_REF_MAX_KEY]))


# --------------------------------------------------------------------------------------------------
# Validation shared by the loader, the writer and qlearning_dataset.
# --------------------------------------------------------------------------------------------------


def _dim_tuple(dim: int | tuple[int, ...]) -> tuple[int, ...]:
    return (int(dim),) if isinstance(dim, (int, np.integer)) else tuple(int(d) for d in dim)


def _to_float32(source: str, key: str, arr: np.ndarray) -> np.ndarray:
    # Bool observations (MinAtar-style grids) and integer actions are numeric; strings/objects/complex are not.
    if arr.dtype.kind not in "biuf":
        raise _fail(source, key, f"dtype {arr.dtype} is not numeric (expected float)")
    out = np.asarray(arr, dtype=np.float32)
    # Checked after the cast so float64 values that overflow float32 are caught too.
    bad = ~np.isfinite(out)
    if bad.any():
        first = int(np.flatnonzero(bad.reshape(len(out), -1).any(axis=1))[0])
        raise _fail(source, key, f"contains {int(bad.sum())} NaN/inf value(s), first at step {first}")
    return out


def _to_flags(source: str, key: str, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind == "b":
        return arr.astype(bool, copy=False)
    if arr.dtype.kind not in "iuf":
        raise _fail(source, key, f"dtype {arr.dtype} is not bool (or numeric 0/1)")
    # D4RL files sometimes store flags as float/int 0/1; anything else is a corrupt flag.
    if not np.isin(arr, (0, 1)).all():
        raise _fail(source, key, "values other than 0/1 in a flag array")
    return arr != 0


def _squeeze_steps(source: str, key: str, arr: np.ndarray, n: int) -> np.ndarray:
    """(N,1) -> (N,) for scalar per-step keys; any other rank is an error."""
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise _fail(source, key, f"wrong rank: shape {arr.shape}, expected ({n},) or ({n}, 1)")
    return arr


def _canonicalize(
    raw: Mapping[str, Any],
    source: str,
    obs_dim: int | tuple[int, ...] | None = None,
    action_dim: int | None = None,
) -> dict[str, Any]:
    """Validate a flat D4RL dict and return it with canonical dtypes/shapes (inputs are not mutated).

    Raises :class:`DatasetError` naming ``source`` and the offending key.
    """
    for key in _REQUIRED:
        if key not in raw:
            raise _fail(source, key, "required key is missing")
    out: dict[str, Any] = dict(raw)
    arrays = {k: np.asarray(raw[k]) for k in _PER_STEP_KEYS if k in raw}

    obs = arrays["observations"]
    if obs.ndim < 2:
        raise _fail(source, "observations", f"wrong rank: shape {obs.shape}, expected (N, obs_dim, ...)")
    n = obs.shape[0]
    if n == 0:
        raise _fail(source, "observations", "dataset has no steps (N = 0)")

    # Lengths first, so a short key is reported as a length problem rather than as whatever else.
    for key, arr in arrays.items():
        if arr.ndim == 0:
            raise _fail(source, key, f"wrong rank: scalar, expected a per-step array with {n} rows")
        if arr.shape[0] != n:
            raise _fail(source, key, f"has {arr.shape[0]} steps but 'observations' has {n}")

    out["observations"] = _to_float32(source, "observations", obs)
    if obs_dim is not None and out["observations"].shape[1:] != _dim_tuple(obs_dim):
        raise _fail(source, "observations", f"shape {obs.shape[1:]} per step, expected obs_dim {_dim_tuple(obs_dim)}")

    if "next_observations" in arrays:
        nxt = arrays["next_observations"]
        if nxt.shape != obs.shape:
            raise _fail(source, "next_observations", f"shape {nxt.shape} differs from observations {obs.shape}")
        out["next_observations"] = _to_float32(source, "next_observations", nxt)

    act = arrays["actions"]
    if act.ndim not in (1, 2):
        raise _fail(source, "actions", f"wrong rank: shape {act.shape}, expected (N, action_dim) or (N,)")
    out["actions"] = _to_float32(source, "actions", act)
    if action_dim is not None:
        a = out["actions"]
        if a.ndim == 2 and a.shape[1] != action_dim:
            raise _fail(source, "actions", f"action_dim {a.shape[1]}, expected {action_dim}")
        if a.ndim == 1:
            # (N,) actions: either discrete indices (action_dim = number of actions) or a scalar
            # continuous action (action_dim = 1). Anything else cannot match action_dim.
            discrete = bool(np.all(a == np.round(a)))
            ok = (discrete and a.min() >= 0 and a.max() < action_dim) or action_dim == 1
            if not ok:
                raise _fail(source, "actions", f"(N,) actions not in range for action_dim {action_dim}")

    out["rewards"] = _to_float32(source, "rewards", _squeeze_steps(source, "rewards", arrays["rewards"], n))
    for key in _FLAG_KEYS:
        if key in arrays:
            out[key] = _to_flags(source, key, _squeeze_steps(source, key, arrays[key], n))
    if "timeouts" not in arrays:
        # Old D4RL files (maze2d, v0) have no timeouts: no episode was cut by a time limit.
        out["timeouts"] = np.zeros(n, dtype=bool)
    return out


# --------------------------------------------------------------------------------------------------
# HDF5 I/O
# --------------------------------------------------------------------------------------------------


def default_d4rl_dir() -> Path:
    """``$D4RL_DATASET_DIR`` if set (and non-empty), else ``~/.d4rl/datasets`` (D4RL's own default)."""
    env = os.environ.get("D4RL_DATASET_DIR")
    return Path(env).expanduser() if env else Path("~/.d4rl/datasets").expanduser()


def decode_hdf5_strings(value: Any) -> Any:
    """A value read from HDF5 with its bytes decoded as UTF-8 ``str``: a bytes scalar becomes ``str``, a
    fixed-length bytes array or an object array of bytes becomes a ``str`` array (D4RL stores strings as
    bytes); anything else comes back unchanged."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "S":
            return np.char.decode(value, "utf-8")
        if value.dtype.kind == "O" and value.size and all(isinstance(v, bytes) for v in value.flat):
            return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(value).astype(str)
    return value


def load_d4rl_hdf5(
    path: str | os.PathLike,
    *,
    obs_dim: int | tuple[int, ...] | None = None,
    action_dim: int | None = None,
) -> dict[str, Any]:
    """Read a D4RL-layout HDF5 file into a flat dict keyed by full HDF5 path (like D4RL's ``get_dataset``).

    Every dataset in the file is read: per-step arrays, ``infos/*`` and ``metadata/*``. Required
    keys are observations, actions, rewards and terminals; ``timeouts`` defaults to all False.
    (N,1) rewards/terminals/timeouts are squeezed to (N,); observations, next_observations,
    actions and rewards become float32 and terminals/timeouts bool (0/1 numbers are accepted).
    ``infos/*`` keep their stored dtype. Scalar datasets come back as numpy scalars, bytes decoded
    to ``str``. ``obs_dim`` (int or per-step shape) and ``action_dim`` are checked when given; for
    (N,) discrete actions ``action_dim`` is the number of actions.

    Raises :class:`DatasetError` (one line: the path and the key) for a missing, corrupt or non-HDF5
    file, a missing key, mismatched lengths, non-numeric dtypes, wrong ranks and NaN/inf in
    observations, next_observations, actions or rewards.
    """
    p = Path(path).expanduser()
    src = str(p)
    if not p.exists():
        raise _fail(src, None, "file not found (D4RL files are local only; nothing is downloaded)")
    if not p.is_file():
        raise _fail(src, None, "is not a regular file")
    try:
        is_hdf5 = h5py.is_hdf5(p)
    except OSError as e:
        raise _fail(src, None, f"cannot be read: {e}") from e
    if not is_hdf5:
        raise _fail(src, None, "not an HDF5 file (no HDF5 signature)")

    raw: dict[str, Any] = {}
    current: str | None = None
    try:
        with h5py.File(p, "r") as f:
            names: list[str] = []
            f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            for current in names:
                raw[current] = decode_hdf5_strings(f[current][()])
    except DatasetError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
        # A truncated or corrupt file may open and then fail on one dataset; name that dataset.
        raise _fail(src, current, f"corrupt or unreadable HDF5 file ({type(e).__name__}: {e})") from e
    return _canonicalize(raw, src, obs_dim=obs_dim, action_dim=action_dim)


def flatten_metadata(metadata: Mapping[str, Any], prefix: str = "metadata") -> dict[str, Any]:
    """Metadata as flat HDF5 paths: nested dicts and "/"-separated keys both become ``metadata/...`` keys
    (``{"a": {"b": 1}}`` and ``{"a/b": 1}`` both give ``{"metadata/a/b": 1}``)."""
    flat: dict[str, Any] = {}
    for key, value in metadata.items():
        full = f"{prefix}/{str(key).strip('/')}"
        if isinstance(value, Mapping):
            flat.update(flatten_metadata(value, full))
        else:
            flat[full] = value
    return flat


def to_hdf5_value(src: str, key: str, value: Any) -> np.ndarray | np.generic:
    """A Python, numpy or jax value as something h5py writes: strings (scalars and arrays) as UTF-8 bytes, as
    D4RL writes them, everything else as a numpy array. ``src`` (the file) and ``key`` name the value in the
    DatasetError raised for what HDF5 cannot store (None, a ragged or object array)."""
    if value is None:
        raise _fail(src, key, "value is None")
    if isinstance(value, str):
        return np.bytes_(value.encode("utf-8"))
    if isinstance(value, bytes):
        return np.bytes_(value)
    arr = np.asarray(value)
    if arr.dtype.kind == "U":
        return np.char.encode(arr, "utf-8")
    if arr.dtype.kind == "O":
        try:
            arr = np.asarray(arr.tolist())
        except Exception as e:  # noqa: BLE001 - ragged/object input: report it, don't crash in h5py
            raise _fail(src, key, f"object array cannot be stored ({e})") from e
        if arr.dtype.kind == "U":
            return np.char.encode(arr, "utf-8")
        if arr.dtype.kind == "O":
            raise _fail(src, key, "object array cannot be stored in HDF5")
    return arr


def write_d4rl_hdf5(
    path: str | os.PathLike,
    data: Mapping[str, Any],
    metadata: Mapping[str, Any] | None = None,
    *,
    compression: str | None = None,
) -> Path:
    """Write a flat D4RL dict to ``path`` in D4RL's layout and return the path.

    ``data`` is validated exactly as :func:`load_d4rl_hdf5` validates a file, and written in the
    loader's canonical dtypes (float32 observations/actions/rewards, bool terminals/timeouts, with
    all-False timeouts added if absent), so ``load(write(d))`` returns ``d``'s values unchanged.
    Keys containing "/" (``infos/qpos``, ``metadata/algorithm``) become HDF5 groups. ``metadata``
    entries (nested dicts allowed) go under ``metadata/…`` and win over same-named ``metadata/*``
    keys in ``data``; strings are stored as bytes like D4RL. Parent directories are created.

    The file is written to a temporary file in the same directory and renamed over ``path``, so a
    killed writer never leaves a half-written file under the final name (at worst a stale
    ``.<name>.*.tmp`` next to it). ``compression`` (e.g. ``"gzip"``, what D4RL used) applies to
    arrays with at least one axis.
    """
    p = Path(path).expanduser()
    src = str(p)
    canonical = _canonicalize(data, src)
    if metadata:
        canonical.update(flatten_metadata(metadata))
    items = {k.strip("/"): to_hdf5_value(src, k, v) for k, v in canonical.items()}

    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _fail(src, None, f"cannot create parent directory ({e})") from e
    fd, tmp_name = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    current: str | None = None
    try:
        with h5py.File(tmp, "w") as f:
            for current, value in items.items():
                kwargs = {"compression": compression} if compression and np.ndim(value) > 0 else {}
                f.create_dataset(current, data=value, **kwargs)
        current = None
        # Flush to disk before the rename so the final name never points at unwritten blocks.
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, p)
        readable_by_group(p)
    except (OSError, RuntimeError, ValueError, TypeError) as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, DatasetError):
            raise
        raise _fail(src, current, f"write failed ({type(e).__name__}: {e})") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


# --------------------------------------------------------------------------------------------------
# Transitions
# --------------------------------------------------------------------------------------------------


def qlearning_dataset(data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """(s, a, r, s', terminal, timeout) arrays from a flat D4RL dict, never pairing across an episode end.

    * With ``next_observations`` in ``data``: every step is kept as stored, including the last step
      of a timed-out episode (it has its true next observation and ``timeouts=True``, so targets
      bootstrap through it).
    * Without it: ``next_observations[i] = observations[i+1]``, which is only valid inside an
      episode. So a step with ``timeouts`` set and ``terminals`` unset is dropped (its true next
      observation is not in the file), as is the file's final row unless it is terminal. A terminal
      step is kept with ``observations[i]`` as a placeholder next observation: targets never
      bootstrap through a terminal, and ``observations[i+1]`` belongs to the next episode.

    Returns float32 ``observations, actions, next_observations, rewards`` and bool ``terminals,
    timeouts``. ``data`` is validated like a loaded file (``DatasetError`` on problems).
    """
    d = _canonicalize(data, _IN_MEMORY)
    obs, terminals, timeouts = d["observations"], d["terminals"], d["timeouts"]
    if "next_observations" in d:
        keep = slice(None)
        next_obs = d["next_observations"]
    else:
        next_obs = np.empty_like(obs)
        next_obs[:-1] = obs[1:]
        next_obs[-1] = obs[-1]
        next_obs[terminals] = obs[terminals]
        keep = terminals | ~timeouts
        keep[-1] = terminals[-1]
    return {
        "observations": obs[keep],
        "actions": d["actions"][keep],
        "next_observations": next_obs[keep],
        "rewards": d["rewards"][keep],
        "terminals": terminals[keep],
        "timeouts": timeouts[keep],
    }


def to_transitions(qdata: Mapping[str, Any], *, discrete: bool | None = None) -> Transition:
    """A batched :class:`~hybrid_rl.types.Transition` of jnp arrays from :func:`qlearning_dataset` output.

    ``terminated`` = terminals, ``truncated`` = timeouts. Actions become int32 when the dataset is
    discrete: by default, when they have shape (N,) and every value is an integer (a continuous
    scalar action stored as (N,) whose values all happen to be integers is ambiguous: pass
    ``discrete=False``); otherwise float32.
    """
    for key in _QLEARNING_KEYS:
        if key not in qdata:
            raise _fail(_IN_MEMORY, key, "required key is missing (pass the output of qlearning_dataset)")
    actions = np.asarray(qdata["actions"])
    if discrete is None:
        discrete = actions.ndim == 1 and (
            actions.dtype.kind in "iub" or (actions.dtype.kind == "f" and bool(np.all(actions == np.round(actions))))
        )
    actions = actions.astype(np.int32) if discrete else actions.astype(np.float32)
    return Transition(
        obs=jnp.asarray(np.asarray(qdata["observations"], dtype=np.float32)),
        action=jnp.asarray(actions),
        reward=jnp.asarray(np.asarray(qdata["rewards"], dtype=np.float32)),
        next_obs=jnp.asarray(np.asarray(qdata["next_observations"], dtype=np.float32)),
        terminated=jnp.asarray(np.asarray(qdata["terminals"], dtype=bool)),
        truncated=jnp.asarray(np.asarray(qdata["timeouts"], dtype=bool)),
    )


def episode_returns(data: Mapping[str, Any]) -> np.ndarray:
    """Undiscounted returns (float64) of the complete episodes in a flat D4RL dict, in file order.

    Episodes end at ``terminals | timeouts``; steps after the last end (a trailing partial episode)
    are excluded. Pass the raw dataset, not :func:`qlearning_dataset` output, which may have dropped
    the timeout steps that mark episode ends.
    """
    for key in ("rewards", "terminals"):
        if key not in data:
            raise _fail(_IN_MEMORY, key, "required key is missing")
    rewards = np.asarray(data["rewards"], dtype=np.float64).reshape(-1)
    ends = np.asarray(data["terminals"]).reshape(-1).astype(bool)
    if "timeouts" in data:
        ends = ends | np.asarray(data["timeouts"]).reshape(-1).astype(bool)
    if ends.shape != rewards.shape:
        raise _fail(_IN_MEMORY, "terminals", f"has {ends.shape[0]} steps but 'rewards' has {rewards.shape[0]}")
    # Differences of a cumulative sum at episode ends: vectorised, O(N), one pass.
    csum = np.concatenate([[0.0], np.cumsum(rewards)])
    end_idx = np.flatnonzero(ends) + 1
    return np.diff(csum[np.concatenate([[0], end_idx])])
