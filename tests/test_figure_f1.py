"""Figure F1's bookkeeping (paper_figures/moorl_offline_online.py) on hand-made curves: the claims, the
per-task summaries and a --replot of a written JSON. The learning itself is tested per algorithm."""

import argparse
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


# --merge: parts with other methods on the same tasks, parts on other tasks, and every refusal.

HASHES = {"pendulum:medium": "ab" * 32, "reacher:medium": "cd" * 32}


def _part(labels, tasks=("pendulum:medium", "reacher:medium"), value=10.0, runtime=5.0, evaluation="deterministic",
          **settings):
    """A part as main() writes it: per-seed curves of 3 seeds (``value`` + seed + label index, noisy per point so
    the intervals are not degenerate), the args, references and a provenance record with the data's hashes."""
    rng = np.random.default_rng(len(labels) + len(tasks))
    args = {**f1.CLASSIC_DEFAULTS, "online_steps": 2500, "num_evals": 5, **settings}
    curves = {f"{task}:{label}": [[(x, value + seed + i + float(rng.normal())) for x in GRID] for seed in range(3)]
              for task in tasks for i, label in enumerate(labels)}
    record = {"seeds": [0, 1, 2], "evaluation": evaluation, "datasets": {t: {"content_sha256": HASHES[t]} for t in tasks}}
    return {"args": args, "provenance": record, "tasks": list(tasks), "grid": GRID,
            "references": {t: {"random": -1000.0, "expert": -100.0, "source": "builder"} for t in tasks},
            "per_seed_curves": curves, "seconds": {f"{t}:{labels[0]}": 1.0 for t in tasks}, "runtime_s": runtime}


def test_merge_joins_parts_holding_other_methods_on_the_same_tasks(tmp_path):
    first = _part(["SAC (scratch)", "RLPD", "MOORL"], runtime=5.0)
    later = _part(["IQL", "Cal-QL"], value=40.0, runtime=9.0)
    merged = f1.merge_results([first, later])
    assert merged["tasks"] == ["pendulum:medium", "reacher:medium"] and len(merged["per_seed_curves"]) == 10
    assert merged["args"]["algos"] == "SAC (scratch),RLPD,MOORL,IQL,Cal-QL"
    assert merged["provenance"] == [first["provenance"], later["provenance"]]
    assert merged["runtime_s"] == 9.0 and merged["runtime_s_per_part"] == [5.0, 9.0]
    # The bootstrap is seeded by the quantity's name: the joined figure gives each method the numbers of its part.
    for name, part in (("joined", merged), ("first", first), ("later", later)):
        f1.finish(part, str(tmp_path / name), reps=50)
    joined, alone = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("joined", "later"))
    assert joined["iqm_ci"]["IQL"] == alone["iqm_ci"]["IQL"]
    assert joined["iqm_ci_per_task"]["reacher:medium"]["Cal-QL"] == alone["iqm_ci_per_task"]["reacher:medium"]["Cal-QL"]
    assert set(joined["claims"]["F1a"]["margins"]) == {"MOORL", "RLPD", "Cal-QL", "IQL"}


def test_merge_joins_a_joined_file_with_a_later_method_and_keeps_every_provenance():
    per_task = f1.merge_results([_part(["SAC (scratch)", "MOORL"], tasks=("pendulum:medium",)),
                                 _part(["SAC (scratch)", "MOORL"], tasks=("reacher:medium",))])
    merged = f1.merge_results([per_task, _part(["MOORL, SAC critic"])])
    assert len(merged["provenance"]) == 3 and merged["tasks"] == ["pendulum:medium", "reacher:medium"]
    assert merged["args"]["algos"] == "SAC (scratch),MOORL,MOORL, SAC critic"
    assert merged["args"]["tasks"] == "pendulum:medium,reacher:medium"


def test_merging_a_merged_file_keeps_one_runtime_per_original_run():
    per_task = f1.merge_results([_part(["SAC (scratch)", "MOORL"], tasks=("pendulum:medium",), runtime=3.0),
                                 _part(["SAC (scratch)", "MOORL"], tasks=("reacher:medium",), runtime=7.0)])
    assert per_task["runtime_s_per_part"] == [3.0, 7.0] and per_task["runtime_s"] == 7.0
    merged = f1.merge_results([per_task, _part(["MOORL, SAC critic"], runtime=5.0)])
    assert merged["runtime_s_per_part"] == [3.0, 7.0, 5.0] and merged["runtime_s"] == 7.0


def test_merge_compares_a_method_setting_only_between_parts_that_read_it():
    # IQL does not read the warm-up: an IQL part from a file written before the flag (no "warmup" key) joins
    # parts with any warm-up, and the joined args carry SAC's.
    old = _part(["IQL"])
    del old["args"]["warmup"], old["args"]["rlpd_utd"]
    merged = f1.merge_results([_part(["SAC (scratch)"], warmup=700), old])
    assert merged["args"]["warmup"] == 700
    # SAC and RLPD both read it: different warm-ups in two parts are refused.
    with pytest.raises(SystemExit, match=r"differ in warmup \(read by SAC \(scratch\), RLPD\): 700 vs 1000"):
        f1.merge_results([_part(["SAC (scratch)"], warmup=700), _part(["RLPD"])])
    # A file without the key ran with the value fixed then (1000): it joins a part that states 1000.
    f1.merge_results([_part(["SAC (scratch)"]), old | {"per_seed_curves": _part(["RLPD"])["per_seed_curves"]}])


def _with(part, **changes):
    return {**part, **changes}


@pytest.mark.parametrize("later, message", [
    (_with(_part(["IQL"]), grid=[0.0, 1250.0, 2500.0]), "differ in evaluation grid"),
    (_with(_part(["IQL"]), provenance={"seeds": [0, 1, 5], "evaluation": "deterministic"}), "differ in seeds"),
    (_part(["IQL"], hidden=256), "differ in hidden: 64 vs 256"),
    (_part(["IQL"], eval_episodes=2), "differ in eval_episodes"),
    (_part(["RLPD"], rlpd_utd=20), "differ in rlpd_utd"),
    (_part(["IQL"], evaluation="sampled"), "differ in evaluation protocol: \"deterministic\" vs \"sampled\""),
    (_with(_part(["IQL"]), provenance={"seeds": [0, 1, 2], "evaluation": "deterministic",
                                        "datasets": {"pendulum:medium": {"content_sha256": "ef" * 32}}}),
     "different data .*pendulum:medium"),
    (_with(_part(["IQL"]), references={"pendulum:medium": {"random": -900.0, "expert": -100.0, "source": "builder"}}),
     "differ in the normalization references of pendulum:medium"),
    (_part(["MOORL", "IQL"]), "pendulum:medium:MOORL appears in more than one part"),
    (_part(["IQL"], tasks=("pendulum:medium",)), "1 method-task pair.* without a run, e.g. reacher:medium:IQL"),
])
def test_merge_refuses_parts_that_differ(later, message):
    with pytest.raises(SystemExit, match=message):
        f1.merge_results([_part(["SAC (scratch)", "RLPD", "MOORL"], rlpd_utd=4), later])


def test_merge_from_the_command_line_records_the_parts_and_the_merge(tmp_path):
    for name, labels in (("a", ["SAC (scratch)", "MOORL"]), ("b", ["IQL"])):
        (tmp_path / f"{name}.json").write_text(json.dumps(_part(labels)))
    f1.main(["--merge", f"{tmp_path / 'a.json'},{tmp_path / 'b.json'}", "--out", str(tmp_path / "ab"), "--reps", "20"])
    written = json.loads((tmp_path / "ab.json").read_text())
    assert written["joined_from"] == [str(tmp_path / "a.json"), str(tmp_path / "b.json")]
    assert "commit" in written["joined_by"]["code"] and len(written["provenance"]) == 2
    assert (tmp_path / "ab.png").stat().st_size > 0


# F1a after the longest random warm-up.

def _warmup_result():
    """SAC acts at random (0) until 1000 steps, then learns fast; the hybrids ramp or stay flat."""
    seeds = lambda values: [list(values) for _ in range(4)]  # noqa: E731
    curves = {
        "pendulum:medium:SAC (scratch)": _curves(seeds([0, 0, 0, 70, 80, 90])),
        "pendulum:medium:RLPD": _curves(seeds(np.linspace(0, 100, len(GRID)))),
        "pendulum:medium:MOORL": _curves(seeds(np.linspace(0, 80, len(GRID)))),
        "pendulum:medium:Cal-QL": _curves(seeds([50.0] * len(GRID))),
    }
    return {"args": {}, "tasks": ["pendulum:medium"], "grid": GRID, "per_seed_curves": curves, "runtime_s": 1.0}


def test_f1a_is_checked_again_at_the_first_evaluation_after_the_longest_warmup():
    stacked, summary = f1.summarise(_warmup_result(), reps=20)
    warmups = {"SAC (scratch)": 1000, "RLPD": 1000, "MOORL": 0, "Cal-QL": 0}
    claims = f1.claims_of(np.array(GRID), stacked, summary["all"], warmups)
    assert list(claims)[:2] == ["F1a", "F1a_after_warmup"]
    # At 500 steps (20% of 2500) SAC is still random (0): RLPD 20, MOORL 16, Cal-QL 50 ahead, F1a holds.
    assert claims["F1a"]["held"]
    np.testing.assert_allclose([claims["F1a"]["margins"][k] for k in ("RLPD", "MOORL", "Cal-QL")], [20, 16, 50])
    # 1000 is a grid point, so the first one after the warm-up is 1500: SAC 70 vs RLPD 60, MOORL 48, Cal-QL 50.
    after = claims["F1a_after_warmup"]
    assert after["step"] == 1500.0 and after["warmup_steps"] == 1000 and not after["held"]
    np.testing.assert_allclose([after["margins"][k] for k in ("RLPD", "MOORL", "Cal-QL")], [-10, -22, -20])
    assert "1500 online steps" in after["statement"] and "1000 steps: SAC (scratch), RLPD" in after["statement"]
    # A warm-up between grid points (1200) also gives 1500; one as long as the budget leaves nothing to check.
    assert f1.claims_of(np.array(GRID), stacked, summary["all"], {"SAC (scratch)": 1200})["F1a_after_warmup"][
        "step"] == 1500.0
    unchecked = f1.claims_of(np.array(GRID), stacked, summary["all"], {"SAC (scratch)": 2500})["F1a_after_warmup"]
    assert unchecked["held"] is None and unchecked["statement"].startswith("not checked")


def test_random_warmups_are_read_from_each_methods_config():
    warmups = f1.random_warmups({"warmup": 700, "online_steps": 3000},
                                ["SAC (scratch)", "RLPD", "IQL", "Cal-QL", "MOORL", "MOORL, SAC critic"])
    assert warmups == {"SAC (scratch)": 700, "RLPD": 700, "IQL": 0, "Cal-QL": 0, "MOORL": 0, "MOORL, SAC critic": 0}
    assert f1.random_warmups({}, ["SAC (scratch)"]) == {"SAC (scratch)": 1000}  # a file from before the flag


def test_method_settings_list_every_setting_a_method_reads():
    # METHOD_SETTINGS is what --merge compares between parts: changing any other non-shared setting must leave
    # every method's config unchanged, and changing a listed one must change it.
    base = argparse.Namespace(**f1.CLASSIC_DEFAULTS)
    for key in ("warmup", "rlpd_utd", "rlpd_critics", "offline_steps"):
        changed = f1.configs(argparse.Namespace(**{**vars(base), key: getattr(base, key) + 1}))
        for label, config in f1.configs(base).items():
            assert (changed[label] != config) == (key in f1.METHOD_SETTINGS.get(label, ())), (label, key)


def test_replot_adds_the_after_warmup_check(tmp_path):
    result = _warmup_result()
    result["args"] = {"warmup": 1000}
    f1.finish(result, str(tmp_path / "f1"), reps=20)
    claims = json.loads((tmp_path / "f1.json").read_text())["claims"]
    assert claims["F1a_after_warmup"]["step"] == 1500.0 and claims["F1a_after_warmup"]["warmup_steps"] == 1000
