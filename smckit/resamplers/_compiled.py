"""Fused CPU kernels (numba) for the standard schemes.

The array-API code of each scheme (in its own module) is the reference: it runs on every backend and device.
On the CPU it is a chain of whole-array passes, each of which reads and writes memory; these kernels do the work
in a few sequential sweeps per row instead. They compute **the same floating-point operations in the same
order** as the reference (sequential cumulative sums, the same scalings and comparisons) and consume the same
random draws: arrays the caller draws, or draws made inside the kernel from the RNG's numpy Generator, which
numba's Generator support takes from the bit generator exactly as numpy's methods do. For a given seed both
paths return identical ancestors and leave the stream in the same state; ``tests/test_compiled.py`` checks
this bit for bit.

:func:`weights` computes ``w = exp(log_w - max)`` and the row sums in one pass; every scheme kernel starts from
its output and returns int64 ancestors. Cumulative counts become ancestors by recording, for each count, the
last particle that reaches it, and a running maximum (``a[k] = #{i : G_i <= k}``), which has no data-dependent
branch; every record is bounds-checked against the output width, so malformed counts cannot write outside the
output, and every read index is in range by construction (positions are finite and non-negative for validated
input).

numba is optional (``pip install pysmckit[fast]``, part of ``[all]``); without it, or with the environment
variable ``SMCKIT_NUMBA=0``, or inside :func:`smckit.resamplers.use_numba` with ``False``, the reference path
runs. Kernels are compiled on first use and cached on disk.
"""

from __future__ import annotations

import contextvars
import math
import os
import sys
import threading
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
    "weights",
    "systematic",
    "stratified",
    "multinomial",
    "residual",
    "ssp",
    "killing",
    "refill",
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
def _record(last: Any, c: int, i: int) -> None:
    """Record that particle ``i`` has cumulative count ``c``: ``last[c] = i + 1`` (``last`` starts at zero; values
    outside its width fill no slot).

    Counts are non-decreasing, so the last particle to write slot ``c`` is the last one with ``G_i = c``, and
    after :func:`_running_max` ``last[k] = #{i : G_i <= k}``. A plain store, where a histogram's increment would
    wait for the previous particle's increment of the same slot (runs of particles with equal counts are the
    rule: every particle with a small weight).
    """
    slot = np.uint64(c)  # a negative count wraps past the width: one comparison checks both bounds
    if slot < np.uint64(last.shape[0]):
        last[slot] = i + 1


@_jit
def _running_max(last: Any) -> None:
    """Turn the records of :func:`_record` into ancestors in place: ``a[k] = max(last[0], ..., last[k])``.

    A slot holds 0 or a value at least the running maximum, so the maximum is "the last non-zero value". It is
    selected with a mask (``-1`` for a non-zero ``v``: the sign bit of ``v | -v``), not a comparison, which LLVM
    would turn into a mispredicted branch.
    """
    acc = np.int64(0)
    for k in range(last.shape[0]):
        v = np.int64(last[k])
        keep_new = (v | -v) >> 63
        acc = (v & keep_new) | (acc & ~keep_new)
        last[k] = acc


@_jit
def _exponentials(gen: Any, spacings: Any, width: int, used: int) -> float:
    """Draw ``width`` standard exponentials from ``gen``; keep the first ``used + 1`` in ``spacings`` and return
    their left-to-right sum.

    numba's ``Generator.standard_exponential`` is numpy's ziggurat on the same bit generator, so this consumes
    the stream exactly as ``gen.standard_exponential(width)`` does, and keeps the same values.
    """
    norm = 0.0
    for k in range(used + 1):
        e = gen.standard_exponential()
        spacings[k] = e
        norm += e
    for _ in range(used + 1, width):
        gen.standard_exponential()
    return norm


@_jit
def _sorted_uniforms(spacings: Any, draws: int, norm: float, start: Any) -> None:
    """Turn exponential spacings into ``draws`` sorted uniforms on [0, draws), in place, and bucket them.

    Mirrors :func:`smckit.resamplers._common.multinomial_cumulative_counts`: ``u_k = P_k * draws / P_draws``
    with ``P_k = E_0 + ... + E_k`` and ``norm = P_draws``. ``spacings[draws]`` becomes ``+inf``, a sentinel
    above every position. ``start[b]`` (``draws + 1`` entries) becomes the number of uniforms in the unit
    buckets below ``b`` (the last bucket is closed above, as the reference's).
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
        _record(start, min(int(u), draws - 1) + 1, k)
    spacings[draws] = np.inf
    _running_max(start[: draws + 1])


@_jit
def _count_below(uniforms: Any, start: Any, draws: int, x: float) -> int:
    """``#{k : u_k < x}`` for a position ``x`` in [0, draws), from :func:`_sorted_uniforms`' output.

    The bucket of ``x`` holds one uniform on average, so three branch-free probes settle almost every count
    (the uniforms of later buckets, and the sentinel, are at least ``x``); a longer bucket is finished by a
    scan, which the sentinel stops. Indices are unsigned, which spares numba's negative-index wraparound (a
    third of this loop's instructions).
    """
    one = np.uint64(1)
    top = np.uint64(draws)
    lo = np.uint64(start[np.uint64(int(x))])
    c = lo + np.uint64(uniforms[min(lo, top)] < x) + np.uint64(uniforms[min(lo + one, top)] < x)
    c += np.uint64(uniforms[min(lo + one + one, top)] < x)
    if c == lo + np.uint64(3):
        while uniforms[c] < x:
            c += one
    return np.int64(c)


@_jit
def _add_multinomial_counts(
    weights: Any, total: float, uniforms: Any, start: Any, draws: int, hist: Any, divisor: Any = None
) -> None:
    """Add each particle's cumulative count ``G_i = #{k : u_k < x_i}`` (``draws`` for ``x_i >= draws``) to
    ``hist``, where ``x_i`` are the cumulative weights ``weights / divisor`` (``divisor`` None: ``weights``;
    their sum is ``total``) scaled to ``draws`` as the reference scales them."""
    if not total > 0:
        total = 1.0
    scale = (draws / total) * _ROUND_UP
    s = 0.0
    for i in range(weights.shape[0]):
        if divisor is None:  # (settled at compile time: numba compiles a version per argument type)
            s += weights[i]
        else:
            s += weights[i] / divisor
        x = s * scale
        # also a NaN position (never from validated input): no bucket lookup with it
        _record(hist, _count_below(uniforms, start, draws, x) if x < draws else draws, i)


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


# Scratch memory: each thread keeps the last buffer of each kind for its next call, since an SMC run resamples
# the same number of particles at every step and fresh memory costs a page fault per 4 KiB (about 1 ns per
# float64 here, a tenth of a multinomial call). A kept buffer is handed out again only when nothing outside the
# cache refers to it (no array or view of it is alive: views hold a reference to their base), so a result that
# is still in use is never overwritten. Buffers over _KEEP_BYTES are not kept.
_KEEP_BYTES = 2**27
_scratch = threading.local()


def _references(cache: dict[str, np.ndarray], slot: str) -> int:
    """``sys.getrefcount`` of ``cache[slot]`` as seen from here (a large number for an empty slot)."""
    kept = cache.get(slot)
    return sys.getrefcount(kept) if kept is not None else 1 << 30


# What _references reports for a buffer that only its cache holds (calibrated: interpreters count differently).
_UNREFERENCED = _references({"probe": np.empty(1)}, "probe")


def _buffer(slot: str, size: int, dtype: Any) -> np.ndarray:
    """This thread's scratch array ``slot`` with ``size`` elements of ``dtype`` (contents undefined)."""
    cache: dict[str, np.ndarray] = _scratch.__dict__.setdefault("buffers", {})
    if _references(cache, slot) <= _UNREFERENCED:
        kept = cache[slot]
        if kept.dtype == dtype and kept.size >= size:
            return kept[:size]
    fresh = np.empty(size, dtype)
    if fresh.nbytes <= _KEEP_BYTES:
        cache[slot] = fresh
    else:
        cache.pop(slot, None)
    return fresh


def _draw_tables(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Scratch for :func:`_sorted_uniforms`: float64 spacings and a bucket table of ``size`` entries (int32 when
    it fits, half the memory traffic of int64)."""
    return _buffer("spacings", size, np.float64), _buffer("start", size, np.int32 if size < 2**31 else np.int64)


@_jit
def _weights(log_w: Any, top: Any, w: Any, sums: Any) -> None:
    for r in range(log_w.shape[0]):
        shift = top[r]
        total = 0.0
        for i in range(log_w.shape[1]):
            v = math.exp(np.float64(log_w[r, i]) - shift)
            w[r, i] = v
            total += v
        sums[r] = total


def weights(log_w: np.ndarray, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``exp(log_w - top)`` per row in one pass, in float64 whatever the input's precision, and the row sums.

    The subtraction is the reference's, done in float64 after an exact widening; the exponential is the C
    library's ``exp`` (numba's ``math.exp``), the function numpy calls for float64 on CPUs without AVX-512,
    where the two paths then agree bit for bit. numpy's AVX-512 ``exp`` can differ from it in the last bit,
    and an ancestor then differs only if a cumulative boundary falls inside that bit.

    Parameters
    ----------
    log_w : float32 or float64 array, shape (rows, n)
    top : float64 array, shape (rows,)
        The row maxima (finite).

    Returns
    -------
    w : float64 array, shape (rows, n)
    sums : float64 array, shape (rows,)
        Left-to-right row sums of ``w`` (the last entries of its cumulative sums).
    """
    w = _buffer("weights", log_w.size, np.float64).reshape(log_w.shape)
    sums = np.empty(log_w.shape[0], np.float64)
    _weights(log_w, top, w, sums)
    return w, sums


# -- the schemes -----------------------------------------------------------------------------------------------
# Each scheme is a jitted kernel writing into buffers that numpy allocates: numpy asks the kernel for huge pages
# on large arrays, so first-touch page faults cost ~1 ns per int64 instead of the ~7 ns of numba's allocator.
# Kernels that draw take the RNG's numpy Generator and hold its lock while they run (numba's Generator methods
# consume the bit generator's stream as numpy's do, without taking the lock themselves).
@_jit
def _systematic(w: Any, sums: Any, u: Any, out: Any) -> None:
    rows, n = w.shape
    n_out = out.shape[1]
    for r in range(rows):
        row = w[r]
        hist = out[r]
        scale = (n_out / sums[r]) * _ROUND_UP
        offset = u[r, 0]
        s = 0.0
        for i in range(n):
            s += row[i]
            _record(hist, min(int(s * scale + offset), n_out), i)
        _running_max(hist)


def systematic(w: np.ndarray, sums: np.ndarray, u: np.ndarray, n_out: int) -> np.ndarray:
    """Systematic ancestors (see :class:`smckit.resamplers.Systematic`).

    Parameters
    ----------
    w : float64 array, shape (rows, n)
    sums : float64 array, shape (rows,)
        Left-to-right row sums of ``w``.
    u : float64 array, shape (rows, 1)
    n_out : int

    Returns
    -------
    int64 array, shape (rows, n_out)
    """
    out = np.zeros((w.shape[0], n_out), np.int64)
    _systematic(w, sums, u, out)
    return out


@_jit
def _stratified(w: Any, sums: Any, u: Any, out: Any) -> None:
    rows, n = w.shape
    n_out = out.shape[1]
    top = float(n_out - 1)
    for r in range(rows):
        row = w[r]
        hist = out[r]
        scale = (n_out / sums[r]) * _ROUND_UP
        s = 0.0
        for i in range(n):
            s += row[i]
            x = s * scale
            m = int(min(math.floor(x), top))
            _record(hist, m + (1 if u[r, m] < x - m else 0), i)
        _running_max(hist)


def stratified(w: np.ndarray, sums: np.ndarray, u: np.ndarray, n_out: int) -> np.ndarray:
    """Stratified ancestors (see :class:`smckit.resamplers.Stratified`).

    Parameters
    ----------
    w : float64 array, shape (rows, n)
    sums : float64 array, shape (rows,)
        Left-to-right row sums of ``w``.
    u : float64 array, shape (rows, n_out)
        One uniform per stratum.
    n_out : int

    Returns
    -------
    int64 array, shape (rows, n_out)
    """
    out = np.zeros((w.shape[0], n_out), np.int64)
    _stratified(w, sums, u, out)
    return out


@_jit
def _multinomial(w: Any, sums: Any, gen: Any, spacings: Any, start: Any, out: Any) -> None:
    n_out = out.shape[1]
    for r in range(w.shape[0]):
        norm = _exponentials(gen, spacings, n_out + 1, n_out)
        _sorted_uniforms(spacings, n_out, norm, start)
        _add_multinomial_counts(w[r], sums[r], spacings, start, n_out, out[r])
        _running_max(out[r])


def multinomial(w: np.ndarray, sums: np.ndarray, gen: np.random.Generator, n_out: int) -> np.ndarray:
    """Multinomial ancestors (see :class:`smckit.resamplers.Multinomial`).

    Parameters
    ----------
    w : float64 array, shape (rows, n)
    sums : float64 array, shape (rows,)
        Left-to-right row sums of ``w``.
    gen : numpy.random.Generator
        Gives ``n_out + 1`` exponentials per row, as ``gen.standard_exponential((rows, n_out + 1))`` would.
    n_out : int

    Returns
    -------
    int64 array, shape (rows, n_out)
    """
    out = np.zeros((w.shape[0], n_out), np.int64)
    spacings, start = _draw_tables(n_out + 1)
    with gen.bit_generator.lock:
        _multinomial(w, sums, gen, spacings, start, out)
    return out


@_jit
def _residual_rest(w: Any, totals: Any, draws: int, rest: Any, frac_sums: Any) -> None:
    """Per row: the draws left after the floors of ``e_i = w_i * draws / total``, and the left-to-right sum of
    the fractional parts ``e_i - floor(e_i)``."""
    for r in range(w.shape[0]):
        to_expected = draws / totals[r]
        placed = 0
        total = 0.0
        for i in range(w.shape[1]):
            e = w[r, i] * to_expected
            f = math.floor(e)
            placed += int(f)
            total += e - f
        rest[r] = draws - placed
        frac_sums[r] = total


@_jit
def _residual(
    w: Any, totals: Any, rest: Any, frac_sums: Any, gen: Any, width: int, spacings: Any, start: Any, out: Any
) -> None:
    n_out = out.shape[1]
    for r in range(w.shape[0]):
        draws = rest[r]
        norm = _exponentials(gen, spacings, width, draws)
        _sorted_uniforms(spacings, draws, norm, start)
        # The floors and fractions again, from the weights (cheaper than storing them): the same operations.
        to_expected = n_out / totals[r]
        total = frac_sums[r]
        scale = (draws / (total if total > 0 else 1.0)) * _ROUND_UP
        placed = 0
        s = 0.0
        hist = out[r]
        for i in range(w.shape[1]):
            e = w[r, i] * to_expected
            f = math.floor(e)
            placed += int(f)
            s += e - f
            x = s * scale
            _record(hist, placed + (_count_below(spacings, start, draws, x) if x < draws else draws), i)
        _running_max(hist)


def residual(w: np.ndarray, totals: np.ndarray, gen: np.random.Generator, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Residual ancestors (see :class:`smckit.resamplers.Residual`).

    Parameters
    ----------
    w : float64 array, shape (rows, n)
    totals : float64 array, shape (rows,)
        The row sums of ``w`` as the reference computes them (numpy's pairwise sum).
    gen : numpy.random.Generator
        Gives ``max(rest) + 1`` exponentials per row, as the reference draws them.
    n_out : int

    Returns
    -------
    ancestors : int64 array, shape (rows, n_out)
    rest : int64 array, shape (rows, 1)
        The multinomial draws per row.
    """
    rows = w.shape[0]
    rest = np.empty(rows, np.int64)
    frac_sums = np.empty(rows, np.float64)
    _residual_rest(w, totals, n_out, rest, frac_sums)
    width = int(rest.max()) + 1 if rows else 1
    spacings, start = _draw_tables(width)
    out = np.zeros((rows, n_out), np.int64)
    with gen.bit_generator.lock:
        _residual(w, totals, rest, frac_sums, gen, width, spacings, start, out)
    return out, rest[:, None]


@_jit
def _survival(w: Any, gen: Any, killed: Any, deaths: Any) -> None:
    """Particle ``i`` dies unless ``U_i < w_i`` (``U_i`` uniform, drawn row after row)."""
    for r in range(w.shape[0]):
        dead = 0
        for i in range(w.shape[1]):
            k = gen.random() >= w[r, i]
            killed[r, i] = k
            dead += k
        deaths[r] = dead


@_jit
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
        norm = _exponentials(gen, spacings, width, dead)
        _sorted_uniforms(spacings, dead, norm, start)
        sorted_draws = draws[:dead]
        sorted_draws[:] = 0
        if divisors is None:
            _add_multinomial_counts(w[r], sums[r], spacings, start, dead, sorted_draws)
        else:
            _add_multinomial_counts(w[r], sums[r], spacings, start, dead, sorted_draws, divisors[r])
        _running_max(sorted_draws)
        _place(out[r], killed[r], sorted_draws, slots)


@_jit
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


def refill(
    w: np.ndarray,
    killed: np.ndarray,
    gen: np.random.Generator,
    *,
    divisors: np.ndarray | None = None,
    sums: np.ndarray | None = None,
    deaths: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Refilled ancestors (see :func:`smckit.resamplers.refill`).

    Parameters
    ----------
    w : float64 array, shape (rows, n)
    killed : bool array, shape (rows, n)
    gen : numpy.random.Generator
        Gives ``max(deaths) + 1`` exponentials per row, as the reference draws them.
    divisors : float64 array, shape (rows,), optional
        Draw from ``w / divisors[:, None]``, divided element by element as the reference divides (without
        storing the quotients).
    sums, deaths : arrays of shape (rows,), optional
        Left-to-right row sums of the weights drawn from and the number of killed slots per row, when the
        caller has them.

    Returns
    -------
    ancestors : int64 array, shape (rows, n)
    deaths : int64 array, shape (rows, 1)
    """
    rows, n = w.shape
    if deaths is None:
        deaths = np.count_nonzero(killed, axis=-1).astype(np.int64)
    if sums is None:
        sums = np.empty(rows, np.float64)
        _row_sums(w, np.ones(rows) if divisors is None else divisors, sums)
    width = int(deaths.max()) + 1 if rows else 1
    spacings, start = _draw_tables(width)
    draws, slots = _buffer("draws", width, np.int64), _buffer("slots", width, np.int64)
    out = np.empty((rows, n), np.int64)
    with gen.bit_generator.lock:
        _refill(w, divisors, sums, killed, deaths, gen, width, spacings, start, draws, slots, out)
    return out, deaths[:, None]


@_jit
def _row_sums(w: Any, divisors: Any, sums: Any) -> None:
    """Left-to-right sums of ``w[r] / divisors[r]`` (a division by 1.0 is exact)."""
    for r in range(w.shape[0]):
        d = divisors[r]
        total = 0.0
        for i in range(w.shape[1]):
            total += w[r, i] / d
        sums[r] = total


@_jit
def _refill_checks(w: Any, killed: Any, tops: Any, deaths: Any) -> int:
    """One pass over the input of :func:`smckit.resamplers.refill`: each row's largest weight and number of
    killed slots; returns how many weights are not finite and non-negative."""
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
    """The checks of :func:`smckit.resamplers.refill` on host rows, in one pass.

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


def killing(w: np.ndarray, sums: np.ndarray, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Killing ancestors (see :class:`smckit.resamplers.Killing`): survival, then :func:`refill`.

    Parameters
    ----------
    w : float64 array, shape (rows, n)
        Weights relative to the row maximum.
    sums : float64 array, shape (rows,)
        Left-to-right row sums of ``w``.
    gen : numpy.random.Generator
        Gives ``rows * n`` uniforms, then ``max(deaths) + 1`` exponentials per row, as the reference draws them.

    Returns
    -------
    ancestors : int64 array, shape (rows, n)
    killed : bool array, shape (rows, n)
    deaths : int64 array, shape (rows, 1)
    """
    killed = np.empty(w.shape, np.bool_)
    deaths = np.empty(w.shape[0], np.int64)
    with gen.bit_generator.lock:
        _survival(w, gen, killed, deaths)
    ancestors, deaths_ = refill(w, killed, gen, sums=sums, deaths=deaths)
    return ancestors, killed, deaths_


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
            _record(hist, placed, i)
        _running_max(hist)
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
