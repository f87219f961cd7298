"""Figure E1's --merge (paper_figures/h2o_dynamics_gap.py) on the classic suite: parts written before the suites
and budgets existed, a part --merge wrote itself, and CQL's one run per real dataset, on hand-made numbers."""

import json

import numpy as np
import pytest

from paper_figures import h2o_dynamics_gap as e1

GRAVITY, MASS = "pendulum_gravity_2x", "pendulum_mass_2x"
DATA = {GRAVITY: {"content_sha256": "ab" * 32}}
REFS = {GRAVITY: [-1200.0, -200.0]}  # score = (return + 1200) / 10


def _entry(final_return, **extra):
    """2 seeds x 2 evaluations, both seeds ending at ``final_return``."""
    return {"returns": [[-1200.0, final_return]] * 2, "seconds": 1.0, "steps": [4000, 8000], **extra}


def _legacy_part(methods, entries, steps=8000, runtime=10.0):
    """What the script wrote before suites and budgets: no suite, preset or budget in the args, no
    refs_source."""
    args = {"seeds": 2, "steps": steps, "mc_steps": 4000, "dataset_size": 10000, "kind": "medium-replay",
            "num_evals": 2, "eval_episodes": 5, "methods": methods, "envs": ",".join(sorted({k.split("@")[0] for
            m in entries.values() for k in m})), "out": "x", "sampled_eval": False}
    return {"args": args, "provenance": {"seeds": [0, 1], "datasets": DATA}, "runtime_s": runtime, "refs": REFS,
            "datasets": {GRAVITY: "p.hdf5"}, "raw": entries}


def _current_part(methods, entries, data=DATA, runtime=20.0):
    budget = {**e1.CLASSIC, "seeds": 2, "num_evals": 2}
    args = {**budget, "suite": "classic", "preset": None, "methods": methods, "envs": f"{GRAVITY},{MASS}",
            "out": "y", "sampled_eval": False, "merge": "", "data_dir": None, "episode_steps": None}
    return {"args": args, "provenance": {"seeds": [0, 1], "datasets": data}, "runtime_s": runtime, "refs": REFS,
            "refs_source": {GRAVITY: "builder"}, "datasets": {GRAVITY: "p.hdf5"}, "budget": budget,
            "complete": True, "raw": entries}


def _parts():
    sweep = {f"{GRAVITY}@{v:g}": _entry(-210.0, gap_score=[u, u], sim_weight=[0.5, 0.5])
             for v, u in ((0.5, -1.0), (1.0, 0.1), (1.5, 1.0), (2.0, 2.0))}
    h2o = _legacy_part("h2o", {"h2o": sweep})
    others = _legacy_part("h2o_naive,sac_sim,cql", {
        "h2o_naive": {f"{GRAVITY}@0.5": _entry(-250.0), f"{GRAVITY}@2": _entry(-300.0)},
        "sac_sim": {f"{GRAVITY}@0.5": _entry(-900.0), f"{GRAVITY}@2": _entry(-1100.0)},
        "cql": {f"{GRAVITY}@0.5": _entry(-260.0), f"{GRAVITY}@2": _entry(-260.0)}}, runtime=30.0)
    mass = _legacy_part("h2o,h2o_naive,sac_sim", {
        "h2o": {f"{MASS}@2": _entry(-220.0, gap_score=[-0.5, -0.5], sim_weight=[0.7, 0.7])},
        "h2o_naive": {f"{MASS}@2": _entry(-200.0)}, "sac_sim": {f"{MASS}@2": _entry(-500.0)}})
    rlpd = _current_part("rlpd_sim", {"rlpd_sim": {f"{GRAVITY}@0.5": _entry(-205.0), f"{GRAVITY}@2": _entry(-230.0),
                                                   f"{MASS}@2": _entry(-215.0)}})
    return h2o, others, mass, rlpd


def test_legacy_parts_join_a_current_one_at_the_classic_budget(tmp_path):
    merged = e1.merge(list(_parts()))
    assert merged["budget"] == {**e1.CLASSIC, "seeds": 2, "num_evals": 2} and merged["args"]["suite"] == "classic"
    assert merged["refs_source"] == {GRAVITY: "builder"} and merged["complete"]
    assert merged["args"]["methods"] == "h2o,h2o_naive,sac_sim,cql,rlpd_sim"
    # CQL ran once on the gravity pair; the mass pair shares its real data, so it gets that run.
    assert merged["raw"]["cql"][f"{MASS}@2"] == merged["raw"]["cql"][f"{GRAVITY}@2"]
    assert set(merged["raw"]["cql"]) == {f"{GRAVITY}@0.5", f"{GRAVITY}@2", f"{MASS}@2"}  # not the H2O sweep's x1, x1.5
    e1.finish(merged, str(tmp_path / "e1"), log=lambda msg: None)
    written = json.loads((tmp_path / "e1.json").read_text())
    assert list(written["summary"]) == ["Pendulum gravity x2", "Pendulum gravity x0.5", "Pendulum mass x2"]
    row = written["summary"]["Pendulum mass x2"]
    np.testing.assert_allclose([row[m]["final_score_mean"] for m in ("h2o", "h2o_naive", "sac_sim", "cql", "rlpd_sim")],
                               [98.0, 100.0, 70.0, 94.0, 98.5])
    # H2O 99 vs max(SAC-sim, CQL 94) on the three shifts; the two largest u: gravity x2 (99 vs naive 90) and
    # mass x2 (98 vs naive 100).
    assert written["claims"]["E1a"].startswith("holds (3/3")
    assert written["claims"]["E1b"].startswith("fails (Pendulum gravity x2 (u = 2.00): H2O 99.0 vs naive 90.0")
    assert written["claims"]["E1c"].startswith("holds (mean u over seeds: x1 0.100, x1.5 1.000, x2 2.000")
    assert (tmp_path / "e1.png").stat().st_size > 0


def test_a_legacy_part_keeps_its_own_flags_in_the_budget_check():
    h2o, others, mass, rlpd = _parts()
    longer = _legacy_part("h2o_naive", {"h2o_naive": others["raw"]["h2o_naive"]}, steps=20_000)
    with pytest.raises(SystemExit, match="the parts differ in budget"):
        e1.merge([h2o, longer])
    assert e1.as_current_part(longer)["budget"]["steps"] == 20_000


def test_a_merged_file_joins_again_with_every_run_checked():
    h2o, others, mass, rlpd = _parts()
    first = e1.merge([h2o, others, mass])
    again = e1.merge([first, rlpd])
    assert len(again["provenance"]) == 4 and again["runtime_s_per_part"] == [10.0, 30.0, 10.0, 20.0]
    assert again["runtime_s"] == 30.0 and "rlpd_sim" in again["raw"]
    other_data = _current_part("rlpd_sim", rlpd["raw"], data={GRAVITY: {"content_sha256": "cd" * 32}})
    with pytest.raises(SystemExit, match="the parts used different data"):  # the joined file's runs are checked one by one
        e1.merge([first, other_data])
