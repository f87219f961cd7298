"""Tests for hybrid_rl.changepoint: BOCPD recursion against a float64 numpy reference, R-BOCPD statistics,
false alarms on stationary streams and detection delays on planted changes (vmapped over seeds).

Compile time dominates on a 2-core machine, so the tests share a few jitted programs of fixed shapes: BOCPD runs
are (8 streams x 500 samples), R-BOCPD runs are (128 streams x 1000 samples), with the statistical knobs
(hazard, delta) passed as traced values.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import gammaln as np_gammaln
from scipy.special import logsumexp as np_logsumexp

from hybrid_rl import changepoint as C

O = 4
P_BEFORE = jnp.array([0.7, 0.1, 0.1, 0.1])
P_AFTER = jnp.array([0.1, 0.1, 0.1, 0.7])
P_WEAK_AFTER = jnp.array([0.4, 0.2, 0.2, 0.2])

L = 400
BOCPD = C.BOCPDParams(hazard=1.0 / 200, alpha=1.0, num_categories=O, max_run_length=L)
RB = C.RBOCPDParams(delta=0.05, num_categories=O, stride=5, num_candidates=200)
B_RB, T_RB, C_RB = 128, 1000, 500  # R-BOCPD batch, stream length, planted change time


@partial(jax.jit, static_argnums=(1, 2))
def planted_stream(key, n_before, n_after, p_before=P_BEFORE, p_after=P_AFTER):
    k1, k2 = jax.random.split(key)
    a = jax.random.categorical(k1, jnp.log(p_before), shape=(n_before,))
    b = jax.random.categorical(k2, jnp.log(p_after), shape=(n_after,))
    return jnp.concatenate([a, b]).astype(jnp.int32)


@jax.jit
def bocpd_many(hazard, xs):
    """(16, 500) streams, one hazard for all (traced)."""
    return jax.vmap(partial(C.bocpd_run, BOCPD.replace(hazard=hazard)))(xs)


@jax.jit
def rbocpd_many(deltas, xs):
    """(128, 1000) streams, one delta per stream (traced)."""
    return jax.vmap(lambda d, x: C.rbocpd_run(RB.replace(delta=d), x))(deltas, xs)


# ------------------------------------------------------------------------------------------------ references


def np_sequential_log_marginal(xs, O, alpha=1.0):
    counts = np.zeros(O)
    total = 0.0
    for x in xs:
        total += np.log((counts[x] + alpha) / (counts.sum() + O * alpha))
        counts[x] += 1
    return total


def np_bocpd(xs, O, h, L, alpha=1.0):
    """Adams & MacKay recursion in float64 with the documented truncation: runs >= L share the last bin, whose
    counts are the posterior-weighted average of the merged runs' counts."""
    log_post = np.array([0.0])
    counts = np.zeros((1, O))
    for x in xs:
        pred = np.log((counts[:, x] + alpha) / (counts.sum(1) + O * alpha))
        joint = log_post + pred
        growth = joint + np.log1p(-h)
        new = np.concatenate([[np_logsumexp(joint + np.log(h))], growth])
        new_counts = np.concatenate([np.zeros((1, O)), counts + np.eye(O)[x]], axis=0)
        if len(new) > L + 1:  # merge the runs that would be L and L + 1
            w = np.exp(growth[-2:] - np_logsumexp(growth[-2:]))
            new_counts = np.concatenate([new_counts[:L], (w[:, None] * new_counts[L:]).sum(0, keepdims=True)])
            new = np.concatenate([new[:L], [np_logsumexp(new[L:])]])
        log_post = new - np_logsumexp(new)
        counts = new_counts
    return log_post


# ------------------------------------------------------------------------------------------------ BOCPD


@pytest.fixture(scope="module")
def bocpd_streams():
    # 8 streams with a change at t = 300, then 8 stationary ones.
    keys = jax.random.split(jax.random.PRNGKey(2), 16)
    planted = jax.vmap(lambda k: planted_stream(k, 300, 200))(keys[:8])
    stationary = jax.vmap(lambda k: planted_stream(k, 300, 200, P_BEFORE, P_BEFORE))(keys[8:])
    return jnp.concatenate([planted, stationary])


def test_dirichlet_log_marginal_equals_sequential_product():
    rng = np.random.default_rng(0)
    for alpha in (1.0, 0.5):
        xs = rng.integers(0, 5, size=60)
        counts = np.bincount(xs, minlength=5)
        got = float(C.dirichlet_log_marginal(jnp.asarray(counts), alpha))
        np.testing.assert_allclose(got, np_sequential_log_marginal(xs, 5, alpha), rtol=1e-5)


def test_bocpd_matches_numpy_reference_and_is_normalised(bocpd_streams):
    h = 1.0 / 200
    state, info = bocpd_many(h, bocpd_streams)
    lse = jax.scipy.special.logsumexp(state.log_post, axis=-1)
    np.testing.assert_allclose(lse, 0.0, atol=1e-5)
    # 500 samples > L = 400: the comparison covers the truncation too.
    for b in (0, 12):
        ref = np_bocpd(np.asarray(bocpd_streams[b]), O, h, L)
        np.testing.assert_allclose(np.exp(state.log_post[b]), np.exp(ref), atol=1e-5)
    # Constant hazard: P(r_t = 0 | x_1:t) = h exactly, so it cannot be the detection statistic.
    np.testing.assert_allclose(np.exp(state.log_post[:, 0]), h, rtol=1e-4)
    # Evidence = sum of one-step predictive log-probabilities; every sample was counted by the run r = t.
    np.testing.assert_allclose(state.log_evidence, info["log_pred"].sum(-1), rtol=1e-5)
    # The top bin "r >= L" of a stationary stream holds (nearly) all 500 samples, not a window of L.
    assert np.all(np.asarray(state.counts[8:, L].sum(-1)) > 480)


def test_bocpd_tiny_hazard_is_point_mass(bocpd_streams):
    state, info = bocpd_many(1e-12, bocpd_streams)
    t = np.arange(1, 501)
    # Stationary streams: MAP run length = t (capped at L by the truncation) with essentially all the mass.
    np.testing.assert_array_equal(np.asarray(info["map_run_length"][8:]), np.broadcast_to(np.minimum(t, L), (8, 500)))
    assert np.all(np.exp(np.asarray(state.log_post[8:, L])) > 0.999)
    np.testing.assert_allclose(np.asarray(state.counts[8:, L].sum(-1)), 500, rtol=1e-4)
    np.testing.assert_allclose(jax.scipy.special.logsumexp(state.log_post, axis=-1), 0.0, atol=1e-5)


def test_bocpd_map_run_length_drops_soon_after_a_change(bocpd_streams):
    _, info = bocpd_many(1.0 / 200, bocpd_streams)
    drops = np.asarray(info["map_drop"])
    map_rl = np.asarray(info["map_run_length"])
    for b in range(8):  # the planted streams
        after = np.nonzero(drops[b, 300:])[0]
        assert len(after) and after[0] <= 20, (b, after[:3])
        # Once it dropped, the MAP run length is measured from (about) the change.
        assert abs(map_rl[b, 399] - 100) <= 20


# ------------------------------------------------------------------------------------------------ R-BOCPD


@pytest.fixture(scope="module")
def stationary_run():
    # 128 stationary streams, each with its own random distribution over O = 4 symbols, delta = 0.1.
    k_p, k_x = jax.random.split(jax.random.PRNGKey(4))
    probs = jax.random.dirichlet(k_p, jnp.ones(O), (B_RB,))
    xs = jax.vmap(lambda k, p: jax.random.categorical(k, jnp.log(p), shape=(T_RB,)))(
        jax.random.split(k_x, B_RB), probs).astype(jnp.int32)
    state, info = rbocpd_many(jnp.full((B_RB,), 0.1), xs)
    return xs, state, info


def test_rbocpd_false_alarms_on_stationary_streams(stationary_run):
    # The "delta" rule bounds P(any restart) by delta = 0.1 per stream (docs/algorithms/rbocpd_ucrl2.md).
    _, state, _ = stationary_run
    streams_with_alarm = int((np.asarray(state.num_restarts) > 0).sum())
    assert streams_with_alarm <= 0.05 * B_RB, streams_with_alarm
    assert not bool(np.any(np.asarray(state.overflowed)))  # 200 slots x stride 5 cover the 1000 samples


def test_rbocpd_statistic_equals_explicit_sequential_products(stationary_run):
    xs, state, _ = stationary_run
    b = int(np.argmin(np.asarray(state.num_restarts)))  # a stream without restart: n = 1000 samples
    assert int(state.num_restarts[b]) == 0 and int(state.n[b]) == T_RB
    x = np.asarray(xs[b])
    one = jax.tree.map(lambda a: a[b], state)
    m_all = np.asarray(one.grid_m)
    valid = (m_all > 0) & (m_all < T_RB)
    assert int(valid.sum()) == (T_RB - 1) // RB.stride
    thr = C.rbocpd_thresholds(RB, one.n, one.grid_m)
    closed = C.rbocpd_glr(one.counts, one.grid_counts)
    full = np_sequential_log_marginal(x, O)
    for j in np.nonzero(valid)[0][::17]:
        m = int(m_all[j])
        assert m % RB.stride == 0
        z_ref = np_sequential_log_marginal(x[:m], O) + np_sequential_log_marginal(x[m:], O) - full
        np.testing.assert_allclose(float(one.z[j]), z_ref, atol=2e-3)  # incremental form
        np.testing.assert_allclose(float(closed[j]), z_ref, atol=2e-2)  # log-Gamma form (float32, ~1e3 nats)
        thr_ref = (np.log(1 / 0.05) + np.log(m * (m + 1))
                   + np_gammaln(T_RB + O) - np_gammaln(O) - np_gammaln(T_RB + 1))
        np.testing.assert_allclose(float(thr[j]), thr_ref, rtol=1e-5)


def _first_restart_after(restarts, c):
    out = []
    for row in np.asarray(restarts):
        idx = np.nonzero(row[c:])[0]
        out.append(idx[0] if len(idx) else np.inf)
    return np.array(out)


def test_rbocpd_detects_planted_change_and_delay_orders():
    # 32 seeds x {strong change, delta 0.05}, {weak change, delta 0.05}, {strong change, delta 1e-6}, {no change}.
    keys = jax.random.split(jax.random.PRNGKey(5), 32)
    strong = jax.vmap(lambda k: planted_stream(k, C_RB, T_RB - C_RB))(keys)
    weak = jax.vmap(lambda k: planted_stream(k, C_RB, T_RB - C_RB, P_BEFORE, P_WEAK_AFTER))(keys)
    none = jax.vmap(lambda k: planted_stream(k, C_RB, T_RB - C_RB, P_BEFORE, P_BEFORE))(keys)
    xs = jnp.concatenate([strong, weak, strong, none])
    deltas = jnp.repeat(jnp.array([0.05, 0.05, 1e-6, 0.05]), 32)
    _, info = rbocpd_many(deltas, xs)
    restart = np.asarray(info["restart"])
    d_strong = _first_restart_after(restart[:32], C_RB)
    d_weak = _first_restart_after(restart[32:64], C_RB)
    d_strict = _first_restart_after(restart[64:96], C_RB)
    # Planted strong change: detected within 60 samples in >= 90% of seeds, no alarm before it in >= 90%.
    assert np.mean(d_strong <= 60) >= 0.9, d_strong
    assert np.mean(restart[:32, :C_RB].any(-1)) <= 0.1
    assert np.mean(restart[96:].any(-1)) <= 0.1  # the same streams without a change
    # Delay shrinks with the KL of the change and grows as delta shrinks (higher threshold).
    assert np.median(d_weak) > np.median(d_strong)
    assert np.median(d_strict) > np.median(d_strong)
    # At the restart, the best split is near the change (counted from the last restart; stride 5).
    split = np.asarray(info["split"][:32])
    rows = [b for b in range(32) if np.isfinite(d_strong[b]) and not restart[b, :C_RB].any()]
    assert np.median([abs(split[b, C_RB + int(d_strong[b])] - C_RB) for b in rows]) <= 10


def test_rbocpd_ring_buffer_overflow_still_detects_late_change():
    # Only 20 candidate slots (the last 100 samples): a change after 800 stationary samples is still found fast.
    params = C.RBOCPDParams(delta=0.05, num_categories=O, stride=5, num_candidates=20)
    keys = jax.random.split(jax.random.PRNGKey(6), 8)
    xs = jax.vmap(lambda k: planted_stream(k, 800, 200))(keys)
    state, info = jax.jit(jax.vmap(partial(C.rbocpd_run, params)))(xs)
    restart = np.asarray(info["restart"])
    clean = ~restart[:, :800].any(-1)
    assert clean.sum() >= 6
    d = _first_restart_after(restart, 800)
    assert np.all(d[clean] <= 60), d
    # The ring had overflowed before the change: the overflow path is the one that detected it.
    assert np.all(np.asarray(info["n"])[clean, 799] == 800)


def test_rbocpd_code_threshold_and_indexed_update():
    params = C.RBOCPDParams(horizon=1e4, num_categories=O, stride=5, num_candidates=200, threshold="code")
    np.testing.assert_allclose(C.rbocpd_thresholds(params, 50, jnp.array([5, 10])), np.log(1e4), rtol=1e-6)
    # A (S, A) grid of detectors: only the visited pair changes.
    grid = C.rbocpd_init(params, (3, 2))
    grid, info = jax.jit(partial(C.rbocpd_update_at, params), static_argnums=1)(grid, (1, 0), jnp.int32(2))
    assert int(grid.n[1, 0]) == 1 and int(grid.n.sum()) == 1
    assert int(grid.counts[1, 0, 2]) == 1 and not bool(info["restart"])
    with pytest.raises(ValueError):
        C.rbocpd_init(params.replace(threshold="bogus"))
