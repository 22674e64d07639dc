"""Shared numerics of the standard resampling schemes.

Every standard scheme is written as *cumulative counts*. With ``w_i`` the weights of one row (relative to the
row's maximum), ``S_i = w_0 + ... + w_i`` their cumulative sums and ``x_i = S_i * N / S_{n-1}`` the cumulative
sums scaled to the number of draws ``N``, a scheme defines a non-decreasing integer function ``G`` with
``G(0) = 0`` and ``G(x) = N`` for ``x >= N``; particle ``i`` gets ``count_i = G(x_i) - G(x_{i-1})`` offspring
and the ancestors are the particle indices repeated by their counts. This form gives the exact properties the
conformance kit checks, by construction rather than by luck:

- a zero weight adds exactly ``0.0`` to the cumulative sum, so ``x_i == x_{i-1}`` bit for bit and the
  particle gets no offspring (on any backend whose cumulative sum runs sequentially: numpy, torch on the
  CPU; the parallel scans of accelerators get the explicit guard of :func:`guard_cumulative`);
- the scale ``N / S_{n-1}`` is rounded up by a few ulps so that the last position is at least ``N``: the
  round-off at the top of the cumulative sum (float32, large n) can never leave a draw unassigned, and the
  particles after the last positive weight share the last position, so they get nothing either;
- the counts of a row sum to ``N`` exactly, so expanding them (:func:`ancestors_from_cumulative`) gives
  exactly ``N`` indices, all in range.

Weights and cumulative sums are computed in float64 whatever the input dtype (float32 cumulative sums are
biased from a few hundred thousand particles on). Nothing here loops over particles in Python: the loops
that remain run over levels of a tree (SSP, ``log2 n`` of them) or over the occupancy of one bucket
(:func:`count_below` on the host, about ``log N / log log N`` at most, on a shrinking set).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from smckit.backend import Array, describe, device_of, is_floating, is_numpy, is_torch, namespace
from smckit.errors import ExtinctionError, InvalidArgumentError, InvalidWeightsError, ShapeError
from smckit.random import RNG, as_rng
from smckit.resamplers import _compiled
from smckit.resamplers.base import Resampled

__all__ = [
    "Prepared",
    "prepare",
    "float64_rows",
    "scaled_positions",
    "quotient",
    "guard_cumulative",
    "ancestors_from_cumulative",
    "count_below",
    "multinomial_cumulative_counts",
    "expand",
    "take_along",
    "cummax",
]

# The scale N / total is multiplied by (1 + 4 eps): then fl(total * scale) >= N for every float64 total, since
# each of the two roundings (of the quotient and of the product) loses at most eps/2 relative. The compiled
# kernels use the same constant.
_ROUND_UP = _compiled._ROUND_UP


@dataclass
class Prepared:
    """A validated row-major view of the log-weights, and the float64 weights every scheme starts from.

    Attributes
    ----------
    xp : module
        The array namespace (array_api_compat) of the input.
    batch : tuple of int
        The leading batch shape of the input.
    rows, n, n_out : int
        ``prod(batch)``, the number of particles per row and the number of draws per row.
    dtype, device
        The input's dtype and device (outputs other than indices use them).
    w : float64 array, shape (rows, n)
        ``exp(log_w - max(log_w))`` per row: in [0, 1], exactly 1 at the row maximum, exactly 0 for ``-inf``.
    sequential_scan : bool
        Whether cumulative sums on this device run sequentially (host CPU): zero weights then give equal
        cumulative sums bit for bit. ``False`` on accelerators, whose parallel scans need the explicit guard.
    rng : RNG
        The random source.
    compiled : bool
        Whether the scheme should run its fused CPU kernel (:mod:`smckit.resamplers._compiled`): the arrays are
        in host memory and numba is installed and enabled. ``xp`` is then numpy, also for a CPU tensor input.
    torch_output : bool
        Whether a CPU tensor input is being resampled through a numpy view (``compiled``): :meth:`result`
        hands the outputs back as tensors.
    sums : float64 array, shape (rows,), or None
        With ``compiled``: the left-to-right row sums of ``w`` (the last entries of its cumulative sums).
    """

    xp: Any
    batch: tuple[int, ...]
    rows: int
    n: int
    n_out: int
    dtype: Any
    device: Any
    w: Array
    sequential_scan: bool
    rng: RNG
    compiled: bool = False
    torch_output: bool = False
    sums: Any = None

    def uniform(self, shape: tuple[int, ...]) -> Array:
        """Float64 uniforms on [0, 1) next to the weights.

        On the host they come from the RNG's numpy stream whatever the array library (torch's CPU generator
        is about three times slower for float64 here), so a numpy array and a CPU tensor holding the same
        log-weights consume the same draws; an accelerator draws from its own torch generator.
        """
        if self.sequential_scan:
            return _like(self.w, self.rng.uniform(shape))
        return self.rng.uniform(shape, like=self.w)

    def exponential(self, shape: tuple[int, ...]) -> Array:
        """Float64 standard exponentials next to the weights (numpy's ziggurat on the host, as :meth:`uniform`;
        ``-log1p(-U)`` on an accelerator)."""
        if self.sequential_scan:
            return _like(self.w, self.rng.exponential(shape))
        return -self.xp.log1p(-self.uniform(shape))

    def arange(self, n: int) -> Array:
        """``arange(n)`` as int64 on the input's device, shape (1, n)."""
        return self.xp.reshape(self.xp.arange(n, dtype=self.xp.int64, device=self.device), (1, n))

    def cumsum(self, w: Array) -> Array:
        """Cumulative sums along the particle axis (float64)."""
        return self.xp.cumulative_sum(w, axis=-1)

    def most(self, counts: Array, bound: int) -> int:
        """How many draws to make for per-row ``counts``: their maximum on the host, the static ``bound`` on an
        accelerator (whose random stream must not depend on the weights, to avoid a synchronisation)."""
        if not self.sequential_scan:
            return bound
        return int(self.xp.max(counts)) if self.rows else 0

    def output(self, x: Array, shape: tuple[int, ...] | None = None) -> Array:
        """An output array: reshaped to ``shape`` (default ``(*batch, n_out)``), as a tensor for a tensor input."""
        x = self.xp.reshape(x, (*self.batch, self.n_out) if shape is None else shape)
        if self.torch_output and isinstance(x, np.ndarray):
            import torch

            return torch.from_numpy(x)
        return x

    def result(self, ancestors: Array, *, reborn: Array | None = None, info: dict[str, Any] | None = None) -> Resampled:
        """Reshape (rows, n_out) outputs to (*batch, n_out) and attach equal (zero) output log-weights."""
        if self.torch_output:
            log_weights = _host_zeros((*self.batch, self.n_out), self.dtype)
        else:
            log_weights = self.xp.zeros((*self.batch, self.n_out), dtype=self.dtype, device=self.device)
        info = {k: self.output(v, self.batch) for k, v in (info or {}).items()}
        return Resampled(self.output(ancestors), log_weights, None if reborn is None else self.output(reborn), info)


def prepare(log_weights: Array, rng: Any, n_out: int | None, *, name: str, variable_size: bool) -> Prepared:
    """Validate a resampler's input and compute the float64 weights relative to each row's maximum.

    Parameters
    ----------
    log_weights : float array, shape (*batch, n)
        Unnormalised log-weights (numpy or torch); ``-inf`` is a weight of zero.
    rng : RNG or seed
        The random source.
    n_out : int or None
        The number of draws per row (``None``: ``n``).
    name : str
        The scheme's name, for messages.
    variable_size : bool
        Whether the scheme allows ``n_out != n``.

    Returns
    -------
    Prepared

    Raises
    ------
    InvalidArgumentError
        For an input that is not a numpy array or torch tensor, a non-floating dtype, or a bad ``n_out``.
    ShapeError
        For an input without a particle axis, or with zero particles.
    InvalidWeightsError
        For NaN or ``+inf`` log-weights (checked on the host; see Notes).
    ExtinctionError
        For a row whose log-weights are all ``-inf``.

    Notes
    -----
    On an accelerator the checks would stall the device, so they are skipped there (the engine validates the
    weights it passes); a row with NaN, ``+inf`` or only ``-inf`` is then resampled as if its weights were
    equal, so the indices stay in range whatever the input.
    """
    if not (is_numpy(log_weights) or is_torch(log_weights)):
        raise InvalidArgumentError(
            f"the {name!r} resampler needs log-weights as a numpy array or a torch tensor, "
            f"got {type(log_weights).__name__}"
        )
    if is_torch(log_weights):
        log_weights = log_weights.detach()
    if log_weights.ndim < 1 or log_weights.shape[-1] < 1:
        raise ShapeError(
            f"the {name!r} resampler needs log-weights of shape (*batch, n) with n >= 1, "
            f"got shape {tuple(log_weights.shape)}"
        )
    if not is_floating(log_weights):
        raise InvalidArgumentError(
            f"the {name!r} resampler needs floating-point log-weights, got {describe(log_weights)}"
        )
    n = int(log_weights.shape[-1])
    batch = tuple(int(s) for s in log_weights.shape[:-1])
    rows = math.prod(batch)
    n_out = _check_n_out(n_out, n, name=name, variable_size=variable_size)
    dtype = log_weights.dtype
    xp, lw, device, sequential, compiled, torch_output = float64_rows(log_weights, native=True)
    top = xp.max(lw, axis=-1, keepdims=True)
    if sequential:
        top_host = np.asarray(top.cpu() if is_torch(top) else top, dtype=np.float64)[:, 0]
        if not np.isfinite(top_host).all():
            _check_rows(top_host, lw, batch, name)
        if compiled:
            w, sums = _compiled.weights(lw, top_host)
            return Prepared(
                xp, batch, rows, n, n_out, dtype, device, w, sequential, as_rng(rng), compiled, torch_output, sums
            )
        w = _exp_(lw - top)
    else:
        ok = xp.isfinite(top)
        w = _exp_(lw - xp.where(ok, top, xp.zeros_like(top)))
        w = xp.where(ok & ~xp.isnan(w), w, xp.ones_like(w))
    return Prepared(xp, batch, rows, n, n_out, dtype, device, w, sequential, as_rng(rng), compiled, torch_output)


def _host_zeros(shape: tuple[int, ...], dtype: Any) -> Array:
    """A CPU tensor of zeros over numpy's lazily zeroed memory: torch.zeros writes every page, which costs more
    than the compiled resampling itself at large n."""
    import torch

    host = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}.get(dtype)
    if host is None:
        return torch.zeros(shape, dtype=dtype)
    return torch.from_numpy(np.zeros(shape, dtype=host))


def float64_rows(x: Array, *, native: bool = False) -> tuple[Any, Array, Any, bool, bool, bool]:
    """``x`` (*batch, n) as float64 rows (rows, n), in the namespace the scheme will run in.

    Parameters
    ----------
    x : float array, shape (*batch, n)
        numpy array or (detached) torch tensor.
    native : bool
        Keep float32 rows as they are when the compiled kernels run (they convert each element as they read
        it, which saves a pass over memory).

    Returns
    -------
    xp : module
        The namespace of the rows: numpy also for a CPU tensor when the compiled kernels run.
    rows : float64 array, shape (rows, n)
        float32 where ``native`` kept it.
    device
        The rows' device.
    sequential, compiled, torch_output : bool
        See :class:`Prepared`. With ``torch_output``, ``rows`` is a numpy view of the tensor (no copy for
        float64) and :meth:`Prepared.result` turns the outputs back into tensors.
    """
    device = device_of(x)
    sequential = str(device) == "cpu"
    compiled = sequential and _compiled.enabled()
    torch_output = compiled and is_torch(x)
    keep = native and compiled and str(x.dtype) in ("float32", "torch.float32")
    if torch_output:
        import torch

        x = (x if keep else x.to(torch.float64)).numpy()
        device = device_of(x)
    xp = namespace(x)
    if not keep:
        x = xp.astype(x, xp.float64, copy=False)
    return xp, xp.reshape(x, (-1, int(x.shape[-1]))), device, sequential, compiled, torch_output


def _like(w: Array, draws: np.ndarray) -> Array:
    """Host draws as the array type of ``w`` (a zero-copy tensor for a CPU tensor)."""
    if is_torch(w):
        import torch

        return torch.from_numpy(draws)
    return draws


def _exp_(x: Array) -> Array:
    """``exp(x)`` computed in place (``x`` is a temporary of the caller)."""
    if is_torch(x):
        return x.exp_()
    return np.exp(x, out=x)


def _check_n_out(n_out: Any, n: int, *, name: str, variable_size: bool) -> int:
    if n_out is None:
        return n
    if isinstance(n_out, bool) or not isinstance(n_out, (int, np.integer)) or n_out < 1:
        raise InvalidArgumentError(f"n_out must be a positive integer or None, got {n_out!r}")
    if not variable_size and int(n_out) != n:
        raise InvalidArgumentError(
            f"the {name!r} resampler keeps the population size: n_out must equal n = {n}, got {n_out}; "
            "use a scheme that allows n_out != n (multinomial, systematic, stratified, residual)"
        )
    return int(n_out)


def _check_rows(top: np.ndarray, lw: Array, batch: tuple[int, ...], name: str) -> None:
    """Raise on rows holding NaN or +inf (their maximum is NaN or +inf) or only -inf (maximum -inf)."""

    def where(mask: np.ndarray) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(int(i) for i in np.unravel_index(r, batch)) for r in np.flatnonzero(mask))

    bad = np.isnan(top) | (top == np.inf)
    if bad.any():
        host = np.asarray(lw.cpu() if is_torch(lw) else lw)
        count = int(np.count_nonzero(np.isnan(host) | (host == np.inf)))
        rows = where(bad)
        place = f" in batch rows {list(rows)[:5]}" if batch else ""
        raise InvalidWeightsError(
            f"the log-weights given to the {name!r} resampler hold {count} NaN or +inf value(s){place}; "
            "log-weights must be real numbers or -inf (weight zero)",
            step=-1,
            count=count,
            rows=rows,
        )
    dead = top == -np.inf
    if dead.any():
        rows = where(dead)
        place = f"batch rows {list(rows)[:5]}" if batch else "the population"
        raise ExtinctionError(
            f"every log-weight of {place} given to the {name!r} resampler is -inf (all weights zero): "
            "there is nothing to resample from",
            step=-1,
            rows=rows,
        )


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
    return cumsum * (quotient(draws, total) * _ROUND_UP)


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
    """Running maximum along the last axis."""
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
    """
    if is_torch(x):
        import torch

        return torch.gather(x, -1, idx)
    return np.take_along_axis(x, idx, axis=-1)


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
