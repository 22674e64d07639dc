"""The smckit-vasr plugin: VASR's scheme (conformance, registration, its diagnostic), VASR's exactness through the
engine's auxiliary weights (evidence against the Kalman filter), and VASR-Max's bias, measured as such.

The linear Gaussian model with the fully adapted look-ahead ``eta_t(x_{t-1}) = N(y_t; rho x_{t-1}, q + r)`` (left
unnormalised) is an auxiliary particle filter: VASR's ``W eta`` allocation in its textbook setting, with the exact
evidence known. VASR-Max multiplies the target by every look-ahead instead of paying it back, so its evidence
estimates a different normaliser, also known exactly here: the likelihood of the model with each ``y_{t+1}`` seen
a second time through ``x_t`` (a pseudo-observation ``y_{t+1} = rho x_t + N(0, q + r)``), times the Gaussian
constants the unnormalised look-ahead leaves out. Both are computed by a scalar Kalman filter below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import smckit
from smckit.models import Bootstrap, LinearGaussian, kalman_filter
from smckit.random import RNG
from smckit.testing import check_resampler

smckit_vasr = pytest.importorskip("smckit_vasr")
from smckit_vasr import VASR, VASRMax  # noqa: E402

RHO, SX, SY = 0.9, 1.0, 0.5
VAR = SX**2 + SY**2  # the predictive variance of y_t given x_{t-1}


class Adapted(Bootstrap):
    """The bootstrap filter with the fully adapted look-ahead log eta = -(y_t - rho x_{t-1})^2 / (2 (q + r))."""

    def log_lookahead(self, t, state):
        return -0.5 * (self.observation(t)[..., 0][..., None] - RHO * state[..., 0]) ** 2 / VAR


def scalar_kalman_log_likelihood(y, pseudo=False):
    """log p(y) of the scalar model (``pseudo``: with y_{t+1} also observed through x_t, variance VAR)."""
    m, p = 0.0, SX**2 / (1 - RHO**2)
    total = 0.0
    y = np.asarray(y).reshape(-1)
    for t in range(y.size):
        if t > 0:
            m, p = RHO * m, RHO**2 * p + SX**2
        observations = [(y[t], 1.0, SY**2)]
        if pseudo and t + 1 < y.size:
            observations.append((y[t + 1], RHO, VAR))
        for value, coef, var in observations:
            s = coef**2 * p + var
            total += -0.5 * (math.log(2 * math.pi * s) + (value - coef * m) ** 2 / s)
            gain = p * coef / s
            m, p = m + gain * (value - coef * m), (1 - gain * coef) * p
    return total


def evidence_ratio(log_z, exact):
    """The B ratios Z_hat / Z, their mean and its standard error."""
    ratio = np.exp(np.asarray(log_z) - exact)
    return ratio.mean(), ratio.std(ddof=1) / math.sqrt(ratio.size)


# -- the scheme ---------------------------------------------------------------------------------------------
def test_vasr_conforms_to_the_resampler_contract():
    # every exact property and the declared statistical ones (unbiased counts, floor/ceil), numpy and torch
    assert check_resampler(VASR).passed


def test_vasr_is_registered_through_its_entry_point():
    from smckit.plugins import make_resampler, plugins

    for name in ("vasr", "smckit-vasr:vasr"):
        assert isinstance(make_resampler(name), VASR), name
    (record,) = [r for r in plugins() if r.distribution == "smckit-vasr"]
    assert record.status == "loaded" and record.provides == {"resampler": ("vasr",)}


def test_vasr_draws_as_systematic_and_reports_the_concentration_of_its_mass():
    log_m = RNG(3).normal((3, 50))
    vasr, systematic = VASR()(log_m, RNG(4)), smckit.plugins.make_resampler("systematic")(log_m, RNG(4))
    np.testing.assert_array_equal(vasr.ancestors, systematic.ancestors)
    m = np.exp(log_m - log_m.max(-1, keepdims=True))
    expected = m.sum(-1) ** 2 / (50 * (m * m).sum(-1))
    np.testing.assert_allclose(vasr.info["mass_ess"], expected, rtol=1e-12)
    assert vasr.info["mass_ess"].shape == (3,)


# -- VASR is exact through the auxiliary weights; VASR-Max is not ---------------------------------------------
ROWS, N, T = 400, 64, 15


@pytest.fixture(scope="module")
def data():
    ssm = LinearGaussian.scalar(rho=RHO, sigma_x=SX, sigma_y=SY)
    _, y = ssm.simulate(T, seed=4)
    return ssm, y


def test_the_scalar_kalman_filter_here_agrees_with_smckits(data):
    ssm, y = data
    assert scalar_kalman_log_likelihood(y) == pytest.approx(float(kalman_filter(ssm, y).log_likelihood), abs=1e-10)


@pytest.mark.parametrize("policy", [smckit.Always(), smckit.ESSBelow(0.5)], ids=["always", "ess"])
def test_vasr_evidence_is_unbiased_against_kalman(data, policy):
    """E[Z_hat / Z] = 1: over B = 400 independent rows the mean ratio lies within 3 of its standard errors of 1
    (a two-sided normal test at p = 0.003; std(log Z_hat) < 1 keeps the standard error of the ratio reliable)."""
    ssm, y = data
    result = smckit.run(Adapted(ssm, y, batch_shape=(ROWS,)), N, resampler="vasr", policy=policy, seed=5)
    exact = scalar_kalman_log_likelihood(y)
    assert np.std(result.log_evidence) < 1.0
    mean, se = evidence_ratio(result.log_evidence, exact)
    assert abs(mean - 1.0) < 3 * se, (mean, se)
    assert result.history.resampled.any()
    assert any("mass_ess" in info for info in result.history.info)


def test_vasr_max_is_biased_by_the_look_aheads_it_never_pays_back(data):
    """VASR-Max's evidence misses Z by far more than its Monte Carlo error, and is unbiased for the normaliser of
    the target it does have (Z' = the pseudo-observed likelihood times (2 pi VAR)^{(T-1)/2}, the constants of the
    T-1 unnormalised look-aheads): the bias is exactly the one documented, not noise. Same 3-SE rule as above."""
    ssm, y = data
    result = smckit.run(
        VASRMax(Adapted(ssm, y, batch_shape=(ROWS,))), N, resampler="vasr", policy=smckit.Always(), seed=5
    )
    exact = scalar_kalman_log_likelihood(y)
    biased = scalar_kalman_log_likelihood(y, pseudo=True) + 0.5 * (T - 1) * math.log(2 * math.pi * VAR)
    assert biased - exact < -5.0  # the two normalisers differ by a factor of e^5 or more here
    mean, se = evidence_ratio(result.log_evidence, biased)
    assert abs(mean - 1.0) < 3 * se, (mean, se)
    assert np.all(np.asarray(result.log_evidence) < exact - 2.0)  # every one of the 400 rows is visibly off


def test_vasr_max_hides_the_look_ahead_from_the_engine_and_adds_it_to_the_potential(data):
    ssm, y = data
    inner = Adapted(ssm, y)
    model = VASRMax(inner)
    assert getattr(model, "log_lookahead", None) is None  # else the engine would carry 1 / eta
    x = RNG(0).normal((8, 1))
    np.testing.assert_allclose(
        model.log_potential(3, x, x), inner.log_potential(3, x, x) + inner.log_lookahead(4, x), rtol=1e-12
    )
    np.testing.assert_array_equal(model.log_potential(T - 1, x, x), inner.log_potential(T - 1, x, x))
    assert model.num_steps == inner.num_steps and "VASRMax(" in repr(model)


def test_vasr_max_refuses_a_model_without_a_look_ahead(data):
    ssm, y = data
    with pytest.raises(smckit.errors.InvalidArgumentError, match="log_lookahead"):
        VASRMax(Bootstrap(ssm, y))
    with pytest.raises(smckit.errors.InvalidArgumentError, match="rebirth"):
        VASRMax(Adapted(ssm, y)).rebirth(1, None, None, 0.1, RNG(0))
