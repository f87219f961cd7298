"""Figure F1 (our design; docs/algorithms/moorl.md): normalized return vs online env steps, given offline data,
for MOORL, RLPD, Cal-QL (offline pre-training, then online), IQL (same) and SAC from scratch, with IQM and
95% stratified-bootstrap CIs over seeds x tasks (rliable), plus the eta_meta = 1, K = 1 MOORL run against
the alternating-SAC ablation (F1c).

    python -m paper_figures.moorl_offline_online      # the CPU default: 3 tasks x {medium, medium-replay}, 4k steps
    python -m paper_figures.moorl_offline_online --tasks reacher:medium,reacher:medium_replay --online-steps 15000 \
        --num-evals 5 --out paper_figures/moorl_offline_online_reacher
    python -m paper_figures.moorl_offline_online --replot paper_figures/moorl_offline_online.json   # figure only
    python -m paper_figures.moorl_offline_online --merge A.json,B.json --out C   # parts on other tasks or methods
    python -m paper_figures.moorl_offline_online --suite mujoco      # MuJoCo hopper/halfcheetah, --preset cpu
    python -m paper_figures.moorl_offline_online --suite mujoco --preset paper   # the accelerator budget

Tasks are env:dataset-kind pairs; datasets come from the builder (cached under data/). Scores are
normalized with the random and expert returns stored in each dataset's metadata (100 = expert).
Every algorithm runs all seeds in one vmapped program. Writes paper_figures/moorl_offline_online.png and
paper_figures/moorl_offline_online.json (every per-seed curve, the claims and whether they held).

Budget choices for a 2-core CPU (all stated in the output): small networks, RLPD with UTD 4 and 4 critics
instead of 20 and 10, IQL/Cal-QL offline phases of ``--offline-steps`` updates, SAC from scratch with
1000 random warm-up steps.

Suites and presets. ``--suite classic`` (the default) is the set of CPU stand-in tasks above, with the defaults
above unless a ``--preset`` is named. ``--suite mujoco`` is MuJoCo hopper and halfcheetah (D4RL v2 semantics)
with the builder's ``medium`` and ``medium-replay`` sets, scored with D4RL's reference returns (100 = D4RL's
expert, 0 = D4RL's random), and takes ``--preset cpu`` unless told otherwise. ``PRESETS`` holds every budget:
``cpu`` finishes within an hour on a 2-core CPU; ``paper`` (2x256 networks, batch 256, RLPD at UTD 20 with
10 critics, 100k online steps, 8 seeds) is meant for an accelerator; neither runs the F1c pair unless asked
(``--algos "MOORL eta=1 K=1,alternating SAC"``). A flag given on the command line overrides the preset's value.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.runner import Runner, RunSettings
from paper_figures.mujoco_data import MUJOCO_DATASET_RECIPES, MUJOCO_DATASET_SIZES, is_mujoco, with_d4rl_references
from paper_figures.provenance import (
    check_parts,
    joined_provenance,
    part_records,
    provenance,
    require_same,
    runtimes_per_part,
    seeded_global_numpy,
)

OUT = pathlib.Path(__file__).resolve().parent

SUITES = {
    "classic": "pendulum:medium,pendulum:medium_replay,mountaincar_continuous:medium,"
               "mountaincar_continuous:medium_replay,reacher:medium,reacher:medium_replay",
    "mujoco": "mujoco_hopper:medium,mujoco_hopper:medium_replay,mujoco_halfcheetah:medium,"
              "mujoco_halfcheetah:medium_replay",
}
# The settings a run takes when no flag names them: the classic suite's own (kept as they were), else a
# preset's. The MuJoCo sets come from the preset's SAC recipe (paper_figures/mujoco_data.py; the builder's
# default, 1M steps of a 2x256 SAC, is days on a CPU); the other suites' sets keep the builder's defaults.
CLASSIC_DEFAULTS = dict(seeds=8, online_steps=4_000, offline_steps=2_000, dataset_size=20_000, hidden=64, batch=128,
                        rlpd_utd=4, rlpd_critics=4, warmup=1_000, num_evals=4, eval_episodes=5, algos="")
PRESETS = {
    # Within an hour on the 2-core CPU beside another figure run (paper_figures/README.md, F1 on MuJoCo). The
    # F1c pair runs on one task by its own command (--algos "MOORL eta=1 K=1,alternating SAC"): it is an
    # exactness check, and a MuJoCo run's cost is mostly one compilation per (method, task).
    "cpu": dict(seeds=4, online_steps=3_000, offline_steps=2_000, dataset_size=MUJOCO_DATASET_SIZES["cpu"],
                hidden=64, batch=128, rlpd_utd=4, rlpd_critics=4, warmup=1_000, num_evals=5, eval_episodes=2,
                algos="SAC (scratch),RLPD,IQL,Cal-QL,MOORL"),
    # For an accelerator (paper_figures/run_paper_preset.sh): the papers' networks and RLPD setting, 100k online
    # steps; the F1c pair (an exactness check at any budget) is left to the CPU run.
    "paper": dict(seeds=8, online_steps=100_000, offline_steps=100_000, dataset_size=MUJOCO_DATASET_SIZES["paper"],
                  hidden=256, batch=256, rlpd_utd=20, rlpd_critics=10, warmup=5_000, num_evals=10, eval_episodes=5,
                  algos="SAC (scratch),RLPD,IQL,Cal-QL,MOORL"),
}


def resolve_settings(args) -> None:
    """Fills every setting left unset on the command line from the preset (the MuJoCo suite's default
    preset is ``cpu``; the classic suite without ``--preset`` keeps its own defaults)."""
    preset = args.preset or ("cpu" if args.suite == "mujoco" else None)
    if args.suite not in SUITES:
        raise SystemExit(f"unknown suite {args.suite!r}; suites: {', '.join(SUITES)}")
    if preset is not None and preset not in PRESETS:
        raise SystemExit(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    args.preset = preset
    base = PRESETS[preset] if preset else CLASSIC_DEFAULTS
    for key in CLASSIC_DEFAULTS:
        if getattr(args, key) is None:
            setattr(args, key, base[key])
    args.tasks = args.tasks or SUITES[args.suite]
    args.mujoco_dataset = dict(MUJOCO_DATASET_RECIPES[preset or "cpu"])


def dataset_options(env: str, args) -> dict:
    """Builder options for one env's sets: the preset's SAC recipe for MuJoCo envs, the defaults otherwise."""
    return dict(args.mujoco_dataset) if is_mujoco(env) else {}


def configs(args) -> dict[str, tuple[str, dict]]:
    """label -> (registered algorithm, config overrides)."""
    net = dict(hidden_sizes=(args.hidden, args.hidden), batch_size=args.batch)
    steps, warmup = args.online_steps, args.warmup
    return {
        "SAC (scratch)": ("sac", dict(total_steps=steps, warmup_steps=warmup, **net)),
        "RLPD": ("rlpd", dict(total_steps=steps, warmup_steps=warmup, utd=args.rlpd_utd,
                              num_critics=args.rlpd_critics, **net)),
        "IQL": ("iql", dict(offline_steps=args.offline_steps, online_steps=steps, **net)),
        "Cal-QL": ("cal_ql", dict(offline_steps=args.offline_steps, online_steps=steps, **net)),
        "MOORL": ("moorl", dict(total_steps=steps, **net)),
        # The same MOORL with SAC's plain critic instead of the LayerNorm one (our [R] default).
        "MOORL, SAC critic": ("moorl", dict(total_steps=steps, critic_layer_norm=False, **net)),
        "MOORL eta=1 K=1": ("moorl", dict(total_steps=steps, inner_steps=1, eta_meta=1.0, **net)),
        "alternating SAC": ("moorl", dict(total_steps=steps, inner_steps=1, meta_learning=False, **net)),
    }


def select_labels(available: dict, algos: str) -> dict:
    """The entries of ``available`` named in the comma-separated ``algos`` (all of them when empty). A label may
    itself hold a comma ("MOORL, SAC critic"): the longest run of comma-joined parts that is a label wins. An
    unknown name is a one-line error, not an empty run."""
    if not algos:
        return available
    parts, chosen, i = algos.split(","), set(), 0
    while i < len(parts):
        for j in range(len(parts), i, -1):
            name = ",".join(parts[i:j]).strip()
            if name in available:
                chosen.add(name)
                i = j
                break
        else:
            raise SystemExit(f"--algos: unknown label {parts[i].strip()!r}; labels: {'; '.join(available)}")
    return {k: v for k, v in available.items() if k in chosen}


def run_one(algo: str, overrides: dict, problem, seeds: int, num_evals: int, eval_episodes: int,
            deterministic: bool = True):
    spec = get_algorithm(algo)
    config = spec.config_cls(**overrides)
    runner = Runner(spec.make(config, problem), problem, default_hparams(spec, config),
                    RunSettings(num_seeds=seeds, num_evals=num_evals, eval_episodes=eval_episodes, progress=False,
                                checkpoint=False, deterministic_eval=deterministic))
    runner.run()
    # Online-step curve per seed: offline-phase evaluations sit at online step 0 (the last one is kept).
    rows = [r for r in runner.rows if "normalized_score" in r]
    curves = []
    for s in range(seeds):
        mine = [r for r in rows if r["seed"] == s]
        online = [r for r in mine if r["phase"] != "offline"]
        offline = [r for r in mine if r["phase"] == "offline"]
        pts = ([(0, offline[-1]["normalized_score"])] if offline else []) + [
            (r["env_steps"], r["normalized_score"]) for r in online
        ]
        curves.append(pts)
    return curves


def on_grid(curves, grid):
    out = []
    for pts in curves:
        x, y = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
        out.append(np.interp(grid, x, y))
    return np.array(out)  # (seeds, len(grid))


def iqm_with_ci(scores: dict[str, np.ndarray], reps: int, name: str = ""):
    """scores: label -> (runs, tasks); returns label -> (iqm, lo, hi) with rliable, its bootstrap seeded by
    ``name`` (so a replot gives the same intervals)."""
    from rliable import library as rly
    from rliable import metrics

    with seeded_global_numpy(name):
        point, ci = rly.get_interval_estimates(scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
    return {k: (float(point[k][0]), float(ci[k][0, 0]), float(ci[k][1, 0])) for k in scores}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="classic", help=f"task set: {', '.join(SUITES)} (default classic)")
    parser.add_argument("--preset", default=None, help=f"budget: {', '.join(PRESETS)} (default: the classic suite's "
                        "own settings; cpu for the mujoco suite); flags below override it")
    parser.add_argument("--tasks", default=None, help="env:kind pairs (default: the suite's)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--online-steps", type=int, default=None)
    parser.add_argument("--offline-steps", type=int, default=None)
    parser.add_argument("--dataset-size", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--rlpd-utd", type=int, default=None)
    parser.add_argument("--rlpd-critics", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None, help="random warm-up steps of SAC and RLPD")
    parser.add_argument("--num-evals", type=int, default=None)
    parser.add_argument("--eval-episodes", type=int, default=None)
    parser.add_argument("--reps", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--algos", default=None, help="comma-separated subset of labels (default: the preset's; "
                        "all without one)")
    parser.add_argument("--data-dir", default="data", help="the dataset builder's cache")
    parser.add_argument("--episode-steps", type=int, default=None,
                        help="episode length cap of every env and dataset (smoke runs; default: each env's own)")
    parser.add_argument("--out", default=None, help="output path without extension (default: "
                        "paper_figures/moorl_offline_online, or the --replot file's)")
    parser.add_argument("--sampled-eval", action="store_true",
                        help="evaluate every method's sampled policy (default: each one's deterministic policy)")
    parser.add_argument("--replot", default="", help="a JSON this script wrote: redo its figure and claims only")
    parser.add_argument("--merge", default="", help="comma-separated JSONs this script wrote with the same grid, "
                        "seeds, settings, data and evaluation protocol, on disjoint tasks (e.g. one process per task) "
                        "or with other methods (e.g. a method run later): one figure and one set of claims over all")
    args = parser.parse_args(argv)
    if args.merge:
        parts = args.merge.split(",")
        merged = merge_results([json.loads(pathlib.Path(part).read_text()) for part in parts])
        merged.update(joined_from=parts, joined_by=provenance(args))  # the merge's own code version and command
        finish(merged, args.out or parts[0].removesuffix(".json") + "_merged", args.reps)
        return
    if args.replot:
        result = json.loads(pathlib.Path(args.replot).read_text())
        # Older files have no "tasks" list; their curve keys are "env:kind:label".
        result.setdefault("tasks", list(dict.fromkeys(":".join(k.split(":", 2)[:2]) for k in result["per_seed_curves"])))
        finish(result, args.out or args.replot.removesuffix(".json"), args.reps)
        return
    resolve_settings(args)
    args.out = args.out or str(OUT / ("moorl_offline_online" + ("" if args.suite == "classic" else f"_{args.suite}")
                                      + (f"_{args.preset}" if args.preset else "")))

    from experiments.dataset_builder import get_or_build_dataset

    t_start = time.time()
    labels = select_labels(configs(args), args.algos)
    tasks = [t.split(":") for t in args.tasks.split(",")]
    grid = np.linspace(0, args.online_steps, args.num_evals + 1)
    raw: dict = {}
    references: dict = {}
    seconds: dict = {}
    env_kwargs = {"max_steps_in_episode": args.episode_steps} if args.episode_steps else {}
    paths = {f"{env}:{kind}": get_or_build_dataset(env, kind.replace("_", "-"), args.dataset_size, env_kwargs=env_kwargs,
                                                   data_dir=args.data_dir, **dataset_options(env, args))
             for env, kind in tasks}
    record = provenance(args, seeds=range(args.seeds), datasets=paths,
                        evaluation="sampled" if args.sampled_eval else "deterministic")
    for env, kind in tasks:
        path = paths[f"{env}:{kind}"]
        problem = with_d4rl_references(build_problem(env, env_kwargs, dataset=path))
        if problem.reference_returns() is None:
            raise SystemExit(f"dataset {path} has no reference returns in its metadata")
        references[f"{env}:{kind}"] = {"random": problem.reference_returns()[0],
                                       "expert": problem.reference_returns()[1],
                                       "source": "D4RL" if "d4rl_task" in problem.dataset_info else "builder"}
        for label, (algo, overrides) in labels.items():
            t0 = time.time()
            curves = run_one(algo, overrides, problem, args.seeds, args.num_evals, args.eval_episodes,
                             deterministic=not args.sampled_eval)
            raw[f"{env}:{kind}:{label}"] = curves
            seconds[f"{env}:{kind}:{label}"] = time.time() - t0
            final = on_grid(curves, grid)[:, -1]
            print(f"{env}:{kind:<14} {label:<17} final normalized {final.mean():7.1f} +- {final.std():5.1f} "
                  f"({time.time() - t0:5.0f} s)", flush=True)
        # Written after every task, so a run stopped part-way keeps the tasks it finished ("complete" says which).
        done = [":".join(t) for t in tasks[:tasks.index([env, kind]) + 1]]
        result = {"args": vars(args), "provenance": record, "tasks": done, "grid": grid.tolist(),
                  "references": references, "per_seed_curves": raw, "seconds": seconds,
                  "runtime_s": time.time() - t_start, "complete": len(done) == len(tasks)}
        finish(result, args.out, args.reps)


# The settings every method of the figure reads (the evaluation grid covers online_steps and num_evals too).
SHARED_SETTINGS = ("online_steps", "num_evals", "eval_episodes", "hidden", "batch", "dataset_size", "episode_steps")
# The settings only some methods read (configs() above): two parts must agree on one where both hold such a method.
METHOD_SETTINGS = {"SAC (scratch)": ("warmup",), "RLPD": ("warmup", "rlpd_utd", "rlpd_critics"),
                   "IQL": ("offline_steps",), "Cal-QL": ("offline_steps",)}
# A file written before a setting had its flag has no key for it; configs() then fixed it at this value.
BEFORE_THEIR_FLAGS = {"warmup": 1_000, "rlpd_utd": 4, "rlpd_critics": 4, "episode_steps": None}


def setting_of(part: dict, key: str):
    """One run setting as the part ran it (its args, else the value fixed before the flag existed)."""
    args = part.get("args") or {}
    return args[key] if key in args else BEFORE_THEIR_FLAGS.get(key)


def labels_of(part: dict) -> list[str]:
    return list(dict.fromkeys(k.split(":", 2)[2] for k in part["per_seed_curves"]))


def seeds_of(part: dict) -> list:
    """The seeds each run in the part recorded (the count of per-seed curves for a file without provenance)."""
    recorded = [record["seeds"] for record in part_records(part.get("provenance")) if record.get("seeds") is not None]
    return list(dict.fromkeys(map(tuple, recorded))) or [tuple(range(len(next(iter(part["per_seed_curves"].values())))))]


def merge_results(results: list[dict]) -> dict:
    """One result from parts that hold different methods on the same tasks, the same methods on disjoint tasks
    (e.g. one process per task), or both, provided every method ends with every task. Refused (one-line
    SystemExit naming the difference) when the parts differ in evaluation grid, seeds, a shared setting, a
    setting of a method both hold, evaluation protocol, the content of a dataset or the references of a task,
    when one method on one task is in two parts, or when the join leaves a method without a task. Curves,
    tasks, references and times joined; every part's provenance kept; runtime the longest part's
    (``runtime_s_per_part`` keeps each)."""
    check_parts(results, {"evaluation grid": lambda r: r["grid"], "seeds": seeds_of,
                          **{key: (lambda r, key=key: setting_of(r, key)) for key in SHARED_SETTINGS}})
    args = dict(results[0].get("args") or {})
    for key in dict.fromkeys(k for keys in METHOD_SETTINGS.values() for k in keys):
        holders = [r for r in results if any(key in METHOD_SETTINGS.get(label, ()) for label in labels_of(r))]
        require_same(f"{key} (read by {', '.join(label for label, keys in METHOD_SETTINGS.items() if key in keys)})",
                     [setting_of(r, key) for r in holders])
        args[key] = setting_of((holders or results)[0], key)
    curves, references, seconds = {}, {}, {}
    for r in results:
        for key, runs in r["per_seed_curves"].items():
            if key in curves:
                raise SystemExit(f"--merge: {key} appears in more than one part")
            curves[key] = runs
        for task, refs in r.get("references", {}).items():
            require_same(f"the normalization references of {task}", [references.setdefault(task, refs), refs])
        seconds.update(r.get("seconds", {}))
    tasks = list(dict.fromkeys(t for r in results for t in r["tasks"]))
    labels = list(dict.fromkeys(label for r in results for label in labels_of(r)))
    missing = [f"{task}:{label}" for task in tasks for label in labels if f"{task}:{label}" not in curves]
    if missing:
        raise SystemExit(f"--merge: the parts leave {len(missing)} method-task pair(s) without a run, e.g. {missing[0]}")
    args.update(tasks=",".join(tasks), algos=",".join(labels))
    per_part = runtimes_per_part(results)
    return {"args": args, "provenance": joined_provenance(results), "tasks": tasks, "grid": results[0]["grid"],
            "references": references, "per_seed_curves": curves, "seconds": seconds,
            "runtime_s": max(per_part), "runtime_s_per_part": per_part,
            "complete": all(r.get("complete", True) for r in results)}


def summarise(result: dict, reps: int):
    """IQM and 95% CIs per method at each grid point: over runs x tasks ("all") and per task."""
    grid, tasks = np.array(result["grid"]), result["tasks"]
    labels = labels_of(result)
    # (runs, tasks, points) per method; the aggregate is the IQM over runs x tasks at each point.
    stacked = {lab: np.stack([on_grid(result["per_seed_curves"][f"{t}:{lab}"], grid) for t in tasks], axis=1)
               for lab in labels}
    summary = {"all": {lab: [iqm_with_ci({lab: v[:, :, i]}, reps, f"all:{lab}:{i}")[lab] for i in range(len(grid))]
                       for lab, v in stacked.items()}}
    for ti, task in enumerate(tasks):
        summary[task] = {lab: [iqm_with_ci({lab: v[:, ti:ti + 1, i]}, reps, f"{task}:{lab}:{i}")[lab]
                               for i in range(len(grid))]
                         for lab, v in stacked.items()}
    return stacked, summary


def random_warmups(args: dict, labels) -> dict[str, int]:
    """label -> the env steps it acts at random before learning, read from the method's config as configs()
    builds it from ``args`` (a setting missing from an older file takes the classic default it had then)."""
    settings = argparse.Namespace(**{**CLASSIC_DEFAULTS, **{k: v for k, v in args.items() if v is not None}})
    available = configs(settings)
    warmups = {}
    for label in labels:
        if label in available:
            algo, overrides = available[label]
            spec = get_algorithm(algo)
            field = spec.budget.warmup_field
            warmups[label] = int(getattr(spec.config_cls(**overrides), field)) if field else 0
    return warmups


def claims_of(grid, stacked, curves, warmups: dict[str, int] | None = None) -> dict:
    """F1a-F1c on the aggregate curves (``curves``: label -> [(iqm, lo, hi)] per grid point). With ``warmups``
    (label -> random warm-up steps), F1a is checked a second time at the first evaluation point after the
    longest warm-up ("F1a_after_warmup"): F1a's 20% point can fall inside SAC's warm-up, where SAC (and RLPD)
    are scored with an untrained actor."""
    early = max(int(np.searchsorted(grid, 0.2 * grid[-1], side="right")) - 1, 1)
    claims = {}
    hybrid = [k for k in ("MOORL", "RLPD", "Cal-QL", "IQL") if k in curves]

    def beats_sac(point):
        margins = {k: curves[k][point][0] - curves["SAC (scratch)"][point][0] for k in hybrid}
        return {"margins": margins, "held": bool(all(m > 0 for m in margins.values()))}

    if "SAC (scratch)" in curves:
        claims["F1a"] = {"statement": f"every hybrid method beats SAC from scratch at {grid[early]:.0f} online steps "
                                      f"(<= 20% of the budget), IQM", **beats_sac(early)}
    if "SAC (scratch)" in curves and warmups:
        longest = max(warmups.values())
        longest_of = ", ".join(label for label, steps in warmups.items() if steps == longest)
        after = int(np.searchsorted(grid, longest, side="right"))  # the first point strictly after the warm-up
        warmup = f"the longest random warm-up ({longest} steps: {longest_of})"
        if after < len(grid):
            claims["F1a_after_warmup"] = {
                "statement": f"every hybrid method beats SAC from scratch at {grid[after]:.0f} online steps, the first "
                             f"evaluation after {warmup}, IQM",
                "step": float(grid[after]), "warmup_steps": longest, **beats_sac(after)}
        else:
            claims["F1a_after_warmup"] = {"statement": f"not checked: no evaluation point after {warmup}",
                                          "step": None, "warmup_steps": longest, "held": None}
    if "MOORL" in curves:
        gaps = {k: curves["MOORL"][-1][0] - curves[k][-1][0] for k in ("RLPD", "Cal-QL") if k in curves}
        claims["F1b"] = {"statement": "MOORL's final IQM >= RLPD's and Cal-QL's", "gaps": gaps,
                         "held": bool(all(g >= 0 for g in gaps.values()))}
    if "MOORL eta=1 K=1" in stacked and "alternating SAC" in stacked:
        diff = float(np.abs(stacked["MOORL eta=1 K=1"] - stacked["alternating SAC"]).max())
        claims["F1c"] = {"statement": "MOORL (eta_meta=1, K=1) matches the alternating-SAC ablation",
                         "max_abs_normalized_difference": diff, "held": bool(diff < 1e-3)}
    return claims


def plot(grid, summary: dict, title: str, path: str):
    """One panel for the aggregate over tasks, then one per task (IQM and 95% CI)."""
    import matplotlib.pyplot as plt

    panels = ["all"] if len(summary) == 2 else list(summary)  # one task: its panel would repeat "all"
    cols = min(len(panels), 4)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for label, pts in summary[panel].items():
            if label == "alternating SAC":  # identical to "MOORL eta=1 K=1" (F1c); drawn dashed once
                continue
            iqm = np.array([p[0] for p in pts])
            lo, hi = np.array([p[1] for p in pts]), np.array([p[2] for p in pts])
            ax.plot(grid, iqm, "--" if label == "MOORL eta=1 K=1" else "-", label=label)
            ax.fill_between(grid, lo, hi, alpha=0.15)
        ax.set_title("IQM over all tasks" if panel == "all" else panel, fontsize=9)
        ax.set_xlabel("online env steps")
        ax.set_ylabel("normalized return")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def finish(result: dict, out: str, reps: int):
    """Summaries, claims, the figure and the JSON from per-seed curves (a fresh run or --replot)."""
    grid = np.array(result["grid"])
    stacked, summary = summarise(result, reps)
    result["iqm_ci"] = summary["all"]
    result["iqm_ci_per_task"] = {k: v for k, v in summary.items() if k != "all"}
    result["claims"] = claims_of(grid, stacked, summary["all"], random_warmups(result.get("args") or {}, stacked))
    seeds = len(next(iter(result["per_seed_curves"].values())))
    sources = {ref.get("source") for ref in result.get("references", {}).values()}
    scale = "100 = D4RL expert, 0 = D4RL random" if sources == {"D4RL"} else "100 = builder expert, 0 = random"
    preset = result.get("args", {}).get("preset")
    plot(grid, summary, f"F1: {len(result['tasks'])} task(s), {seeds} seeds"
         + (f", preset {preset}" if preset else "") + f"; {scale}", out + ".png")
    pathlib.Path(out + ".json").write_text(json.dumps(result, indent=1))
    for task, curves in summary.items():
        finals = ", ".join(f"{lab} {pts[-1][0]:.1f}" for lab, pts in curves.items())
        print(f"final IQM [{task}]: {finals}")
    for name, c in result["claims"].items():
        verdict = "NOT CHECKED" if c["held"] is None else "HELD" if c["held"] else "NOT HELD"
        print(f"{name}: {verdict}: {c['statement']}: "
              f"{ {k: v for k, v in c.items() if k not in ('statement', 'held')} }")
    print(f"runtime {result['runtime_s']:.0f} s")


if __name__ == "__main__":
    main()
