"""Fig. E1 (our design; docs/algorithms/h2o.md): learning from a mismatched simulator and a small real dataset.

    python -m paper_figures.h2o_dynamics_gap                 # 8 seeds, CPU budget, writes h2o_dynamics_gap.{png,json}
    python -m paper_figures.h2o_dynamics_gap --steps 400 --mc-steps 400 --seeds 2 --out /tmp/e1   # smoke run
    python -m paper_figures.h2o_dynamics_gap --kind medium --envs pendulum_gravity_2x \
        --methods h2o,h2o_naive,sac_sim,cql --out paper_figures/h2o_dynamics_gap_medium   # medium real data
    python -m paper_figures.h2o_dynamics_gap --suite mujoco          # MuJoCo HalfCheetah, --preset cpu
    python -m paper_figures.h2o_dynamics_gap --suite mujoco --preset paper   # the accelerator budget

For each CPU sim/real pair (Pendulum gravity x2 and x0.5, Pendulum mass x2, MountainCarContinuous power x0.5)
the methods are trained and evaluated in the REAL env (nominal physics):

* ``h2o``: sim steps + real data, discriminator-weighted (algorithms/h2o.py);
* ``h2o_naive``: the same with w = 1 and uniform omega (the naive sim + real mix);
* ``sac_sim``: SAC in the simulator only; ``darc``: SAC in the simulator with DARC's classifier reward;
* ``cql``: CQL on the real data only (it never sees the simulator);
* ``rlpd_sim``: RLPD with the real data offline and the simulator online (UTD 2 and 4 critics for the CPU: it
  makes twice the critic updates of the others).

CPU budget (all methods): 64x64 networks, batches of 128 (H2O: 64 real + 64 sim), 8,000 env steps on Pendulum
and 4,000 on MountainCar (gradient steps for CQL, with 4 actions per proposal instead of 10), 1,000 warm-up steps
for the SAC-based sim learners, 5 evaluations of 5 real episodes.

Real data: the dataset builder's ``medium-replay`` set (asked for 10k transitions; it keeps the SAC replay buffer
up to the medium checkpoint, which for Pendulum is only 3,380 near-random transitions) of the real env. The three Pendulum pairs
share one real system (nominal Pendulum), so they share one real dataset (built for ``pendulum_gravity_2x``).
Scores are normalised with the random and expert returns stored in the dataset's metadata.

Programs: every method is one ``jit(vmap(vmap(...)))`` over (sim shift, seed); the sim shift is a traced
hyper-parameter (``sim_shift``), so gravity x0.5 and x2 (and H2O's gap sweep x1, x1.5 for E1c) are one compiled
program per method. Seeds are initialised with ``lax.map`` (see ``init_and_train``).

MuJoCo suite (``--suite mujoco``): HalfCheetah (D4RL v2 semantics) as the real system, with H2O's three
simulators: gravity x2, sliding friction x0.3 and Gaussian noise of std 1.0 on the executed action (the clean
action is stored). Real data: the builder's ``medium-replay`` set of ``mujoco_halfcheetah`` from the preset's SAC
recipe (``paper_figures/mujoco_data.py``; the same file F1's halfcheetah medium-replay panel uses); scores with
D4RL's HalfCheetah references (100 = D4RL expert). E1c sweeps the gravity factor (x1, x1.5, x2). Budgets are
presets (``PRESETS``): ``cpu`` (the default for this suite) fits an hour of the 2-core CPU, ``paper`` (2x256,
batch 256, RLPD at UTD 20 with 10 critics, 100k steps, 8 seeds) is meant for an accelerator; flags override them.
The classic suite without ``--preset`` keeps the CPU budget above.

Claims (paper_figures/README.md, E1), checked and printed, all numbers saved to ``h2o_dynamics_gap.json``:

* E1a: H2O's final real return >= max(SAC-sim, CQL-real) on at least 3 of the 4 shifts (means over seeds; on
  every shift of a run with fewer, such as the MuJoCo suite's 3);
* E1b: H2O >= the naive mix on the two shifts with the largest gap (largest mean gap score u of H2O);
* E1c: H2O's mean gap score u on sim transitions grows with the gravity shift (x1 < x1.5 < x2) and is near 0
  when sim = real (|u(x1)| <= 0.25 u(x2)).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import numpy as np

from experiments.catalog import build_problem, default_hparams, get_algorithm
from hybrid_rl.runner import hparam_grid, init_grid, make_train_from, plan_phases
from paper_figures.mujoco_data import MUJOCO_DATASET_RECIPES, MUJOCO_DATASET_SIZES, is_mujoco, with_d4rl_references
from paper_figures.provenance import check_parts, joined_provenance, mean_ci, provenance, runtimes_per_part

HERE = pathlib.Path(__file__).resolve().parent

# (label, env whose make_sim gives the simulator, sim_shift value)
SHIFTS = [
    ("Pendulum gravity x2", "pendulum_gravity_2x", 2.0),
    ("Pendulum gravity x0.5", "pendulum_gravity_2x", 0.5),
    ("Pendulum mass x2", "pendulum_mass_2x", 2.0),
    ("MountainCar power x0.5", "mountaincar_continuous_power_0.5x", 0.5),
]
GAP_SWEEP = [1.0, 1.5, 2.0]  # H2O's gap score u vs the gravity factor (E1c)
DATASET_ENV = {  # which builder dataset is the real data of each env (the Pendulum pairs share one real system)
    "pendulum_gravity_2x": "pendulum_gravity_2x",
    "pendulum_mass_2x": "pendulum_gravity_2x",
    "mountaincar_continuous_power_0.5x": "mountaincar_continuous_power_0.5x",
}
METHODS = ["h2o", "h2o_naive", "sac_sim", "darc", "cql", "rlpd_sim"]
COLORS = {"h2o": "C3", "h2o_naive": "C1", "sac_sim": "C0", "darc": "C4", "cql": "C2", "rlpd_sim": "C5"}

# The MuJoCo suite: HalfCheetah's real system with H2O's three simulators; one real dataset for all of them.
MUJOCO_SHIFTS = [
    ("HalfCheetah gravity x2", "mujoco_halfcheetah_gravity_2x", 2.0),
    ("HalfCheetah friction x0.3", "mujoco_halfcheetah_friction_0.3x", 0.3),
    ("HalfCheetah joint noise 1.0", "mujoco_halfcheetah_joint_noise", 1.0),
]
MUJOCO_DATASET_ENV = {env: "mujoco_halfcheetah" for _, env, _ in MUJOCO_SHIFTS}
SUITES = {  # shifts, the env of the E1c gravity sweep, real dataset env of each pair env
    "classic": (SHIFTS, "pendulum_gravity_2x", DATASET_ENV),
    "mujoco": (MUJOCO_SHIFTS, "mujoco_halfcheetah_gravity_2x", MUJOCO_DATASET_ENV),
}

# Budgets. The classic suite without --preset keeps CLASSIC (the CPU budget described above).
CLASSIC = dict(seeds=8, steps=8_000, mc_steps=4_000, dataset_size=10_000, num_evals=5, eval_episodes=5, hidden=64,
               batch=128, warmup=1_000, cql_actions=4, rlpd_utd=2, rlpd_critics=4, kind="medium-replay")
PRESETS = {
    # Fits an hour of the 2-core CPU beside another figure run (paper_figures/README.md, E1 on MuJoCo).
    "cpu": dict(CLASSIC, seeds=4, steps=4_000, mc_steps=4_000, dataset_size=MUJOCO_DATASET_SIZES["cpu"], num_evals=4,
                eval_episodes=2),
    # For an accelerator (paper_figures/run_paper_preset.sh).
    "paper": dict(CLASSIC, seeds=8, steps=100_000, mc_steps=100_000, dataset_size=MUJOCO_DATASET_SIZES["paper"],
                  num_evals=10, eval_episodes=5, hidden=256, batch=256, warmup=5_000, cql_actions=10, rlpd_utd=20,
                  rlpd_critics=10),
}


def method_config(name: str, steps: int, budget: dict = CLASSIC):
    """``budget``'s networks (hidden x hidden, discriminators too) and batches, ``steps`` env steps (or gradient
    steps for CQL)."""
    hidden = (budget["hidden"], budget["hidden"])
    small = dict(total_steps=steps, hidden_sizes=hidden, batch_size=budget["batch"])
    disc = dict(disc_hidden_sizes=hidden, disc_batch_size=budget["batch"])
    warmup = min(budget["warmup"], steps // 4)
    overrides = {
        "h2o": {**small, **disc},
        "h2o_naive": {**small, **disc},
        "sac_sim": {**small, "warmup_steps": warmup},
        # DARC's official classifiers (32 units, unbounded logits, input noise 1.0), correction warm-up (a tenth
        # of the run) and reward scale 0.1: the algorithm's defaults; only the batch follows the budget.
        "darc": {**small, "disc_batch_size": budget["batch"], "warmup_steps": warmup},
        # CPU: 3 x 4 = 12 actions in the logsumexp instead of 30.
        "cql": {**small, "cql_num_actions": budget["cql_actions"]},
        "rlpd_sim": {**small, "warmup_steps": warmup, "utd": budget["rlpd_utd"], "num_critics": budget["rlpd_critics"]},
    }[name]
    return get_algorithm(name).config_cls(**overrides)


def init_and_train(agent, problem, num_evals: int, eval_episodes: int, deterministic: bool = True):
    """``program(keys, hparams) -> (state, metrics per phase)``: ``runner.make_train`` for a (hparam point, seed)
    grid, with the same key derivation; states initialised one (point, seed) at a time (``runner.init_grid``:
    jaxlib 0.10 deadlocks on this 2-core CPU when vmapped orthogonal initialisers' batched QRs run together)."""
    train_from = make_train_from(agent, problem, num_evals, eval_episodes, deterministic)

    def program(keys, hparams):
        num_hp = jax.tree.leaves(hparams)[0].shape[0]
        init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
        eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        states = init_grid(agent.init, init_keys, hparams, num_hp)
        return jax.vmap(jax.vmap(train_from), in_axes=(0, None))(states, eval_keys)

    return jax.jit(program)


def run_method(name, env, shifts, data_path, steps, seeds, num_evals, eval_episodes, log, deterministic=True,
               budget: dict = CLASSIC, env_kwargs=None):
    """Final and per-evaluation real returns, shape (len(shifts), seeds[, evals]), and the logged gap metrics."""
    problem = build_problem(env, env_kwargs, dataset=data_path)
    spec = get_algorithm(name)
    config = method_config(name, steps, budget)
    agent = spec.make(config, problem)
    grid = {"sim_shift": list(shifts)} if "sim_shift" in spec.traced else {}
    hparams, _ = hparam_grid(default_hparams(spec, config), grid)
    keys = jax.random.split(jax.random.key(0), seeds)
    t0 = time.perf_counter()
    _, metrics = jax.device_get(init_and_train(agent, problem, num_evals, eval_episodes, deterministic)(keys, hparams))
    seconds = time.perf_counter() - t0
    last = metrics[-1]
    curve = np.concatenate([m["eval_return"] for m in metrics], axis=-1)  # (points, seeds, evals)
    if not grid:  # methods without a simulator: the same numbers for every shift
        curve = np.broadcast_to(curve, (len(shifts),) + curve.shape[1:])
    steps_at, done = [], 0  # iterations (= env steps; gradient steps for CQL) at each evaluation
    for plan in plan_phases(agent, num_evals):
        steps_at += [done + (c + 1) * plan.chunk_length for c in range(plan.num_chunks)]
        done += plan.num_iterations
    out = {"returns": curve, "seconds": seconds, "steps": steps_at}
    for key in ("gap_score", "sim_weight", "reward_correction"):
        if key in last:
            out[key] = np.asarray(last[key])[..., -1]  # mean over the last chunk
    log(f"  {name:>9} on {env} (shifts {list(shifts)}): {seconds:6.1f} s, final real return "
        f"{np.round(curve[..., -1].mean(axis=-1), 1).tolist()}")
    return out


def bootstrap_ci(values, name: str):
    """95% percentile bootstrap interval of the mean over seeds, its resamples seeded by ``name``."""
    lo, hi = mean_ci(np.asarray(values, np.float64)[:, None], name)
    return float(lo[0]), float(hi[0])


def real_datasets(kind: str, size: int, log, envs=None, dataset_env=DATASET_ENV, options=None, data_dir=None,
                  env_kwargs=None):
    """Path and (random, expert) references of each real dataset the run needs. MuJoCo data is scored with
    D4RL's references (the builder's stay in the file and the provenance); ``options``: builder options for
    MuJoCo envs."""
    from experiments.dataset_builder import get_or_build_dataset
    from hybrid_rl.datasets import load_d4rl_hdf5

    paths, refs = {}, {}
    for env in sorted({dataset_env[e] for e in (envs or dataset_env)}):  # only the real data the run needs
        path = get_or_build_dataset(env, kind, size, env_kwargs=env_kwargs, data_dir=data_dir,
                                    **((options or {}) if is_mujoco(env) else {}))
        raw = load_d4rl_hdf5(path)
        paths[env] = str(path)
        refs[env] = (float(raw["metadata/ref_min_return"]), float(raw["metadata/ref_max_return"]))
        if is_mujoco(env):
            refs[env] = with_d4rl_references(build_problem(env, env_kwargs, dataset=path)).reference_returns()
        log(f"real data for {env}: {path} ({len(raw['rewards'])} transitions, refs random/expert {refs[env]})")
    return paths, refs


def resolve_settings(args) -> dict:
    """The budget of this run: the preset's (the MuJoCo suite's default is ``cpu``; the classic suite without a
    preset keeps ``CLASSIC``), with every flag given on the command line taking precedence."""
    if args.suite not in SUITES:
        raise SystemExit(f"unknown suite {args.suite!r}; suites: {', '.join(SUITES)}")
    args.preset = args.preset or ("cpu" if args.suite == "mujoco" else None)
    if args.preset is not None and args.preset not in PRESETS:
        raise SystemExit(f"unknown preset {args.preset!r}; presets: {', '.join(PRESETS)}")
    budget = dict(PRESETS[args.preset] if args.preset else CLASSIC)
    for key in budget:
        if getattr(args, key, None) is None:
            setattr(args, key, budget[key])
        budget[key] = getattr(args, key)
    args.mujoco_dataset = dict(MUJOCO_DATASET_RECIPES[args.preset or "cpu"])
    if args.out is None:
        args.out = str(HERE / ("h2o_dynamics_gap" + ("" if args.suite == "classic" else f"_{args.suite}")
                               + (f"_{args.preset}" if args.preset else "")))
    return budget


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="classic", help=f"sim/real pairs: {', '.join(SUITES)} (default classic)")
    parser.add_argument("--preset", default=None, help=f"budget: {', '.join(PRESETS)} (default: the classic "
                        "suite's own CPU budget; cpu for the mujoco suite); the flags below override it")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None,
                        help="env steps per run (gradient steps for CQL); Pendulum and MuJoCo")
    parser.add_argument("--mc-steps", type=int, default=None, help="MountainCar: env steps per run (999-step episodes)")
    parser.add_argument("--dataset-size", type=int, default=None)
    parser.add_argument("--kind", default=None, help="builder dataset kind of the real data (default medium-replay)")
    parser.add_argument("--num-evals", type=int, default=None)
    parser.add_argument("--eval-episodes", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=None, help="width of the two hidden layers (discriminators too)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None, help="random warm-up of the SAC-based sim learners")
    parser.add_argument("--cql-actions", type=int, default=None, help="CQL's sampled actions per proposal")
    parser.add_argument("--rlpd-utd", type=int, default=None)
    parser.add_argument("--rlpd-critics", type=int, default=None)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--envs", default=None, help="comma-separated subset of the pair envs (default: all)")
    parser.add_argument("--data-dir", default=None, help="the dataset builder's cache (default: its own default)")
    parser.add_argument("--episode-steps", type=int, default=None,
                        help="episode length cap of every env and dataset (smoke runs; default: each env's own)")
    parser.add_argument("--out", default=None, help="output path without extension (default: "
                        "paper_figures/h2o_dynamics_gap[_<suite>_<preset>])")
    parser.add_argument("--sampled-eval", action="store_true",
                        help="evaluate every method's sampled policy (default: each one's deterministic policy)")
    parser.add_argument("--merge", default="", help="comma-separated JSONs this script wrote on disjoint --envs "
                        "or --methods of one suite, budget and real data (earlier merges too): one figure and one "
                        "set of claims over all (written to --out)")
    args = parser.parse_args(argv)
    if args.merge:
        parts = [json.loads(pathlib.Path(part).read_text()) for part in args.merge.split(",")]
        finish(merge(parts), args.out or args.merge.split(",")[0].removesuffix(".json") + "_merged")
        return
    budget = resolve_settings(args)
    shifts, sweep_env, dataset_env = SUITES[args.suite]
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    start = time.perf_counter()
    envs = args.envs.split(",") if args.envs else None
    env_kwargs = {"max_steps_in_episode": args.episode_steps} if args.episode_steps else {}
    paths, refs = real_datasets(args.kind, args.dataset_size, log, envs, dataset_env, args.mujoco_dataset,
                                args.data_dir, env_kwargs)
    record = provenance(args, seeds=range(args.seeds), datasets=paths,
                        evaluation="sampled" if args.sampled_eval else "deterministic")
    methods = args.methods.split(",")

    # One program per (method, env); the shifts of one env are a traced axis of it.
    env_shifts: dict[str, list[float]] = {}
    for _, env, value in shifts:
        if envs is None or env in envs:
            env_shifts.setdefault(env, []).append(value)
    results: dict[str, dict] = {m: {} for m in methods}
    for name in methods:
        done_offline = {}  # CQL never sees the sim: one run per real dataset, shared by the pairs that share it
        for env, values in env_shifts.items():
            values = sorted(set(values) | (set(GAP_SWEEP) if name == "h2o" and env == sweep_env else set()))
            steps = args.mc_steps if env.startswith("mountaincar") else args.steps
            if name == "cql" and dataset_env[env] in done_offline:
                out = dict(done_offline[dataset_env[env]])
                out["returns"] = np.broadcast_to(out["returns"][:1], (len(values),) + out["returns"].shape[1:])
            else:
                out = run_method(name, env, values, paths[dataset_env[env]], steps, args.seeds, args.num_evals,
                                 args.eval_episodes, log, deterministic=not args.sampled_eval, budget=budget,
                                 env_kwargs=env_kwargs)
                done_offline[dataset_env[env]] = out
            for i, value in enumerate(values):
                entry = {"returns": out["returns"][i].tolist(), "seconds": out["seconds"], "steps": out["steps"]}
                for key in ("gap_score", "sim_weight", "reward_correction"):
                    if key in out:
                        entry[key] = np.asarray(out[key][i]).tolist()
                results[name][f"{env}@{value:g}"] = entry
        # Written after every method, so a run stopped part-way keeps what it finished ("complete" says which).
        done = {m: results[m] for m in methods[:methods.index(name) + 1]}
        payload = {"args": vars(args), "provenance": record, "runtime_s": time.perf_counter() - start, "refs": refs,
                   "refs_source": {env: "D4RL" if is_mujoco(env) else "builder" for env in refs}, "datasets": paths,
                   "budget": budget, "complete": name == methods[-1], "raw": done}
        finish(payload, args.out, log)


def finish(payload: dict, out: str, log=print):
    """Scores, CIs, claims, the JSON and the figure from the raw per-seed returns of ``payload`` (a fresh run or
    the parts joined by --merge)."""
    args = argparse.Namespace(**payload["args"])
    shifts, sweep_env, dataset_env = SUITES[args.suite]
    results, refs = payload["raw"], payload["refs"]
    methods = list(results)
    summary = {}
    for label, env, value in shifts:
        if any(f"{env}@{value:g}" not in results[name] for name in methods):
            continue
        lo, hi = refs[dataset_env[env]]
        row = {}
        for name in methods:
            returns = np.asarray(results[name][f"{env}@{value:g}"]["returns"])
            score = 100.0 * (returns - lo) / (hi - lo)
            final = score[:, -1]
            row[name] = {"final_score_mean": float(final.mean()),
                         "final_score_ci95": bootstrap_ci(final, f"{label}:{name}"),
                         "final_score_per_seed": final.tolist(), "curve_mean": score.mean(axis=0).tolist(),
                         "curve_steps": results[name][f"{env}@{value:g}"]["steps"],
                         "final_return_mean": float(returns[:, -1].mean())}
            if "gap_score" in results[name][f"{env}@{value:g}"]:
                row[name]["gap_score_mean"] = float(np.mean(results[name][f"{env}@{value:g}"]["gap_score"]))
                row[name]["sim_weight_mean"] = float(np.mean(results[name][f"{env}@{value:g}"]["sim_weight"]))
        summary[label] = row
    payload = {**payload, "summary": summary, "claims": check_claims(summary, results, methods, sweep_env)}
    pathlib.Path(out + ".json").write_text(json.dumps(payload, indent=1))
    plot(summary, results, methods, args, pathlib.Path(out + ".png"), sweep_env)
    log(f"total {payload['runtime_s']:.0f} s; wrote {out}.json and .png")
    for claim, verdict in payload["claims"].items():
        log(f"{claim}: {verdict}")


def as_current_part(part: dict) -> dict:
    """``part`` in the layout this script writes now. A part without a suite in its args was written before the
    suites and presets existed, when the classic suite's networks, batches, warm-up, CQL actions and RLPD's UTD
    and critics were fixed at ``CLASSIC`` (only seeds, steps, data size and evaluations were flags): it gets the
    classic suite and that budget, its own flags taking precedence."""
    if "suite" in part["args"]:
        return part
    budget = {key: part["args"].get(key, value) for key, value in CLASSIC.items()}
    refs_source = part.get("refs_source") or {env: "D4RL" if is_mujoco(env) else "builder" for env in part["refs"]}
    return {**part, "args": {"suite": "classic", "preset": None, **part["args"], **budget}, "budget": budget,
            "refs_source": refs_source}


def merge(parts: list[dict]) -> dict:
    """One payload from runs of the same suite, seeds, budget, evaluation protocol and real data on disjoint
    (method, pair env) entries: per-env parts (``--envs``, e.g. one process per env) or per-method parts
    (``--methods``, e.g. a method run later), or a part --merge wrote itself: raw results, datasets and
    references joined, every run's provenance kept, runtime the longest part's (per-env parts run side by side;
    ``runtime_s_per_part`` keeps each). CQL never sees the simulator, so a pair env without its own CQL entry
    takes the CQL run on the same real data from another pair env, as a fresh run does."""
    parts = [as_current_part(p) for p in parts]
    check_parts(parts, {"suite": lambda p: p["args"]["suite"], "preset": lambda p: p["args"]["preset"],
                        "seeds": lambda p: p["args"]["seeds"], "budget": lambda p: p.get("budget")})
    raw = {}
    for part in parts:
        for name, entries in part["raw"].items():
            clash = set(raw.setdefault(name, {})) & set(entries)
            if clash and name != "cql":  # CQL never sees the sim: every part has the same real-data run
                raise SystemExit(f"--merge: {name} on {sorted(clash)} appears in more than one part")
            raw[name].update(entries)
    shifts, _, dataset_env = SUITES[parts[0]["args"]["suite"]]
    if "cql" in raw:
        on_data = {dataset_env[key.split("@")[0]]: entry for key, entry in raw["cql"].items()}
        wanted = {f"{env}@{value:g}" for name in raw for _, env, value in shifts if f"{env}@{value:g}" in raw[name]}
        for key in sorted(wanted - set(raw["cql"])):
            if dataset_env[key.split("@")[0]] in on_data:
                raw["cql"][key] = on_data[dataset_env[key.split("@")[0]]]
    methods = list(dict.fromkeys(m for p in parts for m in p["args"]["methods"].split(",")))
    per_part = runtimes_per_part(parts)
    merged = {**parts[0], "provenance": joined_provenance(parts), "raw": raw,
              "runtime_s": max(per_part), "runtime_s_per_part": per_part,
              "complete": all(name in raw for name in methods)}
    for key in ("refs", "refs_source", "datasets"):
        merged[key] = {k: v for p in parts for k, v in p[key].items()}
    envs = None if any(p["args"]["envs"] is None for p in parts) else ",".join(
        dict.fromkeys(e for p in parts for e in p["args"]["envs"].split(",")))
    merged["args"] = {**parts[0]["args"], "envs": envs, "methods": ",".join(methods)}
    return merged


def check_claims(summary, results, methods, sweep_env="pendulum_gravity_2x"):
    claims = {}
    mean = lambda label, m: summary[label][m]["final_score_mean"]  # noqa: E731
    if {"h2o", "sac_sim", "cql"} <= set(methods):
        wins = {label: mean(label, "h2o") >= max(mean(label, "sac_sim"), mean(label, "cql")) for label in summary}
        detail = ", ".join(f"{label}: H2O {mean(label, 'h2o'):.1f} vs SAC-sim {mean(label, 'sac_sim'):.1f} / "
                           f"CQL {mean(label, 'cql'):.1f}" for label in summary)
        needed = 3 if len(wins) == 4 else len(wins)  # 3 of the 4 shifts (all of them for a subset run)
        claims["E1a"] = (f"{'holds' if sum(wins.values()) >= needed else 'fails'} "
                         f"({sum(wins.values())}/{len(wins)}: {detail})")
    if {"h2o", "h2o_naive"} <= set(methods):
        gaps = {label: summary[label]["h2o"].get("gap_score_mean", float("nan")) for label in summary}
        largest = sorted(gaps, key=lambda label: -gaps[label])[:2]
        ok = all(mean(label, "h2o") >= mean(label, "h2o_naive") for label in largest)
        detail = ", ".join(f"{label} (u = {gaps[label]:.2f}): H2O {mean(label, 'h2o'):.1f} vs naive "
                           f"{mean(label, 'h2o_naive'):.1f}" for label in largest)
        claims["E1b"] = f"{'holds' if ok else 'fails'} ({detail})"
    if "h2o" in methods and f"{sweep_env}@1" in results["h2o"]:
        u = {v: float(np.mean(results["h2o"][f"{sweep_env}@{v:g}"]["gap_score"])) for v in GAP_SWEEP}
        grows = u[1.0] < u[1.5] < u[2.0]
        near_zero = abs(u[1.0]) <= 0.25 * u[2.0]
        others = sorted(float(k.split("@")[1]) for k in results["h2o"] if k.startswith(f"{sweep_env}@")
                        and float(k.split("@")[1]) not in GAP_SWEEP)
        extra = "".join(f"; x{v:g} {float(np.mean(results['h2o'][f'{sweep_env}@{v:g}']['gap_score'])):.3f}"
                        for v in others)
        claims["E1c"] = (f"{'holds' if grows and near_zero else 'fails'} (mean u over seeds: x1 {u[1.0]:.3f}, "
                         f"x1.5 {u[1.5]:.3f}, x2 {u[2.0]:.3f}{extra})")
    return claims


def plot(summary, results, methods, args, path, sweep_env="pendulum_gravity_2x"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(summary)
    fig, axes = plt.subplots(2, len(labels) + 1, figsize=(4.2 * (len(labels) + 1), 7.5))
    for col, label in enumerate(labels):
        ax = axes[0, col]
        for i, name in enumerate(methods):
            entry = summary[label][name]
            lo, hi = entry["final_score_ci95"]
            ax.bar(i, entry["final_score_mean"], color=COLORS[name], yerr=[[entry["final_score_mean"] - lo],
                   [hi - entry["final_score_mean"]]], capsize=3)
        ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right", fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.axhline(0, color="k", lw=0.5)
        if col == 0:
            ax.set_ylabel(f"final real normalized score\n(mean, 95% bootstrap CI, {args.seeds} seeds)")
        ax = axes[1, col]
        for name in methods:
            ax.plot(summary[label][name]["curve_steps"], summary[label][name]["curve_mean"], color=COLORS[name],
                    label=name, marker="o", ms=3)
        ax.set_xlabel("env steps (CQL: gradient steps)")
        if col == 0:
            ax.set_ylabel("real normalized score (mean over seeds)")
            ax.legend(fontsize=7)
    ax = axes[0, -1]
    if "h2o" in methods:
        sweep = sorted(float(k.split("@")[1]) for k in results["h2o"] if k.startswith(f"{sweep_env}@"))
        u = [results["h2o"][f"{sweep_env}@{v:g}"]["gap_score"] for v in sweep]
        ax.errorbar(sweep, [np.mean(x) for x in u], yerr=[np.std(x) / np.sqrt(len(x)) for x in u], marker="o",
                    color=COLORS["h2o"])
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("sim gravity factor (real = 1)")
        ax.set_ylabel("H2O mean gap score u on sim transitions")
        ax.set_title("E1c: estimated log P_sim/P_real", fontsize=10)
    axes[1, -1].axis("off")
    if args.suite == "mujoco":
        what = (f"{args.steps} steps, preset {args.preset}; real data: builder {args.kind} of HalfCheetah, "
                f"size {args.dataset_size}; 100 = D4RL expert; {args.seeds} seeds")
    else:
        what = (f"{args.steps} steps on Pendulum, {args.mc_steps} on MountainCar; real data: builder {args.kind}, "
                f"size {args.dataset_size}; {args.seeds} seeds")
    fig.suptitle(f"H2O and baselines, evaluated in the real env ({what})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
