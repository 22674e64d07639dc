"""Row preparation: input validation, the row shift and exponentiation, and the float64 rows every scheme reads.

Public through :mod:`smckit.resamplers.kit`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from smckit.backend import Array, describe, device_of, is_floating, is_numpy, is_torch, namespace, to_host
from smckit.errors import InvalidArgumentError, ShapeError
from smckit.random import RNG, as_rng
from smckit.resamplers import _compiled
from smckit.resamplers.base import Resampled
from smckit.weights import check_finite_or_minus_inf, check_not_extinct

__all__ = [
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
]

_HALF = ("float16", "bfloat16", "torch.float16", "torch.bfloat16")


class Outcome(NamedTuple):
    """What a scheme's counting step returns, per row; :meth:`Prepared.result` shapes it into a :class:`Resampled`.

    Attributes
    ----------
    ancestors : int64 array, shape (rows, n_out)
    reborn : bool array of shape (rows, n_out), or None
        The refilled slots, for schemes that kill and refill.
    info : dict
        Per-row diagnostics, each of shape ``(rows,)`` or ``(rows, 1)``; they come back with shape ``(*batch,)``.
    """

    ancestors: Array
    reborn: Array | None = None
    info: Mapping[str, Any] = MappingProxyType({})


@dataclass
class Prepared:
    """Validated log-weights as float64 weight rows, and what a scheme needs to resample them.

    Attributes
    ----------
    xp : module
        The array namespace (array_api_compat) the scheme runs in: the input's, or numpy for a CPU tensor when
        ``compiled`` (through a zero-copy view).
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
        cumulative sums bit for bit. ``False`` on accelerators, whose parallel scans need
        :func:`~smckit.resamplers.kit.guard_cumulative`.
    rng : RNG
        The random source.
    compiled : bool
        Whether the scheme should run its compiled kernel: the arrays are in host memory and numba is installed
        and enabled. ``xp`` is then numpy, also for a CPU tensor input.
    torch_output : bool
        Whether a CPU tensor input is being resampled through a numpy view: :meth:`result` and :meth:`output`
        hand the outputs back as tensors.
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
    sums: Any = field(default=None)

    def uniform(self, shape: tuple[int, ...]) -> Array:
        """Float64 uniforms on [0, 1) next to the weights, shape ``shape`` (see :func:`uniform`)."""
        return uniform(self.rng, shape, like=self.w)

    def exponential(self, shape: tuple[int, ...]) -> Array:
        """Float64 standard exponentials next to the weights, shape ``shape`` (numpy's ziggurat on the host, as
        :meth:`uniform`; ``-log1p(-U)`` on an accelerator)."""
        if self.sequential_scan:
            return _as_type_of(self.w, self.rng.exponential(shape))
        return -self.xp.log1p(-self.uniform(shape))

    def arange(self, n: int) -> Array:
        """``arange(n)`` as int64 on the rows' device, shape (1, n)."""
        return self.xp.reshape(self.xp.arange(n, dtype=self.xp.int64, device=self.device), (1, n))

    def cumsum(self, w: Array) -> Array:
        """Cumulative sums along the particle axis, shape of ``w`` (float64)."""
        return self.xp.cumulative_sum(w, axis=-1)

    def most(self, counts: Array, bound: int) -> int:
        """How many draws to make for per-row ``counts`` (shape (rows, 1)): their maximum on the host, the static
        ``bound`` on an accelerator (whose random stream must not depend on the weights, to avoid a
        synchronisation)."""
        if not self.sequential_scan:
            return bound
        return int(self.xp.max(counts)) if self.rows else 0

    def output(self, x: Array, shape: tuple[int, ...] | None = None) -> Array:
        """An output array: ``x`` reshaped to ``shape`` (default ``(*batch, n_out)``), as a tensor for a tensor
        input."""
        x = self.xp.reshape(x, (*self.batch, self.n_out) if shape is None else shape)
        if self.torch_output and isinstance(x, np.ndarray):
            import torch

            return torch.from_numpy(x)
        return x

    def result(self, outcome: Outcome) -> Resampled:
        """The :class:`~smckit.Resampled` of an :class:`Outcome`: outputs shaped ``(*batch, n_out)``, equal (zero)
        output log-weights in the input's dtype, info values shaped ``(*batch,)``."""
        if self.torch_output:
            log_weights = _host_zeros((*self.batch, self.n_out), self.dtype)
        else:
            log_weights = self.xp.zeros((*self.batch, self.n_out), dtype=self.dtype, device=self.device)
        info = {k: self.output(v, self.batch) for k, v in outcome.info.items()}
        reborn = None if outcome.reborn is None else self.output(outcome.reborn)
        return Resampled(self.output(outcome.ancestors), log_weights, reborn, info)


def check_input(log_weights: Any, n_out: Any, *, name: str, variable_size: bool) -> tuple[Array, int]:
    """Check what a resampler was given, before reading any value.

    Parameters
    ----------
    log_weights : float array, shape (*batch, n)
        Unnormalised log-weights, a numpy array or a torch tensor (any floating dtype, half precision included).
    n_out : int or None
        The number of draws per row (``None``: ``n``).
    name : str
        The scheme's name, for messages.
    variable_size : bool
        Whether the scheme allows ``n_out != n``.

    Returns
    -------
    log_weights : float array, shape (*batch, n)
        The input, detached from autograd.
    n_out : int

    Raises
    ------
    InvalidArgumentError
        For an input that is not a numpy array or torch tensor, a non-floating dtype, or a bad ``n_out``.
    ShapeError
        For an input without a particle axis, or with zero particles.
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
    return log_weights, _check_n_out(n_out, int(log_weights.shape[-1]), name=name, variable_size=variable_size)


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


def row_max(log_weights: Array, *, name: str) -> Array:
    """Each row's largest log-weight, validating the row on the host for free.

    A row holds NaN or ``+inf`` exactly when its maximum is NaN or ``+inf`` (both propagate through ``max``), and
    only ``-inf`` when its maximum is ``-inf``; so one reduction finds every bad row, and the full scan that
    counts and words the problem (:mod:`smckit.weights`) runs only then. On an accelerator the check would wait
    for the device and is skipped (the engine validates the weights it passes).

    Parameters
    ----------
    log_weights : float array, shape (*batch, n)
    name : str
        The scheme's name, for messages.

    Returns
    -------
    array, shape (*batch, 1)
        On the input's backend, device and dtype.

    Raises
    ------
    InvalidWeightsError
        On the host, for NaN or ``+inf`` log-weights.
    ExtinctionError
        On the host, for a row whose log-weights are all ``-inf``.
    """
    xp = namespace(log_weights)
    top = xp.max(log_weights, axis=-1, keepdims=True)
    if str(device_of(log_weights)) == "cpu":
        _validate(to_host(top), log_weights, name)
    return top


def _validate(top: np.ndarray, log_weights: Array, name: str) -> None:
    """Raise, worded by :mod:`smckit.weights`, when a row maximum ``top`` is not finite."""
    if np.isfinite(top).all():
        return
    check_finite_or_minus_inf(log_weights, step=None, what=f"the log-weights given to the {name!r} resampler")
    check_not_extinct(log_weights, step=None, what=f"the log-weights given to the {name!r} resampler")


def shift(log_weights: Array, *, name: str) -> Array:
    """``l - max(l)`` per row: the largest log-weight of each row becomes 0 (shift invariance, and no overflow in
    ``exp``).

    Parameters
    ----------
    log_weights : float array, shape (*batch, n)
    name : str
        The scheme's name, for messages.

    Returns
    -------
    array, shape (*batch, n)
        A new array of the input's backend, device and dtype; ``-inf`` stays ``-inf``. On an accelerator, where
        nothing is validated, a row without a finite maximum is left unshifted.

    Raises
    ------
    InvalidWeightsError, ExtinctionError
        On the host, as :func:`row_max`.
    """
    xp = namespace(log_weights)
    top = row_max(log_weights, name=name)
    if str(device_of(log_weights)) != "cpu":
        top = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    return log_weights - top


def exp_(x: Array) -> Array:
    """``exp(x)`` written over ``x`` (a temporary of the caller: numpy array or torch tensor), which it returns.

    Parameters
    ----------
    x : float array, any shape

    Returns
    -------
    array, ``x`` itself
    """
    if is_torch(x):
        return x.exp_()
    return np.exp(x, out=x)


def float32_or_wider(x: Array) -> Array:
    """``x`` widened to float32 when it is float16 or bfloat16 (exact), ``x`` itself otherwise.

    Half precision holds log-weights, not sums of weights: 70,000 equal weights summed in float16 overflow.

    Parameters
    ----------
    x : float array, any shape

    Returns
    -------
    array, the shape of ``x``
    """
    if str(x.dtype) not in _HALF:
        return x
    xp = namespace(x)
    return xp.astype(x, xp.float32)


def uniform(rng: RNG, shape: tuple[int, ...], *, like: Array) -> Array:
    """Uniforms on [0, 1) for an array ``like``: from the numpy stream for any array in host memory.

    On the host the draws come from the RNG's numpy Generator whatever the array library (torch's CPU generator
    is several times slower for float64), so a numpy array and a CPU tensor holding the same values consume the
    same draws; an accelerator draws from its own torch generator.

    Parameters
    ----------
    rng : RNG
    shape : tuple of int
    like : float array
        Backend, device and dtype of the draws (float32 stays float32; other dtypes give float64 on the host,
        float32 for half precision on an accelerator).

    Returns
    -------
    array, shape ``shape``
    """
    if str(device_of(like)) == "cpu":
        dtype = np.float32 if str(like.dtype) in ("float32", "torch.float32") else np.float64
        return _as_type_of(like, rng.uniform(shape, dtype=dtype))
    if str(like.dtype) in _HALF:
        import torch

        return rng.uniform(shape, like=like, dtype=torch.float32)
    return rng.uniform(shape, like=like)


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


def prepare(log_weights: Any, rng: Any, n_out: Any, *, name: str, variable_size: bool) -> Prepared:
    """Validate a resampler's input and compute the float64 weights relative to each row's maximum.

    Parameters
    ----------
    log_weights : float array, shape (*batch, n)
        Unnormalised log-weights (numpy or torch, any floating dtype); ``-inf`` is a weight of zero.
    rng : RNG or seed
        The random source (an int or a SeedSequence is turned into an :class:`~smckit.random.RNG`).
    n_out : int or None
        The number of draws per row (``None``: ``n``).
    name : str
        The scheme's name, for messages.
    variable_size : bool
        Whether the scheme allows ``n_out != n``.

    Returns
    -------
    Prepared
        With the weights ``w`` of shape (rows, n); on the compiled path also their row sums.

    Raises
    ------
    InvalidArgumentError, ShapeError
        See :func:`check_input`.
    InvalidWeightsError, ExtinctionError
        See :func:`row_max`.

    Notes
    -----
    On an accelerator the value checks would stall the device, so they are skipped there (the engine validates
    the weights it passes); a row with NaN, ``+inf`` or only ``-inf`` is then resampled as if its weights were
    equal, so the indices stay in range whatever the input.
    """
    log_weights, n_out = check_input(log_weights, n_out, name=name, variable_size=variable_size)
    n = int(log_weights.shape[-1])
    batch = tuple(int(s) for s in log_weights.shape[:-1])
    rows = math.prod(batch)
    xp, lw, device, sequential, compiled, torch_output = float64_rows(log_weights, native=True)
    rng = as_rng(rng)
    common = (xp, batch, rows, n, n_out, log_weights.dtype, device)
    top = xp.max(lw, axis=-1, keepdims=True)
    if sequential:
        top_host = to_host(top, np.float64)[:, 0]
        _validate(top_host, xp.reshape(lw, (*batch, n)), name)
        if compiled:
            w, sums = weights(lw, top_host)
            return Prepared(*common, w, sequential, rng, compiled, torch_output, sums)
        w = exp_(lw - top)
    else:
        ok = xp.isfinite(top)
        w = exp_(lw - xp.where(ok, top, xp.zeros_like(top)))
        w = xp.where(ok & ~xp.isnan(w), w, xp.ones_like(w))
    return Prepared(*common, w, sequential, rng, compiled, torch_output)


# -- the compiled path of prepare: shift, exponentiation and row sums in one pass ------------------------------
@_compiled.jit
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
    library's ``exp`` (numba's), the function numpy calls for float64 on CPUs without AVX-512, where the two
    paths then agree bit for bit. numpy's AVX-512 ``exp`` can differ from it in the last bit, and an ancestor
    then differs only if a cumulative boundary falls inside that bit.

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
    w = _compiled.buffer("weights", log_w.size, np.float64).reshape(log_w.shape)
    sums = np.empty(log_w.shape[0], np.float64)
    _weights(log_w, top, w, sums)
    return w, sums


def _as_type_of(like: Array, draws: np.ndarray) -> Array:
    """Host draws as the array type of ``like`` (a zero-copy tensor for a CPU tensor)."""
    if is_torch(like):
        import torch

        return torch.from_numpy(draws)
    return draws


def _host_zeros(shape: tuple[int, ...], dtype: Any) -> Array:
    """A CPU tensor of zeros over numpy's lazily zeroed memory: torch.zeros writes every page, which costs more
    than the compiled resampling itself at large n."""
    import torch

    host = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}.get(dtype)
    if host is None:
        return torch.zeros(shape, dtype=dtype)
    return torch.from_numpy(np.zeros(shape, dtype=host))
