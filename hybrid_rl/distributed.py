"""One run over several processes (hosts): ``jax.distributed`` set-up and the host-side helpers the runner
needs when the seed axis is sharded over the devices of every process.

A multi-process run is one SPMD program: every process runs the same Python code, the seed axis is
sharded over ``jax.devices()`` (all devices of all processes), and each process holds only its own
devices' seeds. Metrics are small, so after every chunk they are all-gathered to every process (the
bookkeeping, the NaN check and the checkpoint's progress record are then identical everywhere); each
process writes the rows of its own seeds to ``metrics.process<i>.csv`` and process 0 writes the merged
files. Orbax checkpoints are written collectively (each process saves its own shards).

With one process every helper is the plain single-process operation, so the single-host runner is
unchanged.
"""

from __future__ import annotations

import os
from typing import Optional

import jax
import numpy as np


def _slurm_multi_task() -> bool:
    """Inside a SLURM job step of several tasks (``srun``, as submitit starts a job with several tasks). A
    batch script or an ``salloc`` shell is one process even when the allocation has many tasks: SLURM sets
    SLURM_STEP_NUM_TASKS only in the processes of an ``srun`` step."""
    return "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1


def initialized() -> bool:
    from jax._src import distributed as jax_distributed  # JAX exposes no public "is initialised" query

    return jax_distributed.global_state.client is not None


def initialize_from_argv(argv: list[str]) -> bool:
    """``initialize`` with ``coordinator=``, ``num_processes=`` and ``process_id=`` taken from command-line
    overrides (Hydra parses them later too; they must be read first, before any module touches a device)."""
    values = {}
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if sep and key in ("coordinator", "num_processes", "process_id") and value not in ("", "null"):
            values[key] = value
    for key in ("num_processes", "process_id"):
        if key in values:
            try:
                values[key] = int(values[key])
            except ValueError:
                raise ValueError(f"{key}={values[key]!r} is not an integer") from None
    return initialize(**values)


def initialize(coordinator: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None) -> bool:
    """Joins this process to a multi-process JAX job; returns whether there is more than one process.

    With ``coordinator`` (``host:port`` of process 0), ``num_processes`` and ``process_id`` given, those are
    used; without them, a SLURM step of several tasks is detected from its environment (JAX's own SLURM
    detection: the coordinator is the first node of the step). Otherwise this is a single-process run and
    nothing happens. Must run before anything touches a JAX device."""
    if initialized():
        return jax.process_count() > 1
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError("a multi-process run needs all of coordinator=<host:port>, num_processes=<n> and "
                         "process_id=<i> (or none of them, inside a SLURM step with several tasks)")
    if not any(given) and not _slurm_multi_task():
        return False
    if all(given) and not 0 <= int(process_id) < int(num_processes):
        raise ValueError(f"process_id={process_id} is not in [0, num_processes={num_processes})")
    # CPU processes exchange data through gloo (XLA's CPU client has no cross-process collectives
    # otherwise); GPU and TPU backends ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise ValueError("a multi-process run must join its JAX job before anything uses a device: give "
                         "coordinator=, num_processes= and process_id= on the command line of "
                         "`python -m experiments.run`, or import hybrid_rl.distributed first and call initialize()")
    if all(given):
        jax.distributed.initialize(coordinator_address=str(coordinator), num_processes=int(num_processes),
                                   process_id=int(process_id))
    else:
        jax.distributed.initialize()
    return jax.process_count() > 1


def is_primary() -> bool:
    return jax.process_index() == 0


def global_array(x, sharding):
    """``x`` (the same value on every process) as one array laid out by ``sharding`` over the devices of
    all processes; with one process, ``jax.device_put``. Typed PRNG keys keep their type."""
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(x)
        data = global_array(jax.random.key_data(x), sharding)
        return jax.jit(lambda d: jax.random.wrap_key_data(d, impl=impl), out_shardings=sharding)(data)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def fetch(tree):
    """Every leaf as a host numpy array of its full (global) value, on every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def local_seed_positions(mesh, num_seeds: int) -> list[int]:
    """Positions (0-based within the run) of the seeds this process holds, for a seed axis split evenly
    over ``mesh``'s devices in order; every position when there is no mesh."""
    if mesh is None:
        return list(range(num_seeds))
    devices = list(np.asarray(mesh.devices).ravel())
    per_device = num_seeds // len(devices)
    here = jax.process_index()
    return [j * per_device + k for j, d in enumerate(devices) if d.process_index == here for k in range(per_device)]


def broadcast_text(text: str, max_bytes: int = 4096) -> str:
    """Process 0's ``text`` on every process (e.g. a run directory named after process 0's clock)."""
    if jax.process_count() == 1:
        return text
    from jax.experimental import multihost_utils

    raw = text.encode()
    if len(raw) > max_bytes:
        raise ValueError(f"text of {len(raw)} bytes is longer than {max_bytes}")
    buffer = np.zeros(max_bytes + 1, np.uint8)  # NUL-terminated: the text ends at the first zero byte
    buffer[:len(raw)] = np.frombuffer(raw, np.uint8)
    out = np.asarray(multihost_utils.broadcast_one_to_all(buffer))
    return out.tobytes().split(b"\0", 1)[0].decode()
