import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_rl.networks import (
    MLP,
    CategoricalPolicy,
    CriticEnsemble,
    TanhGaussianPolicy,
    mixed_matmul,
    tanh_gaussian_mode,
)


def test_critic_ensemble_shapes_and_independent_members():
    net = CriticEnsemble(num_critics=10, hidden_sizes=(8, 8), layer_norm=True)
    obs, act = jnp.ones((5, 3)), jnp.zeros((5, 2))
    params = net.init(jax.random.key(0), obs, act)
    q = net.apply(params, obs, act)
    assert q.shape == (10, 5)
    assert len(set(np.round(np.asarray(q[:, 0]), 5).tolist())) == 10  # members initialised differently
    leaf = jax.tree.leaves(params)[0]
    assert leaf.shape[0] == 10  # parameters carry the ensemble axis


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    net = TanhGaussianPolicy(action_dim=2, hidden_sizes=(8,))
    obs = jnp.linspace(-1, 1, 6).reshape(3, 2)
    params = net.init(jax.random.key(0), obs)
    dist = net.apply(params, obs)
    action, log_prob = dist.sample_and_log_prob(seed=jax.random.key(1))
    assert action.shape == (3, 2) and log_prob.shape == (3,)
    assert np.all(np.abs(action) < 1)
    base = dist.distribution
    u = jnp.arctanh(action)
    manual = base.log_prob(u) - jnp.sum(jnp.log(1 - action**2), axis=-1)
    np.testing.assert_allclose(log_prob, manual, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tanh_gaussian_mode(dist), jnp.tanh(base.mean()), rtol=1e-6)


def test_categorical_and_mlp():
    pi = CategoricalPolicy(num_actions=4, hidden_sizes=(8,))
    obs = jnp.ones((7, 3))
    dist = pi.apply(pi.init(jax.random.key(0), obs), obs)
    np.testing.assert_allclose(jnp.exp(dist.logits).sum(-1) / jnp.exp(dist.logits).sum(-1), 1.0)
    assert dist.sample(seed=jax.random.key(0)).shape == (7,)
    mlp = MLP((4, 4), 3, layer_norm=True)
    assert mlp.apply(mlp.init(jax.random.key(0), obs), obs).shape == (7, 3)


def _bf16(x):
    return np.asarray(jnp.asarray(x).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


def test_mixed_matmul_rounds_operands_to_bfloat16_and_accumulates_in_float32():
    # forward and input gradient on bfloat16-rounded operands; the weight gradient in float32
    x = jax.random.normal(jax.random.key(0), (2, 5, 7))  # a leading batch axis, as under a Dense on (B, T, d)
    w = jax.random.normal(jax.random.key(1), (7, 3))
    g = jax.random.normal(jax.random.key(2), (2, 5, 3))
    out, vjp = jax.vjp(jax.jit(mixed_matmul), x, w)
    dx, dw = vjp(g)
    assert out.dtype == dx.dtype == dw.dtype == jnp.float32
    # By hand, in float64 from the bfloat16-rounded operands: y = x w, dx = g w^T, dw = sum over rows x^T g.
    np.testing.assert_allclose(out, _bf16(x) @ _bf16(w), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, _bf16(g) @ _bf16(w).T, rtol=1e-5, atol=1e-5)
    x64, g64 = np.asarray(x, np.float64), np.asarray(g, np.float64)
    np.testing.assert_allclose(dw, x64.reshape(-1, 7).T @ g64.reshape(-1, 3), rtol=1e-5, atol=1e-5)
    # ... and not the float32 product: bfloat16 keeps 8 bits of mantissa
    assert not np.allclose(out, np.asarray(x, np.float64) @ np.asarray(w, np.float64), rtol=1e-5, atol=1e-5)


def test_bfloat16_networks_keep_float32_parameters_and_run_forward_products_in_bfloat16():
    net32 = CriticEnsemble(num_critics=2, hidden_sizes=(32, 32))
    net16 = CriticEnsemble(num_critics=2, hidden_sizes=(32, 32), matmul_dtype="bfloat16")
    obs, act = jax.random.normal(jax.random.key(0), (16, 3)), jnp.ones((16, 1))
    params = net32.init(jax.random.key(1), obs, act)
    assert jax.tree.structure(params) == jax.tree.structure(net16.init(jax.random.key(1), obs, act))

    def loss(net):
        return lambda p: jnp.sum(net.apply(p, obs, act) ** 2)

    grads16 = jax.jit(jax.grad(loss(net16)))(params)
    grads32 = jax.jit(jax.grad(loss(net32)))(params)
    q16, q32 = net16.apply(params, obs, act), net32.apply(params, obs, act)
    assert q16.dtype == jnp.float32 and float(jnp.linalg.norm(q16 - q32) / jnp.linalg.norm(q32)) < 0.01
    # Gradients reach the first layer through two rounded products per layer: a few percent, far below the
    # noise of a minibatch gradient (measured 0.2-6% here).
    for g16, g32 in zip(jax.tree.leaves(grads16), jax.tree.leaves(grads32)):
        assert g16.dtype == jnp.float32
        assert float(jnp.linalg.norm(g16 - g32) / jnp.linalg.norm(g32)) < 0.15
    # 3 layers x (forward, input gradient) in bfloat16, minus the first layer's input gradient; 3 weight
    # gradients in float32
    hlo = jax.jit(jax.grad(loss(net16))).lower(params).as_text()
    dots = [line for line in hlo.splitlines() if "stablehlo.dot_general" in line]
    assert len(dots) == 8 and sum("bf16" in line for line in dots) == 5, dots
    with pytest.raises(ValueError, match="unknown matmul_dtype 'float16'"):
        MLP((4,), 1, matmul_dtype="float16").init(jax.random.key(0), obs)
