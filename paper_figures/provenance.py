"""What every figure JSON records so that a number can be traced and a replot gives the same numbers.

``provenance(args, seeds, datasets)`` is the block each ``paper_figures`` script stores under
``"provenance"``: the code version (git commit and whether the work tree had uncommitted changes), the
command line, the XLA flags (they can change a result's float rounding: XLA's CPU backend fuses multiplies and
adds into FMAs unless the ISA is capped below AVX2, see paper_figures/README.md, F1c on MuJoCo), the seeds, and
for every dataset its path, builder recipe, content hash and size. The
content hash covers the arrays only (``metadata/build_seconds`` differs between two builds of one recipe),
so two files with the same hash hold the same transitions.

``bootstrap_rng(name)`` is the one source of randomness for confidence intervals: seeded by a fixed root
and the name of the quantity, so a replot from a written JSON reproduces every interval exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import subprocess
import sys
import zlib
from typing import Iterable, Mapping, Optional

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
BOOTSTRAP_ROOT_SEED = 20_240_601
ARRAYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


def code_version(repo: pathlib.Path = REPO) -> dict:
    """{"commit": the HEAD commit or None outside git, "dirty": uncommitted changes to tracked files other than
    figure outputs (``paper_figures/*.json|png``, which the scripts themselves rewrite) and Markdown}."""

    def git(*cmd):
        return subprocess.run(["git", "-C", str(repo), *cmd], capture_output=True, text=True, timeout=30)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    code = [path for path in changed if not path.endswith(".md")
            and not (path.startswith("paper_figures/") and path.endswith((".json", ".png")))]
    return {"commit": head.stdout.strip(), "dirty": bool(code)}


def dataset_record(path, extra: Optional[Mapping] = None) -> dict:
    """Path, size, builder recipe and a SHA-256 of the transition arrays of a D4RL-layout HDF5 file."""
    import h5py

    path = pathlib.Path(path)
    digest = hashlib.sha256()
    record = {"path": str(path), "bytes": path.stat().st_size}
    with h5py.File(path, "r") as f:
        for name in ARRAYS:
            if name in f:
                array = np.ascontiguousarray(f[name][()])
                digest.update(name.encode() + str(array.dtype).encode() + str(array.shape).encode())
                digest.update(array.tobytes())
        record["transitions"] = int(f["rewards"].shape[0])
        meta = f.get("metadata")
        if meta is not None:
            for key in ("recipe", "recipe_hash", "kind", "env", "algorithm", "ref_min_return", "ref_max_return"):
                if key in meta:
                    value = meta[key][()]
                    value = value.decode() if isinstance(value, bytes) else value
                    record[key] = value.item() if hasattr(value, "item") else value
    record["content_sha256"] = digest.hexdigest()
    record.update(extra or {})
    return record


def provenance(args=None, seeds: Optional[Iterable[int]] = None, datasets: Optional[Mapping[str, object]] = None,
               **extra) -> dict:
    """The provenance block of a figure JSON (see the module docstring). ``datasets``: name -> path."""
    out = {
        "code": code_version(),
        "command": [pathlib.Path(sys.argv[0]).name] + sys.argv[1:],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "args": {k: v for k, v in vars(args).items()} if args is not None else None,
        "seeds": list(seeds) if seeds is not None else None,
        "datasets": {name: dataset_record(p) for name, p in (datasets or {}).items()},
        "bootstrap_root_seed": BOOTSTRAP_ROOT_SEED,
    }
    out.update(extra)
    return out


def bootstrap_rng(name: str) -> np.random.Generator:
    """A numpy Generator seeded by the fixed root and ``name`` (e.g. "H=10 HNPG"): the same name gives the
    same resamples in every run and replot, independently of the order the intervals are computed in."""
    return np.random.default_rng([BOOTSTRAP_ROOT_SEED, zlib.crc32(name.encode())])


@contextlib.contextmanager
def seeded_global_numpy(name: str):
    """Seeds numpy's global generator from ``name`` for the duration, then restores its state. rliable's
    stratified bootstrap draws its resamples with ``np.random.choice`` (its ``random_state`` argument does not
    reach them), so this is how its intervals become reproducible."""
    saved = np.random.get_state()
    np.random.seed([BOOTSTRAP_ROOT_SEED, zlib.crc32(name.encode())])
    try:
        yield
    finally:
        np.random.set_state(saved)


def mean_ci(values, name: str, num_resamples: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile bootstrap interval of the mean over axis 0 (seeds), for every column, seeded by ``name``."""
    x = np.asarray(values, float)
    idx = bootstrap_rng(name).integers(0, x.shape[0], (num_resamples, x.shape[0]))
    means = x[idx].mean(1)
    return np.percentile(means, 2.5, axis=0), np.percentile(means, 97.5, axis=0)
