"""Refilling killed slots: the birth step shared by killing and birth-death (Fleming-Viot) schemes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from smckit.backend import Array, describe, device_of, is_floating, is_numpy, is_torch
from smckit.errors import InvalidArgumentError, InvalidWeightsError, ShapeError
from smckit.random import as_rng
from smckit.resamplers import _compiled
from smckit.resamplers._common import (
    Prepared,
    ancestors_from_cumulative,
    float64_rows,
    guard_cumulative,
    multinomial_cumulative_counts,
    take_along,
)

__all__ = ["refill"]


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
        Non-negative and finite, with a positive entry in every row that has a killed slot; numpy or torch.
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
    prep, killed, checked = _prepare(weights, killed, rng)
    if checked is not None:  # the kernel divides by the row maxima as it reads the weights
        divisors, deaths = checked
        ancestors, _ = _compiled.refill(prep.w, killed, prep.rng.numpy, divisors=divisors, deaths=deaths)
    else:
        ancestors, _ = refill_rows(prep, prep.w, killed)
    return prep.output(ancestors)


def refill_rows(prep: Prepared, w: Array, killed: Array) -> tuple[Array, Array]:
    """:func:`refill` on prepared rows, by the array-API code (host arrays with numba go to the compiled
    kernels instead: :func:`smckit.resamplers._compiled.refill` and ``killing``).

    Parameters
    ----------
    prep : Prepared
    w : float64 array, shape (rows, n)
        Non-negative weights, a positive one in every row with a killed slot.
    killed : bool array, shape (rows, n)

    Returns
    -------
    ancestors : int64 array, shape (rows, n)
    deaths : int64 array, shape (rows, 1)
        The number of killed slots per row.
    """
    xp, n = prep.xp, prep.n
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


def _prepare(weights: Any, killed: Any, rng: Any) -> tuple[Prepared, Array, tuple[np.ndarray, np.ndarray] | None]:
    """Validate the input of :func:`refill`: weights as float64 rows, ``killed`` as bool rows, and for the compiled
    kernel the divisors (row maxima, 1 for an all-zero row) by which it scales the weights as it reads them and
    the killed slots per row (``None``: the weights are already scaled, for the array-API path)."""
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
    dtype = weights.dtype
    xp, w, device, sequential, compiled, torch_output = float64_rows(weights)
    killed = xp.reshape(killed.numpy() if torch_output else killed, (rows, n))
    if compiled:
        bad, tops, deaths = _compiled.refill_checks(w, killed)
        _check(bad, tops, killed, batch)
        prep = Prepared(xp, batch, rows, n, n, dtype, device, w, sequential, as_rng(rng), compiled, torch_output)
        return prep, killed, (np.where(tops > 0, tops, 1.0), deaths)
    top = xp.max(w, axis=-1, keepdims=True)
    if sequential:  # two reductions (NaN propagates through both); the full scan only to word an error
        host_top, host_low = (np.asarray(v.cpu() if is_torch(v) else v) for v in (top[:, 0], xp.min(w, axis=-1)))
        bad = 0
        if not (np.isfinite(host_top).all() and (host_low >= 0).all()):
            host_w = np.asarray(w.cpu() if is_torch(w) else w)
            bad = int(np.count_nonzero(~np.isfinite(host_w) | (host_w < 0)))
        _check(bad, host_top, np.asarray(killed.cpu() if is_torch(killed) else killed), batch)
    # Relative to each row's largest weight, so that sums stay in [1, n] (no subnormal or overflowing totals).
    w = w / xp.where(top > 0, top, xp.ones_like(top))
    prep = Prepared(xp, batch, rows, n, n, dtype, device, w, sequential, as_rng(rng), compiled, torch_output)
    return prep, killed, None


def _check(bad: int, tops: np.ndarray, killed: np.ndarray, batch: tuple[int, ...]) -> None:
    """Raise for invalid weights (``bad`` of them) or a row with killed slots and no positive weight."""
    if bad:
        message = f"refill needs finite, non-negative weights; got {bad} that are not"
        raise InvalidWeightsError(message, step=-1, count=bad)
    empty = killed.any(axis=-1) & ~(tops > 0)
    if empty.any():
        rows_ = [tuple(int(i) for i in np.unravel_index(r, batch)) for r in np.flatnonzero(empty)]
        raise InvalidWeightsError(
            f"refill: batch rows {rows_[:5]} have killed slots but no positive weight to draw them from",
            step=-1,
            count=len(rows_),
            rows=tuple(rows_),
        )
