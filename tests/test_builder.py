"""The dataset builder: recipes and their hashes, D4RL-layout files for each kind, the cache, and that the
data are good enough to learn from (BC on scripted cartpole expert data reaches the expert's return), and
that the scripted experts ``auto`` uses for mountaincar_continuous and reacher beat random by a clear margin.

Fast tests share one data dir (module fixture) so the builder's in-process cache compiles the cartpole
evaluation and rollout programs once.
"""

import dataclasses
import json

import jax
import numpy as np
import pytest

from experiments import dataset_builder as B
from hybrid_rl.datasets import episode_returns, load_d4rl_hdf5, qlearning_dataset

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
SIZE = 5000  # 10 streams of one full cartpole episode (500 steps) each
QUIET = None  # log=None: no progress lines in test output


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


def _build(data_dir, kind, size=SIZE, **options):
    return B.get_or_build_dataset("cartpole", kind, size, data_dir=data_dir, log=QUIET, eval_episodes=50, **options)


# ----------------------------------------------------------------------------------------------------
# Recipes
# ----------------------------------------------------------------------------------------------------


def test_recipe_hash_is_stable_and_names_the_file(tmp_path):
    a = B.DatasetRecipe("cartpole", "expert", 1000)
    b = B.DatasetRecipe(env="cartpole", kind="expert", size=1000, policy="scripted", env_kwargs={})
    assert a == b and B.recipe_hash(a) == B.recipe_hash(b)
    # A fixed value: if this changes, existing caches silently miss. Change it only with BUILDER_VERSION.
    assert B.recipe_hash(a) == "e97582cc"
    assert B.dataset_path(a, tmp_path) == tmp_path / "cartpole-expert-1000-e97582cc.hdf5"
    # Dict order of env kwargs does not matter.
    k1 = B.DatasetRecipe("pendulum", "medium", 10, policy="scripted", env_kwargs={"max_steps_in_episode": 100, "g": 9.0})
    k2 = B.DatasetRecipe("pendulum", "medium", 10, policy="scripted", env_kwargs={"g": 9.0, "max_steps_in_episode": 100})
    assert B.recipe_hash(k1) == B.recipe_hash(k2)


def test_recipe_hash_changes_with_every_field():
    cart = B.DatasetRecipe("cartpole", "expert", 1000)
    sac = B.DatasetRecipe("pendulum", "expert", 1000)  # auto -> sac, with the env's SAC budget filled in
    assert sac.policy == "sac" and sac.train_steps == B.sac_budget("pendulum")[0]
    changed = {
        "env": dataclasses.replace(cart, env="cartpole_gravity_2x"),
        "kind": dataclasses.replace(cart, kind="medium"),
        "size": dataclasses.replace(cart, size=1001),
        "seed": dataclasses.replace(cart, seed=1),
        "env_kwargs": dataclasses.replace(cart, env_kwargs={"max_steps_in_episode": 200}),
        "policy": dataclasses.replace(sac, policy="scripted", train_steps=None, warmup_steps=None,
                                      hidden_sizes=None, num_checkpoints=None),
        "deterministic": dataclasses.replace(cart, deterministic=True),
        "expert_epsilon": dataclasses.replace(cart, expert_epsilon=0.1),
        "medium_fraction": dataclasses.replace(cart, medium_fraction=0.5),
        "num_envs": dataclasses.replace(cart, num_envs=4),
        "eval_episodes": dataclasses.replace(cart, eval_episodes=10),
        "max_eval_steps": dataclasses.replace(cart, max_eval_steps=100),
        "train_steps": dataclasses.replace(sac, train_steps=12345),
        "warmup_steps": dataclasses.replace(sac, warmup_steps=500),
        "hidden_sizes": dataclasses.replace(sac, hidden_sizes=(32, 32)),
        "num_checkpoints": dataclasses.replace(sac, num_checkpoints=7),
    }
    assert set(changed) == {f.name for f in dataclasses.fields(B.DatasetRecipe)}, "a new field needs a case here"
    for name, recipe in changed.items():
        base = sac if name in ("policy", "train_steps", "warmup_steps", "hidden_sizes", "num_checkpoints") else cart
        assert B.recipe_hash(recipe) != B.recipe_hash(base), name
    # The trained policy is shared by kinds and sizes, not by training budgets.
    assert B.policy_cache_path(sac, "d") == B.policy_cache_path(dataclasses.replace(sac, kind="medium", size=7), "d")
    assert B.policy_cache_path(sac, "d") != B.policy_cache_path(changed["train_steps"], "d")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(env="no_such_env", kind="expert", size=10), "unknown env"),
        (dict(env="cartpole", kind="medium_expert", size=10), "unknown kind"),
        (dict(env="cartpole", kind="expert", size=0), "size"),
        (dict(env="cartpole", kind="expert", size=10, policy="sac"), "does not apply"),
        (dict(env="cartpole", kind="expert", size=10, train_steps=100), "only apply to policy=sac"),
        (dict(env="acrobot", kind="expert", size=10), "no policy source"),
        (dict(env="pendulum", kind="expert", size=10, train_steps=100, warmup_steps=100), "must exceed"),
    ],
)
def test_bad_recipes_fail_with_one_line(kwargs, words):
    with pytest.raises(B.DatasetRecipeError) as err:
        B.DatasetRecipe(**kwargs)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_policy_source_registry_plugs_in_and_resolves_auto():
    assert B.available_policies("pendulum") == ["sac", "scripted"]
    assert B.available_policies("cartpole_gravity_2x") == ["scripted"]  # the real env is nominal cartpole
    assert B.available_policies("comblock_logits")[0] == "oracle"
    assert B.available_policies("acrobot") == []
    assert B.available_policies("riverswim") == ["oracle"]
    assert B.available_policies("riverswim_switching") == []  # non-stationary: not the finite-MDP oracle
    # SAC learns to do nothing on mountaincar_continuous: auto takes the scripted experts there and on
    # reacher (exact names only); the discrete mountaincar and the sim/real variant are unaffected.
    assert B.available_policies("mountaincar_continuous") == ["scripted", "sac"]
    assert B.available_policies("reacher") == ["scripted", "sac"]
    assert B.DatasetRecipe("reacher", "medium", 10).policy == "scripted"
    assert B.available_policies("mountaincar") == []
    assert B.available_policies("mountaincar_continuous_power_0.5x") == ["sac", "scripted"]
    saved = dict(B._SOURCES["oracle"])
    try:
        B.register_policy_source("acrobot", lambda *a: None)
        assert B.available_policies("acrobot") == ["oracle"]
        assert B.DatasetRecipe("acrobot", "expert", 10).policy == "oracle"
    finally:
        B._SOURCES["oracle"].clear()
        B._SOURCES["oracle"].update(saved)


# ----------------------------------------------------------------------------------------------------
# Building cartpole datasets (scripted expert)
# ----------------------------------------------------------------------------------------------------


def test_cartpole_kinds_build_load_and_order(data_dir):
    means = {}
    for kind in ("random", "medium", "expert"):
        path = _build(data_dir, kind)
        raw = load_d4rl_hdf5(path, obs_dim=4, action_dim=2)
        for key in D4RL_KEYS:
            assert key in raw and len(raw[key]) == SIZE, key
        assert raw["observations"].shape == raw["next_observations"].shape == (SIZE, 4)
        assert set(np.unique(raw["actions"])) <= {0.0, 1.0}
        for key in ("ref_min_return", "ref_max_return", "algorithm", "kind", "env", "recipe"):
            assert f"metadata/{key}" in raw, key
        assert raw["metadata/kind"] == kind and raw["metadata/env"] == "cartpole"
        recipe = json.loads(raw["metadata/recipe"])
        assert recipe["kind"] == kind and recipe["policy"] == "scripted" and recipe["size"] == SIZE
        lo, hi = float(raw["metadata/ref_min_return"]), float(raw["metadata/ref_max_return"])
        assert 10 < lo < 40 and hi == 500.0  # uniform random ~22; the scripted expert never drops the pole
        # Every stream ends with a terminal or a timeout, so qlearning_dataset keeps every step.
        assert len(qlearning_dataset(raw)["rewards"]) == SIZE
        assert raw["timeouts"][-1] or raw["terminals"][-1]
        means[kind] = float(raw["metadata/mean_episode_return"])
    assert means["random"] < means["medium"] < means["expert"] == 500.0
    normalized = (means["medium"] - lo) / (hi - lo)
    assert 0.15 < normalized < 0.55, means  # about a third of the way from random to expert


def test_dataset_loads_as_problem_with_refs(data_dir):
    from experiments.catalog import build_problem

    path = _build(data_dir, "expert")
    problem = build_problem("cartpole", dataset=path)
    assert problem.dataset.reward.shape == (SIZE,)
    lo, hi = problem.reference_returns()
    assert hi == 500.0 and lo < 40


def test_cache_hit_returns_the_same_file_without_building(data_dir, monkeypatch):
    path = _build(data_dir, "expert")
    stamp = path.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt a cached dataset")

    monkeypatch.setattr(B, "build_dataset", fail)
    assert _build(data_dir, "expert") == path
    assert path.stat().st_mtime_ns == stamp
    with pytest.raises(AssertionError, match="rebuilt"):  # another recipe is another file
        _build(data_dir, "expert", seed=1)


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HYBRID_RL_DATA_DIR", str(tmp_path / "elsewhere"))
    recipe = B.DatasetRecipe("cartpole", "expert", 10)
    assert B.dataset_path(recipe).parent == tmp_path / "elsewhere"
    monkeypatch.delenv("HYBRID_RL_DATA_DIR")
    assert B.dataset_path(recipe).parent == B.pathlib.Path("data")


def test_medium_expert_is_half_medium_then_half_expert(data_dir):
    size = 2 * SIZE  # halves of SIZE reuse the compiled rollout
    raw = load_d4rl_hdf5(_build(data_dir, "medium-expert", size=size))
    assert len(raw["rewards"]) == size and int(raw["metadata/medium_transitions"]) == SIZE
    first = {k: raw[k][:SIZE] for k in ("rewards", "terminals", "timeouts")}
    second = {k: raw[k][SIZE:] for k in ("rewards", "terminals", "timeouts")}
    assert np.all(episode_returns(second) == 500.0)  # the expert half: every episode is a full 500
    assert episode_returns(first).mean() < 400.0  # the medium half drops the pole


def test_cli_prints_path_counts_and_refs(data_dir, capsys):
    from experiments import make_dataset

    path = _build(data_dir, "expert")
    rc = make_dataset.main(
        ["env=cartpole", "kind=expert", f"size={SIZE}", f"data_dir={data_dir}", "eval_episodes=50"]
    )
    out = capsys.readouterr().out
    assert rc == 0 and str(path) in out and f"transitions: {SIZE}" in out
    assert "mean episode return: 500.000" in out and "ref_max_return (expert): 500.000" in out
    for argv, words in [
        (["env=nope", "kind=expert", "size=10"], "unknown env"),
        (["env=cartpole", "kind=best", "size=10"], "unknown kind"),
        (["env=cartpole", "kind=expert", "size=10", "colour=red"], "unknown key"),
        (["env=cartpole", "kind=expert"], "missing size"),
    ]:
        assert make_dataset.main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err


def test_bc_on_cartpole_expert_data_reaches_the_expert(data_dir):
    """The data are learnable: BC on 5k expert transitions gets >= 0.9 x the expert's return."""
    from experiments.catalog import build_problem, default_hparams, get_algorithm
    from hybrid_rl.runner import Runner, RunSettings

    path = _build(data_dir, "expert")
    problem = build_problem("cartpole", dataset=path)
    spec = get_algorithm("bc")
    config = spec.config_cls(num_steps=2000, hidden_sizes=(64, 64), lr=1e-3)
    agent = spec.make(config, problem)
    settings = RunSettings(num_seeds=1, num_evals=1, eval_episodes=10, checkpoint=False, progress=False)
    _, summary = Runner(agent, problem, default_hparams(spec, config), settings).run()
    expert = problem.reference_returns()[1]
    assert summary["0"]["final_eval_return_mean"] >= 0.9 * expert, summary


# ----------------------------------------------------------------------------------------------------
# Scripted experts that auto takes before SAC (mountaincar_continuous, reacher)
# ----------------------------------------------------------------------------------------------------


def _expert_and_random_returns(env, expert, num_episodes, seed=0):
    """(returns, lengths) of the expert and of the uniform random policy, same key, one jitted program."""
    from experiments.catalog import build_problem
    from hybrid_rl.evaluation import evaluate_policy

    problem = build_problem(env)
    space = problem.env.action_space(problem.env_params)

    def run(key):
        return [
            evaluate_policy(act, problem.env, problem.env_params, key, num_episodes, problem.max_episode_steps)
            for act in (lambda obs, k: expert(obs, k), lambda obs, k: space.sample(k))
        ]

    return jax.tree.map(np.asarray, jax.jit(run)(jax.random.key(seed)))


def test_mountaincar_continuous_expert_reaches_the_goal_every_time():
    from envs.scripted_experts import mountaincar_continuous_expert

    (ret, length), (rand_ret, rand_length) = _expert_and_random_returns(
        "mountaincar_continuous", mountaincar_continuous_expert, 8
    )
    # The goal ends the episode with +100; each pushing step costs 0.1 * 0.45^2 = 0.02, so an episode of
    # at most 250 steps returns at least 95 (measured: 176-199 steps from every start, return ~97).
    assert np.all(length <= 250) and np.all(ret >= 95.0), (length, ret)
    # Uniform random force: never at the goal, 999 steps at 0.1 * E[a^2] = 1/30 each, i.e. about -33.3.
    assert np.all(rand_length == 999) and np.all((rand_ret > -40.0) & (rand_ret < -27.0)), rand_ret


def test_reacher_expert_far_above_random_and_settles_on_a_goal():
    import jax.numpy as jnp
    from gymnax.environments.misc.reacher import EnvState

    from envs.scripted_experts import reacher_expert
    from experiments.catalog import build_problem

    (ret, _), (rand_ret, _) = _expert_and_random_returns("reacher", reacher_expert, 64)
    # Reward exp(-|tip - goal|^2) per step for 100 steps: measured ~73.5 for the expert (open-loop
    # trajectory optimisation ~74.7) and ~15 for random actions, over 1024 episodes.
    assert ret.mean() > 65.0 and rand_ret.mean() < 25.0 and ret.mean() - rand_ret.mean() > 45.0, (ret.mean(), rand_ret.mean())
    # By hand: links at angles (0, 0) at rest, goal (1, 1). Inverse kinematics gives (pi/2, 0) or (0, pi/2),
    # equally fast; it takes the first: joint 1 turns pi/2 at |acceleration| <= 1, at least 2 sqrt(pi/2)
    # = 2.5 s = 50 steps, then holds still while joint 2 never moves.
    problem = build_problem("reacher")
    env, params = problem.env, problem.env_params
    state = EnvState(angles=jnp.zeros(2), angle_vels=jnp.zeros(2), goal_xy=jnp.array([1.0, 1.0]), time=0)

    def step(state, key):
        _, state, reward, *_ = env.step_env(key, state, reacher_expert(env.get_obs(state, params)), params)
        return state, reward

    final, rewards = jax.jit(lambda s: jax.lax.scan(step, s, jax.random.split(jax.random.key(0), 100)))(state)
    assert np.all(np.asarray(rewards)[60:] > 0.99), rewards  # tip within 0.1 of the goal from step 60 on
    np.testing.assert_allclose(np.asarray(final.angles), [np.pi / 2, 0.0], atol=0.01)


# ----------------------------------------------------------------------------------------------------
# SAC-trained pendulum datasets (slow: trains SAC)
# ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sac_pendulum_kinds_are_ordered_and_share_one_training_run(tmp_path, monkeypatch):
    opts = dict(data_dir=tmp_path, log=QUIET, train_steps=10_000, warmup_steps=1_000, num_checkpoints=40, eval_episodes=50)
    means, refs = {}, None
    for kind in ("medium", "expert", "random", "medium-replay"):
        raw = load_d4rl_hdf5(B.get_or_build_dataset("pendulum", kind, 4000, **opts), obs_dim=3, action_dim=1)
        assert raw["metadata/algorithm"] == ("uniform-random" if kind == "random" else "SAC")
        refs = refs or (float(raw["metadata/ref_min_return"]), float(raw["metadata/ref_max_return"]))
        assert refs == (float(raw["metadata/ref_min_return"]), float(raw["metadata/ref_max_return"]))
        means[kind] = float(raw["metadata/mean_episode_return"])
        if kind == "medium-replay":
            # The buffer up to the medium checkpoint (its most recent whole 200-step episodes when it holds
            # more than ``size``), with actions back in env units (torque in [-2, 2]).
            steps, n = int(raw["metadata/medium_checkpoint_env_steps"]), len(raw["rewards"])
            assert n == steps if steps <= 4000 else (n <= 4000 and (steps - n) % 200 == 0), (n, steps)
            assert np.abs(raw["actions"]).max() > 1.0 and np.abs(raw["actions"]).max() <= 2.0
        if kind == "medium":
            # Later kinds reuse the cached SAC run instead of training again.
            monkeypatch.setattr(B, "_train_sac", lambda *a, **k: pytest.fail("trained SAC twice"))
            B._CONTEXTS.clear()
    assert refs[0] < -900 and refs[1] > -400, refs
    assert means["random"] < means["medium"] < means["expert"], means
    assert (means["medium"] - refs[0]) / (refs[1] - refs[0]) < 0.7, means


def test_builds_lower_with_jax_threefry_so_recorded_recipes_keep_their_content(monkeypatch, tmp_path):
    # The project's unrolled CPU Threefry gives the same bits but other fused kernels around them, and a SAC
    # run (hence a recipe's file) then ends elsewhere; the builder pins JAX's own lowering for every build.
    from jax.extend.random import threefry2x32_p

    from experiments import dataset_builder
    from hybrid_rl import threefry_cpu

    if not threefry_cpu.INSTALLED:
        pytest.skip("the project's CPU lowering is off (HYBRID_RL_THREEFRY_CPU=rolled or not on CPU)")
    seen = []
    real = dataset_builder._build_dataset

    def spy(*args, **kwargs):
        seen.append(threefry_cpu._cpu_rules()[threefry2x32_p] is threefry_cpu._JAX_RULE)
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset_builder, "_build_dataset", spy)
    dataset_builder.get_or_build_dataset("pendulum", "random", 200, data_dir=tmp_path, log=None)
    assert seen == [True]
    assert threefry_cpu._cpu_rules()[threefry2x32_p] is not threefry_cpu._JAX_RULE  # ours again afterwards
