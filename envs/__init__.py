"""JAX environments (gymnax interface) and their registry.

Importing this package registers every built-in environment (Brax and MuJoCo names are registered always;
the simulators themselves are imported only when one of their envs is built).
"""

import hybrid_rl.xla_flags  # noqa: F401  (first: XLA flags must be set before JAX starts its backend)
from envs import (  # noqa: F401  (each module registers its envs)
    brax_envs,
    combination_lock,
    finite_mdp,
    gymnax_envs,
    linear_mdp,
    mujoco_envs,
    piecewise_stationary,
    sim_real,
)
from envs.registry import EnvSpec, get_env_spec, list_envs, make_env, register_env  # noqa: F401
