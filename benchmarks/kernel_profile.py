"""Where a program's time goes on CPU: the project against each anchor, kernel by kernel.

``python -m benchmarks.kernel_profile --only sac --seeds 1`` builds the same pairs as ``benchmarks.anchors``
(same sizes and flags), compiles both sides, runs each once untimed, then once under ``jax.profiler.trace``
and reads the trace back (``jax.profiler.ProfileData``). XLA's CPU runtime records, on each of its worker
threads, every kernel it runs inside ``ThunkExecutor::Execute`` spans. From those it prints, per program:

* wall time of the profiled call, and thread-busy time (top-level spans summed over threads);
* matrix products (``dot``, and the library fusions XLA hands products to: ``ynn_``/``xnn_``/``onednn``):
  thread time and kernel count;
* every other kernel (elementwise and reduction fusions, copies, the random-number hash ...): time, count;
* what is left: busy time in no kernel (the executor's dispatch between kernels and waits on the pool).

Both sides are lowered with the project's random-number lowering and compiled with its XLA flags (a
code-for-code comparison; the anchors' table gives the anchors JAX's and XLA's defaults). Counts are per
program call; divide by the updates it ran. Profiling slows a program (more so one of many small kernels), so
compare the two sides' shares and counts, and take times from ``benchmarks.anchors``. The default sizes are
shorter than the anchors' (a trace holds every kernel call: PPO's 500k steps would not fit in memory).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import os
import tempfile
import time

import jax

from benchmarks import anchors
from benchmarks._measure import load_average

MATMUL_PREFIXES = ("dot", "ynn_", "xnn_", "onednn", "__onednn", "matmul")
# Shorter than the anchors' sizes: a trace holds every kernel call (PPO's 500k steps would not fit in memory).
PROFILE_SIZES = anchors.Sizes(seeds=(1,), sac_steps=3_000, eval_episodes=8, ppo_steps=51_200)


@dataclasses.dataclass
class KernelProfile:
    wall_s: float
    busy_s: float
    matmul_s: float
    matmul_kernels: int
    other_s: float
    other_kernels: int
    top_other: list  # (name, seconds, count) of the costliest non-product kernels

    @property
    def dispatch_s(self) -> float:
        return max(self.busy_s - self.matmul_s - self.other_s, 0.0)


def _is_matmul(name: str) -> bool:
    return name.startswith(MATMUL_PREFIXES)


def summarize_events(lines: dict[str, list[tuple[int, int, str]]], wall_s: float) -> KernelProfile:
    """``lines``: worker-thread name -> [(start_ns, end_ns, name)]. Top-level spans give busy time; spans that
    contain no other span are kernels, except the pool's waits."""
    busy = matmul = other = 0
    n_matmul = n_other = 0
    per_name: dict[str, list] = collections.defaultdict(lambda: [0, 0])
    for events in lines.values():
        events = sorted(events, key=lambda e: (e[0], -e[1]))
        top_end = -1
        for i, (start, end, name) in enumerate(events):
            if start >= top_end:  # not inside the current top-level span
                busy += end - start
                top_end = end
            else:
                top_end = max(top_end, end)
            has_child = i + 1 < len(events) and events[i + 1][0] < end and events[i + 1][1] <= end
            if has_child or "Await" in name or name.startswith("ThunkExecutor"):
                continue
            if _is_matmul(name):
                matmul += end - start
                n_matmul += 1
            else:
                other += end - start
                n_other += 1
                base = name.rstrip("0123456789").rstrip(".")
                per_name[base][0] += end - start
                per_name[base][1] += 1
    top = sorted(((k, v[0] / 1e9, v[1]) for k, v in per_name.items()), key=lambda t: -t[1])[:5]
    return KernelProfile(wall_s, busy / 1e9, matmul / 1e9, n_matmul, other / 1e9, n_other, top)


def profile(fn, args) -> KernelProfile:
    """Runs the compiled ``fn(*args)`` once under the profiler; returns its kernel summary."""
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            wall = time.perf_counter() - start
        paths = glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True)
        if not paths:
            raise RuntimeError(f"the profiler wrote no trace under {tmp}")
        data = jax.profiler.ProfileData.from_file(paths[0])
    lines: dict[str, list] = collections.defaultdict(list)
    for plane in data.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLA") or "PjRt" in line.name:
                continue  # XLA's worker threads only (not Python's, not the client's wait)
            for ev in line.events:
                # Each kernel span holds an "end: <kernel>" marker span; the pool's listener spans are empty.
                if not ev.name.startswith(("end: ", "ThreadpoolListener")):
                    lines[f"{plane.name}/{line.name}"].append((ev.start_ns, ev.end_ns, ev.name))
    return summarize_events(lines, wall)


def table(rows: list[dict]) -> str:
    head = ("| pair | seeds | program | wall s | busy thread s | products s (share, kernels) | other kernels s "
            "(share, kernels) | outside kernels s | costliest other kernels |")
    out = [head, "|" + "---|" * 9]
    for r in rows:
        p: KernelProfile = r["profile"]
        share = lambda x: x / p.busy_s if p.busy_s else float("nan")  # noqa: E731
        top = ", ".join(f"{n} {s * 1e3:.0f} ms x{c}" for n, s, c in p.top_other[:3])
        out.append(f"| {r['pair']} | {r['seeds']} | {r['name']} | {p.wall_s:.2f} | {p.busy_s:.2f} | "
                   f"{p.matmul_s:.2f} ({share(p.matmul_s):.0%}, {p.matmul_kernels}) | "
                   f"{p.other_s:.2f} ({share(p.other_s):.0%}, {p.other_kernels}) | {p.dispatch_s:.2f} | {top} |")
    return "\n".join(out)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: checks the script in seconds")
    ap.add_argument("--only", default="sac,iql,td3_bc,ppo")
    ap.add_argument("--seeds", default="1", help="comma-separated seed counts")
    anchors.add_size_flags(ap)
    args = ap.parse_args(argv)
    sizes = anchors.sizes_from_args(args, anchors.TINY if args.tiny else PROFILE_SIZES)
    print(f"kernel profile: load average {load_average():.1f}, sizes {dataclasses.asdict(sizes)}")
    rows, offline_data = [], {}
    for pair in [p.strip() for p in args.only.split(",") if p.strip()]:
        if pair not in anchors.PAIRS:
            raise SystemExit(f"unknown pair {pair!r}; choose from {', '.join(anchors.PAIRS)}")
        if pair == "sac" and anchors.rejax_missing():
            print(f"skipping sac: {anchors.rejax_missing()}")
            continue
        for seeds in sizes.seeds:
            for c in anchors.build_pair(pair, seeds, sizes, offline_data):
                with c.lowering():
                    compiled = jax.jit(c.build()).lower(*c.args).compile()
                jax.block_until_ready(compiled(*c.args))  # first-call costs stay out of the profile
                rows.append({"pair": pair, "seeds": seeds, "name": c.name, "profile": profile(compiled, c.args)})
                print(table(rows[-1:]).splitlines()[-1] + f" load {load_average():.1f}", flush=True)
    print()
    print(table(rows))
    print("\nproducts = dot kernels and the library fusions XLA gives them; outside kernels = busy thread time in "
          f"no kernel (dispatch, pool waits). Load average at end {load_average():.1f}.")
    return rows


if __name__ == "__main__":
    main()
