"""Hand-written controllers that are near-optimal on a few gymnax envs.

They give expert data without training anything (fast tests, and the reference "expert" return for
normalisation when no trained policy is at hand). Each maps one observation (and a key) to one env action.
"""

from __future__ import annotations

import jax.numpy as jnp


def cartpole_expert(obs, key=None):
    """Push toward the side the pole is falling to (angle plus damped angular velocity): 500/500."""
    x, x_dot, theta, theta_dot = obs[0], obs[1], obs[2], obs[3]
    return (theta + 0.3 * theta_dot + 0.01 * x + 0.1 * x_dot > 0).astype(jnp.int32)


def pendulum_expert(obs, key=None):
    """Energy pumping far from the top, a PD controller near it (about -170 per episode; SAC gets ~-150).

    The swing-up pushes along the angular velocity while the pendulum has less energy than upright.
    """
    cos_th, sin_th, theta_dot = obs[0], obs[1], obs[2]
    theta = jnp.arctan2(sin_th, cos_th)
    energy = 0.5 * theta_dot**2 / 3.0 + 5.0 * (cos_th - 1.0)  # 0 when upright at rest
    swing = 2.0 * jnp.sign(theta_dot) * (energy < 0)
    balance = -10.0 * theta - 2.0 * theta_dot
    return jnp.clip(jnp.where(cos_th > 0.85, balance, swing), -2.0, 2.0)[None]


SCRIPTED_EXPERTS = {"cartpole": cartpole_expert, "pendulum": pendulum_expert}
