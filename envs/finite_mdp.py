"""Finite (tabular) MDPs as gymnax environments: a generic ``FiniteMDP`` and RiverSwim, Garnet and grid worlds.

The MDP is *data*: ``FiniteMDPParams`` holds the kernel ``P[s, a, s']``, mean rewards ``R[s, a]`` and the initial
distribution as arrays, so a batch of different MDPs (e.g. Garnets from different keys) vmaps; only the sizes
``(S, A)`` and the observation/reward-noise options are fixed when the env object is built.

Episode ends, each with its own flag (gymnax's ``step`` returns both and auto-resets on either):

* ``horizon > 0`` (finite-horizon problems, e.g. the grid world): the episode *terminates* after ``horizon`` steps.
  The finite-horizon objective defines ``V_{H} = 0``, so this is a true end, not a time limit.
* ``terminal_states[s]``: entering such a state terminates the episode (none by default).
* ``max_steps_in_episode``: a time limit, reported as ``truncated`` (bootstrap through it). Discounted problems
  use ``discount < 1`` with a step limit; average-reward (continuing) problems use ``max_steps_in_episode =
  CONTINUING`` (int32 max), i.e. never reset in practice.

``info`` carries ``state`` (index of the state the step started from), ``expected_reward`` = ``R[s, a]`` (regret
is computed with expected rewards, docs/algorithms/ucrl2.md) and ``discount``.

RiverSwim (the UCRL parameters), Garnet MDPs and the grid world (docs/environments.md) are built by the
functions below; :func:`optimal_gain`, :func:`optimal_discounted_values` and :func:`optimal_finite_horizon_values`
give exact optimal values for regret computations (via ``hybrid_rl.tabular``).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from envs.registry import EnvSpec, register_env
from hybrid_rl import tabular

# Step limit that means "continuing": gymnax truncates at time >= max_steps_in_episode and time is int32.
CONTINUING = int(np.iinfo(np.int32).max)

OBS_TYPES = ("index", "onehot")
REWARD_NOISES = ("deterministic", "bernoulli")


def sample_categorical(u: jax.Array, p: jax.Array) -> jax.Array:
    """Inverse-CDF draw from ``p`` (last axis) with a uniform ``u`` in [0, 1): the number of CDF values
    ``<= u * total`` (scaling by the total keeps float round-off from selecting a zero-probability tail state)."""
    cdf = jnp.cumsum(p, axis=-1)
    return jnp.sum(cdf <= u * cdf[..., -1:], axis=-1).astype(jnp.int32)


def bernoulli_reward(u: jax.Array, mean: jax.Array) -> jax.Array:
    """Bernoulli(``mean``) reward in {0., 1.} from a uniform ``u``."""
    return (u < mean).astype(jnp.float32)


@struct.dataclass
class FiniteMDPParams:
    """A finite MDP as arrays (vmappable). Shapes: ``P (S,A,S)``, ``R (S,A)``, ``init_dist (S,)``,
    ``terminal_states (S,)`` bool."""

    P: jax.Array
    R: jax.Array
    init_dist: jax.Array
    terminal_states: jax.Array
    horizon: Any = 0  # > 0: the episode terminates after this many steps (finite-horizon problem)
    discount: Any = 1.0  # for planners and algorithms; the env itself does not discount
    max_steps_in_episode: Any = CONTINUING  # time limit -> truncated


@struct.dataclass
class FiniteMDPState:
    s: jax.Array  # () int32 state index
    time: jax.Array  # () int32 steps since reset


def make_params(
    P,
    R,
    init_dist=None,
    terminal_states=None,
    horizon: int = 0,
    discount: float = 1.0,
    max_steps_in_episode: int = CONTINUING,
    check: bool = True,
) -> FiniteMDPParams:
    """Params from arrays; ``init_dist`` defaults to state 0. With ``check`` (host arrays only) the rows of ``P``
    and ``init_dist`` must sum to 1."""
    P = jnp.asarray(P, jnp.float32)
    R = jnp.asarray(R, jnp.float32)
    chex.assert_rank(P, 3)
    S, A, _ = P.shape
    chex.assert_shape(P, (S, A, S))
    chex.assert_shape(R, (S, A))
    init_dist = jax.nn.one_hot(0, S) if init_dist is None else jnp.asarray(init_dist, jnp.float32)
    chex.assert_shape(init_dist, (S,))
    terminal_states = (
        jnp.zeros((S,), jnp.bool_) if terminal_states is None else jnp.asarray(terminal_states, jnp.bool_)
    )
    chex.assert_shape(terminal_states, (S,))
    if check and not isinstance(P, jax.core.Tracer):
        if not np.allclose(np.asarray(P).sum(-1), 1.0, atol=1e-5) or np.any(np.asarray(P) < 0):
            raise ValueError("every row P[s, a, :] must be a probability distribution")
        if not np.isclose(float(np.asarray(init_dist).sum()), 1.0, atol=1e-5):
            raise ValueError("init_dist must sum to 1")
    return FiniteMDPParams(
        P=P,
        R=R,
        init_dist=init_dist,
        terminal_states=terminal_states,
        horizon=jnp.int32(horizon),
        discount=jnp.float32(discount),
        max_steps_in_episode=jnp.int32(max_steps_in_episode),
    )


class FiniteMDP(environment.Environment):
    """Generic finite MDP in gymnax's interface.

    Args:
      num_states, num_actions: the fixed sizes ``S, A``.
      obs_type: "index" (int32 scalar state index) or "onehot" (float32 ``(S,)``).
      reward_noise: "deterministic" (reward = ``R[s,a]``) or "bernoulli" (reward ~ Bernoulli(``R[s,a]``); needs
        ``R`` in [0, 1]).
      default: params returned by ``default_params`` (a RiverSwim of the right size if omitted and ``A == 2``).
    """

    def __init__(
        self,
        num_states: int,
        num_actions: int,
        obs_type: str = "index",
        reward_noise: str = "deterministic",
        default: Optional[FiniteMDPParams] = None,
    ):
        super().__init__()
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")
        if reward_noise not in REWARD_NOISES:
            raise ValueError(f"reward_noise must be one of {REWARD_NOISES}, got {reward_noise!r}")
        self.num_states = int(num_states)
        self._num_actions = int(num_actions)
        self.obs_type = obs_type
        self.reward_noise = reward_noise
        self._default = default

    @property
    def default_params(self) -> FiniteMDPParams:
        if self._default is not None:
            return self._default
        if self._num_actions == 2:
            return riverswim_params(self.num_states)
        raise ValueError("this FiniteMDP has no default params; pass params explicitly")

    def step_env(self, key, state: FiniteMDPState, action, params: FiniteMDPParams):
        # One uniform pair per step (next state by inverse CDF, Bernoulli reward): every threefry call costs
        # compile time and throughput, and these envs run for 1e5+ steps under vmap.
        u = jax.random.uniform(key, (2,))
        a = jnp.asarray(action, jnp.int32)
        s = state.s
        s_next = sample_categorical(u[0], params.P[s, a])
        mean = params.R[s, a]
        reward = bernoulli_reward(u[1], mean) if self.reward_noise == "bernoulli" else mean
        new_state = FiniteMDPState(s=s_next, time=state.time + 1)
        terminated = self.is_terminated(new_state, params)
        info = {
            "state": s,
            "expected_reward": mean,
            "discount": jnp.where(terminated, 0.0, 1.0).astype(jnp.float32),
        }
        return self.get_obs(new_state, params), new_state, reward, terminated, info

    def reset_env(self, key, params: FiniteMDPParams):
        s0 = sample_categorical(jax.random.uniform(key), params.init_dist)
        state = FiniteMDPState(s=s0, time=jnp.int32(0))
        return self.get_obs(state, params), state

    def get_obs(self, state: FiniteMDPState, params=None, key=None):
        if self.obs_type == "onehot":
            return jax.nn.one_hot(state.s, self.num_states, dtype=jnp.float32)
        return state.s

    def is_terminated(self, state: FiniteMDPState, params: FiniteMDPParams):
        at_horizon = (params.horizon > 0) & (state.time >= params.horizon)
        return at_horizon | params.terminal_states[state.s]

    @property
    def name(self) -> str:
        return "FiniteMDP"

    @property
    def num_actions(self) -> int:
        return self._num_actions

    def action_space(self, params=None):
        return spaces.Discrete(self._num_actions)

    def observation_space(self, params=None):
        if self.obs_type == "onehot":
            return spaces.Box(0.0, 1.0, (self.num_states,), jnp.float32)
        return spaces.Discrete(self.num_states)

    def state_space(self, params=None):
        return spaces.Dict({"s": spaces.Discrete(self.num_states), "time": spaces.Discrete(CONTINUING)})


# --------------------------------------------------------------------------------------------------------------
# Instances
# --------------------------------------------------------------------------------------------------------------


def riverswim_arrays(num_states: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """RiverSwim kernel and rewards (the UCRL literature's parameters, numpy float64).

    Action 0 "swim right": from ``s < S-1`` to ``s+1`` w.p. 0.6, to ``s-1`` w.p. 0.05 (if ``s > 0``), else stay
    (0.4 at ``s = 0``, 0.35 inside); at ``S-1``: stay 0.95, to ``S-2`` 0.05. Action 1 "left": to ``max(s-1, 0)``.
    Rewards: 1 for ``(S-1, 0)``, 0.1 for ``(0, 1)``, 0 elsewhere. Optimal gain 0.9167 (S=6), 0.9172 (S=3).
    """
    S = int(num_states)
    if S < 2:
        raise ValueError("RiverSwim needs at least 2 states")
    P = np.zeros((S, 2, S))
    R = np.zeros((S, 2))
    for s in range(S):
        P[s, 1, max(s - 1, 0)] = 1.0
        if s == S - 1:
            P[s, 0, s] += 0.95
            P[s, 0, s - 1] += 0.05
        elif s == 0:
            P[s, 0, 1] = 0.6
            P[s, 0, 0] = 0.4
        else:
            P[s, 0, s + 1] = 0.6
            P[s, 0, s - 1] = 0.05
            P[s, 0, s] = 0.35
    R[S - 1, 0] = 1.0
    R[0, 1] = 0.1
    return P, R


def riverswim_params(
    num_states: int = 6, max_steps_in_episode: int = CONTINUING, discount: float = 1.0
) -> FiniteMDPParams:
    """RiverSwim params; starts in state 0; continuing by default (average reward)."""
    P, R = riverswim_arrays(num_states)
    return make_params(P, R, horizon=0, discount=discount, max_steps_in_episode=max_steps_in_episode)


@partial(jax.jit, static_argnums=(1, 2, 3))
def _garnet_arrays(key, S, A, b, sparse):
    # One random draw for everything: each threefry call is a large graph, and compile time dominates here.
    u = jax.random.uniform(key, (S, A, 2 * S + 2), minval=1e-12)
    select, expo, rew, mask = u[..., :S], u[..., S:2 * S], u[..., 2 * S], u[..., 2 * S + 1]
    # b distinct successors per (s, a): the states holding the b largest of S iid uniforms (a uniform b-subset).
    kth = jnp.sort(select, axis=-1)[..., S - b][..., None]
    # Probabilities: normalised iid exponentials on the subset = Dirichlet(1) = spacings of b-1 uniform cuts.
    e = -jnp.log(expo) * (select >= kth)
    P = e / e.sum(-1, keepdims=True)
    # `sparse` is a traced flag (not static) so both reward types share one compiled function.
    R = jnp.where(sparse & (mask >= 0.1), 0.0, rew)
    return P, R


def garnet(
    key: jax.Array,
    num_states: int,
    num_actions: int,
    branching: int,
    reward_type: str = "uniform",
    horizon: int = 0,
    discount: float = 1.0,
    max_steps_in_episode: int = CONTINUING,
) -> FiniteMDPParams:
    """A random Garnet MDP (Archibald et al. 1995): each ``(s, a)`` reaches ``branching`` distinct next states
    chosen uniformly, with probabilities distributed as ``branching - 1`` uniform cuts of [0, 1] (= Dirichlet(1),
    drawn as normalised exponentials).

    ``reward_type``: "uniform" (``R ~ U[0,1]``) or "sparse" (``R(s,a) = U[0,1]`` on a random 10% of pairs, else
    0). Initial state uniform. Jittable and vmappable over ``key`` (sizes are static).
    """
    S, A, b = int(num_states), int(num_actions), int(branching)
    if not 1 <= b <= S:
        raise ValueError(f"branching must be in [1, num_states], got {b}")
    if reward_type not in ("uniform", "sparse"):
        raise ValueError(f"reward_type must be 'uniform' or 'sparse', got {reward_type!r}")
    P, R = _garnet_arrays(key, S, A, b, jnp.bool_(reward_type == "sparse"))
    return FiniteMDPParams(
        P=P,
        R=R,
        init_dist=jnp.full((S,), 1.0 / S),
        terminal_states=jnp.zeros((S,), jnp.bool_),
        horizon=jnp.int32(horizon),
        discount=jnp.float32(discount),
        max_steps_in_episode=jnp.int32(max_steps_in_episode),
    )


# Grid-world action order and moves (row, col): up, down, left, right.
GRID_MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])


def gridworld_arrays(size: int = 5, success_prob: float = 0.9, goal: Optional[tuple[int, int]] = None):
    """Grid world of Figure A1 (numpy): ``size x size`` cells, state ``row * size + col``, 4 actions (up, down,
    left, right). The intended move happens w.p. ``success_prob``; otherwise one of the *other three*
    directions, uniformly [R: a slip never repeats the intended move, so it has
    probability exactly ``success_prob``]. Moves into a wall leave the agent in place ("walls
    reflect"). Reward 1 for every step taken from the goal cell (default: the corner opposite the start).
    Returns ``(P, R, start_state, goal_state)``.
    """
    n = int(size)
    goal = (n - 1, n - 1) if goal is None else goal
    S = n * n
    P = np.zeros((S, 4, S))
    for r in range(n):
        for c in range(n):
            s = r * n + c
            dest = []
            for dr, dc in GRID_MOVES:
                rr, cc = r + dr, c + dc
                dest.append(rr * n + cc if (0 <= rr < n and 0 <= cc < n) else s)
            for a in range(4):
                for d in range(4):
                    P[s, a, dest[d]] += success_prob if d == a else (1.0 - success_prob) / 3.0
    goal_state = goal[0] * n + goal[1]
    R = np.zeros((S, 4))
    R[goal_state, :] = 1.0
    return P, R, 0, goal_state


def gridworld_params(
    size: int = 5,
    horizon: int = 15,
    success_prob: float = 0.9,
    goal: Optional[tuple[int, int]] = None,
    max_steps_in_episode: int = CONTINUING,
) -> FiniteMDPParams:
    """Grid-world params: start in the corner (0, 0), finite horizon ``horizon``
    (Figure A1: 5x5, H=15; docs/algorithms/demo_regularized.md).
    """
    P, R, start, _ = gridworld_arrays(size, success_prob, goal)
    S = size * size
    return make_params(
        P, R, init_dist=np.eye(S)[start], horizon=horizon, discount=1.0, max_steps_in_episode=max_steps_in_episode
    )


# --------------------------------------------------------------------------------------------------------------
# Exact optimal values (for regret)
# --------------------------------------------------------------------------------------------------------------


_rvi = jax.jit(tabular.relative_value_iteration, static_argnames=("max_iters",))
_dvi = jax.jit(tabular.discounted_value_iteration, static_argnames=("max_iters", "num_iters"))
_fhvi = jax.jit(tabular.finite_horizon_value_iteration, static_argnames=("H",))


def optimal_gain(params: FiniteMDPParams, **rvi_kwargs) -> tabular.AverageRewardSolution:
    """Optimal average reward (gain ``rho*``), bias and policy by relative value iteration (unichain /
    communicating MDPs). Regret over ``T`` steps: ``sum_t (rho* - R[s_t, a_t])``. Keyword arguments go to
    :func:`hybrid_rl.tabular.relative_value_iteration`."""
    return _rvi(params.P, params.R, **rvi_kwargs)


def optimal_discounted_values(params: FiniteMDPParams, gamma=None, **vi_kwargs) -> tuple[jax.Array, jax.Array]:
    """``(Q*, V*)`` for discount ``gamma`` (default ``params.discount``, which must be < 1)."""
    gamma = params.discount if gamma is None else gamma
    return _dvi(params.P, params.R, gamma, **vi_kwargs)


def optimal_finite_horizon_values(params: FiniteMDPParams, horizon: int) -> tuple[jax.Array, jax.Array]:
    """``(Q*[H,S,A], V*[H+1,S])`` for a (static) horizon; ``init_dist @ V*[0]`` is the optimal episode return."""
    return _fhvi(params.P, params.R, H=int(horizon))


def initial_value(params: FiniteMDPParams, V0: jax.Array) -> jax.Array:
    """``sum_s init_dist(s) V0(s)``: the value of the start distribution."""
    return params.init_dist @ V0


# --------------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------------


def make_riverswim(
    num_states: int = 6,
    obs_type: str = "index",
    reward_noise: str = "deterministic",
    max_steps_in_episode: int = CONTINUING,
    discount: float = 1.0,
):
    params = riverswim_params(num_states, max_steps_in_episode, discount)
    return FiniteMDP(num_states, 2, obs_type, reward_noise, default=params), params


def make_garnet(
    num_states: int = 10,
    num_actions: int = 3,
    branching: int = 3,
    seed: int = 0,
    reward_type: str = "uniform",
    obs_type: str = "index",
    reward_noise: str = "deterministic",
    horizon: int = 0,
    discount: float = 1.0,
    max_steps_in_episode: int = CONTINUING,
):
    params = garnet(
        jax.random.PRNGKey(seed), num_states, num_actions, branching, reward_type, horizon, discount,
        max_steps_in_episode,
    )
    return FiniteMDP(num_states, num_actions, obs_type, reward_noise, default=params), params


def make_gridworld(
    size: int = 5,
    horizon: int = 15,
    success_prob: float = 0.9,
    obs_type: str = "index",
    reward_noise: str = "deterministic",
    max_steps_in_episode: int = CONTINUING,
):
    params = gridworld_params(size, horizon, success_prob, None, max_steps_in_episode)
    return FiniteMDP(size * size, 4, obs_type, reward_noise, default=params), params


register_env(EnvSpec(
    name="riverswim",
    description="RiverSwim (UCRL parameters, S=6): continuing average-reward chain; optimal gain 0.9167.",
    make=make_riverswim,
    action_kind="discrete",
    tags=("tabular", "average_reward"),
))
register_env(EnvSpec(
    name="garnet",
    description="Random Garnet MDP (S=10, A=3, branching 3, seed 0): continuing, uniform rewards.",
    make=make_garnet,
    action_kind="discrete",
    tags=("tabular", "average_reward"),
))
register_env(EnvSpec(
    name="gridworld",
    description="5x5 slippery grid world, start corner, reward 1 per step at the far corner, horizon 15.",
    make=make_gridworld,
    action_kind="discrete",
    tags=("tabular", "finite_horizon"),
))


__all__ = [
    "CONTINUING",
    "FiniteMDP",
    "FiniteMDPParams",
    "FiniteMDPState",
    "garnet",
    "gridworld_arrays",
    "gridworld_params",
    "initial_value",
    "make_garnet",
    "make_gridworld",
    "make_params",
    "make_riverswim",
    "optimal_discounted_values",
    "optimal_finite_horizon_values",
    "optimal_gain",
    "riverswim_arrays",
    "riverswim_params",
    "sample_categorical",
]
