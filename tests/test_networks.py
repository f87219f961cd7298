import jax
import jax.numpy as jnp
import numpy as np

from hybrid_rl.networks import MLP, CategoricalPolicy, CriticEnsemble, TanhGaussianPolicy, tanh_gaussian_mode


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
