"""Networks shared by every algorithm: MLPs, critic ensembles and policy heads (distrax).

Critic ensembles use ``nn.vmap`` over parameters, so 2 twin critics and RLPD's 10 LayerNorm critics are
one module whose parameters carry a leading ensemble axis and whose forward pass is one batched matmul.
"""

from __future__ import annotations

from typing import Callable, Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

_ACTIVATIONS: dict[str, Callable] = {"relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu, "silu": nn.silu}


def activation(name: str) -> Callable:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


class MLP(nn.Module):
    """Dense layers with an activation after each hidden layer, optional LayerNorm before it."""

    hidden_sizes: Sequence[int] = (256, 256)
    output_size: int | None = None
    layer_norm: bool = False
    activation: str = "relu"
    output_scale: float = 1.0  # scale of the last layer's init (small for policy heads)

    @nn.compact
    def __call__(self, x):
        act = activation(self.activation)
        for width in self.hidden_sizes:
            x = nn.Dense(width, kernel_init=nn.initializers.orthogonal(jnp.sqrt(2.0)))(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        if self.output_size is not None:
            x = nn.Dense(self.output_size, kernel_init=nn.initializers.orthogonal(self.output_scale))(x)
        return x


class QNetwork(nn.Module):
    """Q(s, a) for continuous actions: an MLP on the concatenation [s, a]."""

    hidden_sizes: Sequence[int] = (256, 256)
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        return MLP(self.hidden_sizes, 1, self.layer_norm, output_scale=1.0)(x)[..., 0]


class CriticEnsemble(nn.Module):
    """``num_critics`` independent Q networks; returns Q values of shape (num_critics, *batch)."""

    num_critics: int = 2
    hidden_sizes: Sequence[int] = (256, 256)
    layer_norm: bool = False

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
        return ensemble(self.hidden_sizes, self.layer_norm)(obs, action)


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

    @nn.compact
    def __call__(self, obs) -> distrax.Distribution:
        h = MLP(self.hidden_sizes, None, self.layer_norm)(obs)
        mean = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(0.01))(h)
        log_std = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(0.01))(h)
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
