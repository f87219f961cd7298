"""A seed's key depends on its global index in the study, never on how the study is split into runs."""

import jax
import numpy as np
import pytest

from algorithms import sac
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.runner import Runner, RunSettings, global_seed_keys

TINY = sac.Config(total_steps=300, warmup_steps=100, hidden_sizes=(16, 16), batch_size=16, buffer_size=300)


def test_global_seed_keys_are_a_slice_of_one_split():
    whole = jax.random.key_data(jax.random.split(jax.random.key(7), 12))
    parts = [jax.random.key_data(global_seed_keys(7, off, 4)) for off in (0, 4, 8)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    # offset 0 is today's key derivation, so existing runs keep their numbers
    np.testing.assert_array_equal(jax.random.key_data(global_seed_keys(7, 0, 12)), whole)


def test_global_seed_keys_ignore_the_threefry_setting():
    expected = jax.random.key_data(global_seed_keys(3, 5, 3))
    with jax.threefry_partitionable(False):
        np.testing.assert_array_equal(jax.random.key_data(global_seed_keys(3, 5, 3)), expected)


def test_bad_offset_is_a_clear_error():
    with pytest.raises(ValueError, match="seed_offset must be >= 0"):
        global_seed_keys(0, -1, 2)


def _run(problem, num_seeds, seed_offset, config=TINY, seed_block=0):
    runner = Runner(sac.make(config, problem), problem, default_hparams(get_algorithm("sac"), config),
                    RunSettings(num_seeds=num_seeds, seed_offset=seed_offset, num_evals=2, eval_episodes=2,
                                progress=False, checkpoint=False, seed_block=seed_block))
    state, summary = runner.run()
    return runner.rows, jax.device_get(state), summary


@pytest.mark.slow  # three compiled runs: about 40 s on an idle 2-core CPU, 150 s under load
def test_two_runs_of_two_seeds_equal_one_run_of_four_bit_for_bit():
    problem = build_problem("pendulum", {"max_steps_in_episode": 50})
    rows4, state4, summary4 = _run(problem, 4, 0)
    parts = [_run(problem, 2, off) for off in (0, 2)]
    by_seed = {(r["chunk"], r["seed"]): r for rows, _, _ in parts for r in rows}
    assert sorted(by_seed) == sorted((r["chunk"], r["seed"]) for r in rows4)
    for row in rows4:
        other = by_seed[(row["chunk"], row["seed"])]
        for key, value in row.items():
            if key != "seconds":
                assert other[key] == value, (key, row["seed"], value, other[key])
    for off, (_, state, summary) in zip((0, 2), parts):
        assert summary["0"]["seeds"] == [off, off + 1]
        for a, b in zip(jax.tree.leaves(state4), jax.tree.leaves(state)):
            if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
                a, b = jax.random.key_data(a), jax.random.key_data(b)
            np.testing.assert_array_equal(np.asarray(a)[:, off:off + 2], np.asarray(b))
    assert summary4["0"]["seeds"] == [0, 1, 2, 3]


@pytest.mark.slow  # two compiled runs, about 50 s on the 2-core CPU under load
def test_seed_blocks_make_a_split_study_bit_identical():
    """A run of 6 seeds in blocks of 2 computes seeds 2..3 with the very program of a 2-seed job with
    seed_offset=2. (Without blocks XLA may compile a batch of 6 into another floating-point order; this
    small case happens to agree either way, the 32 vs 8 seeds of ``benchmarks.split_sweep`` do not.)"""
    problem = build_problem("pendulum", {"max_steps_in_episode": 50})
    config = sac.Config(total_steps=250, warmup_steps=100, hidden_sizes=(32, 32), batch_size=64, buffer_size=250)
    rows6, state6, _ = _run(problem, 6, 0, config, seed_block=2)
    rows2, state2, _ = _run(problem, 2, 2, config)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip([r for r in rows6 if r["seed"] in (2, 3)]) == strip(rows2)
    for a, b in zip(jax.tree.leaves(state6.critic.params), jax.tree.leaves(state2.critic.params)):
        np.testing.assert_array_equal(np.asarray(a)[:, 2:4], np.asarray(b))


def test_seed_block_must_divide_the_seeds():
    problem = build_problem("pendulum", {"max_steps_in_episode": 50})
    with pytest.raises(ValueError, match="seed_block=4 must be 0 or divide seeds=6"):
        Runner(sac.make(TINY, problem), problem, default_hparams(get_algorithm("sac"), TINY),
               RunSettings(num_seeds=6, seed_block=4, progress=False, checkpoint=False))
