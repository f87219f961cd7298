"""Random linear MDPs (docs/environments.md, "Finite MDPs"), finite horizon, in gymnax's interface.

A finite state space of S states, A actions, horizon H and a known feature map phi(s, a) in the simplex
Delta^d (so ||phi||_1 = 1)::

    phi(s, a)      ~ Dirichlet(phi_alpha 1_d)              one draw per (s, a), shared by all steps
    mu_h[i, .]     ~ Dirichlet(mu_alpha 1_S)               d distributions over S per step h
    theta_h        ~ U[0, 1]^d
    p_h(s'|s, a)   = <phi(s, a), mu_h[:, s']> = sum_i phi_i(s, a) mu_h[i, s']
    r_h(s, a)      = <phi(s, a), theta_h>  in [0, 1]       (deterministic)

p_h(.|s, a) is a convex combination of distributions, so it is a distribution: an exact linear MDP of
dimension d (rank(P_h) <= d). ``stationary=True`` draws one mu and one theta for every step. The episode
starts in state 0 (the theory papers' fixed s_1) and lasts exactly H steps; the H-th step returns
``terminated=True`` (a finite-horizon problem: nothing follows step H), ``truncated=False``.

Observation: the state index (int32 scalar, ``obs_mode="index"``) or its one-hot (``"onehot"``). Linear
algorithms read the features with ``env.features(params)`` (phi[S, A, d]); exact planners read
``env.to_tabular(params)`` = (P[H, S, A, S], R[H, S, A]). Everything random is in the params and drawn
from a key (``sample_linear_mdp_params``; ``env.randomize(params, key)`` redraws an instance with the same
shapes, so vmapping it over seed keys gives one MDP per seed).

``optimal_values`` / ``optimal_value`` solve the exact model with ``hybrid_rl.tabular``'s backward induction.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from envs.gymnax_envs import apply_param_overrides
from envs.registry import EnvSpec, register_env
from hybrid_rl.tabular import finite_horizon_value_iteration


def _sample_index(key: chex.PRNGKey, p: jax.Array) -> jax.Array:
    """One draw from the distribution ``p`` by inverting its CDF: one uniform instead of S Gumbels (the
    step's cost on a CPU); the uniform is scaled by sum(p) so float rounding of ``p`` cannot skew it."""
    cdf = jnp.cumsum(p)
    u = jax.random.uniform(key) * cdf[-1]
    return jnp.minimum(jnp.sum(cdf <= u), p.shape[0] - 1).astype(jnp.int32)


@struct.dataclass
class LinearMDPState:
    state: jax.Array  # int32 state index
    time: jax.Array  # int32 step h


@struct.dataclass
class LinearMDPParams:
    phi: jax.Array  # [S, A, d] features, rows in the simplex
    mu: jax.Array  # [H, d, S] per-step factor distributions over next states
    theta: jax.Array  # [H, d] per-step reward weights in [0, 1]
    init_dist: jax.Array  # [S] initial-state distribution (one-hot on state 0 by default)
    max_steps_in_episode: int = 10


def _dirichlet(key: chex.PRNGKey, alpha: float, size: int, batch: tuple[int, ...]) -> jax.Array:
    """Draws of Dirichlet(alpha 1_size) with batch shape ``batch``.

    For alpha = 1 (the default) we normalise i.i.d. Exp(1) draws, which is exactly Dirichlet(1) and avoids
    compiling the gamma rejection sampler (the most expensive program of this module on a CPU).
    """
    if alpha == 1.0:
        e = jax.random.exponential(key, batch + (size,))
        return e / e.sum(-1, keepdims=True)
    return jax.random.dirichlet(key, jnp.full((size,), alpha), batch)


@functools.partial(
    jax.jit,
    static_argnames=("num_states", "num_actions", "dim", "horizon", "phi_alpha", "mu_alpha", "stationary"),
)
def sample_linear_mdp_params(
    key: chex.PRNGKey,
    num_states: int,
    num_actions: int,
    dim: int,
    horizon: int,
    phi_alpha: float = 1.0,
    mu_alpha: float = 1.0,
    stationary: bool = False,
) -> LinearMDPParams:
    """Draw a random linear MDP (equations in the module doc). Jitted; everything but ``key`` is static."""
    k_phi, k_mu, k_theta = jax.random.split(key, 3)
    phi = _dirichlet(k_phi, phi_alpha, dim, (num_states, num_actions))
    n_steps = 1 if stationary else horizon
    mu = _dirichlet(k_mu, mu_alpha, num_states, (n_steps, dim))
    theta = jax.random.uniform(k_theta, (n_steps, dim))
    if stationary:
        mu = jnp.broadcast_to(mu, (horizon, dim, num_states))
        theta = jnp.broadcast_to(theta, (horizon, dim))
    return LinearMDPParams(
        phi=phi.astype(jnp.float32),
        mu=mu.astype(jnp.float32),
        theta=theta.astype(jnp.float32),
        init_dist=jax.nn.one_hot(0, num_states),
        max_steps_in_episode=horizon,
    )


class LinearMDP(environment.Environment[LinearMDPState, LinearMDPParams]):
    """A random finite-horizon linear MDP (equations in the module doc). Shapes are constructor arguments."""

    def __init__(
        self,
        num_states: int = 20,
        num_actions: int = 4,
        dim: int = 8,
        horizon: int = 10,
        stationary: bool = False,
        obs_mode: str = "index",
        phi_alpha: float = 1.0,
        mu_alpha: float = 1.0,
        param_seed: int = 0,
    ):
        super().__init__()
        if obs_mode not in ("index", "onehot"):
            raise ValueError(f"obs_mode must be 'index' or 'onehot', got {obs_mode!r}")
        self.num_states = int(num_states)
        self._num_actions = int(num_actions)
        self.dim = int(dim)
        self.horizon = int(horizon)
        self.stationary = bool(stationary)
        self.obs_mode = obs_mode
        self.phi_alpha = float(phi_alpha)
        self.mu_alpha = float(mu_alpha)
        self.param_seed = int(param_seed)
        self.obs_shape = () if obs_mode == "index" else (self.num_states,)

    @property
    def default_params(self) -> LinearMDPParams:
        return self.randomize(None, jax.random.PRNGKey(self.param_seed))

    def randomize(self, params: LinearMDPParams | None, key: chex.PRNGKey) -> LinearMDPParams:
        """A fresh instance from ``key`` (same shapes and Dirichlet settings); keeps ``params``' other fields."""
        fresh = sample_linear_mdp_params(
            key, self.num_states, self._num_actions, self.dim, self.horizon,
            self.phi_alpha, self.mu_alpha, self.stationary,
        )
        if params is None:
            return fresh
        return params.replace(phi=fresh.phi, mu=fresh.mu, theta=fresh.theta)

    def _obs(self, s):
        return s.astype(jnp.int32) if self.obs_mode == "index" else jax.nn.one_hot(s, self.num_states)

    def step_env(self, key, state: LinearMDPState, action, params: LinearMDPParams):
        a = jnp.asarray(action, jnp.int32).reshape(())
        h = jnp.minimum(state.time, self.horizon - 1)
        phi = params.phi[state.state, a]
        reward = phi @ params.theta[h]
        p_next = phi @ params.mu[h]  # [S], the linear-MDP transition row
        s_next = _sample_index(key, p_next)
        new_state = LinearMDPState(state=s_next, time=(state.time + 1).astype(jnp.int32))
        terminated = self.is_terminated(new_state, params)
        # Same info keys as envs.finite_mdp: the state the step left and the mean reward (for regret).
        info = {"state": state.state, "expected_reward": reward, "discount": 1.0 - terminated.astype(jnp.float32)}
        return self._obs(s_next), new_state, reward.astype(jnp.float32), terminated, info

    def reset_env(self, key, params: LinearMDPParams):
        s = _sample_index(key, params.init_dist)
        return self._obs(s), LinearMDPState(state=s, time=jnp.int32(0))

    def get_obs(self, state: LinearMDPState, params=None, key=None):
        return self._obs(state.state)

    def is_terminated(self, state, params) -> jax.Array:
        return state.time >= self.horizon

    def is_truncated(self, state, params) -> jax.Array:
        return (state.time >= params.max_steps_in_episode) & (state.time < self.horizon)

    # --- exact model ---------------------------------------------------------------------------------
    def features(self, params: LinearMDPParams) -> jax.Array:
        """phi[S, A, d]."""
        return params.phi

    def to_tabular(self, params: LinearMDPParams) -> tuple[jax.Array, jax.Array]:
        """``(P[H, S, A, S], R[H, S, A])`` with P[h] = phi mu_h and R[h] = phi theta_h."""
        P = jnp.einsum("sai,hit->hsat", params.phi, params.mu)
        R = jnp.einsum("sai,hi->hsa", params.phi, params.theta)
        chex.assert_shape(
            [P, R],
            [(self.horizon, self.num_states, self._num_actions, self.num_states),
             (self.horizon, self.num_states, self._num_actions)],
        )
        return P, R

    def initial_distribution(self, params: LinearMDPParams) -> jax.Array:
        return params.init_dist

    def optimal_values(self, params: LinearMDPParams) -> tuple[jax.Array, jax.Array]:
        """``(Q*[H, S, A], V*[H+1, S])`` by backward induction on the exact model."""
        P, R = self.to_tabular(params)
        return finite_horizon_value_iteration(P, R, self.horizon)

    def optimal_value(self, params: LinearMDPParams) -> jax.Array:
        """E_{s_0 ~ init}[V*_0(s_0)]: the best expected return of an episode."""
        return params.init_dist @ self.optimal_values(params)[1][0]

    # --- spaces and names -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"LinearMDP-S{self.num_states}-A{self._num_actions}-d{self.dim}-H{self.horizon}"

    @property
    def num_actions(self) -> int:
        return self._num_actions

    def action_space(self, params=None):
        return spaces.Discrete(self._num_actions)

    def observation_space(self, params=None):
        if self.obs_mode == "index":
            return spaces.Discrete(self.num_states)
        return spaces.Box(0.0, 1.0, (self.num_states,), jnp.float32)

    def state_space(self, params=None):
        return spaces.Dict(
            {"state": spaces.Discrete(self.num_states), "time": spaces.Discrete(self.horizon + 1)}
        )


_CTOR_KEYS = ("num_states", "num_actions", "dim", "horizon", "stationary", "obs_mode", "phi_alpha",
              "mu_alpha", "param_seed")


def _make_linear_mdp(**overrides):
    ctor = {k: v for k, v in overrides.items() if k in _CTOR_KEYS}
    rest = {k: v for k, v in overrides.items() if k not in _CTOR_KEYS}
    env = LinearMDP(**ctor)
    return env, apply_param_overrides("linear_mdp", env.default_params, rest)


register_env(
    EnvSpec(
        name="linear_mdp",
        description=(
            "Random finite-horizon linear MDP, S=20, A=4, d=8, H=10; "
            "features(params), to_tabular(params)."
        ),
        make=_make_linear_mdp,
        action_kind="discrete",
        tags=("tabular", "linear", "finite_horizon"),
    )
)
