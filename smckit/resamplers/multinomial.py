"""Multinomial resampling: ``N`` independent draws from the weights."""

from __future__ import annotations

from typing import Any

from smckit.backend import Array
from smckit.resamplers import _compiled
from smckit.resamplers._common import (
    ancestors_from_cumulative,
    guard_cumulative,
    multinomial_cumulative_counts,
    prepare,
)
from smckit.resamplers.base import Capabilities, Resampled

__all__ = ["Multinomial"]


class Multinomial:
    """Multinomial resampling.

    The ``N`` uniforms are drawn already sorted, as normalised cumulative sums of ``N + 1`` exponentials, and
    merged with the cumulative weights by counting (:func:`~smckit.resamplers._common.count_below`): O(n + N)
    per row on the host (numpy, torch CPU), one ``searchsorted`` kernel on an accelerator. The counts are
    Multinomial(N, W).

    Ancestors come back **sorted** (the draws are merged in order); the counts, not the order, carry the
    randomness. Code that needs exchangeable slots should permute them. ``n_out`` may differ from ``n``.
    """

    name = "multinomial"
    capabilities = Capabilities(unbiased=True, count_bounds=None, variable_size=True, sorted_ancestors=True)

    def __call__(self, log_weights: Array, rng: Any, *, n_out: int | None = None) -> Resampled:
        """Resample from unnormalised log-weights of shape ``(*batch, n)``; see :class:`smckit.Resampled`.

        Raises
        ------
        InvalidArgumentError, ShapeError, InvalidWeightsError, ExtinctionError
            See :func:`smckit.resamplers._common.prepare`.
        """
        prep = prepare(log_weights, rng, n_out, name=self.name, variable_size=True)
        N = prep.n_out
        if prep.compiled:
            return prep.result(_compiled.multinomial(prep.w, prep.sums, prep.rng.numpy, N))
        spacings = prep.exponential((prep.rows, N + 1))
        cumsum = prep.cumsum(prep.w)
        cum = multinomial_cumulative_counts(prep, cumsum, cumsum[:, -1:], N, spacings)
        cum = guard_cumulative(prep, cum, prep.w, N)
        return prep.result(ancestors_from_cumulative(prep, cum, N))

    def __repr__(self) -> str:
        return "Multinomial()"
