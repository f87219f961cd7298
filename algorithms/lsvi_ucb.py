"""LSVI-UCB (Jin, Yang, Wang, Jordan, COLT 2020) for finite-horizon linear MDPs (docs/algorithms/lsvi_ucb.md), on
the linear family core (``algorithms/_linear.py``) that ``optimistic_ac_linear`` and ``demo_regularized_linear`` share.

Setting: known features ``phi(s, a) in R^d`` with ``p_h(s'|s,a) = <phi(s,a), mu_h(s')>`` and
``r_h(s,a) = <phi(s,a), theta_h>``; envs ``linear_mdp`` (``features(params)``) and ``comblock_tabular``
(``linear_structure(params, features)``: "onehot" d = S A or "lowrank"). One runner iteration is one episode,
sampled from the env's exact model (:mod:`algorithms._tabular`); regret is computed exactly from that model.

Per episode k and step h = H-1..0 (0-based; per-step weights ``w_h``, never shared across h):

    Lambda_h = reg I + sum_{tau<k} phi_tau phi_tau^T
    w_h      = Lambda_h^{-1} sum_{tau<k} phi_tau [ r_tau + max_a Q_{h+1}(s'_tau, a) ]
    Q_h(s,a) = min( w_h^T phi(s,a) + beta ||phi(s,a)||_{Lambda_h^{-1}},  M_h )      M_h = H - h (``clip="step"``)
                                                                                      or H (``clip="H"``, Jin et al.)
    beta     = c d H sqrt(log(2 d T / p)),  T = K H                                 (c = ``beta_scale``, tuned [R])
    act greedily: a_h = argmax_a Q_h(s_h, a)

Because the state space of these envs is finite, the sums over the data are kept as sufficient statistics
``Lambda_h``, ``u_h = sum phi_tau r_tau`` and ``M_h = sum phi_tau e_{s'_tau}^T`` (d x S), so
``sum_tau phi_tau V_{h+1}(s'_tau) = M_h V_{h+1}``: the same numbers as refitting on all data every episode, in
O(H d S) memory and time per episode (what the rlberry reference recomputes from scratch). ``Lambda_h^{-1}`` is
recomputed from ``Lambda_h`` by a Cholesky solve at every planning step (no Sherman-Morrison drift).

Metrics per episode: ``regret_increment`` (exact ``V* - V^{pi_k}``), ``cumulative_regret``,
``suboptimality`` (= regret increment of the played greedy policy) and ``optimistic_value``.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
from flax import struct

from algorithms._linear import LinearStats, add_to_stats, confidence_radius, init_stats, linear_setup, lsvi
from algorithms._tabular import TabularModel, sample_episode
from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget, Phase
from hybrid_rl.problem import Problem

CLIPS = ("step", "H")


@dataclasses.dataclass(frozen=True)
class Config:
    episodes: int = 3000  # K: online episodes (one per iteration)
    features: str = "env"  # "env": linear_mdp's phi; "onehot" | "lowrank": comblock_tabular's linear_structure
    beta_scale: float = 0.01  # c in beta = c d H sqrt(log(2 d T / p)); tuned, not the theory constant [R] (traced)
    p: float = 0.05  # failure probability in beta (traced)
    reg: float = 1.0  # ridge regulariser lambda of Lambda_h (traced)
    clip: str = "step"  # "step": Q_h <= H - h (tighter, valid) | "H": Q_h <= H (Jin et al.)


TRACED = ("beta_scale", "p", "reg")


@struct.dataclass
class LSVIState:
    key: jax.Array
    stats: LinearStats
    episode: jax.Array
    regret: jax.Array
    hparams: dict


def make_agent(config: Config, model: TabularModel, phi: jax.Array) -> Agent:
    if config.clip not in CLIPS:
        raise ValueError(f"clip must be one of {CLIPS}, got {config.clip!r}")
    H, S, A, K = model.H, model.S, model.A, config.episodes
    phi = jnp.asarray(phi, jnp.float32)
    chex.assert_shape(phi, (S, A, None))
    d = phi.shape[-1]
    v_star = model.v_star

    def init(key, hparams):
        return LSVIState(key=key, stats=init_stats(H, d, S), episode=jnp.int32(0), regret=jnp.float32(0.0),
                         hparams=hparams)

    def iteration(state):
        hp = state.hparams
        Q, V = lsvi(state.stats, phi, confidence_radius(hp, d, H, K), hp["reg"], config.clip)
        pi = jax.nn.one_hot(Q.argmax(-1), A)
        key, k_ep = jax.random.split(state.key)
        s, a, r, s2 = sample_episode(k_ep, model, pi)
        regret_inc = v_star - model.value(pi)
        state = state.replace(key=key, stats=add_to_stats(state.stats, phi, s, a, r, s2),
                              episode=state.episode + 1, regret=state.regret + regret_inc)
        return state, {"regret_increment": regret_inc, "suboptimality": regret_inc,
                       "cumulative_regret": state.regret, "optimistic_value": model.mu0 @ V[0],
                       "episode_return": r.sum()}

    def policy(state, obs, key, deterministic):
        Q, _ = lsvi(state.stats, phi, confidence_radius(state.hparams, d, H, K), state.hparams["reg"], config.clip)
        return Q[0, obs].argmax()

    phase = Phase("online", iteration, num_iterations=K, env_steps_per_iteration=H)
    return Agent(init=init, phases=(phase,), policy=policy)


def make(config: Config, problem: Problem) -> Agent:
    model, phi = linear_setup(problem, config.features, "lsvi_ucb")
    return make_agent(config, model, phi)


SPEC = AlgorithmSpec(
    name="lsvi_ucb",
    description="LSVI-UCB: per-step ridge regression on known features with an elliptical bonus (linear MDPs).",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="none",
    action_kinds=("discrete",),
    paper="Jin, Yang, Wang, Jordan, Provably Efficient RL with Linear Function Approximation, COLT 2020",
    evaluation=False,
    budget=Budget("episodes", "env_steps", counts_iterations=True),
)
