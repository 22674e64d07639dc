"""Independent categorical draws per batch row: the sampling primitive of every smoother.

Resamplers return draws that are sorted or otherwise structured (their counts carry the randomness); a backward
sampler needs each draw to be independent of the path it is given to. :class:`Categorical` inverts the
cumulative weights at independent uniforms, so draw ``k`` is exchangeable with every other draw.

Round-off: the cumulative sums run in float64, and a uniform is scaled by the row's own total and kept strictly
below it, so the first cumulative sum above it belongs to a particle of positive weight: a zero weight is never
drawn and no index leaves the row, whatever the last bit of the sums.
"""

from __future__ import annotations

import math
from typing import Any

from smckit.backend import Array, device_of, is_torch, namespace
from smckit.errors import InvalidArgumentError
from smckit.random import RNG

__all__ = ["Categorical", "sample_each"]


class Categorical:
    """The categorical law of each batch row's weights, ready for repeated independent draws.

    Building it costs O(n) per row (one cumulative sum); each draw costs O(log n).

    Parameters
    ----------
    log_weights : array, shape (*batch, n)
        Log-weights, normalised or not; ``-inf`` is weight zero. Every row needs a finite entry.
    where : str
        What the weights are, for error messages.

    Raises
    ------
    InvalidArgumentError
        If a row has no positive weight (or holds NaN).
    """

    def __init__(self, log_weights: Array, *, where: str = "the weights"):
        self.cdf, self.total = _cumulative(log_weights, where)
        self.batch = tuple(log_weights.shape[:-1])

    def draw(self, k: int, rng: RNG) -> Array:
        """``k`` independent draws per row; returns int64 indices of shape ``(*batch, k)``.

        Parameters
        ----------
        k : int
        rng : RNG

        Returns
        -------
        array of int64, shape (*batch, k)
        """
        u = rng.uniform((*self.batch, k), like=self.cdf)
        return _search_rows(self.cdf, _below_total(u * self.total[..., None], self.total[..., None]))


def sample_each(log_weights: Array, rng: RNG, *, where: str = "the weights") -> Array:
    """One draw from each of many categorical laws: ``out[..., j] ~ Categorical(exp(log_weights[..., j, :]))``.

    O(n) per law (used when every draw has its own weights, as in exact backward sampling), in two levels so that
    no full cumulative sum is needed: the weights are summed in blocks of about sqrt(n), a block is drawn from the
    cumulative block sums, then a particle within it.

    Parameters
    ----------
    log_weights : array, shape (*shape, n)
    rng : RNG
    where : str
        What the weights are, for error messages.

    Returns
    -------
    array of int64, shape ``shape``

    Raises
    ------
    InvalidArgumentError
        If a law has no positive weight.
    """
    xp = namespace(log_weights)
    w = _weights(log_weights, where)
    shape, n = tuple(w.shape[:-1]), w.shape[-1]
    size = max(1, math.isqrt(n))
    full = n // size
    sums = xp.sum(xp.reshape(w[..., : full * size], (*shape, full, size)), axis=-1)
    if full * size < n:
        sums = xp.concat([sums, xp.sum(w[..., full * size :], axis=-1, keepdims=True)], axis=-1)
    cum = xp.cumulative_sum(sums, axis=-1)
    total = cum[..., -1]
    v = _below_total(rng.uniform(shape, like=w) * total, total)
    block = xp.astype(xp.count_nonzero(cum <= v[..., None], axis=-1), xp.int64)  # cum[block - 1] <= v < cum[block]
    previous = xp.take_along_axis(cum, xp.maximum(block - 1, 0)[..., None], axis=-1)[..., 0]
    before = xp.where(block > 0, previous, xp.zeros_like(previous))
    start = block * size
    index = start[..., None] + xp.arange(size, dtype=xp.int64, device=device_of(w))
    inner = xp.take_along_axis(w, xp.minimum(index, n - 1), axis=-1)
    inner = xp.where(index < n, inner, xp.zeros_like(inner))
    inner_cum = xp.cumulative_sum(inner, axis=-1)
    # The block's own total may differ from cum[block] - cum[block - 1] in the last bit: keep the residual below it.
    rest = _below_total(v - before, inner_cum[..., -1])
    return start + xp.astype(xp.count_nonzero(inner_cum <= rest[..., None], axis=-1), xp.int64)


def _weights(log_weights: Array, where: str) -> Array:
    """Float64 weights ``(*shape, n)`` scaled by each row's maximum (which becomes 1)."""
    xp = namespace(log_weights)
    top = xp.max(log_weights, axis=-1, keepdims=True)
    if not bool(xp.all(xp.isfinite(top))):
        raise InvalidArgumentError(
            f"{where}: some rows have no positive weight (every log-weight -inf) or hold NaN/+inf; "
            "there is nothing to draw from"
        )
    return xp.exp(xp.astype(log_weights - top, xp.float64, copy=False))


def _cumulative(log_weights: Array, where: str) -> tuple[Array, Array]:
    """Float64 cumulative weights ``(*shape, n)``, scaled by each row's maximum, and their totals ``(*shape,)``."""
    cdf = namespace(log_weights).cumulative_sum(_weights(log_weights, where), axis=-1)
    return cdf, cdf[..., -1]


def _below_total(v: Array, total: Array) -> Array:
    """``v`` clipped to the largest float64 strictly below ``total`` (u * total can round up to total)."""
    xp = namespace(v)
    return xp.minimum(v, xp.nextafter(total, xp.zeros_like(total)))


def _search_rows(cdf: Array, v: Array) -> Array:
    """Per row, the number of cumulative weights ``<= v`` (``searchsorted(side="right")``), int64 ``(*batch, k)``."""
    xp = namespace(cdf)
    if is_torch(cdf):
        return _torch_search(cdf, v)
    if cdf.ndim == 1:
        return xp.astype(xp.searchsorted(cdf, v, side="right"), xp.int64)
    return _bisect(cdf, v)


def _torch_search(cdf: Any, v: Any) -> Any:
    import torch

    return torch.searchsorted(cdf.contiguous(), v.contiguous(), right=True)


def _bisect(cdf: Array, v: Array) -> Array:
    """Vectorised bisection over rows for backends without a batched searchsorted (numpy).

    Invariant per query: the answer lies in ``[lo, hi]``; each pass halves the interval.
    """
    xp = namespace(cdf)
    n = cdf.shape[-1]
    lo = xp.zeros(tuple(v.shape), dtype=xp.int64, device=device_of(v))
    hi = xp.full(tuple(v.shape), n, dtype=xp.int64, device=device_of(v))
    for _ in range(max(1, math.ceil(math.log2(n + 1)))):
        mid = xp.minimum((lo + hi) // 2, n - 1)
        right = xp.take_along_axis(cdf, mid, axis=-1) <= v
        active = lo < hi
        lo = xp.where(active & right, mid + 1, lo)
        hi = xp.where(active & ~right, mid, hi)
    return lo
