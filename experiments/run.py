"""Train any registered algorithm on any registered env: ``python -m experiments.run algo=sac env=pendulum``.

Seeds are vmapped in one compiled program (``seeds=16``), a grid of traced hyper-parameters is a second
vmapped axis (``+hp_sweep.actor_lr=[1e-3,3e-4]``), ``-m`` runs a Hydra sweep of separate runs, and
``resume=<run dir>`` continues a killed run from its last checkpoint to the same final numbers.
Outputs go to ``runs/<algo>/<env>/<time>/``: config.yaml, metrics.csv (one row per seed per evaluation),
summary.json, eval_returns.json (raw per-episode returns), checkpoints/ and learning_curve.png.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
import time
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from hybrid_rl import distributed

if __name__ == "__main__":  # coordinator=... on the command line: join the JAX job before any device use
    try:
        distributed.initialize_from_argv(sys.argv[1:])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

from experiments.catalog import NO_ENV  # noqa: E402
from experiments.config import algo_config_from_node, register_configs  # noqa: E402

register_configs()


class UserError(Exception):
    """Bad input: printed as one line, never a traceback."""


def _names_env(overrides) -> bool:
    """Whether the command-line overrides choose an env (``env=...``, ``+env=...``, ``~env``...)."""
    return any(o.split("=", 1)[0].lstrip("+~") == "env" for o in overrides)


def resolve_dataset(cfg: DictConfig, env_name: str, env_kwargs: dict, log=print) -> Optional[str]:
    """``dataset`` is a file path, or a kind (``medium``, ``medium_replay``...) that the dataset builder
    makes for this env (once: it is cached under the data dir with a hash of its recipe)."""
    from experiments.dataset_builder import KINDS, get_or_build_dataset

    dataset = cfg.dataset
    if dataset is None:
        return None
    kind = str(dataset).replace("_", "-")
    if kind in KINDS and not pathlib.Path(dataset).exists():
        log(f"dataset: {kind} data for {env_name} ({cfg.dataset_size} transitions) from the builder (cached)")
        options = cfg.get("dataset_options")
        options = OmegaConf.to_container(options, resolve=True) if options else {}  # an empty node is falsy
        path = get_or_build_dataset(
            env_name, kind, int(cfg.dataset_size), seed=int(cfg.seed), env_kwargs=env_kwargs or None,
            data_dir=cfg.data_dir, **options,
        )
        return str(path)
    dataset = str(pathlib.Path(dataset).expanduser())
    if not pathlib.Path(dataset).exists():
        raise UserError(
            f"dataset file not found: {dataset} (a path to a D4RL-layout .hdf5, or a kind: {', '.join(KINDS)})"
        )
    return str(dataset)


# Top-level run values and their smallest valid value; checked before anything is compiled or written.
RUN_VALUE_LIMITS = {"seeds": 1, "num_evals": 1, "eval_episodes": 0, "dataset_size": 1, "total_steps": 0,
                    "offline_steps": 0, "seed_offset": 0, "seed_block": 0}


def check_run_values(values: dict) -> str | None:
    """A one-line error for the first top-level value below its limit (``seeds=0``), or None."""
    for key, lowest in RUN_VALUE_LIMITS.items():
        value = values.get(key)
        if value is None:
            continue
        try:
            number = int(value)
        except (TypeError, ValueError):
            return f"error: {key} must be an integer >= {lowest}, got {value!r}"
        if number < lowest or str(value).strip() != str(number):
            return f"error: {key} must be an integer >= {lowest}, got {value!r}"
    return None


STATUS_FILE = "status.json"


def write_status(out_dir: pathlib.Path, status: str, **extra) -> None:
    """``status.json``: running, complete, failed or interrupted. Only a complete run's numbers are results
    (``summary.json`` is written when the last chunk is done; ``experiments.aggregate`` reads only those)."""
    from hybrid_rl.logging import write_json

    write_json(out_dir / STATUS_FILE, {"status": status, **extra})


def record_config(cfg: DictConfig, algo_name: str, config) -> None:
    """Writes the values the run actually uses (after the budget and phase are applied) into ``cfg.algo``,
    so config.yaml records them and ``resume=`` rebuilds the same agent."""
    values = dataclasses.asdict(config)
    with open_dict(cfg):
        cfg.algo = OmegaConf.create({"name": algo_name, **{k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in values.items()}})
        cfg.total_steps = None  # applied: the algo values above are the run's length
        if "offline_steps" in cfg:
            cfg.offline_steps = None


def report_dataset_size(path: str, problem, requested: int, log=print) -> None:
    """One line when a built dataset does not hold the ``dataset_size`` transitions asked for, and why."""
    from hybrid_rl.datasets import load_d4rl_hdf5

    info = problem.dataset_info
    raw = None if "num_rows" in info else load_d4rl_hdf5(path)  # the loaded problem already counted them
    rows = int(info["num_rows"]) if raw is None else int(len(raw["rewards"]))
    loaded = int(info.get("num_transitions", rows))
    if rows == requested and loaded == requested:
        return
    why = []
    if rows != requested:
        raw = load_d4rl_hdf5(path) if raw is None else raw
        kind = str(raw.get("metadata/kind", ""))
        why.append(f"the file holds {rows} rows" + (
            " (medium-replay is the training run's buffer up to the medium policy, which was shorter)"
            if kind == "medium-replay" and rows < requested else ""))
    if loaded != rows:
        why.append(f"{rows - loaded} rows have no next observation (a stream's end) and are not transitions")
    log(f"dataset_size={requested}: delivered {loaded} transitions; " + "; ".join(why))


def train_from_config(cfg: DictConfig, out_dir: pathlib.Path, resume: bool = False, log=print,
                      env_given: bool = True) -> dict:
    """Builds the problem and agent from a composed config and runs it; returns the summary.

    ``env_given=False`` (no ``env=`` on the command line) lets a dataset file choose its env
    (:func:`problem_for_dataset_file`); the choice is saved in config.yaml's ``env.name``."""
    from experiments.catalog import (
        apply_budget,
        apply_phase,
        build_problem,
        default_hparams,
        get_algorithm,
        make_agent,
        problem_for_dataset_file,
    )
    from hybrid_rl.runner import Runner, RunSettings

    error = check_run_values({k: cfg.get(k) for k in RUN_VALUE_LIMITS})
    if error is not None:
        raise UserError(error)
    use_compile_cache(cfg.get("compile_cache"))
    algo_name, config = algo_config_from_node(cfg.algo)
    spec = get_algorithm(algo_name)
    phase = cfg.get("phase")
    env_name = cfg.env.name
    env_kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    if env_name == NO_ENV and cfg.dataset is None:
        raise UserError("env=none (no simulator) needs dataset=<path to a D4RL-layout .hdf5>")
    if spec.dataset == "required" and cfg.dataset is None:
        raise UserError(
            f"algo {algo_name!r} needs offline data: pass dataset=<path to a D4RL-layout .hdf5> or a kind the "
            "builder makes (dataset=medium)"
        )
    dataset = resolve_dataset(cfg, env_name, env_kwargs, log)
    if dataset is not None and (env_name == NO_ENV or not env_given):
        problem = problem_for_dataset_file(env_name, env_kwargs, dataset, log, simulate=env_name != NO_ENV)
        cfg.env.name = problem.env_name if problem.has_simulator else NO_ENV
        env_name = problem.env_name
    else:
        problem = build_problem(env_name, env_kwargs, dataset)
    if dataset is not None and dataset != cfg.dataset:  # a kind the builder made: say what it delivered
        report_dataset_size(dataset, problem, int(cfg.dataset_size), log)
    config = apply_budget(spec, config, problem, cfg.total_steps, cfg.get("offline_steps"), log,
                          offline_only=phase == "offline" or not problem.has_simulator)
    config = apply_phase(spec, config, phase, problem.has_simulator, log)
    if any(cfg.get(k) is not None for k in ("labelled_fraction", "labelled_dataset", "unlabelled_dataset")):
        problem, agent = _action_free_agent(cfg, spec, config, problem, dataset, env_name, env_kwargs, log)
    else:
        agent = make_agent(spec, config, problem)
    task = problem.dataset_info.get("d4rl_task")
    if task is not None and problem.has_simulator:
        lo, hi = problem.reference_returns()
        log(f"D4RL-normalized scores use {task}'s reference returns (random {lo:.1f}, expert {hi:.1f})")
    record_config(cfg, algo_name, config)
    settings = RunSettings(
        num_seeds=cfg.seeds,
        seed=cfg.seed,
        seed_offset=int(cfg.get("seed_offset", 0)),
        num_evals=cfg.num_evals,
        eval_episodes=cfg.eval_episodes if spec.evaluation and problem.has_simulator else 0,
        deterministic_eval=cfg.deterministic_eval,
        hp_grid={k: list(v) for k, v in OmegaConf.to_container(cfg.hp_sweep, resolve=True).items()},
        checkpoint=cfg.checkpoint,
        checkpoint_interval_s=float(cfg.get("checkpoint_interval_s", 0.0)),
        seed_block=int(cfg.get("seed_block", 0)),
        progress=cfg.progress,
        label=f"{algo_name} on {env_name}",
    )
    import jax

    out_dir.mkdir(parents=True, exist_ok=True)
    primary = jax.process_index() == 0
    if primary:
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        write_status(out_dir, "running")
    from hybrid_rl.logging import make_loggers

    mirrors = make_loggers(list(cfg.get("loggers", [])) if primary else [], out_dir,
                           OmegaConf.to_container(cfg, resolve=True))
    runner = Runner(agent, problem, default_hparams(spec, config), settings, out_dir=out_dir, log_fn=log,
                    on_rows=tuple(mirrors))
    log(
        f"{algo_name} on {env_name}: {settings.num_seeds} seed(s) x {runner.num_hp} hparam point(s) in one "
        f"program on {len(jax.devices())} {jax.devices()[0].platform} device(s); outputs in {out_dir}"
    )
    t0 = time.perf_counter()
    _, summary = runner.run(resume=resume)
    if primary:
        write_status(out_dir, "complete")
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


def use_compile_cache(directory: str | None) -> None:
    """Points JAX's persistent compilation cache at ``directory`` (None: $HYBRID_RL_JAX_CACHE, else
    ~/.cache/hybrid-rl/jax; "": off). Most of a short run's time is XLA compilation; with the cache a
    repeated run (the same program: algorithm, sizes, seeds) reads its programs back in seconds. Set before
    the first compilation; JAX keys every entry by the program, the backend and the XLA flags."""
    import jax

    if directory is None:
        directory = os.environ.get("HYBRID_RL_JAX_CACHE", os.path.expanduser("~/.cache/hybrid-rl/jax"))
    if not directory:
        return
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def _action_free_agent(cfg, spec, config, problem, dataset, env_name, env_kwargs, log):
    """The action-free pipeline around ``spec.make`` (algorithms/action_free.py): the union problem and the
    agent whose first phases fit the inverse dynamics model and label the unlabelled transitions."""
    from algorithms import action_free
    from experiments.action_free_data import union_for

    if dataset is None:
        raise UserError("the action-free pipeline needs dataset=<labelled data: a file or a builder kind>")
    if spec.dataset == "none":
        raise UserError(f"algo {spec.name!r} uses no offline data, so it cannot learn from action-free trajectories")
    others = {}
    for key in ("labelled_dataset", "unlabelled_dataset"):
        if cfg.get(key) is not None:
            others[key] = resolve_dataset(OmegaConf.merge(cfg, {"dataset": cfg[key]}), env_name, env_kwargs, log)
    problem, data = union_for(problem, dataset, cfg.get("labelled_fraction"), int(cfg.seed), **others)
    _, idm_config = _idm_config(cfg.idm)
    log(f"action-free: {data.num_labelled} labelled and {int((~data.labelled).sum())} unlabelled transitions; "
        f"an inverse dynamics model (window {idm_config.window}, ensemble {idm_config.ensemble_size}) labels the latter")
    return problem, action_free.make(spec.make, config, idm_config, problem, data)


def _idm_config(node):
    from algorithms.action_free import IDMConfig
    from experiments.config import config_from_values

    return "idm", config_from_values(IDMConfig, OmegaConf.to_container(node, resolve=True))


def _has_checkpoint(out_dir: pathlib.Path, cfg: DictConfig) -> bool:
    """Whether ``out_dir`` holds a checkpoint of this very run (same config.yaml). A job that the scheduler
    preempted or timed out is started again in its own directory (submitit's requeue), and continues from
    there; a directory holding a different run is an error rather than a silent mix of two runs."""
    saved = out_dir / "config.yaml"
    if not saved.exists() or not has_checkpoint(out_dir):
        return False
    previous = OmegaConf.load(saved)
    # config.yaml records the values the run used (the budget applied, a dataset file's env chosen): compare
    # what the command line chose, not what was derived from it.
    derived = {"algo", "total_steps", "offline_steps"}
    if OmegaConf.to_yaml({k: v for k, v in previous.items() if k not in derived and k != "env"}) != OmegaConf.to_yaml(
            {k: v for k, v in cfg.items() if k not in derived and k != "env"}) or previous.algo.name != cfg.algo.name:
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

    # orbax logs every checkpoint step at INFO through absl, and a "waiting for previous save" WARNING whenever a
    # chunk ends before the last save did; Hydra's logging config would print them all into the progress bar.
    logging.getLogger("absl").setLevel(logging.ERROR)

    resume = cfg.resume is not None
    out_dir = None
    try:
        multi_process = distributed.initialize(cfg.get("coordinator"), cfg.get("num_processes"),
                                               cfg.get("process_id"))
        log = print if distributed.is_primary() else (lambda *_: None)
        if resume:
            out_dir = pathlib.Path(cfg.resume)
        else:
            hydra_cfg = HydraConfig.get()
            out_dir = pathlib.Path(cfg.out_dir) if cfg.out_dir else pathlib.Path(hydra_cfg.runtime.output_dir)
            if multi_process:  # every process writes into process 0's run directory (named by its clock)
                out_dir = pathlib.Path(distributed.broadcast_text(str(out_dir)))
            # Hydra makes its run directory up front; a run with out_dir= must not leave it empty
            hydra_dir = pathlib.Path(hydra_cfg.runtime.output_dir)
            if hydra_dir.resolve() != out_dir.resolve():
                remove_empty_run_dir(hydra_dir)
        stop_on_ctrl_c(out_dir)
        if resume:
            saved = out_dir / "config.yaml"
            if not saved.exists():
                raise UserError(f"cannot resume: {saved} does not exist (is {out_dir} a run directory?)")
            train_from_config(OmegaConf.load(saved), out_dir, resume=True, log=log)
            return
        env_given = _names_env(HydraConfig.get().overrides.task)
        resume = _has_checkpoint(out_dir, cfg)
        if resume:
            log(f"{out_dir} already holds this run's checkpoint (a requeued job): resuming from it")
        train_from_config(cfg, out_dir, resume=resume, log=log, env_given=env_given)
    except (UserError, DatasetError, ValueError, KeyError, FileNotFoundError, FloatingPointError, ImportError) as err:
        message = _one_line_error(err)
        if not resume and out_dir is not None:
            settle_failed_run(out_dir, "failed", message)
        print(message, file=sys.stderr)
        sys.exit(2)


def has_checkpoint(out_dir: pathlib.Path) -> bool:
    ckpt = out_dir / "checkpoints"
    return ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir())


def settle_failed_run(out_dir: pathlib.Path, status: str, message: str) -> None:
    """A run that stopped before its first checkpoint leaves no folder; a later one keeps its checkpoints and
    says in status.json that it is not a result, with the command that resumes it."""
    import shutil

    if not out_dir.exists():
        return
    if has_checkpoint(out_dir):
        write_status(out_dir, status, error=message, resume=f"python -m experiments.run resume={out_dir}")
    else:
        shutil.rmtree(out_dir, ignore_errors=True)
        remove_empty_run_dir(out_dir.parent)  # runs/<algo>/<env> when they held only this run


def remove_empty_run_dir(path: pathlib.Path) -> None:
    """Removes ``path`` and its parents up to ``runs/`` while they are empty (runs/<algo>/<env>/<time>)."""
    path = path.resolve()
    if "runs" not in path.parts:  # only the default layout; never a user's own folders
        return
    for _ in range(4):
        try:
            path.rmdir()  # only succeeds when empty
        except OSError:
            return
        if path.name == "runs":
            return
        path = path.parent


_WAKEUP_SOCKETS: list = []


def stop_on_ctrl_c(out_dir: pathlib.Path) -> None:
    """Ctrl-C stops the run within a fraction of a second, even while a compiled chunk or a compilation holds
    the main thread (a Python signal handler would wait for it): the C-level handler wakes a watcher thread
    through ``signal.set_wakeup_fd``, which prints one line with the ``resume=`` command and exits. The last
    checkpoint is whole (orbax commits a step by renaming it into place)."""
    import signal
    import socket
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    _WAKEUP_SOCKETS.append((reader, writer))  # keep both open for the life of the process (the fd is used by C)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGINT, lambda *_: None)  # the watcher acts; no KeyboardInterrupt traceback

    def watch():
        # The wakeup fd receives the number of every signal that has a Python handler (a library's SIGTERM
        # or SIGCHLD handler too): act on SIGINT only.
        while True:
            byte = reader.recv(1)
            if not byte:  # the socket was closed: nothing more can arrive
                return
            if byte == bytes([signal.SIGINT]):
                break
        if has_checkpoint(out_dir):
            write_status(out_dir, "interrupted", resume=f"python -m experiments.run resume={out_dir}")
            line = f"interrupted: resume with  python -m experiments.run resume={out_dir}"
        else:
            settle_failed_run(out_dir, "interrupted", "")
            line = "interrupted before the first checkpoint: nothing to resume, the run folder was removed"
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        os._exit(130)

    threading.Thread(target=watch, daemon=True, name="ctrl-c").start()


def check_overrides(argv: list[str]) -> str | None:
    """Validates command-line overrides before Hydra sees them; returns a one-line error or None.

    Hydra's own messages for an unknown option or key span many lines; researchers get one line that
    names the bad value and lists the valid ones.
    """
    from experiments.catalog import list_algorithms, list_envs
    from experiments.config import RunConfig

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
    error = check_run_values({k: v for k, v in pairs if k in RUN_VALUE_LIMITS and "," not in v})
    if error is not None:
        return error
    top_level = {f.name for f in dataclasses.fields(RunConfig)}
    for key, _ in pairs:
        head, _, rest = key.partition(".")
        if head in ("hydra", "hp_sweep", "dataset_options") or key.startswith("hydra/") or key in ("algo", "env"):
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
        if arg.startswith(("env.kwargs.", "hp_sweep.", "dataset_options.", "+env.kwargs.", "+hp_sweep.",
                           "+dataset_options.")) and "=" in arg:
            arg = "++" + arg.lstrip("+")
        out.append(arg)
    return out


def _algo_key_shortcuts(argv: list[str]) -> list[str]:
    """``demos=100`` means ``algo.demos=100`` when ``demos`` is not a top-level key but a field of every
    chosen algorithm's Config (the papers' own option names work as written)."""
    from experiments.catalog import list_algorithms
    from experiments.config import RunConfig

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


# Hydra's flags that take a value (``--cfg job``, ``-cn config``); ``--info`` takes an optional one.
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                     "--config-dir", "-cd", "--experimental-rerun", "--info", "-i"}
_INFO_VALUES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def split_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """(overrides, flags with their values), so ``algo=rlpd --cfg job`` and ``--help`` anywhere on the line
    reach Hydra in an order its parser accepts."""
    overrides, flags = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            flags.append(arg)
            takes_value = arg in _FLAGS_WITH_VALUE and i + 1 < len(argv)
            if takes_value and arg in ("--info", "-i") and argv[i + 1] not in _INFO_VALUES:
                takes_value = False
            if takes_value:
                flags.append(argv[i + 1])
                i += 1
        else:
            overrides.append(arg)
        i += 1
    return overrides, flags


if __name__ == "__main__":
    sys.argv[1:] = _algo_key_shortcuts(_force_dict_keys(sys.argv[1:]))
    problem = check_overrides(sys.argv[1:])
    if problem is not None:
        print(problem, file=sys.stderr)
        sys.exit(2)
    # Runs go to runs/<algo>/<env>/<time> (<env>: the D4RL task or file name of a dataset file given
    # without env=); sweeps to runs/sweeps/<time>/<overrides>.
    env_dir = _dataset_env_dir(sys.argv[1:]) or "${hydra:runtime.choices.env}"
    overrides, flags = split_flags(sys.argv[1:])
    overrides += [
        a for a in (
            "hydra.run.dir=runs/${hydra:runtime.choices.algo}/" + env_dir + "/${now:%Y-%m-%d_%H-%M-%S}",
            "hydra.sweep.dir=runs/sweeps/${now:%Y-%m-%d_%H-%M-%S}",
            "hydra.sweep.subdir=${hydra.job.override_dirname}",
            "hydra.job.chdir=false",
            "hydra.output_subdir=null",  # config.yaml in the run directory records the run's config
        )
        if not any(arg.startswith(a.split("=")[0] + "=") for arg in overrides)
    ]
    # Hydra's parser takes the overrides as one positional list: keep them together, flags after them.
    sys.argv[1:] = overrides + flags
    # Launchers (submitit, Ray) pickle the task function. Taken from the importable module it travels by
    # reference; a function of __main__ would be pickled by value with the objects it holds (Ray's driver
    # replaces builtins.print, so a captured print no longer pickles).
    from experiments.run import main as task_main

    task_main()
