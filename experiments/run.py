"""Train any registered algorithm on any registered env: ``python -m experiments.run algo=sac env=pendulum``.

Seeds are vmapped in one compiled program (``seeds=16``), a grid of traced hyper-parameters is a second
vmapped axis (``+hp_sweep.actor_lr=[1e-3,3e-4]``), ``-m`` runs a Hydra sweep of separate runs, and
``resume=<run dir>`` continues a killed run from its last checkpoint to the same final numbers.
Outputs go to ``runs/<algo>/<env>/<time>/``: config.yaml, metrics.csv (one row per seed per evaluation),
summary.json, eval_returns.json (raw per-episode returns), checkpoints/ and learning_curve.png.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sys
import time
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from hybrid_rl import distributed

if __name__ == "__main__":  # coordinator=... on the command line: join the JAX job before any device use
    try:
        distributed.initialize_from_argv(sys.argv[1:])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

from experiments.config import algo_config_from_node, register_configs  # noqa: E402

register_configs()


class UserError(Exception):
    """Bad input: printed as one line, never a traceback."""


def _is_two_phase(config) -> bool:
    """Offline pre-training then fine-tuning (iql, cal_ql): the config has offline_steps and online_steps."""
    return hasattr(config, "offline_steps") and hasattr(config, "online_steps")


def _names_env(overrides) -> bool:
    """Whether the command-line overrides choose an env (``env=...``, ``+env=...``, ``~env``...)."""
    return any(o.split("=", 1)[0].lstrip("+~") == "env" for o in overrides)


def _apply_total_steps(algo_name: str, config, total_steps, phase=None):
    if total_steps is None:
        return config
    if phase == "offline":
        fields = ("offline_steps",)
    elif _is_two_phase(config):  # the budget counts env steps, not the offline pre-training
        fields = ("online_steps",)
    else:
        fields = ("total_steps", "num_steps")
    for field in fields:
        if hasattr(config, field):
            return dataclasses.replace(config, **{field: int(total_steps)})
    raise UserError(f"algo {algo_name!r} has neither total_steps nor num_steps; set its own length key")


def resolve_dataset(cfg: DictConfig, env_name: str, env_kwargs: dict, log=print) -> Optional[str]:
    """``dataset`` is a file path, or a kind (``medium``, ``medium_replay``...) that the dataset builder
    makes for this env (once: it is cached under the data dir with a hash of its recipe)."""
    from hybrid_rl.datasets.builder import KINDS, get_or_build_dataset

    dataset = cfg.dataset
    if dataset is None:
        return None
    kind = str(dataset).replace("_", "-")
    if kind in KINDS and not pathlib.Path(dataset).exists():
        log(f"dataset: {kind} data for {env_name} ({cfg.dataset_size} transitions) from the builder (cached)")
        path = get_or_build_dataset(
            env_name, kind, int(cfg.dataset_size), seed=int(cfg.seed), env_kwargs=env_kwargs or None,
            data_dir=cfg.data_dir,
        )
        return str(path)
    dataset = str(pathlib.Path(dataset).expanduser())
    if not pathlib.Path(dataset).exists():
        raise UserError(
            f"dataset file not found: {dataset} (a path to a D4RL-layout .hdf5, or a kind: {', '.join(KINDS)})"
        )
    return str(dataset)


NO_ENV = "none"  # env.name saved in config.yaml when no env simulates the dataset (offline only)
PHASES = ("offline", "offline_to_online")


def problem_for_dataset_file(env_name: str, env_kwargs: dict, dataset: str, log=print, simulate: bool = True):
    """The problem for a dataset file when ``env=`` was not given: the env the file's D4RL name implies
    (a registered ``brax_<family>`` stands in for D4RL's MuJoCo), else the default env if the file's shapes
    fit it, else (or with ``simulate=False``: ``env=none``) a problem with no simulator, shaped by the file
    (trained offline, not evaluated)."""
    from envs.registry import list_envs
    from hybrid_rl.datasets import d4rl_family, infer_d4rl_task, load_d4rl_hdf5
    from hybrid_rl.problem import build_problem, load_dataset_for, problem_from_dataset

    raw = load_d4rl_hdf5(dataset)
    obs_shape, actions = tuple(raw["observations"].shape[1:]), raw["actions"]
    task = infer_d4rl_task(dataset)
    if not simulate:
        why = "env=none"
    elif task is None:
        problem = build_problem(env_name, env_kwargs) if env_name in list_envs() else None
        if problem is not None and problem.obs_shape == obs_shape and (
            (problem.action_kind == "continuous" and actions.shape[1:] == (problem.action_dim,))
            or (problem.action_kind == "discrete" and actions.ndim == 1)
        ):
            return load_dataset_for(problem, dataset)
        why = f"its name is no D4RL task and its shapes do not fit the default env {env_name!r}; pass env=<name>"
    else:
        candidate = f"brax_{d4rl_family(task)}"
        try:
            problem = build_problem(candidate) if candidate in list_envs() else None
        except ImportError:  # registered, but Brax is not installed
            problem = None
        if problem is not None:
            if problem.obs_shape == obs_shape and actions.shape[1:] == (problem.action_dim,):
                log(f"env: {candidate} (Brax) stands in for D4RL's MuJoCo {task}; its dynamics differ, so "
                    "returns and D4RL-normalized scores are only indicative")
                return load_dataset_for(problem, dataset, raw)
            why = (f"{candidate}'s observations {problem.obs_shape} / actions ({problem.action_dim},) do not "
                   f"fit the file's {obs_shape} / {actions.shape[1:]}")
        else:
            why = f"MuJoCo is not available here, and no {candidate} env could be built (Brax: pip install -e \".[brax]\")"
    problem = problem_from_dataset(dataset, raw, task)
    log(f"no env to evaluate {problem.env_name} in ({why}): training offline only with eval_episodes=0, so no "
        "D4RL-normalized score is reported; losses go to metrics.csv and checkpoints are written")
    return problem


def _apply_phase(algo_name: str, config, phase: Optional[str], has_simulator: bool, log=print):
    """``phase=offline`` (or a problem with no simulator): the algorithm's online steps become 0."""
    if phase is not None and phase not in PHASES:
        raise UserError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)}")
    two_phase = _is_two_phase(config)
    if phase is not None and not two_phase:
        raise UserError(f"algo {algo_name!r} has no offline and online phases: phase={phase} works with algorithms "
                        "that have offline_steps and online_steps (iql, cal_ql)")
    if phase == "offline_to_online" and not has_simulator:
        raise UserError("phase=offline_to_online needs an env to fine-tune in, and none simulates the dataset: "
                        "pass env=<name> or phase=offline")
    if two_phase and config.online_steps > 0 and (phase == "offline" or not has_simulator):
        if phase != "offline":
            log(f"no env to fine-tune in: {algo_name}'s online phase is skipped (online_steps=0)")
        config = dataclasses.replace(config, online_steps=0)
    return config


def train_from_config(cfg: DictConfig, out_dir: pathlib.Path, resume: bool = False, log=print,
                      env_given: bool = True) -> dict:
    """Builds the problem and agent from a composed config and runs it; returns the summary.

    ``env_given=False`` (no ``env=`` on the command line) lets a dataset file choose its env
    (:func:`problem_for_dataset_file`); the choice is saved in config.yaml's ``env.name``."""
    from hybrid_rl.algorithm import default_hparams, get_algorithm
    from hybrid_rl.problem import build_problem
    from hybrid_rl.runner import RunSettings, Runner

    algo_name, config = algo_config_from_node(cfg.algo)
    spec = get_algorithm(algo_name)
    phase = cfg.get("phase")
    config = _apply_total_steps(algo_name, config, cfg.total_steps, phase)
    env_name = cfg.env.name
    env_kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    if env_name == NO_ENV and cfg.dataset is None:
        raise UserError("env=none (no simulator) needs dataset=<path to a D4RL-layout .hdf5>")
    dataset = resolve_dataset(cfg, env_name, env_kwargs, log)
    if spec.dataset == "required" and dataset is None:
        raise UserError(
            f"algo {algo_name!r} needs offline data: pass dataset=<path to a D4RL-layout .hdf5> "
            "(make one with `python -m experiments.make_dataset env=... kind=...`)"
        )
    if dataset is not None and (env_name == NO_ENV or not env_given):
        problem = problem_for_dataset_file(env_name, env_kwargs, dataset, log, simulate=env_name != NO_ENV)
        cfg.env.name = problem.env_name if problem.has_simulator else NO_ENV
        env_name = problem.env_name
    else:
        problem = build_problem(env_name, env_kwargs, dataset)
    if problem.action_kind not in spec.action_kinds:
        raise UserError(
            f"algo {algo_name!r} supports {'/'.join(spec.action_kinds)} actions; env {env_name!r} is {problem.action_kind}"
        )
    config = _apply_phase(algo_name, config, phase, problem.has_simulator, log)
    agent = spec.make(config, problem)
    if not problem.has_simulator and any(p.env_steps_per_iteration * p.num_iterations > 0 for p in agent.phases):
        raise UserError(f"algo {algo_name!r} steps an env, and no env simulates {env_name}: pass env=<name> "
                        "or use an offline algorithm (iql, cal_ql with phase=offline, bc, cql)")
    task = problem.dataset_info.get("d4rl_task")
    if task is not None and problem.has_simulator:
        lo, hi = problem.reference_returns()
        log(f"D4RL-normalized scores use {task}'s reference returns (random {lo:.1f}, expert {hi:.1f})")
    settings = RunSettings(
        num_seeds=cfg.seeds,
        seed=cfg.seed,
        seed_offset=int(cfg.get("seed_offset", 0)),
        num_evals=cfg.num_evals,
        eval_episodes=cfg.eval_episodes if spec.evaluation and problem.has_simulator else 0,
        hp_grid={k: list(v) for k, v in OmegaConf.to_container(cfg.hp_sweep, resolve=True).items()},
        checkpoint=cfg.checkpoint,
        progress=cfg.progress,
    )
    import jax

    out_dir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    from hybrid_rl.logging import make_loggers

    mirrors = make_loggers(list(cfg.get("loggers", [])) if jax.process_index() == 0 else [], out_dir,
                           OmegaConf.to_container(cfg, resolve=True))
    runner = Runner(agent, problem, default_hparams(spec, config), settings, out_dir=out_dir, log_fn=log,
                    on_rows=tuple(mirrors))
    log(
        f"{algo_name} on {env_name}: {settings.num_seeds} seed(s) x {runner.num_hp} hparam point(s) in one "
        f"program on {len(jax.devices())} {jax.devices()[0].platform} device(s); outputs in {out_dir}"
    )
    t0 = time.perf_counter()
    _, summary = runner.run(resume=resume)
    log(f"done in {time.perf_counter() - t0:.1f} s")
    for h, entry in summary.items():
        swept = ", ".join(f"{k[3:]}={v:g}" for k, v in entry.items() if k.startswith("hp."))
        if "final_eval_return_mean" in entry:
            line = f"final eval return {entry['final_eval_return_mean']:.2f} " \
                   f"+- {entry['final_eval_return_std']:.2f} over {entry['num_seeds']} seed(s)"
        else:  # judged by its own metrics (regret, suboptimality), not by evaluation episodes
            shown = {k: v for k, v in entry["final_metrics"].items()
                     if any(w in k for w in ("regret", "suboptimality", "return"))} or entry["final_metrics"]
            line = ", ".join(f"{k} {v:.4g}" for k, v in list(shown.items())[:4])
            line = f"final {line} (mean over {entry['num_seeds']} seed(s))"
        if "final_normalized_score_mean" in entry:
            line += f", normalized score {entry['final_normalized_score_mean']:.1f}"
        log(("  [" + swept + "] " if swept else "  ") + line)
    log(f"results: {out_dir}/summary.json, metrics.csv, learning_curve.png")
    return summary


def _has_checkpoint(out_dir: pathlib.Path, cfg: DictConfig) -> bool:
    """Whether ``out_dir`` holds a checkpoint of this very run (same config.yaml). A job that the scheduler
    preempted or timed out is started again in its own directory (submitit's requeue), and continues from
    there; a directory holding a different run is an error rather than a silent mix of two runs."""
    saved, checkpoints = out_dir / "config.yaml", out_dir / "checkpoints"
    if not saved.exists() or not checkpoints.is_dir() or not any(p.name.isdigit() for p in checkpoints.iterdir()):
        return False
    previous = OmegaConf.load(saved)
    previous.env.name = cfg.env.name  # a dataset file may have chosen the env; that is not a difference
    if OmegaConf.to_yaml(previous) != OmegaConf.to_yaml(cfg):
        raise UserError(f"{out_dir} already holds a different run (its config.yaml differs): choose another out_dir")
    return True


def _one_line_error(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"error: {text[0] if text else type(err).__name__}"


# conf/ holds only the shipped launcher configs (hydra/launcher=slurm|local|ray_sweep); the run config itself
# is generated from the registries (experiments/config.py).
# An absolute path: Hydra would otherwise look for an importable package experiments.conf when main is
# called from the imported module (as launchers do).
@hydra.main(version_base="1.3", config_path=str(pathlib.Path(__file__).resolve().parent / "conf"),
            config_name="config")
def main(cfg: DictConfig) -> None:
    import logging

    from hybrid_rl.datasets import DatasetError

    # orbax logs every checkpoint step at INFO through absl; Hydra's logging config would print them all.
    logging.getLogger("absl").setLevel(logging.WARNING)

    try:
        multi_process = distributed.initialize(cfg.get("coordinator"), cfg.get("num_processes"),
                                               cfg.get("process_id"))
        log = print if distributed.is_primary() else (lambda *_: None)
        if cfg.resume is not None:
            run_dir = pathlib.Path(cfg.resume)
            saved = run_dir / "config.yaml"
            if not saved.exists():
                raise UserError(f"cannot resume: {saved} does not exist (is {run_dir} a run directory?)")
            train_from_config(OmegaConf.load(saved), run_dir, resume=True, log=log)
            return
        hydra_cfg = HydraConfig.get()
        out_dir = pathlib.Path(cfg.out_dir) if cfg.out_dir else pathlib.Path(hydra_cfg.runtime.output_dir)
        if multi_process:  # every process writes into process 0's run directory (named by its clock)
            out_dir = pathlib.Path(distributed.broadcast_text(str(out_dir)))
        env_given = _names_env(hydra_cfg.overrides.task)
        resume = _has_checkpoint(out_dir, cfg)
        if resume:
            log(f"{out_dir} already holds this run's checkpoint (a requeued job): resuming from it")
        train_from_config(cfg, out_dir, resume=resume, log=log, env_given=env_given)
    except (UserError, DatasetError, ValueError, KeyError, FileNotFoundError, FloatingPointError, ImportError) as err:
        print(_one_line_error(err), file=sys.stderr)
        sys.exit(2)


def check_overrides(argv: list[str]) -> str | None:
    """Validates command-line overrides before Hydra sees them; returns a one-line error or None.

    Hydra's own messages for an unknown option or key span many lines; researchers get one line that
    names the bad value and lists the valid ones.
    """
    from envs.registry import list_envs
    from experiments.config import RunConfig
    from hybrid_rl.algorithm import list_algorithms

    algos, envs = list_algorithms(), list_envs()
    chosen_algos = ["sac"]
    pairs = []
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        pairs.append((key, value))
        if key in ("algo", "env"):
            registry = algos if key == "algo" else envs
            names = [v.strip() for v in value.split(",")]
            for name in names:
                if name not in registry and not (key == "env" and name == NO_ENV):
                    return f"error: unknown {key} {name!r}; valid: {', '.join(registry)}"
            if key == "algo":
                chosen_algos = names
    top_level = {f.name for f in dataclasses.fields(RunConfig)}
    for key, _ in pairs:
        head, _, rest = key.partition(".")
        if head in ("hydra", "hp_sweep") or key.startswith("hydra/") or key in ("algo", "env"):
            continue
        if head == "algo":
            for name in chosen_algos:
                valid = ["name"] + [f.name for f in dataclasses.fields(algos[name].config_cls)]
                if rest.split(".")[0] not in valid:
                    return f"error: algo {name!r} has no key {rest!r}; its keys: {', '.join(valid[1:])}"
        elif head == "env":
            if rest.split(".")[0] not in ("name", "kwargs"):
                return f"error: env has no key {rest!r}; set env parameters as env.kwargs.<param>=<value>"
        elif head not in top_level:
            return f"error: unknown key {key!r}; top-level keys: {', '.join(sorted(top_level - {'defaults'}))}"
    if not any(a in ("-m", "--multirun") for a in argv) and not any(a.startswith("--") for a in argv):
        from hydra import compose, initialize

        try:
            with initialize(version_base="1.3", config_path=None):
                compose(config_name="config", overrides=[a for a in argv if not a.startswith(("hydra.", "hydra/"))])
        except Exception as err:  # Hydra's validation error for a bad value or type
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            cause = str(err.__cause__).strip().splitlines()[0] if err.__cause__ else ""
            return f"error: {first}" + (f": {cause}" if cause else "")
    return None


def _force_dict_keys(argv: list[str]) -> list[str]:
    """``env.kwargs.X=v`` and ``hp_sweep.X=[...]`` become ``++...``: these are free-form dicts, and Hydra
    would otherwise insist on a leading ``+`` for every key that is not there yet. ``env.X=v`` (X not
    ``name``/``kwargs``) is short for ``env.kwargs.X=v``: ``env=comblock env.horizon=20``."""
    out = []
    for arg in argv:
        key = arg.lstrip("+").split("=", 1)[0]
        if key.startswith("env.") and key.split(".")[1] not in ("name", "kwargs") and "=" in arg:
            arg = "env.kwargs." + arg.lstrip("+")[len("env."):]  # env.horizon=20: an env parameter
        if arg.startswith(("env.kwargs.", "hp_sweep.", "+env.kwargs.", "+hp_sweep.")) and "=" in arg:
            arg = "++" + arg.lstrip("+")
        out.append(arg)
    return out


def _algo_key_shortcuts(argv: list[str]) -> list[str]:
    """``demos=100`` means ``algo.demos=100`` when ``demos`` is not a top-level key but a field of every
    chosen algorithm's Config (the papers' own option names work as written)."""
    from experiments.config import RunConfig
    from hybrid_rl.algorithm import list_algorithms

    algos = list_algorithms()
    chosen = ["sac"]
    for arg in argv:
        if arg.startswith("algo=") and "," not in arg:
            chosen = [arg.split("=", 1)[1]]
        elif arg.startswith("algo="):
            chosen = arg.split("=", 1)[1].split(",")
    if any(name not in algos for name in chosen):
        return argv  # check_overrides reports the unknown algorithm
    top_level = {f.name for f in dataclasses.fields(RunConfig)}
    out = []
    for arg in argv:
        key = arg.split("=", 1)[0] if "=" in arg and not arg.startswith(("-", "+")) else None
        if key and "." not in key and key not in top_level and key not in ("algo", "env") and all(
            key in {f.name for f in dataclasses.fields(algos[name].config_cls)} for name in chosen
        ):
            arg = "algo." + arg
        out.append(arg)
    return out


def _dataset_env_dir(argv: list[str]) -> str | None:
    """The run directory's env part for ``dataset=<file>`` with no ``env=``: its D4RL task or file stem."""
    if _names_env(a for a in argv if "=" in a):
        return None
    paths = [a.split("=", 1)[1] for a in argv if a.split("=", 1)[0].lstrip("+") == "dataset" and "=" in a]
    if not paths or not pathlib.Path(paths[-1]).expanduser().is_file():
        return None
    from hybrid_rl.datasets import infer_d4rl_task

    name = infer_d4rl_task(paths[-1]) or pathlib.Path(paths[-1]).stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


if __name__ == "__main__":
    sys.argv[1:] = _algo_key_shortcuts(_force_dict_keys(sys.argv[1:]))
    problem = check_overrides(sys.argv[1:])
    if problem is not None:
        print(problem, file=sys.stderr)
        sys.exit(2)
    # Runs go to runs/<algo>/<env>/<time> (<env>: the D4RL task or file name of a dataset file given
    # without env=); sweeps to runs/sweeps/<time>/<overrides>.
    env_dir = _dataset_env_dir(sys.argv[1:]) or "${hydra:runtime.choices.env}"
    sys.argv += [
        a for a in (
            "hydra.run.dir=runs/${hydra:runtime.choices.algo}/" + env_dir + "/${now:%Y-%m-%d_%H-%M-%S}",
            "hydra.sweep.dir=runs/sweeps/${now:%Y-%m-%d_%H-%M-%S}",
            "hydra.sweep.subdir=${hydra.job.override_dirname}",
            "hydra.job.chdir=false",
        )
        if not any(arg.startswith(a.split("=")[0] + "=") for arg in sys.argv[1:])
    ]
    # Launchers (submitit, Ray) pickle the task function. Taken from the importable module it travels by
    # reference; a function of __main__ would be pickled by value with the objects it holds (Ray's driver
    # replaces builtins.print, so a captured print no longer pickles).
    from experiments.run import main as task_main

    task_main()
