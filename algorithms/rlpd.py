"""RLPD: Reinforcement Learning with Prior Data (Ball, Smith, Kostrikov, Levine; ICML 2023).

RLPD is SAC with three changes, so this file is only its configuration (defaults from the authors'
locomotion configs, ikostrikov/rlpd; docs/algorithms/rlpd.md) on top of ``algorithms/_sac_core.py``:

* symmetric sampling: every batch is half offline data, half online replay (``offline_fraction=0.5``);
* a LayerNorm critic ensemble of 10 whose target is the min over 2 members drawn at random per update,
  and an actor that maximises the ensemble mean;
* a high update-to-data ratio (20 critic updates per env step, one actor update).
"""

from __future__ import annotations

from algorithms import _sac_core as sac
from hybrid_rl.algorithm import AlgorithmSpec, Budget

Config = sac.RLPDConfig  # the settings live with the SAC core, which DARC's rlpd_sim reuses


def make(config: Config, problem):
    problem.require_dataset("rlpd")
    return sac.make(config, problem, name="rlpd")


SPEC = AlgorithmSpec(
    name="rlpd",
    description="RLPD: SAC + symmetric offline/online sampling, LayerNorm 10-critic ensemble, UTD 20.",
    config_cls=Config,
    make=make,
    traced=sac.TRACED,
    dataset="required",
    action_kinds=("continuous",),
    paper="Ball, Smith, Kostrikov, Levine. Efficient Online RL with Offline Data. ICML 2023",
    budget=Budget("total_steps", "env_steps", warmup_field="warmup_steps"),
)
