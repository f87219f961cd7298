"""Fig. C1 (our design; docs/algorithms/rbocpd_ucrl2.md): dynamic regret of R-BOCPD-UCRL2 and its baselines on
Switching RiverSwim.

    python -m paper_figures.rbocpd_regret                 # 16 seeds, all panels, writes rbocpd_regret.{png,json}
    python -m paper_figures.rbocpd_regret --panels main   # only the S=3 panel

Panels (each algorithm is one ``jax.jit(jax.vmap(...))`` program over seeds; SW-UCRL2's three windows are a
second vmapped axis of one program, since its window is a traced hyper-parameter):

* ``main``: Switching RiverSwim, S = 3, theory constants (c = 1), T = 60,000, action swaps at 20,000 and 40,000.
* ``large``: the same with S = 6, c = 0.3, T = 90,000, swaps at 30,000 and 60,000 (with c = 1 UCRL2 is
  still exploring on S = 6 when the first change comes, so the confidence multiplier is scaled down, as stated).
* ``stationary``: RiverSwim S = 3, T = 60,000: UCRL2's regret is sublinear, and R-BOCPD-UCRL2 never restarts.

Curves: mean cumulative regret over seeds (sum of rho*_{l(t)} - r_{l(t)}(s_t, a_t), expected rewards) with a
standard-error band, dotted vertical lines at the change points, tick marks at R-BOCPD-UCRL2's restarts.

Claim checked (main panel): at T the mean regret of R-BOCPD-UCRL2 is below UCRL2's, UCRL2-restarts' and
SW-UCRL2's for every W in {2000, 6000, 20000}, and within 1.3x of oracle-restart UCRL2; it detects each change
within 500 steps in >= 90% of seeds, with <= 0.25 false alarms per run (a restart not within 500 steps after a
change). Stationary panel: log-log slope of UCRL2's regret over the second half < 0.9 and no restart.
The script prints each check and writes every number to ``rbocpd_regret.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from algorithms import ucrl2
from experiments.catalog import build_problem, default_hparams, get_algorithm
from paper_figures.provenance import provenance

HERE = pathlib.Path(__file__).resolve().parent
WINDOWS = (2_000, 6_000, 20_000)
DETECTION_WINDOW = 500

PANELS = {
    "main": dict(title="Switching RiverSwim, S=3, c=1", env="riverswim_switching",
                 env_kwargs=dict(num_states=3, total_steps=60_000), T=60_000, scale=1.0),
    "large": dict(title="Switching RiverSwim, S=6, c=0.3", env="riverswim_switching",
                  env_kwargs=dict(num_states=6, total_steps=90_000), T=90_000, scale=0.3),
    "stationary": dict(title="RiverSwim (stationary), S=3, c=1: the two curves coincide", env="riverswim",
                       env_kwargs=dict(num_states=3), T=60_000, scale=1.0),
}


def run(name, prob, T, keys, stride, grid=None, **overrides):
    """Cumulative-regret curves ``(points, seeds, T // stride)`` and restart logs ``(points, seeds, L)``."""
    spec = get_algorithm(name)
    config = spec.config_cls(total_steps=T, **overrides)
    agent = spec.make(config, prob)
    hp = default_hparams(spec, config)
    grid = grid or {}
    n = len(next(iter(grid.values()))) if grid else 1
    hps = {k: jnp.asarray(grid.get(k, [float(v)] * n), jnp.float32) for k, v in hp.items()}

    def seeds(h):
        return jax.vmap(lambda k: ucrl2.regret_curve(agent, k, h, T, stride))(keys)

    t0 = time.perf_counter()
    state, curve = jax.block_until_ready(jax.jit(jax.vmap(seeds))(hps))
    seconds = time.perf_counter() - t0
    return np.asarray(curve), np.asarray(state.restart_log), np.asarray(state.num_restarts), seconds


def detection_stats(logs, num_restarts, change_times):
    """Per change: fraction of seeds with a restart in [c, c + 500]; false alarms per run; median delay."""
    detected, delays = [], []
    for c in change_times:
        hit = (logs >= c) & (logs <= c + DETECTION_WINDOW)
        detected.append(float(hit.any(-1).mean()))
        first = np.where(hit, logs, np.iinfo(np.int32).max).min(-1)
        delays.extend((first[first < np.iinfo(np.int32).max] - c).tolist())
    valid = logs >= 0
    near = np.zeros_like(valid)
    for c in change_times:
        near |= (logs >= c) & (logs <= c + DETECTION_WINDOW)
    false_alarms = (valid & ~near).sum(-1) + np.maximum(num_restarts - logs.shape[-1], 0)  # unlogged ones count
    return {
        "detected_fraction": detected,
        "false_alarms_per_run": float(false_alarms.mean()),
        "median_delay": float(np.median(delays)) if delays else float("nan"),
        "max_delay": int(max(delays)) if delays else -1,
        "mean_restarts": float(num_restarts.mean()),
    }


def run_panel(panel, num_seeds, stride, log):
    spec = PANELS[panel]
    prob = build_problem(spec["env"], spec["env_kwargs"])
    T = spec["T"]
    keys = jax.random.split(jax.random.key(0), num_seeds)  # common random numbers across algorithms
    common = dict(confidence_scale=spec["scale"])
    changes = [] if spec["env"] == "riverswim" else [int(c) for c in np.asarray(prob.env_params.change_times)]
    runs = {}
    names = [("UCRL2", "ucrl2", {}, None), ("R-BOCPD-UCRL2", "rbocpd_ucrl2", {}, None)]
    if changes:
        names += [("oracle restarts", "oracle_ucrl2", {}, None), ("UCRL2-restarts", "ucrl2_restarts", {}, None),
                  ("SW-UCRL2", "sw_ucrl2", {"max_window": max(WINDOWS)}, {"window": [float(w) for w in WINDOWS]})]
    for label, name, extra, grid in names:
        curve, logs, restarts, seconds = run(name, prob, T, keys, stride, grid, **common, **extra)
        if grid:
            for i, w in enumerate(WINDOWS):
                runs[f"SW-UCRL2 (W={w})"] = dict(curve=curve[i], logs=logs[i], restarts=restarts[i], seconds=seconds)
        else:
            runs[label] = dict(curve=curve[0], logs=logs[0], restarts=restarts[0], seconds=seconds)
        log(f"  [{panel}] {label:<16} {seconds:6.1f} s (compile + run, {num_seeds} seeds"
            + (f" x {len(grid['window'])} windows)" if grid else ")"))
    return prob, T, changes, runs


def check_claims(panel, T, changes, runs, stride):
    final = {k: float(v["curve"][:, -1].mean()) for k, v in runs.items()}
    stderr = {k: float(v["curve"][:, -1].std(ddof=1) / math.sqrt(v["curve"].shape[0])) for k, v in runs.items()}
    out = {"final_regret_mean": final, "final_regret_se": stderr,
           "seconds": {k: v["seconds"] for k, v in runs.items()}}
    rb = runs["R-BOCPD-UCRL2"]
    out["detection"] = detection_stats(rb["logs"], rb["restarts"], changes)
    checks = {}
    if changes:
        for k in final:
            if k.startswith(("UCRL2", "SW-UCRL2")):
                checks[f"R-BOCPD-UCRL2 < {k}"] = final["R-BOCPD-UCRL2"] < final[k]
        ratio = final["R-BOCPD-UCRL2"] / final["oracle restarts"]
        out["ratio_to_oracle"] = ratio
        checks["R-BOCPD-UCRL2 <= 1.3 x oracle"] = ratio <= 1.3
        for c, frac in zip(changes, out["detection"]["detected_fraction"]):
            checks[f"change at {c} detected within {DETECTION_WINDOW} steps in >= 90% of seeds"] = frac >= 0.9
        checks["<= 0.25 false alarms per run"] = out["detection"]["false_alarms_per_run"] <= 0.25
    else:
        mean = runs["UCRL2"]["curve"].mean(0)
        half = mean[(T // 2) // stride - 1]
        slope = math.log(mean[-1] / half) / math.log(2.0)
        out["ucrl2_second_half_loglog_slope"] = slope
        checks["UCRL2 log-log slope over the second half < 0.9"] = slope < 0.9
        checks["R-BOCPD-UCRL2 never restarts"] = out["detection"]["mean_restarts"] == 0.0
        checks["R-BOCPD-UCRL2 == UCRL2 (same keys, no restart)"] = bool(
            np.array_equal(runs["R-BOCPD-UCRL2"]["curve"], runs["UCRL2"]["curve"]))
    out["checks"] = {k: bool(v) for k, v in checks.items()}
    return out


STYLE = {
    "UCRL2": dict(color="tab:gray"),
    "UCRL2-restarts": dict(color="tab:brown"),
    "SW-UCRL2 (W=2000)": dict(color="tab:green", ls=":"),
    "SW-UCRL2 (W=6000)": dict(color="tab:green", ls="--"),
    "SW-UCRL2 (W=20000)": dict(color="tab:green", ls="-."),
    "oracle restarts": dict(color="black", ls="--"),
    "R-BOCPD-UCRL2": dict(color="tab:red", lw=2),
}


def plot(ax, title, T, changes, runs, stride):
    x = np.arange(1, T // stride + 1) * stride
    for label, r in runs.items():
        c = r["curve"]
        mean, se = c.mean(0), c.std(0, ddof=1) / math.sqrt(c.shape[0])
        style = STYLE.get(label, {})
        ax.plot(x, mean, label=label, **style)
        ax.fill_between(x, mean - se, mean + se, alpha=0.2, color=style.get("color"))
    for c in changes:
        ax.axvline(c, color="k", ls=":", lw=1)
    logs = runs["R-BOCPD-UCRL2"]["logs"]
    restarts = logs[logs >= 0]
    ymax = ax.get_ylim()[1]
    ax.plot(restarts, np.full(restarts.shape, 0.02 * ymax), "|", color="tab:red", ms=12, mew=1.5,
            label="R-BOCPD restarts (all seeds)")
    ax.set_title(title)
    ax.set_xlabel("time step")
    ax.set_ylabel("cumulative dynamic regret")
    ax.legend(fontsize=7, loc="upper left")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--panels", default="main,large,stationary", help=f"comma list of {list(PANELS)}")
    parser.add_argument("--stride", type=int, default=100, help="steps between curve points")
    parser.add_argument("--out", default=str(HERE / "rbocpd_regret"), help="output path without extension")
    args = parser.parse_args()
    panels = [p.strip() for p in args.panels.split(",") if p.strip()]
    for p in panels:
        if p not in PANELS:
            parser.error(f"unknown panel {p!r}; choose from {list(PANELS)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_start = time.perf_counter()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    results = {"seeds": args.seeds, "device": jax.devices()[0].device_kind, "panels": {}}
    for ax, panel in zip(axes[0], panels):
        print(f"panel {panel}: {PANELS[panel]['title']}, T = {PANELS[panel]['T']}")
        prob, T, changes, runs = run_panel(panel, args.seeds, args.stride, print)
        res = check_claims(panel, T, changes, runs, args.stride)
        results["panels"][panel] = {"title": PANELS[panel]["title"], "T": T, "change_times": changes, **res}
        plot(ax, PANELS[panel]["title"], T, changes, runs, args.stride)
        for k in res["final_regret_mean"]:
            mean, se = res["final_regret_mean"][k], res["final_regret_se"][k]
            print(f"    {k:<20} final regret {mean:9.1f} +- {se:7.1f} (se)")
        d = res["detection"]
        print(f"    R-BOCPD-UCRL2: restarts/run {d['mean_restarts']:.2f}, detected {d['detected_fraction']}, "
              f"false alarms/run {d['false_alarms_per_run']:.3f}, median delay {d['median_delay']}, "
              f"max {d['max_delay']}")
        for k, ok in res["checks"].items():
            print(f"    [{'PASS' if ok else 'FAIL'}] {k}")
    results["total_seconds"] = time.perf_counter() - t_start
    fig.tight_layout()
    out = pathlib.Path(args.out)
    fig.savefig(out.with_suffix(".png"), dpi=110)
    # Code version and seeds (the data are drawn in-run from the seeds' keys: no dataset file).
    results["provenance"] = provenance(args, seeds=range(args.seeds))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.json')} in {results['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
