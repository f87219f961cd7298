"""The unified policy-gradient estimator of Lv et al. (2025, "Towards a Unified View of Large Language
Model Post-Training"), in parts that compose, and the presets SFT, PPO, GRPO, SFT-then-RL and HPT.

Every one of these methods follows, per sample (a step of a demonstration or of a rollout),

    grad J = 1_stable * A_hat * grad pi_theta(a|s) / pi_ref(a|s)

with four interchangeable parts:

* stabilisation mask 1_stable: ``none`` (always 1) or ``clip`` (PPO's: 0 where the ratio
  r = pi_theta / pi_old has left [1 - eps, 1 + eps] on the side the advantage pushes it to, which is the
  gradient of PPO's min(r A, clip(r) A));
* reference-policy denominator pi_ref: ``current`` (pi_theta itself, so grad pi / pi = grad log pi: SFT and
  vanilla PG), ``old`` (the rollout policy pi_old: PPO's and GRPO's ratio) or ``one`` (no denominator);
* advantage A_hat: ``one`` (1 on demonstrations: SFT), ``group`` (GRPO: (R - mean_group R) / (std_group R +
  eps), the group being the n rollouts of one task instance) or ``gae`` (PPO: GAE with a learned value);
* likelihood gradient grad pi_theta(a|s): any distribution with a log-density (categorical or Gaussian).

The loss whose gradient is that estimate (averaged over samples) is
``-mean( sg(mask) * sg(A_hat) * pi_theta(a|s) / sg(pi_ref(a|s)) )`` (sg: no gradient), which
:func:`surrogate_loss` builds from log-probabilities.

A training batch mixes an RL term on rollouts and an SFT term on demonstrations, per task instance g, with
weights alpha_g and beta_g (Lv et al.'s L = alpha L_RL + beta L_SFT):

    sft          alpha = 0, beta = 1
    ppo, grpo    alpha = 1, beta = 0
    sft_then_rl  alpha = 1[iteration >= switch], beta = 1 - alpha
    hpt          alpha = 1[P_g > gamma], beta = 1 - alpha, with P_g the success rate of instance g's group
                 (RL where the policy already solves the instance, SFT on its demonstration where it does not;
                 the switch is strict: at P_g = gamma it is SFT)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

MASKS = ("none", "clip")
DENOMINATORS = ("current", "old", "one")
ADVANTAGES = ("one", "group", "gae")
SCHEDULES = ("sft", "rl", "switch", "success_gate")


@dataclasses.dataclass(frozen=True)
class Parts:
    """The first three parts of the estimator (the fourth, the likelihood gradient, is the policy's)."""

    mask: str = "none"
    denominator: str = "current"
    advantage: str = "one"

    def __post_init__(self):
        for value, allowed, what in ((self.mask, MASKS, "mask"), (self.denominator, DENOMINATORS, "denominator"),
                                     (self.advantage, ADVANTAGES, "advantage")):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(allowed)}")


SFT_PARTS = Parts("none", "current", "one")
PPO_PARTS = Parts("clip", "old", "gae")
GRPO_PARTS = Parts("clip", "old", "group")


@dataclasses.dataclass(frozen=True)
class Preset:
    rl: Parts  # the estimator on rollouts
    sft: Parts  # the estimator on demonstrations
    schedule: str  # how alpha (RL weight) and beta (SFT weight) are chosen: see the module doc


PRESETS = {
    "sft": Preset(GRPO_PARTS, SFT_PARTS, "sft"),
    "ppo": Preset(PPO_PARTS, SFT_PARTS, "rl"),
    "grpo": Preset(GRPO_PARTS, SFT_PARTS, "rl"),
    "sft_then_rl": Preset(GRPO_PARTS, SFT_PARTS, "switch"),
    "hpt": Preset(GRPO_PARTS, SFT_PARTS, "success_gate"),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def stable_mask(log_prob, old_log_prob, advantage, clip_eps):
    """PPO's clip as a mask: 0 where r > 1 + eps with A > 0, or r < 1 - eps with A < 0 (no gradient)."""
    ratio = jnp.exp(jax.lax.stop_gradient(log_prob - old_log_prob))
    clipped = ((ratio > 1.0 + clip_eps) & (advantage > 0)) | ((ratio < 1.0 - clip_eps) & (advantage < 0))
    return 1.0 - clipped.astype(jnp.float32)


def surrogate_loss(parts: Parts, log_prob, old_log_prob, advantage, weights, clip_eps=0.2):
    """-sum_i w_i sg(mask_i) sg(A_i) pi_theta(a_i|s_i) / sg(pi_ref(a_i|s_i)): its gradient is the unified
    estimate weighted by ``weights`` (use weights 1/N for a mean). ``old_log_prob`` is log pi_old of the
    samples (the policy that drew them; for demonstrations, any value: the SFT parts never read it)."""
    if parts.denominator == "current":
        likelihood_ratio = jnp.exp(log_prob - jax.lax.stop_gradient(log_prob))  # = 1, gradient grad log pi
    elif parts.denominator == "old":
        likelihood_ratio = jnp.exp(log_prob - jax.lax.stop_gradient(old_log_prob))
    else:
        likelihood_ratio = jnp.exp(log_prob)
    advantage = jax.lax.stop_gradient(advantage)
    mask = stable_mask(log_prob, old_log_prob, advantage, clip_eps) if parts.mask == "clip" else 1.0
    return -jnp.sum(weights * mask * advantage * likelihood_ratio)


def group_advantages(returns, eps: float = 1e-6):
    """GRPO: (R - mean) / (std + eps) within each group (the last axis: the n rollouts of one instance)."""
    mean = returns.mean(axis=-1, keepdims=True)
    std = returns.std(axis=-1, keepdims=True)
    return (returns - mean) / (std + eps)


def rl_weights(schedule: str, success_rate, iteration, threshold, switch_iteration):
    """alpha_g per task instance (beta_g = 1 - alpha_g): see the module doc. ``success_rate`` (G,)."""
    if schedule == "sft":
        return jnp.zeros_like(success_rate)
    if schedule == "rl":
        return jnp.ones_like(success_rate)
    if schedule == "switch":
        return jnp.broadcast_to(jnp.asarray(iteration >= switch_iteration, jnp.float32), success_rate.shape)
    if schedule == "success_gate":
        return (success_rate > threshold).astype(jnp.float32)
    raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")


def mixed_loss(preset: Preset, alpha, rl: dict, sft: dict, clip_eps=0.2):
    """L = mean_g [ alpha_g L_RL,g + (1 - alpha_g) L_SFT,g ], each term a mean over its instance's samples.

    ``rl``: ``log_prob``, ``old_log_prob``, ``advantage`` of shape (G, M) (M rollout samples per instance);
    ``sft``: ``log_prob`` of shape (G, K) (K demonstration samples per instance). Returns the loss and the
    two terms' per-instance values (for logging)."""
    G, M = rl["log_prob"].shape
    K = sft["log_prob"].shape[1]
    w_rl = jnp.broadcast_to(alpha[:, None] / (G * M), (G, M))
    w_sft = jnp.broadcast_to((1.0 - alpha)[:, None] / (G * K), (G, K))
    loss_rl = surrogate_loss(preset.rl, rl["log_prob"], rl["old_log_prob"], rl["advantage"], w_rl, clip_eps)
    ones = jnp.ones_like(sft["log_prob"])
    loss_sft = surrogate_loss(preset.sft, sft["log_prob"], sft["log_prob"], ones, w_sft, clip_eps)
    return loss_rl + loss_sft, {"rl_term": loss_rl, "sft_term": loss_sft}
