"""MOORL: the meta-step (eta_meta = 1, K = 1 is alternating SAC; the step is exactly eta_meta of the inner
change), a run with a traced eta_meta sweep that compiles once, and (slow) learning on Pendulum
medium-replay against SAC from scratch."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import _sac_core, moorl, sac
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.runner import Runner, RunSettings
from hybrid_rl.types import Transition

TINY = dict(hidden_sizes=(16, 16), batch_size=8, buffer_size=100)


def _random_transitions(key, n, batch_shape=None):
    k = jax.random.split(key, 4)
    shape = (n,) if batch_shape is None else batch_shape
    return Transition(
        obs=jax.random.normal(k[0], shape + (3,)), action=jax.random.uniform(k[1], shape + (1,), minval=-1, maxval=1),
        reward=jax.random.normal(k[2], shape), next_obs=jax.random.normal(k[3], shape + (3,)),
        terminated=jnp.zeros(shape, bool), truncated=jnp.zeros(shape, bool),
    )


@pytest.fixture(scope="module")
def setup():
    problem = build_problem("pendulum", {"max_steps_in_episode": 20}, dataset=_random_transitions(jax.random.key(0), 64))
    config = moorl.Config(total_steps=40, **TINY)
    agent = moorl.make(config, problem)
    state = jax.jit(agent.init)(jax.random.key(1), default_hparams(get_algorithm("moorl"), config))
    return problem, config, state


def _allclose_trees(a, b, **kw):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_eta_one_k_one_is_the_alternating_sac_update(setup, layer_norm):
    problem, config, state = setup
    config = dataclasses.replace(config, inner_steps=1, critic_layer_norm=layer_norm)
    if layer_norm != setup[1].critic_layer_norm:
        state = jax.jit(moorl.make(config, problem).init)(jax.random.key(1), default_hparams(get_algorithm("moorl"), config))
    # Bit for bit with the plain critic; with LayerNorm the two separately compiled programs may round a
    # normalisation reduction differently (seen: one weight off by 1 ulp), so equality is to float32 rounding.
    exact = dict(rtol=0, atol=0) if not layer_norm else dict(rtol=1e-6, atol=1e-9)
    key = jax.random.key(7)
    batch = _random_transitions(jax.random.key(3), 8)
    target_entropy = -1.0

    meta, _ = jax.jit(lambda s: moorl.meta_update(s, key[None], jax.tree.map(lambda x: x[None], batch), 1.0,
                                                  target_entropy, config))(state)

    @jax.jit
    def alternating_sac(s):  # SAC's own pieces, the same key split: critic (+ Polyak), then actor and alpha
        k_critic, k_actor = jax.random.split(key)
        s, _ = _sac_core.update_critic(s, k_critic, batch, config)
        s, _ = _sac_core.update_actor_and_temperature(s, k_actor, batch.obs, target_entropy, config)
        return s

    plain = alternating_sac(state)
    _allclose_trees(meta.actor.params, plain.actor.params, **exact)
    _allclose_trees(meta.critic.params, plain.critic.params, **exact)
    _allclose_trees(meta.target_critic_params, plain.target_critic_params, rtol=1e-6, atol=1e-7)
    _allclose_trees(meta.temperature.params, plain.temperature.params, **exact)
    _allclose_trees(meta.actor.opt_state, plain.actor.opt_state, **exact)


def test_meta_step_moves_parameters_by_exactly_eta_of_the_inner_change(setup):
    problem, config, state = setup
    config = dataclasses.replace(config, inner_steps=2)
    keys = jax.random.split(jax.random.key(11), 2)
    batches = _random_transitions(jax.random.key(5), 0, batch_shape=(2, 8))
    step = jax.jit(lambda s, eta: moorl.meta_update(s, keys, batches, eta, -1.0, config))
    adapted, _ = step(state, 1.0)  # eta = 1: the meta-parameters become the K-step adapted ones
    moved, metrics = step(state, 0.3)
    for name in ("actor", "critic"):
        meta_p, adapted_p, moved_p = (getattr(s, name).params for s in (state, adapted, moved))
        expected = jax.tree.map(lambda m, a: m + 0.3 * (a - m), meta_p, adapted_p)
        _allclose_trees(moved_p, expected, rtol=1e-5, atol=1e-7)
        change = jax.tree.map(lambda a, m: a - m, adapted_p, meta_p)
        assert max(float(jnp.abs(c).max()) for c in jax.tree.leaves(change)) > 1e-4  # the inner loop did move
    # Targets follow theta_meta (target_update="meta"): one Polyak step toward the new critic.
    tau = state.hparams["tau"]
    _allclose_trees(moved.target_critic_params,
                    jax.tree.map(lambda t, c: (1 - tau) * t + tau * c, state.target_critic_params, moved.critic.params),
                    rtol=1e-5, atol=1e-7)
    assert float(metrics["meta_step_norm"]) > 0


def test_run_sweeps_traced_eta_meta_with_one_compile(setup):
    problem, _, _ = setup
    config = moorl.Config(total_steps=40, inner_steps=2, **TINY)
    spec = get_algorithm("moorl")
    traces = []
    base = spec.make(config, problem)
    (phase,) = base.phases
    counted = dataclasses.replace(phase, iteration=lambda s: (traces.append(1), phase.iteration(s))[1])
    runner = Runner(dataclasses.replace(base, phases=(counted,)), problem, default_hparams(spec, config),
                    RunSettings(num_seeds=2, num_evals=2, eval_episodes=0, progress=False, checkpoint=False,
                                hp_grid={"eta_meta": [0.5, 1.0]}))
    state, summary = runner.run()
    assert len(traces) == 1  # one trace for the 2 x 2 grid of (eta_meta, seed) and both chunks
    assert set(summary) == {"0", "1"} and all(np.isfinite(r["critic_loss"]) for r in runner.rows)
    first = [r for r in runner.rows if r["chunk"] == 0]
    assert all(r["offline_task"] > 0.5 for r in first)  # offline only until the online buffer holds a batch
    assert int(state.buffer.size[0, 0]) == 40 and summary["0"]["grad_steps"] == 80
    w = np.asarray(state.actor.params["params"]["MLP_0"]["Dense_0"]["kernel"])
    assert not np.allclose(w[0, 0], w[1, 0])  # different eta_meta, different parameters
    with pytest.raises(ValueError, match="buffer_choice"):
        moorl.make(dataclasses.replace(config, buffer_choice="bogus"), problem)
    with pytest.raises(ValueError, match="needs an offline dataset"):
        moorl.make(config, build_problem("pendulum"))


@pytest.mark.slow
def test_moorl_on_pendulum_medium_replay_beats_sac_from_scratch_over_10k_steps():
    """4 seeds each, 10k online env steps. SAC from scratch has also swung the pendulum up by 10k steps on
    some seeds, so the test compares the mean evaluation return over the run (evaluations at 2.5k, 5k,
    7.5k and 10k steps): the offline data has to make MOORL learn sooner."""
    from experiments.dataset_builder import get_or_build_dataset

    path = get_or_build_dataset("pendulum", "medium-replay", 20_000, data_dir="data")
    common = dict(total_steps=10_000, hidden_sizes=(64, 64), batch_size=128)
    settings = RunSettings(num_seeds=4, num_evals=4, eval_episodes=5, progress=False, checkpoint=False)

    def mean_eval(name, config, problem):
        spec = get_algorithm(name)
        runner = Runner(spec.make(config, problem), problem, default_hparams(spec, config), settings)
        runner.run()
        rows = [r for r in runner.rows if r["phase"] == "online"]
        by_step = {}
        for r in rows:
            by_step.setdefault(r["env_steps"], []).append(r["eval_return"])
        return {k: float(np.mean(v)) for k, v in sorted(by_step.items())}

    moorl_curve = mean_eval("moorl", moorl.Config(**common), build_problem("pendulum", dataset=path))
    sac_curve = mean_eval("sac", sac.Config(warmup_steps=1_000, **common), build_problem("pendulum"))
    print("MOORL", moorl_curve, "SAC", sac_curve)
    assert np.mean(list(moorl_curve.values())) > np.mean(list(sac_curve.values())), (moorl_curve, sac_curve)
