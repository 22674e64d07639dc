"""Multinomial resampling: ``N`` independent draws from the weights."""

from __future__ import annotations

from typing import Any

import numpy as np

from smckit.resamplers._compiled import (
    draw_tables,
    exponentials,
    jit,
    record_multinomial_counts,
    running_max,
    sorted_uniforms,
)
from smckit.resamplers.base import Capabilities
from smckit.resamplers.kit import (
    Outcome,
    Prepared,
    Scheme,
    ancestors_from_cumulative,
    guard_cumulative,
    multinomial_cumulative_counts,
)

__all__ = ["Multinomial"]


class Multinomial(Scheme):
    """Multinomial resampling.

    The ``N`` uniforms are drawn already sorted, as normalised cumulative sums of ``N + 1`` exponentials, and
    merged with the cumulative weights by counting (:func:`~smckit.resamplers.kit.count_below`): O(n + N)
    per row on the host (numpy, torch CPU), one ``searchsorted`` kernel on an accelerator. The counts are
    Multinomial(N, W).

    Ancestors come back **sorted** (the draws are merged in order); the counts, not the order, carry the
    randomness. Code that needs exchangeable slots should permute them. ``n_out`` may differ from ``n``.
    """

    name = "multinomial"
    capabilities = Capabilities(unbiased=True, count_bounds=None, variable_size=True, sorted_ancestors=True)

    def reference(self, prep: Prepared) -> Outcome:
        """Ancestors of shape (rows, n_out) by the array API."""
        N = prep.n_out
        spacings = prep.exponential((prep.rows, N + 1))
        cumsum = prep.cumsum(prep.w)
        cum = multinomial_cumulative_counts(prep, cumsum, cumsum[:, -1:], N, spacings)
        cum = guard_cumulative(prep, cum, prep.w, N)
        return Outcome(ancestors_from_cumulative(prep, cum, N))

    def compiled(self, prep: Prepared) -> Outcome:
        """Ancestors of shape (rows, n_out) by :func:`_multinomial`, which draws the ``N + 1`` exponentials per
        row inside numba from the same Generator, the reference's bit for bit."""
        gen = prep.rng.numpy
        out = np.zeros((prep.rows, prep.n_out), np.int64)
        spacings, start = draw_tables(prep.n_out + 1)
        with gen.bit_generator.lock:
            _multinomial(prep.w, prep.sums, gen, spacings, start, out)
        return Outcome(out)


@jit
def _multinomial(w: Any, sums: Any, gen: Any, spacings: Any, start: Any, out: Any) -> None:
    """Per row: ``N + 1`` exponentials, their ``N`` sorted uniforms, and the merge with the cumulative weights."""
    n_out = out.shape[1]
    for r in range(w.shape[0]):
        norm = exponentials(gen, spacings, n_out + 1, n_out)
        sorted_uniforms(spacings, n_out, norm, start)
        record_multinomial_counts(w[r], sums[r], spacings, start, n_out, out[r])
        running_max(out[r])
