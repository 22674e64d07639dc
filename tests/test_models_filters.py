"""State-space models, the Kalman filter and the bootstrap / guided particle filters.

The statistical tests run one vectorised SMC run over a batch of B independent rows (replicates on the same
data) with a fixed seed, and compare with the exact Kalman filter using tolerances derived from the Monte
Carlo error of those B replicates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import smckit
from smckit.errors import InvalidArgumentError, ShapeError
from smckit.models import (
    Bootstrap,
    Guided,
    LinearGaussian,
    MultivariateNormal,
    StochasticVolatility,
    kalman_filter,
)
from smckit.random import RNG


def _tolerance(backend, f64: float, f32: float) -> float:
    return f64 if backend.dtype_name == "float64" else f32


def _model_2d() -> LinearGaussian:
    return LinearGaussian(
        A=[[0.8, 0.2], [-0.1, 0.7]],
        C=[[1.0, 0.5], [0.0, 1.0]],
        Q=[[0.5, 0.1], [0.1, 0.3]],
        R=[[0.6, -0.2], [-0.2, 0.4]],
        mu0=[0.5, -0.3],
        P0=[[1.0, 0.3], [0.3, 0.8]],
    )


# -- the Kalman filter against the dense joint Gaussian ---------------------------------------------------------
def _joint_gaussian(ssm: LinearGaussian, T: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and covariance of (x_0..x_{T-1}) and of (y_0..y_{T-1}) by brute force, plus Cov(x, y)."""
    dx = ssm.dim_x
    mean_x = [ssm.mu0]
    cov_blocks = {(0, 0): ssm.P0}
    for t in range(1, T):
        mean_x.append(ssm.A @ mean_x[-1])
        cov_blocks[(t, t)] = ssm.A @ cov_blocks[(t - 1, t - 1)] @ ssm.A.T + ssm.Q
    for s in range(T):
        for t in range(s + 1, T):
            cov_blocks[(t, s)] = ssm.A @ cov_blocks[(t - 1, s)]  # Cov(x_t, x_s) = A Cov(x_{t-1}, x_s)
            cov_blocks[(s, t)] = cov_blocks[(t, s)].T
    cov_x = np.block([[cov_blocks[(s, t)] for t in range(T)] for s in range(T)])
    big_c = np.kron(np.eye(T), ssm.C)
    mean_y = big_c @ np.concatenate(mean_x)
    cov_y = big_c @ cov_x @ big_c.T + np.kron(np.eye(T), ssm.R)
    cov_xy = cov_x @ big_c.T
    assert cov_x.shape == (T * dx, T * dx)
    return np.concatenate(mean_x), mean_y, cov_y, cov_xy


def test_kalman_matches_the_dense_joint_gaussian():
    ssm = _model_2d()
    T = 6
    _, y = ssm.simulate(T, seed=3, batch_shape=(4,))
    res = kalman_filter(ssm, y)
    mean_x, mean_y, cov_y, cov_xy = _joint_gaussian(ssm, T)
    flat_y = y.reshape(4, -1)
    exact = stats.multivariate_normal(mean_y, cov_y).logpdf(flat_y)
    np.testing.assert_allclose(res.log_likelihood, exact, rtol=1e-10, atol=1e-10)
    # The filtering mean at the last step is the conditional mean E[x_{T-1} | y_0:T-1] of the joint Gaussian.
    cond = mean_x[None, :] + (cov_xy @ np.linalg.solve(cov_y, (flat_y - mean_y).T)).T
    np.testing.assert_allclose(res.filtered_means[:, -1], cond[:, -2:], rtol=1e-9, atol=1e-10)
    assert res.filtered_means.shape == (4, T, 2) and res.filtered_covs.shape == (T, 2, 2)
    np.testing.assert_allclose(res.log_likelihood_increments.sum(-1), res.log_likelihood)


def test_kalman_scalar_conventions():
    ssm = LinearGaussian.scalar(rho=0.5, sigma_x=1.0, sigma_y=2.0, mu0=1.0, sigma0=3.0)
    res = kalman_filter(ssm, np.array([2.0]))
    # One observation: y_0 ~ N(mu0, sigma0^2 + sigma_y^2), posterior mean by the scalar Kalman gain.
    assert res.log_likelihood == pytest.approx(stats.norm(1.0, math.sqrt(9 + 4)).logpdf(2.0), rel=1e-12)
    assert res.filtered_means[0, 0] == pytest.approx(1.0 + 9 / 13 * (2.0 - 1.0), rel=1e-12)
    assert res.predicted_means[0, 0] == 1.0 and res.predicted_covs[0, 0, 0] == 9.0
    with pytest.raises(ShapeError):
        kalman_filter(_model_2d(), np.zeros((5, 3)))


# -- model densities, sampling and construction -------------------------------------------------------------
def test_linear_gaussian_densities_match_scipy(backend64):
    ssm = _model_2d()
    rng = np.random.default_rng(0)
    x_prev, x, y = rng.normal(size=(5, 2)), rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    as_b = backend64.asarray
    got = backend64.to_numpy(ssm.logpdf_transition(1, as_b(x_prev), as_b(x)))
    want = [stats.multivariate_normal(ssm.A @ a, ssm.Q).logpdf(b) for a, b in zip(x_prev, x)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got = backend64.to_numpy(ssm.logpdf_observation(0, as_b(x), as_b(y)))
    want = [stats.multivariate_normal(ssm.C @ a, ssm.R).logpdf(b) for a, b in zip(x, y)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got = backend64.to_numpy(ssm.logpdf_initial(as_b(x)))
    np.testing.assert_allclose(got, stats.multivariate_normal(ssm.mu0, ssm.P0).logpdf(x), rtol=1e-12)


def test_stochastic_volatility_densities_match_scipy(backend64):
    sv = StochasticVolatility(mu=-1.0, rho=0.9, sigma=0.4)
    x_prev, x, y = np.array([[0.3], [-2.0]]), np.array([[-0.5], [1.5]]), np.array([[0.7], [-0.2]])
    as_b = backend64.asarray
    got = backend64.to_numpy(sv.logpdf_observation(0, as_b(x), as_b(y)))
    np.testing.assert_allclose(got, stats.norm(0, np.exp(x[:, 0] / 2)).logpdf(y[:, 0]), rtol=1e-12)
    got = backend64.to_numpy(sv.logpdf_transition(1, as_b(x_prev), as_b(x)))
    want = stats.norm(-1.0 + 0.9 * (x_prev[:, 0] + 1.0), 0.4).logpdf(x[:, 0])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got = backend64.to_numpy(sv.logpdf_initial(as_b(x)))
    np.testing.assert_allclose(got, stats.norm(-1.0, 0.4 / math.sqrt(1 - 0.81)).logpdf(x[:, 0]), rtol=1e-12)
    with pytest.raises(InvalidArgumentError):
        StochasticVolatility(rho=1.0)


@pytest.mark.parametrize("ssm", [_model_2d(), StochasticVolatility(mu=-1.0, rho=0.9, sigma=0.4)], ids=["lg2", "sv"])
def test_simulation_matches_the_densities(ssm):
    """Moments of simulated (x_0, x_1, y_1) against the model: 4000 rows, tolerance 4 standard errors."""
    B = 4000
    x, y = ssm.simulate(2, seed=11, batch_shape=(B,))
    assert x.shape == (B, 2, ssm.dim_x) and y.shape == (B, 2, ssm.dim_y)
    if isinstance(ssm, LinearGaussian):
        mean0, cov0 = ssm.mu0, ssm.P0
        innovation, cov_innov = x[:, 1] - x[:, 0] @ ssm.A.T, ssm.Q
        noise, cov_noise = y[:, 1] - x[:, 1] @ ssm.C.T, ssm.R
    else:
        mean0, cov0 = np.array([ssm.mu]), np.array([[ssm.sigma0**2]])
        innovation, cov_innov = x[:, 1] - ssm.mu - ssm.rho * (x[:, 0] - ssm.mu), np.array([[ssm.sigma**2]])
        noise, cov_noise = y[:, 1] * np.exp(-x[:, 1] / 2), np.eye(1)
    for sample, mean, cov in ((x[:, 0], mean0, cov0), (innovation, 0.0, cov_innov), (noise, 0.0, cov_noise)):
        se = np.sqrt(np.diag(cov) / B)
        assert np.all(np.abs(sample.mean(0) - mean) < 4 * se)
        # The sample variance of a Gaussian has standard error var * sqrt(2 / B).
        assert np.all(np.abs(sample.var(0) - np.diag(cov)) < 4 * np.diag(cov) * math.sqrt(2 / B))


def test_models_reject_bad_parameters_and_observations():
    with pytest.raises(InvalidArgumentError):
        LinearGaussian(A=[[1.0]], C=[[1.0]], Q=[[-1.0]], R=[[1.0]], mu0=[0.0], P0=[[1.0]])
    with pytest.raises(InvalidArgumentError):
        LinearGaussian(A=np.eye(2), C=[[1.0]], Q=np.eye(2), R=[[1.0]], mu0=[0.0, 0.0], P0=np.eye(2))
    with pytest.raises(InvalidArgumentError):
        LinearGaussian.scalar(sigma_y=0.0)
    ssm = _model_2d()
    with pytest.raises(ShapeError):
        Bootstrap(ssm, np.zeros((10, 3)))
    with pytest.raises(ShapeError):
        Bootstrap(ssm, np.zeros((3, 10, 2)), batch_shape=(4,))
    with pytest.raises(InvalidArgumentError):
        Guided(ssm, np.zeros((10, 2)), proposal=None)  # type: ignore[arg-type]


def test_filter_shapes_and_batch_broadcasting(backend):
    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=1.0)
    _, y = ssm.simulate(7, seed=0, batch_shape=(3,))
    y_b = backend.asarray(y)
    res = smckit.run(Bootstrap(ssm, y_b), 16, seed=0)  # batch from the data
    assert tuple(res.particles.shape) == (3, 16, 1) and tuple(res.log_evidence.shape) == (3,)
    assert res.particles.dtype == backend.dtype and res.log_weights.dtype == backend.dtype
    res = smckit.run(Bootstrap(ssm, backend.asarray(y[0, :, 0]), batch_shape=(2, 5)), 16, seed=0)  # (T,) data
    assert tuple(res.particles.shape) == (2, 5, 16, 1) and res.history.ess.shape == (7, 2, 5)
    res = smckit.run(Guided(ssm, y_b, ssm.optimal_proposal(), batch_shape=(3,)), 16, seed=0)
    assert tuple(res.particles.shape) == (3, 16, 1) and res.particles.dtype == backend.dtype


def test_same_code_on_numpy_and_torch_gives_the_same_densities():
    torch = pytest.importorskip("torch")
    ssm = _model_2d()
    prop = ssm.optimal_proposal()
    rng = np.random.default_rng(5)
    xp_, x, y = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 1, 2))
    for fn in (
        lambda a, b, c: ssm.logpdf_transition(1, a, b),
        lambda a, b, c: ssm.logpdf_observation(1, b, c),
        lambda a, b, c: prop.logpdf(1, a, b, c),
        lambda a, b, c: prop.logpdf_initial(b, c),
    ):
        got = fn(*(torch.as_tensor(v) for v in (xp_, x, y))).numpy()
        np.testing.assert_allclose(got, fn(xp_, x, y), rtol=1e-13)


# -- the guided filter with the locally optimal proposal --------------------------------------------------------
def test_optimal_proposal_potential_is_the_predictive_density(backend64):
    """With q = p(x_t | x_{t-1}, y_t), G_t = p(y_t | x_{t-1}) = N(y_t; C A x_{t-1}, C Q C^T + R): exact."""
    ssm = _model_2d()
    _, y = ssm.simulate(3, seed=2)
    model = Guided(ssm, backend64.asarray(y), ssm.optimal_proposal(), batch_shape=())
    rng = RNG(4)
    x0 = model.initial(50, rng)
    x1 = model.propose(1, x0, rng)
    got = backend64.to_numpy(model.log_potential(1, x0, x1))
    x0_np = backend64.to_numpy(x0)
    pred = stats.multivariate_normal(np.zeros(2), ssm.C @ ssm.Q @ ssm.C.T + ssm.R)
    want = pred.logpdf(y[1] - x0_np @ (ssm.C @ ssm.A).T)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    got0 = backend64.to_numpy(model.log_potential(0, None, x0))
    want0 = stats.multivariate_normal(ssm.C @ ssm.mu0, ssm.C @ ssm.P0 @ ssm.C.T + ssm.R).logpdf(y[0])
    np.testing.assert_allclose(got0, np.full(50, want0), rtol=1e-10)  # step 0: constant, p(y_0)


# -- statistical agreement with the Kalman filter ------------------------------------------------------------------
def _evidence_ratio_check(log_evidence: np.ndarray, exact: float) -> None:
    """Unbiasedness: E[Z_hat / Z] = 1. The B row ratios are i.i.d.; the mean is within 3 standard errors of 1.

    The ratio's standard error is estimated from the same rows; the check that log Z_hat has standard
    deviation below 1 keeps the ratio's distribution light-tailed enough for that estimate to be reliable.
    """
    ratio = np.exp(log_evidence - exact)
    B = ratio.size
    assert np.std(log_evidence) < 1.0, "Monte Carlo noise too large for a reliable standard error"
    se = np.std(ratio, ddof=1) / math.sqrt(B)
    assert abs(ratio.mean() - 1.0) < 3 * se, (ratio.mean(), se)


@pytest.mark.parametrize("kind", ["bootstrap", "guided"])
def test_evidence_is_unbiased_against_kalman(backend, kind):
    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=1.0) if kind == "bootstrap" else _model_2d()
    T, B, n = 25, 400, 256
    _, y = ssm.simulate(T, seed=7)
    y_b = backend.asarray(y)
    exact = float(kalman_filter(ssm, backend.to_numpy(y_b).astype(np.float64)).log_likelihood)
    if kind == "bootstrap":
        model = Bootstrap(ssm, y_b, batch_shape=(B,))
    else:
        model = Guided(ssm, y_b, ssm.optimal_proposal(), batch_shape=(B,))
    res = smckit.run(model, n, seed=2024, history="none")
    _evidence_ratio_check(np.asarray(backend.to_numpy(res.log_evidence), dtype=np.float64), exact)


def test_filtering_means_match_kalman(backend):
    """Per step t, the mean over B rows of (particle mean - Kalman mean) is within 4 standard errors of 0.

    Bonferroni over T = 25 steps: 4 SE (two-sided 6e-5 each) keeps the family-wise level near 2e-3. The
    self-normalised estimate is biased by O(1/n); relative to the standard error of the B-row mean,
    O(sd / sqrt(n B)), that bias is O(sqrt(B / n)) = O(1) at most with B <= n, well inside the 4 SE.
    """
    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.7)
    T, B, n = 25, 256, 512
    _, y = ssm.simulate(T, seed=8)
    y_b = backend.asarray(y)
    kf = kalman_filter(ssm, backend.to_numpy(y_b).astype(np.float64))
    smc = smckit.SMC(Bootstrap(ssm, y_b, batch_shape=(B,)), n, seed=99, history="none")
    for step in smc:
        w = backend.to_numpy(smckit.weights.normalise(step.log_weights)).astype(np.float64)
        est = np.sum(w * backend.to_numpy(step.state)[..., 0], axis=-1)  # (B,)
        err = est - kf.filtered_means[step.t, 0]
        se = err.std(ddof=1) / math.sqrt(B)
        assert abs(err.mean()) < 4 * se, (step.t, err.mean(), se)
        # Each row is within 6 of its own Monte Carlo standard deviations (a bound per row, all B rows).
        assert np.all(np.abs(err) < 6 * err.std() + 1e-6)


def test_guided_filter_has_less_weight_variance_than_bootstrap():
    """On the same data, the locally optimal proposal's evidence estimate varies less (5x fewer variance)."""
    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.3)
    _, y = ssm.simulate(30, seed=1)
    boot = smckit.run(Bootstrap(ssm, y, batch_shape=(200,)), 100, seed=1, history="none").log_evidence
    guided = smckit.run(Guided(ssm, y, ssm.optimal_proposal(), batch_shape=(200,)), 100, seed=1, history="none")
    assert np.var(guided.log_evidence) < 0.2 * np.var(boot)


def test_stochastic_volatility_filter_agrees_across_backends():
    """The SV filter's mean log-evidence on numpy and torch agree within 4 combined standard errors."""
    torch = pytest.importorskip("torch")
    sv = StochasticVolatility(mu=-1.0, rho=0.95, sigma=0.3)
    _, y = sv.simulate(50, seed=5)
    B, n = 128, 256
    a = smckit.run(Bootstrap(sv, y, batch_shape=(B,)), n, seed=1, history="none").log_evidence
    b = smckit.run(Bootstrap(sv, torch.as_tensor(y), batch_shape=(B,)), n, seed=1, history="none").log_evidence
    b = b.numpy()
    se = math.sqrt(a.var(ddof=1) / B + b.var(ddof=1) / B)
    assert abs(a.mean() - b.mean()) < 4 * se
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))


def test_multivariate_normal_helper(backend):
    mvn = MultivariateNormal([1.0, -1.0], [[2.0, 0.5], [0.5, 1.0]])
    draws = mvn.sample((20000,), RNG(0), like=backend.like())
    assert draws.dtype == backend.dtype and tuple(draws.shape) == (20000, 2)
    d = backend.to_numpy(draws).astype(np.float64)
    # Mean within 4 SE; the covariance is checked to 0.1 (SE of each entry <= sqrt(2 * 2^2 / 20000) = 0.02).
    assert np.all(np.abs(d.mean(0) - mvn.mean) < 4 * np.sqrt(np.diag(mvn.cov) / 20000))
    np.testing.assert_allclose(np.cov(d.T), mvn.cov, atol=0.1)
    got = backend.to_numpy(mvn.logpdf(backend.asarray(d[:5])))
    np.testing.assert_allclose(
        got, stats.multivariate_normal(mvn.mean, mvn.cov).logpdf(d[:5]), rtol=_tolerance(backend, 1e-12, 1e-5)
    )
