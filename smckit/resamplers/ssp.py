"""The Srinivasan sampling process (SSP): counts are ``floor`` or ``ceil`` of ``n W_i``, summing to ``n``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from smckit.backend import Array
from smckit.resamplers._compiled import jit, record, running_max
from smckit.resamplers.base import Capabilities
from smckit.resamplers.kit import Outcome, Prepared, Scheme, ancestors_from_cumulative, put_along, quotient

__all__ = ["SSP"]


class SSP(Scheme):
    """Resampling by the Srinivasan sampling process.

    Particle ``i`` gets ``floor(n W_i)`` offspring plus 0 or 1, with mean ``n W_i``, and the counts sum to
    ``n`` exactly (also with many zero or tiny weights). The fractional parts ``p_i = n W_i - floor(n W_i)``
    are rounded by pairing: two open fractions ``a`` (particle i) and ``b`` (particle j) meet, and with one
    uniform ``U`` the *winner* is i when ``U (p + q) < p``, j otherwise, where

    - if ``a + b <= 1``: ``(p, q) = (a, b)``; the winner keeps the open fraction ``a + b``, the loser is settled
      to 0;
    - if ``a + b > 1``: ``(p, q) = (1 - b, 1 - a)``; the winner is settled to 1 (one extra offspring), the loser
      keeps the open fraction ``a + b - 1``;

    which keeps each particle's mean and the total. Pairing runs over a binary tree (neighbours, then the
    survivors of neighbouring pairs, ...): ``n - 1`` pairings in ``ceil(log2 n)`` vectorised rounds, O(n) work in
    all. The last open fraction is 0 or 1 up to round-off; it is settled exactly, from the integer number of
    draws left.

    The two cases agree where they meet: at ``a + b = 1`` both make i the one that ends with the extra draw
    exactly when ``U < a``. So the outcome does not hinge on the last bit of ``a + b``, where two fractions that
    sum to 1 in exact arithmetic fall on either side of 1 depending on how ``exp`` and the sums rounded; and the
    ancestors are built from the counts alone (each particle's floor plus its extra draw, in particle order), not
    from the order in which the draws were settled. So numpy arrays, CPU tensors and the compiled kernel give the
    same ancestors for the same draws, and weights ``k_i / n`` give exactly ``k_i`` copies (up to events of
    probability about 2**-52 per pairing).

    A particle with ``p_i = 0`` (a zero weight in particular) never receives the extra draw: it can only hold
    an open fraction of exactly 0, which loses every pairing with a positive one.

    Ancestors come back sorted. The population size is kept: ``n_out`` must equal ``n``.
    """

    name = "ssp"
    capabilities = Capabilities(unbiased=True, count_bounds="floor_ceil", variable_size=False, sorted_ancestors=True)

    def reference(self, prep: Prepared) -> Outcome:
        """Ancestors of shape (rows, n) by the array API."""
        xp, n, rows = prep.xp, prep.n, prep.rows
        totals = prep.cumsum(prep.w)[:, -1:]  # the sequential sum, as the kernel's (and torch's CPU scan) is
        # The n - 1 pairing uniforms of each row, level after level, each level a (rows, pairs) block.
        u = prep.uniform((rows * (n - 1),))
        level_uniforms, start = [], 0
        for pairs in _pairs_per_level(n):
            level_uniforms.append(xp.reshape(u[start : start + rows * pairs], (rows, pairs)))
            start += rows * pairs
        expected = prep.w * quotient(n, totals)
        whole = xp.floor(expected)
        open_frac = expected - whole  # exact (Sterbenz), in [0, 1)
        whole = xp.astype(whole, xp.int64)
        left = n - xp.sum(whole, axis=-1, keepdims=True)  # draws the fractions must produce, exactly
        holder = xp.broadcast_to(prep.arange(n), (rows, n))

        settled_idx: list[Array] = []
        settled_val: list[Array] = []
        for level in level_uniforms:
            m = int(open_frac.shape[-1])
            h = m // 2
            a, b = open_frac[:, 0 : 2 * h : 2], open_frac[:, 1 : 2 * h : 2]
            ia, ib = holder[:, 0 : 2 * h : 2], holder[:, 1 : 2 * h : 2]
            total = a + b
            over = total > 1.0
            # In the form U (p + q) < p the draw is exact at the ends: never when p = 0, always when q = 0 < p
            # (U (p + q) rounds below p for U < 1).
            p = xp.where(over, 1.0 - b, a)
            first_wins = level * (p + xp.where(over, 1.0 - a, b)) < p
            winner, loser = xp.where(first_wins, ia, ib), xp.where(first_wins, ib, ia)
            settled_idx.append(xp.where(over, winner, loser))
            settled_val.append(over)
            frac = total - xp.astype(over, total.dtype)
            keep = xp.where(over, loser, winner)
            if m % 2:
                frac = xp.concat([frac, open_frac[:, -1:]], axis=-1)
                keep = xp.concat([keep, holder[:, -1:]], axis=-1)
            open_frac, holder = frac, keep

        # Each pairing settles one particle, so the settled particles and the last holder are a permutation of the
        # row: each particle's extra draw (0 or 1) is written at its index. The last open fraction is 0 or 1 up to
        # round-off, and is settled exactly from the integer number of draws left.
        settled = xp.astype(xp.concat(settled_val, axis=-1), xp.int64) if settled_val else left[:, :0]
        last = left - xp.sum(settled, axis=-1, keepdims=True)
        order = xp.concat([*settled_idx, holder], axis=-1)
        extra = put_along(xp.zeros_like(whole), order, xp.concat([settled, last], axis=-1))
        return Outcome(ancestors_from_cumulative(prep, xp.cumulative_sum(whole + extra, axis=-1), n))

    def compiled(self, prep: Prepared) -> Outcome:
        """Ancestors of shape (rows, n) by :func:`_ssp`, the reference's bit for bit."""
        rows, n = prep.rows, prep.n
        u = prep.uniform((rows * (n - 1),))
        out = np.zeros((rows, n), np.int64)
        _ssp(prep.w, prep.sums, u, np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, np.int64), out)
        return Outcome(out)


def _pairs_per_level(n: int) -> list[int]:
    """The number of pairings at each level of the tree over ``n`` open fractions (``n - 1`` in all)."""
    pairs = []
    while n > 1:
        pairs.append(n // 2)
        n = n // 2 + n % 2
    return pairs


@jit
def _floor_and_fraction(weights: Any, scale: float, whole: Any, frac: Any) -> int:
    """``e_i = w_i * scale``: write ``floor(e_i)`` (int64) and ``e_i - floor(e_i)``; return the sum of floors (the
    reference's ``whole``, ``open_frac`` and ``n - left``)."""
    placed = 0
    for i in range(weights.shape[0]):
        e = weights[i] * scale
        f = math.floor(e)
        frac[i] = e - f
        whole[i] = int(f)
        placed += int(f)
    return placed


@jit
def _ssp(w: Any, sums: Any, u: Any, counts: Any, frac: Any, holder: Any, out: Any) -> None:
    """Per row: the floors, the pairing tree in place (pair j of a level lands at j <= 2j), each settled particle's
    extra draw added to its count, then the counts recorded into ``out``."""
    rows, n = w.shape
    for r in range(rows):
        left = n - _floor_and_fraction(w[r], n / sums[r], counts, frac)
        for i in range(n):
            holder[i] = i
        m = n
        level_start = 0
        while m > 1:
            pairs = m // 2
            base = level_start + r * pairs
            for j in range(pairs):
                a = frac[2 * j]
                b = frac[2 * j + 1]
                first = holder[2 * j]
                second = holder[2 * j + 1]
                total = a + b
                over = total > 1.0
                p = 1.0 - b if over else a
                first_wins = u[base + j] * (p + (1.0 - a if over else b)) < p
                winner = first if first_wins else second
                loser = second if first_wins else first
                counts[winner if over else loser] += over
                left -= over
                frac[j] = total - (1.0 if over else 0.0)
                holder[j] = loser if over else winner
            if m % 2:
                frac[pairs] = frac[m - 1]
                holder[pairs] = holder[m - 1]
            level_start += rows * pairs
            m = pairs + m % 2
        counts[holder[0]] += left  # the last open fraction, settled exactly from the draws left: 0 or 1
        hist = out[r]
        placed = 0
        for i in range(n):
            placed += counts[i]
            record(hist, placed, i)
        running_max(hist)
