"""Hydra structured configs, generated from the registries so they never drift from the code.

Every registered algorithm's frozen ``Config`` dataclass becomes the Hydra group option ``algo=<name>``
(its fields are the overridable keys, typed, so a typo or a wrong type fails before anything compiles);
every registered env becomes ``env=<name>`` with a free ``env.kwargs`` dict of env-parameter overrides.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from experiments.catalog import list_algorithms, list_envs


@dataclasses.dataclass
class EnvNode:
    name: str = MISSING
    kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)


def _mutable_copy(config_cls: type, name: str, leading: tuple = ()) -> type:
    """A writable dataclass with ``config_cls``'s fields and defaults (Hydra nodes must be writable), tuples
    as lists; ``leading`` are ``(name, type, field)`` entries put first."""
    hints = typing.get_type_hints(config_cls)
    fields = list(leading)
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, tuple):
            fields.append((f.name, hints[f.name], dataclasses.field(default_factory=lambda d=default: list(d))))
        else:
            fields.append((f.name, hints[f.name], dataclasses.field(default=default)))
    return dataclasses.make_dataclass(name, fields)


def config_from_values(config_cls: type, values: dict):
    """``config_cls(**values)`` from a node's container: lists become tuples where the field is a tuple."""
    hints = typing.get_type_hints(config_cls)
    return config_cls(**{k: tuple(v) if isinstance(v, list) and typing.get_origin(hints.get(k)) is tuple else v
                         for k, v in values.items()})


def _idm_node():
    from algorithms.action_free import IDMConfig

    return _mutable_copy(IDMConfig, "IDMNode")()


@dataclasses.dataclass
class RunConfig:
    defaults: List[Any] = dataclasses.field(
        default_factory=lambda: [
            {"algo": "sac"},
            {"env": "pendulum"},
            {"override hydra/help": "hybrid_rl"},
            "_self_",
        ]
    )
    algo: Any = MISSING
    env: Any = MISSING
    seeds: int = 1  # independent seeds, vmapped in one compiled program (and sharded over devices)
    seed: int = 0  # root seed of the study; its seed i uses split(key(seed), N)[i] for any N > i
    seed_offset: int = 0  # this run trains the study's seeds [seed_offset, seed_offset + seeds)
    # 0: all seeds vmapped at once; b: blocks of b seeds one after another, so that a study split into jobs
    # of b seeds gives the very numbers of one run with seed_block=b (docs/cluster.md)
    seed_block: int = 0
    # The run's length, as each algorithm's spec declares it (hybrid_rl.algorithm.Budget): env steps for
    # anything that interacts (on-policy: whole iterations), gradient steps for offline-only algorithms,
    # online env steps for two-phase ones; None keeps the algorithm's default.
    total_steps: Optional[int] = None
    offline_steps: Optional[int] = None  # the first (offline) phase of a two-phase algorithm (iql, cal_ql)
    num_evals: int = 10  # evaluations (= chunks) per phase
    eval_episodes: int = 10  # episodes per evaluation, run in parallel
    deterministic_eval: bool = True  # evaluate every algorithm's deterministic policy; False: sampled actions
    dataset: Optional[str] = None  # a D4RL-layout HDF5 path, or a builder kind (random, medium, expert, ...)
    phase: Optional[str] = None  # offline (online steps 0) or offline_to_online (the default), for iql / cal_ql
    dataset_size: int = 100_000  # transitions, when ``dataset`` is a kind the builder makes (cached)
    data_dir: Optional[str] = None  # builder cache (default $HYBRID_RL_DATA_DIR or ./data)
    # more builder recipe fields when ``dataset`` is a kind (dataset_options.train_steps=20000, ...)
    dataset_options: Dict[str, Any] = dataclasses.field(default_factory=dict)
    hp_sweep: Dict[str, List[float]] = dataclasses.field(default_factory=dict)  # traced hparam -> values
    out_dir: Optional[str] = None  # default: runs/<algo>/<env>/<time> (Hydra's run dir)
    resume: Optional[str] = None  # a run directory to continue from its last checkpoint
    checkpoint: bool = True
    # seconds between (asynchronous) checkpoints; a phase's last chunk is always saved; 0: after every chunk
    checkpoint_interval_s: float = 30.0
    # persistent XLA compilation cache: a repeated run reads its compiled programs instead of compiling them
    # again (default ~/.cache/hybrid-rl/jax, or $HYBRID_RL_JAX_CACHE); "" switches it off
    compile_cache: Optional[str] = None
    progress: bool = True
    loggers: List[str] = dataclasses.field(default_factory=list)  # extra mirrors: tensorboard, wandb
    # Action-free pipeline (algorithms/action_free.py): an inverse dynamics model labels the unlabelled
    # trajectories, then algo trains on the union. Any of the three dataset keys switches it on.
    labelled_fraction: Optional[float] = None  # keep actions on this fraction of dataset's episodes
    labelled_dataset: Optional[str] = None  # the labelled episodes come from this file or kind instead
    unlabelled_dataset: Optional[str] = None  # a file (or kind) of unlabelled trajectories; dataset is labelled
    idm: Any = dataclasses.field(default_factory=_idm_node)  # the inverse dynamics model: idm.window=2 ...
    # One run over several processes (hosts); see docs/cluster.md. Inside a SLURM step of several tasks
    # these are read from SLURM's environment instead.
    coordinator: Optional[str] = None  # host:port of process 0
    num_processes: Optional[int] = None
    process_id: Optional[int] = None


def _node_class(name: str, config_cls: type) -> type:
    """A mutable copy of ``config_cls`` with a leading ``name`` field (Hydra nodes must be writable)."""
    return _mutable_copy(config_cls, f"{config_cls.__module__.split('.')[-1]}_{name}_node",
                         leading=(("name", str, dataclasses.field(default=name)),))


def algo_config_from_node(node) -> tuple[str, Any]:
    """(algorithm name, its frozen Config) from the composed ``cfg.algo`` node."""
    from experiments.catalog import get_algorithm

    values = OmegaConf.to_container(node, resolve=True)
    name = values.pop("name")
    return name, config_from_values(get_algorithm(name).config_cls, values)


def help_template() -> str:
    algos = "\n".join(f"  {n:<24} {s.description}" for n, s in list_algorithms().items())
    envs = "\n".join(f"  {n:<34} {s.description}" for n, s in list_envs().items())
    return (
        "hybrid-rl: train an algorithm on an environment, many seeds in one compiled program.\n\n"
        "  python -m experiments.run algo=<algo> env=<env> [key=value ...]\n"
        "  python -m experiments.run algo=sac env=pendulum seeds=8 total_steps=50000\n"
        "  python -m experiments.run algo=rlpd env=pendulum dataset=data/pendulum-medium.hdf5 algo.utd=10\n"
        "  python -m experiments.run algo=sac env=pendulum '+hp_sweep.actor_lr=[1e-3,3e-4]' seeds=4\n"
        "  python -m experiments.run -m algo=sac env=pendulum,mountaincar_continuous seed=0,1\n"
        "  python -m experiments.run resume=runs/sac/pendulum/<time>\n"
        "  python -m experiments.run algo=sac --cfg job        (show every key of the composed config)\n\n"
        f"Algorithms (algo=...):\n{algos}\n\nEnvironments (env=...):\n{envs}\n"
        f"  {'none':<34} no simulator: train offline on dataset=<file>, no evaluation\n\n"
        "== Config ==\n$CONFIG\n"
    )


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="config", node=RunConfig)
    for name, spec in list_algorithms().items():
        cs.store(group="algo", name=name, node=_node_class(name, spec.config_cls))
    for name in list_envs():
        cs.store(group="env", name=name, node=EnvNode(name=name))
    cs.store(group="env", name="none", node=EnvNode(name="none"))  # a dataset file with no simulator
    cs.store(
        group="hydra/help",
        name="hybrid_rl",
        node={"app_name": "hybrid-rl", "header": "", "footer": "", "template": help_template()},
    )
