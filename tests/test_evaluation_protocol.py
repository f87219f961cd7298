"""One evaluation protocol for every algorithm: the runner's ``deterministic`` request reaches each registered
algorithm's ``policy``, and a deterministic evaluation does not depend on the key (for a stochastic policy
it is repeatable across keys, while the sampled one is not)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.catalog import build_problem, default_hparams, list_algorithms
from hybrid_rl.algorithm import Agent, Phase
from hybrid_rl.runner import Runner, RunSettings, make_seed_sweep
from hybrid_rl.types import Transition


def _random_transitions(n: int, obs_dim: int = 3, action_dim: int = 1) -> Transition:
    k = jax.random.split(jax.random.key(0), 4)
    return Transition(
        obs=jax.random.normal(k[0], (n, obs_dim)),
        action=jax.random.uniform(k[1], (n, action_dim), minval=-1, maxval=1),
        reward=jax.random.normal(k[2], (n,)),
        next_obs=jax.random.normal(k[3], (n, obs_dim)),
        terminated=jnp.zeros((n,), bool),
        truncated=jnp.zeros((n,), bool).at[n // 2].set(True),
    )


_PENDULUM_DATA = ("pendulum", {"max_steps_in_episode": 20}, True)
_SIM_REAL = ("pendulum_gravity_2x", {"max_steps_in_episode": 20}, True)
_LOCK = ("comblock_logits", {"horizon": 3}, False)
_TABULAR = ("comblock_tabular", {"horizon": 3, "num_actions": 2}, False)
_LINEAR = ("linear_mdp", {"num_states": 4, "num_actions": 2, "dim": 3, "horizon": 3}, False)
_RIVERSWIM = ("riverswim", {}, False)

# (env, env kwargs, needs the random dataset) for every registered algorithm; a new algorithm must be added
# here (test_every_registered_algorithm_is_covered).
PROBLEMS = {
    "sac": ("pendulum", {"max_steps_in_episode": 20}, False),
    "ppo": ("pendulum", {"max_steps_in_episode": 20}, False),
    "rlpd": _PENDULUM_DATA, "bc": _PENDULUM_DATA, "cql": _PENDULUM_DATA, "iql": _PENDULUM_DATA,
    "cal_ql": _PENDULUM_DATA, "moorl": _PENDULUM_DATA,
    "h2o": _SIM_REAL, "h2o_naive": _SIM_REAL, "darc": _SIM_REAL, "sac_sim": _SIM_REAL, "rlpd_sim": _SIM_REAL,
    "hnpg": _LOCK, "npg": _LOCK, "hyq": _LOCK, "unified_pg": _LOCK, "td3_bc": _PENDULUM_DATA,
    "ucbvi": _TABULAR, "ucbvi_ent": _TABULAR, "demo_regularized": _TABULAR, "bc_tabular": _TABULAR,
    "demo_regularized_rlhf": _TABULAR, "optimistic_ac": _TABULAR,
    "demo_regularized_linear": _LINEAR, "optimistic_ac_linear": _LINEAR, "lsvi_ucb": _LINEAR,
    "ucrl2": _RIVERSWIM, "ucrl2_restarts": _RIVERSWIM, "sw_ucrl2": _RIVERSWIM, "rbocpd_ucrl2": _RIVERSWIM,
    "oracle_ucrl2": ("riverswim_switching", {}, False),
}

# Algorithms whose freshly initialised policy is visibly stochastic when sampled (a Gaussian or a softmax over
# actions). The others act greedily on a value estimate under both protocols (Hy-Q, LSVI-UCB, UCRL2 and its
# variants, UCBVI), or their policy after ``init`` (a behaviour clone of expert demonstrations drawn in
# ``init``) is already nearly deterministic at the start state.
STOCHASTIC = {"sac", "ppo", "rlpd", "bc", "cql", "iql", "cal_ql", "moorl", "h2o", "h2o_naive", "darc", "sac_sim",
              "rlpd_sim", "hnpg", "npg", "unified_pg", "ucbvi_ent", "optimistic_ac", "demo_regularized_linear",
              "optimistic_ac_linear"}
# ``init`` solves a tabular or linear problem (10-25 s on the 2-core CPU): run with -m slow.
SLOW_INIT = {"bc_tabular", "demo_regularized_rlhf", "demo_regularized_linear"}

_SMALL = dict(hidden_sizes=(8, 8), policy_hidden=(8,), critic_hidden=(8,), buffer_size=64, batch_size=8,
              total_steps=100, warmup_steps=10, offline_steps=4, online_steps=4, num_iterations=2, num_rounds=2, num_episodes=4,
              offline_episodes=4, offline_per_level=4, num_envs=1, num_steps=4, num_tasks=2, groups=2, group_size=2)


def _agent(name):
    spec = list_algorithms()[name]
    env, kwargs, needs_data = PROBLEMS[name]
    problem = build_problem(env, kwargs, dataset=_random_transitions(64) if needs_data else None)
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    config = spec.config_cls(**{k: v for k, v in _SMALL.items() if k in fields})
    return spec, config, problem, spec.make(config, problem)


def test_every_registered_algorithm_is_covered():
    assert set(list_algorithms()) == set(PROBLEMS)
    assert STOCHASTIC <= set(PROBLEMS)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_INIT else n
                                  for n in sorted(PROBLEMS)])
def test_deterministic_policy_does_not_depend_on_the_key(name):
    spec, config, problem, agent = _agent(name)
    state = agent.init(jax.random.key(1), default_hparams(spec, config))
    env_params = problem.env_params if agent.eval_env_params is None else agent.eval_env_params(state)
    obs, _ = problem.env.reset(jax.random.key(2), env_params)
    keys = jax.random.split(jax.random.key(3), 16)
    det = jax.vmap(lambda k: agent.policy(state, obs, k, True))(keys)
    np.testing.assert_array_equal(np.asarray(det), np.broadcast_to(np.asarray(det[0]), det.shape))
    if name in STOCHASTIC:
        sampled = np.asarray(jax.vmap(lambda k: agent.policy(state, obs, k, False))(keys))
        assert not np.all(sampled == sampled[0]), f"{name}: sampled evaluation ignores the key"


class _Spy:
    """An agent whose action is the ``deterministic`` flag it was called with (1.0 or 0.0)."""

    @staticmethod
    def make(problem):
        def init(key, hparams):
            return {"t": jnp.int32(0)}

        def iteration(state):
            return {"t": state["t"] + 1}, {"loss": jnp.float32(0.0)}

        def policy(state, obs, key, deterministic):
            return jnp.full((problem.action_dim,), 1.0 if deterministic else -1.0)

        return Agent(init=init, phases=(Phase("online", iteration, 2),), policy=policy)


@pytest.mark.parametrize("deterministic", [True, False])
def test_runner_passes_the_protocol_to_the_policy(deterministic):
    # The flag is a Python bool at trace time: record what the evaluation loop passes, through the pure
    # seed sweep and through the host-driven runner.
    problem = build_problem("pendulum", {"max_steps_in_episode": 5})
    agent = _Spy.make(problem)
    calls = []
    seen = Agent(init=agent.init, phases=agent.phases,
                 policy=lambda s, o, k, d: (calls.append(d), agent.policy(s, o, k, d))[1])
    jax.jit(make_seed_sweep(seen, problem, num_evals=1, eval_episodes=2, deterministic=deterministic))(
        jax.random.split(jax.random.key(0), 2), {})
    assert calls and set(calls) == {deterministic}
    calls.clear()
    Runner(seen, problem, {}, RunSettings(num_seeds=1, num_evals=1, eval_episodes=2, checkpoint=False,
                                          progress=False, deterministic_eval=deterministic), log_fn=lambda m: None).run()
    assert calls and set(calls) == {deterministic}
