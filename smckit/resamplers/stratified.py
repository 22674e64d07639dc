"""Stratified resampling: one uniform in each of the ``N`` strata ``[k/N, (k+1)/N)``."""

from __future__ import annotations

from typing import Any

from smckit.backend import Array
from smckit.resamplers import _compiled
from smckit.resamplers._common import (
    ancestors_from_cumulative,
    guard_cumulative,
    prepare,
    scaled_positions,
    take_along,
)
from smckit.resamplers.base import Capabilities, Resampled

__all__ = ["Stratified"]


class Stratified:
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

    def __call__(self, log_weights: Array, rng: Any, *, n_out: int | None = None) -> Resampled:
        """Resample from unnormalised log-weights of shape ``(*batch, n)``; see :class:`smckit.Resampled`.

        Raises
        ------
        InvalidArgumentError, ShapeError, InvalidWeightsError, ExtinctionError
            See :func:`smckit.resamplers._common.prepare`.
        """
        prep = prepare(log_weights, rng, n_out, name=self.name, variable_size=True)
        xp, N = prep.xp, prep.n_out
        u = prep.uniform((prep.rows, N))
        if prep.compiled:
            return prep.result(_compiled.stratified(prep.w, prep.sums, u, N))
        cumsum = prep.cumsum(prep.w)
        x = scaled_positions(prep, cumsum, cumsum[:, -1:], N)
        m = xp.astype(xp.minimum(xp.floor(x), float(N - 1)), xp.int64)
        # For x >= N: m = N - 1 and x - m >= 1 > U, so G = N as required.
        hit = take_along(u, m) < x - xp.astype(m, xp.float64)
        cum = m + xp.astype(hit, xp.int64)
        cum = guard_cumulative(prep, cum, prep.w, N)
        return prep.result(ancestors_from_cumulative(prep, cum, N))

    def __repr__(self) -> str:
        return "Stratified()"
