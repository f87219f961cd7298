"""Every algorithm in the table runs two iterations through the real runner on a tiny problem, 2 seeds.

The problem and config come from ``experiments/smoke.py``; the checks are the runner's contract: finite
metrics for every seed, the seeds differ, and an evaluating algorithm reports finite returns.
"""

import dataclasses
import math

import numpy as np
import pytest

from experiments.catalog import default_hparams, list_algorithms, make_agent
from experiments.smoke import smoke_config, smoke_problem
from hybrid_rl.runner import Runner, RunSettings

ALGORITHMS = sorted(list_algorithms())


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_algorithm_runs_two_iterations(name, tmp_path):
    spec = list_algorithms()[name]
    problem = smoke_problem(spec)
    config = smoke_config(spec, problem)
    agent = make_agent(spec, config, problem)
    settings = RunSettings(num_seeds=2, num_evals=1, eval_episodes=2 if spec.evaluation else 0,
                           checkpoint=False, progress=False)
    runner = Runner(agent, problem, default_hparams(spec, config), settings, out_dir=tmp_path, log_fn=lambda _: None)
    state, summary = runner.run()
    entry = summary["0"]
    assert entry["num_seeds"] == 2
    finals = entry["final_metrics"]
    assert finals, f"{name} logged no metrics"
    for key, value in finals.items():
        assert not (isinstance(value, float) and math.isinf(value)), f"{name}: {key} is infinite"
    if spec.evaluation:
        assert np.isfinite(entry["final_eval_return_mean"]), name


BFLOAT16_ALGORITHMS = sorted(name for name, spec in list_algorithms().items()
                             if "matmul_dtype" in {f.name for f in dataclasses.fields(spec.config_cls)})


def test_bfloat16_covers_the_sac_family_iql_and_td3_bc():
    assert {"sac", "rlpd", "cql", "cal_ql", "moorl", "h2o", "darc", "iql", "td3_bc"} <= set(BFLOAT16_ALGORITHMS)


@pytest.mark.slow
@pytest.mark.parametrize("name", BFLOAT16_ALGORITHMS)
def test_every_bfloat16_algorithm_runs_with_vmapped_seeds(name, tmp_path):
    # XLA's CPU runtime runs a bfloat16 x bfloat16 -> float32 product inside a fusion but not as a standalone
    # batched dot; vmapped seeds make batched dots, so each algorithm's whole program is run here.
    spec = list_algorithms()[name]
    problem = smoke_problem(spec)
    config = dataclasses.replace(smoke_config(spec, problem), matmul_dtype="bfloat16")
    agent = make_agent(spec, config, problem)
    settings = RunSettings(num_seeds=2, num_evals=1, eval_episodes=2, checkpoint=False, progress=False)
    runner = Runner(agent, problem, default_hparams(spec, config), settings, out_dir=tmp_path, log_fn=lambda _: None)
    _, summary = runner.run()
    assert np.isfinite(summary["0"]["final_eval_return_mean"]), name
