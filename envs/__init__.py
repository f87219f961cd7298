"""JAX environments (gymnax interface) and their registry.

Importing this package registers every built-in environment.
"""

import hybrid_rl.xla_flags  # noqa: F401  (first: XLA flags must be set before JAX starts its backend)
from envs.registry import EnvSpec, get_env_spec, list_envs, make_env, register_env  # noqa: F401
from envs import gymnax_envs  # noqa: F401  (registers gymnax's envs)
from envs import combination_lock, linear_mdp, sim_real  # noqa: F401  (registers our envs)
from envs import finite_mdp, piecewise_stationary  # noqa: F401
from envs import brax_envs  # noqa: F401  (registers the Brax names; Brax itself is imported lazily)
from envs import mujoco_envs  # noqa: F401  (registers the MuJoCo names; MuJoCo itself is imported lazily)
