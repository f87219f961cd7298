"""XLA flags this project needs on CPU, set in ``os.environ`` before JAX initialises its backend.

jaxlib 0.10.2's CPU runtime deadlocks (every thread waiting on a futex, 0% CPU, forever) when its
concurrency-optimised scheduler runs two batched QR decompositions side by side: exactly what
``jit(vmap(init))`` over seeds does with orthogonal initialisers of 256-wide layers. Minimal
reproduction (2-core machine): ``jit(vmap(lambda k: [orthogonal()(fold_in(k, i), (256, 256)) for i in
range(2)]))`` over 8 keys never returns; with ``--xla_cpu_enable_concurrency_optimized_scheduler=false``
it returns in about a second, as does every variant we tried (4 layers, 16 seeds, 512 wide). That
scheduler only reorders independent ops to overlap them, which buys little on a 2-core CPU, and the flag
is ignored by the GPU and TPU backends.

The flag is not the whole fix: 8 IQL seeds with 256-wide layers still deadlock in ``jit(vmap(init))``
with it. The runner therefore initialises seeds one at a time (``hybrid_rl.runner.init_one_by_one``: the
same numbers, bit for bit), which avoids every case we found; the flag stays for other programs that
vmap an orthogonal initialiser.

The second flag is for speed. XLA's CPU copy insertion by default cannot prove that, inside a loop body,
every read of a carried buffer happens before that buffer is updated in place, so it copies the whole
buffer, every iteration. A replay buffer is exactly that: each online step writes one row
(``dynamic-update-slice``) and samples a batch (``gather``; XLA even fuses the write into the gather and
so reads the old rows). Measured on jaxlib 0.10.2 (``benchmarks/replay_copies.py``): SAC's online loop
copied ``next_obs``, ``reward`` and ``terminated`` twice per step, at any capacity; on MuJoCo Hopper with
a 1M-transition buffer a step took 12.7 ms instead of 7.1 ms (medians).
``--xla_cpu_copy_insertion_use_region_analysis`` makes the analysis follow the regions of the loop, and the
copies go; the numbers are bit for bit the same (copies never change values). GPU and TPU backends ignore
``xla_cpu_*`` flags.

Importing this module (the ``hybrid_rl``, ``envs``, ``algorithms`` and script packages all do, first)
appends each flag unless ``XLA_FLAGS`` already names it, so a user's own choice wins.
"""

import os

CPU_FLAGS = (
    "--xla_cpu_enable_concurrency_optimized_scheduler=false",
    "--xla_cpu_copy_insertion_use_region_analysis=true",
)

# The same speed flag as a per-program option, off: ``jax.jit(f).lower(x).compile(compiler_options=...)``
# compiles one program as XLA's defaults would (the benchmarks give it to the programs of other codebases,
# which their users run without this project's flags).
XLA_DEFAULT_COPY_INSERTION = {"xla_cpu_copy_insertion_use_region_analysis": False}


def add_xla_flags(*flags: str) -> None:
    current = os.environ.get("XLA_FLAGS", "")
    for flag in flags:
        if flag.split("=")[0] not in current:
            current = (current + " " + flag).strip()
    os.environ["XLA_FLAGS"] = current


add_xla_flags(*CPU_FLAGS)
