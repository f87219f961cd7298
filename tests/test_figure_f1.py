"""Figure F1's bookkeeping (paper_figures/moorl_offline_online.py) on hand-made curves: the claims, the
per-task summaries and a --replot of a written JSON. The learning itself is tested per algorithm."""

import json

import numpy as np
import pytest

from paper_figures import moorl_offline_online as f1

GRID = [0.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0]


def _curves(values_per_seed):
    """Per-seed curves as run_one returns them: [(online step, normalized score), ...] per seed."""
    return [list(zip(GRID, vals)) for vals in values_per_seed]


def _result():
    flat = lambda v: [[v] * len(GRID) for _ in range(4)]  # noqa: E731
    ramp = lambda top: [list(np.linspace(0, top, len(GRID))) for _ in range(4)]  # noqa: E731
    curves = {}
    for task in ("pendulum:medium", "reacher:medium"):
        curves.update({
            f"{task}:SAC (scratch)": _curves(flat(0.0)),
            f"{task}:RLPD": _curves(ramp(100.0)),
            f"{task}:Cal-QL": _curves(flat(50.0)),
            f"{task}:MOORL": _curves(ramp(80.0)),
            f"{task}:MOORL eta=1 K=1": _curves(ramp(60.0)),
            f"{task}:alternating SAC": _curves(ramp(60.0)),
        })
    return {"args": {}, "tasks": ["pendulum:medium", "reacher:medium"], "grid": GRID,
            "per_seed_curves": curves, "runtime_s": 1.0}


def test_claims_on_hand_made_curves():
    result = _result()
    stacked, summary = f1.summarise(result, reps=50)
    assert set(summary) == {"all", "pendulum:medium", "reacher:medium"}
    assert stacked["RLPD"].shape == (4, 2, len(GRID))  # (runs, tasks, points)
    claims = f1.claims_of(np.array(GRID), stacked, summary["all"])
    # 20% of 2500 steps is 500: RLPD's ramp is at 20, MOORL's at 16, Cal-QL flat 50, SAC 0.
    assert claims["F1a"]["held"]
    np.testing.assert_allclose(claims["F1a"]["margins"]["MOORL"], 16.0, atol=1e-9)
    # Final: MOORL 80 vs RLPD 100 (gap -20) and Cal-QL 50 (gap +30): F1b fails on RLPD.
    assert not claims["F1b"]["held"]
    np.testing.assert_allclose(claims["F1b"]["gaps"]["RLPD"], -20.0, atol=1e-9)
    np.testing.assert_allclose(claims["F1b"]["gaps"]["Cal-QL"], 30.0, atol=1e-9)
    assert claims["F1c"]["held"] and claims["F1c"]["max_abs_normalized_difference"] == 0.0


def test_replot_writes_figure_and_claims(tmp_path):
    path = tmp_path / "f1.json"
    result = _result()
    result["per_seed_curves"]["reacher:medium:alternating SAC"][0][-1] = (2500.0, 0.0)  # break F1c on one seed
    f1.finish(result, str(tmp_path / "f1"), reps=20)
    written = json.loads(path.read_text())
    assert (tmp_path / "f1.png").stat().st_size > 0
    assert not written["claims"]["F1c"]["held"]
    assert written["claims"]["F1c"]["max_abs_normalized_difference"] == 60.0
    assert set(written["iqm_ci_per_task"]) == {"pendulum:medium", "reacher:medium"}


def test_replot_into_another_file_reproduces_every_interval(tmp_path):
    # Noisy seeds, so the bootstrap intervals are not degenerate; the bootstrap is seeded, so a replot of the
    # written JSON into --out gives the same numbers and leaves the original file alone.
    rng = np.random.default_rng(0)
    result = _result()
    for key, curves in result["per_seed_curves"].items():
        result["per_seed_curves"][key] = [[(x, y + float(rng.normal(0, 10))) for x, y in c] for c in curves]
    f1.finish(result, str(tmp_path / "first"), reps=200)
    first = json.loads((tmp_path / "first.json").read_text())
    f1.main(["--replot", str(tmp_path / "first.json"), "--out", str(tmp_path / "second"), "--reps", "200"])
    second = json.loads((tmp_path / "second.json").read_text())
    assert (tmp_path / "second.png").stat().st_size > 0
    assert first["iqm_ci"] == second["iqm_ci"] and first["iqm_ci_per_task"] == second["iqm_ci_per_task"]
    lo, hi = first["iqm_ci"]["RLPD"][-1][1:]
    assert lo < hi  # real intervals, not a degenerate case
    assert json.loads((tmp_path / "first.json").read_text()) == first


def test_algos_selects_labels_that_hold_a_comma():
    available = {label: None for label in ("SAC (scratch)", "MOORL", "MOORL, SAC critic", "MOORL eta=1 K=1")}
    assert list(f1.select_labels(available, "")) == list(available)
    assert list(f1.select_labels(available, "MOORL, SAC critic")) == ["MOORL, SAC critic"]
    assert list(f1.select_labels(available, "MOORL,MOORL, SAC critic,SAC (scratch)")) == [
        "SAC (scratch)", "MOORL", "MOORL, SAC critic"]
    assert list(f1.select_labels(available, "MOORL eta=1 K=1, MOORL")) == ["MOORL", "MOORL eta=1 K=1"]


def test_algos_rejects_an_unknown_label():
    with pytest.raises(SystemExit, match="unknown label 'RLDP'"):
        f1.select_labels({"RLPD": None, "MOORL": None}, "MOORL,RLDP")
