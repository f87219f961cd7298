"""Timing helpers shared by the benchmarks: wall and CPU time, load average and thread count per measurement.

A measurement on a shared machine means little without the load it ran under, so every ``Sample`` carries
the 1-minute load average before and after, the process's OS thread count (XLA's pools included, read from
``/proc/self/status``) and the CPU seconds the process used, whose ratio to the wall time says how many
cores the program actually kept busy.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import time
from typing import Callable


def os_thread_count() -> int:
    """Threads of this process as the OS counts them (Python's ``threading`` sees only its own); 0 if unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclasses.dataclass(frozen=True)
class Sample:
    wall_s: float
    cpu_s: float
    load_before: float
    load_after: float
    threads: int

    @property
    def cores_busy(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else float("nan")


def measure(fn: Callable[[], object]) -> tuple[Sample, object]:
    """Runs ``fn()`` once (it must block until its result is ready) and returns its ``Sample`` and result."""
    load_before = load_average()
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    return Sample(wall, cpu, load_before, load_average(), os_thread_count()), out


@dataclasses.dataclass(frozen=True)
class Summary:
    """Min and median of a list of samples, with the load range and the largest thread count seen."""

    n: int
    min_s: float
    median_s: float
    cores_busy: float  # median CPU seconds / wall seconds
    load_min: float
    load_max: float
    threads: int

    @classmethod
    def of(cls, samples: list[Sample]) -> "Summary":
        if not samples:
            raise ValueError("no samples to summarise")
        walls = [s.wall_s for s in samples]
        loads = [s.load_before for s in samples] + [s.load_after for s in samples]
        return cls(len(samples), min(walls), statistics.median(walls),
                   statistics.median(s.cores_busy for s in samples), min(loads), max(loads),
                   max(s.threads for s in samples))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
