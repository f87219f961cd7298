"""Networks shared by every algorithm: MLPs, critic ensembles and policy heads (distrax).

Critic ensembles use ``nn.vmap`` over parameters, so 2 twin critics and RLPD's 10 LayerNorm critics are
one module whose parameters carry a leading ensemble axis and whose forward pass is one batched matmul.

``matmul_dtype="bfloat16"`` (every network here takes it) runs the Dense layers' forward products and their
input-gradient products on bfloat16 operands with float32 accumulation; the weight gradients, parameters,
activations and optimizer state stay float32. This is the precision a TPU gives float32 matmuls by default, and
on CPUs with AVX-512 BF16 and on GPUs it is the faster kernel (docs/speed.md has the measurements). XLA's CPU
backend ignores JAX's ``precision`` argument, so the operands are cast explicitly, and the backward pass has its
own rule (``mixed_matmul``): JAX's transpose of a mixed-dtype product would run the gradient products in float32.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_ACTIVATIONS: dict[str, Callable] = {"relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu, "silu": nn.silu}


def activation(name: str) -> Callable:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


MATMUL_DTYPES = ("float32", "bfloat16")


def check_matmul_dtype(name: str) -> str:
    if name not in MATMUL_DTYPES:
        raise ValueError(f"unknown matmul_dtype {name!r}; choose from {list(MATMUL_DTYPES)}")
    return name


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def mixed_matmul(x: jax.Array, w: jax.Array, dtype=jnp.bfloat16) -> jax.Array:
    """``x[..., in] @ w[in, out]`` with ``dtype`` operands and float32 accumulation, in the inputs' dtype."""
    out = lax.dot_general(x.astype(dtype), w.astype(dtype), (((x.ndim - 1,), (0,)), ((), ())),
                          preferred_element_type=jnp.float32)
    return out.astype(jnp.result_type(x, w))


def _mixed_matmul_fwd(x, w, dtype):
    return mixed_matmul(x, w, dtype), (x, w)


def _mixed_matmul_bwd(dtype, residuals, g):
    # dx = g w^T on ``dtype`` operands with float32 accumulation; dw = x^T g in float32 (below).
    x, w = residuals
    g_low = g.astype(dtype)
    # Written as plain [m, k] x [k, n] products (explicit transposes, which XLA folds under jit): XLA's CPU
    # runtime runs other contractions of bfloat16 operands into float32 only inside a compiled program.
    dx = lax.dot_general(g_low, w.astype(dtype).T, (((g.ndim - 1,), (0,)), ((), ())),
                         preferred_element_type=jnp.float32)
    # The weight gradient stays float32: XLA folds its transpose into a product over the batch rows, which its
    # CPU runtime cannot run on bfloat16 operands once seeds are vmapped (a batched dot outside any fusion).
    dw = lax.dot_general(x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1]), (((0,), (0,)), ((), ())),
                         preferred_element_type=jnp.float32)
    return dx.astype(x.dtype), dw.astype(w.dtype)


mixed_matmul.defvjp(_mixed_matmul_fwd, _mixed_matmul_bwd)


def _bfloat16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    # The one contraction flax's Dense asks for: the input's last axis with the kernel's first.
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    if tuple(lhs_contract) != (lhs.ndim - 1,) or tuple(rhs_contract) != (0,) or lhs_batch or rhs_batch:
        raise ValueError(f"bfloat16 matmuls support Dense's contraction only, got {dimension_numbers}")
    return mixed_matmul(lhs, rhs, jnp.bfloat16)


def dense(features: int, kernel_init, matmul_dtype: str = "float32", **kwargs) -> nn.Dense:
    """``nn.Dense`` whose product runs in ``matmul_dtype`` (float32: flax's own)."""
    dot_general: Optional[Callable] = None
    if check_matmul_dtype(matmul_dtype) == "bfloat16":
        dot_general = _bfloat16_dot_general
    return nn.Dense(features, kernel_init=kernel_init, dot_general=dot_general, **kwargs)


class MLP(nn.Module):
    """Dense layers with an activation after each hidden layer, optional LayerNorm before it."""

    hidden_sizes: Sequence[int] = (256, 256)
    output_size: int | None = None
    layer_norm: bool = False
    activation: str = "relu"
    output_scale: float = 1.0  # scale of the last layer's init (small for policy heads)
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, x):
        act = activation(self.activation)
        for width in self.hidden_sizes:
            x = dense(width, nn.initializers.orthogonal(jnp.sqrt(2.0)), self.matmul_dtype)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        if self.output_size is not None:
            x = dense(self.output_size, nn.initializers.orthogonal(self.output_scale), self.matmul_dtype)(x)
        return x


class QNetwork(nn.Module):
    """Q(s, a) for continuous actions: an MLP on the concatenation [s, a]."""

    hidden_sizes: Sequence[int] = (256, 256)
    layer_norm: bool = False
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        return MLP(self.hidden_sizes, 1, self.layer_norm, output_scale=1.0, matmul_dtype=self.matmul_dtype)(x)[..., 0]


class CriticEnsemble(nn.Module):
    """``num_critics`` independent Q networks; returns Q values of shape (num_critics, *batch)."""

    num_critics: int = 2
    hidden_sizes: Sequence[int] = (256, 256)
    layer_norm: bool = False
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, obs, action):
        ensemble = nn.vmap(
            QNetwork,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_critics,
        )
        return ensemble(self.hidden_sizes, self.layer_norm, self.matmul_dtype)(obs, action)


class DiscreteCriticEnsemble(nn.Module):
    """Q(s, ·) for discrete actions: shape (num_critics, *batch, num_actions)."""

    num_actions: int
    num_critics: int = 2
    hidden_sizes: Sequence[int] = (256, 256)
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs):
        ensemble = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_critics,
        )
        return ensemble(self.hidden_sizes, self.num_actions, self.layer_norm)(obs)


class TanhGaussianPolicy(nn.Module):
    """pi(a|s) = tanh(N(mu(s), diag sigma(s)^2)), actions in [-1, 1]^d.

    The log-density includes the exact tanh log-determinant (distrax's Tanh bijector uses the stable
    form 2(log 2 - x - softplus(-2x))). ``log_std`` is clamped to [log_std_min, log_std_max].
    """

    action_dim: int
    hidden_sizes: Sequence[int] = (256, 256)
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    layer_norm: bool = False
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, obs) -> distrax.Distribution:
        h = MLP(self.hidden_sizes, None, self.layer_norm, matmul_dtype=self.matmul_dtype)(obs)
        mean = dense(self.action_dim, nn.initializers.orthogonal(0.01), self.matmul_dtype)(h)
        log_std = dense(self.action_dim, nn.initializers.orthogonal(0.01), self.matmul_dtype)(h)
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        base = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
        return distrax.Transformed(base, distrax.Block(distrax.Tanh(), ndims=1))


def tanh_gaussian_mode(dist: distrax.Distribution) -> jax.Array:
    """Deterministic action of a tanh-Gaussian: tanh of the Gaussian's mean (used for evaluation)."""
    return jnp.tanh(dist.distribution.mean())


class CategoricalPolicy(nn.Module):
    """pi(a|s) = softmax(logits(s)) over ``num_actions`` actions."""

    num_actions: int
    hidden_sizes: Sequence[int] = (256, 256)
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs) -> distrax.Distribution:
        logits = MLP(self.hidden_sizes, self.num_actions, self.layer_norm, output_scale=0.01)(obs)
        return distrax.Categorical(logits=logits)


class Temperature(nn.Module):
    """SAC's entropy temperature alpha = exp(log_alpha), a single learned scalar."""

    initial_value: float = 1.0

    @nn.compact
    def __call__(self):
        log_alpha = self.param("log_alpha", lambda _: jnp.full((), jnp.log(self.initial_value)))
        return jnp.exp(log_alpha)
