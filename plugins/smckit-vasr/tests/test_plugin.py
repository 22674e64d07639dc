"""The plugin's own check: smckit's conformance kit on VASR's scheme, its registration, and VASR-Max's wrapper.

Run from the plugin directory with ``python -m pytest tests`` after ``pip install -e .`` (smckit's own test suite
has the statistical tests, VASR's evidence against the Kalman filter and VASR-Max's bias, in ``tests/test_vasr.py``).
"""

import pytest
import smckit
from smckit.testing import check_resampler

from smckit_vasr import VASR, VASRMax


def test_conformance():
    check_resampler(VASR)


def test_registered_through_the_entry_point():
    from smckit.plugins import make_resampler

    assert isinstance(make_resampler("vasr"), VASR)


def test_vasr_max_needs_a_look_ahead():
    from smckit.models import Bootstrap, LinearGaussian

    ssm = LinearGaussian.scalar()
    _, y = ssm.simulate(3, seed=0)
    with pytest.raises(smckit.errors.InvalidArgumentError, match="log_lookahead"):
        VASRMax(Bootstrap(ssm, y))
