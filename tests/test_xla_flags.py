"""The project's XLA CPU flags (``hybrid_rl/xla_flags.py``) stay in force and keep doing their job: the CPU
deadlock of jaxlib 0.10.2 (two batched QR decompositions scheduled side by side) finishes in a fresh process,
and an online replay loop (write one row, sample a batch, every step) copies no buffer-sized array per
iteration."""

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

REPRO = """
import hybrid_rl  # sets XLA_FLAGS before the backend starts
import jax
init = jax.nn.initializers.orthogonal()
layers = lambda key: [init(jax.random.fold_in(key, i), (256, 256)) for i in range(2)]
jax.block_until_ready(jax.jit(jax.vmap(layers))(jax.random.split(jax.random.key(0), 8)))
print("done")
"""


def test_importing_hybrid_rl_sets_the_cpu_flags_and_keeps_the_users_choice(monkeypatch):
    from hybrid_rl import xla_flags

    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=true --foo=1 "
                                    "--xla_cpu_copy_insertion_use_region_analysis=false")
    xla_flags.add_xla_flags(*xla_flags.CPU_FLAGS)
    assert os.environ["XLA_FLAGS"] == ("--xla_cpu_enable_concurrency_optimized_scheduler=true --foo=1 "
                                       "--xla_cpu_copy_insertion_use_region_analysis=false")
    monkeypatch.setenv("XLA_FLAGS", "--foo=1")
    xla_flags.add_xla_flags(*xla_flags.CPU_FLAGS)
    assert os.environ["XLA_FLAGS"] == ("--foo=1 --xla_cpu_enable_concurrency_optimized_scheduler=false "
                                       "--xla_cpu_copy_insertion_use_region_analysis=true")


def test_vmapped_orthogonal_initialisers_do_not_deadlock_on_cpu():
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # exactly what a user's fresh shell has
    result = subprocess.run([sys.executable, "-c", REPRO], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and "done" in result.stdout, result.stderr[-2000:]


# ----------------------------------------------------------------------------------------------------
# No per-step copy of the replay buffer
# ----------------------------------------------------------------------------------------------------

CAPACITY = 4099  # a size no other array in these programs has, so a copy of the buffer is recognisable


def _sac_online_loop():
    """SAC's online iteration under ``lax.scan``, lowered (16-wide layers; the buffer holds CAPACITY rows)."""
    import jax

    from experiments.catalog import build_problem, default_hparams, get_algorithm

    spec = get_algorithm("sac")
    config = spec.config_cls(total_steps=CAPACITY, buffer_size=CAPACITY, warmup_steps=10, hidden_sizes=(16, 16),
                             batch_size=32)
    agent = spec.make(config, build_problem("pendulum"))
    online = agent.phases[1]
    state = jax.eval_shape(agent.init, jax.random.key(0), default_hparams(spec, config))
    step = lambda s, _: (online.iteration(s)[0], None)  # noqa: E731
    return jax.jit(lambda s: jax.lax.scan(step, s, None, length=3)[0]).lower(state)


def _write_then_sample_loop():
    """The bare pattern: every step samples a batch from the buffer, then writes one transition into it."""
    import jax
    import jax.numpy as jnp

    from hybrid_rl.buffers import buffer_add, buffer_init, buffer_sample
    from hybrid_rl.types import Transition

    def step(buffer, key):
        k_obs, k_batch = jax.random.split(key)
        batch = buffer_sample(buffer, k_batch, 32)
        # The new row does not depend on the batch: nothing orders the gather before the in-place write.
        obs = jax.random.normal(k_obs, (1, 3))
        new = Transition(obs=obs, action=obs[:, :1], reward=obs[:, 0], next_obs=2 * obs,
                         terminated=obs[:, 0] > 0, truncated=obs[:, 1] > 0)
        return buffer_add(buffer, new), jax.tree.map(jnp.sum, batch)

    buffer = buffer_init(Transition.zeros((3,), (1,)), CAPACITY)
    keys = jax.random.split(jax.random.key(0), 5)
    return jax.jit(lambda b, k: jax.lax.scan(step, b, k)).lower(buffer, keys)


def test_the_project_flags_ask_for_region_based_copy_insertion():
    import hybrid_rl  # noqa: F401  (sets the flags if this process had none)

    assert "--xla_cpu_copy_insertion_use_region_analysis=true" in os.environ["XLA_FLAGS"]


def test_online_loops_copy_no_replay_buffer_per_step():
    """With the project's flags, the compiled loops hold no buffer-sized copy; with XLA's default copy insertion
    the same programs copy the buffer every iteration (what the flag is for; benchmarks/replay_copies.py times it)."""
    from benchmarks.replay_copies import loop_copies
    from hybrid_rl.xla_flags import XLA_DEFAULT_COPY_INSERTION

    for lowered in (_sac_online_loop(), _write_then_sample_loop()):
        assert loop_copies(lowered.compile().as_text(), CAPACITY) == 0
        assert loop_copies(lowered.compile(compiler_options=XLA_DEFAULT_COPY_INSERTION).as_text(), CAPACITY) > 0
