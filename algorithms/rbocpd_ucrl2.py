"""R-BOCPD-UCRL2 (Alami, Mahfoud, Moulines, CoLLAs 2023, PMLR 232:715-744) [R: structure consistent
with the abstract and the regret bound; the paper's exact constants could not be checked].

UCRL2 (``algorithms.ucrl2``) restarted whenever a restarted-BOCPD change detector fires. One R-BOCPD detector
``D[s,a]`` per state-action pair watches the stream of next states observed after playing ``a`` in ``s`` (a local
clock: the stream advances only when ``(s,a)`` is visited; a global stream would mistake the policy's changing
state visits for changes):

    1. t_r <- 1; detectors and UCRL2 statistics empty
    2. each step t:  UCRL2 episode start if due (t_k = t - t_r + 1 in the radii and in eps = 1/sqrt(t_k))
    3.   play a_t = pi_k(s_t); observe r_t, s_{t+1}; update the UCRL2 statistics
    4.   feed x = s_{t+1} to D[s_t, a_t]; with n samples since the detector's restart and counts cnt,
             Z_m = ell(cnt_{1:m}) + ell(cnt_{m+1:n}) - ell(cnt_{1:n})     (Laplace log-marginals ell)
             D fires iff  max_m (Z_m - thr_m) > 0,  m on a grid of stride g (hybrid_rl.changepoint)
             thr_m = log(1/delta_D) + log(m (m+1)) + log C(n + S - 1, S - 1)   ("delta" rule, default)
                   = log T                                                  ("code" rule: eta = 1/T)
             delta_D = detector_delta / (S A)   [and / (k+1)^2 after k restarts if delta_decay]
    5.   if D fires: GLOBAL restart (default): forget every UCRL2 statistic and every detector, t_r <- t + 1,
             new episode at t + 1;   "local": forget only the pair's statistics and start a new episode
    6.   else the doubling rule

Optional reward detectors (``reward_detectors``) run the same test on the reward stream of each pair, discretised
into ``reward_bins`` categories ``min(floor(r * bins), bins - 1)`` (rewards in [0, 1]); transition-only by default.

Choices the paper could not confirm, as options [R]: ``threshold`` ("delta" with a false-alarm guarantee vs the
authors' Bernoulli code's ``log T``), ``reset_scope`` (global vs local), ``delta_decay``, ``reward_detectors``,
``confidence_clock`` (time since restart vs global, in ``ucrl2.Config``), the confidence multiplier ``c``.
Detector memory is fixed: each detector tests its most recent ``num_candidates`` split points (stride ``stride``),
and the restart forecaster is always kept (``hybrid_rl.changepoint``).

With no detector firing, the trajectory is exactly UCRL2's for the same key (the detectors use no randomness).
Extra metrics: ``detector_score`` (the updated detector's ``max_m (Z_m - thr_m)``; NaN before it has candidates),
``detector_fired``; restart times are in ``state.restart_log`` (global scope) and local resets are counted in
``state.variant.local_resets``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from algorithms import _ucrl2 as ucrl2
from algorithms._ucrl2 import Decision, Variant
from hybrid_rl import changepoint as cp
from hybrid_rl.algorithm import AlgorithmSpec, Budget
from hybrid_rl.problem import Problem

RESET_SCOPES = ("global", "local")


@dataclasses.dataclass(frozen=True)
class Config(ucrl2.Config):  # every field of ucrl2.Config, plus:
    detector_delta: float = 0.05  # total false-alarm level; each of the S*A detectors uses it / (S*A) (traced)
    threshold: str = "delta"  # "delta": false-alarm-controlled rule (module doc); "code": log T (authors' code) [R]
    stride: int = 5  # g: candidate change points every g samples of a pair's stream
    num_candidates: int = 256  # J: most recent split points tested per detector (memory and time per step)
    reset_scope: str = "global"  # "global": restart everything on a detection; "local": the pair only [R]
    delta_decay: bool = False  # per-detector delta also / (restarts + 1)^2, for a run-wide guarantee [R]
    reward_detectors: bool = False  # also detect changes in each pair's (discretised) reward stream [R]
    reward_bins: int = 2  # categories of the discretised reward stream


TRACED = ucrl2.TRACED + ("detector_delta",)


@struct.dataclass
class DetectorState:
    transitions: cp.RBOCPDState  # (S, A) grid of detectors on next states
    rewards: Any  # (S, A) grid on discretised rewards, or () when off
    local_resets: jax.Array  # () int32, detections in "local" scope


def detector_variant(config: Config, S: int, A: int) -> Variant:
    if config.reset_scope not in RESET_SCOPES:
        raise ValueError(f"reset_scope must be one of {RESET_SCOPES}, got {config.reset_scope!r}")
    if config.threshold not in cp.THRESHOLD_RULES:
        raise ValueError(f"threshold must be one of {cp.THRESHOLD_RULES}, got {config.threshold!r}")
    if config.stride < 1 or config.num_candidates < 1:
        raise ValueError("stride and num_candidates must be >= 1")
    if config.reward_bins < 2:
        raise ValueError("reward_bins must be >= 2")
    common = dict(horizon=float(config.total_steps), stride=config.stride, num_candidates=config.num_candidates,
                  threshold=config.threshold)
    p_trans = cp.RBOCPDParams(num_categories=S, **common)
    p_rew = cp.RBOCPDParams(num_categories=config.reward_bins, **common)
    n_detectors = S * A * (2 if config.reward_detectors else 1)

    def init(key, hp):
        return DetectorState(
            transitions=cp.rbocpd_init(p_trans, (S, A)),
            rewards=cp.rbocpd_init(p_rew, (S, A)) if config.reward_detectors else (),
            local_resets=jnp.int32(0),
        )

    def observe(state, obs):
        det: DetectorState = state.variant
        delta = state.hparams["detector_delta"] / n_detectors
        if config.delta_decay:
            delta = delta / (state.num_restarts + 1.0) ** 2
        pair = (obs.s, obs.a)
        trans, info = cp.rbocpd_update_at(p_trans.replace(delta=delta), det.transitions, pair, obs.s_next)
        fired, score = info["restart"], info["score"]
        rewards = det.rewards
        if config.reward_detectors:
            x = jnp.clip(jnp.floor(obs.r * config.reward_bins), 0, config.reward_bins - 1).astype(jnp.int32)
            rewards, r_info = cp.rbocpd_update_at(p_rew.replace(delta=delta), rewards, pair, x)
            fired, score = fired | r_info["restart"], jnp.maximum(score, r_info["score"])
        metrics = {
            "detector_score": jnp.where(jnp.isfinite(score), score, jnp.nan),
            "detector_fired": fired.astype(jnp.float32),
        }
        if config.reset_scope == "global":
            fresh = init(None, state.hparams)
            trans = jax.tree.map(lambda f, d: jnp.where(fired, f, d), fresh.transitions, trans)
            rewards = jax.tree.map(lambda f, d: jnp.where(fired, f, d), fresh.rewards, rewards)
            det = DetectorState(transitions=trans, rewards=rewards, local_resets=det.local_resets)
            return state.replace(variant=det), Decision(fired, jnp.bool_(False), metrics)
        # Local scope: the pair's own detectors already restarted themselves; forget its UCRL2 statistics only.
        if config.reward_detectors:  # both streams of the pair start afresh together
            fresh = cp.rbocpd_init(p_trans)
            one = jax.tree.map(lambda a: a[pair], trans)
            trans = jax.tree.map(lambda a, f, o: a.at[pair].set(jnp.where(fired, f, o)), trans, fresh, one)
            fresh_r = cp.rbocpd_init(p_rew)
            one_r = jax.tree.map(lambda a: a[pair], rewards)
            rewards = jax.tree.map(lambda a, f, o: a.at[pair].set(jnp.where(fired, f, o)), rewards, fresh_r, one_r)
        keep = ~fired
        state = state.replace(
            n_sa=state.n_sa.at[pair].multiply(keep.astype(jnp.int32)),
            n_sas=state.n_sas.at[pair].multiply(keep.astype(jnp.int32)),
            r_sum=state.r_sum.at[pair].multiply(keep.astype(jnp.float32)),
            variant=DetectorState(trans, rewards, det.local_resets + fired.astype(jnp.int32)),
        )
        return state, Decision(jnp.bool_(False), fired, metrics)

    return Variant(init=init, observe=observe)


def make(config: Config, problem: Problem):
    S, A, _ = ucrl2.check_tabular_problem(problem, "rbocpd_ucrl2")
    return ucrl2.make_family(config, problem, "rbocpd_ucrl2", detector_variant(config, S, A))


SPEC = AlgorithmSpec(
    name="rbocpd_ucrl2",
    description="R-BOCPD-UCRL2: UCRL2 restarted when a per-(s,a) restarted-BOCPD detector finds a change.",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="none",
    action_kinds=("discrete",),
    paper="Alami, Mahfoud, Moulines, Restarted Bayesian Online Change-point Detection for Non-Stationary "
          "Markov Decision Processes, CoLLAs 2023",
    evaluation=False,
    budget=Budget("total_steps", "env_steps"),
)
