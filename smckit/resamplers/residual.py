"""Residual resampling: the integer parts of ``N W_i`` deterministically, the rest multinomially."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from smckit.resamplers._compiled import (
    ROUND_UP,
    count_below_sorted,
    draw_tables,
    exponentials,
    jit,
    record,
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
    quotient,
)

__all__ = ["Residual"]


class Residual(Scheme):
    """Residual resampling.

    Particle ``i`` first gets ``floor(N W_i)`` offspring; the remaining ``R = N - sum_i floor(N W_i)`` draws
    are multinomial with probabilities proportional to the fractional parts ``N W_i - floor(N W_i)`` (drawn as
    in :class:`~smckit.resamplers.Multinomial`, from ``min(N, n) + 1`` exponentials whatever ``R`` is). Counts
    are at least ``floor(N W_i)`` with mean ``N W_i``; ``R`` is reported per row in ``info["residual_draws"]``.

    An expected count that is an integer up to rounding is that integer: ``N W_i`` is computed with a relative
    error of at most ``(n + 2048)`` units of 2**-52 (the sequential row sum, the shift and the exponential), so
    a value that close below an integer is floored to the integer, and weights ``k_i / N`` give exactly ``k_i``
    copies (as systematic and SSP resampling do), not ``k_i - 1`` plus a chance of a multinomial draw. This moves
    a mean count by at most that relative error.

    Ancestors come back sorted (both parts are merged into one count per particle). ``n_out`` may differ from
    ``n``.
    """

    name = "residual"
    capabilities = Capabilities(unbiased=True, count_bounds="at_least_floor", variable_size=True, sorted_ancestors=True)

    def reference(self, prep: Prepared) -> Outcome:
        """Ancestors of shape (rows, n_out) by the array API, and ``info["residual_draws"]``."""
        xp, N = prep.xp, prep.n_out
        totals = prep.cumsum(prep.w)[:, -1:]  # the sequential sum, as the kernel's (and torch's CPU scan) is
        expected = prep.w * quotient(N, totals)
        whole = xp.floor(expected * _snap(prep.n))
        frac = xp.clip(expected - whole, 0.0, None)  # exact (Sterbenz), in [0, 1); 0 where snapped up
        whole = xp.astype(whole, xp.int64)
        # The floors sum to at most N (to N + N * snap error in the worst case, hence the clamps below).
        rest = xp.clip(N - xp.sum(whole, axis=-1, keepdims=True), 0, None)
        spacings = prep.exponential((prep.rows, prep.most(rest, min(N, prep.n)) + 1))
        frac_cumsum = prep.cumsum(frac)
        frac_total = frac_cumsum[:, -1:]
        frac_total = xp.where(frac_total > 0, frac_total, xp.ones_like(frac_total))
        cum = multinomial_cumulative_counts(prep, frac_cumsum, frac_total, rest, spacings)
        cum = xp.clip(xp.cumulative_sum(whole, axis=-1) + guard_cumulative(prep, cum, frac, rest), None, N)
        return Outcome(ancestors_from_cumulative(prep, cum, N), info={"residual_draws": rest})

    def compiled(self, prep: Prepared) -> Outcome:
        """Ancestors of shape (rows, n_out) by :func:`_residual`, which draws the exponentials inside numba from
        the same Generator, the reference's bit for bit; and ``info["residual_draws"]``."""
        rows, N = prep.rows, prep.n_out
        gen = prep.rng.numpy
        snap = _snap(prep.n)
        rest = np.empty(rows, np.int64)
        frac_sums = np.empty(rows, np.float64)
        _residual_rest(prep.w, prep.sums, N, snap, rest, frac_sums)
        width = int(rest.max()) + 1 if rows else 1
        spacings, start = draw_tables(width)
        out = np.zeros((rows, N), np.int64)
        with gen.bit_generator.lock:
            _residual(prep.w, prep.sums, snap, rest, frac_sums, gen, width, spacings, start, out)
        return Outcome(out, info={"residual_draws": rest[:, None]})


def _snap(n: int) -> float:
    """``1 + (n + 2048) 2**-52``: an expected count ``e`` with ``floor(e * snap) > floor(e)`` is an integer up to the
    rounding of ``e`` (relative error at most ``(n - 1) u`` from the sequential sum of n weights in [0, 1], about
    ``1500 u`` from the shift and the exponential of log-weights down to -745, and ``2 u`` from the quotient and
    the product, with ``u = 2**-53``), and is taken as that integer."""
    return 1.0 + (n + 2048) * 2.0**-52


@jit
def _residual_rest(w: Any, sums: Any, draws: int, snap: float, rest: Any, frac_sums: Any) -> None:
    """Per row: the draws left after the floors of ``e_i = w_i * draws / sum`` (snapped, as the reference does),
    and the left-to-right sum of the fractional parts."""
    for r in range(w.shape[0]):
        to_expected = draws / sums[r]
        placed = 0
        total = 0.0
        for i in range(w.shape[1]):
            e = w[r, i] * to_expected
            f = math.floor(e * snap)
            placed += int(f)
            total += max(e - f, 0.0)
        rest[r] = max(draws - placed, 0)
        frac_sums[r] = total


@jit
def _residual(
    w: Any, sums: Any, snap: float, rest: Any, frac_sums: Any, gen: Any, width: int, spacings: Any, start: Any, out: Any
) -> None:
    """Per row: ``width`` exponentials, the ``rest`` sorted uniforms, and the floors plus the multinomial merge
    over the cumulative fractional parts, recorded into ``out``."""
    n_out = out.shape[1]
    for r in range(w.shape[0]):
        draws = rest[r]
        norm = exponentials(gen, spacings, width, draws)
        sorted_uniforms(spacings, draws, norm, start)
        # The floors and fractions again, from the weights (cheaper than storing them): the same operations.
        to_expected = n_out / sums[r]
        total = frac_sums[r]
        scale = (draws / (total if total > 0 else 1.0)) * ROUND_UP
        placed = 0
        s = 0.0
        hist = out[r]
        for i in range(w.shape[1]):
            e = w[r, i] * to_expected
            f = math.floor(e * snap)
            placed += int(f)
            s += max(e - f, 0.0)
            x = s * scale
            extra = count_below_sorted(spacings, start, draws, x) if x < draws else draws
            record(hist, min(placed + extra, n_out), i)
        running_max(hist)
