"""The example plugin's own tests: smckit's conformance kit, and registration by name.

Run after installing the plugin (the entry point must be visible): ``pip install -e . && pytest tests``.
"""

import numpy as np
import pytest
import smckit
from smckit.random import RNG
from smckit.testing import check_resampler

from smckit_example import ShuffledSystematic


def test_conforms_to_the_resampler_contract():
    # Every exact property (shapes, range, zero weights, float32 at n = 10**6, floor/ceil counts, ...) and the
    # declared statistical ones (unbiased counts), on numpy and torch, float64 and float32.
    report = check_resampler(ShuffledSystematic)
    assert report.passed


def test_is_registered_by_name():
    for name in ("shuffled-systematic", "shuffled", "smckit-example:shuffled-systematic"):
        assert isinstance(smckit.plugins.make_resampler(name), ShuffledSystematic), name
    (record,) = [r for r in smckit.plugins.plugins() if r.distribution == "smckit-example"]
    assert record.status == "loaded" and record.provides == {"resampler": ("shuffled-systematic",)}


def test_the_order_is_random_but_the_counts_are_not():
    # With n W = (1.5, 1.5, 1, 0): the particles of weight 1.5 share one extra copy; which one gets it depends
    # on the shuffle, so over many calls both do (plain systematic would favour one of them by position).
    log_w = np.log(np.array([1.5, 1.5, 1.0, 0.0]))
    rng = RNG(0)
    counts = np.array([np.bincount(ShuffledSystematic()(log_w, rng).ancestors, minlength=4) for _ in range(200)])
    assert set(map(tuple, counts)) == {(2, 1, 1, 0), (1, 2, 1, 0)}


@pytest.mark.parametrize("n_out", [1, 3, 10])
def test_counts_are_floor_or_ceil_for_any_output_size(n_out):
    W = np.array([0.05, 0.3, 0.0, 0.15, 0.25, 0.25])
    out = ShuffledSystematic()(np.log(W), RNG(1), n_out=n_out)
    counts = np.bincount(out.ancestors, minlength=W.size)
    assert counts.sum() == n_out and counts[2] == 0
    assert np.all((counts == np.floor(n_out * W)) | (counts == np.ceil(n_out * W)))
