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

from experiments.config import algo_config_from_node, register_configs

register_configs()


class UserError(Exception):
    """Bad input: printed as one line, never a traceback."""


def _apply_total_steps(algo_name: str, config, total_steps):
    if total_steps is None:
        return config
    for field in ("total_steps", "num_steps"):
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
    if not pathlib.Path(dataset).exists():
        raise UserError(
            f"dataset file not found: {dataset} (a path to a D4RL-layout .hdf5, or a kind: {', '.join(KINDS)})"
        )
    return str(dataset)


def train_from_config(cfg: DictConfig, out_dir: pathlib.Path, resume: bool = False, log=print) -> dict:
    """Builds the problem and agent from a composed config and runs it; returns the summary."""
    from hybrid_rl.algorithm import default_hparams, get_algorithm
    from hybrid_rl.problem import build_problem
    from hybrid_rl.runner import RunSettings, Runner

    algo_name, config = algo_config_from_node(cfg.algo)
    spec = get_algorithm(algo_name)
    config = _apply_total_steps(algo_name, config, cfg.total_steps)
    env_name = cfg.env.name
    env_kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    dataset = resolve_dataset(cfg, env_name, env_kwargs, log)
    if spec.dataset == "required" and dataset is None:
        raise UserError(
            f"algo {algo_name!r} needs offline data: pass dataset=<path to a D4RL-layout .hdf5> "
            "(make one with `python -m experiments.make_dataset env=... kind=...`)"
        )
    problem = build_problem(env_name, env_kwargs, dataset)
    if problem.action_kind not in spec.action_kinds:
        raise UserError(
            f"algo {algo_name!r} supports {'/'.join(spec.action_kinds)} actions; env {env_name!r} is {problem.action_kind}"
        )
    agent = spec.make(config, problem)
    settings = RunSettings(
        num_seeds=cfg.seeds,
        seed=cfg.seed,
        num_evals=cfg.num_evals,
        eval_episodes=cfg.eval_episodes if spec.evaluation else 0,
        hp_grid={k: list(v) for k, v in OmegaConf.to_container(cfg.hp_sweep, resolve=True).items()},
        checkpoint=cfg.checkpoint,
        progress=cfg.progress,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    from hybrid_rl.logging import make_loggers

    mirrors = make_loggers(list(cfg.get("loggers", [])), out_dir, OmegaConf.to_container(cfg, resolve=True))
    runner = Runner(agent, problem, default_hparams(spec, config), settings, out_dir=out_dir, log_fn=log,
                    on_rows=tuple(mirrors))
    import jax

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


def _one_line_error(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"error: {text[0] if text else type(err).__name__}"


@hydra.main(version_base="1.3", config_path=None, config_name="config")
def main(cfg: DictConfig) -> None:
    import logging

    from hybrid_rl.datasets import DatasetError

    # orbax logs every checkpoint step at INFO through absl; Hydra's logging config would print them all.
    logging.getLogger("absl").setLevel(logging.WARNING)

    try:
        if cfg.resume is not None:
            run_dir = pathlib.Path(cfg.resume)
            saved = run_dir / "config.yaml"
            if not saved.exists():
                raise UserError(f"cannot resume: {saved} does not exist (is {run_dir} a run directory?)")
            train_from_config(OmegaConf.load(saved), run_dir, resume=True)
            return
        out_dir = pathlib.Path(cfg.out_dir) if cfg.out_dir else pathlib.Path(HydraConfig.get().runtime.output_dir)
        train_from_config(cfg, out_dir)
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
                if name not in registry:
                    return f"error: unknown {key} {name!r}; valid: {', '.join(registry)}"
            if key == "algo":
                chosen_algos = names
    top_level = {f.name for f in dataclasses.fields(RunConfig)}
    for key, _ in pairs:
        head, _, rest = key.partition(".")
        if head in ("hydra", "hp_sweep") or key in ("algo", "env"):
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
                compose(config_name="config", overrides=[a for a in argv if not a.startswith("hydra.")])
        except Exception as err:  # Hydra's validation error for a bad value or type
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            cause = str(err.__cause__).strip().splitlines()[0] if err.__cause__ else ""
            return f"error: {first}" + (f": {cause}" if cause else "")
    return None


def _force_dict_keys(argv: list[str]) -> list[str]:
    """``env.kwargs.X=v`` and ``hp_sweep.X=[...]`` become ``++...``: these are free-form dicts, and Hydra
    would otherwise insist on a leading ``+`` for every key that is not there yet."""
    out = []
    for arg in argv:
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


if __name__ == "__main__":
    sys.argv[1:] = _algo_key_shortcuts(_force_dict_keys(sys.argv[1:]))
    problem = check_overrides(sys.argv[1:])
    if problem is not None:
        print(problem, file=sys.stderr)
        sys.exit(2)
    # Runs go to runs/<algo>/<env>/<time>; sweeps to runs/sweeps/<time>/<overrides>.
    sys.argv += [
        a for a in (
            "hydra.run.dir=runs/${hydra:runtime.choices.algo}/${hydra:runtime.choices.env}/${now:%Y-%m-%d_%H-%M-%S}",
            "hydra.sweep.dir=runs/sweeps/${now:%Y-%m-%d_%H-%M-%S}",
            "hydra.sweep.subdir=${hydra.job.override_dirname}",
            "hydra.job.chdir=false",
        )
        if not any(arg.startswith(a.split("=")[0] + "=") for arg in sys.argv[1:])
    ]
    main()
