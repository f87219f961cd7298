"""The claim checks of paper_figures/action_free.py and paper_figures/unified_pg.py on hand-made results."""

import numpy as np

from paper_figures import action_free, unified_pg


def test_unified_pg_claims_from_final_points():
    runs = {}
    final = {("clean", "sft"): 0.6, ("clean", "grpo"): 0.0, ("clean", "sft_then_rl"): 0.7, ("clean", "hpt"): 0.68,
             ("noisy", "sft"): 0.2, ("noisy", "grpo"): 0.0, ("noisy", "sft_then_rl"): 0.3, ("noisy", "hpt"): 0.1}
    for (setting, method), value in final.items():
        runs[f"H10/{setting}/{method}"] = {"steps": [1, 2], "success": [[0.0, value], [0.0, value]]}
    claims = unified_pg.claims_of({"runs": runs}, [10])["claims"]
    assert claims["U1 H=10 clean"]["held"]  # 0.68 >= 0.7 - 0.05
    assert not claims["U1 H=10 noisy"]["held"]  # 0.1 < 0.3 - 0.05
    np.testing.assert_allclose([claims["U2 H=10"]["hpt_drop"], claims["U2 H=10"]["sft_drop"]], [0.58, 0.4])
    assert not claims["U2 H=10"]["held"]


def test_action_free_claim_is_iqm_within_or_above_the_full_ci():
    rng = np.random.default_rng(0)
    full = 50 + rng.normal(0, 5, 8)
    tasks = {"pendulum": {"td3_bc/full": {"scores": full.tolist()},
                          "td3_bc/medium/0.1": {"scores": (full - 1).tolist()},
                          "td3_bc/random/0.1": {"scores": (full - 40).tolist()}}}
    result = {"args": {"algos": ["td3_bc"], "sources": ["medium", "random"]}, "tasks": tasks}
    summary = action_free.summarise(result, reps=200)
    claims = summary["claims"]
    assert claims["td3_bc, labelled from medium, 10%"]["held"]
    assert not claims["td3_bc, labelled from random, 10%"]["held"]
    iqm, lo, hi = summary["iqm"]["td3_bc/full"]
    assert lo <= iqm <= hi
