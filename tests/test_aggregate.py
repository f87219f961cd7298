"""experiments.aggregate on hand-made run folders: finished runs gathered per algorithm x task (split
studies joined by global seed index), unfinished and failed runs listed and never averaged in."""

import csv
import json

import numpy as np
import pytest
import yaml

from experiments import aggregate


def make_run(path, algo, env, values, seed_offset=0, seed=0, finished=True, dataset=None, algo_keys=None,
             normalized=None, metrics_chunks=None):
    path.mkdir(parents=True)
    config = {"algo": {"name": algo, **(algo_keys or {})}, "env": {"name": env, "kwargs": {}},
              "seeds": len(values), "seed": seed, "seed_offset": seed_offset, "dataset": dataset,
              "total_steps": 1000, "out_dir": str(path)}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics_chunks is not None:
        rows = [{"phase": "online", "chunk": c, "seed": s} for c in range(metrics_chunks) for s in range(len(values))]
        with (path / "metrics.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["phase", "chunk", "seed"])
            writer.writeheader()
            writer.writerows(rows)
    if finished:
        point = {"final_eval_return_per_seed": list(values),
                 "seeds": list(range(seed_offset, seed_offset + len(values)))}
        if normalized is not None:
            point["final_normalized_score_per_seed"] = list(normalized)
        (path / "summary.json").write_text(json.dumps({"0": point}))
    return path


@pytest.fixture
def study(tmp_path):
    sweep = tmp_path / "sweep"
    # sac on pendulum: 8 seeds split as two jobs of 4 (seeds 0-3 and 4-7)
    make_run(sweep / "a" / "algo=sac,seed_offset=0", "sac", "pendulum", [1, 2, 3, 4])
    make_run(sweep / "a" / "algo=sac,seed_offset=4", "sac", "pendulum", [5, 6, 7, 8], seed_offset=4)
    # rlpd on pendulum: 4 seeds in one run; on cartpole: 4 seeds
    make_run(sweep / "b" / "rlpd_pendulum", "rlpd", "pendulum", [1, 2, 3, 100])
    make_run(sweep / "b" / "rlpd_cartpole", "rlpd", "cartpole", [10, 20, 30, 40])
    make_run(sweep / "b" / "sac_cartpole", "sac", "cartpole", [0, 0, 10, 10, 20, 20, 30, 30])
    # an unfinished run (killed after 3 evaluations) and a failed one (nothing written): listed, not averaged
    make_run(sweep / "c" / "killed", "sac", "pendulum", [1e6, 1e6], seed_offset=8, finished=False, metrics_chunks=3)
    make_run(sweep / "c" / "failed", "rlpd", "pendulum", [1e6], finished=False)
    return sweep


def test_split_runs_join_and_unfinished_runs_are_listed_not_averaged(study, tmp_path):
    result = aggregate.aggregate([study], tmp_path / "out", reps=200, log=lambda *_: None)
    entries = {(e["algorithm"], e["task"]): e for e in result["entries"]}
    assert set(entries) == {("sac", "pendulum"), ("rlpd", "pendulum"), ("rlpd", "cartpole"), ("sac", "cartpole")}
    sac = entries[("sac", "pendulum")]
    assert (sac["seeds"], sac["runs"]) == (8, 2)
    assert sac["iqm"] == pytest.approx(4.5)  # middle half of 1..8: mean(3, 4, 5, 6)
    assert sac["mean"] == pytest.approx(4.5)
    rlpd = entries[("rlpd", "pendulum")]
    assert rlpd["iqm"] == pytest.approx(2.5)  # middle half of (1, 2, 3, 100): mean(2, 3); the mean is 26.5
    assert rlpd["mean"] == pytest.approx(26.5)
    assert entries[("sac", "cartpole")]["iqm"] == pytest.approx(15.0)  # mean(10, 10, 20, 20)
    for e in entries.values():
        assert e["iqm_ci_low"] <= e["iqm"] <= e["iqm_ci_high"]
        assert e["score"] == "eval_return"
    assert entries[("rlpd", "cartpole")]["iqm_ci_low"] < entries[("rlpd", "cartpole")]["iqm_ci_high"]
    reasons = {x.run.split("/")[-1]: x.reason for x in result["left_out"]}
    assert reasons["killed"] == "unfinished: no summary.json, last evaluation at chunk 2"
    assert reasons["failed"] == "no metrics written (failed or never started)"
    assert all(r["score"] < 1e6 for r in result["rows"])
    for name in ("aggregate.csv", "per_seed.csv", "aggregate.md", "aggregate.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    with (tmp_path / "out" / "per_seed.csv").open() as f:
        per_seed = list(csv.DictReader(f))
    assert sorted(int(r["seed"]) for r in per_seed if r["algorithm"] == "sac" and r["task"] == "pendulum") == \
        list(range(8))
    md = (tmp_path / "out" / "aggregate.md").read_text()
    assert "| sac | pendulum | eval_return | 8 | 4.50" in md and "killed: unfinished" in md


def test_bootstrap_interval_is_reproducible(study, tmp_path):
    a = aggregate.aggregate([study], tmp_path / "a", reps=200, log=lambda *_: None)["entries"]
    b = aggregate.aggregate([study], tmp_path / "b", reps=200, log=lambda *_: None)["entries"]
    assert a == b


def test_performance_profile_on_min_max_scaled_returns(study, tmp_path):
    result = aggregate.aggregate([study], tmp_path / "out", reps=200, log=lambda *_: None)
    taus = result["taus"]
    # rlpd: pendulum (1, 2, 3, 100) and cartpole (10..40); min-max per task over the study:
    # pendulum min 1 max 100, cartpole min 0 max 40
    point, lo, hi = result["profiles"]["rlpd"]
    scaled = np.concatenate([(np.array([1, 2, 3, 100]) - 1) / 99, np.array([10, 20, 30, 40]) / 40])
    expected = [np.mean(scaled > t) for t in taus]
    np.testing.assert_allclose(point, expected)
    assert point[0] == pytest.approx(7 / 8)  # tau = 0: every run but pendulum's minimum
    assert np.all(lo <= point + 1e-12) and np.all(point <= hi + 1e-12)


def test_duplicate_seed_counted_once_and_variants_labelled(tmp_path):
    sweep = tmp_path / "s"
    make_run(sweep / "utd10", "rlpd", "pendulum", [1, 2], algo_keys={"utd": 10})
    make_run(sweep / "utd20", "rlpd", "pendulum", [5, 6], algo_keys={"utd": 20})
    make_run(sweep / "utd20_again", "rlpd", "pendulum", [7], seed_offset=1, algo_keys={"utd": 20})
    make_run(sweep / "other_root", "rlpd", "pendulum", [9], seed=1, algo_keys={"utd": 20})
    result = aggregate.aggregate([sweep], tmp_path / "out", reps=100, log=lambda *_: None)
    entries = {e["algorithm"]: e for e in result["entries"]}
    assert set(entries) == {"rlpd[utd=10]", "rlpd[utd=20]"}
    # seed 1 of root 0 was reported twice (utd20 and utd20_again): counted once; root seed 1 is another seed
    assert entries["rlpd[utd=20]"]["seeds"] == 3
    assert any("also reported by" in x.reason for x in result["left_out"])


def test_normalized_scores_are_used_when_every_run_has_them(tmp_path):
    make_run(tmp_path / "s" / "r", "iql", "brax_hopper", [100.0, 200.0], dataset="/d/hopper_medium-v2.hdf5",
             normalized=[30.0, 60.0])
    (entry,) = aggregate.aggregate([tmp_path / "s"], tmp_path / "out", reps=100, log=lambda *_: None)["entries"]
    assert (entry["task"], entry["score"], entry["mean"]) == ("brax_hopper/hopper_medium-v2", "normalized_score", 45.0)


def test_command_line(study, tmp_path, capsys):
    assert aggregate.main([str(study), "--out", str(tmp_path / "o"), "--reps", "100"]) == 0
    assert "| rlpd | cartpole |" in capsys.readouterr().out
    empty = tmp_path / "empty"
    make_run(empty / "x", "sac", "pendulum", [1.0], finished=False)
    assert aggregate.main([str(empty)]) == 2
    assert "no finished run" in capsys.readouterr().err
    assert aggregate.main([str(tmp_path / "missing")]) == 2
