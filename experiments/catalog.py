"""Name lookups and the checks every entry point shares: the floor above ``algorithms/`` and ``envs/``.

* ``get_algorithm`` / ``list_algorithms``: the table ``algorithms.ALGORITHMS``;
* ``get_env_spec`` / ``list_envs`` / ``make_env``: the env registry (``envs/registry.py``);
* ``build_problem(env_name, env_kwargs, dataset)``: a ``Problem`` from names (and a dataset file);
* ``problem_for_dataset_file``: the problem a D4RL file implies when no env is named;
* ``apply_budget``: what ``total_steps`` / ``offline_steps`` set, from each algorithm's declared ``Budget``;
* ``make_agent``: the dataset, action-kind, phase and simulator checks, once, then ``spec.make``.

The CLI (``experiments/run.py``), the dataset builder, the figure scripts and the benchmarks all go through
these, so a name, a budget or a bad combination means the same thing everywhere. Errors are ``CatalogError``
(a ``ValueError``) with a one-line message.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Callable, Optional

from envs import get_env_spec, list_envs, make_env
from envs.registry import UnknownEnvError
from hybrid_rl.algorithm import AlgorithmSpec, default_hparams
from hybrid_rl.problem import Problem, load_dataset_for, problem_for_env, problem_from_dataset
from hybrid_rl.types import Transition

__all__ = [
    "CatalogError",
    "UnknownAlgorithmError",
    "UnknownEnvError",
    "get_algorithm",
    "list_algorithms",
    "get_env_spec",
    "list_envs",
    "make_env",
    "build_problem",
    "problem_for_dataset_file",
    "apply_budget",
    "apply_phase",
    "make_agent",
    "default_hparams",
    "NO_ENV",
    "PHASES",
]

NO_ENV = "none"  # the env name of a dataset that nothing simulates (offline training only)
PHASES = ("offline", "offline_to_online")


class CatalogError(ValueError):
    """A bad name, budget or combination; the message is one line."""


class UnknownAlgorithmError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it a plain sentence
        return self.args[0]


def list_algorithms() -> dict[str, AlgorithmSpec]:
    from algorithms import ALGORITHMS

    return dict(sorted(ALGORITHMS.items()))


def get_algorithm(name: str) -> AlgorithmSpec:
    from algorithms import ALGORITHMS

    if name not in ALGORITHMS:
        raise UnknownAlgorithmError(f"unknown algo {name!r}; registered algorithms: {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[name]


# ----------------------------------------------------------------------------------------------------
# Problems
# ----------------------------------------------------------------------------------------------------


def build_problem(
    env_name: str,
    env_kwargs: Optional[dict] = None,
    dataset: Optional[Transition | str | pathlib.Path] = None,
) -> Problem:
    """The problem of a registered env (with its simulator, for sim/real pairs) and an optional dataset: a
    D4RL-layout file (checked against the env's shapes) or transitions already in agent units."""
    env, params, spec = make_env(env_name, **(env_kwargs or {}))
    sim_env = sim_params = None
    if spec.make_sim is not None:
        sim_env, sim_params = spec.make_sim(**(env_kwargs or {}))
    problem = problem_for_env(env_name, env, params, spec, sim_env, sim_params)
    if isinstance(dataset, (str, pathlib.Path)):
        problem = load_dataset_for(problem, dataset)
    elif dataset is not None:
        problem = dataclasses.replace(problem, dataset=dataset)
    return problem


def problem_for_dataset_file(env_name: str, env_kwargs: dict, dataset: str, log: Callable = print,
                             simulate: bool = True) -> Problem:
    """The problem for a dataset file when ``env=`` was not given: the env the file names (a Minari
    dataset's ``env_spec``, or a D4RL file name: ``mujoco_<family>`` when MuJoCo is installed, else a
    registered ``brax_<family>`` stands in), else the default env if the file's shapes fit it, else (or with
    ``simulate=False``: ``env=none``) a problem with no simulator, shaped by the file (trained offline, not
    evaluated). A file that names a MuJoCo task whose shapes it does not have is a one-line error."""
    from envs.mujoco_envs import env_for_d4rl_family, env_for_gym_id, mujoco_available
    from hybrid_rl.datasets import DatasetError, d4rl_family, infer_d4rl_task
    from hybrid_rl.datasets.minari import load_dataset_file

    raw = load_dataset_file(dataset)
    obs_shape, actions = tuple(raw["observations"].shape[1:]), raw["actions"]
    minari_id = raw.get("metadata/minari_env_id")
    task = None if minari_id is not None else infer_d4rl_task(dataset)

    def fits(problem):
        return problem.obs_shape == obs_shape and actions.shape[1:] == (problem.action_dim,)

    def mujoco_problem(name, recorded_in):
        if actions.ndim != 2:
            raise DatasetError(f"{dataset}: key 'actions': shape {actions.shape}; with no env the actions must be "
                               "continuous (N, action_dim): pass env=<name> for a discrete-action dataset")
        problem = build_problem(name)
        if not fits(problem):
            raise DatasetError(
                f"{dataset}: observations {obs_shape} / actions {actions.shape[1:]} match no task: it was recorded "
                f"in {recorded_in}, whose env {name} has observations {problem.obs_shape} / actions "
                f"({problem.action_dim},)")
        return load_dataset_for(problem, dataset, raw)

    if not simulate:
        why = "env=none"
    elif minari_id is not None:
        candidate = env_for_gym_id(minari_id)
        if candidate is not None and mujoco_available():
            log(f"env: {candidate} (MuJoCo {minari_id}), the env this Minari dataset names")
            return mujoco_problem(candidate, minari_id)
        why = (f"the Minari dataset names {minari_id}, and MuJoCo is not installed (pip install -e \".[mujoco]\")"
               if candidate is not None else f"the Minari dataset names {minari_id}, which is none of our envs")
    elif task is None:
        problem = build_problem(env_name, env_kwargs) if env_name in list_envs() else None
        if problem is not None and problem.obs_shape == obs_shape and (
            (problem.action_kind == "continuous" and actions.shape[1:] == (problem.action_dim,))
            or (problem.action_kind == "discrete" and actions.ndim == 1)
        ):
            return load_dataset_for(problem, dataset)
        why = f"its name is no D4RL task and its shapes do not fit the default env {env_name!r}; pass env=<name>"
    else:
        mujoco_env = env_for_d4rl_family(d4rl_family(task))
        if mujoco_env is not None and mujoco_available():
            log(f"env: {mujoco_env} (MuJoCo, D4RL's semantics) for {task}")
            return mujoco_problem(mujoco_env, task)
        candidate = f"brax_{d4rl_family(task)}"
        try:
            problem = build_problem(candidate) if candidate in list_envs() else None
        except ImportError:  # registered, but Brax is not installed
            problem = None
        if problem is not None:
            if fits(problem):
                log(f"env: {candidate} (Brax) stands in for D4RL's MuJoCo {task} because MuJoCo is not installed "
                    "(pip install -e \".[mujoco]\"); its dynamics differ, so returns and D4RL-normalized scores are "
                    "only indicative")
                return load_dataset_for(problem, dataset, raw)
            why = (f"{candidate}'s observations {problem.obs_shape} / actions ({problem.action_dim},) do not "
                   f"fit the file's {obs_shape} / {actions.shape[1:]}")
        elif mujoco_env is not None:
            why = ("MuJoCo is not installed (pip install -e \".[mujoco]\"), and no "
                   f"{candidate} env could be built (Brax: pip install -e \".[brax]\")")
        else:
            why = f"no env here simulates D4RL's {d4rl_family(task)} tasks"
    problem = problem_from_dataset(dataset, raw, task)
    log(f"no env to evaluate {problem.env_name} in ({why}): training offline only with eval_episodes=0, so no "
        "D4RL-normalized score is reported; losses go to metrics.csv and checkpoints are written")
    return problem


# ----------------------------------------------------------------------------------------------------
# Budgets and phases
# ----------------------------------------------------------------------------------------------------


def apply_budget(spec: AlgorithmSpec, config: Any, problem: Optional[Problem], total_steps: Optional[int] = None,
                 offline_steps: Optional[int] = None, log: Callable = print, offline_only: bool = False) -> Any:
    """``config`` with the run's budget applied as ``spec.budget`` declares it (see ``hybrid_rl.algorithm.Budget``).

    ``total_steps``: env steps (online env steps for two-phase algorithms), or gradient steps for offline-only
    ones; ``offline_steps``: the first phase of a two-phase algorithm. A warm-up that does not fit the budget
    is clipped to half of it, with one line saying so. ``problem`` is needed only for budgets counted in iterations.
    ``offline_only`` (``phase=offline``, or no simulator): a two-phase algorithm trains offline only, so
    ``total_steps`` counts its offline gradient steps, as for every offline-only algorithm."""
    budget = spec.budget
    if offline_only and budget.offline_field is not None and total_steps is not None:
        if offline_steps is not None:
            raise CatalogError("an offline-only run has one length: give total_steps or offline_steps, not both")
        total_steps, offline_steps = None, total_steps
    if offline_steps is not None:
        if budget.offline_field is None:
            raise CatalogError(f"algo {spec.name!r} has no offline phase: offline_steps applies to "
                               f"{', '.join(n for n, s in list_algorithms().items() if s.budget.offline_field)}")
        if int(offline_steps) < 0:
            raise CatalogError(f"offline_steps must be >= 0, got {offline_steps}")
        config = dataclasses.replace(config, **{budget.offline_field: int(offline_steps)})
    if total_steps is not None:
        total_steps = int(total_steps)
        if total_steps < 1 and not (budget.offline_field and total_steps == 0):
            raise CatalogError(f"total_steps must be >= 1, got {total_steps}")
        value = total_steps
        if budget.counts_iterations:
            if problem is None:
                raise CatalogError(f"algo {spec.name!r} counts its budget in iterations: a problem is needed")
            per = spec.make(config, problem).phases[-1].env_steps_per_iteration
            value = max(1, math.ceil(total_steps / max(per, 1)))
            if value * per != total_steps:
                log(f"total_steps={total_steps}: {spec.name} runs whole iterations of {per} env steps, so "
                    f"{budget.field}={value} ({value * per} env steps)")
        config = dataclasses.replace(config, **{budget.field: value})
    if budget.warmup_field is not None:
        length, warmup = getattr(config, budget.field), getattr(config, budget.warmup_field)
        if warmup >= length:  # a run that is all warm-up would never learn: keep half the budget for learning
            clipped = length // 2
            log(f"{budget.warmup_field}={warmup} does not fit the budget of {length} env steps: clipped to {clipped} "
                "(half the budget; the rest learns)")
            config = dataclasses.replace(config, **{budget.warmup_field: clipped})
    return config


def apply_phase(spec: AlgorithmSpec, config: Any, phase: Optional[str], has_simulator: bool,
                log: Callable = print) -> Any:
    """``phase=offline`` (or a problem with no simulator): a two-phase algorithm's online steps become 0."""
    if phase is not None and phase not in PHASES:
        raise CatalogError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)}")
    online_field = spec.budget.field if spec.budget.offline_field else None
    if phase is not None and online_field is None:
        two_phase = ", ".join(n for n, s in list_algorithms().items() if s.budget.offline_field)
        raise CatalogError(f"algo {spec.name!r} has no offline and online phases: phase={phase} works with "
                           f"{two_phase}")
    if phase == "offline_to_online" and not has_simulator:
        raise CatalogError("phase=offline_to_online needs an env to fine-tune in, and none simulates the dataset: "
                           "pass env=<name> or phase=offline")
    if online_field and getattr(config, online_field) > 0 and (phase == "offline" or not has_simulator):
        if phase != "offline":
            log(f"no env to fine-tune in: {spec.name}'s online phase is skipped ({online_field}=0)")
        config = dataclasses.replace(config, **{online_field: 0})
    return config


def make_agent(spec: AlgorithmSpec, config: Any, problem: Problem):
    """``spec.make(config, problem)`` after the checks every entry point needs: offline data when the
    algorithm requires it, a supported action kind, and a simulator for anything that steps an env."""
    if spec.dataset == "required" and problem.dataset is None:
        raise CatalogError(
            f"algo {spec.name!r} needs offline data: pass dataset=<path to a D4RL-layout .hdf5> or a kind the "
            "builder makes (dataset=medium)"
        )
    if problem.action_kind not in spec.action_kinds:
        raise CatalogError(f"algo {spec.name!r} supports {'/'.join(spec.action_kinds)} actions; env "
                           f"{problem.env_name!r} is {problem.action_kind}")
    agent = spec.make(config, problem)
    if not problem.has_simulator and any(p.env_steps_per_iteration * p.num_iterations > 0 for p in agent.phases):
        raise CatalogError(f"algo {spec.name!r} steps an env, and no env simulates {problem.env_name}: pass "
                           "env=<name> or use an offline algorithm (iql, cal_ql with phase=offline, bc, cql)")
    return agent
