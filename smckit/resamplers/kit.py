"""The resampler kit: the building blocks of smckit's own schemes, for plugin authors.

Every built-in scheme is :class:`Scheme`'s skeleton, ``prepare -> counts -> ancestors -> result``, filled in
with the functions below; a third-party scheme can be written the same way (or take only the pieces it needs,
as the Fleming-Viot plugin does). Each function runs on numpy and torch, on any device, and where a compiled
kernel exists (numba, host memory) it is chosen behind the same call.

Input and rows
    :func:`check_input` (type, shape, dtype, ``n_out``), :func:`row_max` (the row maxima, which validate the
    values on the host for free: NaN, ``+inf`` and all ``-inf`` rows raise through :mod:`smckit.weights`),
    :func:`shift` (``l - max l`` per row), :func:`exp_` (in place), :func:`float32_or_wider` (half precision
    widened), :func:`uniform` (draws from the numpy stream for any host array), and :func:`prepare`, which does
    all of it at once and returns a :class:`Prepared`: the weights ``exp(l - max l)`` as float64 rows
    ``(rows, n)``, whatever the input's dtype (float16 and bfloat16 included), batch shape and backend.
Cumulative counts
    :func:`scaled_positions`, :func:`guard_cumulative`, :func:`multinomial_cumulative_counts`,
    :func:`ancestors_from_cumulative`, :func:`expand`, :func:`count_below` and the small helpers
    :func:`quotient`, :func:`cummax`, :func:`take_along`, :func:`put_along`.
Killing and refilling
    :func:`refill` (public arrays) and :func:`refill_rows` (prepared rows).

**The cumulative-count form.** With ``w_i`` the weights of one row (relative to the row's maximum),
``S_i = w_0 + ... + w_i`` their cumulative sums and ``x_i = S_i * N / S_{n-1}`` the cumulative sums scaled to the
number of draws ``N``, a scheme defines a non-decreasing integer function ``G`` with ``G(0) = 0`` and
``G(x) = N`` for ``x >= N``; particle ``i`` gets ``count_i = G(x_i) - G(x_{i-1})`` offspring, and the ancestors
are the particle indices repeated by their counts. This form gives the exact properties the conformance kit
checks by construction rather than by luck:

- a zero weight adds exactly ``0.0`` to the cumulative sum, so ``x_i == x_{i-1}`` bit for bit and the particle
  gets no offspring (on any backend whose cumulative sum runs sequentially: numpy, torch on the CPU; the
  parallel scans of accelerators get the explicit guard of :func:`guard_cumulative`);
- the scale ``N / S_{n-1}`` is rounded up by a few ulps (:func:`scaled_positions`) so that the last position is
  at least ``N``: the round-off at the top of the cumulative sum can never leave a draw unassigned, and the
  particles after the last positive weight share the last position, so they get nothing either;
- the counts of a row sum to ``N`` exactly, so expanding them (:func:`ancestors_from_cumulative`) gives exactly
  ``N`` indices, all in range.

Weights and cumulative sums are float64 whatever the input dtype (float32 cumulative sums are biased from a few
hundred thousand particles on). Nothing here loops over particles in Python: the loops that remain run over the
occupancy of one bucket (:func:`count_below` on the host, about ``log N / log log N`` at most, on a shrinking
set) or over the levels of a tree (SSP).

**Compiled kernels.** :class:`Prepared` says whether a kernel should run (``prep.compiled``: host memory, numba
installed and enabled; :func:`smckit.resamplers.use_numba`, ``SMCKIT_NUMBA=0``). A scheme's kernel must make the
same draws and the same floating-point operations in the same order as its reference, so that both return the
same ancestors bit for bit; the built-ins keep each kernel beside its reference, in the scheme's module.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from smckit.backend import Array
from smckit.resamplers._cumulative import (
    ancestors_from_cumulative,
    count_below,
    cummax,
    expand,
    guard_cumulative,
    multinomial_cumulative_counts,
    put_along,
    quotient,
    scaled_positions,
    take_along,
)
from smckit.resamplers._refill import refill, refill_rows
from smckit.resamplers._rows import (
    Outcome,
    Prepared,
    check_input,
    exp_,
    float32_or_wider,
    float64_rows,
    prepare,
    row_max,
    shift,
    uniform,
)
from smckit.resamplers.base import Capabilities, Resampled

__all__ = [
    "Scheme",
    "Outcome",
    "Prepared",
    "prepare",
    "check_input",
    "row_max",
    "shift",
    "exp_",
    "float32_or_wider",
    "float64_rows",
    "uniform",
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
    "refill",
    "refill_rows",
]


class Scheme:
    """The skeleton of a resampling scheme: ``prepare -> counts -> ancestors -> result``.

    Calling a scheme validates and prepares the log-weights (:func:`prepare`), runs :meth:`compiled` on host rows
    when the kernels are enabled and :meth:`reference` otherwise, and shapes the :class:`Outcome` into a
    :class:`~smckit.Resampled` with zero output log-weights in the input's dtype (:meth:`Prepared.result`). A
    subclass sets ``name`` and ``capabilities`` and implements :meth:`reference`; a scheme with a kernel also
    overrides :meth:`compiled`, which must return the same outcome bit for bit.

    Attributes
    ----------
    name : str
        The scheme's name (for messages and the registry).
    capabilities : Capabilities
        What the scheme guarantees; ``variable_size`` decides whether ``n_out != n`` is accepted.
    rebirth_noise : float
        0: the standard schemes mark no particle as reborn.

    Examples
    --------
    Systematic resampling with a fixed offset of one half, from cumulative counts (deterministic, so not
    unbiased, but its counts are floor or ceil of ``N W_i``):

    >>> import numpy as np
    >>> from smckit import Capabilities
    >>> from smckit.resamplers import kit
    >>> class Rounded(kit.Scheme):
    ...     name = "rounded"
    ...     capabilities = Capabilities(unbiased=False, count_bounds="floor_ceil")
    ...
    ...     def reference(self, prep):
    ...         xp, N = prep.xp, prep.n_out
    ...         cumsum = prep.cumsum(prep.w)
    ...         x = kit.scaled_positions(prep, cumsum, cumsum[:, -1:], N)
    ...         cum = xp.minimum(xp.astype(x + 0.5, xp.int64), N)  # G(x) = floor(x + 1/2)
    ...         cum = kit.guard_cumulative(prep, cum, prep.w, N)
    ...         return kit.Outcome(kit.ancestors_from_cumulative(prep, cum, N))
    >>> Rounded()(np.log(np.array([0.1, 0.6, 0.3])), 0).ancestors.tolist()
    [1, 1, 2]
    """

    name: ClassVar[str] = "scheme"
    capabilities: ClassVar[Capabilities] = Capabilities()
    rebirth_noise: ClassVar[float] = 0.0

    def __call__(self, log_weights: Array, rng: Any, *, n_out: int | None = None) -> Resampled:
        """Resample from unnormalised log-weights.

        Parameters
        ----------
        log_weights : float array, shape (*batch, n)
            numpy or torch, any floating dtype (float16 and bfloat16 included); ``-inf`` is a weight of zero.
        rng : RNG or seed
            The random source (an int or a SeedSequence is accepted).
        n_out : int, optional
            Draws per row (default ``n``); schemes that keep the population size accept only ``n``.

        Returns
        -------
        Resampled
            ``ancestors`` int64 of shape ``(*batch, n_out)``; ``log_weights`` zeros of the input's dtype (every
            floating dtype holds 0 exactly); ``reborn`` and ``info`` as the scheme documents.

        Raises
        ------
        InvalidArgumentError, ShapeError
            See :func:`check_input`.
        InvalidWeightsError, ExtinctionError
            On the host, for NaN or ``+inf`` log-weights or a row of ``-inf`` (see :func:`row_max`).
        """
        prep = prepare(log_weights, rng, n_out, name=self.name, variable_size=self.capabilities.variable_size)
        return prep.result(self.compiled(prep) if prep.compiled else self.reference(prep))

    def reference(self, prep: Prepared) -> Outcome:
        """The array-API implementation on prepared rows (every backend and device); returns shape (rows, n_out)
        ancestors in an :class:`Outcome`."""
        raise NotImplementedError(f"{type(self).__name__} must implement reference(prep)")

    def compiled(self, prep: Prepared) -> Outcome:
        """The compiled implementation on host rows (numpy arrays); returns shape (rows, n_out) ancestors in an
        :class:`Outcome`, the reference's bit for bit. Without a kernel of its own, a scheme runs its reference."""
        return self.reference(prep)

    def __repr__(self) -> str:
        """One line: the class, the scheme's name and the options given to ``__init__`` that differ from their
        defaults (read from attributes of the same name, or with a leading underscore), e.g.
        ``Systematic(name='systematic')``."""
        init = type(self).__init__
        options = [f"name={self.name!r}"]
        if init is not object.__init__:
            for p in list(inspect.signature(init).parameters.values())[1:]:
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    continue
                missing = object()
                value = getattr(self, p.name, getattr(self, "_" + p.name, missing))
                if value is not missing and (p.default is p.empty or not _same(value, p.default)):
                    options.append(f"{p.name}={_short(value)}")
        return f"{type(self).__name__}({', '.join(options)})"


def _short(value: Any) -> str:
    """``repr(value)``, or ``<type shape=...>`` when that would span lines or run long (arrays, tensors)."""
    text = repr(value)
    if "\n" not in text and len(text) <= 60:
        return text
    shape = getattr(value, "shape", None)
    return f"<{type(value).__name__}{'' if shape is None else f' shape={tuple(shape)}'}>"


def _same(value: Any, default: Any) -> bool:
    """Whether an option still has its default (a comparison that cannot raise or return an array)."""
    try:
        return bool(value is default or value == default)
    except Exception:  # e.g. arrays, whose == is elementwise
        return False
