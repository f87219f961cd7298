import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_rl.buffers import buffer_add, buffer_init, buffer_sample, offline_batch_split, sample_mixed
from hybrid_rl.types import Transition


def _batch(values, obs_dim=2):
    values = jnp.asarray(values, jnp.float32)
    n = values.shape[0]
    return Transition(
        obs=jnp.tile(values[:, None], (1, obs_dim)),
        action=values[:, None],
        reward=values,
        next_obs=jnp.tile(values[:, None] + 0.5, (1, obs_dim)),
        terminated=jnp.zeros(n, bool),
        truncated=values > 100,
    )


EXAMPLE = Transition.zeros((2,), (1,))


def test_wraps_around_and_caps_size():
    buf = buffer_init(EXAMPLE, capacity=5)
    buf = buffer_add(buf, _batch([1, 2, 3]))
    assert int(buf.position) == 3 and int(buf.size) == 3
    buf = buffer_add(buf, _batch([4, 5, 6, 7]))
    # slots 3, 4 get 4, 5; then 6, 7 overwrite slots 0, 1
    np.testing.assert_array_equal(buf.data.reward, [6, 7, 3, 4, 5])
    assert int(buf.position) == 2 and int(buf.size) == 5
    np.testing.assert_array_equal(buf.data.next_obs[:, 0], [6.5, 7.5, 3.5, 4.5, 5.5])


def test_samples_only_filled_slots():
    buf = buffer_add(buffer_init(EXAMPLE, capacity=100), _batch([10, 11, 12]))
    batch = buffer_sample(buf, jax.random.key(0), 1000)
    assert set(np.unique(np.asarray(batch.reward)).tolist()) == {10.0, 11.0, 12.0}


def test_vmapped_buffers_are_independent():
    def fill(key):
        vals = jax.random.uniform(key, (8,))
        buf = buffer_add(buffer_init(EXAMPLE, 16), _batch(vals))
        return buffer_sample(buf, key, 32).reward.mean()

    means = jax.jit(jax.vmap(fill))(jax.random.split(jax.random.key(1), 4))
    assert len(set(np.round(np.asarray(means), 6).tolist())) == 4


@pytest.mark.parametrize("fraction,expected", [(0.0, (0, 8)), (0.5, (4, 4)), (1.0, (8, 0)), (0.25, (2, 6))])
def test_offline_fraction_split(fraction, expected):
    assert offline_batch_split(8, fraction) == expected
    offline = _batch(-jnp.arange(1, 21))
    buf = buffer_add(buffer_init(EXAMPLE, 10), _batch(jnp.arange(1, 6)))
    batch = sample_mixed(jax.random.key(0), buf, offline, 8, fraction)
    assert batch.reward.shape == (8,)
    n_off = int((batch.reward < 0).sum())
    assert n_off == expected[0]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="capacity"):
        buffer_init(EXAMPLE, 0)
    with pytest.raises(ValueError, match="offline_fraction"):
        offline_batch_split(8, 1.5)
    buf = buffer_init(EXAMPLE, 4)
    with pytest.raises(ValueError, match="no offline dataset"):
        sample_mixed(jax.random.key(0), buf, None, 8, 0.5)
    with pytest.raises(ValueError, match="at once"):
        buffer_add(buf, _batch(jnp.arange(5)))
