"""Testing tools for resampler authors: the conformance kit and hypothesis strategies.

- :func:`check_resampler` runs every exact property and the statistical checks a scheme declares
  (:mod:`smckit.testing.conformance`); a plain function call that raises :class:`ConformanceError`
  (an ``AssertionError``) on failure.
- :mod:`smckit.testing.strategies` holds hypothesis strategies for log-weights (zeros, one-hot, n = 1, shifts
  of +-700 and 1e5, subnormal relative weights, float32, batch shapes). It needs hypothesis, so it is not
  imported here: ``from smckit.testing import strategies``.
"""

from smckit.testing.conformance import CHECKS, ConformanceError, ConformanceReport, check_resampler

__all__ = ["CHECKS", "ConformanceError", "ConformanceReport", "check_resampler"]
