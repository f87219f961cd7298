import math

import numpy as np
import pytest

from hybrid_rl import logging as run_logging
from hybrid_rl.runner import summarize


def _rows():
    rows = []
    for chunk, steps in enumerate([100, 200]):
        for seed, value in enumerate([1.0, 3.0]):
            rows.append({"phase": "online", "chunk": chunk, "env_steps": steps, "grad_steps": 0, "hp_index": 0,
                         "seed": seed, "seconds": 0.1, "eval_return": value + chunk, "critic_loss": float("nan")})
    return rows


def test_csv_round_trip_and_curve(tmp_path):
    rows = _rows()
    run_logging.write_metrics_csv(tmp_path / "m.csv", rows)
    back = run_logging.read_metrics_csv(tmp_path / "m.csv")
    assert len(back) == 4 and back[0]["phase"] == "online" and math.isnan(back[0]["critic_loss"])
    xs, mean, half = run_logging.curve(back)
    np.testing.assert_allclose(xs, [100, 200])
    np.testing.assert_allclose(mean, [2.0, 3.0])
    np.testing.assert_allclose(half, 1.96 * np.std([1, 3], ddof=1) / np.sqrt(2))
    run_logging.plot_learning_curve(back, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_summary_final_and_best():
    summary = summarize(_rows())["0"]
    assert summary["final_eval_return_mean"] == 3.0 and summary["best_eval_return_mean"] == 3.0
    assert summary["final_eval_return_per_seed"] == [2.0, 4.0] and summary["num_seeds"] == 2


def test_tensorboard_mirror_and_unknown_logger(tmp_path):
    pytest.importorskip("tensorboardX")
    (logger,) = run_logging.make_loggers(["tensorboard"], tmp_path)
    logger(_rows())
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    with pytest.raises(ValueError, match="unknown logger"):
        run_logging.make_loggers(["nope"], tmp_path)


def test_run_figure_is_titled_and_offline_runs_plot_their_losses(tmp_path, monkeypatch):
    import matplotlib.figure

    titles = []
    original = matplotlib.figure.Figure.savefig

    def record(fig, path, **kwargs):
        titles.extend(ax.get_title() for ax in fig.axes)
        if fig._suptitle is not None:
            titles.append(fig._suptitle.get_text())
        return original(fig, path, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    run_logging.plot_run(_rows(), tmp_path / "eval.png", "sac on pendulum")
    assert titles and titles[0].startswith("sac on pendulum: eval return")
    offline = [{k: v for k, v in r.items() if k != "eval_return"} | {"env_steps": 0, "grad_steps": 50 * (r["chunk"] + 1),
                                                                      "critic_loss": 1.0 + r["seed"], "actor_loss": -1.0}
               for r in _rows()]
    titles.clear()
    run_logging.plot_run(offline, tmp_path / "losses.png", "iql on hopper-medium-v2")
    assert (tmp_path / "losses.png").stat().st_size > 1000
    assert "critic loss" in titles and "actor loss" in titles
    assert any(t.startswith("iql on hopper-medium-v2: losses") for t in titles)


def test_written_files_are_readable_by_the_group(tmp_path):
    import os
    import stat

    from hybrid_rl.datasets import write_d4rl_hdf5

    old = os.umask(0o022)
    try:
        data = {"observations": np.zeros((4, 2), np.float32), "actions": np.zeros((4, 1), np.float32),
                "rewards": np.zeros(4, np.float32), "terminals": np.zeros(4, bool), "timeouts": np.zeros(4, bool)}
        path = write_d4rl_hdf5(tmp_path / "d.hdf5", data)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH, oct(mode)
