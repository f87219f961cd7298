"""One table and one figure for a whole study: ``python -m experiments.aggregate runs/sweeps/<time> [...]``.

Reads every run directory (a folder with ``config.yaml``) under the given paths, whatever launcher or
host wrote it, and aggregates the *finished* ones (``summary.json`` present, every seed reported) per
algorithm x task: interquartile mean (IQM) of the final evaluation score over seeds with a 95%
stratified-bootstrap confidence interval (rliable), mean and median, and a performance profile (the
fraction of seed-task runs scoring above tau, with its bootstrap band). Unfinished or failed runs are
listed with the reason and never averaged in.

A seed is identified by (root ``seed``, global seed index), so a study split into jobs of a few seeds each
(``seed_offset=``) gathers back into one set of seeds; a seed reported by two runs is counted once (the
newer one) and listed. The score is the D4RL-normalized score when every run of a task has one, else the
raw evaluation return; the performance profile, which pools tasks, min-max normalizes raw returns per task
over every run of the study.

Algorithms are labelled by name plus whatever differs between its runs (``algo.*`` keys, ``total_steps``,
swept ``hp_sweep`` points), e.g. ``rlpd[utd=10]``; tasks by env plus dataset file.

Outputs (``--out``, default ``<first path>/aggregate``): ``aggregate.csv`` (one row per algorithm x task),
``per_seed.csv`` (every seed's final score: the raw data for a paper's table), ``aggregate.md`` (the table
and the list of runs left out) and ``aggregate.png`` (IQM with CIs per task, and performance profiles).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import pathlib
import sys
from typing import Optional

import numpy as np

SKIPPED_DIRS = {"checkpoints", ".submitit", ".hydra", "aggregate"}
# Keys of config.yaml that never distinguish one algorithm variant from another.
NOT_A_VARIANT = {"seed", "seed_offset", "seeds", "out_dir", "resume", "checkpoint", "progress", "loggers",
                 "coordinator", "num_processes", "process_id", "data_dir", "env", "dataset", "dataset_size",
                 "algo", "hp_sweep", "defaults"}


@dataclasses.dataclass
class SeedScore:
    algo: str  # algorithm name
    variant: dict  # what may distinguish this run from other runs of the same algorithm
    task: str
    root_seed: int
    seed: int  # global index in the study
    score: float
    normalized: bool  # D4RL-normalized score (else the raw evaluation return)
    run: str
    mtime: float


@dataclasses.dataclass
class LeftOut:
    run: str
    reason: str


def find_runs(paths: list[pathlib.Path]) -> list[pathlib.Path]:
    """Every directory holding a config.yaml under ``paths`` (checkpoints and launcher folders skipped)."""
    found = []
    for root in paths:
        if not root.exists():
            raise FileNotFoundError(f"no such run or sweep directory: {root}")
        stack = [root]
        while stack:
            d = stack.pop()
            if (d / "config.yaml").is_file():
                found.append(d)
                continue
            stack.extend(sorted((c for c in d.iterdir() if c.is_dir() and c.name not in SKIPPED_DIRS),
                                reverse=True))
    return sorted(set(found))


def _task_name(config: dict) -> str:
    env = config.get("env", {}).get("name", "?")
    dataset = config.get("dataset")
    return env if not dataset else f"{env}/{pathlib.Path(str(dataset)).stem}"


def _variant(config: dict) -> dict:
    algo = {f"{k}": v for k, v in config.get("algo", {}).items() if k != "name"}
    top = {k: v for k, v in config.items() if k not in NOT_A_VARIANT}
    return {**algo, **top}


def _last_chunk(run: pathlib.Path) -> Optional[int]:
    path = run / "metrics.csv"
    if not path.is_file():
        return None
    with path.open() as f:
        chunks = [int(float(r["chunk"])) for r in csv.DictReader(f) if r.get("chunk")]
    return max(chunks) if chunks else None


def read_run(run: pathlib.Path) -> tuple[list[SeedScore], Optional[LeftOut]]:
    """The final score of every seed of a finished run, or why the run is left out."""
    from omegaconf import OmegaConf

    try:
        config = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=False)
    except Exception as err:  # a truncated or hand-broken file: list it, keep aggregating the rest
        return [], LeftOut(str(run), f"unreadable config.yaml ({str(err).splitlines()[0]})")
    summary_path = run / "summary.json"
    if not summary_path.is_file():
        last = _last_chunk(run)
        why = "no metrics written (failed or never started)" if last is None else \
            f"unfinished: no summary.json, last evaluation at chunk {last}"
        return [], LeftOut(str(run), why)
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as err:
        return [], LeftOut(str(run), f"unreadable summary.json ({err})")
    expected = int(config.get("seeds", 1))
    offset = int(config.get("seed_offset", 0) or 0)
    root_seed = int(config.get("seed", 0))
    algo = str(config.get("algo", {}).get("name", "?"))
    base_variant, task = _variant(config), _task_name(config)
    scores = []
    for point in summary.values():
        key = "final_normalized_score_per_seed" if "final_normalized_score_per_seed" in point else \
            "final_eval_return_per_seed"
        if key not in point:
            return [], LeftOut(str(run), "no evaluation return (judged by its own metrics, e.g. regret)")
        values = point[key]
        seeds = point.get("seeds", list(range(offset, offset + len(values))))
        if len(values) != expected:
            return [], LeftOut(str(run), f"{len(values)} of its {expected} seeds reported")
        variant = {**base_variant, **{k: v for k, v in point.items() if k.startswith("hp.")}}
        for seed, value in zip(seeds, values):
            scores.append(SeedScore(algo, variant, task, root_seed, int(seed), float(value),
                                    key.startswith("final_normalized"), str(run), summary_path.stat().st_mtime))
    return scores, None


def _labels(scores: list[SeedScore]) -> dict[int, str]:
    """Algorithm label of each score: the name plus the variant keys whose values differ between its runs."""
    keys_by_algo: dict[str, set] = {}
    for algo in {s.algo for s in scores}:
        variants = [s.variant for s in scores if s.algo == algo]
        names = set().union(*variants)
        keys_by_algo[algo] = {k for k in names if len({json.dumps(v.get(k), sort_keys=True) for v in variants}) > 1}
    out = {}
    for i, s in enumerate(scores):
        keys = sorted(keys_by_algo[s.algo])
        parts = [f"{k[3:] if k.startswith('hp.') else k}={_short(s.variant.get(k))}" for k in keys]
        out[i] = s.algo + (f"[{','.join(parts)}]" if parts else "")
    return out


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "x".join(_short(v) for v in value)
    return str(value)


def collect(paths: list[pathlib.Path]):
    """(per-seed rows, runs left out) for every run directory under ``paths``."""
    scores, left_out = [], []
    for run in find_runs(paths):
        got, why = read_run(run)
        scores.extend(got)
        if why is not None:
            left_out.append(why)
    labels = _labels(scores)
    rows: dict[tuple, dict] = {}
    for i, s in sorted(enumerate(scores), key=lambda item: item[1].mtime):
        key = (labels[i], s.task, s.root_seed, s.seed)
        if key in rows:
            left_out.append(LeftOut(rows[key]["run"], f"seed {s.seed} (root {s.root_seed}) of {labels[i]} on "
                                                      f"{s.task} also reported by {s.run}; the newer one is used"))
        rows[key] = {"algorithm": labels[i], "task": s.task, "root_seed": s.root_seed, "seed": s.seed,
                     "score": s.score, "normalized": s.normalized, "run": s.run}
    return sorted(rows.values(), key=lambda r: (r["algorithm"], r["task"], r["root_seed"], r["seed"])), left_out


def interval(scores: np.ndarray, func, reps: int, seed: int = 0):
    """(point, low, high) of ``func`` over runs x tasks ``scores``: 95% stratified bootstrap (rliable)."""
    from rliable import library as rly

    if scores.shape[0] < 2:  # one seed: no spread to resample
        point = func(scores)
        return point, point, point
    # rliable 1.2 draws its resampling indices from NumPy's global generator (its random_state argument
    # does not reach them): seed that, and put the caller's state back afterwards.
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        points, cis = rly.get_interval_estimates({"x": scores}, func, reps=reps)
    finally:
        np.random.set_state(saved)
    return points["x"], cis["x"][0], cis["x"][1]


def table(rows: list[dict], reps: int) -> list[dict]:
    """One entry per algorithm x task: seeds, IQM and its CI, mean, median, std."""
    from rliable import metrics

    out = []
    for algo, task in sorted({(r["algorithm"], r["task"]) for r in rows}):
        mine = [r for r in rows if r["algorithm"] == algo and r["task"] == task]
        values = np.asarray([r["score"] for r in mine])[:, None]
        iqm, lo, hi = interval(values, lambda x: np.array([metrics.aggregate_iqm(x)]), reps)
        out.append({
            "algorithm": algo, "task": task,
            "score": "normalized_score" if all(r["normalized"] for r in mine) else "eval_return",
            "seeds": len(mine), "runs": len({r["run"] for r in mine}),
            "iqm": float(iqm[0]), "iqm_ci_low": float(lo[0]), "iqm_ci_high": float(hi[0]),
            "mean": float(values.mean()), "median": float(np.median(values)), "std": float(values.std()),
        })
    return out


def profile_scores(rows: list[dict]) -> tuple[dict[str, np.ndarray], str]:
    """Per algorithm, a seeds x tasks matrix of scores comparable across tasks (normalized scores / 100,
    or raw returns min-max scaled per task over the whole study), for the performance profile. Tasks an
    algorithm did not run, and seeds beyond its smallest count over tasks, are left out of its matrix."""
    tasks = sorted({r["task"] for r in rows})
    normalized = all(r["normalized"] for r in rows)
    scale = {}
    for task in tasks:
        values = [r["score"] for r in rows if r["task"] == task]
        lo, hi = (0.0, 100.0) if normalized else (min(values), max(values))
        scale[task] = (lo, (hi - lo) or 1.0)
    out = {}
    for algo in sorted({r["algorithm"] for r in rows}):
        columns = []
        for task in tasks:
            mine = [r["score"] for r in rows if r["algorithm"] == algo and r["task"] == task]
            if mine:
                lo, width = scale[task]
                columns.append((np.asarray(mine) - lo) / width)
        n = min(len(c) for c in columns)
        out[algo] = np.stack([c[:n] for c in columns], axis=1)
    return out, "normalized score / 100" if normalized else "return, min-max scaled per task over the study"


def performance_profiles(matrices: dict[str, np.ndarray], taus: np.ndarray, reps: int):
    """algo -> (fraction of runs above each tau, low, high)."""
    func = lambda x: np.array([np.mean(x > t) for t in taus])  # noqa: E731
    return {algo: interval(m, func, reps) for algo, m in matrices.items()}


def _write_csv(path: pathlib.Path, rows: list[dict]) -> None:
    if not rows:
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown(entries: list[dict], left_out: list[LeftOut]) -> str:
    lines = ["| algorithm | task | score | seeds | IQM [95% CI] | mean | median |", "|---|---|---|---|---|---|---|"]
    for e in entries:
        lines.append(f"| {e['algorithm']} | {e['task']} | {e['score']} | {e['seeds']} | {e['iqm']:.2f} "
                     f"[{e['iqm_ci_low']:.2f}, {e['iqm_ci_high']:.2f}] | {e['mean']:.2f} | {e['median']:.2f} |")
    if left_out:
        lines += ["", f"Left out ({len(left_out)}):", ""] + [f"- {x.run}: {x.reason}" for x in left_out]
    return "\n".join(lines) + "\n"


def plot(entries: list[dict], profiles: dict, taus: np.ndarray, profile_label: str, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({e["task"] for e in entries})
    algos = sorted({e["algorithm"] for e in entries})
    fig, axes = plt.subplots(1, len(tasks) + 1, figsize=(4 * (len(tasks) + 1), 0.5 * len(algos) + 2.5),
                             squeeze=False)
    colors = {a: plt.cm.tab10(i % 10) for i, a in enumerate(algos)}
    for ax, task in zip(axes[0], tasks):
        for y, algo in enumerate(algos):
            e = next((e for e in entries if e["task"] == task and e["algorithm"] == algo), None)
            if e is None:
                continue
            ax.barh(y, e["iqm_ci_high"] - e["iqm_ci_low"], left=e["iqm_ci_low"], height=0.6, color=colors[algo],
                    alpha=0.6)
            ax.plot([e["iqm"]] * 2, [y - 0.3, y + 0.3], color="k")
        ax.set_yticks(range(len(algos)), algos if ax is axes[0][0] else [""] * len(algos))
        ax.set_title(task)
        ax.set_xlabel(f"IQM {entries[0]['score']} (95% CI)")
    ax = axes[0][-1]
    for algo, (point, lo, hi) in profiles.items():
        ax.plot(taus, point, color=colors[algo], label=algo)
        ax.fill_between(taus, lo, hi, color=colors[algo], alpha=0.2)
    ax.set_xlabel(f"tau ({profile_label})")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_title("performance profile")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def aggregate(paths: list[pathlib.Path], out: pathlib.Path, reps: int = 2000, log=print) -> dict:
    rows, left_out = collect(paths)
    out.mkdir(parents=True, exist_ok=True)
    for x in left_out:
        log(f"left out: {x.run}: {x.reason}")
    if not rows:
        (out / "aggregate.md").write_text(markdown([], left_out))
        raise ValueError(f"no finished run with evaluation returns under {', '.join(map(str, paths))}")
    entries = table(rows, reps)
    matrices, profile_label = profile_scores(rows)
    top = max(float(m.max()) for m in matrices.values())
    low = min(float(m.min()) for m in matrices.values())
    taus = np.linspace(min(0.0, low), max(1.0, top), 51)
    profiles = performance_profiles(matrices, taus, reps)
    _write_csv(out / "aggregate.csv", entries)
    _write_csv(out / "per_seed.csv", rows)
    text = markdown(entries, left_out)
    (out / "aggregate.md").write_text(text)
    plot(entries, profiles, taus, profile_label, out / "aggregate.png")
    log(text.rstrip())
    log(f"wrote {out}/aggregate.csv, per_seed.csv, aggregate.md, aggregate.png")
    return {"entries": entries, "rows": rows, "left_out": left_out, "profiles": profiles, "taus": taus}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.aggregate", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=pathlib.Path, help="run or sweep directories (searched recursively)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="output folder (default <first path>/aggregate)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    try:
        aggregate(args.paths, args.out or args.paths[0] / "aggregate", args.reps)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
