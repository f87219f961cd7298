"""RLPD: Reinforcement Learning with Prior Data (Ball, Smith, Kostrikov, Levine; ICML 2023).

RLPD is SAC with three changes, so this file is only its configuration (defaults from the authors'
locomotion configs, see shared/specs/deep_algorithms.md 6.2) on top of ``algorithms/sac.py``:

* symmetric sampling: every batch is half offline data, half online replay (``offline_fraction=0.5``);
* a LayerNorm critic ensemble of 10 whose target is the min over 2 members drawn at random per update,
  and an actor that maximises the ensemble mean;
* a high update-to-data ratio (20 critic updates per env step, one actor update).
"""

from __future__ import annotations

import dataclasses

from algorithms import sac
from hybrid_rl.algorithm import AlgorithmSpec, register


@dataclasses.dataclass(frozen=True)
class Config(sac.Config):
    warmup_steps: int = 5_000  # random actions before learning (RLPD's start_training)
    utd: int = 20  # critic updates per env step
    num_critics: int = 10
    num_min_critics: int = 2
    critic_layer_norm: bool = True
    actor_q_reduce: str = "mean"
    backup_entropy: bool = True
    init_temperature: float = 1.0
    target_entropy_scale: float = 0.5  # target entropy -|A|/2
    offline_fraction: float = 0.5  # symmetric sampling


def make(config: Config, problem):
    if problem.dataset is None:
        raise ValueError(
            "rlpd needs an offline dataset: pass dataset=<path to a D4RL-layout .hdf5> "
            "(make one with `python -m experiments.make_dataset`)"
        )
    return sac.make(config, problem, name="rlpd")


register(
    AlgorithmSpec(
        name="rlpd",
        description="RLPD: SAC + symmetric offline/online sampling, LayerNorm 10-critic ensemble, UTD 20.",
        config_cls=Config,
        make=make,
        traced=sac.TRACED,
        dataset="required",
        action_kinds=("continuous",),
        paper="Ball, Smith, Kostrikov, Levine. Efficient Online RL with Offline Data. ICML 2023",
    )
)
