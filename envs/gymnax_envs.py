"""gymnax's environments under short names.

Keyword overrides are applied to the env params with ``params.replace`` (for example
``env.kwargs.max_steps_in_episode=100``), and an unknown field is a clear error.
"""

from __future__ import annotations

import dataclasses

import gymnax

from envs.registry import EnvSpec, register_env


def apply_param_overrides(env_name: str, params, overrides: dict):
    """``params.replace(**overrides)`` with an error that names the bad field and lists the valid ones."""
    if not overrides:
        return params
    fields = {f.name for f in dataclasses.fields(params)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"env {env_name!r} has no parameter(s) {unknown}; its parameters are {sorted(fields)}"
        )
    return params.replace(**overrides)


def _gymnax_maker(gymnax_id: str, short_name: str):
    def make(**overrides):
        env, params = gymnax.make(gymnax_id)
        return env, apply_param_overrides(short_name, params, overrides)

    return make


# short name, gymnax id, action kind, description
_GYMNAX_ENVS = [
    ("cartpole", "CartPole-v1", "discrete", "Balance a pole on a cart; +1 per step, 500-step limit."),
    ("pendulum", "Pendulum-v1", "continuous", "Swing up and hold a pendulum; 1-D torque, 200-step limit."),
    ("acrobot", "Acrobot-v1", "discrete", "Swing a two-link arm above a line; -1 per step, 500-step limit."),
    ("mountaincar", "MountainCar-v0", "discrete", "Drive an under-powered car up a hill; -1 per step."),
    ("mountaincar_continuous", "MountainCarContinuous-v0", "continuous",
     "Continuous-force mountain car; +100 at the goal minus an action cost."),
    ("breakout", "Breakout-MinAtar", "discrete", "MinAtar Breakout, 10x10x4 binary image."),
    ("asterix", "Asterix-MinAtar", "discrete", "MinAtar Asterix, 10x10x4 binary image."),
    ("freeway", "Freeway-MinAtar", "discrete", "MinAtar Freeway, 10x10x7 binary image."),
    ("space_invaders", "SpaceInvaders-MinAtar", "discrete", "MinAtar Space Invaders, 10x10x6 binary image."),
    ("catch", "Catch-bsuite", "discrete", "bsuite Catch: move a paddle under a falling ball."),
    ("deepsea", "DeepSea-bsuite", "discrete", "bsuite DeepSea: a hard-exploration N x N grid (size 8)."),
    ("umbrella_chain", "UmbrellaChain-bsuite", "discrete", "bsuite UmbrellaChain: credit assignment."),
    ("memory_chain", "MemoryChain-bsuite", "discrete", "bsuite MemoryChain: remember a context bit."),
    ("four_rooms", "FourRooms-misc", "discrete", "Sutton's four-rooms grid world."),
    ("reacher", "Reacher-misc", "continuous", "Kinematic 2-joint arm reaching a goal (ivy_gym port)."),
    ("point_robot", "PointRobot-misc", "continuous", "Point robot navigating to a goal."),
]

for _short, _gid, _kind, _desc in _GYMNAX_ENVS:
    register_env(
        EnvSpec(
            name=_short,
            description=_desc,
            make=_gymnax_maker(_gid, _short),
            action_kind=_kind,
            tags=("gymnax",),
        )
    )
