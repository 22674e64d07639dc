"""Systematic resampling: one uniform per row, ``N`` evenly spaced positions."""

from __future__ import annotations

from typing import Any

from smckit.backend import Array
from smckit.resamplers import _compiled
from smckit.resamplers._common import ancestors_from_cumulative, guard_cumulative, prepare, scaled_positions
from smckit.resamplers.base import Capabilities, Resampled

__all__ = ["Systematic"]


class Systematic:
    """Systematic resampling.

    With one uniform ``U`` per row, the ``N`` draws sit at ``(k + 1 - U) / N`` for ``k = 0, ..., N - 1`` on
    the cumulative weights (an offset uniform on (0, 1]). The number of positions at or below ``x = N C_i``
    (``C_i`` the normalised cumulative weight) is ``floor(x + U)`` (clipped to ``N``), so particle ``i`` gets
    ``floor(N C_i + U) - floor(N C_{i-1} + U)`` offspring: ``floor(N W_i)`` or ``ceil(N W_i)``, with mean
    ``N W_i``. O(n + N) per row, no search.

    Ancestors come back sorted. ``n_out`` may differ from ``n``.

    Examples
    --------
    >>> import numpy as np
    >>> from smckit.random import RNG
    >>> from smckit.resamplers import Systematic
    >>> out = Systematic()(np.log(np.array([0.1, 0.6, 0.3])), RNG(0))
    >>> out.ancestors.shape
    (3,)
    """

    name = "systematic"
    capabilities = Capabilities(unbiased=True, count_bounds="floor_ceil", variable_size=True, sorted_ancestors=True)

    def __call__(self, log_weights: Array, rng: Any, *, n_out: int | None = None) -> Resampled:
        """Resample from unnormalised log-weights of shape ``(*batch, n)``; see :class:`smckit.Resampled`.

        Raises
        ------
        InvalidArgumentError, ShapeError, InvalidWeightsError, ExtinctionError
            See :func:`smckit.resamplers._common.prepare`.
        """
        prep = prepare(log_weights, rng, n_out, name=self.name, variable_size=True)
        xp, N = prep.xp, prep.n_out
        u = prep.uniform((prep.rows, 1))
        if prep.compiled:
            return prep.result(_compiled.systematic(prep.w, prep.sums, u, N))
        cumsum = prep.cumsum(prep.w)
        x = scaled_positions(prep, cumsum, cumsum[:, -1:], N)
        # #{k >= 0 : k + 1 - u <= x} = floor(x + u): 0 at x = 0, at least N from x >= N on. x + u >= 0, so the
        # conversion to int64 (truncation) is the floor.
        cum = xp.minimum(xp.astype(x + u, xp.int64), N)
        cum = guard_cumulative(prep, cum, prep.w, N)
        return prep.result(ancestors_from_cumulative(prep, cum, N))

    def __repr__(self) -> str:
        return "Systematic()"
