"""Figure provenance (paper_figures/provenance.py): the code version, a dataset's content hash and recipe,
and seeded bootstrap intervals."""

import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_rl import threefry_cpu
from hybrid_rl.datasets import write_d4rl_hdf5
from paper_figures import provenance


def _data(reward):
    n = reward.shape[0]
    return {"observations": np.zeros((n, 2), np.float32), "actions": np.zeros((n, 1), np.float32),
            "rewards": np.asarray(reward, np.float32), "next_observations": np.ones((n, 2), np.float32),
            "terminals": np.zeros(n, bool), "timeouts": np.arange(n) == n - 1}


def test_dataset_record_hashes_the_transitions(tmp_path):
    a, b, c = tmp_path / "a.hdf5", tmp_path / "b.hdf5", tmp_path / "c.hdf5"
    write_d4rl_hdf5(a, _data(jnp.arange(5.0)))
    write_d4rl_hdf5(b, _data(jnp.arange(5.0)))
    write_d4rl_hdf5(c, _data(jnp.arange(5.0).at[2].set(7.0)))
    ra, rb, rc = (provenance.dataset_record(p) for p in (a, b, c))
    assert ra["transitions"] == 5 and ra["bytes"] == a.stat().st_size and ra["path"] == str(a)
    assert ra["content_sha256"] == rb["content_sha256"] != rc["content_sha256"]


def test_provenance_block_and_seeded_intervals(tmp_path, monkeypatch):
    write_d4rl_hdf5(tmp_path / "d.hdf5", _data(jnp.arange(3.0)))
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX")
    block = provenance.provenance(None, seeds=range(3), datasets={"d": tmp_path / "d.hdf5"})
    assert block["xla_flags"] == "--xla_cpu_max_isa=AVX"  # flags that change float rounding are recorded
    assert block["seeds"] == [0, 1, 2] and block["datasets"]["d"]["transitions"] == 3
    code = block["code"]
    assert code["commit"] is None or (len(code["commit"]) == 40 and isinstance(code["dirty"], bool))
    assert block["threefry_cpu_lowering"] == ("unrolled" if threefry_cpu.INSTALLED else "rolled")
    x = np.random.default_rng(1).normal(size=(8, 3))
    lo1, hi1 = provenance.mean_ci(x, "H=10 HNPG")
    lo2, hi2 = provenance.mean_ci(x, "H=10 HNPG")
    np.testing.assert_array_equal(lo1, lo2)
    np.testing.assert_array_equal(hi1, hi2)
    assert np.all(lo1 < x.mean(0)) and np.all(x.mean(0) < hi1)
    assert not np.array_equal(provenance.mean_ci(x, "another")[0], lo1)


def test_seeded_global_numpy_restores_the_global_state():
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    with provenance.seeded_global_numpy("x"):
        a = np.random.rand(3)
    assert np.random.rand() == pytest.approx(expected)
    with provenance.seeded_global_numpy("x"):
        np.testing.assert_array_equal(np.random.rand(3), a)


def test_runtimes_per_part_flattens_a_merged_part():
    runs = [{"runtime_s": 4.0}, {"runtime_s": 9.0, "runtime_s_per_part": [2.0, 9.0]}, {"runtime_s": 1.5}]
    assert provenance.runtimes_per_part(runs) == [4.0, 2.0, 9.0, 1.5]
    assert provenance.runtimes_per_part([]) == []
