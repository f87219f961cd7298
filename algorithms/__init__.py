"""The algorithms: one module per algorithm, family cores in ``_``-prefixed modules, and the table below.

``ALGORITHMS`` maps each name to its ``AlgorithmSpec``. It is the only list of algorithms: the catalog
(``experiments/catalog.py``) looks names up in it, the README's algorithm table and the registry-wide smoke
test are generated from it. To add an algorithm, write its module (docs/adding_an_algorithm.md) and add its
``SPEC`` here.
"""

import hybrid_rl.xla_flags  # noqa: F401  (first: XLA flags must be set before JAX starts its backend)
from algorithms import (
    bc,
    cal_ql,
    cql,
    darc,
    demo_regularized,
    h2o,
    hnpg,
    hyq,
    iql,
    lsvi_ucb,
    moorl,
    optimistic_ac,
    ppo,
    rbocpd_ucrl2,
    rlpd,
    sac,
    sw_ucrl2,
    td3_bc,
    ucbvi,
    ucrl2,
    ucrl2_restarts,
    unified_pg,
)
from hybrid_rl.algorithm import AlgorithmSpec


def _table(*specs: AlgorithmSpec) -> dict[str, AlgorithmSpec]:
    table: dict[str, AlgorithmSpec] = {}
    for spec in specs:
        if spec.name in table:
            raise ValueError(f"algorithm {spec.name!r} is in the table twice")
        table[spec.name] = spec
    return table


ALGORITHMS: dict[str, AlgorithmSpec] = _table(
    # Online deep RL and the offline/hybrid baselines built on SAC
    sac.SPEC,
    rlpd.SPEC,
    bc.SPEC,
    cql.SPEC,
    iql.SPEC,
    cal_ql.SPEC,
    moorl.SPEC,
    td3_bc.SPEC,
    # Simulator + real data (H2O's setting)
    h2o.SPEC_H2O,
    h2o.SPEC_H2O_NAIVE,
    darc.SPEC_DARC,
    darc.SPEC_SAC_SIM,
    darc.SPEC_RLPD_SIM,
    # Policy gradient and the combination lock
    ppo.SPEC,
    hnpg.SPEC_HNPG,
    hnpg.SPEC_NPG,
    hyq.SPEC,
    unified_pg.SPEC,
    # Tabular and linear theory (finite horizon)
    ucbvi.SPEC_UCBVI,
    ucbvi.SPEC_UCBVI_ENT,
    demo_regularized.SPEC_DEMO_REGULARIZED,
    demo_regularized.SPEC_BC_TABULAR,
    demo_regularized.SPEC_DEMO_REGULARIZED_RLHF,
    demo_regularized.SPEC_DEMO_REGULARIZED_LINEAR,
    optimistic_ac.SPEC_OPTIMISTIC_AC,
    optimistic_ac.SPEC_OPTIMISTIC_AC_LINEAR,
    lsvi_ucb.SPEC,
    # Average reward, stationary and piecewise-stationary (UCRL2 family)
    ucrl2.SPEC,
    ucrl2_restarts.SPEC_UCRL2_RESTARTS,
    ucrl2_restarts.SPEC_ORACLE_UCRL2,
    sw_ucrl2.SPEC,
    rbocpd_ucrl2.SPEC,
)
