"""The README's tables are generated from the code (``experiments/tables.py``) and its commands are current."""

import pathlib

from experiments.tables import render

README = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_tables_match_the_code():
    assert render(README) == README, "README tables are stale: run `python -m experiments.tables --write`"


def test_readme_starts_with_the_two_commands():
    lines = [ln for ln in README.splitlines() if ln.startswith("python3 -m venv")]
    assert len(lines) == 2 and "experiments.run" in lines[0] and "pytest" in lines[1]


def test_readme_is_a_front_door():
    assert len(README.splitlines()) <= 160
    for link in ("docs/algorithms/", "docs/architecture.md", "paper_figures/README.md"):
        assert link in README
