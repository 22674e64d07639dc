"""Adaptive tempering SMC: exponents chosen by bisection on the ESS of the weights actually applied.

Reference problem: prior N(0, I_d) and likelihood L(x) = N(y; x, s^2 I_d), whose evidence and posterior are
known in closed form:

    Z = N(y; 0, (1 + s^2) I),    posterior N(y / (1 + s^2), s^2 / (1 + s^2) I).
"""

from __future__ import annotations

import math

import array_api_compat
import numpy as np
import pytest
from scipy import stats

import smckit
from smckit.errors import InvalidArgumentError, ShapeError
from smckit.models import AdaptiveTempering, MultivariateNormal, TemperingState, tempering_trace
from smckit.random import RNG

Y = np.array([1.0, -0.5])
S = 0.3


def gaussian_log_likelihood(y: np.ndarray, s) -> callable:
    """log N(y; x, s^2 I) as a function of x ``(*batch, n, d)``; ``y`` ``(*batch, d)`` and ``s`` broadcast."""
    y = np.asarray(y, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    d = y.shape[-1]

    def log_lik(x):
        xp = array_api_compat.array_namespace(x)
        dev = array_api_compat.device(x)
        yy = xp.asarray(y[..., None, :], dtype=x.dtype, device=dev)
        ss = xp.asarray(s, dtype=x.dtype, device=dev)
        return -0.5 * xp.sum((x - yy) ** 2, axis=-1) / ss**2 - d * xp.log(ss) - 0.5 * d * math.log(2 * math.pi)

    return log_lik


def exact_log_evidence(y: np.ndarray, s) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    var = 1.0 + np.asarray(s, dtype=np.float64) ** 2
    return np.sum(stats.norm.logpdf(y, 0.0, np.sqrt(var)[..., None] if np.ndim(var) else np.sqrt(var)), axis=-1)


def make_model(backend, *, batch=(), target=0.5, y=Y, s=S, **kw) -> AdaptiveTempering:
    d = np.shape(y)[-1]
    prior = MultivariateNormal(np.zeros(d), np.eye(d))
    return AdaptiveTempering(
        prior, gaussian_log_likelihood(y, s), target_ess=target, batch_shape=batch, like=backend.like(), **kw
    )


def _np(backend, x) -> np.ndarray:
    return np.asarray(backend.to_numpy(x), dtype=np.float64)


def test_log_evidence_matches_closed_form(backend):
    """E[Z_hat / Z] = 1 up to the O(1/n) bias of the adaptive choice: mean of B ratios within 3 SE of 1."""
    B, n = 200, 400
    res = smckit.run(make_model(backend, batch=(B,)), n, seed=1, history="none")
    log_z = _np(backend, res.log_evidence)
    exact = exact_log_evidence(Y, S)
    assert np.std(log_z) < 1.0
    ratio = np.exp(log_z - exact)
    se = ratio.std(ddof=1) / math.sqrt(B)
    assert abs(ratio.mean() - 1.0) < 3 * se, (ratio.mean(), se)
    # Sanity of scale: the log-evidence is not merely unbiased on average but close in every row.
    assert np.all(np.abs(log_z - exact) < 1.0)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.8])
def test_every_step_ess_equals_the_target(backend, target):
    """The engine's ESS of the applied weights (history.ess) equals target * n within the bisection tolerance.

    Exceptions by design: the step at which a row reaches lam = 1 (the exponent is clipped, ESS >= target),
    and steps after it (increment 0, uniform weights, ESS = n).
    """
    B, n = 8, 500
    model = make_model(backend, batch=(B,), target=target, s=0.05)  # a sharp likelihood: many steps
    res = smckit.run(model, n, seed=3, history="full")
    trace = tempering_trace(res.history.particles)
    lam, ess = trace["exponent"], res.history.ess / n
    T = lam.shape[0]
    assert T >= 4, "the problem should need several tempering steps"
    # The engine's ESS is computed in the run's dtype from the normalised weights, the bisection's on its
    # own; in float32 they agree to about 1e-5.
    slack = model.tol + (1e-12 if backend.dtype_name == "float64" else 1e-4)
    prev = np.concatenate([np.zeros((1, B)), lam[:-1]])
    inner = lam < 1.0
    final = (lam == 1.0) & (prev < 1.0)
    waiting = prev == 1.0
    assert np.all(inner | final | waiting)
    assert np.all(np.abs(ess[inner] - target) <= slack), np.abs(ess[inner] - target).max()
    assert np.all(ess[inner] >= target - slack)  # the chosen exponent errs on the safe side
    assert np.all(ess[final] >= target - slack)
    np.testing.assert_allclose(ess[waiting], 1.0, rtol=1e-5)
    assert np.all(np.diff(lam, axis=0) >= 0) and np.all(lam[-1] == 1.0)
    assert np.all(np.diff(lam, axis=0)[~waiting[1:]] > 0)
    np.testing.assert_allclose(np.cumsum(trace["increment"], axis=0)[-1], 1.0, rtol=1e-5)


def test_default_policy_is_always_and_resamples_every_step():
    model = make_model(_NumpyBackend())
    assert isinstance(model.default_policy, smckit.Always)
    res = smckit.run(model, 200, seed=0)
    assert not res.history.resampled[0] and np.all(res.history.resampled[1:])
    assert float(res.particles.exponent[0]) == 1.0


def test_posterior_moments(backend):
    """Final weighted means and variances per row, averaged over B rows, within 4 SE of the exact posterior."""
    B, n = 100, 400
    res = smckit.run(make_model(backend, batch=(B,)), n, seed=5, history="none")
    x = _np(backend, res.particles.x)
    w = _np(backend, res.weights)[..., None]
    mean = np.sum(w * x, axis=-2)  # (B, d)
    var = np.sum(w * (x - mean[:, None]) ** 2, axis=-2)
    post_mean, post_var = Y / (1 + S**2), S**2 / (1 + S**2)
    for est, exact in ((mean, post_mean), (var, post_var)):
        se = est.std(axis=0, ddof=1) / math.sqrt(B)
        assert np.all(np.abs(est.mean(axis=0) - exact) < 4 * se + 1e-3 * post_var), (est.mean(0), exact, se)


def test_acceptance_rate_is_recorded_per_step(backend):
    res = smckit.run(make_model(backend, batch=(3,)), 300, seed=2, history="full")
    acc = tempering_trace(res.history.particles)["acceptance"]
    assert np.all(acc[0] == 0.0)
    # Random walk with the 2.38^2/d scaling on a near-Gaussian target accepts roughly 20-60% of moves.
    assert np.all((acc[1:] > 0.15) & (acc[1:] < 0.8)), acc
    rate = AdaptiveTempering.acceptance_rate(res.particles)
    assert tuple(rate.shape) == (3,)


def test_metropolis_moves_leave_the_target_invariant():
    """Exact posterior draws stay posterior-distributed after the moves at lam = 1 (mean, variance within 4 SE)."""
    n = 20000
    model = make_model(_NumpyBackend(), n_moves=3)
    post_mean, post_sd = Y / (1 + S**2), S / math.sqrt(1 + S**2)
    rng = RNG(0)
    x = post_mean + post_sd * rng.normal((n, 2))
    ll = model.log_likelihood(x)
    state = TemperingState(x, model.prior.logpdf(x), ll, np.ones(n), np.zeros(n), np.zeros(n))
    ev, acc = model.move_particles(state, rng)
    moved = ev.x
    assert 0.2 < acc.mean() < 0.8
    # The moved draws are correlated with the start, but each is marginally posterior-distributed and the
    # n draws are independent of each other: i.i.d. standard errors apply.
    assert np.all(np.abs(moved.mean(0) - post_mean) < 4 * post_sd / math.sqrt(n))
    assert np.all(np.abs(moved.var(0) - post_sd**2) < 4 * post_sd**2 * math.sqrt(2 / n))
    # acceptance is a fraction of the 3 moves: a particle that accepted any move has moved.
    np.testing.assert_array_equal(np.any(moved != x, axis=-1), acc > 0)


def test_rows_run_their_own_schedule():
    """Rows with different likelihood widths need different numbers of steps; each gets its own evidence right."""
    widths = np.array([0.05, 0.3, 2.0])  # sharp, medium, flat
    ys = np.array([[0.5, 0.2], [1.0, -0.5], [-1.0, 0.3]])
    B = len(widths) * 64
    s = np.repeat(widths, 64)[:, None]
    y = np.repeat(ys, 64, axis=0)
    model = AdaptiveTempering(
        MultivariateNormal(np.zeros(2), np.eye(2)), gaussian_log_likelihood(y, s), batch_shape=(B,)
    )
    res = smckit.run(model, 300, seed=4, history="full")
    lam = tempering_trace(res.history.particles)["exponent"].reshape(-1, 3, 64)
    steps_to_one = (lam < 1.0).sum(axis=0) + 1  # (3, 64)
    assert steps_to_one[0].min() > steps_to_one[1].max() >= steps_to_one[1].min() > steps_to_one[2].max()
    log_z = res.log_evidence.reshape(3, 64)
    exact = np.array([exact_log_evidence(ys[i], widths[i]) for i in range(3)])
    ratio = np.exp(log_z - exact[:, None])
    se = ratio.std(axis=1, ddof=1) / 8.0
    assert np.all(np.abs(ratio.mean(axis=1) - 1.0) < 3 * se), (ratio.mean(1), se)


def test_likelihood_with_zeros():
    """L(x) = 1{x_0 > 0}: Z = 1/2. No positive exponent keeps the ESS at 0.6, so one tiny step kills the
    particles with L = 0 and the next reaches 1; the estimate is the fraction k/n of survivors (binomial)."""
    n, B = 400, 50

    def indicator(x):
        return np.where(x[..., 0] > 0, 0.0, -np.inf)

    model = AdaptiveTempering(MultivariateNormal(np.zeros(2), np.eye(2)), indicator, target_ess=0.6, batch_shape=(B,))
    res = smckit.run(model, n, seed=8, history="full")
    assert np.all(res.particles.x[..., 0] > 0)
    z = np.exp(res.log_evidence)
    assert abs(z.mean() - 0.5) < 4 * math.sqrt(0.25 / (n * B))
    lam = tempering_trace(res.history.particles)["exponent"]
    assert np.all(lam[0] < 1e-20) and np.all(lam[-1] == 1.0)


def test_bad_arguments():
    prior = MultivariateNormal(np.zeros(2), np.eye(2))
    for kw in ({"target_ess": 1.0}, {"target_ess": 0.0}, {"n_moves": -1}, {"scale": 0.0}, {"tol": 2.0}):
        with pytest.raises(InvalidArgumentError):
            AdaptiveTempering(prior, lambda x: x[..., 0], **kw)
    with pytest.raises(ShapeError):
        smckit.run(AdaptiveTempering(prior, lambda x: x), 10, seed=0)


class _NumpyBackend:
    name, dtype_name = "numpy", "float64"

    def like(self):
        return np.zeros(0)

    def to_numpy(self, x):
        return np.asarray(x)
