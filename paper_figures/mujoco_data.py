"""What the MuJoCo panels of figures F1 and E1 share: the dataset builder's SAC recipe per budget preset, and
scoring with D4RL's reference returns.

The builder's default MuJoCo recipe is D4RL's (1M steps of a 2x256 SAC, ``experiments/dataset_builder.py``),
days on a 2-core CPU, so each preset names a shorter SAC run. ``medium`` is then the checkpoint a third of the way
from random to that run's best checkpoint and ``medium-replay`` its replay buffer up to there, as in D4RL, but
from a weaker expert than D4RL's: the builder's references are kept in each dataset's metadata (and in the figure
JSON's provenance), while the figures score with D4RL's, so the numbers sit on the published tables' scale.
"""

from __future__ import annotations

import dataclasses

# Builder options (``get_or_build_dataset(env, kind, size, **options)``) per preset. F1's halfcheetah sets and
# E1's real data are the same recipe, so the two figures share one cached SAC run per env.
MUJOCO_DATASET_RECIPES = {
    "cpu": dict(train_steps=30_000, warmup_steps=2_000, hidden_sizes=(64, 64), num_checkpoints=10, eval_episodes=5),
    "paper": dict(train_steps=200_000, warmup_steps=10_000, hidden_sizes=(256, 256), num_checkpoints=20,
                  eval_episodes=10),
}
MUJOCO_DATASET_SIZES = {"cpu": 20_000, "paper": 100_000}


def is_mujoco(env: str) -> bool:
    return env.startswith("mujoco_")


def with_d4rl_references(problem):
    """The problem scored with D4RL's reference returns of its family (random and expert), when it is a MuJoCo
    task with D4RL semantics; the builder's own references move to ``builder_ref_{min,max}_return``."""
    from hybrid_rl.datasets import reference_scores

    name = problem.spec.d4rl_name
    if name is None or not is_mujoco(problem.spec.name):
        return problem
    lo, hi = reference_scores(name)
    info = {**problem.dataset_info, "builder_ref_min_return": problem.dataset_info.get("ref_min_return"),
            "builder_ref_max_return": problem.dataset_info.get("ref_max_return"),
            "ref_min_return": lo, "ref_max_return": hi, "d4rl_task": name}
    return dataclasses.replace(problem, dataset_info=info)


# The sets the two figures' MuJoCo suites read (F1: hopper and halfcheetah medium / medium-replay; E1: the
# halfcheetah medium-replay set as the real data of every HalfCheetah pair).
FIGURE_SETS = (("mujoco_hopper", "medium"), ("mujoco_hopper", "medium-replay"), ("mujoco_halfcheetah", "medium"),
               ("mujoco_halfcheetah", "medium-replay"))


def build_sets(preset: str, envs=None, data_dir="data", env_kwargs=None) -> dict:
    """Builds (or finds in the cache) the preset's sets of ``envs`` (default: every env of FIGURE_SETS); one
    SAC run per env serves both kinds. Returns "env:kind" -> path."""
    from experiments.dataset_builder import get_or_build_dataset

    return {f"{env}:{kind}": str(get_or_build_dataset(env, kind, MUJOCO_DATASET_SIZES[preset], env_kwargs=env_kwargs,
                                                      data_dir=data_dir, **MUJOCO_DATASET_RECIPES[preset]))
            for env, kind in FIGURE_SETS if envs is None or env in envs}


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="Build the MuJoCo datasets of figures F1 and E1 for a preset.")
    parser.add_argument("--preset", default="cpu", choices=sorted(MUJOCO_DATASET_RECIPES))
    parser.add_argument("--envs", default=None, help="comma-separated subset (default: mujoco_hopper and "
                        "mujoco_halfcheetah)")
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args(argv)
    for name, path in build_sets(args.preset, args.envs.split(",") if args.envs else None, args.data_dir).items():
        print(f"{name}: {path}", flush=True)


if __name__ == "__main__":
    main()
