"""The README lists every registered algorithm and environment (so the lists stay current)."""

import pathlib

from envs.registry import list_envs
from hybrid_rl.algorithm import list_algorithms

README = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_algorithm_is_in_the_readme():
    missing = [name for name in list_algorithms() if f"`{name}`" not in README]
    assert not missing, f"add these algorithms to README.md: {missing}"


def test_every_env_is_in_the_readme():
    missing = [name for name in list_envs() if f"`{name}`" not in README]
    assert not missing, f"add these environments to README.md: {missing}"


def test_readme_starts_with_the_two_commands():
    lines = [ln for ln in README.splitlines() if ln.startswith("python3 -m venv")]
    assert len(lines) == 2 and "experiments.run" in lines[0] and "pytest" in lines[1]
