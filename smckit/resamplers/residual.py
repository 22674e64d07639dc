"""Residual resampling: the integer parts of ``N W_i`` deterministically, the rest multinomially."""

from __future__ import annotations

from typing import Any

from smckit.backend import Array
from smckit.resamplers import _compiled
from smckit.resamplers._common import (
    ancestors_from_cumulative,
    guard_cumulative,
    multinomial_cumulative_counts,
    prepare,
    quotient,
)
from smckit.resamplers.base import Capabilities, Resampled

__all__ = ["Residual"]


class Residual:
    """Residual resampling.

    Particle ``i`` first gets ``floor(N W_i)`` offspring; the remaining ``R = N - sum_i floor(N W_i)`` draws
    are multinomial with probabilities proportional to the fractional parts ``N W_i - floor(N W_i)`` (drawn as
    in :class:`~smckit.resamplers.Multinomial`, from ``min(N, n) + 1`` exponentials whatever ``R`` is). Counts
    are at least ``floor(N W_i)`` with mean ``N W_i``.

    Ancestors come back sorted (both parts are merged into one count per particle). ``n_out`` may differ from
    ``n``.
    """

    name = "residual"
    capabilities = Capabilities(unbiased=True, count_bounds="at_least_floor", variable_size=True, sorted_ancestors=True)

    def __call__(self, log_weights: Array, rng: Any, *, n_out: int | None = None) -> Resampled:
        """Resample from unnormalised log-weights of shape ``(*batch, n)``; see :class:`smckit.Resampled`.

        Raises
        ------
        InvalidArgumentError, ShapeError, InvalidWeightsError, ExtinctionError
            See :func:`smckit.resamplers._common.prepare`.
        """
        prep = prepare(log_weights, rng, n_out, name=self.name, variable_size=True)
        xp, N = prep.xp, prep.n_out
        totals = xp.sum(prep.w, axis=-1, keepdims=True)
        if prep.compiled:
            ancestors, rest = _compiled.residual(prep.w, totals[:, 0], prep.rng.numpy, N)
            return prep.result(ancestors, info={"residual_draws": rest})
        expected = prep.w * quotient(N, totals)
        whole = xp.floor(expected)
        frac = expected - whole  # exact (Sterbenz), in [0, 1)
        whole = xp.astype(whole, xp.int64)
        # sum(expected) = N up to round-off far below 1, so the floors sum to at most N.
        rest = N - xp.sum(whole, axis=-1, keepdims=True)
        spacings = prep.exponential((prep.rows, prep.most(rest, min(N, prep.n)) + 1))
        frac_cumsum = prep.cumsum(frac)
        frac_total = frac_cumsum[:, -1:]
        frac_total = xp.where(frac_total > 0, frac_total, xp.ones_like(frac_total))
        cum = multinomial_cumulative_counts(prep, frac_cumsum, frac_total, rest, spacings)
        cum = xp.cumulative_sum(whole, axis=-1) + guard_cumulative(prep, cum, frac, rest)
        return prep.result(ancestors_from_cumulative(prep, cum, N), info={"residual_draws": rest})

    def __repr__(self) -> str:
        return "Residual()"
