"""The Srinivasan sampling process (SSP): counts are ``floor`` or ``ceil`` of ``n W_i``, summing to ``n``."""

from __future__ import annotations

from typing import Any

from smckit.backend import Array
from smckit.resamplers import _compiled
from smckit.resamplers._common import expand, prepare, quotient
from smckit.resamplers.base import Capabilities, Resampled

__all__ = ["SSP"]


class SSP:
    """Resampling by the Srinivasan sampling process.

    Particle ``i`` gets ``floor(n W_i)`` offspring plus 0 or 1, with mean ``n W_i``, and the counts sum to
    ``n`` exactly (also with many zero or tiny weights). The fractional parts ``p_i = n W_i - floor(n W_i)``
    are rounded by pairing: two open fractions ``a`` (particle i) and ``b`` (particle j) become

    - if ``a + b <= 1``: ``(a + b, 0)`` with probability ``a / (a + b)``, else ``(0, a + b)``;
    - if ``a + b > 1``: ``(a + b - 1, 1)`` with probability ``(1 - a) / (2 - a - b)``, else ``(1, a + b - 1)``;

    which keeps each particle's mean and the total. One of the two is settled (to 0 or 1) and the other stays
    open with the combined fraction. Pairing runs over a binary tree (neighbours, then the survivors of
    neighbouring pairs, ...): ``n - 1`` pairings in ``ceil(log2 n)`` vectorised rounds, O(n) work in all. The
    last open fraction is 0 or 1 up to round-off; it is settled exactly, from the integer number of draws left.

    A particle with ``p_i = 0`` (a zero weight in particular) never receives the extra draw: it can only hold
    an open fraction of exactly 0, which loses every pairing with a positive one.

    Ancestors are not sorted (the extra draws follow the settling order). The population size is kept:
    ``n_out`` must equal ``n``.
    """

    name = "ssp"
    capabilities = Capabilities(unbiased=True, count_bounds="floor_ceil", variable_size=False, sorted_ancestors=False)

    def __call__(self, log_weights: Array, rng: Any, *, n_out: int | None = None) -> Resampled:
        """Resample from unnormalised log-weights of shape ``(*batch, n)``; see :class:`smckit.Resampled`.

        Raises
        ------
        InvalidArgumentError
            If ``n_out`` differs from ``n`` (and see :func:`smckit.resamplers._common.prepare`).
        """
        prep = prepare(log_weights, rng, n_out, name=self.name, variable_size=False)
        xp, n, rows = prep.xp, prep.n, prep.rows
        totals = xp.sum(prep.w, axis=-1, keepdims=True)
        # The n - 1 pairing uniforms of each row, level after level, each level a (rows, pairs) block.
        u = prep.uniform((rows * (n - 1),))
        if prep.compiled:
            return prep.result(_compiled.ssp(prep.w, totals[:, 0], u))
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
        while open_frac.shape[-1] > 1:
            m = int(open_frac.shape[-1])
            h = m // 2
            a, b = open_frac[:, 0 : 2 * h : 2], open_frac[:, 1 : 2 * h : 2]
            ia, ib = holder[:, 0 : 2 * h : 2], holder[:, 1 : 2 * h : 2]
            total = a + b
            over = total > 1.0
            # The first keeps the open fraction with probability a' / (a' + b'), where (a', b') = (a, b) if
            # a + b <= 1 and (1 - a, 1 - b) otherwise. In the form U (a' + b') < a' this is exact at the ends:
            # never when a' = 0, always when b' = 0 and a' > 0 (U (a' + b') rounds below a' for U < 1).
            a_ = xp.where(over, 1.0 - a, a)
            keep_first = level_uniforms[len(settled_val)] * (a_ + xp.where(over, 1.0 - b, b)) < a_
            settled_idx.append(xp.where(keep_first, ib, ia))
            settled_val.append(over)
            frac = total - xp.astype(over, total.dtype)
            keep = xp.where(keep_first, ia, ib)
            if m % 2:
                frac = xp.concat([frac, open_frac[:, -1:]], axis=-1)
                keep = xp.concat([keep, holder[:, -1:]], axis=-1)
            open_frac, holder = frac, keep

        settled = xp.astype(xp.concat(settled_val, axis=-1), xp.int64) if settled_val else left[:, :0]
        last = left - xp.sum(settled, axis=-1, keepdims=True)  # the last open fraction, settled exactly: 0 or 1
        sources = xp.concat([xp.broadcast_to(prep.arange(n), (rows, n)), *settled_idx, holder], axis=-1)
        counts = xp.concat([whole, settled, last], axis=-1)
        return prep.result(expand(prep, sources, counts, n))

    def __repr__(self) -> str:
        return "SSP()"


def _pairs_per_level(n: int) -> list[int]:
    """The number of pairings at each level of the tree over ``n`` open fractions (``n - 1`` in all)."""
    pairs = []
    while n > 1:
        pairs.append(n // 2)
        n = n // 2 + n % 2
    return pairs
