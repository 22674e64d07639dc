"""Refilling killed slots: the birth step shared by killing and birth-death (Fleming-Viot) schemes, on the array
API and as a compiled kernel. Public through :mod:`smckit.resamplers.kit` and :mod:`smckit.resamplers`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from smckit.backend import Array, describe, device_of, is_floating, is_numpy, is_torch, to_host
from smckit.errors import InvalidArgumentError, InvalidWeightsError, ShapeError
from smckit.random import as_rng
from smckit.resamplers._compiled import (
    buffer,
    draw_tables,
    exponentials,
    jit,
    record_multinomial_counts,
    running_max,
    sorted_uniforms,
)
from smckit.resamplers._cumulative import (
    ancestors_from_cumulative,
    guard_cumulative,
    multinomial_cumulative_counts,
    take_along,
)
from smckit.resamplers._rows import Prepared, float64_rows

__all__ = ["refill", "refill_rows"]


def refill(weights: Array, killed: Array, rng: Any) -> Array:
    """Give every killed slot an independent draw from the distribution proportional to ``weights``.

    Survivors keep their own index. Per row, the ``K`` killed slots receive ``K`` independent draws from
    ``weights / sum(weights)``, sorted, the smallest in the first killed slot. This is the birth step of
    killing resampling (:class:`~smckit.resamplers.Killing`) and of birth-death schemes such as Fleming-Viot
    resampling, where the parent weights need not be the survival weights. A zero weight is never drawn.

    On the host (numpy arrays, CPU tensors) it runs the compiled kernel when numba is installed, and draws only
    ``max(K) + 1`` exponentials per row; on an accelerator it draws ``n + 1`` per row, so that nothing waits
    for the device.

    Parameters
    ----------
    weights : float array, shape (*batch, n)
        Non-negative and finite, with a positive entry in every row that has a killed slot; numpy or torch, any
        floating dtype (the draws are made from float64 weights).
    killed : bool array, shape (*batch, n)
        The slots to refill, on the backend and device of ``weights``.
    rng : RNG or seed
        The random source.

    Returns
    -------
    int64 array, shape (*batch, n)
        On the backend and device of ``weights``: ``i`` where ``killed[..., i]`` is false, a draw otherwise.

    Raises
    ------
    InvalidArgumentError
        For inputs that are not numpy arrays or torch tensors of the same library and device, a non-floating
        ``weights`` or a non-boolean ``killed``.
    ShapeError
        For shapes that differ, or no particle axis.
    InvalidWeightsError
        On the host: for negative, NaN or infinite weights, or a row with killed slots and no positive weight.

    Examples
    --------
    >>> import numpy as np
    >>> from smckit.resamplers import refill
    >>> weights = np.array([0.0, 1.0, 3.0, 0.0])
    >>> killed = np.array([True, False, False, True])
    >>> ancestors = refill(weights, killed, 0)
    >>> ancestors[1:3].tolist(), bool(np.isin(ancestors[[0, 3]], [1, 2]).all())
    ([1, 2], True)
    """
    prep, killed, divisors, deaths = _prepare(weights, killed, rng)
    ancestors, _ = refill_rows(prep, prep.w, killed, divisors=divisors, deaths=deaths)
    return prep.output(ancestors)


def refill_rows(
    prep: Prepared, w: Array, killed: Array, *, divisors: Any = None, sums: Any = None, deaths: Any = None
) -> tuple[Array, Array]:
    """:func:`refill` on prepared rows: the compiled kernel when ``prep.compiled``, the array-API code otherwise.

    Parameters
    ----------
    prep : Prepared
        The rows' preparation (namespace, device, random source, path).
    w : float64 array, shape (rows, n)
        Non-negative weights, a positive one in every row with a killed slot.
    killed : bool array, shape (rows, n)
    divisors : float64 array of shape (rows,), optional
        Draw from ``w / divisors[:, None]`` (the kernel divides as it reads, without storing the quotients).
    sums, deaths : arrays of shape (rows,), optional
        On the compiled path: the left-to-right row sums of the weights drawn from and the number of killed
        slots per row, when the caller has them.

    Returns
    -------
    ancestors : int64 array, shape (rows, n)
    deaths : int64 array, shape (rows, 1)
        The number of killed slots per row.
    """
    if prep.compiled:
        return _refill_compiled(w, killed, prep.rng.numpy, divisors=divisors, sums=sums, deaths=deaths)
    xp, n = prep.xp, prep.n
    if divisors is not None:
        w = w / xp.reshape(divisors, (-1, 1))
    deaths = xp.sum(killed, axis=-1, keepdims=True, dtype=xp.int64)
    spacings = prep.exponential((prep.rows, prep.most(deaths, n) + 1))
    cumsum = prep.cumsum(w)
    total = cumsum[:, -1:]
    total = xp.where(total > 0, total, xp.ones_like(total))  # an all-zero row without killed slots
    cum = multinomial_cumulative_counts(prep, cumsum, total, deaths, spacings)
    cum = guard_cumulative(prep, cum, w, deaths)
    # The K draws, sorted, in the first K slots (the slots beyond K hold n and are never read).
    replacements = ancestors_from_cumulative(prep, cum, n)
    rank = xp.clip(xp.cumulative_sum(xp.astype(killed, xp.int64), axis=-1) - 1, 0, n - 1)
    return xp.where(killed, take_along(replacements, rank), prep.arange(n)), deaths


def _prepare(weights: Any, killed: Any, rng: Any) -> tuple[Prepared, Array, Any, Any]:
    """Validate the input of :func:`refill`: weights as float64 rows, ``killed`` as bool rows. For the compiled
    kernel also the divisors (row maxima, 1 for an all-zero row) by which it scales the weights as it reads them
    and the killed slots per row; on the array-API path (``None`` for both) the weights come already scaled."""
    for what, x in (("weights", weights), ("killed", killed)):
        if not (is_numpy(x) or is_torch(x)):
            raise InvalidArgumentError(f"refill needs {what} as a numpy array or a torch tensor, got {type(x)}")
    if is_torch(weights) != is_torch(killed) or str(device_of(weights)) != str(device_of(killed)):
        raise InvalidArgumentError(
            f"refill needs weights and killed on one backend and device, got {describe(weights)} and {describe(killed)}"
        )
    if weights.ndim < 1 or weights.shape[-1] < 1 or tuple(weights.shape) != tuple(killed.shape):
        raise ShapeError(
            f"refill needs weights and killed of one shape (*batch, n) with n >= 1, got {tuple(weights.shape)} "
            f"and {tuple(killed.shape)}"
        )
    if not is_floating(weights):
        raise InvalidArgumentError(f"refill needs floating-point weights, got {describe(weights)}")
    if str(killed.dtype) not in ("bool", "torch.bool"):
        raise InvalidArgumentError(f"refill needs a boolean killed mask, got {describe(killed)}")
    if is_torch(weights):
        weights = weights.detach()
    n = int(weights.shape[-1])
    batch = tuple(int(s) for s in weights.shape[:-1])
    rows = math.prod(batch)
    xp, w, device, sequential, compiled, torch_output = float64_rows(weights)
    killed = xp.reshape(killed.numpy() if torch_output else killed, (rows, n))
    common = (xp, batch, rows, n, n, weights.dtype, device)
    if compiled:
        bad, tops, deaths = refill_checks(w, killed)
        _check(bad, tops, killed, batch)
        prep = Prepared(*common, w, sequential, as_rng(rng), compiled, torch_output)
        return prep, killed, np.where(tops > 0, tops, 1.0), deaths
    top = xp.max(w, axis=-1, keepdims=True)
    if sequential:  # two reductions (NaN propagates through both); the full scan only to word an error
        host_top, host_low = to_host(top[:, 0]), to_host(xp.min(w, axis=-1))
        bad = 0
        if not (np.isfinite(host_top).all() and (host_low >= 0).all()):
            host_w = to_host(w)
            bad = int(np.count_nonzero(~np.isfinite(host_w) | (host_w < 0)))
        _check(bad, host_top, to_host(killed), batch)
    # Relative to each row's largest weight, so that sums stay in [1, n] (no subnormal or overflowing totals).
    w = w / xp.where(top > 0, top, xp.ones_like(top))
    return Prepared(*common, w, sequential, as_rng(rng), compiled, torch_output), killed, None, None


def _check(bad: int, tops: np.ndarray, killed: np.ndarray, batch: tuple[int, ...]) -> None:
    """Raise for invalid weights (``bad`` of them) or a row with killed slots and no positive weight."""
    if bad:
        message = f"refill needs finite, non-negative weights; got {bad} that are not"
        raise InvalidWeightsError(message, step=None, count=bad)
    empty = killed.any(axis=-1) & ~(tops > 0)
    if empty.any():
        rows_ = [tuple(int(i) for i in np.unravel_index(r, batch)) for r in np.flatnonzero(empty)]
        raise InvalidWeightsError(
            f"refill: batch rows {rows_[:5]} have killed slots but no positive weight to draw them from",
            step=None,
            count=len(rows_),
            rows=tuple(rows_),
        )


# -- the compiled path -----------------------------------------------------------------------------------------
@jit
def _refill(
    w: Any,
    divisors: Any,
    sums: Any,
    killed: Any,
    deaths: Any,
    gen: Any,
    width: int,
    spacings: Any,
    start: Any,
    draws: Any,
    slots: Any,
    out: Any,
) -> None:
    for r in range(w.shape[0]):
        dead = deaths[r]
        norm = exponentials(gen, spacings, width, dead)
        sorted_uniforms(spacings, dead, norm, start)
        sorted_draws = draws[:dead]
        sorted_draws[:] = 0
        if divisors is None:
            record_multinomial_counts(w[r], sums[r], spacings, start, dead, sorted_draws)
        else:
            record_multinomial_counts(w[r], sums[r], spacings, start, dead, sorted_draws, divisors[r])
        running_max(sorted_draws)
        _place(out[r], killed[r], sorted_draws, slots)


@jit
def _place(row: Any, killed: Any, draws: Any, slots: Any) -> None:
    """``row[i] = i``, then the killed slots, in order, take ``draws``.

    The killed slots are first listed without a branch (every index is written, the count advances only for a
    killed one): choosing per slot between ``i`` and a draw compiles to a branch on the random mask, which costs
    twice as much.
    """
    j = 0
    last = slots.shape[0] - 1  # (slots has room for every killed slot and one more; the clamp keeps any input safe)
    for i in range(row.shape[0]):
        row[i] = i
        slots[min(j, last)] = i
        j += killed[i]
    for q in range(min(j, draws.shape[0])):
        row[slots[q]] = draws[q]


def _refill_compiled(
    w: np.ndarray,
    killed: np.ndarray,
    gen: np.random.Generator,
    *,
    divisors: np.ndarray | None = None,
    sums: np.ndarray | None = None,
    deaths: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The kernel path of :func:`refill_rows` (same parameters and returns; ``gen`` gives ``max(deaths) + 1``
    exponentials per row, as the reference draws them)."""
    rows, n = w.shape
    if deaths is None:
        deaths = np.count_nonzero(killed, axis=-1).astype(np.int64)
    if sums is None:
        sums = np.empty(rows, np.float64)
        _row_sums(w, np.ones(rows) if divisors is None else divisors, sums)
    width = int(deaths.max()) + 1 if rows else 1
    spacings, start = draw_tables(width)
    draws, slots = buffer("draws", width, np.int64), buffer("slots", width, np.int64)
    out = np.empty((rows, n), np.int64)
    with gen.bit_generator.lock:
        _refill(w, divisors, sums, killed, deaths, gen, width, spacings, start, draws, slots, out)
    return out, deaths[:, None]


@jit
def _row_sums(w: Any, divisors: Any, sums: Any) -> None:
    """Left-to-right sums of ``w[r] / divisors[r]`` (a division by 1.0 is exact)."""
    for r in range(w.shape[0]):
        d = divisors[r]
        total = 0.0
        for i in range(w.shape[1]):
            total += w[r, i] / d
        sums[r] = total


@jit
def _refill_checks(w: Any, killed: Any, tops: Any, deaths: Any) -> int:
    """One pass over the input of :func:`refill`: each row's largest weight and number of killed slots; returns
    how many weights are not finite and non-negative."""
    bad = 0
    for r in range(w.shape[0]):
        top = 0.0
        dead = 0
        for i in range(w.shape[1]):
            v = w[r, i]
            bad += not (0.0 <= v < np.inf)  # NaN fails both comparisons
            top = max(top, v)
            dead += killed[r, i]
        tops[r] = top
        deaths[r] = dead
    return bad


def refill_checks(w: np.ndarray, killed: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """The checks of :func:`refill` on host rows, in one pass.

    Parameters
    ----------
    w : float64 array, shape (rows, n)
    killed : bool array, shape (rows, n)

    Returns
    -------
    bad : int
        The number of weights that are NaN, infinite or negative.
    tops : float64 array, shape (rows,)
        The largest weight per row (meaningful when ``bad`` is 0).
    deaths : int64 array, shape (rows,)
        The number of killed slots per row.
    """
    tops = np.empty(w.shape[0], np.float64)
    deaths = np.empty(w.shape[0], np.int64)
    bad = _refill_checks(w, killed, tops, deaths)
    return int(bad), tops, deaths
