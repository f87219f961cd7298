"""Action-free data for the semi-supervised pipeline (``algorithms.action_free``): the labelled/unlabelled
split written as files (``python -m experiments.make_dataset ... labelled_fraction=0.1``) and the union
problem a run trains on (``python -m experiments.run algo=iql dataset=... labelled_fraction=0.1``).

Sources: ``dataset`` is the main file. With ``labelled_fraction`` alone, that fraction of its episodes keep
their actions and the rest lose them. ``labelled_dataset`` (another file, e.g. another quality) supplies the
labelled episodes instead (the same fraction of its episodes), the unlabelled part staying the rest of
``dataset``. ``unlabelled_dataset`` names a file of unlabelled trajectories (D4RL layout; actions, if any,
are ignored): then ``dataset`` is the labelled part (all of it, or ``labelled_fraction`` of its episodes).
"""

from __future__ import annotations

import pathlib
from typing import Optional

from hybrid_rl.datasets import load_d4rl_hdf5, write_d4rl_hdf5
from hybrid_rl.datasets.action_free import (
    load_action_free_hdf5,
    split_by_episodes,
    union_dataset,
    write_action_free_hdf5,
)


def split_paths(path: str | pathlib.Path, labelled_fraction: float, seed: int,
                labelled_path: Optional[str | pathlib.Path] = None) -> tuple[pathlib.Path, pathlib.Path]:
    """Where :func:`write_split` puts the two parts: next to ``path``, named after it and the split."""
    path = pathlib.Path(path)
    tag = f"f{labelled_fraction:g}-s{seed}"
    source = f"-from-{pathlib.Path(labelled_path).stem}" if labelled_path is not None else ""
    return (path.with_name(f"{path.stem}.labelled-{tag}{source}.hdf5"),
            path.with_name(f"{path.stem}.unlabelled-{tag}{source}.hdf5"))


def write_split(path, labelled_fraction: float, seed: int = 0, labelled_path=None) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes the labelled part (D4RL layout) and the unlabelled part (D4RL layout without ``actions``)."""
    raw = load_d4rl_hdf5(path)
    source = load_d4rl_hdf5(labelled_path) if labelled_path is not None else None
    labelled, unlabelled = split_by_episodes(raw, labelled_fraction, seed, source)
    out_labelled, out_unlabelled = split_paths(path, labelled_fraction, seed, labelled_path)
    write_d4rl_hdf5(out_labelled, labelled)
    write_action_free_hdf5(out_unlabelled, unlabelled)
    return out_labelled, out_unlabelled


def union_for(problem, dataset: str, labelled_fraction: Optional[float], seed: int,
              labelled_dataset: Optional[str] = None, unlabelled_dataset: Optional[str] = None):
    """(problem with the union as its dataset, ``ActionFreeDataset``) for a run (see the module doc)."""
    from algorithms.action_free import union_problem

    if labelled_fraction is None and unlabelled_dataset is None:
        raise ValueError("the action-free pipeline needs labelled_fraction=<0..1> or unlabelled_dataset=<file>")
    if labelled_dataset is not None and unlabelled_dataset is not None:
        raise ValueError("give labelled_dataset= (with labelled_fraction=) or unlabelled_dataset=, not both")
    raw = load_d4rl_hdf5(dataset)
    if unlabelled_dataset is not None:
        unlabelled = load_action_free_hdf5(unlabelled_dataset)
        labelled = raw if labelled_fraction is None else split_by_episodes(raw, labelled_fraction, seed)[0]
    else:
        source = load_d4rl_hdf5(labelled_dataset) if labelled_dataset is not None else None
        labelled, unlabelled = split_by_episodes(raw, labelled_fraction, seed, source, drop_actions=False)
    discrete = problem.action_kind == "discrete"
    data = union_dataset(labelled, unlabelled, () if discrete else (problem.action_dim,), discrete)
    info = {"labelled_fraction": labelled_fraction, "unlabelled_dataset": unlabelled_dataset,
            "labelled_dataset": labelled_dataset}
    return union_problem(problem, data, {k: v for k, v in info.items() if v is not None}), data
