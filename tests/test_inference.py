"""Parameter inference (PMMH, particle Gibbs, SMC^2) against an exact posterior on a grid.

Reference problem: x_0 ~ N(0, 1), x_t = rho x_{t-1} + N(0, 1), y_t = x_t + N(0, 0.5^2), T = 25 observations simulated
at rho = 0.7, prior rho ~ U(-1, 1). The likelihood p(y | rho) is exact (Kalman filter), so the posterior of rho
and the evidence p(y) = ∫ p(y | rho) p(rho) drho are computed on a grid of 2001 points (the trapezoid error on a
grid of step 1e-3 is far below every tolerance here).

Tolerances: an MCMC estimate of the posterior mean has standard error sd / sqrt(ESS), with ESS the chains' effective
sample size (estimated from the chains themselves, Geyer's initial positive sequence); the chains start from exact
posterior draws, so there is no burn-in bias. We allow 4 standard errors. For the variance, the standard error of a
sample variance of ESS effectively independent near-Gaussian draws is var * sqrt(2 / ESS); 4 of those.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import smckit
from smckit.errors import InvalidArgumentError, ShapeError
from smckit.inference import (
    Chains,
    WeightedSamples,
    complete_log_likelihood,
    conditional_smc,
    effective_sample_size,
    particle_gibbs,
    pmmh,
    smc2,
)
from smckit.inference.conditional import draw_path
from smckit.models import Bootstrap, LinearGaussian, kalman_filter
from smckit.models.ssm import StateSpaceModel
from smckit.random import RNG

SX, SY, S0, T = 1.0, 0.5, 1.0, 25


class AR1(StateSpaceModel):
    """The reference model with one rho per batch row: ``rho`` of shape (C,), states (C, n, 1)."""

    dim_x = dim_y = 1

    def __init__(self, rho):
        self.rho = np.asarray(rho, dtype=np.float64).reshape(-1, 1, 1)

    def sample_initial(self, shape, rng, *, like):
        return S0 * rng.normal((*shape, 1), like=like)

    def logpdf_initial(self, x):
        return -0.5 * (x[..., 0] / S0) ** 2 - math.log(S0 * math.sqrt(2 * math.pi))

    def sample_transition(self, t, x_prev, rng):
        return self.rho * x_prev + SX * rng.normal(x_prev.shape, like=x_prev)

    def logpdf_transition(self, t, x_prev, x):
        z = (x - self.rho * x_prev)[..., 0] / SX
        return -0.5 * z * z - math.log(SX * math.sqrt(2 * math.pi))

    def sample_observation(self, t, x, rng):
        return x + SY * rng.normal(x.shape, like=x)

    def logpdf_observation(self, t, x, y):
        z = (y - x)[..., 0] / SY
        return -0.5 * z * z - math.log(SY * math.sqrt(2 * math.pi))


def scalar_ssm(rho: float) -> LinearGaussian:
    return LinearGaussian.scalar(rho=rho, sigma_x=SX, sigma_y=SY, sigma0=S0)


Y = scalar_ssm(0.7).simulate(T, seed=3)[1]


def model_of(theta):
    theta = np.asarray(theta)
    return Bootstrap(AR1(theta[:, 0]), Y, batch_shape=(theta.shape[0],))


def log_prior(theta):
    return np.where(np.abs(theta[..., 0]) < 1, -math.log(2.0), -np.inf)


def sample_prior(shape, rng, like=None):
    return 2.0 * rng.uniform((*shape, 1)) - 1.0


def kalman_log_likelihood(rho: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The scalar Kalman filter's log-likelihood for every rho at once (checked against kalman_filter below)."""
    m, p = np.zeros_like(rho), np.full_like(rho, S0**2)
    total = np.zeros_like(rho)
    for t in range(y.shape[0]):
        if t > 0:
            m, p = rho * m, rho**2 * p + SX**2
        s = p + SY**2
        total += -0.5 * (y[t, 0] - m) ** 2 / s - 0.5 * np.log(2 * math.pi * s)
        k = p / s
        m, p = m + k * (y[t, 0] - m), (1 - k) * p
    return total


@pytest.fixture(scope="module")
def exact():
    rho = np.linspace(-1, 1, 2003)[1:-1]
    log_post = kalman_log_likelihood(rho, Y) - math.log(2.0)
    top = log_post.max()
    w = np.exp(log_post - top)
    log_evidence = top + math.log(np.trapezoid(w, rho))
    w /= w.sum()
    mean = float(w @ rho)
    return {"rho": rho, "w": w, "mean": mean, "var": float(w @ (rho - mean) ** 2), "log_evidence": log_evidence}


def posterior_draws(exact, k: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).choice(exact["rho"], size=k, p=exact["w"])[:, None]


def check_moments(chains: Chains, exact) -> None:
    ess = float(chains.ess()[0])
    assert ess > 50, ess  # enough for the normal approximation of the standard errors below
    sd = math.sqrt(exact["var"])
    assert abs(chains.mean()[0] - exact["mean"]) < 4 * sd / math.sqrt(ess), (chains.mean(), exact["mean"], ess)
    assert abs(chains.var()[0] - exact["var"]) < 4 * exact["var"] * math.sqrt(2 / ess), (chains.var(), exact["var"])


def test_grid_likelihood_is_the_kalman_filter():
    for rho in (-0.5, 0.3, 0.9):
        expected = float(kalman_filter(scalar_ssm(rho), Y).log_likelihood)
        assert kalman_log_likelihood(np.array([rho]), Y)[0] == pytest.approx(expected, rel=1e-12)


def test_pmmh_posterior_moments(exact):
    start = posterior_draws(exact, 24, seed=0)
    chains = pmmh(model_of, log_prior, start, n_particles=64, n_iter=60, seed=1, vectorized=True)
    assert chains.theta.shape == (24, 60, 1) and chains.acceptance_rate.shape == (24,)
    assert 0.05 < chains.acceptance_rate.mean() < 0.8
    check_moments(chains, exact)


def test_pmmh_one_chain_without_vectorisation():
    """The issue's signature: model_of(theta) with theta of shape (d,), chains of shape (n_iter, d)."""

    def one(theta):
        return Bootstrap(scalar_ssm(float(theta[0])), Y)

    chains = pmmh(one, lambda th: 0.0 if abs(th[0]) < 1 else -np.inf, [0.6], n_particles=32, n_iter=15, seed=2)
    assert chains.theta.shape == (15, 1) and chains.acceptance_rate.shape == ()
    assert np.all(np.abs(chains.theta) < 1)
    # A rejected proposal repeats the previous draw, and the log-likelihood estimate with it.
    same = np.r_[False, np.all(np.diff(chains.theta, axis=0) == 0, axis=1)]
    assert np.array_equal(same[1:], ~chains.accepted[1:])


@pytest.mark.parametrize("sampling", ["ancestor", "backward"])
def test_particle_gibbs_posterior_moments(exact, sampling):
    start = posterior_draws(exact, 32, seed=4)
    chains = particle_gibbs(
        model_of, log_prior, start, n_particles=16, n_iter=25, seed=5, sampling=sampling, vectorized=True
    )
    assert chains.theta.shape == (32, 25, 1)
    assert 0.1 < chains.info["acceptance_rate_theta"] < 0.9
    check_moments(chains, exact)


@pytest.mark.parametrize("sampling", ["ancestor", "backward"])
def test_conditional_smc_keeps_the_reference_path(sampling):
    """Invariant: slot 0 holds the reference at every step; without ancestor sampling slot 0 descends from slot 0."""
    theta = np.array([[0.5], [0.9], [-0.3]])
    model = model_of(theta)
    rng = RNG(7)
    first = conditional_smc(model, None, 30, rng, sampling=sampling, batch_ndim=1)
    reference = draw_path(first, model, rng, sampling=sampling, batch_ndim=1)
    assert len(reference) == T and reference[0].shape == (3, 1, 1)
    res = conditional_smc(model, reference, 30, rng, sampling=sampling, batch_ndim=1)
    for t in range(T):
        np.testing.assert_array_equal(res.history.particles[t][:, :1], reference[t])
    anc = res.history.ancestors
    if sampling == "backward":
        assert np.all(anc[1:, :, 0] == 0)
    else:  # ancestor sampling moves the reference's lineage to other particles, at least sometimes
        assert np.any(anc[1:, :, 0] != 0)
    # The non-reference particles keep moving: the run is not a copy of the reference.
    assert np.all(np.std(res.history.particles[-1][:, 1:, 0], axis=-1) > 0)


def test_complete_log_likelihood_is_the_joint_density():
    theta = np.array([[0.4]])
    path = [np.full((1, 1, 1), 0.1 * t) for t in range(T)]
    ssm = scalar_ssm(0.4)
    x = np.array([0.1 * t for t in range(T)])
    expected = (
        ssm.logpdf_initial(x[:1, None])[0]
        + sum(float(ssm.logpdf_transition(t, x[t - 1 : t, None], x[t : t + 1, None])[0]) for t in range(1, T))
        + sum(float(ssm.logpdf_observation(t, x[t : t + 1, None], Y[t : t + 1])[0]) for t in range(T))
    )
    assert complete_log_likelihood(model_of(theta), path)[0] == pytest.approx(expected, rel=1e-12)


def test_smc2_posterior_and_evidence(exact):
    out = smc2(
        model_of, log_prior, sample_prior, n_theta=600, n_x=50, seed=11, vectorized=True, resampler="multinomial"
    )
    assert isinstance(out, WeightedSamples) and out.theta.shape == (600, 1)
    # The weighted sample's error: sd / sqrt(ESS) with ESS the final weights' ESS, inflated by the correlation that
    # resampling and a single PMMH move leave between theta-particles; we allow 5 of those (ESS / 4 would be
    # a cautious effective size: the ratio is below 2 in repeated runs, see the slow test).
    sd = math.sqrt(exact["var"])
    ess = out.ess / 4
    assert abs(out.mean()[0] - exact["mean"]) < 4 * sd / math.sqrt(ess), (out.mean(), exact["mean"])
    assert abs(out.var()[0] - exact["var"]) < 4 * exact["var"] * math.sqrt(2 / ess), (out.var(), exact["var"])
    # Evidence: the single-run variance estimate of the outer system, 4 standard deviations (plus 0.05 for the
    # estimator's own error).
    se = math.sqrt(out.info["log_evidence_variance"])
    assert abs(out.log_evidence - exact["log_evidence"]) < 4 * se + 0.05, (out.log_evidence, exact["log_evidence"], se)
    assert np.all(np.isnan(out.info["acceptance"]) | (out.info["acceptance"] > 0))


def test_smc2_doubles_inner_particles_when_acceptance_collapses(exact):
    out = smc2(model_of, log_prior, sample_prior, n_theta=200, n_x=4, seed=3, vectorized=True, min_acceptance=0.3)
    n_x = out.info["n_x"]
    assert n_x[0] == 4 and n_x[-1] > 4 and np.all(np.diff(n_x) >= 0)
    assert abs(out.mean()[0] - exact["mean"]) < 0.15  # a sanity bound: 1.1 posterior sd at this small size


@pytest.mark.slow
def test_smc2_repeated_runs_are_unbiased(exact):
    """Over R runs: the mean log-evidence and posterior mean within 4 standard errors of the grid."""
    R = 8
    outs = [
        smc2(model_of, log_prior, sample_prior, n_theta=500, n_x=50, seed=100 + r, vectorized=True) for r in range(R)
    ]
    z = np.array([o.log_evidence for o in outs])
    ratio = np.exp(z - exact["log_evidence"])
    assert abs(ratio.mean() - 1) < 4 * ratio.std(ddof=1) / math.sqrt(R) + 0.02
    means = np.array([o.mean()[0] for o in outs])
    assert abs(means.mean() - exact["mean"]) < 4 * means.std(ddof=1) / math.sqrt(R) + 1e-3


def test_to_arviz():
    az = pytest.importorskip("arviz")
    chains = Chains(
        np.arange(24.0).reshape(2, 6, 2), np.zeros((2, 6)), np.zeros((2, 6)), np.ones((2, 6), bool), names=["a", "b"]
    )
    data = chains.to_arviz(burn_in=1)
    assert isinstance(data, az.InferenceData)
    assert data.posterior["a"].shape == (2, 5) and float(data.posterior["b"][1, 0]) == 15.0
    weighted = WeightedSamples(np.array([[0.0], [1.0]]), np.log([0.25, 0.75]), -1.0)
    draws = weighted.to_arviz(seed=0).posterior["theta[0]"].values
    assert draws.shape == (1, 2) and set(draws.ravel()) <= {0.0, 1.0}


def test_effective_sample_size_of_independent_and_correlated_chains():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 2000, 1))
    # Independent draws: ESS near n (its sampling error is a few percent at this size).
    assert 0.8 * 8000 < effective_sample_size(iid)[0] < 1.2 * 8000
    ar = np.zeros((4, 2000, 1))
    for i in range(1, 2000):
        ar[:, i] = 0.9 * ar[:, i - 1] + rng.normal(size=(4, 1))
    # AR(1) with coefficient 0.9: ESS = n (1 - 0.9) / (1 + 0.9), about 421 here.
    assert 0.6 * 421 < effective_sample_size(ar)[0] < 1.5 * 421


def test_bad_arguments():
    with pytest.raises(InvalidArgumentError, match="support"):
        pmmh(model_of, log_prior, [[1.5]], n_particles=10, n_iter=2, vectorized=True)
    with pytest.raises(InvalidArgumentError, match="sampling"):
        particle_gibbs(model_of, log_prior, [[0.5]], n_particles=10, n_iter=2, sampling="forward", vectorized=True)
    with pytest.raises(ShapeError, match="batch shape"):  # a model without the chains' batch axis
        pmmh(
            lambda th: Bootstrap(scalar_ssm(0.5), Y),
            log_prior,
            [[0.5], [0.2]],
            n_particles=10,
            n_iter=2,
            vectorized=True,
        )
    with pytest.raises(ShapeError):
        pmmh(model_of, log_prior, np.zeros((2, 2, 1)), n_particles=10, n_iter=2)
    with pytest.raises(InvalidArgumentError):
        smc2(model_of, log_prior, sample_prior, n_theta=0, n_x=10)
    with pytest.raises(InvalidArgumentError, match="log_joint"):  # no state-space model to take p(x, y) from
        particle_gibbs(lambda th: Opaque(model_of(th)), log_prior, [[0.5]], n_particles=4, n_iter=1, vectorized=True)


class Opaque(smckit.FeynmanKac):
    """A filter seen only through the Feynman-Kac interface (and its transition density)."""

    def __init__(self, model):
        self.model, self.num_steps = model, model.num_steps

    def initial(self, n, rng):
        return self.model.initial(n, rng)

    def propose(self, t, state, rng):
        return self.model.propose(t, state, rng)

    def log_potential(self, t, prev, state):
        return self.model.log_potential(t, prev, state)

    def log_transition(self, t, prev, state):
        return self.model.log_transition(t, prev, state)
