"""Run outputs: metrics.csv (one row per seed per evaluation), JSON files and the learning-curve PNG.

TensorBoard and W&B are optional (``pip install hybrid-rl[log]``) and off by default; ``TensorBoardLogger``
mirrors the CSV rows when asked for.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
from typing import Iterable

import numpy as np


def readable_by_group(path) -> None:
    """Gives a file written through a private temporary (mode 0600) the permissions of a normally created
    file (0666 less the umask), so a shared data or run directory stays readable by the group."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _atomic_write_text(path: pathlib.Path, text: str) -> None:
    # Write then rename, so a run killed mid-write never leaves a truncated file behind.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: pathlib.Path, obj) -> None:
    _atomic_write_text(pathlib.Path(path), json.dumps(obj, indent=2, default=float) + "\n")


def write_metrics_csv(path: pathlib.Path, rows: list[dict]) -> None:
    if not rows:
        return
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_metrics_csv(path: pathlib.Path) -> list[dict]:
    with pathlib.Path(path).open() as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        parsed = {}
        for k, v in row.items():
            try:
                parsed[k] = float(v) if v not in ("", None) else float("nan")
            except ValueError:
                parsed[k] = v
        out.append(parsed)
    return out


def curve(rows: Iterable[dict], key: str = "eval_return", hp_index: int = 0):
    """(x = env steps or gradient steps, mean over seeds, 95% CI half-width over seeds) per evaluation."""
    rows = [r for r in rows if int(r["hp_index"]) == hp_index and key in r]
    chunks = sorted({int(r["chunk"]) for r in rows})
    xs, means, halfs = [], [], []
    for c in chunks:
        rs = [r for r in rows if int(r["chunk"]) == c]
        vals = np.asarray([float(r[key]) for r in rs])
        x = float(rs[0]["env_steps"]) if float(rs[0]["env_steps"]) > 0 else float(rs[0]["grad_steps"])
        xs.append(x)
        means.append(vals.mean())
        halfs.append(1.96 * vals.std(ddof=1) / np.sqrt(len(vals)) if len(vals) > 1 else 0.0)
    return np.asarray(xs), np.asarray(means), np.asarray(halfs)


def plot_run(rows: list[dict], path: pathlib.Path, label: str = "") -> None:
    """The figure of a finished run: its evaluation return; for algorithms judged by their own metric, that
    metric (regret, suboptimality); for a run with neither (offline training with no env to evaluate in), its
    losses, one panel each. ``label`` ("iql on hopper-medium-v2") heads the figure."""
    if not rows:
        return
    if "eval_return" in rows[0]:
        return plot_learning_curve(rows, path, "eval_return", label)
    own = [k for k in rows[-1] if "regret" in k or "suboptimality" in k]
    if own:
        return plot_learning_curve(rows, path, own[0], label)
    losses = [k for k, v in rows[-1].items() if "loss" in k and isinstance(v, (int, float))][:4]
    if not losses:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(losses), figsize=(4 * len(losses), 3.5), squeeze=False)
    for ax, key in zip(axes[0], losses):
        _draw_curves(ax, rows, key)
        ax.set_title(key.replace("_", " "), fontsize=9)
    n_seeds = len({r["seed"] for r in rows})
    fig.suptitle(f"{label + ': ' if label else ''}losses (mean and 95% CI over {n_seeds} seeds)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_learning_curve(rows: list[dict], path: pathlib.Path, key: str = "eval_return", title: str = "") -> None:
    """Mean over seeds with a 95% confidence band, one line per hyper-parameter point. ``title`` names the
    run ("sac on pendulum"); the metric and seed count are added to it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    _draw_curves(ax, rows, key)
    n_seeds = len({r["seed"] for r in rows})
    what = f"{key.replace('_', ' ')} (mean and 95% CI over {n_seeds} seeds)"
    ax.set_title(f"{title}: {what}" if title else what, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path) -> None:
    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _draw_curves(ax, rows: list[dict], key: str) -> None:
    hp_indices = sorted({int(r["hp_index"]) for r in rows})
    for h in hp_indices:
        xs, mean, half = curve(rows, key, h)
        first = next(r for r in rows if int(r["hp_index"]) == h)
        label = ", ".join(f"{k[3:]}={v:g}" for k, v in first.items() if k.startswith("hp.")) or None
        ax.plot(xs, mean, label=label)
        ax.fill_between(xs, mean - half, mean + half, alpha=0.25)
    uses_env_steps = any(float(r["env_steps"]) > 0 for r in rows)
    ax.set_xlabel("environment steps" if uses_env_steps else "gradient steps")
    ax.set_ylabel(key.replace("_", " "))
    if len(hp_indices) > 1:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _chunk_means(rows: list[dict]):
    """(step, {metric: mean over seeds}) per (chunk, hparam point) in ``rows``."""
    groups: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((int(r["chunk"]), int(r["hp_index"])), []).append(r)
    for (_, hp), rs in sorted(groups.items()):
        step = int(rs[0]["env_steps"] or rs[0]["grad_steps"])
        prefix = f"hp{hp}/" if hp else ""
        means = {
            prefix + k: float(np.nanmean([r[k] for r in rs]))
            for k, v in rs[0].items()
            if isinstance(v, float) and k not in ("seconds",) and not k.startswith("hp.")
        }
        yield step, means


class TensorBoardLogger:
    """Optional (``loggers=[tensorboard]``): mirrors each chunk's rows, averaged over seeds, to
    TensorBoard event files in ``<run dir>/tensorboard``."""

    def __init__(self, log_dir: pathlib.Path, config: dict | None = None):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as err:
            raise ImportError("TensorBoard logging needs `pip install hybrid-rl[log]` (tensorboardX)") from err
        self._writer = SummaryWriter(str(pathlib.Path(log_dir) / "tensorboard"))

    def __call__(self, rows: list[dict]) -> None:
        for step, means in _chunk_means(rows):
            for k, v in means.items():
                self._writer.add_scalar(k, v, step)
        self._writer.flush()


class WandbLogger:
    """Optional (``loggers=[wandb]``): mirrors each chunk's rows, averaged over seeds, to Weights & Biases.
    Set WANDB_MODE=offline on a machine without network access."""

    def __init__(self, log_dir: pathlib.Path, config: dict | None = None):
        try:
            import wandb
        except ImportError as err:
            raise ImportError("W&B logging needs `pip install hybrid-rl[log]` (wandb)") from err
        self._run = wandb.init(dir=str(log_dir), config=config or {}, project="hybrid-rl", reinit=True)

    def __call__(self, rows: list[dict]) -> None:
        for step, means in _chunk_means(rows):
            self._run.log(means, step=step)


LOGGERS = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger}


def make_loggers(names, log_dir: pathlib.Path, config: dict | None = None) -> list:
    unknown = sorted(set(names) - set(LOGGERS))
    if unknown:
        raise ValueError(f"unknown logger(s) {unknown}; choose from {sorted(LOGGERS)} (CSV and JSON are always written)")
    return [LOGGERS[name](log_dir, config) for name in names]
