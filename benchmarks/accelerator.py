"""The accelerator measurements, as one prepared script: ``python -m benchmarks.accelerator OUT_DIR``.

Meant for a GPU (it runs anywhere; on a CPU use ``--tiny``, which only checks that it works). It measures,
each in one compiled program per seed count (``hybrid_rl.runner.make_seed_sweep``, seeds vmapped):

1. SAC 2x256 on Pendulum at 1/8/64/256 seeds: run time, and time(N) / time(1) (the goal on an accelerator is
   256 seeds in under 3x the time of one);
2. RLPD at UTD 20 with 10 LayerNorm critics, 8 seeds, on Pendulum with a synthetic offline set of
   ``--rlpd-dataset`` transitions (speed only: the data is random);
3. PPO on CartPole with PureJaxRL's settings at 1 and 256 seeds against the PureJaxRL reimplementation
   (``benchmarks/anchors_impl/purejaxrl_ppo.py``), A/B alternated, through ``benchmarks.anchors.compare``.

Every timing is the min and median over ``--repeats`` calls of the compiled program, with lower+compile
time, the load average and the process's thread count. Writes ``accelerator.json`` and ``accelerator.md``
to OUT_DIR and prints the tables.

    python -m benchmarks.accelerator /tmp/accel                 # full size, on a GPU: a few minutes
    python -m benchmarks.accelerator /tmp/accel --tiny          # seconds, any device
    python -m benchmarks.accelerator /tmp/accel --matmul-dtypes float32,bfloat16 --skip ppo   # both precisions
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib

import jax

from benchmarks._measure import Summary, measure
from benchmarks.anchors import Sizes, compare, machine, markdown_table, ppo_pair
from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.networks import MATMUL_DTYPES
from hybrid_rl.runner import make_seed_sweep


@dataclasses.dataclass(frozen=True)
class AcceleratorSizes:
    sac_seeds: tuple[int, ...] = (1, 8, 64, 256)
    sac_steps: int = 20_000
    sac_warmup: int = 1_000
    hidden: int = 256
    rlpd_seeds: int = 8
    rlpd_steps: int = 5_000
    rlpd_dataset: int = 100_000
    ppo_seeds: tuple[int, ...] = (1, 256)
    ppo_steps: int = 500_000
    repeats: int = 3


TINY = AcceleratorSizes(sac_seeds=(1, 2), sac_steps=200, sac_warmup=100, hidden=16, rlpd_seeds=2, rlpd_steps=150,
                        rlpd_dataset=1_000, ppo_seeds=(1, 2), ppo_steps=1_024, repeats=1)


def time_sweep(algo: str, problem, config, seeds: int, repeats: int) -> dict:
    """Compile and run times of ``algo``'s whole training run for ``seeds`` vmapped seeds (one evaluation)."""
    spec = get_algorithm(algo)
    agent = spec.make(config, problem)
    hp = default_hparams(spec, config)
    keys = jax.random.split(jax.random.key(0), seeds)
    fn = jax.jit(make_seed_sweep(agent, problem, num_evals=1, eval_episodes=10))
    compile_sample, compiled = measure(lambda: fn.lower(keys, hp).compile())
    out = jax.block_until_ready(compiled(keys, hp))  # untimed first call
    samples = []
    for _ in range(repeats):
        sample, out = measure(lambda: jax.block_until_ready(compiled(keys, hp)))
        samples.append(sample)
    steps = sum(p.num_iterations * p.env_steps_per_iteration for p in agent.phases)
    return {"algo": algo, "matmul_dtype": config.matmul_dtype, "seeds": seeds, "env_steps_per_seed": steps, "compile_s": compile_sample.wall_s,
            "run": Summary.of(samples).as_dict(),
            "final_eval_return": float(jax.numpy.mean(out[1][-1]["eval_return"][:, -1]))}


def sweep_table(rows: list[dict]) -> str:
    lines = ["| algo | matmuls | seeds | compile s | run s (min / med) | time / time(1 seed) | env steps/s (all seeds) | "
             "cores busy | threads | load range | final eval return |", "|" + "---|" * 11]
    for r in rows:
        one = next((x["run"]["median_s"] for x in rows
                    if x["algo"] == r["algo"] and x["matmul_dtype"] == r["matmul_dtype"] and x["seeds"] == 1), None)
        scale = f"{r['run']['median_s'] / one:.2f}" if one else "-"
        rate = r["seeds"] * r["env_steps_per_seed"] / r["run"]["median_s"]
        lines.append(f"| {r['algo']} | {r['matmul_dtype']} | {r['seeds']} | {r['compile_s']:.1f} | {r['run']['min_s']:.3f} / "
                     f"{r['run']['median_s']:.3f} | {scale} | {rate:,.0f} | {r['run']['cores_busy']:.2f} | "
                     f"{r['run']['threads']} | {r['run']['load_min']:.1f}-{r['run']['load_max']:.1f} | "
                     f"{r['final_eval_return']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", help="directory for accelerator.json and accelerator.md")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: checks the script on any device")
    ap.add_argument("--skip", default="", help="comma-separated parts to leave out: sac,rlpd,ppo")
    ap.add_argument("--matmul-dtypes", default="float32",
                    help="comma-separated matmul_dtype values to run SAC and RLPD with (float32, bfloat16)")
    args = ap.parse_args(argv)
    sizes = TINY if args.tiny else AcceleratorSizes()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    dtypes = [d.strip() for d in args.matmul_dtypes.split(",") if d.strip()]
    bad = sorted(set(dtypes) - set(MATMUL_DTYPES))
    if bad:
        raise SystemExit(f"unknown --matmul-dtypes {bad}; choose from {list(MATMUL_DTYPES)}")
    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(f"accelerator benchmarks on {info['device']}, load average {info['load_average_start']:.1f}")
    if jax.devices()[0].platform == "cpu" and not args.tiny:
        print("note: no accelerator found; these are CPU numbers")
    hidden = (sizes.hidden, sizes.hidden)
    sweeps, ppo_rows = [], []

    for dtype in dtypes if "sac" not in skip else []:
        sac = get_algorithm("sac").config_cls(total_steps=sizes.sac_steps, warmup_steps=sizes.sac_warmup,
                                              hidden_sizes=hidden, matmul_dtype=dtype)
        problem = build_problem("pendulum")
        for n in sizes.sac_seeds:
            sweeps.append(time_sweep("sac", problem, sac, n, sizes.repeats))
            print(f"  sac ({dtype}) x{n}: {sweeps[-1]['run']['median_s']:.3f} s")

    for dtype in dtypes if "rlpd" not in skip else []:
        from benchmarks.offline_speed import synthetic_dataset

        rlpd = get_algorithm("rlpd").config_cls(total_steps=sizes.rlpd_steps, warmup_steps=sizes.sac_warmup,
                                                hidden_sizes=hidden, utd=20, num_critics=10, matmul_dtype=dtype)
        problem = build_problem("pendulum", dataset=synthetic_dataset(sizes.rlpd_dataset, 3, 1, 200))
        sweeps.append(time_sweep("rlpd", problem, rlpd, sizes.rlpd_seeds, sizes.repeats))
        print(f"  rlpd (UTD 20, 10 critics, {dtype}) x{sizes.rlpd_seeds}: {sweeps[-1]['run']['median_s']:.3f} s")

    if "ppo" not in skip:
        anchor_sizes = Sizes(repeats=sizes.repeats, compile_repeats=1, ppo_steps=sizes.ppo_steps, eval_episodes=10)
        for n in sizes.ppo_seeds:
            ours, anchor = ppo_pair(n, anchor_sizes)
            ppo_rows.append(compare("ppo", n, ours, anchor, anchor_sizes))

    info["load_average_end"] = os.getloadavg()[0]
    text = (f"Device: {info['device']}; {info['date_utc']} UTC; jax {info['jax']}; load average "
            f"{info['load_average_start']:.1f} -> {info['load_average_end']:.1f}\n\n")
    if sweeps:
        text += sweep_table(sweeps) + "\n\n"
    if ppo_rows:
        text += "PPO (PureJaxRL settings) against the PureJaxRL reimplementation; ratio = ours / anchor\n\n"
        text += markdown_table(ppo_rows) + "\n"
    print(text)
    result = {"machine": info, "sizes": dataclasses.asdict(sizes), "sweeps": sweeps, "ppo": ppo_rows}
    (out_dir / "accelerator.json").write_text(json.dumps(result, indent=2, default=float))
    (out_dir / "accelerator.md").write_text(text)
    return result


if __name__ == "__main__":
    main()
