"""Piecewise-stationary finite MDPs (gymnax interface): the kernel and/or rewards switch at change points.

Params stack ``K`` kernels, ``P[k, s, a, s']`` and ``R[k, s, a]``. The env counts *segments*: the transition
taken at env time ``t`` (``state.time`` before the step, starting at 0) belongs to segment ``l(t)`` and uses
kernel ``k = l(t) mod K``. The change-point schedule is a constructor option:

* ``"fixed"``: ``l(t) = #{j : c_j <= t}`` for the given sorted change times ``c_1 < ... < c_{K-1}``;
  segment ``l`` uses kernel ``l``.
* ``"uniform"``: the ``K-1`` change times are drawn at reset, sorted uniform integers in ``[1, schedule_horizon)``
  (ties, i.e. empty segments, are possible but rare; then a kernel is skipped).
* ``"geometric"``: after every step a change happens with probability ``switch_prob`` (geometric segment
  lengths); kernels cycle ``0, 1, ..., K-1, 0, ...``.

The segment index is in the state (``state.segment``: the segment of the *next* step) and in ``info``:
``segment`` / ``kernel`` of the step just taken, ``expected_reward`` = ``R[k, s, a]``, ``optimal_gain`` =
``rho*_k`` (precomputed), so the dynamic regret ``sum_t (rho*_{l(t)} - R_{l(t)}(s_t, a_t))`` (docs/algorithms/ucrl2.md)
is a running sum of ``info["optimal_gain"] - info["expected_reward"]``; ``changed`` says a change happens before the
next step.

Continuing by default: these are average-reward problems, and the env must not reset between segments, so
``max_steps_in_episode`` defaults to ``CONTINUING`` (int32 max; never reached). If a finite step limit is set,
the episode is truncated and auto-reset, and the schedule restarts with the episode clock (``time`` is
episode time): use that only for episodic experiments.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from envs.finite_mdp import (
    CONTINUING,
    OBS_TYPES,
    REWARD_NOISES,
    bernoulli_reward,
    garnet,
    riverswim_arrays,
    sample_categorical,
)
from envs.registry import EnvSpec, register_env
from hybrid_rl import tabular

SCHEDULES = ("fixed", "uniform", "geometric")
CHANGE_TYPES = ("swap", "reward", "redraw")


@struct.dataclass
class PiecewiseMDPParams:
    """Shapes: ``P (K,S,A,S)``, ``R (K,S,A)``, ``init_dist (S,)``, ``change_times (K-1,)`` int32,
    ``optimal_gain (K,)``."""

    P: jax.Array
    R: jax.Array
    init_dist: jax.Array
    change_times: jax.Array  # "fixed" schedule: sorted change times (first step of each new segment)
    optimal_gain: jax.Array  # rho* of each kernel (average reward), for dynamic regret
    switch_prob: Any = 0.0  # "geometric" schedule: per-step change probability
    schedule_horizon: Any = 60_000  # "uniform" schedule: change times drawn in [1, schedule_horizon)
    discount: Any = 1.0
    max_steps_in_episode: Any = CONTINUING


@struct.dataclass
class PiecewiseMDPState:
    s: jax.Array  # () int32 state index
    time: jax.Array  # () int32 steps since reset
    segment: jax.Array  # () int32 segment of the next step (number of changes so far)
    change_times: jax.Array  # (K-1,) int32 change times of this episode ("fixed": copied from params)


def _segment_at(t, change_times):
    return jnp.sum(t >= change_times).astype(jnp.int32)


@jax.jit
def segment_gains(P: jax.Array, R: jax.Array) -> jax.Array:
    """``rho*_k`` for every stacked kernel (relative value iteration, vmapped over ``k``)."""
    return jax.vmap(lambda p, r: tabular.relative_value_iteration(p, r).gain)(P, R)


def make_piecewise_params(
    P,
    R,
    change_times: Sequence[int] | jax.Array = (),
    init_dist=None,
    switch_prob: float = 0.0,
    schedule_horizon: int = 60_000,
    optimal_gain=None,
    discount: float = 1.0,
    max_steps_in_episode: int = CONTINUING,
) -> PiecewiseMDPParams:
    """Params from stacked arrays; ``optimal_gain`` is computed by relative value iteration if omitted."""
    P = jnp.asarray(P, jnp.float32)
    R = jnp.asarray(R, jnp.float32)
    chex.assert_rank(P, 4)
    K, S, A, _ = P.shape
    chex.assert_shape(P, (K, S, A, S))
    chex.assert_shape(R, (K, S, A))
    change_times = jnp.asarray(change_times, jnp.int32).reshape(-1)
    if change_times.shape != (K - 1,):
        raise ValueError(f"need K-1 = {K - 1} change times for {K} kernels, got {change_times.shape[0]}")
    ct = np.asarray(change_times)
    if np.any(np.diff(ct) < 0) or np.any(ct < 0):
        raise ValueError(f"change times must be sorted and non-negative, got {ct.tolist()}")
    if not np.allclose(np.asarray(P).sum(-1), 1.0, atol=1e-5):
        raise ValueError("every row P[k, s, a, :] must be a probability distribution")
    init_dist = jax.nn.one_hot(0, S) if init_dist is None else jnp.asarray(init_dist, jnp.float32)
    gains = segment_gains(P, R) if optimal_gain is None else jnp.asarray(optimal_gain, jnp.float32)
    chex.assert_shape(gains, (K,))
    return PiecewiseMDPParams(
        P=P,
        R=R,
        init_dist=init_dist,
        change_times=change_times,
        optimal_gain=gains,
        switch_prob=jnp.float32(switch_prob),
        schedule_horizon=jnp.int32(schedule_horizon),
        discount=jnp.float32(discount),
        max_steps_in_episode=jnp.int32(max_steps_in_episode),
    )


class PiecewiseStationaryMDP(environment.Environment):
    """Finite MDP whose kernel/rewards switch among ``K`` stacked ones (module docstring).

    Args: num_states, num_actions, num_kernels: fixed sizes. schedule: "fixed", "uniform" or "geometric".
    obs_type: "index" or "onehot". reward_noise: "deterministic" or "bernoulli". default: default params.
    """

    def __init__(
        self,
        num_states: int,
        num_actions: int,
        num_kernels: int,
        schedule: str = "fixed",
        obs_type: str = "index",
        reward_noise: str = "deterministic",
        default: Optional[PiecewiseMDPParams] = None,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")
        if reward_noise not in REWARD_NOISES:
            raise ValueError(f"reward_noise must be one of {REWARD_NOISES}, got {reward_noise!r}")
        self.num_states = int(num_states)
        self._num_actions = int(num_actions)
        self.num_kernels = int(num_kernels)
        self.schedule = schedule
        self.obs_type = obs_type
        self.reward_noise = reward_noise
        self._default = default

    @property
    def default_params(self) -> PiecewiseMDPParams:
        if self._default is None:
            raise ValueError("this PiecewiseStationaryMDP has no default params; pass params explicitly")
        return self._default

    def step_env(self, key, state: PiecewiseMDPState, action, params: PiecewiseMDPParams):
        u = jax.random.uniform(key, (3,))  # next state, reward noise, switch: one random draw per step
        a = jnp.asarray(action, jnp.int32)
        s = state.s
        kernel = state.segment % self.num_kernels
        s_next = sample_categorical(u[0], params.P[kernel, s, a])
        mean = params.R[kernel, s, a]
        reward = bernoulli_reward(u[1], mean) if self.reward_noise == "bernoulli" else mean
        time = state.time + 1
        if self.schedule == "geometric":
            next_segment = state.segment + (u[2] < params.switch_prob).astype(jnp.int32)
        else:
            next_segment = _segment_at(time, state.change_times)
        new_state = state.replace(s=s_next, time=time, segment=next_segment)
        info = {
            "state": s,
            "segment": state.segment,
            "kernel": kernel,
            "changed": next_segment != state.segment,
            "expected_reward": mean,
            "optimal_gain": params.optimal_gain[kernel],
            "discount": jnp.float32(1.0),
        }
        return self.get_obs(new_state, params), new_state, reward, jnp.bool_(False), info

    def reset_env(self, key, params: PiecewiseMDPParams):
        k_s, k_ct = jax.random.split(key)
        s0 = sample_categorical(jax.random.uniform(k_s), params.init_dist)
        if self.schedule == "uniform":
            ct = jnp.sort(
                jax.random.randint(k_ct, (self.num_kernels - 1,), 1, jnp.maximum(params.schedule_horizon, 2))
            ).astype(jnp.int32)
        else:
            ct = params.change_times
        state = PiecewiseMDPState(s=s0, time=jnp.int32(0), segment=_segment_at(0, ct), change_times=ct)
        return self.get_obs(state, params), state

    def get_obs(self, state: PiecewiseMDPState, params=None, key=None):
        if self.obs_type == "onehot":
            return jax.nn.one_hot(state.s, self.num_states, dtype=jnp.float32)
        return state.s

    def is_terminated(self, state, params):
        return jnp.bool_(False)  # continuing problem; only the (optional) step limit ends an episode

    @property
    def name(self) -> str:
        return "PiecewiseStationaryMDP"

    @property
    def num_actions(self) -> int:
        return self._num_actions

    def action_space(self, params=None):
        return spaces.Discrete(self._num_actions)

    def observation_space(self, params=None):
        if self.obs_type == "onehot":
            return spaces.Box(0.0, 1.0, (self.num_states,), jnp.float32)
        return spaces.Discrete(self.num_states)


# --------------------------------------------------------------------------------------------------------------
# Instances
# --------------------------------------------------------------------------------------------------------------


def evenly_spaced_change_times(total_steps: int, num_changes: int) -> list[int]:
    """``c_l = l * T / (K_T + 1)``, ``l = 1..K_T``, rounded down."""
    return [l * int(total_steps) // (num_changes + 1) for l in range(1, num_changes + 1)]


def switching_riverswim_arrays(
    num_states: int = 3,
    num_segments: int = 3,
    change_type: str = "swap",
    seed: int = 0,
    redraw_fraction: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Stacked ``(P, R)`` of shape ``(K,S,2,S)``, ``(K,S,2)`` for Switching RiverSwim (docs/environments.md).

    Segment 0 is RiverSwim (:func:`envs.finite_mdp.riverswim_arrays`). Later segments by ``change_type``:
    * "swap": odd segments swap the two action labels (the old optimal "always swim" policy then earns 0.1).
    * "reward" [R: our reading of "reward relocation"]: odd segments swap the two rewarded pairs, i.e.
      reward 1 at ``(0, left)`` and 0.1 at ``(S-1, swim)``; the optimum becomes "go left and stay".
    * "redraw": each segment redraws ``ceil(redraw_fraction * S * A)`` random ``(s, a)`` kernels of the previous
      segment from Dirichlet(1) (numpy generator seeded by ``seed``).
    """
    if change_type not in CHANGE_TYPES:
        raise ValueError(f"change_type must be one of {CHANGE_TYPES}, got {change_type!r}")
    P0, R0 = riverswim_arrays(num_states)
    S, A = R0.shape
    Ps, Rs = [P0], [R0]
    rng = np.random.default_rng(seed)
    for l in range(1, num_segments):
        if change_type == "swap":
            P, R = (P0[:, ::-1], R0[:, ::-1]) if l % 2 else (P0, R0)
        elif change_type == "reward":
            R = R0.copy()
            if l % 2:
                R[:] = 0.0
                R[0, 1] = 1.0
                R[S - 1, 0] = 0.1
            P = P0
        else:
            P, R = Ps[-1].copy(), R0
            n = int(np.ceil(redraw_fraction * S * A))
            for idx in rng.choice(S * A, size=n, replace=False):
                P[idx // A, idx % A] = rng.dirichlet(np.ones(S))
        Ps.append(np.array(P))
        Rs.append(np.array(R))
    return np.stack(Ps), np.stack(Rs)


def piecewise_garnet_params(
    key: jax.Array,
    num_states: int = 10,
    num_actions: int = 3,
    branching: int = 3,
    num_segments: int = 3,
    total_steps: int = 60_000,
    change_times: Optional[Sequence[int]] = None,
    switch_prob: float = 0.0,
    max_steps_in_episode: int = CONTINUING,
) -> PiecewiseMDPParams:
    """``num_segments`` independent Garnet MDPs (one per segment, keys split from ``key``); change times evenly
    spaced over ``total_steps`` unless given. Not jittable (computes the per-segment gains on the host side)."""
    keys = jax.random.split(key, num_segments)
    gs = [garnet(k, num_states, num_actions, branching) for k in keys]
    P = jnp.stack([g.P for g in gs])
    R = jnp.stack([g.R for g in gs])
    ct = evenly_spaced_change_times(total_steps, num_segments - 1) if change_times is None else change_times
    return make_piecewise_params(
        P, R, ct, init_dist=jnp.full((num_states,), 1.0 / num_states), switch_prob=switch_prob,
        schedule_horizon=total_steps, max_steps_in_episode=max_steps_in_episode,
    )


# --------------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------------


def make_riverswim_switching(
    num_states: int = 3,
    total_steps: int = 60_000,
    num_changes: int = 2,
    change_times: Optional[Sequence[int]] = None,
    change_type: str = "swap",
    schedule: str = "fixed",
    switch_prob: float = 0.0,
    seed: int = 0,
    redraw_fraction: float = 0.5,
    obs_type: str = "index",
    reward_noise: str = "deterministic",
    max_steps_in_episode: int = CONTINUING,
):
    """Switching RiverSwim; defaults = Figure C1's main panel (docs/algorithms/ucrl2.md): S=3, T=60k, action swaps
    at 20k and 40k.

    ``num_changes`` (or ``change_times``) fixes the number of stacked kernels, ``K = num_changes + 1``. With the
    "geometric" schedule the kernels cycle, so for alternating swaps use ``num_changes=1`` (K = 2: RiverSwim,
    swapped, RiverSwim, ...); with "uniform" the ``K - 1`` change times are redrawn at every reset.
    """
    ct = evenly_spaced_change_times(total_steps, num_changes) if change_times is None else list(change_times)
    P, R = switching_riverswim_arrays(num_states, len(ct) + 1, change_type, seed, redraw_fraction)
    params = make_piecewise_params(
        P, R, ct, switch_prob=switch_prob, schedule_horizon=total_steps, max_steps_in_episode=max_steps_in_episode
    )
    env = PiecewiseStationaryMDP(num_states, 2, len(ct) + 1, schedule, obs_type, reward_noise, default=params)
    return env, params


def make_piecewise_garnet(
    num_states: int = 10,
    num_actions: int = 3,
    branching: int = 3,
    num_segments: int = 3,
    total_steps: int = 60_000,
    change_times: Optional[Sequence[int]] = None,
    schedule: str = "fixed",
    switch_prob: float = 0.0,
    seed: int = 0,
    obs_type: str = "index",
    reward_noise: str = "deterministic",
    max_steps_in_episode: int = CONTINUING,
):
    params = piecewise_garnet_params(
        jax.random.PRNGKey(seed), num_states, num_actions, branching, num_segments, total_steps, change_times,
        switch_prob, max_steps_in_episode,
    )
    env = PiecewiseStationaryMDP(
        num_states, num_actions, num_segments, schedule, obs_type, reward_noise, default=params
    )
    return env, params


register_env(EnvSpec(
    name="riverswim_switching",
    description="Switching RiverSwim (S=3): action labels swap at 20k and 40k of 60k steps; continuing.",
    make=make_riverswim_switching,
    action_kind="discrete",
    tags=("tabular", "average_reward", "piecewise_stationary"),
))
register_env(EnvSpec(
    name="piecewise_garnet",
    description="Three random Garnet MDPs (S=10, A=3) in turn, changes every 20k of 60k steps; continuing.",
    make=make_piecewise_garnet,
    action_kind="discrete",
    tags=("tabular", "average_reward", "piecewise_stationary"),
))


__all__ = [
    "PiecewiseMDPParams",
    "PiecewiseMDPState",
    "PiecewiseStationaryMDP",
    "evenly_spaced_change_times",
    "make_piecewise_garnet",
    "make_piecewise_params",
    "make_riverswim_switching",
    "piecewise_garnet_params",
    "segment_gains",
    "switching_riverswim_arrays",
]
