"""A tiny problem and a two-iteration config for every algorithm in the table: the registry-wide smoke run.

``smoke_problem(spec)`` picks a small env that fits the algorithm (its action kind, whether it needs a
simulator pair, a tabular or linear model, a change-point env) and, where it uses offline data, gives it a few
hundred synthetic transitions; ``smoke_config(spec, problem)`` shrinks networks, batches and budgets so the
first iterations compile and run in seconds. ``tests/test_smoke.py`` runs every algorithm through the real
runner with these, so an algorithm added to ``algorithms.ALGORITHMS`` is exercised without writing a test
first (it still needs its own).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from experiments.catalog import apply_budget, build_problem
from hybrid_rl.algorithm import AlgorithmSpec
from hybrid_rl.problem import Problem
from hybrid_rl.types import Transition

# Algorithms whose env cannot be told from the spec alone: (env name, env kwargs).
SMOKE_ENVS: dict[str, tuple[str, dict]] = {
    "hnpg": ("comblock", {"horizon": 3}),
    "npg": ("comblock", {"horizon": 3}),
    "hyq": ("comblock", {"horizon": 3}),
    "unified_pg": ("comblock", {"horizon": 3}),
    "ucbvi": ("comblock_tabular", {"horizon": 3}),
    "ucbvi_ent": ("comblock_tabular", {"horizon": 3}),
    "demo_regularized": ("comblock_tabular", {"horizon": 3}),
    "bc_tabular": ("comblock_tabular", {"horizon": 3}),
    "demo_regularized_rlhf": ("comblock_tabular", {"horizon": 3}),
    "optimistic_ac": ("comblock_tabular", {"horizon": 3}),
    "demo_regularized_linear": ("linear_mdp", {}),
    "optimistic_ac_linear": ("linear_mdp", {}),
    "lsvi_ucb": ("linear_mdp", {}),
    "ucrl2": ("riverswim", {}),
    "ucrl2_restarts": ("riverswim", {}),
    "sw_ucrl2": ("riverswim", {}),
    "oracle_ucrl2": ("riverswim_switching", {}),
    "rbocpd_ucrl2": ("riverswim_switching", {}),
    "h2o": ("pendulum_gravity_2x", {}),
    "h2o_naive": ("pendulum_gravity_2x", {}),
    "darc": ("pendulum_gravity_2x", {}),
    "sac_sim": ("pendulum_gravity_2x", {}),
    "rlpd_sim": ("pendulum_gravity_2x", {}),
}

# Config fields shrunk wherever an algorithm has them (networks, batches, inner loops, data sizes).
SMALL_FIELDS: dict[str, Any] = {
    "hidden_sizes": (16, 16),
    "disc_hidden_sizes": (16, 16),
    "policy_hidden": (8,),
    "critic_hidden": (16,),
    "mlp_hidden": (16,),
    "batch_size": 16,
    "num_critics": 2,
    "utd": 1,
    "num_envs": 2,
    "num_steps": 8,
    "num_minibatches": 2,
    "update_epochs": 1,
    "critic_steps": 2,
    "cg_iters": 2,
    "backtracks": 2,
    "grad_steps": 2,
    "offline_episodes": 4,
    "offline_per_level": 32,
    "envs_per_level": 4,
    "min_online_steps": 12,
    "demos": 4,
    "pref_pairs": 4,
    "bc_steps": 4,
    "reward_steps": 4,
    "buffer_size": 64,
    "num_tasks": 2,
    "groups": 2,
    "group_size": 2,
    "num_demos": 1,
}


def synthetic_dataset(problem: Problem, key: jax.Array, size: int = 256, episode_length: int = 32) -> Transition:
    """Random transitions in agent units, cut into episodes of ``episode_length`` by time-limit ends."""
    k_obs, k_next, k_act, k_rew = jax.random.split(key, 4)
    obs = jax.random.normal(k_obs, (size,) + problem.obs_shape)
    if problem.action_kind == "continuous":
        action = jax.random.uniform(k_act, (size, problem.action_dim), minval=-1.0, maxval=1.0)
    else:
        action = jax.random.randint(k_act, (size,), 0, problem.action_dim)
    ends = (jnp.arange(size) % episode_length) == episode_length - 1
    return Transition(
        obs=obs,
        action=action,
        reward=jax.random.normal(k_rew, (size,)),
        next_obs=jax.random.normal(k_next, (size,) + problem.obs_shape),
        terminated=jnp.zeros(size, bool),
        truncated=ends,
    )


def smoke_problem(spec: AlgorithmSpec) -> Problem:
    """A small problem this algorithm runs on (with synthetic offline data where it uses any)."""
    if spec.name in SMOKE_ENVS:
        env_name, kwargs = SMOKE_ENVS[spec.name]
    else:
        env_name, kwargs = ("pendulum", {}) if "continuous" in spec.action_kinds else ("cartpole", {})
    problem = build_problem(env_name, kwargs)
    if spec.dataset != "none":
        problem = dataclasses.replace(problem, dataset=synthetic_dataset(problem, jax.random.key(0)))
    return problem


def smoke_config(spec: AlgorithmSpec, problem: Problem, iterations: int = 2) -> Any:
    """The algorithm's config with small networks and a budget of about ``iterations`` iterations per phase."""
    config = spec.config_cls()
    names = {f.name for f in dataclasses.fields(config)}
    config = dataclasses.replace(config, **{k: v for k, v in SMALL_FIELDS.items() if k in names})
    budget = spec.budget
    if budget.offline_field is not None:
        config = dataclasses.replace(config, **{budget.offline_field: iterations})
    if budget.warmup_field is not None:
        config = dataclasses.replace(config, **{budget.warmup_field: 0})
    per = spec.make(config, problem).phases[-1]
    steps_per_iteration = max(per.grad_steps_per_iteration if budget.unit == "grad_steps"
                              else per.env_steps_per_iteration, 1)
    return apply_budget(spec, config, problem, iterations * steps_per_iteration, log=lambda _: None)
