"""Shuffled systematic resampling: systematic resampling of the particles taken in a random order.

Systematic resampling lays one evenly spaced grid ``(k + U) / m``, ``k = 0..m-1``, over the cumulative weights.
Particle i then gets ``floor(m W_i)`` or ``ceil(m W_i)`` copies and ``E[count_i] = m W_i`` whatever the order
of the particles, but which particles are rounded up depends on that order: neighbours in the array are
correlated. Shuffling the particles first (a fresh uniform permutation per row and per call, independent of
``U``) removes that dependence on the storage order and keeps both guarantees.

The counts come from the cumulative weights, not from a search over the grid: with ``C_j`` the cumulative weight
of the first j+1 shuffled particles over the total, ``N_j = ceil(m C_j - U)`` grid points lie below ``C_j`` and
particle j gets ``N_j - N_{j-1}``. Round-off cannot select a zero weight or lose a draw: zero weights are
shuffled to the end of the row, and ``N`` is set to ``m`` from the last positive weight on.

Cost per row: O(n log n) for the permutation (an argsort of uniforms); the rest is O(n + m).
"""

from __future__ import annotations

import math
from typing import Any

from smckit import Capabilities, Resampled
from smckit.backend import arange_like, device_of, is_floating, namespace
from smckit.errors import ExtinctionError, InvalidArgumentError, InvalidWeightsError
from smckit.random import RNG

__all__ = ["ShuffledSystematic"]


class ShuffledSystematic:
    """Systematic resampling after a uniformly random permutation of the particles.

    Unbiased (``E[count_i] = m W_i``), and every count is ``floor`` or ``ceil`` of ``m W_i``. Works on numpy
    and torch arrays (any device), batched over leading dimensions; the cumulative sum runs in float64.

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

    def __call__(self, log_weights: Any, rng: RNG, *, n_out: int | None = None) -> Resampled:
        """Resample.

        Parameters
        ----------
        log_weights : array, shape (*batch, n)
            Unnormalised log-weights; ``-inf`` is a weight of zero.
        rng : RNG
            The random source.
        n_out : int, optional
            Number of offspring ``m`` per row (default ``n``).

        Returns
        -------
        Resampled
            ``ancestors`` (int64, shape ``(*batch, m)``) and zero ``log_weights`` of the input's dtype.

        Raises
        ------
        InvalidArgumentError
            If ``n_out`` is not a positive integer, or ``log_weights`` is not a float array with a particle axis.
        InvalidWeightsError
            If a log-weight is NaN or +inf (checked for host arrays only: on a GPU it would stall the device).
        ExtinctionError
            If every weight of a row is zero (host arrays only).
        """
        xp = namespace(log_weights)
        if log_weights.ndim < 1 or log_weights.shape[-1] < 1 or not is_floating(log_weights):
            raise InvalidArgumentError(
                f"log_weights must be a float array of shape (*batch, n) with n >= 1, got {log_weights.shape}"
            )
        *batch, n = (int(s) for s in log_weights.shape)
        m = n if n_out is None else n_out
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise InvalidArgumentError(f"n_out must be a positive integer or None, got {n_out!r}")
        if str(device_of(log_weights)) == "cpu":  # on an accelerator the check would stall the device
            _check_host(log_weights, xp)

        lw = xp.astype(log_weights, xp.float64)
        w = xp.exp(lw - xp.max(lw, axis=-1, keepdims=True))  # in [0, 1]; exactly 0 for -inf
        # A uniformly random order of the positive weights; zero weights go last (sort key 2 > any uniform).
        key = xp.where(w > 0, rng.uniform((*batch, n), like=lw), xp.full_like(w, 2.0))
        perm = xp.argsort(key, axis=-1)
        w = xp.take_along_axis(w, perm, axis=-1)
        cum = xp.cumulative_sum(w, axis=-1)
        cum = cum / cum[..., -1:]

        u = rng.uniform((*batch, 1), like=lw)
        below = xp.clip(xp.ceil(m * cum - u), 0, m)  # N_j: grid points below C_j
        positive = xp.sum(xp.astype(w > 0, xp.int64), axis=-1, keepdims=True)
        tail = arange_like(n, lw) >= positive - 1  # from the last positive weight on: every grid point
        below = xp.sort(xp.astype(xp.where(tail, xp.full_like(below, float(m)), below), xp.int64), axis=-1)
        # (the sort only undoes one-ulp inversions of a parallel cumulative sum; N is non-decreasing already)

        # Output slot k goes to the shuffled particle j with N_{j-1} <= k < N_j, i.e. j = #{j : N_j <= k}.
        # An offset per row keeps the rows apart, so that one 1-d search serves the whole batch.
        row = xp.reshape(arange_like(math.prod(batch), lw), (*batch, 1))
        keys = xp.reshape(below + row * (m + 1), (-1,))
        slots = xp.reshape(arange_like(m, lw) + row * (m + 1), (-1,))
        j = xp.reshape(xp.searchsorted(keys, slots, side="right"), (*batch, m)) - row * n
        j = xp.clip(j, 0, n - 1)  # a no-op for valid weights; keeps unchecked NaN input on a GPU in range
        ancestors = xp.take_along_axis(perm, j, axis=-1)
        zeros = xp.zeros((*batch, m), dtype=log_weights.dtype, device=device_of(log_weights))
        return Resampled(ancestors=ancestors, log_weights=zeros)

    def __repr__(self) -> str:
        return "ShuffledSystematic()"


def _check_host(log_weights: Any, xp: Any) -> None:
    """Raise on NaN or +inf log-weights, and on rows whose weights are all zero (host arrays only)."""
    bad = int(xp.sum(xp.astype(xp.isnan(log_weights) | (log_weights == float("inf")), xp.int64)))
    if bad:
        raise InvalidWeightsError(
            f"shuffled-systematic got {bad} NaN or +inf log-weight(s); use -inf for a weight of zero",
            step=-1,
            count=bad,
        )
    if bool(xp.any(xp.all(log_weights == -float("inf"), axis=-1))):
        raise ExtinctionError(
            "shuffled-systematic got a row whose weights are all zero (-inf): nothing to resample", step=-1
        )
