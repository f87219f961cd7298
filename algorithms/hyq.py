"""Hy-Q: hybrid fitted Q-iteration (Song et al., ICLR 2023), on the rich-observation combination lock.

Follows the official code (``yudasong/HyQ``, folder CLock); docs/algorithms/hyq.md. One Q-function per level h,
kept as one pytree with a leading axis H. Default model (``q_model="latent"``)::

    Q_h(o, a) = w . vec( onehot(a) (x) softmax(W_enc o / temperature) ) + b,    W_enc: D -> 3, no bias

(``q_model="mlp"``: an MLP o -> Q(o, .)). Each round, for every level h in parallel: reset
``envs_per_level`` envs, roll in with the greedy policies of levels < h, take one uniformly random action
at h, and add those tuples to buffer[h]; buffer[h] started with ``offline_per_level`` offline tuples and
gets as many freshly resampled offline tuples per round as online ones (50/50 new data). Then the
backward fitted Q-iteration, h = H-1..0 (a reversed ``lax.scan``), with Q_h's encoder warm-started from
the just-fitted Q_{h+1} and ``grad_steps`` Adam steps (persistent per level) on minibatches of buffer[h]:

    L(Q_h) = mean (Q_h(o, a) - y)^2,   y = r  at h = H-1,   y = r + max_a' Q_{h+1}(o', a')  otherwise

(no target network). Buffer sampling: the resampled offline copies are uniform draws from the offline
set, so a minibatch draws each sample from the online part with probability n_on / (n_off + 2 n_on) and
otherwise uniformly from the offline set (the same distribution without storing the copies).

Each seed draws its own lock from its key; the ``logits`` lock is acted on with one-hot vectors (the
stored action is the index). Offline kinds: ``epsilon`` (default), ``mixed``, ``random``. The official
code stops at the first of 5 consecutive perfect evaluations; we keep a fixed length and log
``solved_at_step`` (0 until solved).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from envs.combination_lock import RichCombinationLock, collect_comblock_episodes, randomize
from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget, Phase
from hybrid_rl.networks import MLP
from hybrid_rl.problem import Problem
from hybrid_rl.rollout import rollout
from hybrid_rl.wrappers import MappedActions


@dataclasses.dataclass(frozen=True)
class Config:
    num_rounds: int = 100  # rounds of (collect at every level, backward FQI); official: 200 at H=100
    envs_per_level: int = 50  # online tuples per level per round
    offline_per_level: int = 10_000  # offline tuples per level in buffer[h] at the start
    offline: str = "epsilon"  # offline kind: epsilon | mixed | random
    offline_epsilon: float = -1.0  # < 0 means 1/H
    q_model: str = "latent"  # "latent" (bilinear, official) or "mlp"
    latent_dim: int = 3
    temperature: float = 1.0
    mlp_hidden: tuple[int, ...] = (64, 64)
    lr: float = 0.0025  # Adam, persistent per level
    batch_size: int = 512
    grad_steps: int = 499  # per level per round
    eval_envs: int = 20  # greedy episodes per round for ``train_success_rate`` / ``solved_at_step``
    redraw_lock: bool = True


TRACED = ("lr",)


class LatentQ(nn.Module):
    """Q(o, .) = softmax(W_enc o / T) @ w^T + b, shape (..., A)."""

    num_actions: int
    latent_dim: int = 3
    temperature: float = 1.0

    @nn.compact
    def __call__(self, obs):
        z = jax.nn.softmax(
            nn.Dense(self.latent_dim, use_bias=False, kernel_init=nn.initializers.orthogonal(), name="encoder")(obs)
            / self.temperature
        )
        w = self.param("w", nn.initializers.orthogonal(), (self.num_actions, self.latent_dim))
        b = self.param("b", nn.initializers.zeros, ())
        return z @ w.T + b


class MLPQ(nn.Module):
    num_actions: int
    hidden_sizes: tuple[int, ...] = (64, 64)

    @nn.compact
    def __call__(self, obs):
        return MLP(self.hidden_sizes, self.num_actions, name="encoder")(obs)


def regression_target(reward, terminated, next_q_all, is_last):
    """y = r at the last level (or a terminal), else r + max_a' Q_{h+1}(o', a'); next_q_all is (B, A)."""
    return reward + jnp.where(is_last | terminated, 0.0, next_q_all.max(-1))


@struct.dataclass
class HyQState:
    q_params: Any  # leaves (H, ...)
    opt_state: Any  # leaves (H, ...)
    env_params: Any
    offline: Any  # dict of arrays (H, n_off, ...)
    online: Any  # dict of arrays (H, capacity, ...)
    num_online: chex.Array  # tuples per level stored so far
    recent_success: chex.Array  # (5,) last greedy success rates
    solved_at_step: chex.Array
    env_steps: chex.Array
    key: chex.PRNGKey
    hparams: dict


def make(config: Config, problem: Problem) -> Agent:
    env = problem.env
    if not isinstance(env, RichCombinationLock):
        raise ValueError(f"hyq needs the combination lock (env=comblock...), got {problem.env_name!r}")
    if config.offline not in ("epsilon", "mixed", "random"):
        raise ValueError(f"hyq offline must be epsilon, mixed or random, got {config.offline!r}")
    H, D, A = env.horizon, problem.obs_dim, env.num_actions
    logits = env.action_mode == "logits"
    M = config.envs_per_level
    cap = config.num_rounds * M
    net = (LatentQ(A, config.latent_dim, config.temperature) if config.q_model == "latent"
           else MLPQ(A, config.mlp_hidden))
    if config.q_model not in ("latent", "mlp"):
        raise ValueError(f"q_model must be 'latent' or 'mlp', got {config.q_model!r}")
    eps = 1.0 / H if config.offline_epsilon < 0 else config.offline_epsilon
    # env steps of one round: level h needs h roll-in steps and the stored one
    steps_per_round = M * H * (H + 1) // 2

    def env_action(idx):
        return jax.nn.one_hot(idx, A) if logits else idx

    index_actions = MappedActions(env, env_action)  # the agent picks an index; logits mode executes its one-hot

    def level_of(obs):
        return jnp.clip(jnp.argmax(env.decode_observation(obs)[..., 3 : 3 + H], -1), 0, H - 1)

    def greedy(q_params, h, obs):
        return jnp.argmax(net.apply(jax.tree.map(lambda x: x[h], q_params), obs), -1).astype(jnp.int32)

    def init(key, hparams) -> HyQState:
        k_lock, k_q, k_off, k_state = jax.random.split(key, 4)
        env_params = randomize(problem.env_params, k_lock) if config.redraw_lock else problem.env_params
        q_params = jax.vmap(lambda k: net.init(k, jnp.zeros((1, D))))(jax.random.split(k_q, H))
        tx = optax.adam(hparams["lr"])
        data = collect_comblock_episodes(k_off, env, env_params, config.offline_per_level, config.offline, eps)
        act = jnp.argmax(data.action, -1) if logits else data.action
        level_major = lambda x: jnp.swapaxes(x.reshape((config.offline_per_level, H) + x.shape[1:]), 0, 1)  # noqa: E731
        offline = {"obs": data.obs, "action": act.astype(jnp.int32), "reward": data.reward,
                   "next_obs": data.next_obs, "terminated": data.terminated}
        offline = jax.tree.map(level_major, offline)
        online = {"obs": jnp.zeros((H, cap, D)), "action": jnp.zeros((H, cap), jnp.int32),
                  "reward": jnp.zeros((H, cap)), "next_obs": jnp.zeros((H, cap, D)),
                  "terminated": jnp.zeros((H, cap), bool)}
        return HyQState(q_params, jax.vmap(tx.init)(q_params), env_params, offline, online, jnp.int32(0),
                        jnp.zeros(5), jnp.int32(0), jnp.int32(0), k_state, hparams)

    def run_episodes(key, q_params, env_params, levels):
        """Episodes in parallel; env i is greedy before ``levels[i]`` and random at it (levels[i] = H: greedy
        throughout). Returns per-step transitions (H, n, ...) and the success flags."""
        n = levels.shape[0]

        def policy(obs, st, t, k_a):
            return jnp.where(t == levels, jax.random.randint(k_a, (n,), 0, A), greedy(q_params, t, obs)), ()

        _, (tr, info, _) = rollout(index_actions, env_params, policy, key, n, H, info_keys=("success",))
        return dict(obs=tr.obs, action=tr.action, reward=tr.reward, next_obs=tr.next_obs,
                    terminated=tr.terminated, **info)

    def iteration(state: HyQState):
        key, k_roll, k_eval, k_fit = jax.random.split(state.key, 4)
        tx = optax.adam(state.hparams["lr"])
        # collect: env (h, m) is random at level h
        levels = jnp.repeat(jnp.arange(H), M)
        tr = run_episodes(k_roll, state.q_params, state.env_params, levels)
        pick = jax.tree.map(lambda x: x[levels, jnp.arange(H * M)].reshape((H, M) + x.shape[2:]),
                            {k: v for k, v in tr.items() if k != "success"})
        start = jnp.minimum(state.num_online, cap - M)  # the runner may round the rounds up
        online = jax.tree.map(lambda buf, new: jax.lax.dynamic_update_slice_in_dim(buf, new, start, axis=1),
                              state.online, pick)
        n_on = start + M
        n_off = config.offline_per_level
        p_online = n_on / (n_off + 2.0 * n_on)

        def fit_level(carry, xs):
            next_params = carry
            h, params_h, opt_h = xs
            if config.q_model == "latent":  # warm start the encoder from the just-fitted Q_{h+1}
                enc = jax.tree.map(lambda a, b: jnp.where(h < H - 1, b, a), params_h["params"]["encoder"],
                                   next_params["params"]["encoder"])
                params_h = {"params": {**params_h["params"], "encoder": enc}}
            on_h = jax.tree.map(lambda x: x[h], online)
            off_h = jax.tree.map(lambda x: x[h], state.offline)

            def sgd(carry, k):
                p, o = carry
                k_mix, k_on, k_off = jax.random.split(k, 3)
                use_on = jax.random.uniform(k_mix, (config.batch_size,)) < p_online
                i_on = jax.random.randint(k_on, (config.batch_size,), 0, n_on)
                i_off = jax.random.randint(k_off, (config.batch_size,), 0, n_off)
                batch = jax.tree.map(
                    lambda a, b: jnp.where(use_on.reshape((-1,) + (1,) * (a.ndim - 1)), a[i_on], b[i_off]), on_h, off_h)
                y = regression_target(batch["reward"], batch["terminated"], net.apply(next_params, batch["next_obs"]),
                                      h == H - 1)

                def loss_fn(p):
                    q = jnp.take_along_axis(net.apply(p, batch["obs"]), batch["action"][:, None], -1)[:, 0]
                    return jnp.mean((q - jax.lax.stop_gradient(y)) ** 2)

                loss, g = jax.value_and_grad(loss_fn)(p)
                upd, o = tx.update(g, o, p)
                return (optax.apply_updates(p, upd), o), loss

            (p, o), losses = jax.lax.scan(sgd, (params_h, opt_h), jax.random.split(jax.random.fold_in(k_fit, h),
                                                                                  config.grad_steps))
            return p, (p, o, losses.mean())

        init = jax.tree.map(lambda x: x[H - 1], state.q_params)
        _, (q_params, opt_state, losses) = jax.lax.scan(
            fit_level, init, (jnp.arange(H), state.q_params, state.opt_state), reverse=True)
        # greedy evaluation episodes (not counted as online steps)
        ev = run_episodes(k_eval, q_params, state.env_params, jnp.full((config.eval_envs,), H))
        success = ev["success"][-1].astype(jnp.float32).mean()
        recent = jnp.concatenate([state.recent_success[1:], success[None]])
        env_steps = state.env_steps + steps_per_round
        solved = jnp.where((state.solved_at_step == 0) & jnp.all(recent == 1.0), env_steps, state.solved_at_step)
        state = state.replace(q_params=q_params, opt_state=opt_state, online=online, num_online=n_on,
                              recent_success=recent, solved_at_step=solved, env_steps=env_steps, key=key)
        return state, {"q_loss": losses.mean(), "train_success_rate": success,
                       "solved_at_step": solved.astype(jnp.float32)}

    def policy(state: HyQState, obs, key, deterministic: bool):
        a = greedy(state.q_params, level_of(obs), problem.flat_obs(obs))
        return env_action(a)

    return Agent(
        init=init,
        phases=(Phase("online", iteration, config.num_rounds, env_steps_per_iteration=steps_per_round,
                      grad_steps_per_iteration=H * config.grad_steps),),
        policy=policy,
        eval_env_params=lambda state: state.env_params,
    )


SPEC = AlgorithmSpec(
    name="hyq",
    description="Hy-Q: per-level fitted Q-iteration on 50/50 online/offline data, latent bilinear Q (comb. lock).",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="none",  # makes its own per-seed offline data from the seed's lock (``offline=`` kind)
    action_kinds=("continuous", "discrete"),
    paper="Song, Zhou, Sekhari, Bagnell, Krishnamurthy, Sun, Hybrid RL: Using Both Offline and Online Data Can Make RL Efficient, ICLR 2023",
    budget=Budget("num_rounds", "env_steps", counts_iterations=True),
)
