"""Figs. A1 and A2 (our design, docs/algorithms/demo_regularized.md; the paper publishes no experiment):
demonstration-regularized RL.

    python -m paper_figures.demo_regularized                  # 16 seeds, both figures
    python -m paper_figures.demo_regularized --figures a1     # only A1

* **A1**: ``KL_traj(pi^E || pi^BC)`` (exact dynamic programming under ``pi^E``) against N^E in
  {10, 30, 100, 300, 1000, 3000} on the 5x5 grid world (H = 15, success 0.9), expert ``softmax(Q*/0.15)``,
  add-one BC per step h; reference line S A H / N^E. Claim: the curve is below S A H / N^E everywhere and its local
  log-log slope over [1000, 3000] is in [-1.1, -0.75].
* **A2**: unregularised suboptimality of the output policy against online episodes K on the H = 10, A = 4
  combination lock, for UCBVI (no demos; bonus-free greedy output), BC alone, and DemoReg with N^E in
  {10, 30, 100, 300}, ``lam = epsilon N^E / (3 S A H)``, epsilon = 0.1, Hoeffding bonus with c_b = 0.05 for both
  UCBVI and DemoReg (a tuned constant, not the paper's); UCBVI-Ent (lam = 0.01) is drawn for reference. A lambda
  sweep panel (N^E = 30, lam x {0.1, 1, 10}) shows the bias trade-off. Claim: for every K in {0, 10, 30, 100, 300}
  and N^E, DemoReg's mean suboptimality <= min(BC, UCBVI) + 0.02; the first K with mean suboptimality <= 0.1 is
  non-increasing in N^E and strictly smaller than UCBVI's for N^E >= 30.

Each curve is one ``jax.jit(jax.vmap(...))`` program over seeds; every number goes to ``demo_regularized.json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import numpy as np

from algorithms import demo_regularized as dr
from algorithms import ucbvi
from experiments.catalog import build_problem, default_hparams, get_algorithm
from paper_figures.provenance import provenance

HERE = pathlib.Path(__file__).resolve().parent
A1_DEMOS = (10, 30, 100, 300, 1000, 3000)
A2_DEMOS = (10, 30, 100, 300)
A2_K = (0, 10, 30, 100, 300)


def figure_a1(keys):
    problem = build_problem("gridworld")
    model = ucbvi.tabular_model(problem)
    pi_e = dr.expert_policy(model, "softmax", temperature=0.15)
    eps_e = float(model.v_star - model.value(pi_e))
    kls = {}
    for n in A1_DEMOS:
        f = jax.jit(jax.vmap(lambda k: dr.trajectory_kl(model, pi_e, dr.bc_policy(dr.demo_counts(k, model, pi_e, n), 1.0))))
        kls[n] = np.asarray(f(keys))
    S, A, H = model.S, model.A, model.H
    mean = np.array([kls[n].mean() for n in A1_DEMOS])
    ref = np.array([S * A * H / n for n in A1_DEMOS])
    slope = float(np.log(mean[-1] / mean[-2]) / np.log(A1_DEMOS[-1] / A1_DEMOS[-2]))
    checks = {
        "KL below S*A*H/N^E everywhere": bool(np.all(mean < ref)),
        "local slope over [1000, 3000] in [-1.1, -0.75]": -1.1 <= slope <= -0.75,
    }
    return {
        "demos": list(A1_DEMOS), "kl_mean": mean.tolist(),
        "kl_se": [float(kls[n].std() / np.sqrt(kls[n].size)) for n in A1_DEMOS],
        "reference_SAH_over_N": ref.tolist(), "ratio_to_reference": (mean / ref).tolist(),
        "local_slope_1000_3000": slope, "expert_suboptimality": eps_e, "v_star": float(model.v_star),
        "checks": checks,
    }


def _curve(problem, name, config, keys, K):
    spec = get_algorithm(name)
    agent = spec.make(config, problem)
    hp = default_hparams(spec, config)
    return np.asarray(jax.jit(jax.vmap(lambda k: ucbvi.learning_curve(agent, k, hp, K)[1]))(keys))


def _first_below(curve_mean, level=0.1):
    idx = np.nonzero(curve_mean <= level)[0]
    return int(idx[0]) if idx.size else None


def figure_a2(keys, K=301):
    problem = build_problem("comblock_tabular")
    model = ucbvi.tabular_model(problem)
    curves = {"ucbvi": _curve(problem, "ucbvi", ucbvi.Config(episodes=K, bonus_scale=0.05), keys, K),
              "ucbvi_ent": _curve(problem, "ucbvi_ent", ucbvi.EntConfig(episodes=K, bonus_scale=0.05, lam=0.01),
                                  keys, K)}
    for n in A2_DEMOS:
        curves[f"bc_{n}"] = _curve(problem, "bc_tabular", dr.BCConfig(episodes=K, demos=n), keys, K)
        curves[f"demoreg_{n}"] = _curve(problem, "demo_regularized", dr.Config(episodes=K, demos=n), keys, K)
    lam_rule = 0.1 * 30 / (3 * model.S * model.A * model.H)
    for factor in (0.1, 10.0):
        curves[f"demoreg_30_lam_x{factor:g}"] = _curve(
            problem, "demo_regularized", dr.Config(episodes=K, demos=30, lam=lam_rule * factor), keys, K
        )
    means = {k: v.mean(0) for k, v in curves.items()}
    table = {k: {str(kk): float(m[kk]) for kk in A2_K} for k, m in means.items()}
    margins = {}
    for n in A2_DEMOS:
        best_baseline = np.minimum(means[f"bc_{n}"], means["ucbvi"])[list(A2_K)]
        margins[n] = float(np.max(means[f"demoreg_{n}"][list(A2_K)] - best_baseline))
    first = {n: _first_below(means[f"demoreg_{n}"]) for n in A2_DEMOS}
    first_ucbvi = _first_below(means["ucbvi"])
    inf = 10**9
    seq = [inf if first[n] is None else first[n] for n in A2_DEMOS]
    u = inf if first_ucbvi is None else first_ucbvi
    checks = {
        "DemoReg <= min(BC, UCBVI) + 0.02 at every K and N^E": all(m <= 0.02 for m in margins.values()),
        "episodes-to-0.1 non-increasing in N^E": all(a >= b for a, b in zip(seq, seq[1:])),
        "episodes-to-0.1 < UCBVI's for N^E >= 30": all(s < u for n, s in zip(A2_DEMOS, seq) if n >= 30),
    }
    return {
        "K": list(A2_K), "mean_suboptimality": table,
        "worst_margin_vs_min_bc_ucbvi": {str(k): v for k, v in margins.items()},
        "episodes_to_0.1": {**{f"demoreg_{n}": first[n] for n in A2_DEMOS}, "ucbvi": first_ucbvi},
        "lambda_rule_N30": lam_rule, "checks": checks,
    }, means


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--figures", default="a1,a2")
    parser.add_argument("--out", default=str(HERE / "demo_regularized"), help="output path without extension")
    args = parser.parse_args()
    figures = args.figures.split(",")
    keys = jax.random.split(jax.random.key(0), args.seeds)
    t0 = time.time()
    results, means = {"seeds": args.seeds}, None
    if "a1" in figures:
        results["A1"] = figure_a1(keys)
    if "a2" in figures:
        results["A2"], means = figure_a2(keys)
    results["total_seconds"] = time.time() - t0
    for fig_name in ("A1", "A2"):
        for claim, ok in results.get(fig_name, {}).get("checks", {}).items():
            print(f"[{fig_name}] {'HOLDS' if ok else 'FAILS'}: {claim}")

    import matplotlib.pyplot as plt

    panels = [f for f in ("a1", "a2", "a2lam") if f in figures or (f == "a2lam" and "a2" in figures)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "a1":
            r = results["A1"]
            ax.loglog(r["demos"], r["kl_mean"], "o-", label="KL_traj(pi^E || pi^BC)")
            ax.loglog(r["demos"], r["reference_SAH_over_N"], "k--", label="S A H / N^E")
            ax.set_xlabel("N^E (expert trajectories)")
            ax.set_title(f"A1: BC on 5x5 grid, H=15 ({args.seeds} seeds)")
            ax.legend()
        elif panel == "a2":
            k = np.arange(len(means["ucbvi"]))
            ax.plot(k, means["ucbvi"], "k-", label="UCBVI (no demos)")
            ax.plot(k, means["ucbvi_ent"], "k:", label="UCBVI-Ent (no demos)")
            for i, n in enumerate(A2_DEMOS):
                c = f"C{i}"
                ax.plot(k, means[f"demoreg_{n}"], "-", color=c, label=f"DemoReg N^E={n}")
                ax.plot(k, means[f"bc_{n}"], "--", color=c, label=f"BC N^E={n}")
            ax.set_xscale("symlog", linthresh=10)
            ax.set_xlabel("online episodes K")
            ax.set_ylabel("suboptimality V* - V^pi")
            ax.set_title("A2: combination lock H=10, A=4")
            ax.legend(fontsize=7)
        else:
            k = np.arange(len(means["ucbvi"]))
            for key, label in [("demoreg_30_lam_x0.1", "lam x 0.1"), ("demoreg_30", "lam (rule)"),
                               ("demoreg_30_lam_x10", "lam x 10"), ("bc_30", "BC"), ("ucbvi", "UCBVI")]:
                ax.plot(k, means[key], label=label)
            ax.set_xscale("symlog", linthresh=10)
            ax.set_xlabel("online episodes K")
            ax.set_title("A2: lambda sweep, N^E = 30")
            ax.legend(fontsize=8)
    fig.tight_layout()
    out = pathlib.Path(args.out)
    fig.savefig(out.with_suffix(".png"), dpi=110)
    # Code version and seeds (the data are drawn in-run from the seeds' keys: no dataset file).
    results["provenance"] = provenance(args, seeds=range(args.seeds))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.json')} in {results['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
