"""``Problem.require_dataset``: the one check behind every algorithm that needs offline data, and its message."""

import jax.numpy as jnp
import pytest

from algorithms import ALGORITHMS
from experiments.catalog import build_problem
from hybrid_rl.types import Transition

# An env each data-requiring algorithm accepts, so that the missing dataset is what it reports (the sim/real
# algorithms need a pair env).
PROBLEM_OF = {"h2o": "pendulum_gravity_2x", "h2o_naive": "pendulum_gravity_2x", "darc": "pendulum_gravity_2x",
              "rlpd_sim": "pendulum_gravity_2x"}


def _transitions(n=4):
    return Transition(obs=jnp.zeros((n, 3)), action=jnp.zeros((n, 1)), reward=jnp.zeros(n),
                      next_obs=jnp.zeros((n, 3)), terminated=jnp.zeros(n, bool), truncated=jnp.zeros(n, bool))


def test_returns_the_dataset_when_there_is_one():
    data = _transitions()
    assert build_problem("pendulum", dataset=data).require_dataset("anything") is data


def test_message_names_who_what_and_how_to_get_data():
    problem = build_problem("pendulum")
    with pytest.raises(ValueError) as error:
        problem.require_dataset("algo_x with offline_fraction=0.5", example_kind="expert", hint="or run algo=y")
    message = str(error.value)
    assert message == (
        "algo_x with offline_fraction=0.5 needs an offline dataset: pass dataset=<path to a D4RL-layout .hdf5> or "
        "a builder kind (dataset=expert), or make a file with `python -m experiments.make_dataset` (or run algo=y)"
    )
    with pytest.raises(ValueError, match=r"^algo_x needs the real data: pass dataset=.*\(dataset=medium\).*make_dataset`$"):
        problem.require_dataset("algo_x", what="the real data")


@pytest.mark.parametrize("name", [name for name, spec in ALGORITHMS.items() if spec.dataset == "required"])
def test_every_algorithm_that_requires_data_says_so_in_one_line(name):
    spec = ALGORITHMS[name]
    with pytest.raises(ValueError) as error:
        spec.make(spec.config_cls(), build_problem(PROBLEM_OF.get(name, "pendulum")))
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{name} needs ")
    assert "dataset=<path to a D4RL-layout .hdf5>" in message and "python -m experiments.make_dataset" in message
