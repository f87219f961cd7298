"""DARC: off-dynamics RL with domain classifiers (Eysenbach et al., ICLR 2021), and the sim-only baselines.

DARC trains SAC online in the simulator with a corrected reward that penalises transitions that are more
likely under the sim than under the real dynamics:

    r~(s, a, s') = r + eta * dr(s, a, s'),
    dr = log p(real|s,a,s') - log p(sim|s,a,s') - log p(real|s,a) + log p(sim|s,a) = l_sas,0 - l_sas,1

with the two classifiers of ``algorithms/_sim.py`` (p(.|s,a) = softmax(l_sa), p(.|s,a,s') = softmax(l_sas +
l_sa); the D_sa terms cancel), trained one step per env step on real vs sim transitions (summed
cross-entropies, input noise). Everything else is SAC (``algorithms/sac.py``) on sim transitions only.

Defaults are the official code's (google-research/darc): classifiers with one hidden layer of 32 ReLU units
and unbounded logits, Gaussian input noise of std 1.0 while training them, no reward correction during the
first tenth of the run (official: 1e5 of 1e6 steps; the classifiers train throughout), and the SAC target's
reward scaled by 0.1: y = 0.1 (r + eta dr) + gamma (...). The settings this file used before (H2O's
discriminators) are ``H2O_STYLE``: ``dataclasses.replace(Config(), **darc.H2O_STYLE)``.

Setting [R]: the DARC paper gathers real transitions online (1 real step per 10 sim steps); here, as in
H2O's setting, the real side is the fixed offline dataset and the real env is only used to evaluate.

Also registered here, as baselines of H2O's figure (Figure E1, docs/algorithms/h2o.md), with no code of their own:

* ``sac_sim``: SAC trained in the simulator only (``sac.make`` with the sim as its env), evaluated in real.
* ``rlpd_sim``: RLPD with the real dataset as its offline data and the simulator as its online env.

Every sim-stepping algorithm has the traced ``sim_shift`` (k, or sigma for action noise; < 0 keeps the env
pair's registered value), so one compiled program sweeps the size of the gap.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct
from flax.training.train_state import TrainState

from algorithms import _sac_core as sac
from algorithms import _sim
from hybrid_rl.algorithm import Agent, AlgorithmSpec, Budget
from hybrid_rl.buffers import buffer_sample, dataset_sample
from hybrid_rl.problem import Problem


@dataclasses.dataclass(frozen=True)
class Config(sac.Config):
    warmup_steps: int = 5_000  # random sim actions before learning (SAC's)
    darc_eta: float = 1.0  # scale of the reward correction dr (0 = SAC in sim; official delta_r_scale 1)
    disc_batch_size: int = 256  # real and sim transitions each for the classifier step
    disc_hidden_sizes: tuple[int, ...] = (32,)  # official: one hidden layer of 32 ReLU units
    disc_lr: float = 3e-4  # Adam, one step per env step
    disc_noise_std: float = 1.0  # Gaussian noise on classifier inputs while training them (official 1.0)
    logit_bound: float = 0.0  # <= 0: unbounded logits (official); > 0: bound * tanh(raw) (H2O's discriminators)
    correction_warmup_steps: int = -1  # env steps before dr enters the reward; < 0: a tenth of total_steps
    reward_scale: float = 0.1  # the SAC target uses reward_scale * (r + eta dr) (official reward_scale_factor)
    sim_shift: float = -1.0  # the sim's shift magnitude; < 0: the pair's registered value


# The settings used before the official defaults (H2O's discriminators, correction from the first update).
H2O_STYLE = dict(disc_hidden_sizes=(256, 256), disc_noise_std=0.1, logit_bound=2.0, correction_warmup_steps=0,
                 reward_scale=1.0)


def correction_warmup(config: Config) -> int:
    """Env steps without the reward correction: ``correction_warmup_steps``, or a tenth of the run if < 0."""
    return config.total_steps // 10 if config.correction_warmup_steps < 0 else config.correction_warmup_steps


def corrected_reward(reward, dr, eta, env_steps, warmup: int, scale: float):
    """scale * (r + eta * dr), with dr left out before ``warmup`` env steps (the official delta_r_warmup)."""
    active = (env_steps >= warmup).astype(jnp.float32)
    return scale * (reward + eta * active * dr)


TRACED = sac.TRACED + ("darc_eta", "disc_lr", "sim_shift")


def reward_correction(disc: TrainState, batch) -> jax.Array:
    """dr(s, a, s') = l_sas,0 - l_sas,1 = log P_real(s'|s,a) / P_sim(s'|s,a) (classifier estimate, no noise)."""
    _, l_sas = _sim.discriminator_logits(disc.apply_fn, disc.params, batch.obs, batch.action, batch.next_obs)
    return jax.lax.stop_gradient(_sim.log_dynamics_ratio(l_sas))


@struct.dataclass
class DARCState:
    sac: sac.SACState  # actor, critics, temperature, the SIM buffer and the SIM env's state
    discriminator: TrainState


def make(config: Config, problem: Problem, name: str = "darc") -> Agent:
    _sim.require_sim(problem, name)
    real = _sim.flat_dataset(problem, name)
    if config.offline_fraction != 0.0:
        raise ValueError(f"{name} learns from sim transitions only (offline_fraction must be 0); "
                         "the real data trains the classifiers")
    to_sim = lambda hparams: _sim.sim_problem(problem, hparams["sim_shift"])  # noqa: E731
    base = sac.make(config, problem, name=name, env_problem=to_sim)
    target_entropy = -config.target_entropy_scale * problem.action_dim
    warmup = base.phases[0]
    no_correction_steps = correction_warmup(config)

    def init(key, hparams) -> DARCState:
        k_sac, k_disc = jax.random.split(key)
        disc = _sim.init_discriminator(k_disc, config, problem.obs_dim, problem.action_dim, hparams["disc_lr"])
        return sac.strong_types(DARCState(sac=base.init(k_sac, hparams), discriminator=disc))

    def warmup_iteration(state: DARCState):
        s, metrics = warmup.iteration(state.sac)
        return state.replace(sac=s), metrics

    def update(state: DARCState, key):
        s, disc = state.sac, state.discriminator
        k_dr, k_ds, k_dn, k_critic, k_actor = jax.random.split(key, 5)
        disc, disc_metrics = _sim.update_discriminators(
            disc, k_dn, dataset_sample(real, k_dr, config.disc_batch_size),
            buffer_sample(s.buffer, k_ds, config.disc_batch_size), config.disc_noise_std,
        )

        def critic_step(s, k):
            k_batch, k_loss = jax.random.split(k)
            batch = buffer_sample(s.buffer, k_batch, config.batch_size)
            dr = reward_correction(disc, batch)
            batch = batch.replace(reward=corrected_reward(batch.reward, dr, s.hparams["darc_eta"], s.env_steps,
                                                          no_correction_steps, config.reward_scale))
            s, metrics = sac.update_critic(s, k_loss, batch, config)
            return s, {**metrics, "reward_correction": dr.mean()}

        s, critic_metrics = jax.lax.scan(critic_step, s, jax.random.split(k_critic, config.utd))
        k_batch, k_pi = jax.random.split(k_actor)
        obs = buffer_sample(s.buffer, k_batch, config.batch_size).obs
        s, actor_metrics = sac.update_actor_and_temperature(s, k_pi, obs, target_entropy, config)
        metrics = {**disc_metrics, **jax.tree.map(jnp.mean, critic_metrics), **actor_metrics}
        return DARCState(sac=s, discriminator=disc), metrics

    def train_iteration(state: DARCState):
        s = state.sac
        key, k_collect, k_update = jax.random.split(s.key, 3)
        s, finished = sac.collect(s.replace(key=key), k_collect, to_sim(s.hparams), random_actions=False)
        state, metrics = jax.lax.scan(update, state.replace(sac=s), jax.random.split(k_update, config.num_envs))
        return state, {**jax.tree.map(jnp.mean, metrics), "train_episode_return": finished}

    def policy(state: DARCState, obs, key, deterministic: bool):
        return base.policy(state.sac, obs, key, deterministic)

    online = base.phases[1]
    return Agent(
        init=init,
        phases=(
            dataclasses.replace(warmup, iteration=warmup_iteration),
            dataclasses.replace(online, iteration=train_iteration),
        ),
        policy=policy,
    )


SPEC_DARC = AlgorithmSpec(
    name="darc",
    description="DARC: SAC in the sim with reward + log P_real/P_sim(s'|s,a) from two classifiers (real data).",
    config_cls=Config,
    make=make,
    traced=TRACED,
    dataset="required",
    action_kinds=("continuous",),
    paper="Eysenbach et al. Off-Dynamics RL: Training for Transfer with Domain Classifiers. ICLR 2021",
    budget=Budget("total_steps", "env_steps", warmup_field="warmup_steps"),
)


# ------------------------------------------------------------------------------------------------
# Sim-only baselines: SAC and RLPD whose online env is the simulator (evaluation stays on the real env)
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimSACConfig(sac.Config):
    sim_shift: float = -1.0  # the sim's shift magnitude; < 0: the pair's registered value


@dataclasses.dataclass(frozen=True)
class SimRLPDConfig(sac.RLPDConfig):
    sim_shift: float = -1.0  # the sim's shift magnitude; < 0: the pair's registered value


def make_sac_sim(config: SimSACConfig, problem: Problem) -> Agent:
    _sim.require_sim(problem, "sac_sim")
    return sac.make(config, problem, name="sac_sim",
                    env_problem=lambda hparams: _sim.sim_problem(problem, hparams["sim_shift"]))


def make_rlpd_sim(config: SimRLPDConfig, problem: Problem) -> Agent:
    _sim.require_sim(problem, "rlpd_sim")
    _sim.flat_dataset(problem, "rlpd_sim")  # the real data is required (clear error if missing)
    return sac.make(config, problem, name="rlpd_sim",
                    env_problem=lambda hparams: _sim.sim_problem(problem, hparams["sim_shift"]))


SPEC_SAC_SIM = AlgorithmSpec(
    name="sac_sim",
    description="SAC trained online in the simulator of a sim/real pair, evaluated in the real env.",
    config_cls=SimSACConfig,
    make=make_sac_sim,
    traced=sac.TRACED + ("sim_shift",),
    dataset="optional",
    action_kinds=("continuous",),
    paper="H2O's SAC-sim baseline (Niu et al., NeurIPS 2022)",
    budget=Budget("total_steps", "env_steps", warmup_field="warmup_steps"),
)

SPEC_RLPD_SIM = AlgorithmSpec(
    name="rlpd_sim",
    description="RLPD with the real dataset as offline data and the simulator as its online env.",
    config_cls=SimRLPDConfig,
    make=make_rlpd_sim,
    traced=sac.TRACED + ("sim_shift",),
    dataset="required",
    action_kinds=("continuous",),
    paper="Ball et al. ICML 2023, run as a sim+real baseline of H2O's figure",
    budget=Budget("total_steps", "env_steps", warmup_field="warmup_steps"),
)
