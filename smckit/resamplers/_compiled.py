"""Kernel utilities: the numba switch, the jit decorator, scratch memory, and the helpers the kernels share.

Each compiled kernel sits beside the array-API code it reproduces (a scheme's kernel in the scheme's module, the
kit's kernels beside the kit function they accelerate). A kernel computes **the same floating-point operations
in the same order** as its reference and consumes the same random draws: arrays the caller draws, or draws made
inside the kernel from the RNG's numpy Generator, which numba's Generator support takes from the bit generator
exactly as numpy's methods do. For a given seed both paths return identical ancestors and leave the stream in
the same state; ``tests/test_compiled.py`` checks this bit for bit.

Cumulative counts become ancestors in a kernel by recording, for each count, the last particle that reaches it
(:func:`record`) and a running maximum (:func:`running_max`): ``a[k] = #{i : G_i <= k}``, with no
data-dependent branch. Every record is bounds-checked against the output width, so malformed counts cannot
write outside the output.

numba is optional (the ``fast`` extra, part of ``[all]``: ``pip install numba``) and imported here only; without it, or
with the environment variable ``SMCKIT_NUMBA=0``, or inside :func:`use_numba` with ``False``, the reference
path runs. Kernels are compiled on first use and cached on disk.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

numba: Any
try:  # pragma: no cover - exercised by whichever environment runs the tests
    import numba
except ImportError:  # pragma: no cover
    numba = None

__all__ = [
    "ROUND_UP",
    "available",
    "enabled",
    "use_numba",
    "jit",
    "record",
    "running_max",
    "buffer",
    "exponentials",
    "sorted_uniforms",
    "count_below_sorted",
    "record_multinomial_counts",
    "draw_tables",
]

ROUND_UP = 1.0 + 4.0 * 2.0**-52
"""The factor by which a scale ``N / total`` is rounded up: then ``fl(total * scale) >= N`` for every float64
total, since each of the two roundings (of the quotient and of the product) loses at most eps/2 relative."""

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


def jit(fn: Callable[..., Any]) -> Any:
    """``numba.njit`` with an on-disk cache and the GIL released; the plain function without numba."""
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(cache=True, nogil=True)(fn)


@jit
def record(last: Any, c: int, i: int) -> None:
    """Record that particle ``i`` has cumulative count ``c``: ``last[c] = i + 1`` (``last`` starts at zero; values
    outside its width fill no slot).

    Counts are non-decreasing, so the last particle to write slot ``c`` is the last one with ``G_i = c``, and
    after :func:`running_max` ``last[k] = #{i : G_i <= k}``. A plain store, where a histogram's increment would
    wait for the previous particle's increment of the same slot (runs of particles with equal counts are the
    rule: every particle with a small weight).
    """
    slot = np.uint64(c)  # a negative count wraps past the width: one comparison checks both bounds
    if slot < np.uint64(last.shape[0]):
        last[slot] = i + 1


@jit
def running_max(last: Any) -> None:
    """Turn the records of :func:`record` into ancestors in place: ``a[k] = max(last[0], ..., last[k])``.

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


def buffer(slot: str, size: int, dtype: Any) -> np.ndarray:
    """This thread's scratch array ``slot`` with ``size`` elements of ``dtype`` (contents undefined).

    Parameters
    ----------
    slot : str
        The kind of buffer (one kept per kind and thread).
    size : int
        The number of elements.
    dtype : numpy dtype

    Returns
    -------
    ndarray, shape (size,)
        The kept buffer (or a view of it) when nothing else refers to it and it is large enough, a fresh one
        otherwise.
    """
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


# -- the multinomial merge of kit.multinomial_cumulative_counts, one row at a time ------------------------------
@jit
def exponentials(gen: Any, spacings: Any, width: int, used: int) -> float:
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


@jit
def sorted_uniforms(spacings: Any, draws: int, norm: float, start: Any) -> None:
    """Turn exponential spacings into ``draws`` sorted uniforms on [0, draws), in place, and bucket them.

    Mirrors :func:`smckit.resamplers.kit.multinomial_cumulative_counts`: ``u_k = P_k * draws / P_draws`` with
    ``P_k = E_0 + ... + E_k`` and ``norm = P_draws``. ``spacings[draws]`` becomes ``+inf``, a sentinel above every
    position. ``start[b]`` (``draws + 1`` entries) becomes the number of uniforms in the unit
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
        record(start, min(int(u), draws - 1) + 1, k)
    spacings[draws] = np.inf
    running_max(start[: draws + 1])


@jit
def count_below_sorted(uniforms: Any, start: Any, draws: int, x: float) -> int:
    """``#{k : u_k < x}`` for a position ``x`` in [0, draws), from :func:`sorted_uniforms`' output.

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


@jit
def record_multinomial_counts(
    weights: Any, total: float, uniforms: Any, start: Any, draws: int, hist: Any, divisor: Any = None
) -> None:
    """Record each particle's cumulative count ``G_i = #{k : u_k < x_i}`` (``draws`` for ``x_i >= draws``) in
    ``hist``, where ``x_i`` are the cumulative weights ``weights / divisor`` (``divisor`` None: ``weights``;
    their sum is ``total``) scaled to ``draws`` as the reference scales them."""
    if not total > 0:
        total = 1.0
    scale = (draws / total) * ROUND_UP
    s = 0.0
    for i in range(weights.shape[0]):
        if divisor is None:  # (settled at compile time: numba compiles a version per argument type)
            s += weights[i]
        else:
            s += weights[i] / divisor
        x = s * scale
        # also a NaN position (never from validated input): no bucket lookup with it
        record(hist, count_below_sorted(uniforms, start, draws, x) if x < draws else draws, i)


def draw_tables(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Scratch for :func:`sorted_uniforms`: float64 spacings and a bucket table of ``size`` entries (int32 when
    it fits, half the memory traffic of int64)."""
    return buffer("spacings", size, np.float64), buffer("start", size, np.int32 if size < 2**31 else np.int64)
