"""Unit tests of the anchors' reimplementations in ``benchmarks/anchors_impl`` (hand-checked cases)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from benchmarks.anchors_impl import unifloral_offline as uo

OBS_DIM, ACTION_DIM = 4, 3


def _nets(hidden=8):
    mean, std = jnp.zeros(OBS_DIM), jnp.ones(OBS_DIM)
    return uo.DeterministicTanhActor(ACTION_DIM, mean, std, hidden), uo.TwinQNetwork(mean, std, hidden)


def _constant_params(net, inputs, final_bias=None):
    """All parameters zero, so the network outputs its last layer's bias whatever the input; for the twin Q,
    ``final_bias[i]`` is member i's output."""
    params = jax.tree.map(jnp.zeros_like, net.init(jax.random.PRNGKey(0), *inputs))
    if final_bias is None:
        return params
    members = params["params"]["VmapQNetwork_0"]
    last = sorted(k for k in members if k.startswith("Dense_"))[-1]
    members[last]["bias"] = jnp.asarray(final_bias, jnp.float32).reshape(members[last]["bias"].shape)
    return params


def test_td3_bc_actor_loss_by_hand():
    # pi(s) = tanh(0) = 0 everywhere; Q_1 = 4 and Q_2 = -2 everywhere. Then lambda = 2.5 / 4, the Q term is
    # -lambda * 4 = -2.5 (Q_1 only: with min(Q_1, Q_2) it would be +2.5), and BC = mean over batch and action
    # dimensions of a^2 = (0.25 + 1 + 0 + 1 + 1 + 1) / 6.
    actor_net, q_net = _nets()
    obs = jnp.array([[1.0, -2.0, 0.5, 3.0], [0.0, 1.0, -1.0, 2.0]])
    action = jnp.array([[0.5, -1.0, 0.0], [1.0, 1.0, 1.0]])
    actor_params = _constant_params(actor_net, [obs[0]])
    q_params = _constant_params(q_net, [obs[0], action[0]], final_bias=[4.0, -2.0])
    loss, (q_mean, lmbda, bc) = jax.jit(lambda a, q: uo.td3_bc_actor_loss(a, q, obs, action, actor_net, q_net, 2.5))(
        actor_params, q_params)
    assert float(q_mean) == pytest.approx(4.0)
    assert float(lmbda) == pytest.approx(2.5 / 4.0)
    assert float(bc) == pytest.approx(4.25 / 6)
    assert float(loss) == pytest.approx(-2.5 + 4.25 / 6)


def test_td3_bc_targets_take_the_smaller_target_q_and_stop_at_done():
    # Target Q members output 4 and -2 whatever the (noised) action: y = r + 0.99 (1 - done) (-2).
    actor_net, q_net = _nets()
    batch = uo.OfflineData(obs=jnp.zeros((2, OBS_DIM)), action=jnp.zeros((2, ACTION_DIM)),
                           reward=jnp.array([1.0, 0.5]), next_obs=jnp.ones((2, OBS_DIM)), done=jnp.array([0.0, 1.0]))
    actor_params = _constant_params(actor_net, [batch.obs[0]])
    q_params = _constant_params(q_net, [batch.obs[0], batch.action[0]], final_bias=[4.0, -2.0])
    targets = jax.jit(lambda k, a, q: uo.td3_bc_targets(k, a, q, batch, actor_net, q_net, uo.TD3BCConfig()))
    y = targets(jax.random.PRNGKey(1), actor_params, q_params)
    assert jnp.allclose(y, jnp.array([1.0 - 0.99 * 2.0, 0.5]))


def test_td3_bc_train_step_is_two_critic_updates_and_one_actor_update():
    n = 64
    keys = jax.random.split(jax.random.PRNGKey(2), 4)
    data = uo.OfflineData(obs=jax.random.normal(keys[0], (n, OBS_DIM)),
                          action=jax.random.uniform(keys[1], (n, ACTION_DIM), minval=-1, maxval=1),
                          reward=jax.random.normal(keys[2], (n,)), next_obs=jax.random.normal(keys[3], (n, OBS_DIM)),
                          done=jnp.zeros(n))
    init, train_step = uo.make_td3_bc(uo.TD3BCConfig(hidden=8, batch_size=16), data)
    agent = init(jax.random.PRNGKey(3))
    assert jax.tree.all(jax.tree.map(jnp.array_equal, agent.actor.params, agent.actor_target.params))
    (_, agent), losses = jax.jit(lambda c: jax.lax.scan(train_step, c, None, 3))((jax.random.PRNGKey(4), agent))
    assert (int(agent.dual_q.step), int(agent.actor.step)) == (6, 3)
    assert (int(agent.dual_q_target.step), int(agent.actor_target.step)) == (3, 3)
    assert losses["actor_loss"].shape == (3,) and bool(jnp.all(jnp.isfinite(losses["q_loss"])))
    with pytest.raises(ValueError, match="num_critic_updates_per_step"):
        uo.make_td3_bc(uo.TD3BCConfig(num_critic_updates_per_step=0), data)
