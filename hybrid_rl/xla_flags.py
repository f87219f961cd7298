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

Importing this module (the ``hybrid_rl``, ``envs``, ``algorithms`` and script packages all do, first)
appends the flag unless ``XLA_FLAGS`` already names it, so a user's own choice wins.
"""

import os

CPU_FLAGS = ("--xla_cpu_enable_concurrency_optimized_scheduler=false",)


def add_xla_flags(*flags: str) -> None:
    current = os.environ.get("XLA_FLAGS", "")
    for flag in flags:
        if flag.split("=")[0] not in current:
            current = (current + " " + flag).strip()
    os.environ["XLA_FLAGS"] = current


add_xla_flags(*CPU_FLAGS)
