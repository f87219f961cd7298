"""Replay buffer for online data, and the sampler that mixes it with an offline dataset.

Why not flashbax: its flat buffer stores a stream of observations and pairs step t with step t+1, so
with gymnax's automatic reset the pair that crosses an episode end holds the reset observation instead of
the true final one, and it cannot carry ``terminated`` apart from ``truncated`` without the extra
bookkeeping this file does anyway. A ring of whole transitions is ~40 lines, pure, vmaps over seeds with no
extra batch axis, and samples only over the filled part (Rejax's buffer samples over its whole
capacity, unfilled slots included). ``benchmarks/buffer_speed.py`` measures it.

Everything here is a pure function on a ``flax.struct`` pytree: ``jax.vmap`` over seeds gives one
independent buffer per seed; the offline dataset is a plain ``Transition`` shared by every seed
(``in_axes=None``), never copied.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct

from hybrid_rl.types import Transition


@struct.dataclass
class ReplayBuffer:
    data: Transition  # every leaf has a leading axis of length ``capacity``
    position: chex.Array  # int32: where the next transition goes
    size: chex.Array  # int32: how many slots hold data (<= capacity)

    @property
    def capacity(self) -> int:
        return self.data.reward.shape[0]


def buffer_init(example: Transition, capacity: int) -> ReplayBuffer:
    """An empty buffer whose slots have the shapes and dtypes of ``example`` (one unbatched transition)."""
    if capacity <= 0:
        raise ValueError(f"replay buffer capacity must be positive, got {capacity}")
    chex.assert_rank(example.reward, 0)
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + x.shape, x.dtype), example)
    return ReplayBuffer(data=data, position=jnp.int32(0), size=jnp.int32(0))


def buffer_add(buffer: ReplayBuffer, batch: Transition) -> ReplayBuffer:
    """Writes a batch of ``n`` transitions (leading axis n, e.g. one per parallel env), wrapping around."""
    n = batch.reward.shape[0]
    capacity = buffer.capacity
    if n > capacity:
        raise ValueError(f"cannot add {n} transitions at once to a buffer of capacity {capacity}")
    chex.assert_trees_all_equal_shapes_and_dtypes(
        jax.tree.map(lambda x: x[0], batch), jax.tree.map(lambda x: x[0], buffer.data)
    )
    idx = (buffer.position + jnp.arange(n)) % capacity
    data = jax.tree.map(lambda store, new: store.at[idx].set(new), buffer.data, batch)
    return ReplayBuffer(
        data=data,
        position=(buffer.position + n) % capacity,
        size=jnp.minimum(buffer.size + n, capacity),
    )


def buffer_sample(buffer: ReplayBuffer, key: chex.PRNGKey, batch_size: int) -> Transition:
    """Uniform sample (with replacement) over the filled slots only."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda x: x[idx], buffer.data)


def dataset_sample(dataset: Transition, key: chex.PRNGKey, batch_size: int) -> Transition:
    """Uniform sample (with replacement) from an offline dataset."""
    n = dataset.reward.shape[0]
    idx = jax.random.randint(key, (batch_size,), 0, n)
    return jax.tree.map(lambda x: x[idx], dataset)


def offline_batch_split(batch_size: int, offline_fraction: float) -> tuple[int, int]:
    """How many of ``batch_size`` come from the offline data and how many from the online buffer."""
    if not 0.0 <= offline_fraction <= 1.0:
        raise ValueError(f"offline_fraction must be in [0, 1], got {offline_fraction}")
    n_offline = int(round(batch_size * offline_fraction))
    return n_offline, batch_size - n_offline


def sample_mixed(
    key: chex.PRNGKey,
    online: ReplayBuffer | None,
    offline: Transition | None,
    batch_size: int,
    offline_fraction: float,
) -> Transition:
    """One batch with ``round(batch_size * offline_fraction)`` offline transitions, the rest online.

    0 = online only, 1 = offline only, 0.5 = RLPD's symmetric sampling. The fraction sets shapes, so it
    is a static (Python) number. Offline rows come first.
    """
    n_off, n_on = offline_batch_split(batch_size, offline_fraction)
    k_off, k_on = jax.random.split(key)
    parts = []
    if n_off:
        if offline is None:
            raise ValueError("offline_fraction > 0 but the problem has no offline dataset")
        parts.append(dataset_sample(offline, k_off, n_off))
    if n_on:
        if online is None:
            raise ValueError("offline_fraction < 1 but there is no online buffer")
        parts.append(buffer_sample(online, k_on, n_on))
    if len(parts) == 1:
        return parts[0]
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b.astype(a.dtype)], axis=0), *parts)
