"""The plugin's own check: smckit's conformance kit on the Fleming-Viot resampler, and its registration.

Run from the plugin directory with ``python -m pytest tests`` after ``pip install -e .`` (smckit's own test suite
has the full statistical tests of the plugin in ``tests/test_fvd.py``).
"""

import numpy as np
import pytest
from smckit.random import RNG
from smckit.testing import check_resampler

from smckit_fvd import FlemingViot


def test_conformance_default():
    check_resampler(FlemingViot)  # every check, the unbiasedness of the counts included


@pytest.mark.parametrize(
    "options",
    [{"parent": "survivors-uniform"}, {"absorption": 0.25, "controller": "exact"}],
    ids=["survivors-uniform", "exact-absorption"],
)
def test_conformance_options(options):
    # A lighter run: the options change the parent rule or the exponent, not what the large case exercises.
    check_resampler(lambda: FlemingViot(**options), large=False, examples=10, replicates=600)


def test_registered_through_the_entry_point():
    from smckit.plugins import make_resampler

    assert isinstance(make_resampler("fvd"), FlemingViot)
    assert isinstance(make_resampler("fleming-viot", absorption=0.3), FlemingViot)


def test_no_deaths_at_equal_weights():
    out = FlemingViot()(np.zeros((4, 1000)), RNG(0))
    assert not out.reborn.any()
    np.testing.assert_array_equal(out.ancestors, np.broadcast_to(np.arange(1000), (4, 1000)))
