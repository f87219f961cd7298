"""Build (or find in the cache) a D4RL-layout dataset for a registered env.

    python -m experiments.make_dataset env=pendulum kind=medium size=100000 [seed=0 data_dir=data policy=sac]

Any other ``DatasetRecipe`` field can be set the same way (``train_steps=30000``, ``hidden_sizes=64,64``,
``deterministic=true``, ``expert_epsilon=0.1``, ``num_envs=10``...), env parameters as
``env_kwargs.NAME=VALUE`` (or ``env.kwargs.NAME=VALUE``). Prints the file's path, its number of
transitions, the mean return of its complete episodes and the normalisation references. The file is
only built when no file with the same recipe exists under the data dir (``data_dir=``, else
``$HYBRID_RL_DATA_DIR``, else ``./data``). Bad input is one line on stderr and exit status 2.

Action-free split (semi-supervised offline RL): ``labelled_fraction=0.1`` also writes, next to the file, a
labelled part (that fraction of its episodes, with actions) and an unlabelled part (the other episodes,
D4RL layout without ``actions``); ``labelled_kind=random`` takes the labelled episodes from the ``random``
dataset of the same env and size instead (a different quality than the unlabelled part).
"""

from __future__ import annotations

import ast
import dataclasses
import sys

USAGE = (
    "usage: python -m experiments.make_dataset env=NAME kind=KIND size=N [seed=0] [data_dir=DIR] "
    "[policy=auto|sac|scripted|oracle] [labelled_fraction=F [labelled_kind=KIND]] [FIELD=VALUE ...] "
    "[env_kwargs.NAME=VALUE ...]"
)


SPLIT_KEYS = {"labelled_fraction", "labelled_kind"}  # the action-free split (module doc)


class UsageError(Exception):
    """Bad command line: printed as one line."""


def _value(text: str):
    """``3`` -> 3, ``0.5`` -> 0.5, ``true`` -> True, ``64,64`` -> (64, 64), anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return tuple(value) if isinstance(value, list) else value


def parse_args(argv: list[str]) -> tuple[dict, dict]:
    """``key=value`` pairs -> (options, env kwargs). Keys are checked against ``DatasetRecipe``'s fields."""
    from experiments.dataset_builder import DatasetRecipe

    allowed = {f.name for f in dataclasses.fields(DatasetRecipe)} - {"env_kwargs"} | {"data_dir"} | SPLIT_KEYS
    options: dict = {}
    env_kwargs: dict = {}
    for arg in argv:
        if "=" not in arg:
            raise UsageError(f"expected key=value, got {arg!r}; {USAGE}")
        key, text = arg.split("=", 1)
        key = key.lstrip("+")
        for prefix in ("env_kwargs.", "env.kwargs."):
            if key.startswith(prefix):
                env_kwargs[key[len(prefix):]] = _value(text)
                break
        else:
            if key not in allowed:
                raise UsageError(f"unknown key {key!r}; keys: {', '.join(sorted(allowed))}, env_kwargs.NAME")
            options[key] = text if key in ("env", "kind", "policy", "data_dir", "labelled_kind") else _value(text)
    for required in ("env", "kind", "size"):
        if required not in options:
            raise UsageError(f"missing {required}=...; {USAGE}")
    if isinstance(options.get("hidden_sizes"), int):
        options["hidden_sizes"] = (options["hidden_sizes"],)
    return options, env_kwargs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        from experiments.catalog import list_envs
        from experiments.dataset_builder import KINDS, available_policies

        print(__doc__.strip())
        print(f"\n{USAGE}\n\nkinds: {', '.join(KINDS)}\nenvs and their policy sources (first = auto):")
        for name, spec in list_envs().items():
            sources = available_policies(name, spec.action_kind)
            print(f"  {name:36s} {', '.join(sources) if sources else '(none)'}")
        return 0
    from experiments.catalog import UnknownEnvError
    from experiments.dataset_builder import DatasetRecipeError, describe_dataset, get_or_build_dataset
    from hybrid_rl.datasets import DatasetError

    try:
        options, env_kwargs = parse_args(argv)
        env, kind, size = options.pop("env"), options.pop("kind"), options.pop("size")
        if not isinstance(size, int):
            raise UsageError(f"size must be an integer, got {size!r}")
        split = {k: options.pop(k) for k in SPLIT_KEYS if k in options}
        path = get_or_build_dataset(env, kind, size, env_kwargs=env_kwargs, **options)
        info = describe_dataset(path)
        parts = _action_free_split(split, env, size, env_kwargs, options, path) if split else None
    except (UsageError, DatasetRecipeError, UnknownEnvError, DatasetError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except (TypeError, ValueError) as err:  # e.g. a bad env_kwargs value or field type
        print(f"error: {type(err).__name__}: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(f"path: {info['path']}")
    print(f"transitions: {info['num_transitions']}")
    print(f"episodes (complete): {info['num_episodes']}")
    print(f"mean episode return: {info['mean_episode_return']:.3f}")
    print(f"ref_min_return (random): {info['ref_min_return']:.3f}")
    print(f"ref_max_return (expert): {info['ref_max_return']:.3f}")
    print(f"algorithm: {info['algorithm']}  build seconds: {info['build_seconds']:.1f}")
    if parts is not None:
        print(f"labelled part: {parts[0]}")
        print(f"unlabelled part (no actions): {parts[1]}")
    return 0


def _action_free_split(split: dict, env, size, env_kwargs, options, path):
    """Writes the labelled and unlabelled parts of ``path`` (module doc); returns their paths."""
    from experiments.action_free_data import write_split
    from experiments.dataset_builder import get_or_build_dataset

    if "labelled_fraction" not in split:
        raise UsageError("labelled_kind= needs labelled_fraction=")
    fraction = split["labelled_fraction"]
    if not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
        raise UsageError(f"labelled_fraction must be a number in (0, 1], got {fraction!r}")
    labelled_path = None
    if "labelled_kind" in split:
        labelled_path = get_or_build_dataset(env, split["labelled_kind"], size, env_kwargs=env_kwargs, **options)
    return write_split(path, float(fraction), int(options.get("seed", 0)), labelled_path)


if __name__ == "__main__":
    sys.exit(main())
