"""Cumulative counts: from per-particle cumulative counts ``G_i`` to ancestors, the guard for parallel scans, and
the counting merge of sorted uniforms (its compiled counterpart is in :mod:`smckit.resamplers._compiled`).

Public through :mod:`smckit.resamplers.kit` (whose docstring states the cumulative-count form).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from smckit.backend import Array, device_of, is_torch, namespace
from smckit.resamplers._compiled import ROUND_UP
from smckit.resamplers._rows import Prepared

__all__ = [
    "scaled_positions",
    "quotient",
    "cummax",
    "guard_cumulative",
    "ancestors_from_cumulative",
    "expand",
    "take_along",
    "put_along",
    "count_below",
    "multinomial_cumulative_counts",
]


def scaled_positions(prep: Prepared, cumsum: Array, total: Array, draws: Any) -> Array:
    """``cumsum * draws / total``, rounded up so that the last position is at least ``draws``.

    Parameters
    ----------
    cumsum : float64 array, shape (rows, n)
    total : float64 array, shape (rows, 1)
        Positive.
    draws : int or array of shape (rows, 1)

    Returns
    -------
    float64 array, shape (rows, n)
        Non-decreasing per row, from ``>= 0`` to ``>= draws``; equal cumulative sums give equal positions.
    """
    return cumsum * (quotient(draws, total) * ROUND_UP)


def quotient(numerator: Any, denominator: Array) -> Array:
    """``numerator / denominator``, correctly rounded on every backend.

    torch evaluates ``scalar / tensor`` as ``scalar * (1 / tensor)``, one ulp off at times; a tensor numerator
    keeps the division exact, so numpy, torch and the compiled kernels agree bit for bit.

    Parameters
    ----------
    numerator : int, float or array broadcastable to ``denominator``
    denominator : float64 array

    Returns
    -------
    float64 array, the shape of ``denominator`` (broadcast)
    """
    if is_torch(denominator) and not is_torch(numerator):
        import torch

        numerator = torch.full_like(denominator, float(numerator))
    return numerator / denominator


def cummax(x: Array) -> Array:
    """Running maximum along the last axis.

    Parameters
    ----------
    x : array, shape (..., m)

    Returns
    -------
    array, the shape of ``x``
    """
    if is_torch(x):
        import torch

        return torch.cummax(x, dim=-1).values
    return np.maximum.accumulate(x, axis=-1)


def guard_cumulative(prep: Prepared, cum: Array, w: Array, draws: Any) -> Array:
    """Make cumulative counts safe where the cumulative sums came from a parallel scan.

    Parameters
    ----------
    cum : int64 array, shape (rows, n)
        ``G(x_i)``, computed from positions built on ``w``.
    w : float64 array, shape (rows, n)
        The weights the positions were built from; zero weights must get zero counts.
    draws : int or int64 array of shape (rows, 1)
        The row totals.

    Returns
    -------
    int64 array, shape (rows, n)
        Non-decreasing, equal to ``draws`` from the last positive weight on, and flat across zero weights
        (``G_i = G_{i-1}`` where ``w_i = 0``), so that each particle's count ``G_i - G_{i-1}`` is non-negative,
        zero for a zero weight, and the counts sum to ``draws``.

    Notes
    -----
    On the host the cumulative sums are sequential: equal across zero weights and non-decreasing bit for bit,
    so ``cum`` already has these properties and is returned as is. Accelerators use parallel scans that add in
    a different order for each element; there ``G`` is forced to ``draws`` from the last positive weight on,
    zero weights take the running value of their predecessors, and a running maximum makes it non-decreasing.
    """
    if prep.sequential_scan:
        return cum
    xp = prep.xp
    idx = prep.arange(prep.n)
    positive = w > 0
    last = xp.max(xp.where(positive, idx, xp.full_like(idx, -1)), axis=-1, keepdims=True)
    tail = idx >= last
    cum = xp.where(tail, xp.zeros_like(cum) + draws, cum)
    return cummax(xp.where(positive | tail, cum, xp.zeros_like(cum)))


def ancestors_from_cumulative(prep: Prepared, cum: Array, n_out: int) -> Array:
    """Sorted ancestors from cumulative counts: ``a[r, k] = #{j : cum[r, j] <= k}`` for ``k < n_out``.

    Particle ``j`` owns the output slots ``cum[j-1] <= k < cum[j]``; this is ``repeat(arange, counts)``
    computed as a histogram of the cumulative counts followed by a cumulative sum (faster than a repeat on
    numpy and torch, and free of host synchronisation on accelerators).

    Parameters
    ----------
    cum : int64 array, shape (rows, m)
        Non-decreasing per row, values in ``[0, n_out]``.
    n_out : int

    Returns
    -------
    int64 array, shape (rows, n_out)
        In ``[0, m)`` where ``k < cum[r, m-1]``, ``m`` beyond (slots no count reaches).
    """
    xp = prep.xp
    rows = int(cum.shape[0])
    width = n_out + 1
    if rows > 1:
        cum = cum + xp.reshape(xp.arange(rows, dtype=xp.int64, device=prep.device), (rows, 1)) * width
    hist = _histogram(xp.reshape(cum, (-1,)), rows * width)
    return xp.cumulative_sum(xp.reshape(hist, (rows, width))[:, :n_out], axis=-1)


def expand(prep: Prepared, sources: Array, counts: Array, n_out: int) -> Array:
    """Repeat ``sources[r, j]`` ``counts[r, j]`` times along each row.

    Parameters
    ----------
    sources : int64 array, shape (rows, m)
        Particle indices.
    counts : int64 array, shape (rows, m)
        Non-negative, summing to ``n_out`` in every row.
    n_out : int

    Returns
    -------
    int64 array, shape (rows, n_out)
    """
    xp = prep.xp
    slot = ancestors_from_cumulative(prep, xp.cumulative_sum(counts, axis=-1), n_out)
    return take_along(sources, slot)


def take_along(x: Array, idx: Array) -> Array:
    """``take_along_axis(x, idx, axis=-1)`` for non-negative indices and equal leading shapes.

    array_api_compat's torch version adds a pass to wrap negative indices, which never occur here.

    Parameters
    ----------
    x : array, shape (rows, m)
    idx : int64 array, shape (rows, k)
        In ``[0, m)``.

    Returns
    -------
    array, shape (rows, k)
        ``x[r, idx[r, j]]``.
    """
    if is_torch(x):
        import torch

        return torch.gather(x, -1, idx)
    return np.take_along_axis(x, idx, axis=-1)


def put_along(x: Array, idx: Array, values: Array) -> Array:
    """A copy of ``x`` with ``values`` written at ``idx`` along the last axis: ``out[r, idx[r, j]] = values[r, j]``.

    Parameters
    ----------
    x : array, shape (rows, m)
    idx : int64 array, shape (rows, k)
        Non-negative and distinct within a row (with repeats, which value lands is unspecified).
    values : array, shape (rows, k)
        The dtype of ``x``.

    Returns
    -------
    array, shape (rows, m)
    """
    if is_torch(x):
        return x.scatter(-1, idx, values)
    out = x.copy()
    np.put_along_axis(out, idx, values, axis=-1)
    return out


def _take(x: Array, idx: Array) -> Array:
    """``x[idx]`` for a 1-d ``x`` and non-negative integer indices (torch's ``x[idx]`` is several times slower
    than ``index_select``)."""
    if is_torch(x):
        import torch

        return torch.index_select(x, 0, idx)
    return x[idx]


def _histogram(flat: Array, size: int) -> Array:
    """``bincount(flat, minlength=size)`` (int64) on numpy or torch, without a host synchronisation."""
    if is_torch(flat):
        import torch

        hist = torch.zeros(size, dtype=torch.int64, device=flat.device)
        return hist.index_add_(0, flat, torch.ones_like(flat))
    return np.bincount(flat, minlength=size)


_LINEAR_STEPS = 6  # walks inside a bucket before count_below switches the stragglers to bisection


def count_below(values: Array, queries: Array, buckets: int, *, on_host: bool = True) -> Array:
    """``#{k : values[r, k] < queries[r, i]}`` for every row r and query i.

    Parameters
    ----------
    values : float64 array, shape (rows, m)
        Non-decreasing along each row, non-negative.
    queries : float64 array, shape (rows, n)
        Non-decreasing along each row, non-negative.
    buckets : int
        The unit buckets ``[b, b + 1)`` for ``b < buckets`` used by the counting merge (the last one is open
        above); choose it so that about one value falls in each.
    on_host : bool
        Whether the arrays live in host memory (the counting merge), or on an accelerator (one
        ``searchsorted`` kernel, with no host synchronisation).

    Returns
    -------
    int64 array, shape (rows, n)

    Notes
    -----
    The counting merge is O(n + m): a histogram of the values over unit buckets (``bincount`` and a
    cumulative sum) gives the number of values below each query's bucket; the values inside the query's own
    bucket are then compared one after the other, all queries at once, the first two rounds densely and the
    rest on the shrinking set of unresolved queries, for a few steps (a bucket holds about
    ``log m / log log m`` values at most for uniforms); the queries still unresolved after that, in crowded
    buckets, are finished by a vectorised bisection. A value from a higher bucket, or a ``+inf`` sentinel at the
    end of each row, stops a query.
    """
    if not on_host and is_torch(values):
        import torch

        return torch.searchsorted(values.contiguous(), queries.contiguous(), side="left")
    xp = namespace(values, queries)
    rows, m = int(values.shape[0]), int(values.shape[1])
    n = int(queries.shape[1])
    buckets = max(int(buckets), 1)
    device = device_of(values)
    offset = xp.reshape(xp.arange(rows, dtype=xp.int64, device=device), (rows, 1)) * buckets

    def bucket(v: Array) -> Array:
        b = xp.astype(xp.minimum(v, float(buckets - 1)), xp.int64)
        return xp.reshape(b + offset if rows > 1 else b, (-1,))

    # start[b] = number of values in the (global) buckets below b: all of them are below a query in bucket b.
    start = xp.cumulative_sum(_histogram(bucket(values), rows * buckets), include_initial=True)
    pos = _take(start, bucket(queries))
    # Each row ends with a +inf sentinel (so a walk never runs into the next row): row r starts r slots later.
    sentinel = xp.full((rows, 1), math.inf, dtype=values.dtype, device=device)
    flat_values = xp.reshape(xp.concat([values, sentinel], axis=-1), (-1,))
    if rows > 1:
        pos = pos + xp.reshape(xp.broadcast_to(offset // buckets, (rows, n)), (-1,))
    flat_queries = xp.reshape(queries, (-1,))
    for _ in range(2):
        pos = pos + xp.astype(_take(flat_values, pos) < flat_queries, xp.int64)
    (active,) = xp.nonzero(_take(flat_values, pos) < flat_queries)
    for _ in range(_LINEAR_STEPS):
        if not int(active.shape[0]):
            break
        pos[active] += 1
        active = _take(active, xp.nonzero(_take(flat_values, _take(pos, active)) < _take(flat_queries, active))[0])
    if int(active.shape[0]):
        # Crowded buckets (many equal or clustered values, e.g. cumulative sums over tiny weights): finish the
        # few queries left by a vectorised bisection between their position and their row's +inf sentinel, so
        # the worst case costs log2(m) passes over them instead of one pass per value in the bucket.
        lo = _take(pos, active)
        hi = (active // n) * (m + 1) + m
        q = _take(flat_queries, active)
        while bool(xp.any(lo < hi)):
            mid = (lo + hi) // 2
            below = _take(flat_values, mid) < q
            lo = xp.where(below, mid + 1, lo)
            hi = xp.where(below, hi, mid)
        pos[active] = lo
    counts = xp.reshape(pos, (rows, n))
    if rows > 1:
        counts = counts - (offset // buckets) * (m + 1)
    return counts


def multinomial_cumulative_counts(prep: Prepared, cumsum: Array, total: Array, draws: Any, spacings: Array) -> Array:
    """Cumulative counts ``G(x_i)`` of ``draws`` multinomial draws from sorted uniforms.

    The sorted uniforms are normalised cumulative sums of exponentials (their spacings), so no sort is
    needed: with ``P_k = E_0 + ... + E_k``, the ``K`` sorted uniforms are ``P_k / P_K`` for ``k < K``.

    Parameters
    ----------
    cumsum : float64 array, shape (rows, n)
        Cumulative weights (non-decreasing).
    total : float64 array, shape (rows, 1)
        Positive normaliser (the last cumulative weight).
    draws : int or int64 array of shape (rows, 1)
        ``K``, the number of draws per row (at most ``max_draws``).
    spacings : float64 array, shape (rows, max_draws + 1)
        Standard exponentials from :meth:`Prepared.exponential`, ``max_draws`` a static upper bound on ``K``:
        drawing them whatever ``K`` is keeps the random stream consumed independent of the weights.

    Returns
    -------
    int64 array, shape (rows, n)
        ``G(x_i) = #{k < K : U_(k) * K < x_i}``, with ``G = K`` from the last position on.
    """
    xp = prep.xp
    rows = prep.rows
    max_draws = int(spacings.shape[-1]) - 1
    partial = xp.cumulative_sum(spacings, axis=-1)
    if isinstance(draws, (int, np.integer)):
        k_int = xp.full((rows, 1), int(draws), dtype=xp.int64, device=prep.device)
    else:
        k_int = draws
    k_float = xp.astype(k_int, xp.float64)
    norm = take_along(partial, k_int)
    norm = xp.where(norm > 0, norm, xp.ones_like(norm))
    uniforms = partial[:, :max_draws] * (k_float / norm)  # sorted, in [0, K) for k < K, >= K beyond
    x = scaled_positions(prep, cumsum, total, k_float)
    below = count_below(uniforms, x, max_draws + 1, on_host=prep.sequential_scan)
    return xp.where(x >= k_float, k_int + xp.zeros_like(below), xp.minimum(below, k_int))
