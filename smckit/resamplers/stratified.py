"""Stratified resampling: one uniform in each of the ``N`` strata ``[k/N, (k+1)/N)``."""

from __future__ import annotations

import math
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
    take_along,
)

__all__ = ["Stratified"]


class Stratified(Scheme):
    """Stratified resampling.

    The ``N`` draws sit at ``(k + U_k) / N`` with independent uniforms ``U_k``, one per stratum. On the scale
    ``x = N * C`` of the cumulative weights, the strata ``0, ..., m - 1`` (``m = floor(x)``) lie entirely below
    ``x`` and stratum ``m`` contributes when ``U_m < x - m``, so the number of positions below ``x`` is
    ``G(x) = m + [U_m < x - m]``: one gather per particle, no search, O(n + N) per row. Counts have mean
    ``N W_i`` and lie within ``floor(N W_i) - 1`` and ``ceil(N W_i) + 1``; no tighter bound holds, so none is
    declared.

    Ancestors come back sorted. ``n_out`` may differ from ``n``.
    """

    name = "stratified"
    capabilities = Capabilities(unbiased=True, count_bounds=None, variable_size=True, sorted_ancestors=True)

    def reference(self, prep: Prepared) -> Outcome:
        """Ancestors of shape (rows, n_out) by the array API."""
        xp, N = prep.xp, prep.n_out
        u = prep.uniform((prep.rows, N))
        cumsum = prep.cumsum(prep.w)
        x = scaled_positions(prep, cumsum, cumsum[:, -1:], N)
        m = xp.astype(xp.minimum(xp.floor(x), float(N - 1)), xp.int64)
        # For x >= N: m = N - 1 and x - m >= 1 > U, so G = N as required.
        hit = take_along(u, m) < x - xp.astype(m, xp.float64)
        cum = m + xp.astype(hit, xp.int64)
        cum = guard_cumulative(prep, cum, prep.w, N)
        return Outcome(ancestors_from_cumulative(prep, cum, N))

    def compiled(self, prep: Prepared) -> Outcome:
        """Ancestors of shape (rows, n_out) by :func:`_stratified`, the reference's bit for bit."""
        u = prep.uniform((prep.rows, prep.n_out))
        out = np.zeros((prep.rows, prep.n_out), np.int64)
        _stratified(prep.w, prep.sums, u, out)
        return Outcome(out)


@jit
def _stratified(w: Any, sums: Any, u: Any, out: Any) -> None:
    """Per row: ``G_i = m + [u_m < x_i - m]`` with ``m = min(floor(x_i), N - 1)``, recorded into ``out``."""
    rows, n = w.shape
    n_out = out.shape[1]
    top = float(n_out - 1)
    for r in range(rows):
        row = w[r]
        hist = out[r]
        scale = (n_out / sums[r]) * ROUND_UP
        s = 0.0
        for i in range(n):
            s += row[i]
            x = s * scale
            m = int(min(math.floor(x), top))
            record(hist, m + (1 if u[r, m] < x - m else 0), i)
        running_max(hist)
