"""Combination locks: the rich-observation lock of HNPG / Hy-Q, and the tabular lock of the theory papers.

Two environments, both in gymnax's ``Environment`` interface, both finite-horizon (time-inhomogeneous):

``RichCombinationLock`` (docs/environments.md, "Combination locks"; registered as ``comblock``, ``comblock_h50``,
``comblock_logits``, ``comblock_logits_h50``)
    Latent states A=0, B=1 (good) and C=2 (absorbing bad), ``num_actions`` = 10 actions, horizon H.
    The lock is ``opt_a[h], opt_b[h]``, the correct action in A and in B at step h (uniform over the
    actions). With latent s_h, action a_h at step h in 0..H-1::

        correct_h = (s_h = A and a_h = opt_a[h]) or (s_h = B and a_h = opt_b[h])
        s_{h+1}   = the other good state w.p. p_switch, the same good state w.p. 1 - p_switch  if correct_h
                  = C                                                                         otherwise

    The same rule is applied at the last step, so the final latent is good iff the episode succeeded.
    Rewards (``reward_mode``; "fall" = the step where the agent leaves A/B for C):

        hyq   : r_h = 1[correct_h and h = H-1] + anti_r * 1[fall at h] * Bernoulli(p_anti)
        hnpg  : r_h = 0 for h < H-1;  r_{H-1} = 1 if correct_{H-1} else anti_r * Bernoulli(p_anti)
                (the last-step failure pays even when the agent is in C already)
        dense : r_h = dense_r * 1[correct_h] for h < H-1;  r_{H-1} = 1[correct_{H-1}]   (a debugging aid)

    Observation after the step counter reaches h (h = H after the last step), latent s::

        g = eps * mask + e_s + e_{3+h},   eps ~ N(0, noise^2 I_D),  mask = 1 on the first H+3 entries
        o = Had_D g,   D = 2^ceil(log2(H+4)),  Had_D the Sylvester Hadamard matrix (entries +-1, unnormalised)

    so ``Had_D^T o / D = g`` (Had_D is symmetric and Had_D Had_D = D I). Fresh noise at every step.
    Actions (``action_mode``): ``discrete`` takes an index in 0..9; ``logits`` takes a 10-vector ``a``
    and executes an index drawn from softmax(a / tau), tau = 0.1 (nothing is clipped).

``TabularCombinationLock`` (docs/environments.md, "Combination locks"; registered as ``comblock_tabular``)
    ``num_good`` on-path states 0..G-1 and one absorbing dead state G (S = G+1), ``num_actions`` = A
    actions, horizon H. The correct action of on-path state s at step h is ``opt[h, s]``; it moves to the
    on-path state ``perm[h, s]`` (a random permutation per step; the identity when G = 1). Any other action,
    and every action in the dead state, leads to the dead state::

        r_h(s, a) = final_r * 1[s on-path, a = opt[h, s], h = H-1] + distractor_r * 1[s on-path, a != opt[h, s]]

    The start state is uniform over the on-path states. A uniform policy succeeds w.p. A^-H.
    Observation: the state index (int32 scalar, ``obs_mode="index"``) or its one-hot (``"onehot"``).

**Episode ends (a decision).** Both locks are finite-horizon problems whose state includes the step index
(the rich observation shows h; the tabular agent counts it): nothing follows step H, so the H-th step
returns ``terminated=True`` and ``truncated=False``. Bootstrapping must stop there, which is what
``terminated`` tells every algorithm. ``truncated`` is True only when a user sets ``max_steps_in_episode``
below H (a time limit that cuts the lock short).

**Locks drawn per seed.** The lock (``opt_a``/``opt_b``, or ``opt``/``perm``) lives in the env params, not
in the env object, so it is data: ``make_env`` builds one env and a default lock drawn from ``lock_seed``
(default 0), and an algorithm that wants a different lock per seed redraws it from the seed's key::

    env, params, _ = make_env("comblock")
    params = jax.vmap(randomize, in_axes=(None, 0))(params, seed_keys)   # one lock per seed, same shapes
    # or per seed, inside the vmapped init:  params = randomize(params, seed_key)

``randomize(params, key)`` (module level; also ``env.randomize``) works for both lock classes and keeps
every other field. The evaluation env must use the same (redrawn) params.

**Offline data** (docs/environments.md, "Combination locks"): ``collect_comblock_episodes(key, env, params,
num_episodes, kind, epsilon)`` returns a ``Transition`` batch of ``num_episodes * H`` transitions, episode
major, so transition ``i`` is at level ``i % H`` (reshape to ``(num_episodes, H)`` to get levels as axis 1).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from envs.gymnax_envs import apply_param_overrides
from envs.registry import EnvSpec, register_env
from hybrid_rl.tabular import finite_horizon_value_iteration
from hybrid_rl.types import Transition

LATENT_A, LATENT_B, LATENT_C = 0, 1, 2
NUM_LATENT = 3
REWARD_MODES = ("hyq", "hnpg", "dense")
ACTION_MODES = ("discrete", "logits")
OFFLINE_KINDS = ("hnpg", "epsilon", "mixed", "random")
# A logit vector this large executes its argmax with probability 1 - 9 e^-100 (exactly 1 in float32):
# used for roll-ins that must follow pi* exactly in ``logits`` mode.
_EXACT_LOGIT_SCALE = 10.0


def sylvester_hadamard(dim: int) -> np.ndarray:
    """The Sylvester Hadamard matrix of size ``dim`` (a power of two): entries +-1, symmetric, H H = dim I."""
    if dim < 1 or dim & (dim - 1):
        raise ValueError(f"Hadamard dimension must be a power of two, got {dim}")
    had = np.ones((1, 1), np.float32)
    while had.shape[0] < dim:
        had = np.block([[had, had], [had, -had]])
    return had


def comblock_obs_dim(horizon: int) -> int:
    """D = 2^ceil(log2(H+4)): room for 3 latent slots and H+1 step slots."""
    return 2 ** math.ceil(math.log2(horizon + 4))


# ------------------------------------------------------------------------------------------------------
# Rich-observation combination lock
# ------------------------------------------------------------------------------------------------------


@struct.dataclass
class CombLockState:
    latent: jax.Array  # int32: 0 = A, 1 = B, 2 = C
    time: jax.Array  # int32: steps taken in this episode (the level h of the current observation)
    max_reach: jax.Array  # int32: correct actions taken from a good state (= H iff the episode succeeded)


@struct.dataclass
class CombLockParams:
    opt_a: jax.Array  # int32[H]: correct action in A at each step (the lock)
    opt_b: jax.Array  # int32[H]: correct action in B at each step
    p_switch: float = 0.5  # a correct action moves A<->B with this probability
    anti_r: float = 0.1  # the misleading reward for failing
    p_anti: float = 0.5  # ... paid with this probability
    dense_r: float = 0.1  # reward_mode="dense": pay per correct intermediate step
    noise: float = 0.1  # std of the Gaussian observation noise (before the Hadamard mixing)
    tau: float = 0.1  # action_mode="logits": softmax temperature of the executed action
    max_steps_in_episode: int = 10  # = H by default; smaller values truncate the lock
    # A shape, not data: static, so ``randomize`` knows the range to draw the lock from.
    num_actions: int = struct.field(pytree_node=False, default=10)


def sample_lock_params(key: chex.PRNGKey, horizon: int, num_actions: int = 10, **fields) -> CombLockParams:
    """A ``CombLockParams`` whose lock (opt_a[h], opt_b[h], uniform over the actions) is drawn from ``key``.

    ``fields`` set the other (non-lock) params; ``max_steps_in_episode`` defaults to ``horizon``.
    """
    ka, kb = jax.random.split(key)
    fields.setdefault("max_steps_in_episode", horizon)
    return CombLockParams(
        opt_a=jax.random.randint(ka, (horizon,), 0, num_actions, dtype=jnp.int32),
        opt_b=jax.random.randint(kb, (horizon,), 0, num_actions, dtype=jnp.int32),
        num_actions=num_actions,
        **fields,
    )


class RichCombinationLock(environment.Environment[CombLockState, CombLockParams]):
    """HNPG's / Hy-Q's combination lock with Hadamard-mixed noisy observations (equations: module doc).

    Shape-changing settings are constructor arguments (``horizon``, ``num_actions``); the code-path
    settings ``reward_mode`` and ``action_mode`` too. Everything else, the lock included, is in the params.
    """

    def __init__(
        self,
        horizon: int = 5,
        reward_mode: str = "hyq",
        action_mode: str = "discrete",
        num_actions: int = 10,
        lock_seed: int = 0,
    ):
        super().__init__()
        if not 1 <= horizon:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
        self.horizon = int(horizon)
        self.reward_mode = reward_mode
        self.action_mode = action_mode
        self._num_actions = int(num_actions)
        self.lock_seed = int(lock_seed)
        self.obs_dim = comblock_obs_dim(self.horizon)
        self.obs_shape = (self.obs_dim,)
        # A numpy constant: baked into the compiled program once, never a traced input.
        self._hadamard = sylvester_hadamard(self.obs_dim)
        noise_mask = np.zeros(self.obs_dim, np.float32)
        noise_mask[: self.horizon + NUM_LATENT] = 1.0  # the padding beyond H+3 stays exactly 0
        self._noise_mask = noise_mask

    # --- params ---------------------------------------------------------------------------------------
    @property
    def default_params(self) -> CombLockParams:
        return sample_lock_params(jax.random.PRNGKey(self.lock_seed), self.horizon, self._num_actions)

    def randomize(self, params: CombLockParams, key: chex.PRNGKey) -> CombLockParams:
        """Redraw the lock from ``key``, keeping every other field (vmap over keys for one lock per seed)."""
        return randomize(params, key)

    # --- dynamics -------------------------------------------------------------------------------------
    def _observe(self, key: chex.PRNGKey, latent: jax.Array, time: jax.Array, noise) -> jax.Array:
        g = noise * self._noise_mask * jax.random.normal(key, (self.obs_dim,))
        g = g + jax.nn.one_hot(latent, self.obs_dim) + jax.nn.one_hot(NUM_LATENT + time, self.obs_dim)
        return g @ jnp.asarray(self._hadamard)  # Had is symmetric: g @ Had = Had g

    def executed_action(self, key: chex.PRNGKey, action: jax.Array, params: CombLockParams) -> jax.Array:
        """The discrete action the env executes: the index itself, or a draw from softmax(action / tau)."""
        if self.action_mode == "discrete":
            return jnp.asarray(action, jnp.int32).reshape(())
        chex.assert_shape(action, (self._num_actions,))
        return jax.random.categorical(key, action / params.tau).astype(jnp.int32)

    def step_env(self, key, state: CombLockState, action, params: CombLockParams):
        k_act, k_coins, k_obs = jax.random.split(key, 3)
        a = self.executed_action(k_act, action, params)
        coins = jax.random.uniform(k_coins, (2,))  # the A<->B switch and the anti-reward coin
        h = state.time
        h_idx = jnp.minimum(h, self.horizon - 1)  # steps past H never happen inside an episode
        good = state.latent != LATENT_C
        target = jnp.where(state.latent == LATENT_A, params.opt_a[h_idx], params.opt_b[h_idx])
        correct = good & (a == target)
        fell = good & ~correct
        switch = coins[0] < params.p_switch
        latent = jnp.where(correct, jnp.where(switch, 1 - state.latent, state.latent), LATENT_C)
        last = h == self.horizon - 1
        anti = params.anti_r * (coins[1] < params.p_anti)
        success = correct & last
        if self.reward_mode == "hyq":
            reward = success * 1.0 + fell * anti
        elif self.reward_mode == "hnpg":
            reward = jnp.where(last, jnp.where(success, 1.0, anti), 0.0)
        else:  # dense
            reward = jnp.where(last, success * 1.0, correct * params.dense_r)
        new_state = CombLockState(
            latent=latent.astype(jnp.int32),
            time=(h + 1).astype(jnp.int32),
            max_reach=(state.max_reach + correct).astype(jnp.int32),
        )
        obs = self._observe(k_obs, new_state.latent, new_state.time, params.noise)
        terminated = self.is_terminated(new_state, params)
        info = {
            "latent": new_state.latent,
            "max_reach": new_state.max_reach,
            "success": success,
            "executed_action": a,
            "discount": 1.0 - terminated.astype(jnp.float32),
        }
        return obs, new_state, jnp.asarray(reward, jnp.float32), terminated, info

    def reset_env(self, key, params: CombLockParams):
        k_latent, k_obs = jax.random.split(key)
        latent = jax.random.randint(k_latent, (), 0, 2, dtype=jnp.int32)  # A or B w.p. 1/2 each
        state = CombLockState(latent=latent, time=jnp.int32(0), max_reach=jnp.int32(0))
        return self._observe(k_obs, latent, state.time, params.noise), state

    def get_obs(self, state: CombLockState, params=None, key=None) -> jax.Array:
        """A noisy observation given a key; the noise-free mean Had (e_s + e_{3+h}) without one."""
        if params is None:
            params = self.default_params
        noise = 0.0 if key is None else params.noise
        key = jax.random.PRNGKey(0) if key is None else key
        return self._observe(key, state.latent, state.time, noise)

    def is_terminated(self, state: CombLockState, params: CombLockParams) -> jax.Array:
        return state.time >= self.horizon

    def is_truncated(self, state: CombLockState, params: CombLockParams) -> jax.Array:
        # The horizon is a true end (terminated); a time limit only counts when it cuts the lock short.
        return (state.time >= params.max_steps_in_episode) & (state.time < self.horizon)

    # --- spaces and names -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"RichCombinationLock-H{self.horizon}-{self.reward_mode}-{self.action_mode}"

    @property
    def num_actions(self) -> int:
        return self._num_actions

    def action_space(self, params=None):
        if self.action_mode == "discrete":
            return spaces.Discrete(self._num_actions)
        # Nominal bounds for squashed policies; the env itself does not clip (softmax of anything works).
        return spaces.Box(-1.0, 1.0, (self._num_actions,), jnp.float32)

    def observation_space(self, params=None):
        return spaces.Box(-jnp.inf, jnp.inf, (self.obs_dim,), jnp.float32)

    def state_space(self, params=None):
        return spaces.Dict(
            {
                "latent": spaces.Discrete(NUM_LATENT),
                "time": spaces.Discrete(self.horizon + 1),
                "max_reach": spaces.Discrete(self.horizon + 1),
            }
        )

    def decode_observation(self, obs: jax.Array) -> jax.Array:
        """``g = Had^T o / D`` (the latent and step one-hots plus noise); works on batches of observations."""
        return obs @ jnp.asarray(self._hadamard) / self.obs_dim


def optimal_action(params: CombLockParams, state: CombLockState) -> jax.Array:
    """pi*(state): the lock's correct action for the current latent and step (0 in C, where nothing helps).

    An oracle on the latent state (for data collection and tests), not on the observation.
    """
    h = jnp.clip(state.time, 0, params.opt_a.shape[0] - 1)
    return jnp.where(
        state.latent == LATENT_A,
        params.opt_a[h],
        jnp.where(state.latent == LATENT_B, params.opt_b[h], 0),
    ).astype(jnp.int32)


# ------------------------------------------------------------------------------------------------------
# Tabular combination lock
# ------------------------------------------------------------------------------------------------------


@struct.dataclass
class TabularLockState:
    state: jax.Array  # int32: on-path states 0..G-1, dead state G
    time: jax.Array  # int32: the step h


@struct.dataclass
class TabularLockParams:
    opt: jax.Array  # int32[H, G]: correct action of each on-path state at each step (the lock)
    perm: jax.Array  # int32[H, G]: on-path state reached by the correct action (a permutation per step)
    final_r: float = 1.0  # reward for the correct last action
    distractor_r: float = 0.0  # reward for dying (a wrong action on the path); > 0 makes myopic agents fail
    max_steps_in_episode: int = 10
    num_actions: int = struct.field(pytree_node=False, default=4)  # a shape: static


def sample_tabular_lock_params(
    key: chex.PRNGKey, horizon: int, num_actions: int = 4, num_good: int = 1, **fields
) -> TabularLockParams:
    """A ``TabularLockParams`` with the correct actions and the per-step permutations drawn from ``key``."""
    k_opt, k_perm = jax.random.split(key)
    perm_keys = jax.random.split(k_perm, horizon)
    fields.setdefault("max_steps_in_episode", horizon)
    return TabularLockParams(
        opt=jax.random.randint(k_opt, (horizon, num_good), 0, num_actions, dtype=jnp.int32),
        perm=jax.vmap(lambda k: jax.random.permutation(k, num_good))(perm_keys).astype(jnp.int32),
        num_actions=num_actions,
        **fields,
    )


class TabularCombinationLock(environment.Environment[TabularLockState, TabularLockParams]):
    """Finite-horizon tabular combination lock (equations in the module doc)."""

    def __init__(
        self,
        horizon: int = 10,
        num_actions: int = 4,
        num_good: int = 1,
        obs_mode: str = "index",
        lock_seed: int = 0,
    ):
        super().__init__()
        if obs_mode not in ("index", "onehot"):
            raise ValueError(f"obs_mode must be 'index' or 'onehot', got {obs_mode!r}")
        self.horizon = int(horizon)
        self._num_actions = int(num_actions)
        self.num_good = int(num_good)
        self.num_states = self.num_good + 1
        self.dead = self.num_good
        self.obs_mode = obs_mode
        self.lock_seed = int(lock_seed)
        self.obs_shape = () if obs_mode == "index" else (self.num_states,)

    @property
    def default_params(self) -> TabularLockParams:
        return sample_tabular_lock_params(
            jax.random.PRNGKey(self.lock_seed), self.horizon, self._num_actions, self.num_good
        )

    def randomize(self, params: TabularLockParams, key: chex.PRNGKey) -> TabularLockParams:
        """Redraw the lock (correct actions and permutations) from ``key``, keeping the other fields."""
        return randomize(params, key)

    def _obs(self, s: jax.Array) -> jax.Array:
        if self.obs_mode == "index":
            return s.astype(jnp.int32)
        return jax.nn.one_hot(s, self.num_states)

    def step_env(self, key, state: TabularLockState, action, params: TabularLockParams):
        a = jnp.asarray(action, jnp.int32).reshape(())
        h = jnp.minimum(state.time, self.horizon - 1)
        on_path = state.state < self.dead
        s_idx = jnp.minimum(state.state, self.num_good - 1)
        correct = on_path & (a == params.opt[h, s_idx])
        success = correct & (state.time == self.horizon - 1)
        s_next = jnp.where(correct, params.perm[h, s_idx], self.dead).astype(jnp.int32)
        reward = success * params.final_r + (on_path & ~correct) * params.distractor_r
        new_state = TabularLockState(state=s_next, time=(state.time + 1).astype(jnp.int32))
        terminated = self.is_terminated(new_state, params)
        # Same info keys as envs.finite_mdp (state left, mean reward), plus the success flag.
        info = {
            "state": state.state,
            "expected_reward": jnp.asarray(reward, jnp.float32),
            "success": success,
            "discount": 1.0 - terminated.astype(jnp.float32),
        }
        return self._obs(s_next), new_state, jnp.asarray(reward, jnp.float32), terminated, info

    def reset_env(self, key, params: TabularLockParams):
        s = jax.random.randint(key, (), 0, self.num_good, dtype=jnp.int32)
        state = TabularLockState(state=s, time=jnp.int32(0))
        return self._obs(s), state

    def get_obs(self, state: TabularLockState, params=None, key=None) -> jax.Array:
        return self._obs(state.state)

    def is_terminated(self, state, params) -> jax.Array:
        return state.time >= self.horizon

    def is_truncated(self, state, params) -> jax.Array:
        return (state.time >= params.max_steps_in_episode) & (state.time < self.horizon)

    # --- exact model, for planners and linear algorithms -----------------------------------------------
    def to_tabular(self, params: TabularLockParams) -> tuple[jax.Array, jax.Array]:
        """``(P[H, S, A, S], R[H, S, A])``: P[h, s, a, s'] = p_h(s'|s, a), R[h, s, a] = r_h(s, a)."""
        H, S, A = self.horizon, self.num_states, self._num_actions
        actions = jnp.arange(A)
        correct = params.opt[:, :, None] == actions[None, None, :]  # [H, G, A]
        nxt = jnp.where(correct, params.perm[:, :, None], self.dead)  # [H, G, A]
        P_good = jax.nn.one_hot(nxt, S)  # [H, G, A, S]
        P_dead = jnp.broadcast_to(jax.nn.one_hot(self.dead, S), (H, 1, A, S))
        P = jnp.concatenate([P_good, P_dead], axis=1)
        is_last = (jnp.arange(H) == H - 1)[:, None, None]
        R_good = correct * is_last * params.final_r + (~correct) * params.distractor_r
        R = jnp.concatenate([R_good, jnp.zeros((H, 1, A))], axis=1).astype(jnp.float32)
        chex.assert_shape([P, R], [(H, S, A, S), (H, S, A)])
        return P, R

    def initial_distribution(self, params: TabularLockParams) -> jax.Array:
        """[S]: uniform over the on-path states."""
        return jnp.concatenate([jnp.full((self.num_good,), 1.0 / self.num_good), jnp.zeros((1,))])

    def features(self, params: TabularLockParams, kind: str = "onehot") -> jax.Array:
        """phi[S, A, d] of ``linear_structure``: ``onehot`` (d = S A) or ``lowrank`` (d = G A + 1 < S A)."""
        return self.linear_structure(params, kind)[0]

    def linear_structure(self, params: TabularLockParams, kind: str = "onehot"):
        """An exact linear-MDP representation ``(phi[S, A, d], mu[H, d, S], theta[H, d])`` of the lock.

        p_h(s'|s, a) = sum_i phi_i(s, a) mu_h[i, s'] and r_h(s, a) = phi(s, a) . theta_h, with phi one-hot.
        ``onehot``: phi(s, a) = e_{(s, a)}, d = S A (mu_h, theta_h are P_h and R_h reshaped).
        ``lowrank``: every dead-state pair shares one feature, phi(dead, a) = e_dead, phi(s, a) = e_{(s, a)}
        on the path, so d = G A + 1 < S A: the lock is a linear MDP of dimension below the tabular one.
        """
        P, R = self.to_tabular(params)
        H, S, A, G = self.horizon, self.num_states, self._num_actions, self.num_good
        if kind == "onehot":
            phi = jnp.eye(S * A).reshape(S, A, S * A)
            return phi, P.reshape(H, S * A, S), R.reshape(H, S * A)
        if kind != "lowrank":
            raise ValueError(f"kind must be 'onehot' or 'lowrank', got {kind!r}")
        d = G * A + 1
        phi_good = jnp.eye(d)[: G * A].reshape(G, A, d)
        phi_dead = jnp.broadcast_to(jnp.eye(d)[G * A], (1, A, d))
        phi = jnp.concatenate([phi_good, phi_dead], axis=0)
        mu = jnp.concatenate([P[:, :G].reshape(H, G * A, S), P[:, G, :1]], axis=1)  # dead row: any action
        theta = jnp.concatenate([R[:, :G].reshape(H, G * A), R[:, G, :1]], axis=1)
        return phi, mu, theta

    def optimal_value(self, params: TabularLockParams) -> jax.Array:
        """E_{s_0}[V*_0(s_0)] by finite-horizon value iteration on ``to_tabular`` (= final_r when >= distractor)."""
        P, R = self.to_tabular(params)
        _, V = finite_horizon_value_iteration(P, R, self.horizon)
        return self.initial_distribution(params) @ V[0]

    @property
    def name(self) -> str:
        return f"TabularCombinationLock-H{self.horizon}-A{self._num_actions}-G{self.num_good}"

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


def tabular_optimal_action(params: TabularLockParams, state: TabularLockState) -> jax.Array:
    """pi*(state) of the tabular lock (0 in the dead state)."""
    H, G = params.opt.shape
    a = params.opt[jnp.clip(state.time, 0, H - 1), jnp.clip(state.state, 0, G - 1)]
    return jnp.where(state.state < G, a, 0).astype(jnp.int32)


def randomize(params, key: chex.PRNGKey):
    """Redraw the lock of either lock's params from ``key`` with the same shapes; other fields are kept.

    Pure and jittable: ``jax.vmap(randomize, in_axes=(None, 0))(params, keys)`` gives one lock per key.
    """
    if isinstance(params, CombLockParams):
        (horizon,) = params.opt_a.shape
        fresh = sample_lock_params(key, horizon, params.num_actions)
        return params.replace(opt_a=fresh.opt_a, opt_b=fresh.opt_b)
    if isinstance(params, TabularLockParams):
        horizon, num_good = params.opt.shape
        fresh = sample_tabular_lock_params(key, horizon, params.num_actions, num_good)
        return params.replace(opt=fresh.opt, perm=fresh.perm)
    raise TypeError(f"randomize expects lock params, got {type(params).__name__}")


# ------------------------------------------------------------------------------------------------------
# Offline data for the rich lock (HNPG's and Hy-Q's datasets, plus a uniform one)
# ------------------------------------------------------------------------------------------------------


def collect_comblock_episodes(
    key: chex.PRNGKey,
    env: RichCombinationLock,
    params: CombLockParams,
    num_episodes: int,
    kind: str = "epsilon",
    epsilon: Any = None,
) -> Transition:
    """Offline transitions of the rich lock, ``num_episodes * H`` of them, episode-major (level = i % H).

    ``kind`` (``epsilon`` defaults to 1/H and may be traced):

    - ``hnpg``: whole episodes of pi* made epsilon-noisy. ``logits`` mode: the action vector is
      onehot(pi*) and, w.p. epsilon, U[0,1)^A noise instead (executed through the env's softmax); the stored
      action is that vector. ``discrete`` mode: epsilon-greedy on pi*.
    - ``epsilon`` (Hy-Q's default): whole episodes, epsilon-greedy on pi*, and every action at step H//2
      uniformly random (about 90% of the episodes fall into C there).
    - ``mixed`` (Hy-Q's "optimal occupancy"): at every level h, the state is reached by following pi*
      exactly, and the stored transition takes one uniformly random action there. We draw all H levels
      from one pi* roll-in per episode, branching off a random step at each level while the roll-in goes
      on with pi*: each level's transitions have exactly Hy-Q's "optimal occupancy" distribution and are
      independent across episodes (levels within an episode share the roll-in, which per-level learners never see).
    - ``random``: whole episodes of the uniform policy (``logits`` mode: U[0,1)^A vectors).

    Hy-Q's kinds in ``logits`` mode act with one-hot vectors (as Hy-Q does on the continuous lock).
    ``next_obs`` is always the true next observation (gymnax's ``final_observation``), never a reset one.
    Pure and jittable (``env``, ``num_episodes`` and ``kind`` must be static). All kinds share one compiled
    program per (env, num_episodes): the kind is passed on as a traced index.

    Memory: obs and next_obs are float32[num_episodes * H, D]; HNPG's 50,000 episodes at H = 50 (D = 64)
    are 1.3 GB, so build big datasets in chunks (split the key) and concatenate on the host.
    """
    if kind not in OFFLINE_KINDS:
        raise ValueError(f"kind must be one of {OFFLINE_KINDS}, got {kind!r}")
    eps = 1.0 / env.horizon if epsilon is None else epsilon
    return _collect(key, env, params, num_episodes, OFFLINE_KINDS.index(kind), jnp.asarray(eps, jnp.float32))


@functools.partial(jax.jit, static_argnames=("env", "num_episodes"))
def _collect(key, env: RichCombinationLock, params: CombLockParams, num_episodes: int, kind_id, eps):
    H, A = env.horizon, env.num_actions
    logits = env.action_mode == "logits"

    def as_env_action(idx):
        return jax.nn.one_hot(idx, A) if logits else idx

    def behaviour(key, state, h):
        """The stored action of every kind, selected by ``kind_id`` (cheap: all are computed)."""
        k_eps, k_rand, k_vec = jax.random.split(key, 3)
        a_star = optimal_action(params, state)
        a_rand = jax.random.randint(k_rand, (), 0, A, dtype=jnp.int32)
        explore = jax.random.uniform(k_eps) < eps
        noise = jax.random.uniform(k_vec, (A,))  # U[0,1)^A: HNPG's noise action in logits mode
        if logits:
            hnpg = jnp.where(explore, noise, jax.nn.one_hot(a_star, A))
            rand = noise
        else:
            hnpg = jnp.where(explore, a_rand, a_star)
            rand = a_rand
        epsilon = as_env_action(jnp.where(explore | (h == H // 2), a_rand, a_star))
        mixed = as_env_action(a_rand)
        per_kind = {"hnpg": hnpg, "epsilon": epsilon, "mixed": mixed, "random": rand}
        choices = jnp.stack([per_kind[k] for k in OFFLINE_KINDS])
        return choices[kind_id], a_star

    def body(carry, xs):
        (obs, state), (h, k) = carry, xs
        k_act, k_stored, k_main = jax.random.split(k, 3)
        a, a_star = behaviour(k_act, state, h)
        out = env.step(k_stored, state, a, params)
        _, _, r, term, trunc, info = out
        stored = Transition(
            obs=obs, action=a, reward=r, next_obs=info["final_observation"], terminated=term, truncated=trunc
        )

        def rollin_with_pi_star(_):
            # mixed: the stored step branched off; the roll-in goes on with pi*, executed exactly.
            a_main = _EXACT_LOGIT_SCALE * jax.nn.one_hot(a_star, A) if logits else a_star
            return env.step(k_main, state, a_main, params)[:2]

        # kind_id is not batched, so under vmap this stays a branch: other kinds skip the second step.
        next_carry = jax.lax.cond(kind_id == OFFLINE_KINDS.index("mixed"), rollin_with_pi_star,
                                  lambda _: out[:2], None)
        return next_carry, stored

    def episode(key):
        k_reset, k_steps = jax.random.split(key)
        carry = env.reset(k_reset, params)
        _, transitions = jax.lax.scan(body, carry, (jnp.arange(H), jax.random.split(k_steps, H)))
        return transitions

    batch = jax.vmap(episode)(jax.random.split(key, num_episodes))
    batch = jax.tree.map(lambda x: x.reshape((num_episodes * H,) + x.shape[2:]), batch)
    chex.assert_shape(batch.obs, (num_episodes * H, env.obs_dim))
    return batch


# ------------------------------------------------------------------------------------------------------
# Registration
# ------------------------------------------------------------------------------------------------------


def _split_overrides(overrides: dict, ctor_keys: tuple[str, ...]) -> tuple[dict, dict]:
    ctor = {k: v for k, v in overrides.items() if k in ctor_keys}
    rest = {k: v for k, v in overrides.items() if k not in ctor_keys}
    return ctor, rest


def _rich_maker(name: str, horizon: int, action_mode: str):
    def make(**overrides):
        ctor, rest = _split_overrides(
            overrides, ("horizon", "reward_mode", "action_mode", "num_actions", "lock_seed")
        )
        env = RichCombinationLock(**{"horizon": horizon, "action_mode": action_mode, **ctor})
        return env, apply_param_overrides(name, env.default_params, rest)

    return make


def _tabular_maker(name: str):
    def make(**overrides):
        ctor, rest = _split_overrides(
            overrides, ("horizon", "num_actions", "num_good", "obs_mode", "lock_seed")
        )
        env = TabularCombinationLock(**ctor)
        return env, apply_param_overrides(name, env.default_params, rest)

    return make


for _name, _h, _mode, _kind in [
    ("comblock", 10, "discrete", "discrete"),
    ("comblock_h50", 50, "discrete", "discrete"),
    ("comblock_logits", 10, "logits", "continuous"),
    ("comblock_logits_h50", 50, "logits", "continuous"),
]:
    register_env(
        EnvSpec(
            name=_name,
            description=(
                f"Rich-observation combination lock (HNPG/Hy-Q), H={_h}, 10 {_mode} actions, "
                f"Hadamard-mixed noisy observations; lock redrawn per seed with combination_lock.randomize."
            ),
            make=_rich_maker(_name, _h, _mode),
            action_kind=_kind,
            tags=("comblock", "finite_horizon"),
        )
    )

register_env(
    EnvSpec(
        name="comblock_tabular",
        description=(
            "Tabular combination lock of the theory papers, H=10, A=4, one on-path state; exact model via to_tabular."
        ),
        make=_tabular_maker("comblock_tabular"),
        action_kind="discrete",
        tags=("tabular", "finite_horizon"),
    )
)
