"""The README's algorithm and environment tables, generated from the algorithm table and the env registry.

``python -m experiments.tables`` prints them; ``--write`` replaces them in README.md between their markers.
``tests/test_readme.py`` fails when the README's tables differ from what this generates, so they cannot drift
from the code.
"""

from __future__ import annotations

import argparse
import pathlib
import re

from experiments.catalog import list_algorithms, list_envs

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"

DATA = {"none": "online", "optional": "online, optional offline data", "required": "offline data required"}

# Env groups in the order shown, by an env's first tag (sim/real pairs by their "sim_real" tag).
ENV_GROUPS = {
    "gymnax": "gymnax: classic control, MinAtar, bsuite, misc",
    "mujoco": "MuJoCo locomotion with D4RL v2 / Minari v5 semantics (`mujoco` extra)",
    "brax": "Brax locomotion (`brax` extra)",
    "sim_real": "sim/real pairs: `env` is the real system, the problem's `sim_env` the shifted simulator "
                "(shift factor traced)",
    "comblock": "rich-observation combination lock (HNPG and Hy-Q's testbed)",
    "tabular": "finite and linear MDPs with exact models (regret and suboptimality computed exactly)",
}


def _group(tags: tuple[str, ...]) -> str:
    if "sim_real" in tags:
        return "sim_real"
    return tags[0] if tags else "other"


def algorithm_table() -> str:
    lines = ["| `algo=` | what | data | `total_steps` counts |", "|---|---|---|---|"]
    for name, spec in list_algorithms().items():
        unit = "env steps" if spec.budget.unit == "env_steps" else "gradient steps"
        if spec.budget.offline_field:
            unit += f" (online phase; `{spec.budget.offline_field}` the offline one)"
        what = spec.description.replace("|", "\\|")
        lines.append(f"| `{name}` | {what} | {DATA[spec.dataset]} | {unit} |")
    return "\n".join(lines)


def env_table() -> str:
    groups: dict[str, list[str]] = {}
    for name, spec in list_envs().items():
        groups.setdefault(_group(spec.tags), []).append(name)
    order = [g for g in ENV_GROUPS if g in groups] + sorted(set(groups) - set(ENV_GROUPS))
    lines = ["| family | `env=` |", "|---|---|"]
    for group in order:
        names = ", ".join(f"`{n}`" for n in groups[group])
        lines.append(f"| {ENV_GROUPS.get(group, group)} | {names} |")
    return "\n".join(lines)


TABLES = {"algorithms": algorithm_table, "environments": env_table}


def render(text: str) -> str:
    """``text`` with every generated table replaced between its ``<!-- NAME:begin -->`` / ``end`` markers."""
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README.md has no <!-- {name}:begin --> ... <!-- {name}:end --> markers")
        text = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    args = parser.parse_args()
    if args.write:
        README.write_text(render(README.read_text()))
        print(f"updated {README}")
    else:
        print(algorithm_table() + "\n\n" + env_table())


if __name__ == "__main__":
    main()
