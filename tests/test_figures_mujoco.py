"""The MuJoCo suites and budget presets of figures F1 (paper_figures/moorl_offline_online.py) and E1
(paper_figures/h2o_dynamics_gap.py): preset resolution, D4RL scoring, joining per-task parts, the claims on
hand-made numbers, and (slow) each suite end to end at a tiny size with the provenance every JSON records."""

import argparse
import json

import numpy as np
import pytest

from paper_figures import h2o_dynamics_gap as e1
from paper_figures import moorl_offline_online as f1
from paper_figures import mujoco_data


def _f1_args(*argv):
    parser_args = dict(suite="classic", preset=None, tasks=None, seeds=None, online_steps=None, offline_steps=None,
                       dataset_size=None, hidden=None, batch=None, rlpd_utd=None, rlpd_critics=None, warmup=None,
                       num_evals=None, eval_episodes=None, algos=None)
    args = argparse.Namespace(**parser_args)
    for key, value in zip(argv[::2], argv[1::2]):
        setattr(args, key, value)
    f1.resolve_settings(args)
    return args


def test_f1_classic_suite_keeps_its_defaults_and_mujoco_takes_the_cpu_preset():
    classic = _f1_args()
    assert classic.preset is None and classic.tasks == f1.SUITES["classic"]
    assert (classic.seeds, classic.online_steps, classic.hidden, classic.rlpd_utd, classic.algos) == (8, 4_000, 64, 4, "")
    mujoco = _f1_args("suite", "mujoco")
    assert mujoco.preset == "cpu" and mujoco.tasks.split(",") == [
        "mujoco_hopper:medium", "mujoco_hopper:medium_replay", "mujoco_halfcheetah:medium",
        "mujoco_halfcheetah:medium_replay"]
    assert mujoco.mujoco_dataset == mujoco_data.MUJOCO_DATASET_RECIPES["cpu"]
    assert _f1_args("suite", "mujoco", "seeds", 3, "online_steps", 777).seeds == 3  # a flag beats the preset
    assert f1.dataset_options("pendulum", mujoco) == {} and f1.dataset_options("mujoco_hopper", mujoco)["train_steps"]
    with pytest.raises(SystemExit, match="unknown preset 'gpu'"):
        _f1_args("preset", "gpu")


def test_paper_presets_have_the_paper_scale():
    paper = _f1_args("suite", "mujoco", "preset", "paper")
    assert (paper.hidden, paper.batch, paper.rlpd_utd, paper.rlpd_critics) == (256, 256, 20, 10)
    assert paper.online_steps >= 100_000 and paper.seeds >= 8
    labels = f1.configs(paper)
    assert labels["RLPD"][1]["utd"] == 20 and labels["RLPD"][1]["num_critics"] == 10
    assert labels["MOORL"][1]["hidden_sizes"] == (256, 256)
    budget = e1.PRESETS["paper"]
    assert (budget["hidden"], budget["batch"], budget["rlpd_utd"], budget["rlpd_critics"]) == (256, 256, 20, 10)
    assert budget["steps"] >= 100_000 and budget["seeds"] >= 8
    config = e1.method_config("rlpd_sim", budget["steps"], budget)
    assert (config.utd, config.num_critics, config.hidden_sizes) == (20, 10, (256, 256))
    assert e1.method_config("h2o", 10_000, budget).disc_hidden_sizes == (256, 256)
    # The classic E1 budget is unchanged: 64x64, batches of 128, RLPD at UTD 2 with 4 critics.
    classic = e1.method_config("rlpd_sim", 8_000)
    assert (classic.hidden_sizes, classic.batch_size, classic.utd, classic.num_critics) == ((64, 64), 128, 2, 4)


def test_e1_resolve_settings_fills_from_the_preset(tmp_path):
    def resolve(**given):
        args = argparse.Namespace(suite="classic", preset=None, out=None, **{k: None for k in e1.CLASSIC})
        for key, value in given.items():
            setattr(args, key, value)
        return args, e1.resolve_settings(args)

    args, budget = resolve()
    assert budget == e1.CLASSIC and args.out.endswith("paper_figures/h2o_dynamics_gap")
    args, budget = resolve(suite="mujoco", seeds=2)
    assert args.preset == "cpu" and budget["seeds"] == 2 and budget["steps"] == e1.PRESETS["cpu"]["steps"]
    assert args.out.endswith("h2o_dynamics_gap_mujoco_cpu")
    with pytest.raises(SystemExit, match="unknown suite"):
        resolve(suite="brax")


def test_mujoco_problems_are_scored_with_d4rl_references():
    pytest.importorskip("mujoco")
    from experiments.catalog import build_problem

    hopper = mujoco_data.with_d4rl_references(build_problem("mujoco_hopper"))
    assert hopper.reference_returns() == (-20.272305, 3234.3)
    cheetah = mujoco_data.with_d4rl_references(build_problem("mujoco_halfcheetah_gravity_2x"))
    assert cheetah.reference_returns() == (-280.178953, 12135.0)
    pendulum = build_problem("pendulum")
    assert mujoco_data.with_d4rl_references(pendulum) is pendulum


def _f1_part(task, value):
    grid = [0.0, 50.0, 100.0]
    curves = {f"{task}:{label}": [[(x, value + k) for x in grid] for k in range(3)]
              for label in ("SAC (scratch)", "RLPD", "MOORL")}
    return {"args": {"preset": "paper"}, "provenance": {"seeds": [0, 1, 2]}, "tasks": [task], "grid": grid,
            "references": {task: {"random": -20.272305, "expert": 3234.3, "source": "D4RL"}},
            "per_seed_curves": curves, "seconds": {f"{task}:RLPD": 1.0}, "runtime_s": 10.0 + value}


def test_f1_merge_joins_per_task_parts(tmp_path):
    merged = f1.merge_results([_f1_part("mujoco_hopper:medium", 1.0), _f1_part("mujoco_halfcheetah:medium", 5.0)])
    assert merged["tasks"] == ["mujoco_hopper:medium", "mujoco_halfcheetah:medium"]
    assert len(merged["per_seed_curves"]) == 6 and len(merged["provenance"]) == 2 and merged["runtime_s"] == 15.0
    f1.finish(merged, str(tmp_path / "f1"), reps=20)
    written = json.loads((tmp_path / "f1.json").read_text())
    assert set(written["iqm_ci_per_task"]) == {"mujoco_hopper:medium", "mujoco_halfcheetah:medium"}
    with pytest.raises(SystemExit, match="more than one part"):
        f1.merge_results([_f1_part("mujoco_hopper:medium", 1.0)] * 2)
    other_grid = _f1_part("mujoco_hopper:medium_replay", 1.0)
    other_grid["grid"] = [0.0, 100.0]
    with pytest.raises(SystemExit, match="differ in evaluation grid"):
        f1.merge_results([_f1_part("mujoco_hopper:medium", 1.0), other_grid])


def _e1_part(envs, h2o_returns, u_by_gravity):
    """An E1 payload of the MuJoCo suite with hand-made returns (2 seeds x 2 evaluations)."""
    args = {"suite": "mujoco", "preset": "cpu", "methods": "h2o,h2o_naive,sac_sim,cql", "seeds": 2, "envs": envs,
            "steps": 100, "mc_steps": 100, "kind": "medium-replay", "dataset_size": 50}
    raw = {m: {} for m in args["methods"].split(",")}
    for label, env, value in e1.MUJOCO_SHIFTS:
        if env not in envs.split(","):
            continue
        values = sorted({value} | (set(e1.GAP_SWEEP) if env == "mujoco_halfcheetah_gravity_2x" else set()))
        for v in values:
            entry = lambda r: {"returns": [[0.0, r], [0.0, r]], "seconds": 1.0, "steps": [50, 100]}  # noqa: E731
            raw["h2o"][f"{env}@{v:g}"] = {**entry(h2o_returns[label]), "gap_score": [u_by_gravity.get(v, 1.0)] * 2,
                                          "sim_weight": [0.5, 0.5]}
            raw["h2o_naive"][f"{env}@{v:g}"] = entry(1000.0)
            raw["sac_sim"][f"{env}@{v:g}"] = entry(500.0)
            raw["cql"][f"{env}@{v:g}"] = entry(800.0)
    return {"args": args, "provenance": {"seeds": [0, 1]}, "runtime_s": 5.0,
            "refs": {"mujoco_halfcheetah": [-280.178953, 12135.0]}, "refs_source": {"mujoco_halfcheetah": "D4RL"},
            "datasets": {"mujoco_halfcheetah": "x.hdf5"}, "budget": {}, "raw": raw}


def test_e1_mujoco_claims_and_merge_of_per_env_parts(tmp_path):
    h2o = {"HalfCheetah gravity x2": 2000.0, "HalfCheetah friction x0.3": 900.0, "HalfCheetah joint noise 1.0": 100.0}
    u = {1.0: 0.01, 1.5: 0.5, 2.0: 1.2}
    parts = [_e1_part("mujoco_halfcheetah_gravity_2x", h2o, u),
             _e1_part("mujoco_halfcheetah_friction_0.3x,mujoco_halfcheetah_joint_noise", h2o, u)]
    for i, part in enumerate(parts):
        (tmp_path / f"part{i}.json").write_text(json.dumps(part))
    e1.main(["--merge", f"{tmp_path / 'part0.json'},{tmp_path / 'part1.json'}", "--out", str(tmp_path / "e1")])
    written = json.loads((tmp_path / "e1.json").read_text())
    assert (tmp_path / "e1.png").stat().st_size > 0
    assert list(written["summary"]) == [label for label, _, _ in e1.MUJOCO_SHIFTS]
    score = written["summary"]["HalfCheetah gravity x2"]["h2o"]["final_score_mean"]
    np.testing.assert_allclose(score, 100 * (2000.0 + 280.178953) / (12135.0 + 280.178953))
    # H2O beats SAC-sim (500) and CQL (800) on gravity and friction, not under joint noise: 2 of 3, needs all 3.
    assert written["claims"]["E1a"].startswith("fails (2/3")
    # The two largest gap scores: gravity x2 (u 1.2) and friction (1.0); H2O loses to the naive mix (1000) on
    # friction (900).
    assert written["claims"]["E1b"].startswith("fails (HalfCheetah gravity x2 (u = 1.20)")
    assert written["claims"]["E1c"].startswith("holds (mean u over seeds: x1 0.010, x1.5 0.500, x2 1.200")
    assert written["args"]["envs"] == "mujoco_halfcheetah_gravity_2x,mujoco_halfcheetah_friction_0.3x," \
                                      "mujoco_halfcheetah_joint_noise"
    assert len(written["provenance"]) == 2
    with pytest.raises(SystemExit, match="more than one part"):
        e1.merge([parts[0], parts[0]])


@pytest.mark.slow  # ~4 min on the loaded 2-core CPU: MuJoCo SAC data, then each method compiled once
def test_both_mujoco_suites_run_end_to_end_at_a_tiny_size(tmp_path, monkeypatch):
    pytest.importorskip("mujoco")
    tiny = dict(train_steps=300, warmup_steps=100, hidden_sizes=(16, 16), num_checkpoints=3, eval_episodes=2)
    monkeypatch.setitem(mujoco_data.MUJOCO_DATASET_RECIPES, "cpu", tiny)
    small = ["--seeds", "2", "--num-evals", "1", "--eval-episodes", "1", "--dataset-size", "300", "--episode-steps",
             "30", "--hidden", "16", "--batch", "32", "--data-dir", str(tmp_path / "data")]
    f1.main(["--suite", "mujoco", "--tasks", "mujoco_halfcheetah:medium_replay", "--online-steps", "200",
             "--offline-steps", "50", "--warmup", "50", "--algos", "SAC (scratch),IQL", "--reps", "20",
             "--out", str(tmp_path / "f1"), *small])
    e1.main(["--suite", "mujoco", "--envs", "mujoco_halfcheetah_gravity_2x", "--methods", "h2o,cql",
             "--steps", "200", "--warmup", "50", "--out", str(tmp_path / "e1"), *small])
    f1_json, e1_json = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("f1", "e1"))
    for result in (f1_json, e1_json):
        record = result["provenance"]
        assert record["seeds"] == [0, 1] and "commit" in record["code"]
        (dataset,) = record["datasets"].values()  # F1's halfcheetah medium-replay set is E1's real data
        assert dataset["kind"] == "medium-replay" and dataset["env"] == "mujoco_halfcheetah"
        assert len(dataset["content_sha256"]) == 64 and 0 < dataset["transitions"] <= 300 and dataset["recipe"]
    assert (f1_json["provenance"]["datasets"]["mujoco_halfcheetah:medium_replay"]["content_sha256"]
            == e1_json["provenance"]["datasets"]["mujoco_halfcheetah"]["content_sha256"])
    assert f1_json["references"]["mujoco_halfcheetah:medium_replay"]["source"] == "D4RL"
    assert set(e1_json["raw"]["h2o"]) == {"mujoco_halfcheetah_gravity_2x@1", "mujoco_halfcheetah_gravity_2x@1.5",
                                          "mujoco_halfcheetah_gravity_2x@2"}
    assert set(e1_json["claims"]) == {"E1c"}  # E1a needs SAC-sim, E1b the naive mix
    assert f1_json["claims"]["F1a"]["margins"].keys() == {"IQL"}


def test_e1_merge_joins_per_method_parts_on_the_same_data_and_budget(tmp_path):
    h2o = {"HalfCheetah gravity x2": 2000.0, "HalfCheetah friction x0.3": 900.0, "HalfCheetah joint noise 1.0": 100.0}
    envs = ",".join(env for _, env, _ in e1.MUJOCO_SHIFTS)
    full = _e1_part(envs, h2o, {1.0: 0.01, 1.5: 0.5, 2.0: 1.2})
    data = {"mujoco_halfcheetah": {"content_sha256": "ab" * 32}}
    # A run stopped before its last method (the naive mix) and a later run of that method alone, on all envs.
    first = {**full, "args": {**full["args"], "envs": None, "methods": "h2o,sac_sim,cql,h2o_naive"}, "raw": {m: full["raw"][m] for m in ("h2o", "sac_sim", "cql")},
             "provenance": {"seeds": [0, 1], "datasets": data}, "budget": {"steps": 100}, "complete": False}
    later = {**full, "args": {**full["args"], "envs": None, "methods": "h2o_naive"}, "runtime_s": 7.0,
             "raw": {"h2o_naive": full["raw"]["h2o_naive"]}, "provenance": {"seeds": [0, 1], "datasets": data},
             "budget": {"steps": 100}, "complete": True}
    merged = e1.merge([first, later])
    assert list(merged["raw"]) == ["h2o", "sac_sim", "cql", "h2o_naive"] and merged["complete"]
    assert merged["args"]["methods"] == "h2o,sac_sim,cql,h2o_naive" and merged["args"]["envs"] is None
    assert merged["runtime_s_per_part"] == [5.0, 7.0] and merged["runtime_s"] == 7.0
    e1.finish(merged, str(tmp_path / "e1"), log=lambda msg: None)
    written = json.loads((tmp_path / "e1.json").read_text())
    # Naive mix 1000 vs H2O 2000 (gravity x2, u 1.2) and 900 (friction, u 1.0): the E1b check needs the join.
    assert written["claims"]["E1b"].startswith("fails (HalfCheetah gravity x2 (u = 1.20): H2O ")
    assert written["summary"]["HalfCheetah joint noise 1.0"]["h2o_naive"]["final_return_mean"] == 1000.0
    assert not e1.merge([first, {**later, "raw": {}}])["complete"]  # the naive mix still missing
    with pytest.raises(SystemExit, match="different data"):
        e1.merge([first, {**later, "provenance": {"datasets": {"mujoco_halfcheetah": {"content_sha256": "cd" * 32}}}}])
    with pytest.raises(SystemExit, match="differ in evaluation protocol"):
        e1.merge([first, {**later, "provenance": {"datasets": data, "evaluation": "sampled"}}])
    with pytest.raises(SystemExit, match="differ in budget"):
        e1.merge([first, {**later, "budget": {"steps": 200}}])
    with pytest.raises(SystemExit, match="more than one part"):
        e1.merge([first, {**later, "raw": {"h2o": full["raw"]["h2o"]}}])
