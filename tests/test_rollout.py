"""The env-rollout primitive (``hybrid_rl.rollout``) and the hygiene wrappers (``hybrid_rl.wrappers``).

Hand-checked cases on a tiny counting env, and bit-identity of the primitive against hand-written loops of
the two key layouts it keeps (the loops the evaluation and the dataset rollouts had before they moved onto
it): moving a loop onto the primitive must not change a single random draw.
"""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from hybrid_rl.env_spec import EnvSpec
from hybrid_rl.evaluation import evaluate_policy
from hybrid_rl.problem import problem_for_env
from hybrid_rl.rollout import per_env, reset_batch, rollout, split_per_env, split_policy_env, step_batch
from hybrid_rl.training import reset_envs, step_envs
from hybrid_rl.wrappers import EpisodeStatistics, FlatObservations, MappedActions, scale_action, scaled_actions


@struct.dataclass
class CountState:
    time: jnp.ndarray
    start: jnp.ndarray


@struct.dataclass
class CountParams:
    end_at: int = 3  # terminates after this many steps
    max_steps_in_episode: int = 100


class CountingEnv(environment.Environment):
    """obs = (2, 2) int32 grid filled with the step count plus a random start in {0..9}; reward = action;
    terminated after ``end_at`` steps."""

    @property
    def default_params(self):
        return CountParams()

    def _obs(self, state):
        return jnp.full((2, 2), state.time + state.start, jnp.int32)

    def reset_env(self, key, params):
        state = CountState(time=jnp.int32(0), start=jax.random.randint(key, (), 0, 10))
        return self._obs(state), state

    def step_env(self, key, state, action, params):
        state = state.replace(time=state.time + 1)
        terminated = state.time >= params.end_at
        return self._obs(state), state, jnp.asarray(action, jnp.float32).sum(), terminated, {}

    def action_space(self, params=None):
        return spaces.Box(0.0, 2.0, (2,), jnp.float32)


ENV, PARAMS = CountingEnv(), CountParams()


def test_key_layouts_are_the_documented_splits():
    key = jax.random.key(3)
    k_policy, env_keys = split_policy_env(key, 4)
    k_a, k_e = jax.random.split(key)
    np.testing.assert_array_equal(jax.random.key_data(k_policy), jax.random.key_data(k_a))
    np.testing.assert_array_equal(jax.random.key_data(env_keys), jax.random.key_data(jax.random.split(k_e, 4)))
    policy_keys, env_keys = split_per_env(key, 4)
    both = jax.random.key_data(jax.random.split(key, 8))
    np.testing.assert_array_equal(jax.random.key_data(policy_keys), both[:4])
    np.testing.assert_array_equal(jax.random.key_data(env_keys), both[4:])


def test_step_batch_stores_the_true_last_observation_and_resets():
    obs, state = reset_batch(ENV, PARAMS, jax.random.key(0), 3)
    assert obs.shape == (3, 2, 2)
    keys = jax.random.split(jax.random.key(1), 3)
    for t in range(3):
        action = jnp.full((3, 2), 0.5 * t)
        next_obs, state, tr, info = step_batch(ENV, PARAMS, keys, state, obs, action)
        np.testing.assert_array_equal(tr.reward, np.full(3, 1.0 * t))
        np.testing.assert_array_equal(tr.action, action)
        assert tr.obs.dtype == jnp.float32 and tr.next_obs.dtype == jnp.float32
        np.testing.assert_array_equal(tr.next_obs, obs + 1)  # the step's own next observation
        obs = next_obs
    assert bool(tr.terminated.all()) and not bool(tr.truncated.any())
    np.testing.assert_array_equal(state.time, 0)  # auto-reset after the third step


def test_rollout_scans_policy_with_step_index_and_aux():
    seen = []

    def policy(obs, env_state, t, key):
        seen.append(t)
        return jnp.ones((2, 2)) * t, obs[:, 0, 0] * 2

    (obs, state), (tr, info, aux) = rollout(ENV, PARAMS, policy, jax.random.key(0), 2, 5, info_keys=("terminated",))
    assert tr.reward.shape == (5, 2) and aux.shape == (5, 2) and info["terminated"].shape == (5, 2)
    np.testing.assert_array_equal(tr.reward[:, 0], 2.0 * np.arange(5))  # action t in both dimensions
    np.testing.assert_array_equal(info["terminated"][:, 0], [False, False, True, False, False])
    np.testing.assert_array_equal(aux, 2 * tr.obs[:, :, 0, 0])
    _, nothing = rollout(ENV, PARAMS, policy, jax.random.key(0), 2, 5, record=False)
    assert nothing is None


def test_flat_observations_flatten_and_cast_both_observations():
    env = FlatObservations(ENV, (2, 2))
    obs, state = env.reset(jax.random.key(0), PARAMS)
    assert obs.shape == (4,) and obs.dtype == jnp.float32
    _, _, _, _, _, info = env.step(jax.random.key(1), state, jnp.zeros(2), PARAMS)
    assert info["final_observation"].shape == (4,) and info["final_observation"].dtype == jnp.float32
    np.testing.assert_array_equal(info["final_observation"], obs + 1)
    assert env.action_space(PARAMS).shape == (2,)  # everything else is the wrapped env's


def test_scaled_and_mapped_actions():
    low, high = np.array([0.0, -2.0], np.float32), np.array([4.0, 2.0], np.float32)
    np.testing.assert_allclose(scale_action(jnp.array([-1.0, 0.5]), low, high), [0.0, 1.0])
    np.testing.assert_allclose(scale_action(jnp.array([3.0, -7.0]), low, high), [4.0, -2.0])  # clipped first
    _, state = ENV.reset(jax.random.key(0), PARAMS)
    reward = scaled_actions(ENV, low, high).step(jax.random.key(1), state, jnp.array([0.0, 0.0]), PARAMS)[2]
    assert float(reward) == 2.0  # env action (2, 0)
    doubled = MappedActions(ENV, lambda a: 2 * a)
    assert float(doubled.step(jax.random.key(1), state, jnp.array([1.0, 0.5]), PARAMS)[2]) == 3.0


def test_episode_statistics_running_and_first_episode():
    env = EpisodeStatistics(ENV)
    obs, state = env.reset(jax.random.key(0), PARAMS)
    rewards = [1.0, 2.0, 3.0, 4.0, 5.0]  # the first episode ends after 3 steps with return 6
    for t, r in enumerate(rewards):
        obs, state, reward, term, trunc, info = env.step(jax.random.key(t), state, jnp.array([r, 0.0]), PARAMS)
        if t == 2:
            assert bool(term) and float(info["episode_return"]) == 6.0 and int(info["episode_length"]) == 3
    assert float(state.first_return) == 6.0 and int(state.first_length) == 3 and not bool(state.first_running)
    assert float(state.episode_return) == 9.0 and int(state.episode_length) == 2  # the second episode so far


def _reference_evaluation(act, env, env_params, key, num_episodes, max_steps):
    """The evaluation loop as it was written by hand (policy and env keys: the halves of split(k, 2n))."""
    reset_key, run_key = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, num_episodes), env_params)

    def step(carry, step_key):
        obs, env_state, ret, length, alive = carry
        act_keys, env_keys = jnp.split(jax.random.split(step_key, 2 * num_episodes), 2)
        action = jax.vmap(act)(obs, act_keys)
        obs, env_state, reward, terminated, truncated, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            env_keys, env_state, action, env_params)
        ret = ret + jnp.where(alive, reward, 0.0)
        length = length + alive.astype(jnp.int32)
        return (obs, env_state, ret, length, alive & ~(terminated | truncated)), None

    init = (obs, env_state, jnp.zeros(num_episodes), jnp.zeros(num_episodes, jnp.int32), jnp.ones(num_episodes, bool))
    (_, _, returns, lengths, _), _ = jax.lax.scan(step, init, jax.random.split(run_key, max_steps))
    return returns, lengths


def _reference_rollout(act, env, env_params, key, num_envs, num_steps):
    """A dataset rollout as it was written by hand (k_act, k_env = split(k); one key per env from each)."""
    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_envs), env_params)

    def step(carry, k):
        obs, state = carry
        k_act, k_env = jax.random.split(k)
        action = jax.vmap(act)(obs, jax.random.split(k_act, num_envs))
        nobs, state, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_env, num_envs), state, action, env_params)
        return (nobs, state), (obs, action, reward, terminated, truncated, info["final_observation"])

    return jax.lax.scan(step, (obs, state), jax.random.split(k_run, num_steps))[1]


def _pendulum():
    env, params = gymnax.make("Pendulum-v1")
    return env, params, lambda obs, key: jax.random.uniform(key, (1,), minval=-2.0, maxval=2.0) + 0.1 * obs[:1]


def test_evaluation_draws_exactly_as_the_hand_written_loop():
    env, params, act = _pendulum()
    for seed in range(2):
        want = jax.jit(lambda k: _reference_evaluation(act, env, params, k, 5, 60))(jax.random.key(seed))
        got = jax.jit(lambda k: evaluate_policy(act, env, params, k, 5, 60))(jax.random.key(seed))
        for w, g in zip(want, got):
            np.testing.assert_array_equal(np.asarray(w), np.asarray(g))
            assert w.dtype == g.dtype


def test_rollout_draws_exactly_as_the_hand_written_loop():
    env, params, act = _pendulum()
    want = jax.jit(lambda k: _reference_rollout(act, env, params, k, 3, 40))(jax.random.key(4))
    got = jax.jit(lambda k: rollout(env, params, per_env(act, 3), k, 3, 40)[1][0])(jax.random.key(4))
    for w, g in zip(want, (got.obs, got.action, got.reward, got.terminated, got.truncated, got.next_obs)):
        np.testing.assert_array_equal(np.asarray(w), np.asarray(g))


def test_agent_env_steps_flat_scaled_and_reports_finished_returns():
    spec = EnvSpec(name="counting", description="test env", make=lambda **_: (ENV, PARAMS), action_kind="continuous")
    problem = problem_for_env("counting", ENV, PARAMS, spec)
    obs, env_state = reset_envs(problem, jax.random.key(0), 2)
    assert obs.shape == (2, 4) and obs.dtype == jnp.float32
    action = jnp.zeros((2, 2))  # the middle of [-1, 1]^2: env action (1, 1), reward 2
    finished = []
    for t in range(4):
        obs, env_state, tr, done_return = step_envs(problem, jax.random.key(t), env_state, obs, action)
        finished.append(float(done_return))
        np.testing.assert_array_equal(tr.reward, [2.0, 2.0])
        np.testing.assert_array_equal(tr.action, action)  # the agent's action is stored
        assert tr.obs.shape == tr.next_obs.shape == (2, 4)
    assert np.isnan(finished[0]) and np.isnan(finished[1]) and finished[2] == 6.0 and np.isnan(finished[3])
    np.testing.assert_array_equal(env_state.episode_return, [2.0, 2.0])
