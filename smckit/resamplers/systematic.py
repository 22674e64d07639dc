"""Systematic resampling: one uniform per row, ``N`` evenly spaced positions."""

from __future__ import annotations

from typing import Any

import numpy as np

from smckit.resamplers._compiled import ROUND_UP, jit, record, running_max
from smckit.resamplers.base import Capabilities
from smckit.resamplers.kit import (
    Outcome,
    Prepared,
    Scheme,
    ancestors_from_cumulative,
    guard_cumulative,
    scaled_positions,
)

__all__ = ["Systematic"]


class Systematic(Scheme):
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

    def reference(self, prep: Prepared) -> Outcome:
        """Ancestors of shape (rows, n_out) by the array API."""
        xp, N = prep.xp, prep.n_out
        u = prep.uniform((prep.rows, 1))
        cumsum = prep.cumsum(prep.w)
        x = scaled_positions(prep, cumsum, cumsum[:, -1:], N)
        # #{k >= 0 : k + 1 - u <= x} = floor(x + u): 0 at x = 0, at least N from x >= N on. x + u >= 0, so the
        # conversion to int64 (truncation) is the floor.
        cum = xp.minimum(xp.astype(x + u, xp.int64), N)
        cum = guard_cumulative(prep, cum, prep.w, N)
        return Outcome(ancestors_from_cumulative(prep, cum, N))

    def compiled(self, prep: Prepared) -> Outcome:
        """Ancestors of shape (rows, n_out) by :func:`_systematic`, the reference's bit for bit."""
        u = prep.uniform((prep.rows, 1))
        out = np.zeros((prep.rows, prep.n_out), np.int64)
        _systematic(prep.w, prep.sums, u, out)
        return Outcome(out)


@jit
def _systematic(w: Any, sums: Any, u: Any, out: Any) -> None:
    """Per row: ``G_i = min(floor(x_i + u), N)`` for the sequential cumulative sums, recorded into ``out``."""
    rows, n = w.shape
    n_out = out.shape[1]
    for r in range(rows):
        row = w[r]
        hist = out[r]
        scale = (n_out / sums[r]) * ROUND_UP
        offset = u[r, 0]
        s = 0.0
        for i in range(n):
            s += row[i]
            record(hist, min(int(s * scale + offset), n_out), i)
        running_max(hist)
