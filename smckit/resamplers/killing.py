"""Killing resampling: each particle survives with probability ``W_i / max W``; the killed are redrawn."""

from __future__ import annotations

from typing import Any

from smckit.backend import Array
from smckit.resamplers import _compiled
from smckit.resamplers._common import prepare
from smckit.resamplers._refill import refill_rows
from smckit.resamplers.base import Capabilities, Resampled

__all__ = ["Killing"]


class Killing:
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

    def __call__(self, log_weights: Array, rng: Any, *, n_out: int | None = None) -> Resampled:
        """Resample from unnormalised log-weights of shape ``(*batch, n)``; see :class:`smckit.Resampled`.

        Raises
        ------
        InvalidArgumentError
            If ``n_out`` differs from ``n`` (and see :func:`smckit.resamplers._common.prepare`).
        """
        prep = prepare(log_weights, rng, n_out, name=self.name, variable_size=False)
        if prep.compiled:
            ancestors, killed, deaths = _compiled.killing(prep.w, prep.sums, prep.rng.numpy)
            return prep.result(ancestors, reborn=killed, info={"deaths": deaths})
        killed = prep.uniform((prep.rows, prep.n)) >= prep.w  # survives iff U < w_i (never when w_i = 0)
        ancestors, deaths = refill_rows(prep, prep.w, killed)
        return prep.result(ancestors, reborn=killed, info={"deaths": deaths})

    def __repr__(self) -> str:
        return "Killing()"
