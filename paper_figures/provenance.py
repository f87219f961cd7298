"""What every figure JSON records so that a number can be traced and a replot gives the same numbers.

``provenance(args, seeds, datasets)`` is the block each ``paper_figures`` script stores under
``"provenance"``: the code version (git commit and whether the work tree had uncommitted changes), the
command line, the XLA flags (they can change a result's float rounding: XLA's CPU backend fuses multiplies and
adds into FMAs unless the ISA is capped below AVX2, see paper_figures/README.md, F1c on MuJoCo), the seeds, and
for every dataset its path, builder recipe, content hash and size. The
content hash covers the arrays only (``metadata/build_seconds`` differs between two builds of one recipe),
so two files with the same hash hold the same transitions.

``check_parts(parts, settings)`` is what every ``--merge`` of figure parts checks first: the named settings, the
evaluation protocol and every dataset's content hash equal over the parts (else a one-line SystemExit naming the
difference); ``joined_provenance(parts)`` keeps every part's record and ``runtimes_per_part(parts)`` every
part's run time.

``bootstrap_rng(name)`` is the one source of randomness for confidence intervals: seeded by a fixed root
and the name of the quantity, so a replot from a written JSON reproduces every interval exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import zlib
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from hybrid_rl import threefry_cpu

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
        # Which CPU lowering of JAX's random-number hash the run compiled: the bits are the same, but the programs
        # differ, and a training run's floats (hence a rebuilt dataset's content) can differ with them.
        "threefry_cpu_lowering": "unrolled" if threefry_cpu.INSTALLED else "rolled",
    }
    out.update(extra)
    return out


def part_records(block) -> list[dict]:
    """The provenance records in one part's ``"provenance"``: a run's single record, or the list a merge kept
    (one per part it joined); none for files written before provenance was recorded."""
    if isinstance(block, list):
        return [record for item in block for record in part_records(item)]
    return [block] if isinstance(block, dict) else []


def require_same(what: str, values: Sequence) -> None:
    """A one-line SystemExit naming ``what`` and the distinct values when the parts of a merge disagree on it."""
    distinct = list(dict.fromkeys(json.dumps(value, sort_keys=True, default=str) for value in values))
    if len(distinct) > 1:
        raise SystemExit(f"--merge: the parts differ in {what}: {' vs '.join(distinct)}")


def require_same_data(blocks: Iterable) -> None:
    """A one-line SystemExit when two parts' provenance records give one dataset name different content hashes
    (a record from before hashes were kept counts by its path)."""
    hashes: dict[str, set] = {}
    for block in blocks:
        for record in part_records(block):
            for name, data in (record.get("datasets") or {}).items():
                hashes.setdefault(name, set()).add(data.get("content_sha256") if isinstance(data, dict) else data)
    clash = {name: sorted(map(str, found)) for name, found in hashes.items() if len(found) > 1}
    if clash:
        raise SystemExit(f"--merge: the parts used different data (content hashes): {clash}")


def evaluation_protocols(block) -> list:
    """The evaluation protocol ("deterministic" or "sampled") of each record in a part's provenance;
    "unrecorded" for a record written before the protocol was recorded."""
    return [record.get("evaluation", "unrecorded") for record in part_records(block)]


def check_parts(parts: Sequence[Mapping], settings: Mapping[str, Callable[[Mapping], object]]) -> None:
    """Refuses (one-line SystemExit) to join parts that differ in a setting (``settings``: name -> the value of
    one part), in evaluation protocol, or in the content of a dataset they share a name for."""
    for what, value_of in settings.items():
        require_same(what, [value_of(part) for part in parts])
    require_same("evaluation protocol", [p for part in parts for p in evaluation_protocols(part.get("provenance"))])
    require_same_data(part.get("provenance") for part in parts)


def joined_provenance(parts: Sequence[Mapping]) -> list:
    """Every part's provenance, in order, one entry per original run (a part that is itself a merge gives its list)."""
    joined = []
    for part in parts:
        block = part.get("provenance")
        joined.extend(block if isinstance(block, list) else [block])
    return joined


def runtimes_per_part(parts: Sequence[Mapping]) -> list:
    """The run time of every original run joined by a merge, in order: a part's ``runtime_s``, or the
    ``runtime_s_per_part`` list of a part that is itself a merge (flattened, so merging merges keeps one number
    per run)."""
    return [seconds for part in parts for seconds in part.get("runtime_s_per_part", [part["runtime_s"]])]


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
