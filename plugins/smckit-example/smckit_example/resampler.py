"""Shuffled systematic resampling: systematic resampling of the particles taken in a random order.

Systematic resampling lays one evenly spaced grid ``(k + 1 - U) / m``, ``k = 0..m-1``, over the cumulative
weights. Particle i then gets ``floor(m W_i)`` or ``ceil(m W_i)`` copies and ``E[count_i] = m W_i`` whatever the
order of the particles, but which particles are rounded up depends on that order: neighbours in the array are
correlated. Shuffling the particles first (a fresh uniform permutation per row and per call, independent of
``U``) removes that dependence on the storage order and keeps both guarantees.

Built from smckit's resampler kit (:mod:`smckit.resamplers.kit`): :class:`~smckit.resamplers.kit.Scheme` validates
the input and computes the weights ``exp(l - max l)`` as float64 rows (any backend, dtype and batch shape), and
shapes the result; this module only says how the rows are resampled, in the kit's cumulative-count form: with
``x_j`` the cumulative weight of the first j+1 shuffled particles scaled to m, ``G_j = floor(x_j + U)`` grid
points lie at or below it and particle j gets ``G_j - G_{j-1}``. The kit's helpers make round-off harmless: the
scale is rounded up so that the last position reaches m, and zero weights (shuffled to the end of the row) keep
no grid point.

Cost per row: O(n log n) for the permutation (an argsort of uniforms); the rest is O(n + m).
"""

from __future__ import annotations

from smckit import Capabilities
from smckit.resamplers import kit

__all__ = ["ShuffledSystematic"]


class ShuffledSystematic(kit.Scheme):
    """Systematic resampling after a uniformly random permutation of the particles.

    Unbiased (``E[count_i] = m W_i``), and every count is ``floor`` or ``ceil`` of ``m W_i``. Works on numpy
    and torch arrays (any device, any floating dtype), batched over leading dimensions; the cumulative sum runs in
    float64. Calling it validates the input as smckit's own schemes do (:meth:`smckit.resamplers.kit.Scheme.__call__`).

    Examples
    --------
    >>> import numpy as np
    >>> from smckit.random import RNG
    >>> out = ShuffledSystematic()(np.log(np.array([0.5, 0.25, 0.25, 0.0])), RNG(0))
    >>> np.bincount(out.ancestors, minlength=4).tolist()
    [2, 1, 1, 0]
    """

    name = "shuffled-systematic"
    capabilities = Capabilities(
        unbiased=True,
        count_bounds="floor_ceil",
        variable_size=True,
        uniform_output_weights=True,
        sorted_ancestors=False,
        backends=("numpy", "torch"),
    )

    def reference(self, prep: kit.Prepared) -> kit.Outcome:
        """Ancestors of shape (rows, m) from the prepared weight rows ``prep.w`` (rows, n)."""
        xp, m = prep.xp, prep.n_out
        # A uniformly random order of the positive weights; zero weights go last (sort key 2 > any uniform).
        key = xp.where(prep.w > 0, prep.uniform((prep.rows, prep.n)), xp.full_like(prep.w, 2.0))
        perm = xp.argsort(key, axis=-1)
        w = kit.take_along(prep.w, perm)
        cumsum = prep.cumsum(w)
        x = kit.scaled_positions(prep, cumsum, cumsum[:, -1:], m)
        u = prep.uniform((prep.rows, 1))
        cum = xp.minimum(xp.astype(x + u, xp.int64), m)  # G = floor(x + U), at most m (x + U >= 0: truncation)
        cum = kit.guard_cumulative(prep, cum, w, m)
        return kit.Outcome(kit.take_along(perm, kit.ancestors_from_cumulative(prep, cum, m)))
