"""Killing resampling: each particle survives with probability ``W_i / max W``; the killed are redrawn."""

from __future__ import annotations

from typing import Any

import numpy as np

from smckit.resamplers._compiled import jit
from smckit.resamplers.base import Capabilities
from smckit.resamplers.kit import Outcome, Prepared, Scheme, refill_rows

__all__ = ["Killing"]


class Killing(Scheme):
    """Killing resampling.

    Particle ``i`` stays in its slot with probability ``W_i / max_j W_j``; the ``K`` killed slots are refilled
    with ``K`` multinomial draws from ``W``, assigned to the killed slots in order. Counts have mean
    ``N W_i`` (``N = n``): ``w_i + E[K] W_i = n W_i`` with ``w_i = W_i / max W``. With equal weights nothing is
    killed.

    Survivors keep their slot, so ancestors are **not** sorted. ``reborn`` marks the refilled slots and
    ``info["deaths"]`` counts them per row. The population size is kept: ``n_out`` must equal ``n``.
    """

    name = "killing"
    capabilities = Capabilities(unbiased=True, count_bounds=None, variable_size=False, sorted_ancestors=False)

    def reference(self, prep: Prepared) -> Outcome:
        """Ancestors and the killed mask, shape (rows, n), by the array API; ``info["deaths"]``."""
        killed = prep.uniform((prep.rows, prep.n)) >= prep.w  # survives iff U < w_i (never when w_i = 0)
        ancestors, deaths = refill_rows(prep, prep.w, killed)
        return Outcome(ancestors, reborn=killed, info={"deaths": deaths})

    def compiled(self, prep: Prepared) -> Outcome:
        """As :meth:`reference`, the survival draws made by :func:`_survival` inside numba, then the compiled
        :func:`~smckit.resamplers.kit.refill_rows`."""
        gen = prep.rng.numpy
        killed = np.empty(prep.w.shape, np.bool_)
        deaths = np.empty(prep.rows, np.int64)
        with gen.bit_generator.lock:
            _survival(prep.w, gen, killed, deaths)
        ancestors, deaths_ = refill_rows(prep, prep.w, killed, sums=prep.sums, deaths=deaths)
        return Outcome(ancestors, reborn=killed, info={"deaths": deaths_})


@jit
def _survival(w: Any, gen: Any, killed: Any, deaths: Any) -> None:
    """Particle ``i`` dies unless ``U_i < w_i`` (``U_i`` uniform, drawn row after row, as ``prep.uniform``)."""
    for r in range(w.shape[0]):
        dead = 0
        for i in range(w.shape[1]):
            k = gen.random() >= w[r, i]
            killed[r, i] = k
            dead += k
        deaths[r] = dead
