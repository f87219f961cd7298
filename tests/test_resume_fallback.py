"""A checkpoint left half-written (a job pre-empted while saving) is skipped on resume: the run falls back
to the step before it and still ends with the numbers of an uninterrupted run."""

import csv

import pytest

from algorithms import sac
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.runner import Runner, RunSettings

TINY = sac.Config(total_steps=300, warmup_steps=100, hidden_sizes=(16, 16), batch_size=16, buffer_size=300)


def _runner(problem, out_dir, log=print):
    return Runner(sac.make(TINY, problem), problem, default_hparams(get_algorithm("sac"), TINY),
                  RunSettings(num_seeds=2, num_evals=2, eval_episodes=2, progress=False), out_dir=out_dir, log_fn=log)


def _rows(path):
    with path.open() as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


@pytest.mark.slow  # two tiny SAC runs: ~25 s idle
def test_unreadable_last_checkpoint_falls_back_to_the_one_before(tmp_path):
    problem = build_problem("pendulum", {"max_steps_in_episode": 50})
    _runner(problem, tmp_path / "run").run()
    full = _rows(tmp_path / "run" / "metrics.csv")
    steps = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit())
    last = tmp_path / "run" / "checkpoints" / str(steps[-1])
    for path in (last / "state").rglob("*"):  # the state's arrays were never written
        if path.is_file() and "manifest" not in path.name and path.name != "_METADATA":
            path.unlink()
    (tmp_path / "run" / "metrics.csv").unlink()
    messages = []
    _runner(problem, tmp_path / "run", log=messages.append).run(resume=True)
    assert any(f"checkpoint step {steps[-1]} is unreadable" in m for m in messages), messages
    assert any(f"at chunk {steps[-2]}/" in m for m in messages), messages
    assert _rows(tmp_path / "run" / "metrics.csv") == full
