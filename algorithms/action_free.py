"""Offline RL from partly action-free trajectories with inverse-dynamics proxy labels (Zheng, Henaff,
Amos, Grover; ICML 2023, "Semi-supervised Offline Reinforcement Learning with Action-free Trajectories").

Setting: a few labelled trajectories (states, actions, rewards) and many unlabelled ones (states and
rewards). Pipeline, as one program with three kinds of phase:

1. ``idm``: fit an inverse dynamics model p(a_t | s_{t-k}, ..., s_t, s_{t+1}, ..., s_{t+k}) on the
   labelled transitions (window ``window`` = k; states outside the transition's episode are replaced by the
   episode's first or last state). An ensemble of ``ensemble_size`` MLPs, each fit on its own batches:
   continuous actions by least squares on the action in [-1, 1]^d (the ensemble's mean is the label,
   clipped to [-1, 1]), discrete ones by cross-entropy (the label is the argmax of the members' mean
   probabilities).
2. ``label``: one iteration that labels every unlabelled transition with the fitted model (labelled rows
   keep their actions). The labels live in the agent's state, one set per seed.
3. the offline algorithm's own phases (IQL, CQL, TD3+BC, BC...), unchanged, on the union of the labelled
   and the proxy-labelled transitions.

The offline algorithm is built by its own ``make`` on a problem whose dataset's actions are the labels
in the state: ``make`` is called while the phase is traced (its dataset preprocessing, such as state
normalisation or reward scaling, reads only the states and rewards, which are constants; it runs under
``jax.ensure_compile_time_eval`` so that preprocessing is evaluated, not staged).

Deviations ([R]): the paper's IDM predicts a Gaussian trained by likelihood; ours regresses the action
(its mean), which is what labelling uses. Defaults (two 256-wide hidden layers, Adam 3e-4, batch 256) are
ours.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.training.train_state import TrainState

from hybrid_rl.algorithm import Agent, Phase
from hybrid_rl.datasets.action_free import ActionFreeDataset
from hybrid_rl.networks import MLP
from hybrid_rl.problem import Problem
from hybrid_rl.training import adam


@dataclasses.dataclass(frozen=True)
class IDMConfig:
    steps: int = 10_000  # gradient steps of the inverse dynamics model on the labelled transitions
    window: int = 1  # k: the model sees s_{t-k}, ..., s_{t+k} (2k + 1 states)
    ensemble_size: int = 1  # independent models; the label is their mean (argmax of mean probabilities)
    hidden_sizes: tuple[int, ...] = (256, 256)  # () gives a linear model
    lr: float = 3e-4
    batch_size: int = 256
    label_block: int = 4096  # rows labelled per block in the label phase (memory, not results)


class InverseDynamicsEnsemble(nn.Module):
    """``ensemble_size`` MLPs; member e reads ``windows[e]`` (E, batch, W) and outputs (E, batch, out_dim)."""

    out_dim: int
    ensemble_size: int = 1
    hidden_sizes: tuple[int, ...] = (256, 256)

    @nn.compact
    def __call__(self, windows):
        ensemble = nn.vmap(MLP, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=0,
                           out_axes=0, axis_size=self.ensemble_size)
        return ensemble(self.hidden_sizes, self.out_dim)(windows)


def window_states(obs, next_obs, episode_start, episode_end, rows, k: int):
    """(len(rows), (2k + 1) * obs_dim): s_{t-k}, ..., s_t, s_{t+1}, ..., s_{t+k} of each row, edge states
    repeated at the episode's ends (see ``ActionFreeDataset``)."""
    start, end = episode_start[rows], episode_end[rows]
    past = [obs[jnp.maximum(rows - j, start)] for j in range(k, 0, -1)]
    future = [next_obs[jnp.minimum(rows + j - 1, end)] for j in range(1, k + 1)]
    return jnp.concatenate(past + [obs[rows]] + future, axis=-1)


def idm_loss(params, apply_fn, windows, targets, discrete: bool):
    """Sum over members of the mean squared error (continuous) or cross-entropy (discrete).

    ``windows`` (E, B, W) and ``targets`` (E, B, d) or (E, B): each member its own batch."""
    out = apply_fn(params, windows)  # (E, B, d)
    if discrete:
        logp = jax.nn.log_softmax(out)
        return -jnp.sum(jnp.mean(jnp.take_along_axis(logp, targets[..., None], -1)[..., 0], axis=-1))
    chex.assert_equal_shape([out, targets])
    return jnp.sum(jnp.mean(jnp.sum((out - targets) ** 2, axis=-1), axis=-1))


def idm_label(params, apply_fn, windows, discrete: bool, ensemble_size: int):
    """Labels of a batch of windows: the members' mean action clipped to [-1, 1], or the argmax of their
    mean probabilities."""
    out = apply_fn(params, jnp.broadcast_to(windows, (ensemble_size,) + windows.shape))  # (E, B, d)
    if discrete:
        return jnp.argmax(jax.nn.softmax(out).mean(0), axis=-1).astype(jnp.int32)
    return jnp.clip(out.mean(0), -1.0, 1.0)


@struct.dataclass
class ActionFreeState:
    base: Any
    idm: TrainState
    actions: chex.Array  # the union's actions: labelled rows' own, proxy labels on the rest after ``label``
    key: chex.PRNGKey


def make(base_make: Callable[[Any, Problem], Agent], base_config: Any, idm_config: IDMConfig, problem: Problem,
         data: ActionFreeDataset) -> Agent:
    """The pipeline around ``base_make(base_config, problem)``. ``problem.dataset`` must be
    ``data.transitions`` with its actions in the agent's units ([-1, 1]^d or indices)."""
    if problem.dataset is None or problem.dataset.reward.shape[0] != data.labelled.shape[0]:
        raise ValueError("action-free pipeline: problem.dataset must be the union dataset (labelled rows first)")
    if idm_config.window < 1:
        raise ValueError(f"idm window must be >= 1, got {idm_config.window}")
    if idm_config.ensemble_size < 1 or idm_config.steps < 1:
        raise ValueError("idm ensemble_size and steps must be >= 1")
    if data.num_labelled == 0:
        raise ValueError("action-free pipeline: no labelled transitions to fit the inverse dynamics model on")
    discrete = problem.action_kind == "discrete"
    obs = problem.flat_obs(problem.dataset.obs)
    next_obs = problem.flat_obs(problem.dataset.next_obs)
    start, end = jnp.asarray(data.episode_start), jnp.asarray(data.episode_end)
    labelled_rows = jnp.asarray(np.flatnonzero(data.labelled), jnp.int32)
    labelled_mask = jnp.asarray(data.labelled)
    n = int(data.labelled.shape[0])
    k, E = idm_config.window, idm_config.ensemble_size
    net = InverseDynamicsEnsemble(problem.action_dim, E, tuple(idm_config.hidden_sizes))
    base_agent = base_make(base_config, problem)
    hidden_rows = jnp.asarray(np.flatnonzero(~data.labelled), jnp.int32)
    hidden = None
    if data.hidden_actions is not None:
        h = jnp.asarray(data.hidden_actions)
        hidden = h if discrete else problem.from_env_action(h.reshape(-1, problem.action_dim))

    def windows_of(rows):
        return window_states(obs, next_obs, start, end, rows, k)

    def init(key, hparams) -> ActionFreeState:
        k_base, k_idm, k_state = jax.random.split(key, 3)
        params = net.init(k_idm, jnp.zeros((E, 1, (2 * k + 1) * problem.obs_dim)))
        return ActionFreeState(
            base=base_agent.init(k_base, hparams),
            idm=TrainState.create(apply_fn=net.apply, params=params, tx=adam(idm_config.lr)),
            actions=problem.dataset.action,
            key=k_state,
        )

    def idm_iteration(state: ActionFreeState):
        key, k_batch = jax.random.split(state.key)
        pick = jax.random.randint(k_batch, (E, idm_config.batch_size), 0, labelled_rows.shape[0])
        rows = labelled_rows[pick]
        windows = jax.vmap(windows_of)(rows)
        targets = problem.dataset.action[rows]
        loss, grads = jax.value_and_grad(idm_loss)(state.idm.params, net.apply, windows, targets, discrete)
        return state.replace(idm=state.idm.apply_gradients(grads=grads), key=key), {"idm_loss": loss / E}

    def label_iteration(state: ActionFreeState):
        rows = jnp.arange(n, dtype=jnp.int32)
        labels = jax.lax.map(lambda r: idm_label(state.idm.params, net.apply, windows_of(r[None]), discrete, E)[0],
                             rows, batch_size=min(idm_config.label_block, n))
        true = problem.dataset.action
        fit = (labels == true) if discrete else jnp.sum((labels - true) ** 2, axis=-1)
        metrics = {"idm_train_error": jnp.sum(jnp.where(labelled_mask, fit, 0)) / jnp.maximum(labelled_mask.sum(), 1)}
        if hidden is not None and hidden_rows.shape[0] > 0:
            proxy = labels[hidden_rows]
            err = (proxy == hidden) if discrete else jnp.sum((proxy - hidden) ** 2, axis=-1)
            metrics["proxy_label_accuracy" if discrete else "proxy_label_mse"] = err.astype(jnp.float32).mean()
        if discrete:
            metrics["idm_train_error"] = 1.0 - metrics["idm_train_error"]
        actions = jnp.where(labelled_mask.reshape((-1,) + (1,) * (true.ndim - 1)), true, labels)
        return state.replace(actions=actions.astype(true.dtype)), metrics

    def base_phase(index: int, phase: Phase) -> Phase:
        def iteration(state: ActionFreeState):
            labelled_problem = dataclasses.replace(problem, dataset=problem.dataset.replace(action=state.actions))
            with jax.ensure_compile_time_eval():
                agent = base_make(base_config, labelled_problem)
            base, metrics = agent.phases[index].iteration(state.base)
            return state.replace(base=base), metrics

        return dataclasses.replace(phase, iteration=iteration)

    def policy(state: ActionFreeState, obs_, key, deterministic: bool):
        return base_agent.policy(state.base, obs_, key, deterministic)

    eval_params = None
    if base_agent.eval_env_params is not None:
        eval_params = lambda state: base_agent.eval_env_params(state.base)  # noqa: E731
    return Agent(
        init=init,
        phases=(Phase("idm", idm_iteration, idm_config.steps, grad_steps_per_iteration=1, num_evals=1),
                Phase("label", label_iteration, 1, num_evals=1))
        + tuple(base_phase(i, p) for i, p in enumerate(base_agent.phases)),
        policy=policy,
        eval_env_params=eval_params,
    )


def union_problem(problem: Problem, data: ActionFreeDataset, info: Optional[dict] = None) -> Problem:
    """``problem`` with the union dataset as its offline data, actions in the agent's units."""
    tr = data.transitions
    tr = tr.replace(obs=tr.obs.reshape((-1,) + problem.obs_shape), next_obs=tr.next_obs.reshape((-1,) + problem.obs_shape))
    if problem.action_kind == "continuous":
        tr = tr.replace(action=problem.from_env_action(tr.action.reshape(-1, problem.action_dim)))
        # unlabelled rows stay exactly zero (the middle of the range), whatever the env's bounds
        tr = tr.replace(action=jnp.where(jnp.asarray(data.labelled)[:, None], tr.action, 0.0))
    else:
        tr = tr.replace(action=tr.action.reshape(-1).astype(jnp.int32))
    merged = {"num_transitions": int(tr.reward.shape[0]), "num_labelled": data.num_labelled, **(info or {})}
    return dataclasses.replace(problem, dataset=tr, dataset_info={**problem.dataset_info, **merged})
