"""Threefry-2x32 lowered as straight-line code on CPU: the same random bits, without a loop per call.

Every ``jax.random`` call (split, fold_in, uniform, normal, randint, permutation ...) hashes counters with
Threefry-2x32 (20 rounds). On CPU, JAX lowers that hash as a ``while`` loop of 5 trips, to keep compile
times down; XLA's CPU runtime then executes each trip as a chain of small kernels plus copies of the loop
carry. Inside an RL loop that steps a few envs at a time, those loops dominate: profiling PPO on CartPole
(4 envs, PureJaxRL's settings) showed every environment step's auto-reset sample running 5 trips of about 20
kernels, and the env step costing 2.8x what it costs with the hash unrolled. Unrolled, the 20 rounds are
elementwise integer ops that XLA fuses into one kernel.

This module registers, for the CPU platform only, a lowering of JAX's ``threefry2x32`` primitive that writes
the 20 rounds out, emitted as an out-of-line function (as JAX does on GPU) so a program with many random
calls does not inline one copy each. The hash is the Threefry-2x32-20 function of Salmon et al. (SC 2011),
the one JAX computes, so every random number is bit-identical to JAX's own CPU lowering
(``tests/test_threefry_cpu.py`` checks the published known-answer vectors and ``jax.random`` outputs
against a process that keeps JAX's lowering). Accelerators are untouched.

Importing ``hybrid_rl`` installs it. Set ``HYBRID_RL_THREEFRY_CPU=rolled`` before importing to keep JAX's
rolled lowering (for comparison, or if a future JAX changes the primitive).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import numpy as np

ENV_VAR = "HYBRID_RL_THREEFRY_CPU"

# Threefry-2x32 rotation constants, used in two alternating groups of 4 rounds.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
# Key-schedule parity constant of Threefry's 32-bit variant.
_KEY_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x, bits: int):
    return (x << np.uint32(bits)) | (x >> np.uint32(32 - bits))


def threefry2x32_unrolled(key0, key1, count0, count1):
    """Threefry-2x32-20 of the counter words (count0, count1) under the key (key0, key1), all uint32 arrays
    (broadcast together); returns the two output words. Five groups of four mix rounds, a key injection
    after each group (the key words rotate through the 3-word schedule, plus the group's index)."""
    schedule = (key0, key1, key0 ^ key1 ^ _KEY_PARITY)
    x0 = count0 + schedule[0]
    x1 = count1 + schedule[1]
    for group in range(5):
        for bits in _ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, bits) ^ x0
        x0 = x0 + schedule[(group + 1) % 3]
        x1 = x1 + schedule[(group + 2) % 3] + np.uint32(group + 1)
    return x0, x1


def _cpu_rules() -> dict:
    """JAX's table of CPU-specific lowering rules (private: only read to put JAX's own rule back)."""
    from jax._src.interpreters import mlir as mlir_internal

    return mlir_internal._platform_specific_lowerings["cpu"]


_JAX_RULE: Any = None  # JAX's own CPU rule, kept when ours replaces it


def install() -> bool:
    """Registers the unrolled CPU lowering unless ``$HYBRID_RL_THREEFRY_CPU`` is ``rolled``; returns whether
    it is installed. Safe to call more than once."""
    global _JAX_RULE
    if os.environ.get(ENV_VAR, "").strip().lower() == "rolled":
        return False
    from jax.extend.random import threefry2x32_p
    from jax.interpreters import mlir

    if _JAX_RULE is None:
        try:
            _JAX_RULE = _cpu_rules().get(threefry2x32_p)
        except (ImportError, AttributeError, KeyError):
            _JAX_RULE = None
    rule = mlir.lower_fun(threefry2x32_unrolled, multiple_results=True)
    mlir.register_lowering(threefry2x32_p, rule, platform="cpu", inline=False)
    return True


@contextlib.contextmanager
def jax_rolled_lowering() -> Iterator[None]:
    """Programs lowered inside this block use JAX's own (rolled) CPU lowering again, as a program written
    without this project gets it; ours is back afterwards. For benchmarks that time another codebase as
    its users run it. Lowering happens at ``jit(f).lower(...)`` (or a first call), so lower inside."""
    if not INSTALLED:
        yield
        return
    from jax.extend.random import threefry2x32_p

    if _JAX_RULE is None:
        raise RuntimeError("JAX's own threefry2x32 CPU lowering was not found in this JAX version, so it cannot "
                           f"be restored; run with {ENV_VAR}=rolled to use it everywhere")
    rules = _cpu_rules()
    ours = rules[threefry2x32_p]
    rules[threefry2x32_p] = _JAX_RULE
    try:
        yield
    finally:
        rules[threefry2x32_p] = ours


INSTALLED = install()
