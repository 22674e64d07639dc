"""Resamplers with non-uniform output weights (e.g. Fleming-Viot with ``keep_target``) keep the evidence unbiased.

The contract (``smckit.Resampled``): such a scheme scales its output weights so that their mean is 1 in
expectation, and the engine adds ``log mean exp(log_weights)`` to the log-evidence.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import smckit
from smckit import Always, Capabilities, Resampled
from smckit.models import Bootstrap, LinearGaussian, kalman_filter
from smckit.plugins import make_resampler


class ConstantMass:
    """Identity resampling that hands back every weight as exp(c): the engine must add c to the evidence."""

    name = "constant-mass"

    def __init__(self, c: float):
        self.c = c
        self.capabilities = Capabilities(uniform_output_weights=False)

    def __call__(self, log_w, rng, *, n_out=None):
        anc = np.broadcast_to(np.arange(log_w.shape[-1]), log_w.shape)
        return Resampled(anc, np.full(log_w.shape, self.c))


def test_engine_adds_the_output_weight_mass_to_the_evidence():
    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=1.0)
    _, y = ssm.simulate(6, seed=3)
    plain = smckit.run(Bootstrap(ssm, y), 50, resampler=ConstantMass(0.0), policy=Always(), seed=1)
    heavy = smckit.run(Bootstrap(ssm, y), 50, resampler=ConstantMass(0.7), policy=Always(), seed=1)
    # Five resamplings (steps 1..5), each adding log mean exp(0.7) = 0.7; the particles are the same.
    np.testing.assert_allclose(float(heavy.log_evidence) - float(plain.log_evidence), 5 * 0.7, rtol=1e-12)


def test_keep_target_fleming_viot_evidence_is_unbiased():
    pytest.importorskip("smckit_fvd")
    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=1.0)
    T, B, n = 10, 3000, 32
    _, y = ssm.simulate(T, seed=11)
    exact = kalman_filter(ssm, y).log_likelihood
    fvd = make_resampler("fleming-viot", beta=0.5, keep_target=True)
    res = smckit.run(Bootstrap(ssm, y, batch_shape=(B,)), n, resampler=fvd, policy=Always(), seed=5, history="none")
    ratio = np.exp(np.asarray(res.log_evidence) - exact)
    assert np.std(np.asarray(res.log_evidence)) < 1.0  # light enough tails for the empirical standard error
    se = np.std(ratio, ddof=1) / math.sqrt(B)
    assert abs(ratio.mean() - 1.0) < 3 * se, (ratio.mean(), se)


def test_history_increments_add_up_to_the_evidence_with_output_weights():
    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=1.0)
    _, y = ssm.simulate(6, seed=3)
    res = smckit.run(Bootstrap(ssm, y), 50, resampler=ConstantMass(0.7), policy=Always(), seed=1)
    np.testing.assert_allclose(res.history.log_evidence_increments.sum(), float(res.log_evidence), rtol=1e-12)
