"""The unrolled CPU lowering of Threefry-2x32 (hybrid_rl.threefry_cpu): the published hash, JAX's bits, no loop."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from hybrid_rl import threefry_cpu

# Known-answer vectors of Threefry-2x32 with 20 rounds (Random123, Salmon et al. 2011): (key, counter, output).
KNOWN_ANSWERS = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


def test_it_is_installed_on_import():
    assert threefry_cpu.INSTALLED


@pytest.mark.parametrize("key, count, expected", KNOWN_ANSWERS)
def test_the_hash_matches_the_published_known_answers(key, count, expected):
    words = [np.array([w], np.uint32) for w in (*key, *count)]
    out = threefry_cpu.threefry2x32_unrolled(*words)
    assert [int(o[0]) for o in out] == list(expected)
    # Through JAX's primitive, jitted: the lowering registered for CPU computes the same words.
    jitted = jax.jit(threefry_2x32)(jnp.array(key, jnp.uint32), jnp.array(count, jnp.uint32))
    assert [int(x) for x in jitted] == list(expected)


def _random_outputs(seed: int):
    """A jitted program of the common jax.random calls, traced fresh (a new function) every time."""

    def program(key):
        keys = jax.random.split(key, 5)
        return (jax.random.key_data(keys), jax.random.uniform(keys[0], (7,)),
                jax.random.normal(jax.random.fold_in(key, 3), (3, 4)), jax.random.randint(keys[1], (9,), 0, 100),
                jax.random.permutation(keys[2], 12), jax.vmap(lambda k: jax.random.normal(k, (3,)))(keys))

    compiled = jax.jit(program).lower(jax.random.key(seed)).compile()
    return compiled(jax.random.key(seed)), compiled.as_text()


def test_random_numbers_are_bit_identical_to_jax_own_lowering_and_loop_free():
    ours, ours_hlo = _random_outputs(42)
    with threefry_cpu.jax_rolled_lowering():
        theirs, theirs_hlo = _random_outputs(42)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert " while(" in theirs_hlo  # JAX's rolled loop, put back inside the block
    assert " while(" not in ours_hlo
    # The block restores the project's lowering on exit.
    _, again_hlo = _random_outputs(7)
    assert " while(" not in again_hlo


def test_the_environment_variable_keeps_jax_lowering():
    code = ("from hybrid_rl import threefry_cpu; import jax;"
            "hlo = jax.jit(lambda k: jax.random.uniform(k, (4,))).lower(jax.random.key(0)).compile().as_text();"
            "print(threefry_cpu.INSTALLED, ' while(' in hlo)")
    env = {**os.environ, threefry_cpu.ENV_VAR: "rolled"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True"]
