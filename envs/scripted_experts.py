"""Hand-written controllers that are near-optimal on a few gymnax envs.

They give expert data without training anything (fast tests, and the reference "expert" return for
normalisation when no trained policy is at hand). Each maps one observation (and a key) to one env action
(an int for discrete envs, shape ``(action_dim,)`` for continuous ones), pure jnp, so they jit and vmap.
They assume the env's default parameters (gravity, goal, time step...), which the obs does not carry.

* ``cartpole``: 500/500.
* ``pendulum``: about -170 (SAC about -150).
* ``mountaincar_continuous``: about 97 (random about -33), reaching the goal in 175-200 of the 999 steps.
* ``reacher`` (gymnax Reacher-misc, 2 joints): about 73.5 per 100 steps (random about 15); open-loop
  trajectory optimisation from the same start states reaches about 1.5% more.

``SCRIPTED_EXPERTS`` maps env short names to them; the dataset builder looks a name up by its longest
prefix (``cartpole`` also serves ``cartpole_*`` variants).
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


# MountainCarContinuous-v0 (gymnax defaults): v += 0.0015 * force - 0.0025 * cos(3 x); goal x >= 0.45.
_MC_GRAVITY, _MC_GOAL = 0.0025, 0.45


def _mc_potential(position):
    """Potential energy per unit mass of the car: the hill is v' = -gravity * cos(3 x), so U = g/3 sin(3 x)."""
    return _MC_GRAVITY / 3.0 * jnp.sin(3.0 * position)


def mountaincar_continuous_expert(obs, key=None):
    """Energy pumping at force 0.45, coasting once the car has the energy to reach the goal: return ~97.

    Pushing along the velocity adds energy every step (there is no friction); at rest (the start) it pushes
    left first, which is faster from every start in [-0.6, -0.4]. The reward is +100 at the goal minus
    0.1 * force^2 per step and time costs nothing else, so a weaker push is cheaper per unit of energy: force
    0.45 reaches the goal in 175-200 steps with return ~97 (full force: ~90 steps, ~93.6; force 0.2 no longer
    makes it within 999 steps). Once moving right with energy above the goal's potential it coasts (force 0).
    """
    position, velocity = obs[0], obs[1]
    energy = 0.5 * velocity**2 + _mc_potential(position)
    push = jnp.where(velocity > 0, 0.45, -0.45)
    coast = (velocity > 0) & (energy > _mc_potential(_MC_GOAL))
    return jnp.where(coast, 0.0, push)[None]


def _wrap_angle(x):
    return (x + jnp.pi) % (2 * jnp.pi) - jnp.pi


def _min_time_to_origin(error, velocity):
    """Least time for x'' = u, |u| <= 1, to go from (error, velocity) to (0, 0) (bang-bang, one switch)."""
    switch = error + velocity * jnp.abs(velocity) / 2
    sign = jnp.where(switch >= 0, 1.0, -1.0)  # the first phase's push is -sign
    return sign * velocity + 2 * jnp.sqrt(jnp.maximum(velocity**2 / 2 + sign * error, 0.0))


def reacher_expert(obs, key=None):
    """Inverse kinematics to the goal, then near-time-optimal bang-bang control of each joint: ~73.5 / 100 steps.

    gymnax Reacher-misc (2 joints): obs = (cos a, sin a, da/dt, goal xy) with ``a`` the two links' absolute
    angles; the fingertip is (sum cos a, sum sin a) (unit links), reward exp(-|tip - goal|^2) per step over
    100 steps, and each joint is a double integrator: da/dt += 0.05 * action, action in [-1, 1] (the env
    does not clip it, so this does). Goals are uniform in [-2, 2]^2, some out of reach.

    The tip reaches a goal at distance r, bearing phi with link angles phi +- beta, beta = arccos(r / 2)
    (beta = 0, arm stretched toward it, when r >= 2). Of the two solutions (elbow either side) and the two
    ways round for each joint, it takes the one whose slower joint arrives first (least time of a
    double integrator with |u| <= 1) and drives each joint toward it along the braking curve
    v = -sign(e) sqrt(2 * 0.95 |e|). Open-loop trajectory optimisation (Adam through the dynamics) from
    the same start states gets about 1.5% more.
    """
    cos, sin, velocity, goal = obs[0:2], obs[2:4], obs[4:6], obs[6:8]
    angles = jnp.arctan2(sin, cos)
    phi = jnp.arctan2(goal[1], goal[0])
    beta = jnp.arccos(jnp.clip(jnp.linalg.norm(goal) / 2, 0.0, 1.0))
    targets = phi + jnp.array([[beta, -beta], [-beta, beta]])  # (solution, joint)
    short = _wrap_angle(angles - targets)
    errors = jnp.stack([short, short - 2 * jnp.pi * jnp.sign(short)])  # (way round, solution, joint)
    times = _min_time_to_origin(errors, velocity)
    way = jnp.argmin(times, axis=0)
    error = jnp.take_along_axis(errors, way[None], axis=0)[0]  # (solution, joint)
    best = jnp.argmin(jnp.max(jnp.min(times, axis=0), axis=1))
    target_velocity = -jnp.sign(error[best]) * jnp.sqrt(2 * 0.95 * jnp.abs(error[best]))
    return jnp.clip(10.0 * (target_velocity - velocity), -1.0, 1.0)


SCRIPTED_EXPERTS = {
    "cartpole": cartpole_expert,
    "pendulum": pendulum_expert,
    "mountaincar_continuous": mountaincar_continuous_expert,
    "reacher": reacher_expert,
}
