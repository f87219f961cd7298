"""BC and RLPD on data from the scripted pendulum expert (written and read back in D4RL's layout)."""

import dataclasses
import pathlib
import re

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import bc, rlpd
from envs.scripted_experts import pendulum_expert
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.datasets import write_d4rl_hdf5
from hybrid_rl.datasets.rollout import rollout_d4rl
from hybrid_rl.runner import Runner, RunSettings


@pytest.fixture(scope="module")
def expert_file(tmp_path_factory):
    problem = build_problem("pendulum")
    data = rollout_d4rl(problem, pendulum_expert, jax.random.key(0), num_steps=8_000, num_envs=8)
    path = tmp_path_factory.mktemp("data") / "pendulum-expert.hdf5"
    write_d4rl_hdf5(path, data, {"ref_min_return": -1200.0, "ref_max_return": -150.0, "algorithm": "scripted"})
    return path


def _run(name, config, problem, seeds=2, num_evals=2):
    spec = get_algorithm(name)
    runner = Runner(spec.make(config, problem), problem, default_hparams(spec, config),
                    RunSettings(num_seeds=seeds, num_evals=num_evals, eval_episodes=5, progress=False))
    return runner.run()


def test_bc_loss_hand_computed():
    logits = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    loss = bc.bc_loss(None, lambda p, obs: distrax.Categorical(logits=logits), None, jnp.array([0, 2]), "categorical", 0.0)
    np.testing.assert_allclose(loss, -(np.log(0.5) + np.log(0.8)) / 2, rtol=1e-5)
    mse = bc.bc_loss(None, lambda p, obs: jnp.zeros((2, 1)), None, jnp.array([[0.5], [-1.0]]), "deterministic", 0.0)
    np.testing.assert_allclose(mse, (0.25 + 1.0) / 2, rtol=1e-6)


def test_bc_config_is_the_documented_one():
    """The docs' Config table lists exactly the Config's fields, in order: BC is plain maximum likelihood with
    Adam, with no weight-decay setting (no BC baseline here uses one)."""
    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "algorithms" / "bc.md").read_text()
    table = doc.split("## Config", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", table, flags=re.M)
    assert documented == [f.name for f in dataclasses.fields(bc.Config)]
    assert "weight_decay" not in documented


def test_dataset_is_loaded_in_agent_action_space(expert_file):
    problem = build_problem("pendulum", dataset=expert_file)
    assert problem.dataset.obs.shape == (8_000, 3)
    assert float(jnp.abs(problem.dataset.action).max()) <= 1.0  # torque in [-2, 2] mapped to [-1, 1]
    assert problem.reference_returns() == (-1200.0, -150.0)


def test_bc_recovers_the_experts_return(expert_file):
    problem = build_problem("pendulum", dataset=expert_file)
    config = bc.Config(num_steps=3_000, hidden_sizes=(64, 64), lr=1e-3)
    _, summary = _run("bc", config, problem)
    final = summary["0"]["final_eval_return_mean"]
    assert final > -400, summary  # the expert gets about -170; a random policy about -1200
    assert "final_normalized_score_mean" in summary["0"]


def test_rlpd_runs_with_symmetric_sampling(expert_file):
    problem = build_problem("pendulum", {"max_steps_in_episode": 50}, dataset=expert_file)
    config = rlpd.Config(total_steps=200, warmup_steps=100, utd=2, num_critics=4, hidden_sizes=(16, 16),
                         batch_size=16, buffer_size=200)
    state, summary = _run("rlpd", config, problem, num_evals=1)
    assert state.critic.params["params"]["VmapQNetwork_0"]["MLP_0"]["Dense_0"]["kernel"].shape[:2] == (1, 2)
    assert np.isfinite(summary["0"]["final_eval_return_mean"])
    with pytest.raises(ValueError, match="needs an offline dataset"):
        rlpd.make(config, build_problem("pendulum"))


@pytest.mark.slow
def test_rlpd_with_expert_data_beats_sac_early(expert_file):
    """With expert data, RLPD swings the pendulum up within 4k env steps; SAC from scratch does not."""
    from algorithms import sac

    common = dict(total_steps=4_000, warmup_steps=1_000, hidden_sizes=(64, 64), batch_size=128)
    problem = build_problem("pendulum", dataset=expert_file)
    _, with_data = _run("rlpd", rlpd.Config(utd=4, num_critics=4, **common), problem, seeds=2)
    _, scratch = _run("sac", sac.Config(**common), build_problem("pendulum"), seeds=2)
    r_rlpd, r_sac = with_data["0"]["final_eval_return_mean"], scratch["0"]["final_eval_return_mean"]
    print("RLPD", r_rlpd, "SAC", r_sac)
    assert r_rlpd > -500 and r_rlpd > r_sac + 200
