"""Smoothing (smckit.smoothing) against the exact Rauch-Tung-Striebel smoother of a linear Gaussian model.

Statistical checks run R independent filters at once (batch rows on the same data) and compare the mean over rows
of each per-row estimate with the exact value, within 4 standard errors estimated from the rows themselves (plus,
for variances, the known O(1/k) bias of a plug-in variance from k draws). Seeds are fixed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import smckit
from smckit.errors import InvalidArgumentError
from smckit.models import Bootstrap, Guided, LinearGaussian, StochasticVolatility, kalman_filter, rts_smoother
from smckit.random import RNG
from smckit.smoothing import (
    BackwardKernel,
    Categorical,
    FixedLag,
    PaRIS,
    backward_sampling,
    genealogy_paths,
    replay,
)
from smckit.smoothing.categorical import sample_each

SSM = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
T = 12


@pytest.fixture(scope="module")
def data():
    # Data seed 3: the bootstrap filter keeps an ESS above n / 5 at every step. With an outlying observation (seed 0
    # has one at t = 5, ESS about 5 of 300) every particle approximation, filter included, carries an O(1/n) bias
    # that n = 300 makes visible against these tolerances; that is a property of the filter, not of the smoothers.
    _, y = SSM.simulate(T, seed=3)
    return y, rts_smoother(SSM, y)


def _run(y, rows, n, seed, **kwargs):
    model = Bootstrap(SSM, y, batch_shape=(rows,))
    return model, smckit.run(model, n, seed=seed, history="full", **kwargs)


def _check_moments(means, variances, exact, *, n):
    """means, variances: (T, R) per-row smoothed estimates; within 4 SE of the RTS values at every step.

    A per-row variance ``E[x^2] - m_hat^2`` is biased low by ``Var(m_hat)`` (estimated from the rows), and the
    particle approximation adds an O(sigma^2 / n) bias: both enter the variance tolerance.
    """
    rows = means.shape[1]
    m_true, v_true = exact.smoothed_means[:, 0], exact.smoothed_covs[:, 0, 0]
    se_m = means.std(axis=1, ddof=1) / math.sqrt(rows)
    se_v = variances.std(axis=1, ddof=1) / math.sqrt(rows)
    err_m = np.abs(means.mean(axis=1) - m_true)
    err_v = np.abs(variances.mean(axis=1) - v_true)
    assert np.all(err_m < 4 * se_m), (err_m / se_m).round(2)
    bias = means.var(axis=1, ddof=1) + 2 * v_true / n
    assert np.all(err_v < 4 * se_v + bias), ((err_v - bias) / se_v).round(2)


def _moments(traj):
    mean = traj.estimate(lambda x: x[..., 0])
    second = traj.estimate(lambda x: x[..., 0] ** 2)
    return np.asarray(mean), np.asarray(second - mean**2)


# -- the reference -------------------------------------------------------------------------------------------------
def test_rts_smoother_equals_the_dense_gaussian_posterior():
    # x_{0:T-1} and y_{0:T-1} are jointly Gaussian: condition the stacked prior on the data with dense algebra.
    ssm = LinearGaussian(
        A=[[0.9, 0.2], [0.0, 0.7]], C=[[1.0, 0.5]], Q=[[0.5, 0.1], [0.1, 0.3]], R=[[0.4]], mu0=[1.0, -1.0], P0=np.eye(2)
    )
    steps, dx = 5, 2
    _, y = ssm.simulate(steps, seed=1, batch_shape=(2,))
    # x = L (mu0-part + noise): x_t = A^t x_0 + sum_s A^{t-s} w_s
    blocks = [
        [np.linalg.matrix_power(ssm.A, t - s) if s <= t else np.zeros((dx, dx)) for s in range(steps)]
        for t in range(steps)
    ]
    L = np.block(blocks)
    noise_cov = np.kron(np.eye(steps), ssm.Q)
    noise_cov[:dx, :dx] = ssm.P0
    mean_x = L @ np.concatenate([ssm.mu0, np.zeros(dx * (steps - 1))])
    cov_x = L @ noise_cov @ L.T
    H = np.kron(np.eye(steps), ssm.C)
    S = H @ cov_x @ H.T + np.kron(np.eye(steps), ssm.R)
    gain = cov_x @ H.T @ np.linalg.inv(S)
    post_cov = cov_x - gain @ H @ cov_x
    res = rts_smoother(ssm, y)
    for row in range(2):
        post_mean = mean_x + gain @ (y[row].ravel() - H @ mean_x)
        np.testing.assert_allclose(res.smoothed_means[row], post_mean.reshape(steps, dx), atol=1e-10)
    for t in range(steps):
        np.testing.assert_allclose(
            res.smoothed_covs[t], post_cov[t * dx : (t + 1) * dx, t * dx : (t + 1) * dx], atol=1e-10
        )
    np.testing.assert_allclose(res.smoothed_means[:, -1], res.filter.filtered_means[:, -1])


# -- backward sampling ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["reject", "quadratic"])
def test_backward_sampling_matches_the_rts_smoother(data, method):
    y, exact = data
    rows, n, paths = 16, 300, 300
    model, res = _run(y, rows, n, seed=1)
    traj = backward_sampling(res, model, paths, method=method, seed=2)
    assert traj.paths.shape == (T, rows, paths, 1)
    mean, var = _moments(traj)
    _check_moments(mean, var, exact, n=n)
    if method == "reject":
        acc = np.asarray(traj.info["acceptance"][:-1])
        assert np.all((acc > 0) & (acc <= 1)) and math.isnan(traj.info["acceptance"][-1])


def test_backward_sampling_does_not_degenerate_like_the_genealogy(data):
    y, _ = data
    model = Bootstrap(SSM, y)
    res = smckit.run(model, 500, seed=3, history="full", policy=smckit.Always())
    gen = genealogy_paths(res)
    ffbs = backward_sampling(res, model, 500, seed=4)
    distinct = lambda traj: len(np.unique(traj.paths[0, :, 0]))  # noqa: E731
    assert distinct(gen) == res.history.lineages()[-1] < 100  # resampling at every step: the lines coalesce
    assert distinct(ffbs) > 3 * distinct(gen)


def test_rejection_and_quadratic_samplers_have_the_same_law(data):
    # Same particle system, 4000 paths from each sampler; for each step, a chi-square test of homogeneity of the
    # two samples of particle indices (paths are conditionally independent given the particles, so the counts are
    # multinomial). Each test at level 1e-3: the family of 8 tests per sampler at 8e-3. Power: marginals drawn from
    # the filter weights instead (the law a sampler that forgot the backward weights would produce) are rejected at
    # the same level at most steps (not at the last one, where the smoother is the filter).
    y, _ = data
    model = Bootstrap(SSM, y[:8])
    res = smckit.run(model, 60, seed=5, history="full")
    draws = 4000
    samplers = {
        "quadratic": backward_sampling(res, model, draws, method="quadratic", seed=6),
        "reject": backward_sampling(res, model, draws, method="reject", seed=7),
        "reject, forced fallbacks": backward_sampling(res, model, draws, method="reject", seed=8, max_tries=1),
    }
    assert sum(samplers["reject, forced fallbacks"].info["fallbacks"]) > 1000
    particles = [np.asarray(p)[..., 0] for p in res.history.particles]

    def indices(values, t):
        order = np.argsort(particles[t])
        found = order[np.searchsorted(particles[t], values, sorter=order)]
        assert np.array_equal(particles[t][found], values)  # paths are made of the particles themselves
        return found

    def p_value(a, b):
        table = np.stack([np.bincount(a, minlength=60), np.bincount(b, minlength=60)])
        return stats.chi2_contingency(table[:, table.sum(axis=0) > 0])[1]

    ref = samplers["quadratic"].paths[..., 0]
    filtered = [Categorical(res.history.log_weights[t]).draw(draws, RNG(9)) for t in range(8)]
    for name in ("reject", "reject, forced fallbacks"):
        other = samplers[name].paths[..., 0]
        for t in range(8):
            assert p_value(indices(ref[t], t), indices(other[t], t)) > 1e-3, (name, t)
    p_filter = [p_value(indices(ref[t], t), filtered[t]) for t in range(8)]
    assert p_filter[-1] > 1e-3  # at the last step the smoother is the filter
    assert sum(p < 1e-3 for p in p_filter[:-1]) >= 5, p_filter


def test_guided_filter_and_torch_backend(data):
    torch = pytest.importorskip("torch")
    y, exact = data
    rows, n = 16, 300
    model = Guided(SSM, torch.from_numpy(y), SSM.optimal_proposal(), batch_shape=(rows,))
    res = smckit.run(model, n, seed=10, history="full")
    traj = backward_sampling(res, model, n, seed=11)
    assert isinstance(traj.paths, torch.Tensor) and traj.paths.dtype == torch.float64
    mean, var = _moments(traj)
    _check_moments(mean.numpy() if hasattr(mean, "numpy") else mean, var, exact, n=n)


def test_stochastic_volatility_transition_and_bound():
    sv = StochasticVolatility(mu=-1.0, rho=0.95, sigma=0.3)
    _, y = sv.simulate(10, seed=0)
    model = Bootstrap(sv, y)
    res = smckit.run(model, 200, seed=1, history="full")
    a = backward_sampling(res, model, 2000, method="quadratic", seed=2).paths[..., 0]
    b = backward_sampling(res, model, 2000, method="reject", seed=3).paths[..., 0]
    # two samples of 2000 paths, conditionally independent given the particles, from one law: the difference of
    # their means at each step has standard error sqrt(var_a / 2000 + var_b / 2000)
    se = np.sqrt((a.var(axis=-1) + b.var(axis=-1)) / 2000)
    assert np.all(np.abs(a.mean(axis=-1) - b.mean(axis=-1)) < 4 * se)
    prev = np.linspace(-3, 1, 50)[:, None]
    assert np.all(model.log_transition(1, prev, sv._mean(prev)) <= model.log_transition_max(1) + 1e-12)


# -- genealogy, fixed lag, PaRIS -----------------------------------------------------------------------------------
def test_genealogy_paths_match_the_rts_smoother_within_their_degenerate_error(data):
    # The genealogy is exact for its law but coalesces: at step t, the final weights pooled by ancestor at t give
    # an effective number of distinct states 1 / sum_m S_m^2, often a few dozen at early steps for n = 300. Each
    # row's estimate then has variance about sigma_t^2 * sum_m S_m^2; the SE over rows is what the check uses, and
    # it is much larger at early steps than for backward sampling: degeneracy shows, it is not hidden.
    y, exact = data
    rows, n = 16, 300
    _, res = _run(y, rows, n, seed=12)
    gen = genealogy_paths(res)
    mean, var = _moments(gen)
    _check_moments(mean, var, exact, n=n)
    lineages = res.history.lineages()
    assert lineages[-1].mean() < n / 5  # few distinct step-0 ancestors survive


def test_fixed_lag_matches_the_truncated_smoother(data):
    # E[x_s | y_0:s+L] is the RTS mean of the data truncated at s + L.
    y, _ = data
    rows, n, lag = 16, 400, 3
    _, res = _run(y, rows, n, seed=13)
    est = np.asarray(replay(res, FixedLag(lambda x: x[..., 0], lag=lag)))
    assert est.shape == (T, rows)
    exact = np.array([rts_smoother(SSM, y[: min(s + lag, T - 1) + 1]).smoothed_means[s, 0] for s in range(T)])
    se = est.std(axis=1, ddof=1) / math.sqrt(rows)
    assert np.all(np.abs(est.mean(axis=1) - exact) < 4 * se)
    # lag 0 is the filter: exactly the weighted means of each step
    filt = np.asarray(replay(res, FixedLag(lambda x: x[..., 0], lag=0)))
    for t in range(T):
        w = np.exp(res.history.log_weights[t])
        np.testing.assert_allclose(filt[t], np.sum(w * res.history.particles[t][..., 0], axis=-1), rtol=1e-12)


def _one_hot_moments(t, prev, x):
    """h_t(x_{t-1}, x_t) = (x_t, x_t^2) in slot t of a (T, 2) array: the additive functional of all marginals."""
    out = np.zeros((*x.shape[:-1], T, 2))
    out[..., t, 0] = x[..., 0]
    out[..., t, 1] = x[..., 0] ** 2
    return out


@pytest.mark.parametrize("method", ["reject"])  # the quadratic kernel is FFBS's, checked above
def test_paris_matches_the_rts_smoother(data, method):
    y, exact = data
    rows, n = 16, 300
    model, res = _run(y, rows, n, seed=14)
    tracker = PaRIS(model, _one_hot_moments, n_backward=2, method=method, seed=15)
    online = np.asarray(replay(res, tracker))
    assert online.shape == (T, rows, T, 2)
    final = online[-1]  # E[x_s | y_0:T-1] and E[x_s^2 | y_0:T-1] for every s
    mean = final[..., 0].T
    var = (final[..., 1] - final[..., 0] ** 2).T
    _check_moments(mean, var, exact, n=n)
    # online: at each step t, slot t is the filtering mean (h_t only adds x_t to it)
    kf = kalman_filter(SSM, y)
    filt = online[np.arange(T), :, np.arange(T), 0]
    se = filt.std(axis=1, ddof=1) / math.sqrt(rows)
    assert np.all(np.abs(filt.mean(axis=1) - kf.filtered_means[:, 0]) < 4 * se)
    if method == "reject":
        assert 0 < tracker.acceptance <= 1


# -- errors and primitives -----------------------------------------------------------------------------------------
class _NoTransition(smckit.FeynmanKac):
    num_steps = 3

    def initial(self, n, rng):
        return rng.normal((n, 1))

    def propose(self, t, state, rng):
        return state + rng.normal(state.shape)

    def log_potential(self, t, prev, state):
        return -0.5 * state[..., 0] ** 2


class _LooseBound(_NoTransition):
    def log_transition(self, t, prev, state):
        return -0.5 * ((state - prev)[..., 0]) ** 2

    def log_transition_max(self, t):
        return -1.0  # wrong: the density reaches 0


def test_errors_are_clear(data):
    y, _ = data
    model = _NoTransition()
    res = smckit.run(model, 20, seed=0, history="full")
    with pytest.raises(InvalidArgumentError, match="log_transition"):
        backward_sampling(res, model, 5)
    with pytest.raises(InvalidArgumentError, match="log_transition"):
        PaRIS(model, lambda t, p, x: x)
    loose = _LooseBound()
    res = smckit.run(loose, 20, seed=0, history="full")
    with pytest.raises(InvalidArgumentError, match="above log_transition_max"):
        backward_sampling(res, loose, 50, seed=1)
    assert backward_sampling(res, loose, 5, method="quadratic").paths.shape == (3, 5, 1)  # needs no bound
    boot = Bootstrap(SSM, y)
    short = smckit.run(boot, 20, seed=0)
    with pytest.raises(InvalidArgumentError, match="history='full'"):
        backward_sampling(short, boot, 5)
    with pytest.raises(InvalidArgumentError, match="history='full'"):
        genealogy_paths(short)
    full = smckit.run(boot, 20, seed=0, history="full")
    with pytest.raises(InvalidArgumentError, match="n_paths"):
        backward_sampling(full, boot, 0)
    with pytest.raises(InvalidArgumentError, match="method"):
        backward_sampling(full, boot, 5, method="mcmc")
    with pytest.raises(InvalidArgumentError, match="lag"):
        FixedLag(lambda x: x, lag=-1)
    with pytest.raises(InvalidArgumentError, match="n_backward"):
        PaRIS(boot, lambda t, p, x: x, n_backward=0)


def test_categorical_never_draws_zero_weights_and_stays_in_range():
    with np.errstate(divide="ignore"):
        log_w = np.log(np.array([[0.0, 0.5, 0.0, 0.5, 0.0], [1e-300, 0.0, 0.0, 0.0, 1.0], [0.2, 0.2, 0.2, 0.2, 0.2]]))
    draws = Categorical(log_w).draw(20_000, RNG(0))
    assert draws.min() >= 0 and draws.max() < 5
    assert not np.any(np.isin(draws[0], [0, 2, 4]))
    assert not np.any(np.isin(draws[1], [1, 2, 3]))
    freq = np.bincount(draws[2], minlength=5) / 20_000
    assert np.all(np.abs(freq - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 20_000))
    with pytest.raises(InvalidArgumentError, match="no positive weight"):
        Categorical(np.full((2, 3), -np.inf))


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_sample_each_draws_each_law_exactly(n):
    # Two-level draws (blocks of about sqrt(n)): whole zero blocks, zeros at the end of the vector, one positive
    # weight. Frequencies within 4 binomial SDs; zero weights never drawn.
    rng = np.random.default_rng(n)
    w = rng.random((4, n))
    w[0, max(n // 2, 1) :] = 0.0
    w[1, : max(n - 1, 1)] = 0.0 if n > 1 else 1.0
    w[2, ::3] = 0.0
    w[2, -1] = 1.0
    draws = 20_000
    with np.errstate(divide="ignore"):
        log_w = np.log(np.broadcast_to(w[:, None, :], (4, draws, n)))
    idx = sample_each(log_w, RNG(n))
    assert idx.shape == (4, draws) and idx.min() >= 0 and idx.max() < n
    for row in range(4):
        p = w[row] / w[row].sum()
        freq = np.bincount(idx[row], minlength=n) / draws
        assert np.all(freq[p == 0] == 0)
        assert np.all(np.abs(freq - p) <= 4 * np.sqrt(p * (1 - p) / draws) + 1e-12)


def test_backward_kernel_rows_are_independent(data):
    # Batched draws equal, in law, the per-row draws: a target far from one row's particles but close to the other's
    # gets its parent from its own row.
    prev = np.array([[[0.0], [10.0]], [[10.0], [0.0]]])
    log_w = np.log(np.full((2, 2), 0.5))
    targets = np.full((2, 100, 1), 9.0)
    kernel = BackwardKernel(Bootstrap(SSM, data[0]), method="reject")
    idx = kernel.draw(1, prev, log_w, targets, RNG(0))
    assert np.all(idx[0] == 1) and np.all(idx[1] == 0)
