"""Offline datasets in D4RL's HDF5 layout: I/O, ``qlearning_dataset``, normalized scores."""

from hybrid_rl.datasets.d4rl import (
    MAX_EPISODE_STEPS,
    REF_SCORES,
    DatasetError,
    UnknownEnvError,
    d4rl_family,
    default_d4rl_dir,
    episode_returns,
    infer_d4rl_task,
    load_d4rl_hdf5,
    normalized_score,
    qlearning_dataset,
    reference_returns_from_metadata,
    reference_scores,
    to_transitions,
    write_d4rl_hdf5,
)

__all__ = [
    "DatasetError",
    "UnknownEnvError",
    "REF_SCORES",
    "MAX_EPISODE_STEPS",
    "default_d4rl_dir",
    "load_d4rl_hdf5",
    "write_d4rl_hdf5",
    "qlearning_dataset",
    "to_transitions",
    "episode_returns",
    "reference_scores",
    "normalized_score",
    "reference_returns_from_metadata",
    "infer_d4rl_task",
    "d4rl_family",
]
