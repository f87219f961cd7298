"""Tests for hybrid_rl.datasets (D4RL HDF5 I/O, qlearning_dataset, normalized scores).

All files are small synthetic HDF5 files in tmp_path; nothing is downloaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_rl.datasets import (
    REF_SCORES,
    DatasetError,
    UnknownEnvError,
    default_d4rl_dir,
    episode_returns,
    load_d4rl_hdf5,
    normalized_score,
    qlearning_dataset,
    reference_returns_from_metadata,
    reference_scores,
    to_transitions,
    write_d4rl_hdf5,
)
from hybrid_rl.datasets.d4rl import decode_hdf5_strings, flatten_metadata, to_hdf5_value
from hybrid_rl.types import Transition


def _raw_h5(path: Path, arrays: dict) -> Path:
    """Write arrays as-is with h5py (bypassing our writer's validation) to make bad files."""
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    return path


def _two_episodes(with_next: bool) -> dict[str, np.ndarray]:
    """Episode A = steps 0..2 ending terminal at 2; episode B = steps 3..6 ending by timeout at 6.

    observations[i] = [i, 10 i]; the true next observation of step i is [i + 0.5, 10 i + 5] so a
    pair taken from the file's next_observations is distinguishable from observations[i + 1].
    """
    n = 7
    idx = np.arange(n, dtype=np.float32)
    data = {
        "observations": np.stack([idx, 10 * idx], axis=1),
        "actions": np.stack([idx / 10, -idx / 10], axis=1).astype(np.float32),
        "rewards": idx + 1.0,
        "terminals": np.array([0, 0, 1, 0, 0, 0, 0], dtype=bool),
        "timeouts": np.array([0, 0, 0, 0, 0, 0, 1], dtype=bool),
    }
    if with_next:
        data["next_observations"] = np.stack([idx + 0.5, 10 * idx + 5], axis=1)
    return data


def _err(path, key: str | None = None) -> str:
    return re.escape(str(path)) + (f".*'{re.escape(key)}'" if key else "")


# ----------------------------------------------------------------------------------- round trip


def test_round_trip_preserves_keys_dtypes_infos_and_metadata(tmp_path):
    data = _two_episodes(with_next=True)
    data["infos/qpos"] = np.arange(14, dtype=np.float64).reshape(7, 2)
    data["infos/goal"] = np.arange(7, dtype=np.int32)
    meta = {
        "algorithm": "SAC",
        "iteration": np.int32(7),
        "policy": {"fc0": {"weight": np.ones((3, 2), np.float32)}, "nonlinearity": "relu"},
        "ref_min_return": -1.5,
        "ref_max_return": 20.0,
    }
    path = write_d4rl_hdf5(tmp_path / "sub" / "dir" / "toy_medium-v2.hdf5", data, meta)
    assert path == tmp_path / "sub" / "dir" / "toy_medium-v2.hdf5" and path.is_file()
    # Atomic write leaves no temporary file behind.
    assert sorted(p.name for p in path.parent.iterdir()) == ["toy_medium-v2.hdf5"]

    # On disk: D4RL's layout (groups for "/" keys, strings as bytes).
    with h5py.File(path, "r") as f:
        assert isinstance(f["infos"], h5py.Group) and isinstance(f["metadata/policy/fc0"], h5py.Group)
        assert f["metadata/algorithm"].dtype.kind == "S"

    out = load_d4rl_hdf5(path, obs_dim=2, action_dim=2)
    expected_keys = set(data) | {
        "metadata/algorithm",
        "metadata/iteration",
        "metadata/policy/fc0/weight",
        "metadata/policy/nonlinearity",
        "metadata/ref_min_return",
        "metadata/ref_max_return",
    }
    assert set(out) == expected_keys
    for k in ("observations", "next_observations", "actions", "rewards"):
        assert out[k].dtype == np.float32
        np.testing.assert_array_equal(out[k], data[k])
    for k in ("terminals", "timeouts"):
        assert out[k].dtype == np.bool_
        np.testing.assert_array_equal(out[k], data[k])
    assert out["infos/qpos"].dtype == np.float64 and out["infos/goal"].dtype == np.int32
    np.testing.assert_array_equal(out["infos/qpos"], data["infos/qpos"])
    np.testing.assert_array_equal(out["infos/goal"], data["infos/goal"])
    assert out["metadata/algorithm"] == "SAC" and isinstance(out["metadata/algorithm"], str)
    assert out["metadata/policy/nonlinearity"] == "relu"
    assert out["metadata/iteration"] == 7 and out["metadata/iteration"].dtype == np.int32
    np.testing.assert_array_equal(out["metadata/policy/fc0/weight"], np.ones((3, 2)))
    assert reference_returns_from_metadata(out) == (-1.5, 20.0)

    # Loading and writing again is a fixed point (metadata/* keys in data are written back).
    again = load_d4rl_hdf5(write_d4rl_hdf5(tmp_path / "again.hdf5", out))
    assert set(again) == set(out)
    assert again["metadata/algorithm"] == "SAC"


def test_loader_squeezes_casts_and_defaults_timeouts(tmp_path):
    n = 5
    path = _raw_h5(
        tmp_path / "maze2d-like.hdf5",
        {
            "observations": np.random.default_rng(0).normal(size=(n, 4)),  # float64
            "actions": np.zeros((n, 2), np.float64),
            "rewards": np.arange(n, dtype=np.float64).reshape(n, 1),
            "terminals": np.array([[0.0], [0.0], [1.0], [0.0], [0.0]]),  # float 0/1, (N,1)
        },
    )
    out = load_d4rl_hdf5(path)
    assert out["rewards"].shape == (n,) and out["rewards"].dtype == np.float32
    assert out["terminals"].shape == (n,) and out["terminals"].dtype == np.bool_
    np.testing.assert_array_equal(out["terminals"], [False, False, True, False, False])
    assert out["observations"].dtype == np.float32 and out["actions"].dtype == np.float32
    np.testing.assert_array_equal(out["timeouts"], np.zeros(n, bool))
    assert "next_observations" not in out
    assert reference_returns_from_metadata(out) is None


def test_writer_validates_before_writing(tmp_path):
    data = _two_episodes(with_next=False)
    data["rewards"] = data["rewards"].copy()
    data["rewards"][3] = np.nan
    path = tmp_path / "bad.hdf5"
    with pytest.raises(DatasetError, match=_err(path, "rewards")):
        write_d4rl_hdf5(path, data)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_flatten_metadata_joins_nested_and_slash_keys():
    assert flatten_metadata({"a": {"b": 1, "c/d": "x"}, "/e/": 2.5}) == {
        "metadata/a/b": 1, "metadata/a/c/d": "x", "metadata/e": 2.5}
    assert flatten_metadata({"k": 1}, prefix="infos") == {"infos/k": 1}


def test_to_hdf5_value_and_decode_hdf5_strings_round_trip_strings():
    assert to_hdf5_value("f.hdf5", "k", "relu") == np.bytes_(b"relu")
    assert to_hdf5_value("f.hdf5", "k", b"raw") == np.bytes_(b"raw")
    names = to_hdf5_value("f.hdf5", "k", np.array(["ab", "c"]))
    assert names.dtype.kind == "S" and list(names) == [b"ab", b"c"]
    assert to_hdf5_value("f.hdf5", "k", np.array(["x", "yz"], dtype=object)).dtype.kind == "S"
    np.testing.assert_array_equal(to_hdf5_value("f.hdf5", "k", jnp.arange(3)), np.arange(3))
    assert decode_hdf5_strings(np.bytes_(b"relu")) == "relu"
    np.testing.assert_array_equal(decode_hdf5_strings(names), np.array(["ab", "c"]))
    np.testing.assert_array_equal(decode_hdf5_strings(np.array([b"p", b"q"], dtype=object)), np.array(["p", "q"]))
    numbers = np.arange(4.0)
    assert decode_hdf5_strings(numbers) is numbers


@pytest.mark.parametrize("value, problem", [(None, "value is None"),
                                            (np.array([[1], [2, 3]], dtype=object), "object array cannot be stored")])
def test_to_hdf5_value_names_the_file_and_key_of_what_hdf5_cannot_store(value, problem):
    with pytest.raises(DatasetError, match=f"f.hdf5.*'metadata/x'.*{problem}"):
        to_hdf5_value("f.hdf5", "metadata/x", value)


# --------------------------------------------------------------------------------- transitions


def test_qlearning_without_next_observations_drops_timeout_steps():
    q = qlearning_dataset(_two_episodes(with_next=False))
    assert set(q) == {"observations", "actions", "next_observations", "rewards", "terminals", "timeouts"}
    # Step 6 (timeout, no true next obs in the file) is dropped; every other step is kept.
    np.testing.assert_array_equal(q["observations"][:, 0], [0, 1, 2, 3, 4, 5])
    # Pairs inside episodes use observations[i+1]; terminal step 2 gets the placeholder obs[2],
    # not obs[3] (which belongs to episode B).
    np.testing.assert_array_equal(q["next_observations"][:, 0], [1, 2, 2, 4, 5, 6])
    np.testing.assert_array_equal(q["next_observations"][:, 1], [10, 20, 20, 40, 50, 60])
    np.testing.assert_array_equal(q["rewards"], [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(q["actions"][:, 0], np.arange(6, dtype=np.float32) / 10)
    np.testing.assert_array_equal(q["terminals"], [0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(q["timeouts"], np.zeros(6, bool))
    # No pair crosses an episode end: episode of s and s' agree (A = steps 0..2, B = 3..6).
    episode = lambda x: (x[:, 0] >= 3).astype(int)  # noqa: E731
    np.testing.assert_array_equal(episode(q["observations"]), episode(q["next_observations"]))
    assert all(v.dtype == np.float32 for k, v in q.items() if k not in ("terminals", "timeouts"))


def test_qlearning_with_next_observations_keeps_every_step():
    data = _two_episodes(with_next=True)
    q = qlearning_dataset(data)
    np.testing.assert_array_equal(q["observations"], data["observations"])
    # The timeout step 6 keeps its true next observation [6.5, 65] and its timeout flag.
    np.testing.assert_array_equal(q["next_observations"], data["next_observations"])
    np.testing.assert_array_equal(q["next_observations"][6], [6.5, 65])
    np.testing.assert_array_equal(q["timeouts"], [0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(q["terminals"], [0, 0, 1, 0, 0, 0, 0])
    # No pair crosses an episode end: each s' is its own step's successor, never obs of the next episode.
    np.testing.assert_array_equal(q["next_observations"][:, 0] - q["observations"][:, 0], np.full(7, 0.5))


def test_qlearning_final_row_dropped_unless_terminal():
    data = _two_episodes(with_next=False)
    for k in data:  # append step 7: a trailing, unfinished episode
        data[k] = np.concatenate([data[k], data[k][-1:] * 0 + (7 if k == "observations" else 0)])
    q = qlearning_dataset(data)
    np.testing.assert_array_equal(q["observations"][:, 0], [0, 1, 2, 3, 4, 5])  # 6 timeout, 7 unfinished
    data["terminals"][-1] = True
    q = qlearning_dataset(data)
    np.testing.assert_array_equal(q["observations"][:, 0], [0, 1, 2, 3, 4, 5, 7])
    np.testing.assert_array_equal(q["next_observations"][-1], q["observations"][-1])  # placeholder
    assert q["terminals"][-1]


def test_to_transitions_continuous_and_discrete():
    tr = to_transitions(qlearning_dataset(_two_episodes(with_next=True)))
    assert isinstance(tr, Transition) and tr.batch_shape == (7,)
    assert isinstance(tr.obs, jnp.ndarray) and tr.obs.dtype == jnp.float32 and tr.obs.shape == (7, 2)
    assert tr.action.dtype == jnp.float32 and tr.action.shape == (7, 2)
    assert tr.terminated.dtype == jnp.bool_ and tr.truncated.dtype == jnp.bool_
    np.testing.assert_array_equal(np.asarray(tr.terminated), [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(tr.truncated), [0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(np.asarray(tr.next_obs)[6], [6.5, 65])

    discrete = _two_episodes(with_next=True)
    discrete["actions"] = np.array([0, 1, 2, 1, 0, 2, 1], np.int64)
    q = qlearning_dataset(discrete)  # loader-canonical: actions float32 ...
    tr = to_transitions(q)  # ... and integer-valued (N,) actions come back as int32
    assert tr.action.dtype == jnp.int32 and tr.action.shape == (7,)
    np.testing.assert_array_equal(np.asarray(tr.action), [0, 1, 2, 1, 0, 2, 1])
    assert to_transitions(q, discrete=False).action.dtype == jnp.float32


def test_episode_returns_complete_episodes_only():
    data = _two_episodes(with_next=False)  # rewards 1..7: A = 1+2+3, B = 4+5+6+7
    np.testing.assert_allclose(episode_returns(data), [6.0, 22.0])
    for k in data:  # trailing partial episode (one more step, no end flag) is excluded
        data[k] = np.concatenate([data[k], data[k][-1:] * 0])
    data["rewards"][-1] = 100.0
    np.testing.assert_allclose(episode_returns(data), [6.0, 22.0])
    del data["timeouts"]  # without timeouts only terminals end episodes
    np.testing.assert_allclose(episode_returns(data), [6.0])


# --------------------------------------------------------------------------------- scores


def test_normalized_score_hopper_reference_points():
    lo, hi = REF_SCORES["hopper"]
    assert (lo, hi) == (-20.272305, 3234.3)
    assert normalized_score("hopper-medium-v2", lo) == pytest.approx(0.0)
    assert normalized_score("hopper-medium-v2", hi) == pytest.approx(100.0)
    mid = (lo + hi) / 2
    np.testing.assert_allclose(normalized_score("hopper-medium-v2", np.array([lo, mid, hi])), [0, 50, 100])
    out = normalized_score("hopper-medium-replay-v2", jnp.array([lo, hi]))
    assert isinstance(out, jnp.ndarray)
    np.testing.assert_allclose(np.asarray(out), [0, 100], atol=1e-3)
    # Same family under the file-name spelling and other versions/types.
    assert normalized_score("hopper_medium-v2", hi) == pytest.approx(100.0)
    assert reference_scores("hopper-random-v0") == (lo, hi)


def test_family_matching_most_specific():
    assert reference_scores("maze2d-umaze-dense-v1") == (68.537689, 193.66285642381482)
    assert reference_scores("maze2d-umaze-v1") == (23.85, 161.86)
    assert reference_scores("maze2d-large-dense-v1") == (30.569041, 303.4857382709002)
    assert reference_scores("maze2d-large-v1") == (6.7, 273.99)
    assert normalized_score("maze2d-umaze-dense-v1", 193.66285642381482) == pytest.approx(100.0)
    assert normalized_score("maze2d-umaze-v1", 161.86) == pytest.approx(100.0)
    # ant vs antmaze: "ant" never matches an antmaze id.
    assert reference_scores("ant-medium-v2") == (-325.6, 3879.7)
    assert reference_scores("antmaze-umaze-diverse-v2") == (0.0, 1.0)
    assert reference_scores("antmaze-large-play-v2") == (0.0, 1.0)
    assert reference_scores("pen-human-v1") == (96.262799, 3076.8331017826877)
    assert reference_scores("kitchen-mixed-v0") == (0.0, 4.0)
    assert normalized_score("antmaze-medium-diverse-v2", np.array([0.0, 0.5])).tolist() == [0.0, 50.0]


def test_normalized_score_explicit_refs_and_unknown_env():
    assert normalized_score("pendulum-medium", 5.0, ref_min=0.0, ref_max=10.0) == pytest.approx(50.0)
    # Explicit refs win over the D4RL table.
    assert normalized_score("hopper-medium-v2", 5.0, ref_min=0.0, ref_max=10.0) == pytest.approx(50.0)
    with pytest.raises(UnknownEnvError, match="pendulum-medium.*known families.*hopper") as info:
        normalized_score("pendulum-medium", 5.0)
    assert isinstance(info.value, KeyError) and "\n" not in str(info.value)
    with pytest.raises(KeyError):
        reference_scores("antmazing-v0")
    with pytest.raises(ValueError):
        normalized_score("x", 1.0, ref_min=0.0)
    with pytest.raises(DatasetError, match="ref_max_return"):
        reference_returns_from_metadata({"metadata/ref_min_return": 0.0})


def test_default_d4rl_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    assert default_d4rl_dir() == tmp_path
    monkeypatch.delenv("D4RL_DATASET_DIR")
    assert default_d4rl_dir() == Path(os.path.expanduser("~")) / ".d4rl" / "datasets"


# --------------------------------------------------------------------------------- bad inputs


def _good_arrays(n: int = 6) -> dict[str, np.ndarray]:
    return {
        "observations": np.zeros((n, 3), np.float32),
        "actions": np.zeros((n, 2), np.float32),
        "rewards": np.zeros(n, np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": np.zeros(n, bool),
    }


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "hopper_medium-v2.hdf5"
    with pytest.raises(DatasetError, match=_err(path) + ".*not found"):
        load_d4rl_hdf5(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "garbage.hdf5"
    path.write_bytes(b"this is not an hdf5 file\x00\x01\x02" * 50)
    with pytest.raises(DatasetError, match=_err(path) + ".*not an HDF5"):
        load_d4rl_hdf5(path)


def test_truncated_file(tmp_path):
    path = write_d4rl_hdf5(tmp_path / "whole.hdf5", _good_arrays(2000))
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])  # what a killed non-atomic writer would leave
    with pytest.raises(DatasetError, match=_err(path)):
        load_d4rl_hdf5(path)


@pytest.mark.parametrize(
    "key, edit, kwargs, problem",
    [
        ("terminals", lambda d: d.pop("terminals"), {}, "missing"),
        ("actions", lambda d: d.update(actions=np.zeros((5, 2), np.float32)), {}, "5 steps"),
        ("timeouts", lambda d: d.update(timeouts=np.zeros(7, bool)), {}, "7 steps"),
        ("rewards", lambda d: d["rewards"].__setitem__(4, np.nan), {}, "NaN"),
        ("actions", lambda d: d["actions"].__setitem__((1, 0), np.inf), {}, "NaN/inf"),
        ("observations", lambda d: None, {"obs_dim": 11}, "obs_dim"),
        ("actions", lambda d: None, {"action_dim": 3}, "action_dim"),
        ("observations", lambda d: d.update(observations=np.array([b"a"] * 6)), {}, "rank"),
        ("observations", lambda d: d.update(observations=np.full((6, 3), b"x")), {}, "not numeric"),
        ("rewards", lambda d: d.update(rewards=np.zeros((6, 2), np.float32)), {}, "rank"),
        ("terminals", lambda d: d.update(terminals=np.full(6, 2, np.int64)), {}, "0/1"),
    ],
)
def test_bad_contents_raise_dataset_error(tmp_path, key, edit, kwargs, problem):
    arrays = _good_arrays()
    edit(arrays)
    path = _raw_h5(tmp_path / "bad.hdf5", arrays)
    with pytest.raises(DatasetError, match=_err(path, key) + ".*" + re.escape(problem)) as info:
        load_d4rl_hdf5(path, **kwargs)
    assert "\n" not in str(info.value)
