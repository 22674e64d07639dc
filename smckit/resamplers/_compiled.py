"""Fused CPU kernels (numba) for the standard schemes.

The array-API code of each scheme (in its own module) is the reference: it runs on every backend and device.
On the CPU it is a chain of whole-array passes, each of which reads and writes memory; these kernels do the work
after the exponentiation in one or two sequential sweeps per row instead. They compute **the same floating-point
operations in the same order** as the reference (sequential cumulative sums, the same scalings and
comparisons, the same random draws, which the caller makes), so for a given seed both paths return identical
ancestors; ``tests/test_compiled.py`` checks this bit for bit.

Every kernel takes float64 weights ``w = exp(log_w - max)`` of shape (rows, n), computed by
:func:`smckit.resamplers._common.prepare`, and returns int64 ancestors. Cumulative counts become ancestors by a
histogram and a running sum (``a[k] = #{i : G_i <= k}``), which has no data-dependent branch; every histogram
write is bounds-checked against the output width, so malformed counts cannot write outside the output, and
every read index is in range by construction (positions are finite and non-negative for validated input).

numba is optional (``pip install pysmckit[fast]``, part of ``[all]``); without it, or with the environment
variable ``SMCKIT_NUMBA=0``, or inside :func:`smckit.resamplers.use_numba` with ``False``, the reference path
runs. Kernels are compiled on first use and cached on disk.
"""

from __future__ import annotations

import contextvars
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

numba: Any
try:  # pragma: no cover - exercised by whichever environment runs the tests
    import numba
except ImportError:  # pragma: no cover
    numba = None

__all__ = [
    "available",
    "enabled",
    "use_numba",
    "systematic",
    "stratified",
    "multinomial",
    "floors",
    "residual",
    "ssp",
    "killing",
]

# smckit.resamplers._common takes its _ROUND_UP from here, so the two paths scale by the same constant.
_ROUND_UP = 1.0 + 4.0 * 2.0**-52

# None: follow the environment. A context variable, so that a `with use_numba(...)` block affects only its own
# thread or asyncio task.
_switch: contextvars.ContextVar[bool | None] = contextvars.ContextVar("smckit_use_numba", default=None)
_ENVIRONMENT = os.environ.get("SMCKIT_NUMBA", "1").strip().lower() not in ("0", "false", "no", "off")  # at import


def available() -> bool:
    """Whether numba can be imported."""
    return numba is not None


def enabled() -> bool:
    """Whether the standard schemes use the compiled kernels for arrays in host memory.

    True when numba is importable and, unless an enclosing :func:`use_numba` decides for this thread or task,
    the environment variable ``SMCKIT_NUMBA`` was not ``0`` (or ``false``, ``no``, ``off``) when smckit was
    imported.
    """
    if numba is None:
        return False
    override = _switch.get()
    return _ENVIRONMENT if override is None else override


@contextmanager
def use_numba(flag: bool) -> Iterator[None]:
    """Turn the compiled CPU kernels of the standard schemes on or off inside a ``with`` block.

    The setting holds for the current thread or asyncio task (a context variable); other threads keep theirs.

    Parameters
    ----------
    flag : bool
        ``False`` forces the array-API reference path; ``True`` uses the kernels when numba is installed (it is
        not an error to ask for them without numba: the reference path runs).

    Examples
    --------
    >>> import numpy as np
    >>> from smckit.random import RNG
    >>> from smckit.resamplers import Systematic, use_numba
    >>> lw = np.log(np.array([0.1, 0.6, 0.3]))
    >>> with use_numba(False):
    ...     reference = Systematic()(lw, RNG(0)).ancestors
    >>> bool((Systematic()(lw, RNG(0)).ancestors == reference).all())
    True
    """
    token = _switch.set(bool(flag))
    try:
        yield
    finally:
        _switch.reset(token)


def _jit(fn: Any) -> Any:
    """``numba.njit`` with an on-disk cache and the GIL released; the plain function without numba."""
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(cache=True, nogil=True)(fn)


# -- building blocks (inlined by LLVM into the kernels) --------------------------------------------------------
@_jit
def _sequential_sum(x: Any) -> float:
    """The last entry of ``cumsum(x)``: a left-to-right sum, as numpy's and torch's CPU cumulative sums add."""
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i]
    return total


@_jit
def _two_sums(a: Any, size_a: int, b: Any, size_b: int) -> tuple[float, float]:
    """``sum(a[:size_a])`` and ``sum(b[:size_b])``, each left to right, in one sweep (two independent chains)."""
    sum_a = 0.0
    sum_b = 0.0
    both = min(size_a, size_b)
    for i in range(both):
        sum_a += a[i]
        sum_b += b[i]
    for i in range(both, size_a):
        sum_a += a[i]
    for i in range(both, size_b):
        sum_b += b[i]
    return sum_a, sum_b


@_jit
def _add_count(hist: Any, c: int) -> None:
    """Record one cumulative count ``c`` in the histogram (values at or past its width fill no slot)."""
    if 0 <= c < hist.shape[0]:
        hist[c] += 1


@_jit
def _running_sum(hist: Any) -> None:
    """Turn the histogram of cumulative counts into ancestors in place: ``a[k] = #{i : G_i <= k}``."""
    acc = 0
    for k in range(hist.shape[0]):
        acc += hist[k]
        hist[k] = acc


@_jit
def _sorted_uniforms(spacings: Any, draws: int, norm: float, start: Any) -> None:
    """Turn exponential spacings into ``draws`` sorted uniforms on [0, draws), in place, and bucket them.

    Mirrors :func:`smckit.resamplers._common.multinomial_cumulative_counts`: ``u_k = P_k * draws / P_draws``
    with ``P_k = E_0 + ... + E_k`` and ``norm = P_draws``. ``start[b]`` (``draws + 1`` entries) becomes the
    number of uniforms in the unit buckets below ``b`` (the last bucket is closed above, as the reference's).
    """
    if not norm > 0:
        norm = 1.0
    to_uniform = draws / norm
    start[: draws + 1] = 0
    partial = 0.0
    for k in range(draws):
        partial += spacings[k]
        u = partial * to_uniform
        spacings[k] = u
        start[min(int(u), draws - 1) + 1] += 1
    _running_sum(start[: draws + 1])


@_jit
def _add_multinomial_counts(
    weights: Any, total: float, uniforms: Any, start: Any, draws: int, whole: Any, hist: Any
) -> None:
    """Add each particle's cumulative count to ``hist``: ``G_i = #{k : u_k < x_i}`` (``draws`` for ``x_i >=
    draws``), plus ``whole[0] + ... + whole[i]`` when ``whole`` is given.

    ``x_i`` are the cumulative ``weights`` (whose sum is ``total``) scaled to ``draws`` as the reference scales
    them; the uniforms come from :func:`_sorted_uniforms`. A particle's own bucket holds one uniform on average,
    so three branch-free probes settle almost every count; a longer bucket is finished by a scan.
    """
    if not total > 0:
        total = 1.0
    scale = (draws / total) * _ROUND_UP
    last = uniforms.shape[0] - 1
    placed = 0
    s = 0.0
    for i in range(weights.shape[0]):
        if whole is not None:
            placed += whole[i]
        s += weights[i]
        x = s * scale
        if not x < draws:  # also a NaN position (never from validated input): no bucket lookup with it
            _add_count(hist, placed + draws)
            continue
        b = int(x)
        lo = start[b]
        hi = start[b + 1]
        c = lo
        c += (lo < hi) & (uniforms[min(lo, last)] < x)
        c += (lo + 1 < hi) & (uniforms[min(lo + 1, last)] < x)
        c += (lo + 2 < hi) & (uniforms[min(lo + 2, last)] < x)
        if c == lo + 3:
            while c < hi and uniforms[c] < x:
                c += 1
        _add_count(hist, placed + c)


@_jit
def _floor_and_fraction(weights: Any, scale: float, whole: Any, frac: Any) -> int:
    """``e_i = w_i * scale``: write ``floor(e_i)`` (int64) and ``e_i - floor(e_i)``; return the sum of floors."""
    placed = 0
    for i in range(weights.shape[0]):
        e = weights[i] * scale
        f = math.floor(e)
        frac[i] = e - f
        whole[i] = int(f)
        placed += int(f)
    return placed


# -- the schemes -----------------------------------------------------------------------------------------------
# Each scheme is a jitted kernel writing into buffers that numpy allocates: numpy asks the kernel for huge pages
# on large arrays, so first-touch page faults cost ~1 ns per int64 instead of the ~7 ns of numba's allocator.
@_jit
def _systematic(w: Any, u: Any, out: Any) -> None:
    rows, n = w.shape
    n_out = out.shape[1]
    for r in range(rows):
        row = w[r]
        hist = out[r]
        scale = (n_out / _sequential_sum(row)) * _ROUND_UP
        offset = u[r, 0]
        s = 0.0
        for i in range(n):
            s += row[i]
            _add_count(hist, min(int(s * scale + offset), n_out))
        _running_sum(hist)


def systematic(w: np.ndarray, u: np.ndarray, n_out: int) -> np.ndarray:
    """Systematic ancestors (see :class:`smckit.resamplers.Systematic`).

    Parameters
    ----------
    w : float64 array, shape (rows, n)
    u : float64 array, shape (rows, 1)
    n_out : int

    Returns
    -------
    int64 array, shape (rows, n_out)
    """
    out = np.zeros((w.shape[0], n_out), np.int64)
    _systematic(w, u, out)
    return out


@_jit
def _stratified(w: Any, u: Any, out: Any) -> None:
    rows, n = w.shape
    n_out = out.shape[1]
    top = float(n_out - 1)
    for r in range(rows):
        row = w[r]
        hist = out[r]
        scale = (n_out / _sequential_sum(row)) * _ROUND_UP
        s = 0.0
        for i in range(n):
            s += row[i]
            x = s * scale
            m = int(min(math.floor(x), top))
            _add_count(hist, m + (1 if u[r, m] < x - m else 0))
        _running_sum(hist)


def stratified(w: np.ndarray, u: np.ndarray, n_out: int) -> np.ndarray:
    """Stratified ancestors (see :class:`smckit.resamplers.Stratified`).

    Parameters
    ----------
    w : float64 array, shape (rows, n)
    u : float64 array, shape (rows, n_out)
        One uniform per stratum.
    n_out : int

    Returns
    -------
    int64 array, shape (rows, n_out)
    """
    out = np.zeros((w.shape[0], n_out), np.int64)
    _stratified(w, u, out)
    return out


@_jit
def _multinomial(w: Any, spacings: Any, start: Any, out: Any) -> None:
    n_out = out.shape[1]
    for r in range(w.shape[0]):
        total, norm = _two_sums(w[r], w.shape[1], spacings[r], n_out + 1)
        _sorted_uniforms(spacings[r], n_out, norm, start)
        _add_multinomial_counts(w[r], total, spacings[r], start, n_out, None, out[r])
        _running_sum(out[r])


def multinomial(w: np.ndarray, spacings: np.ndarray, n_out: int) -> np.ndarray:
    """Multinomial ancestors (see :class:`smckit.resamplers.Multinomial`).

    Parameters
    ----------
    w : float64 array, shape (rows, n)
    spacings : float64 array, shape (rows, n_out + 1)
        Standard exponentials; overwritten.
    n_out : int

    Returns
    -------
    int64 array, shape (rows, n_out)
    """
    out = np.zeros((w.shape[0], n_out), np.int64)
    _multinomial(w, spacings, np.empty(n_out + 1, np.int64), out)
    return out


@_jit
def _floors(w: Any, totals: Any, draws: int, whole: Any, frac: Any, rest: Any) -> None:
    for r in range(w.shape[0]):
        rest[r] = draws - _floor_and_fraction(w[r], draws / totals[r], whole[r], frac[r])


def floors(w: np.ndarray, totals: np.ndarray, draws: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The floors and fractional parts of the expected counts ``draws * w / totals``, and the draws left.

    Parameters
    ----------
    w : float64 array, shape (rows, n)
    totals : float64 array, shape (rows,)
        The row sums of ``w`` as the reference computes them (numpy's pairwise sum).
    draws : int

    Returns
    -------
    whole : int64 array, shape (rows, n)
    frac : float64 array, shape (rows, n)
    rest : int64 array, shape (rows,)
        ``draws`` minus the row sum of ``whole``.
    """
    whole = np.empty(w.shape, np.int64)
    frac = np.empty(w.shape, np.float64)
    rest = np.empty(w.shape[0], np.int64)
    _floors(w, totals, draws, whole, frac, rest)
    return whole, frac, rest


@_jit
def _residual(whole: Any, frac: Any, rest: Any, spacings: Any, start: Any, out: Any) -> None:
    for r in range(whole.shape[0]):
        total, norm = _two_sums(frac[r], frac.shape[1], spacings[r], rest[r] + 1)
        _sorted_uniforms(spacings[r], rest[r], norm, start)
        _add_multinomial_counts(frac[r], total, spacings[r], start, rest[r], whole[r], out[r])
        _running_sum(out[r])


def residual(whole: np.ndarray, frac: np.ndarray, rest: np.ndarray, spacings: np.ndarray, n_out: int) -> np.ndarray:
    """Residual ancestors (see :class:`smckit.resamplers.Residual`), from the output of :func:`floors`.

    Parameters
    ----------
    whole : int64 array, shape (rows, n)
    frac : float64 array, shape (rows, n)
    rest : int64 array, shape (rows,)
    spacings : float64 array, shape (rows, max(rest) + 1) or wider
        Standard exponentials; overwritten.
    n_out : int

    Returns
    -------
    int64 array, shape (rows, n_out)
    """
    out = np.zeros((whole.shape[0], n_out), np.int64)
    _residual(whole, frac, rest, spacings, np.empty(spacings.shape[1], np.int64), out)
    return out


@_jit
def _killing(w: Any, killed: Any, deaths: Any, spacings: Any, start: Any, replacements: Any, out: Any) -> None:
    rows, n = w.shape
    for r in range(rows):
        dead = deaths[r]
        total, norm = _two_sums(w[r], n, spacings[r], dead + 1)
        _sorted_uniforms(spacings[r], dead, norm, start)
        replacements[:] = 0
        _add_multinomial_counts(w[r], total, spacings[r], start, dead, None, replacements)
        _running_sum(replacements)
        j = 0
        for i in range(n):
            k = killed[r, i]
            out[r, i] = replacements[min(j, n - 1)] if k else i
            j += k


def killing(w: np.ndarray, killed: np.ndarray, deaths: np.ndarray, spacings: np.ndarray) -> np.ndarray:
    """Killing ancestors (see :class:`smckit.resamplers.Killing`).

    Parameters
    ----------
    w : float64 array, shape (rows, n)
    killed : bool array, shape (rows, n)
    deaths : int64 array, shape (rows,)
        The number of killed particles per row.
    spacings : float64 array, shape (rows, max(deaths) + 1) or wider
        Standard exponentials for the replacements; overwritten.

    Returns
    -------
    int64 array, shape (rows, n)
    """
    rows, n = w.shape
    out = np.empty((rows, n), np.int64)
    _killing(w, killed, deaths, spacings, np.empty(spacings.shape[1], np.int64), np.empty(n, np.int64), out)
    return out


@_jit
def _ssp(w: Any, totals: Any, u: Any, whole: Any, frac: Any, holder: Any, source: Any, extra: Any, out: Any) -> None:
    rows, n = w.shape
    for r in range(rows):
        left = n - _floor_and_fraction(w[r], n / totals[r], whole, frac)
        for i in range(n):
            holder[i] = i
        # Pair the open fractions level by level, in place (pair j of a level lands at j <= 2j).
        m = n
        level_start = 0
        t = 0
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
                a_ = 1.0 - a if over else a
                b_ = 1.0 - b if over else b
                keep_first = u[base + j] * (a_ + b_) < a_
                source[t] = second if keep_first else first
                extra[t] = over
                t += 1
                frac[j] = total - (1.0 if over else 0.0)
                holder[j] = first if keep_first else second
            if m % 2:
                frac[pairs] = frac[m - 1]
                holder[pairs] = holder[m - 1]
            level_start += rows * pairs
            m = pairs + m % 2
        # Expand: the floors of every particle, then the settled extra draws in settling order, then the last
        # open fraction (settled exactly from the integer number of draws left).
        hist = out[r]
        placed = 0
        for i in range(n):
            placed += whole[i]
            _add_count(hist, placed)
        _running_sum(hist)
        last = left
        for s in range(t):
            if extra[s]:
                last -= 1
                if placed < n:
                    hist[placed] = source[s]
                placed += 1
        for _ in range(last):
            if placed < n:
                hist[placed] = holder[0]
            placed += 1


def ssp(w: np.ndarray, totals: np.ndarray, u: np.ndarray) -> np.ndarray:
    """SSP ancestors (see :class:`smckit.resamplers.SSP`).

    Parameters
    ----------
    w : float64 array, shape (rows, n)
    totals : float64 array, shape (rows,)
        The row sums of ``w`` as the reference computes them.
    u : float64 array, shape (rows * (n - 1),)
        The pairing uniforms level after level, each level a row-major (rows, pairs) block, as the reference
        draws them.

    Returns
    -------
    int64 array, shape (rows, n)
    """
    rows, n = w.shape
    out = np.zeros((rows, n), np.int64)
    settled = max(n - 1, 0)
    scratch = (np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, np.int64))
    _ssp(w, totals, u, *scratch, np.empty(settled, np.int64), np.empty(settled, np.bool_), out)
    return out
