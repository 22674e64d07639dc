"""Hypothesis strategies for resampler inputs: log-weights that stress the edge cases.

Every strategy draws numpy arrays of log-weights, shape ``(*batch, n)``, with at least one finite entry per
row; :func:`to_backend` converts them to torch. The finite values lie on a grid of ``2**-6`` with magnitude
at most ``GRID_BOUND``, so adding any shift of :data:`EXACT_SHIFTS` is exact in float32 and float64 alike: a
shifted input then differs from the original by the shift alone, and a shift-invariant scheme must give the
same result bit for bit.

The cases covered: weights of zero (``-inf``) anywhere, at the start and in a block at the end; one-hot rows;
``n = 1``; all-equal rows; relative weights in the subnormal range (log-weights about 740 below the row
maximum); rows shifted by ``+-700`` or ``1e5`` (overflow if exponentiated naively); float32 and float64; batch
shapes ``()``, ``(k,)`` and ``(j, k)``.

hypothesis is needed only for these strategies (``pip install hypothesis``); importing this module without it
raises ImportError.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

__all__ = [
    "EXACT_SHIFTS",
    "GRID",
    "GRID_BOUND",
    "batch_shapes",
    "dtypes",
    "finite_log_weights",
    "log_weights",
    "one_hot_log_weights",
    "shifts",
    "subnormal_log_weights",
    "to_backend",
    "zero_tail_log_weights",
]

GRID = 2.0**-6
"""Spacing of the finite log-weights drawn here."""

GRID_BOUND = 64.0
"""Largest magnitude of a finite log-weight before shifting."""

EXACT_SHIFTS = (512.0, -512.0, 700.0, -700.0, 1e5, -1e5)
"""Shifts that are exact on the grid in float32 and float64 (1e5 + 64 < 2**17, whose float32 ulp is 2**-7)."""

_SUBNORMAL_GAP = 740.0  # exp(-740) ~ 4e-322 is subnormal in float64; exp(-746) rounds to 0.


def dtypes() -> st.SearchStrategy[Any]:
    """float32 or float64."""
    return st.sampled_from([np.float64, np.float32])


def batch_shapes(max_rows: int = 4) -> st.SearchStrategy[tuple[int, ...]]:
    """``()``, ``(k,)`` or ``(j, k)`` with at most ``max_rows`` rows in all."""
    one = st.integers(1, max_rows).map(lambda k: (k,))
    two = st.tuples(st.integers(1, 2), st.integers(1, max(1, max_rows // 2)))
    return st.one_of(st.just(()), one, two)


def shifts() -> st.SearchStrategy[float]:
    """One of :data:`EXACT_SHIFTS`."""
    return st.sampled_from(EXACT_SHIFTS)


def _grid_values(draw: Any, shape: tuple[int, ...], low: float = -GRID_BOUND, high: float = GRID_BOUND) -> np.ndarray:
    size = int(np.prod(shape, dtype=np.int64))
    ints = draw(st.lists(st.integers(int(low / GRID), int(high / GRID)), min_size=size, max_size=size))
    return np.asarray(ints, dtype=np.float64).reshape(shape) * GRID


def _keep_one_finite(draw: Any, values: np.ndarray) -> np.ndarray:
    """Make sure every row has a finite entry (an all -inf row is an extinction, not a resampling input)."""
    rows = values.reshape(-1, values.shape[-1])
    dead = ~np.isfinite(rows).any(axis=-1)
    if dead.any():
        col = draw(st.integers(0, values.shape[-1] - 1))
        rows[dead, col] = 0.0
    return rows.reshape(values.shape)


@st.composite
def finite_log_weights(
    draw: Any,
    *,
    min_n: int = 1,
    max_n: int = 40,
    batch: st.SearchStrategy[tuple[int, ...]] | None = None,
    zeros: bool = True,
) -> np.ndarray:
    """Grid log-weights, optionally with ``-inf`` (zero weights) scattered anywhere, float64.

    Parameters
    ----------
    min_n, max_n : int
        Range of the number of particles.
    batch : strategy of tuple of int, optional
        Batch shapes (default :func:`batch_shapes`).
    zeros : bool
        Whether some entries may be ``-inf``.
    """
    shape = (*draw(batch if batch is not None else batch_shapes()), draw(st.integers(min_n, max_n)))
    values = _grid_values(draw, shape)
    if zeros:
        mask = np.asarray(draw(st.lists(st.booleans(), min_size=values.size, max_size=values.size)), dtype=bool)
        values = np.where(mask.reshape(shape), -np.inf, values)
    return _keep_one_finite(draw, values)


@st.composite
def zero_tail_log_weights(
    draw: Any, *, min_n: int = 2, max_n: int = 40, batch: st.SearchStrategy[tuple[int, ...]] | None = None
) -> np.ndarray:
    """Log-weights whose last entries (and possibly first ones) are ``-inf``: the round-off trap at the top."""
    shape = (*draw(batch if batch is not None else batch_shapes()), draw(st.integers(min_n, max_n)))
    n = shape[-1]
    values = _grid_values(draw, shape)
    tail = draw(st.integers(1, n - 1))
    head = draw(st.integers(0, n - 1 - tail))
    values[..., n - tail :] = -np.inf
    values[..., :head] = -np.inf
    return values


@st.composite
def one_hot_log_weights(
    draw: Any, *, min_n: int = 1, max_n: int = 40, batch: st.SearchStrategy[tuple[int, ...]] | None = None
) -> np.ndarray:
    """Exactly one finite entry per row (at a position drawn per row); the resampled row must copy it."""
    shape = (*draw(batch if batch is not None else batch_shapes()), draw(st.integers(min_n, max_n)))
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    values = np.full((rows, shape[-1]), -np.inf)
    cols = draw(st.lists(st.integers(0, shape[-1] - 1), min_size=rows, max_size=rows))
    level = _grid_values(draw, (rows,))
    values[np.arange(rows), cols] = level
    return values.reshape(shape)


@st.composite
def subnormal_log_weights(
    draw: Any, *, min_n: int = 2, max_n: int = 40, batch: st.SearchStrategy[tuple[int, ...]] | None = None
) -> np.ndarray:
    """Rows with one dominant entry and others about 740 below it: relative weights in the subnormal range."""
    shape = (*draw(batch if batch is not None else batch_shapes()), draw(st.integers(min_n, max_n)))
    values = _grid_values(draw, shape, -4.0, 4.0) - _SUBNORMAL_GAP
    rows = values.reshape(-1, shape[-1])
    col = draw(st.integers(0, shape[-1] - 1))
    rows[:, col] = 0.0
    return rows.reshape(shape)


@st.composite
def log_weights(
    draw: Any,
    *,
    min_n: int = 1,
    max_n: int = 40,
    batch: st.SearchStrategy[tuple[int, ...]] | None = None,
    dtype: Any = None,
    shift: bool = True,
) -> np.ndarray:
    """Any of the cases above, optionally shifted by one of :data:`EXACT_SHIFTS`, as float32 or float64.

    Parameters
    ----------
    min_n, max_n : int
        Range of the number of particles.
    batch : strategy of tuple of int, optional
        Batch shapes (default :func:`batch_shapes`).
    dtype : numpy dtype, optional
        Fix the dtype (default: float32 or float64 drawn).
    shift : bool
        Whether a shift of :data:`EXACT_SHIFTS` may be added (exactly).

    Returns
    -------
    numpy array, shape (*batch, n)
        At least one finite entry per row.
    """
    lo2 = max(min_n, 2)
    cases = [
        finite_log_weights(min_n=min_n, max_n=max_n, batch=batch),
        one_hot_log_weights(min_n=min_n, max_n=max_n, batch=batch),
    ]
    if max_n >= 2:
        cases += [
            zero_tail_log_weights(min_n=lo2, max_n=max_n, batch=batch),
            subnormal_log_weights(min_n=lo2, max_n=max_n, batch=batch),
        ]
    values = draw(st.one_of(*cases))
    if shift and draw(st.booleans()):
        values = values + draw(shifts())
    dt = dtype if dtype is not None else draw(dtypes())
    return values.astype(dt)


def to_backend(values: np.ndarray, backend: str = "numpy", *, device: str = "cpu", dtype: Any = None) -> Any:
    """``values`` as a numpy array or torch tensor (on ``device``), keeping its dtype unless ``dtype`` is given.

    Parameters
    ----------
    values : numpy array, any shape
    backend : {"numpy", "torch"}
    device : str
        torch device.
    dtype : numpy dtype, optional

    Returns
    -------
    numpy array or torch tensor, the shape of ``values``

    Raises
    ------
    ValueError
        For an unknown backend.
    """
    if dtype is not None:
        values = values.astype(dtype)
    if backend == "numpy":
        return values
    if backend == "torch":
        import torch

        return torch.as_tensor(values, device=device)
    raise ValueError(f"unknown backend {backend!r}; expected 'numpy' or 'torch'")
