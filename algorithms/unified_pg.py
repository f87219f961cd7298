"""SFT, PPO, GRPO, SFT-then-RL and HPT (Lv et al., 2025) as presets of one policy-gradient estimator
(``algorithms/_unified_pg.py``), on task instances of the rich combination lock with expert demonstrations.

The control analogue of an LLM prompt is a *task instance*: each seed draws a pool of ``num_tasks`` locks
(``envs.combination_lock.randomize``), and the policy sees the observation together with a one-hot of the
lock it is in (the "prompt"; without it no policy could tell the locks apart). Every instance has
``num_demos`` expert demonstrations (pi* of that lock, epsilon-greedy with ``demo_noise``: noisy
demonstrations that may fail and then act at random in the dead state). One iteration:

1. draw ``groups`` instances uniformly from the pool; roll out ``group_size`` episodes of each with the
   current stochastic policy (``groups * group_size * H`` env steps); the reward is the verifiable one:
   R = 1 if the lock opened, else 0 (the env's misleading anti-reward is not used);
2. success rate P_g of each group; advantages: GRPO's group-normalised R (broadcast over the episode's
   steps) or, for PPO, GAE (gamma = 1, lambda ``gae_lambda``) with a value network fit on the returns;
3. alpha_g (RL) and beta_g = 1 - alpha_g (SFT on instance g's demonstrations) from the preset's schedule;
4. ``update_epochs`` full-batch Adam steps on the mixed loss (pi_old = the rollout policy).

Discrete locks use a categorical policy; the ``logits`` lock (a continuous 10-vector executed through a
softmax) uses a Gaussian with a state-independent log-std, its demonstrations acting with the one-hot
vector of the correct action (scaled by 10, executed exactly). The policy reads the decoded observation
(``Had^T o / D``, an invertible linear map of it).

Metrics: ``train_success_rate`` (the rollouts), ``greedy_success_rate`` (the mode of the policy on every
instance of the pool, ``eval_episodes_per_task`` episodes each, not counted as env steps), ``rl_fraction``
(mean alpha). The runner's own evaluation runs instance 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct
from flax.training.train_state import TrainState

from algorithms._unified_pg import PRESETS, SCHEDULES, get_preset, group_advantages, mixed_loss, rl_weights
from envs.combination_lock import RichCombinationLock, collect_comblock_episodes, randomize
from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget, Phase
from hybrid_rl.networks import MLP
from hybrid_rl.onpolicy import gae
from hybrid_rl.problem import Problem
from hybrid_rl.rollout import rollout
from hybrid_rl.training import adam

_EXACT_LOGIT_SCALE = 10.0  # a demonstration's one-hot logits, executed as their argmax (prob. 1 in float32)


@dataclasses.dataclass(frozen=True)
class Config:
    preset: str = "hpt"  # sft | ppo | grpo | sft_then_rl | hpt
    num_iterations: int = 300
    num_tasks: int = 4  # locks in each seed's pool (the prompts)
    groups: int = 8  # task instances per iteration
    group_size: int = 8  # rollouts per instance (n)
    num_demos: int = 4  # expert demonstrations per instance
    demo_noise: float = 0.0  # epsilon of the epsilon-greedy demonstrator
    update_epochs: int = 4  # full-batch gradient steps per batch
    lr: float = 3e-3
    clip_eps: float = 0.2
    hpt_threshold: float = 0.0  # gamma: RL on an instance whose group success rate is > gamma
    sft_iterations: int = 50  # sft_then_rl: SFT for this many iterations, then RL
    gae_lambda: float = 0.95  # ppo
    value_coef: float = 0.5  # ppo: weight of the value loss
    hidden_sizes: tuple[int, ...] = (64, 64)
    eval_episodes_per_task: int = 4  # greedy_success_rate episodes per instance and iteration
    # < 0: the preset's schedule. 0, 1, 2, 3 = sft, rl, switch, success_gate: a traced override, so one
    # compiled program sweeps the presets that share the RL parts (sft, grpo, sft_then_rl, hpt) as a grid.
    schedule_id: float = -1.0


TRACED = ("lr", "clip_eps", "hpt_threshold", "gae_lambda", "demo_noise", "schedule_id")


class TaskPolicy(nn.Module):
    """(decoded obs, task one-hot) -> logits (discrete) or a Gaussian mean (continuous), and a value."""

    num_actions: int
    hidden_sizes: tuple[int, ...]

    @nn.compact
    def __call__(self, x):
        out = MLP(self.hidden_sizes, self.num_actions, output_scale=0.01)(x)
        value = MLP(self.hidden_sizes, 1)(x)[..., 0]
        log_std = self.param("log_std", nn.initializers.zeros, (self.num_actions,))
        return out, log_std, value


@struct.dataclass
class UnifiedPGState:
    policy: TrainState
    locks: Any  # the pool: lock params with a leading axis of num_tasks
    demo_obs: chex.Array  # (num_tasks, num_demos * H, obs_dim)
    demo_actions: chex.Array  # (num_tasks, num_demos * H[, A])
    iteration: chex.Array
    env_steps: chex.Array
    key: chex.PRNGKey
    hparams: dict


def make(config: Config, problem: Problem) -> Agent:
    env = problem.env
    if not isinstance(env, RichCombinationLock):
        raise ValueError(f"unified_pg runs on the combination lock (env=comblock or comblock_logits), got {problem.env_name!r}")
    preset = get_preset(config.preset)
    if config.num_tasks < 1 or config.groups < 1 or config.group_size < 1 or config.num_demos < 1:
        raise ValueError("num_tasks, groups, group_size and num_demos must be >= 1")
    H, A = env.horizon, env.num_actions
    discrete = env.action_mode == "discrete"
    T, G, n = config.num_tasks, config.groups, config.group_size
    net = TaskPolicy(A, config.hidden_sizes)

    def features(obs, task):
        return jnp.concatenate([env.decode_observation(obs), jax.nn.one_hot(task, T)], axis=-1)

    def distribution(params, obs, task):
        out, log_std, value = net.apply(params, features(obs, task))
        if discrete:
            return distrax.Categorical(logits=out), value
        return distrax.MultivariateNormalDiag(out, jnp.broadcast_to(jnp.exp(log_std), out.shape)), value

    def init(key, hparams) -> UnifiedPGState:
        k_locks, k_net, k_demo, k_state = jax.random.split(key, 4)
        locks = jax.vmap(randomize, in_axes=(None, 0))(problem.env_params, jax.random.split(k_locks, T))

        def demos(k, lock):
            data = collect_comblock_episodes(k, env, lock, config.num_demos, "hnpg", hparams["demo_noise"])
            actions = data.action
            if not discrete:  # exact one-hot logits, as executed
                actions = jnp.where(actions == 1.0, _EXACT_LOGIT_SCALE, actions)
            return data.obs, actions

        demo_obs, demo_actions = jax.vmap(demos)(jax.random.split(k_demo, T), locks)
        params = net.init(k_net, jnp.zeros((1, env.obs_dim + T)))
        return UnifiedPGState(
            policy=TrainState.create(apply_fn=net.apply, params=params, tx=adam(hparams["lr"])),
            locks=locks, demo_obs=demo_obs, demo_actions=demo_actions, iteration=jnp.int32(0),
            env_steps=jnp.int32(0), key=k_state, hparams=hparams,
        )

    def collect_episodes(key, params, lock, task, num_episodes: int, greedy: bool):
        """num_episodes episodes of one lock: obs (H, E, D), actions, log-probs, values, success (E,)."""

        def policy(obs, env_state, t, k_act):
            dist, value = distribution(params, obs, jnp.full(obs.shape[:1], task))
            action = dist.mode() if greedy else dist.sample(seed=k_act)
            return action, (dist.log_prob(action), value)

        _, (tr, info, (logp, value)) = rollout(env, lock, policy, key, num_episodes, H, info_keys=("success",))
        return tr.obs, tr.action, logp, value, info["success"][-1].astype(jnp.float32)

    def iteration(state: UnifiedPGState):
        hp = state.hparams
        key, k_task, k_roll, k_eval = jax.random.split(state.key, 4)
        params = state.policy.params
        tasks = jax.random.randint(k_task, (G,), 0, T)
        locks = jax.tree.map(lambda x: x[tasks], state.locks)
        obs, action, old_logp, value, success = jax.vmap(
            lambda k, lock, t: collect_episodes(k, params, lock, t, n, False))(jax.random.split(k_roll, G), locks, tasks)
        # obs (G, H, n, D), success (G, n)
        success_rate = success.mean(-1)
        if preset.rl.advantage == "gae":
            rewards = jnp.zeros((G, H, n)).at[:, -1].set(success)
            next_values = jnp.concatenate([value[:, 1:], jnp.zeros((G, 1, n))], axis=1)
            terminated = jnp.zeros((G, H, n), bool).at[:, -1].set(True)
            adv, returns = jax.vmap(lambda r, v, nv, t: gae(r, v, nv, t, jnp.zeros_like(t), 1.0, hp["gae_lambda"]))(
                rewards, value, next_values, terminated)
        else:
            adv = jnp.broadcast_to(group_advantages(success)[:, None, :], (G, H, n))
            returns = jnp.broadcast_to(success[:, None, :], (G, H, n))
        candidates = jnp.stack([rl_weights(name, success_rate, state.iteration, hp["hpt_threshold"], config.sft_iterations)
                                for name in (preset.schedule,) + SCHEDULES])
        alpha = candidates[jnp.where(hp["schedule_id"] < 0, 0, 1 + jnp.round(hp["schedule_id"]).astype(jnp.int32))]
        demo_obs, demo_act = state.demo_obs[tasks], state.demo_actions[tasks]  # (G, K, D), (G, K[, A])
        flat = lambda x: x.reshape((G, H * n) + x.shape[3:])  # noqa: E731

        def loss_fn(p):
            dist, v = distribution(p, flat(obs), jnp.broadcast_to(tasks[:, None], (G, H * n)))
            demo_dist, _ = distribution(p, demo_obs, jnp.broadcast_to(tasks[:, None], demo_obs.shape[:2]))
            rl = {"log_prob": dist.log_prob(flat(action)), "old_log_prob": flat(old_logp), "advantage": flat(adv)}
            loss, terms = mixed_loss(preset, alpha, rl, {"log_prob": demo_dist.log_prob(demo_act)}, hp["clip_eps"])
            if preset.rl.advantage == "gae":
                value_loss = jnp.mean((v - flat(returns)) ** 2)
                loss = loss + config.value_coef * jnp.mean(alpha) * value_loss
            return loss, terms

        def epoch(policy, _):
            (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(policy.params)
            return policy.apply_gradients(grads=grads), {"pg_loss": loss, **terms}

        policy, losses = jax.lax.scan(epoch, state.policy, None, length=config.update_epochs)
        e = config.eval_episodes_per_task
        greedy = jax.vmap(lambda k, lock, t: collect_episodes(k, policy.params, lock, t, e, True)[-1])(
            jax.random.split(k_eval, T), state.locks, jnp.arange(T))
        state = state.replace(policy=policy, iteration=state.iteration + 1, env_steps=state.env_steps + G * n * H,
                              key=key)
        metrics = {"train_success_rate": success.mean(), "greedy_success_rate": greedy.mean(),
                   "rl_fraction": alpha.mean(), **jax.tree.map(jnp.mean, losses)}
        return state, metrics

    def policy(state: UnifiedPGState, obs, key, deterministic: bool):
        dist, _ = distribution(state.policy.params, obs[None], jnp.zeros((1,), jnp.int32))
        action = dist.mode() if deterministic else dist.sample(seed=key)
        return action[0]

    return Agent(
        init=init,
        phases=(Phase("online", iteration, config.num_iterations, env_steps_per_iteration=G * n * H,
                      grad_steps_per_iteration=config.update_epochs),),
        policy=policy,
        eval_env_params=lambda state: jax.tree.map(lambda x: x[0], state.locks),
    )


SPEC = AlgorithmSpec(
    name="unified_pg",
    description=("SFT / PPO / GRPO / SFT-then-RL / HPT as presets of one policy-gradient estimator "
                 f"(algo.preset={'|'.join(PRESETS)}); comb.-lock task instances with expert demonstrations."),
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="none",
    action_kinds=("discrete", "continuous"),
    paper="Lv et al. Towards a Unified View of Large Language Model Post-Training. 2025",
    budget=Budget("num_iterations", "env_steps", counts_iterations=True),
)
