"""SW-UCRL2: UCRL2 on a sliding window (Gajane, Ortner, Auer 2018) [structure from the paper, R constants].

Every statistic uses only the last ``W`` steps:

    N_W(s,a)      = #{t - W < u <= t : (s_u, a_u) = (s,a)}          (and N_W(s,a,s'), reward sums alike)
    d_r, d_p      = UCRL2's radii (algorithms.ucrl2) with N_W and t_k replaced by min(t_k, W)
    episodes      : UCRL2's doubling rule on the window counts (N_k = N_W at the episode start);
                    [R, our addition] also end an episode after W steps, so stale data leave the model

The window is kept exactly and cheaply: a ring buffer of the last ``W`` transitions; each step adds the new
transition to the counts and subtracts the one that leaves the window (amortised ``O(1)`` per step, see
:func:`window_variant`), so the statistics are always the window's, which is the same as recomputing them at
every episode start.

``window`` is a *traced* hyper-parameter: the ring holds ``max_window`` transitions and the window only decides
which one is evicted, so ``+hp_sweep.window=[2000,6000,20000]`` is one compiled program (windows above
``max_window`` are clipped to it). The theory tunes ``W ~ (T / l)^{2/3}`` times problem factors; we could not
verify the constant, so sweep it (Figure C1: W in {2000, 6000, 20000} for T = 60k).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from algorithms import _ucrl2 as ucrl2
from algorithms._ucrl2 import Decision, Variant
from hybrid_rl.algorithm import AlgorithmSpec, Budget
from hybrid_rl.problem import Problem


@dataclasses.dataclass(frozen=True)
class Config(ucrl2.Config):  # every field of ucrl2.Config, plus:
    window: int = 6_000  # W, steps in the window (T/10 at the default T) (traced; clipped to max_window)
    max_window: int = 20_000  # ring-buffer capacity: the largest window a traced sweep may use
    end_episode_after_window: bool = True  # end an episode after W steps [R: our addition]
    steps_per_iteration: int = 50  # env steps per runner iteration = the ring's write block (speed; divides T)


TRACED = ucrl2.TRACED + ("window",)


@struct.dataclass
class WindowState:
    ring_code: jnp.ndarray  # (capacity,) int32, packed (s, a, s') of step u at slot u % capacity (finished blocks)
    ring_r: jnp.ndarray  # (capacity,) float32, reward of step u
    stage_code: jnp.ndarray  # (K,) int32, the current block's transitions, slot u % K
    stage_r: jnp.ndarray  # (K,) float32


def window_variant(config: Config, S: int, A: int) -> Variant:
    """Window statistics. Transitions are staged in a block of ``K = steps_per_iteration`` slots and copied into
    the ring once per block (``after_block``): under ``vmap`` a write at a per-seed index touches the whole array
    (XLA lowers it to a select), so writing the ring every step would cost ``O(max_window)`` per step."""
    if config.window < 1 or config.max_window < 1:
        raise ValueError("window and max_window must be >= 1")
    K = config.steps_per_iteration
    capacity = -(-max(config.max_window, config.window) // K) * K  # whole blocks: a block copy never wraps

    def window_of(hp):
        return jnp.clip(jnp.round(hp["window"]), 1, capacity).astype(jnp.int32)

    def init(key, hp):
        return WindowState(
            ring_code=jnp.zeros((capacity,), jnp.int32),
            ring_r=jnp.zeros((capacity,), jnp.float32),
            stage_code=jnp.zeros((K,), jnp.int32),
            stage_r=jnp.zeros((K,), jnp.float32),
        )

    def read(buf: WindowState, u, t):
        """Transition of step ``u <= t``: staged if it is in the current block, else in the ring."""
        staged = u >= t - t % K
        code = jnp.where(staged, buf.stage_code[u % K], buf.ring_code[u % capacity])
        r = jnp.where(staged, buf.stage_r[u % K], buf.ring_r[u % capacity])
        return code // (A * S), (code // S) % A, code % S, r

    def observe(state, obs):
        W = window_of(state.hparams)
        buf: WindowState = state.variant
        t = state.t  # 0-based index of the step just taken (already counted in the statistics)
        # Evict step t - W (read before this step's write).
        evict = (t >= W).astype(jnp.int32)
        s0, a0, s1, r0 = read(buf, jnp.maximum(t - W, 0), t)
        buf = buf.replace(
            stage_code=buf.stage_code.at[t % K].set((obs.s * A + obs.a) * S + obs.s_next),
            stage_r=buf.stage_r.at[t % K].set(obs.r),
        )
        state = state.replace(
            variant=buf,
            n_sa=state.n_sa.at[s0, a0].add(-evict),
            n_sas=state.n_sas.at[s0, a0, s1].add(-evict),
            r_sum=state.r_sum.at[s0, a0].add(-evict * r0),
        )
        # Float add/subtract round-off must not leave a phantom reward on an emptied pair.
        state = state.replace(r_sum=jnp.where(state.n_sa > 0, state.r_sum, 0.0))
        long_episode = (t + 1 - state.episode_start) >= W
        end = long_episode if config.end_episode_after_window else jnp.bool_(False)
        return state, Decision(jnp.bool_(False), end, {})

    def after_block(state):
        buf: WindowState = state.variant
        start = (state.t - K) % capacity  # the block just finished covers steps t-K .. t-1
        return state.replace(variant=buf.replace(
            ring_code=jax.lax.dynamic_update_slice(buf.ring_code, buf.stage_code, (start,)),
            ring_r=jax.lax.dynamic_update_slice(buf.ring_r, buf.stage_r, (start,)),
        ))

    return Variant(
        init=init, observe=observe, after_block=after_block,
        confidence_cap=lambda hp: window_of(hp).astype(jnp.float32),
    )


def make(config: Config, problem: Problem):
    S, A, _ = ucrl2.check_tabular_problem(problem, "sw_ucrl2")
    return ucrl2.make_family(config, problem, "sw_ucrl2", window_variant(config, S, A))


SPEC = AlgorithmSpec(
    name="sw_ucrl2",
    description="SW-UCRL2: UCRL2 whose statistics and confidence time use only the last W steps.",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="none",
    action_kinds=("discrete",),
    paper="Gajane, Ortner, Auer, A Sliding-Window Algorithm for Markov Decision Processes with "
          "Arbitrarily Changing Rewards and Transitions, 2018",
    evaluation=False,
    budget=Budget("total_steps", "env_steps"),
)
