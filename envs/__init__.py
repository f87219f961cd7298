"""JAX environments (gymnax interface) and their registry.

Importing this package registers every built-in environment.
"""

import hybrid_rl.xla_flags  # noqa: F401  (first: XLA flags must be set before JAX starts its backend)
from envs import (  # noqa: F401  (registers our envs)  # noqa: F401
    brax_envs,  # noqa: F401  (registers the Brax names; Brax itself is imported lazily)
    combination_lock,
    finite_mdp,
    gymnax_envs,  # noqa: F401  (registers gymnax's envs)
    linear_mdp,
    piecewise_stationary,
    sim_real,
)
from envs.registry import EnvSpec, get_env_spec, list_envs, make_env, register_env  # noqa: F401
