"""The runner: pure train == host-driven run, seeds independent and reproducible, a traced
hyper-parameter grid compiles once, NaN guard, exact resume after a kill, multi-device == one device."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import sac
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.algorithm import Agent, Phase
from hybrid_rl.runner import (
    NonFiniteLossError,
    Runner,
    RunSettings,
    hparam_grid,
    init_grid,
    init_one_by_one,
    make_seed_sweep,
    make_train,
    plan_phases,
)

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = sac.Config(total_steps=300, warmup_steps=100, hidden_sizes=(16, 16), batch_size=16, buffer_size=300)
SPEC = get_algorithm("sac")


@pytest.fixture(scope="module")
def pendulum():
    return build_problem("pendulum", {"max_steps_in_episode": 50})


def _runner(problem, out_dir=None, config=TINY, **settings):
    settings = {"num_seeds": 2, "num_evals": 4, "eval_episodes": 2, "progress": False, **settings}
    agent = sac.make(config, problem)
    return Runner(agent, problem, default_hparams(SPEC, config), RunSettings(**settings), out_dir=out_dir)


def test_plan_rounds_phases_up_to_whole_chunks():
    agent = Agent(init=None, phases=(Phase("a", None, 10), Phase("b", None, 7), Phase("w", None, 5, num_evals=1)), policy=None)
    plans = plan_phases(agent, num_evals=3)
    assert [(p.chunk_length, p.num_chunks) for p in plans] == [(4, 3), (3, 3), (5, 1)]


def test_seeds_initialised_one_by_one_equal_the_vmapped_initialisation_bit_for_bit(pendulum):
    """``init_one_by_one`` (lax.map: the jaxlib CPU deadlock workaround) changes no number."""
    config = sac.Config(hidden_sizes=(64, 64), total_steps=300, warmup_steps=100)
    agent = sac.make(config, pendulum)
    hp, keys = default_hparams(SPEC, config), jax.random.split(jax.random.key(3), 3)
    vmapped = jax.jit(jax.vmap(agent.init, in_axes=(0, None)))(keys, hp)
    one_by_one = jax.jit(lambda ks: init_one_by_one(agent.init, ks, hp))(keys)
    for a, b in zip(jax.tree.leaves(vmapped.actor.params), jax.tree.leaves(one_by_one.actor.params)):
        np.testing.assert_array_equal(a, b)
    # A (point, seed) grid: point p, seed s is the same state as init(keys[s], hparams of point p).
    grid, _ = hparam_grid(hp, {"actor_lr": [1e-3, 3e-4]})
    states = jax.jit(lambda ks: init_grid(agent.init, ks, grid, 2))(keys)
    for p in range(2):
        point = jax.tree.map(lambda x: x[p], grid)
        expected = jax.jit(jax.vmap(agent.init, in_axes=(0, None)))(keys, point)
        for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(jax.tree.map(lambda x: x[p], states))):
            if not jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
                np.testing.assert_array_equal(a, b)


def test_seed_sweep_equals_vmapped_make_train(pendulum):
    agent = sac.make(TINY, pendulum)
    hp, keys = default_hparams(SPEC, TINY), jax.random.split(jax.random.key(0), 2)
    _, swept = jax.jit(make_seed_sweep(agent, pendulum, num_evals=2, eval_episodes=2))(keys, hp)
    _, vmapped = jax.jit(jax.vmap(make_train(agent, pendulum, num_evals=2, eval_episodes=2), in_axes=(0, None)))(keys, hp)
    for a, b in zip(jax.tree.leaves(swept), jax.tree.leaves(vmapped)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_pure_train_equals_host_run_and_seeds_differ(pendulum):
    runner = _runner(pendulum)
    state, _ = runner.run()
    returns_host = np.array([r["eval_return"] for r in runner.rows]).reshape(-1, 2)

    agent = sac.make(TINY, pendulum)
    train = make_train(agent, pendulum, num_evals=4, eval_episodes=2)
    keys = jax.random.split(jax.random.key(0), 2)
    pure_state, metrics = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, default_hparams(SPEC, TINY))
    returns_pure = np.concatenate([np.asarray(m["eval_return"]).T for m in metrics], axis=0)
    np.testing.assert_allclose(returns_host, returns_pure, rtol=1e-5, atol=1e-4)

    params = jax.tree.leaves(state.actor.params)[0]  # (hp, seed, ...)
    assert not np.allclose(params[0, 0], params[0, 1]), "two seeds share their initialisation"
    # Same seed, same numbers: two separately compiled programs (host-driven and pure) agree exactly.
    for a, b in zip(jax.tree.leaves(state.actor.params), jax.tree.leaves(pure_state.actor.params)):
        np.testing.assert_allclose(a[0], b, rtol=1e-5, atol=1e-6)  # host state has the (hparam point) axis


def test_hparam_grid_compiles_once_and_changes_results(pendulum):
    traces = {"n": 0}
    base = sac.make(TINY, pendulum)

    def counting(phase):
        def iteration(state):
            traces["n"] += 1
            return phase.iteration(state)

        return Phase(phase.name, iteration, phase.num_iterations, phase.env_steps_per_iteration,
                     phase.grad_steps_per_iteration, phase.num_evals)

    agent = Agent(base.init, tuple(counting(p) for p in base.phases), base.policy)
    settings = RunSettings(num_seeds=2, num_evals=2, eval_episodes=1, progress=False,
                           hp_grid={"actor_lr": [1e-2, 1e-4], "gamma": [0.9, 0.99]})
    runner = Runner(agent, pendulum, default_hparams(SPEC, TINY), settings)
    state, summary = runner.run()
    assert traces["n"] == 2  # one trace per phase, whatever the grid size (4 points x 2 seeds)
    assert len(summary) == 4
    lr = state.actor.opt_state.hyperparams["learning_rate"]
    np.testing.assert_allclose(lr[:, 0], [1e-2, 1e-2, 1e-4, 1e-4], rtol=1e-6)
    w = jax.tree.leaves(state.actor.params)[0]
    assert not np.allclose(w[0, 0], w[2, 0])  # same seed, different learning rate -> different params
    with pytest.raises(ValueError, match="not traced"):
        Runner(agent, pendulum, default_hparams(SPEC, TINY), RunSettings(hp_grid={"batch_size": [1, 2]}))


def test_nan_loss_is_a_clear_error():
    problem = build_problem("pendulum")

    def iteration(state):
        return state + 1.0, {"critic_loss": jnp.where(state >= 2.0, jnp.nan, 1.0)}

    agent = Agent(init=lambda key, hp: jnp.float32(0.0), phases=(Phase("offline", iteration, 6),), policy=None)
    runner = Runner(agent, problem, {}, RunSettings(num_seeds=2, num_evals=3, eval_episodes=0, progress=False))
    with pytest.raises(NonFiniteLossError, match="critic_loss became non-finite in phase 'offline'"):
        runner.run()


class _Killed(Exception):
    pass


def test_checkpoint_interval_saves_phase_ends_and_changes_no_number(pendulum, tmp_path):
    """With an interval longer than the run, only each phase's last chunk is saved (SAC: the one warm-up
    chunk and the last online chunk); the numbers are those of a run that saves after every chunk."""
    every = _runner(pendulum, tmp_path / "every")
    every.run()
    sparse = _runner(pendulum, tmp_path / "sparse", checkpoint_interval_s=1e9)
    sparse.run()
    steps = lambda run: sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())  # noqa: E731
    assert steps(tmp_path / "sparse") == [1, 5] and steps(tmp_path / "every") == [4, 5]  # max_to_keep=2
    assert [r["eval_return"] for r in sparse.rows] == [r["eval_return"] for r in every.rows]


def test_programs_compile_once_ahead_and_evaluation_is_shared_by_the_phases(pendulum):
    """One training program per phase and one evaluation program for both phases, all compiled ahead side by
    side and then used: the jitted fallbacks never compile (a type mismatch between phases would)."""
    runner = _runner(pendulum)
    runner.run()
    assert set(runner._compiled) == {("chunk", 0), ("chunk", 1), ("evaluate",)}
    assert runner._evaluate._cache_size() == 0 and all(c._cache_size() == 0 for c in runner._chunks)


def test_killed_run_resumes_to_identical_numbers(pendulum, tmp_path):
    full = _runner(pendulum, tmp_path / "full")
    full_state, _ = full.run()

    killed = _runner(pendulum, tmp_path / "killed")
    original_save = killed._save

    def save_then_die(step, state, progress):
        original_save(step, state, progress)
        if step == 3:
            raise _Killed()

    killed._save = save_then_die
    with pytest.raises(_Killed):
        killed.run()
    assert len({r["chunk"] for r in json.loads(json.dumps(killed.rows))}) == 3

    resumed = _runner(pendulum, tmp_path / "killed")
    resumed_state, _ = resumed.run(resume=True)
    assert [r["eval_return"] for r in resumed.rows] == [r["eval_return"] for r in full.rows]
    for a, b in zip(jax.tree.leaves(full_state.critic.params), jax.tree.leaves(resumed_state.critic.params)):
        np.testing.assert_array_equal(a, b)
    from hybrid_rl.logging import read_metrics_csv

    def without_timing(path):
        return [{k: repr(v) for k, v in row.items() if k != "seconds"} for row in read_metrics_csv(path)]

    assert without_timing(tmp_path / "killed" / "metrics.csv") == without_timing(tmp_path / "full" / "metrics.csv")


_MULTI_DEVICE_SCRIPT = """
import json, sys, jax
from algorithms import sac
from experiments.catalog import default_hparams, get_algorithm
from experiments.catalog import build_problem
from hybrid_rl.runner import RunSettings, Runner
cfg = sac.Config(total_steps=300, warmup_steps=100, hidden_sizes=(16, 16), batch_size=16, buffer_size=300)
problem = build_problem("pendulum", {"max_steps_in_episode": 50})
runner = Runner(sac.make(cfg, problem), problem, default_hparams(get_algorithm("sac"), cfg),
                RunSettings(num_seeds=4, num_evals=2, eval_episodes=2, progress=False))
state, _ = runner.run()
leaf = jax.tree.leaves(state.critic.params)[0]
print(json.dumps({"devices": len(jax.devices()), "sharded": runner.mesh is not None,
                  "returns": [r["eval_return"] for r in runner.rows],
                  "critic": leaf.reshape(leaf.shape[0] * leaf.shape[1], -1).sum(-1).tolist()}))
"""


def _run_script(devices):
    flags = f"--xla_force_host_platform_device_count={devices} --xla_cpu_multi_thread_eigen=false"
    env = {**os.environ, "XLA_FLAGS": flags, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", _MULTI_DEVICE_SCRIPT], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_seeds_sharded_over_devices_match_one_device():
    one, two = _run_script(1), _run_script(2)
    assert one["devices"] == 1 and not one["sharded"]
    assert two["devices"] == 2 and two["sharded"]
    np.testing.assert_allclose(one["returns"], two["returns"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(one["critic"], two["critic"], rtol=1e-4, atol=1e-4)
