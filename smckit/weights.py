"""Log-space weight arithmetic: normalisation, effective sample size, log-mean-exp, validation.

All functions work along the last axis (the particle axis) of ``(*batch, n)`` arrays, on numpy or torch,
and never leave log space: a weight of zero is ``-inf``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from smckit.backend import Array, is_torch, namespace, to_host
from smckit.errors import BackendError, ExtinctionError, InvalidWeightsError

__all__ = [
    "logsumexp",
    "log_mean_exp",
    "log_normalise",
    "normalise",
    "ess",
    "reweigh",
    "Weighted",
    "weigh",
    "weight_dtype",
    "validate",
    "check_finite_or_minus_inf",
    "extinct_rows",
    "check_not_extinct",
]


def _shift(log_w: Array) -> tuple[Array, Array]:
    """``(log_w - m, m)`` with ``m`` the row maximum (0 for rows without a finite maximum), keepdims.

    Every quantity below is computed from ``log_w - m``, which an exact shift of ``log_w`` leaves unchanged:
    that makes normalised weights and ESS shift-invariant bit for bit, also in float32.
    """
    xp = namespace(log_w)
    m = xp.max(log_w, axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    return log_w - m, m


def logsumexp(log_w: Array, axis: int = -1) -> Array:
    """``log(sum(exp(log_w)))`` along ``axis``, stable for large magnitudes.

    A slice whose entries are all ``-inf`` gives ``-inf`` (not NaN, and without a numpy warning).

    Parameters
    ----------
    log_w : array, shape (*batch, n)
    axis : int

    Returns
    -------
    array, shape (*batch,)
    """
    xp = namespace(log_w)
    m = xp.max(log_w, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    with np.errstate(divide="ignore"):
        s = xp.sum(xp.exp(log_w - m), axis=axis, keepdims=True)
        return xp.squeeze(xp.log(s) + m, axis=axis)


def log_mean_exp(log_w: Array, axis: int = -1) -> Array:
    """``log(mean(exp(log_w)))`` along ``axis``.

    Parameters
    ----------
    log_w : array, shape (*batch, n)
    axis : int

    Returns
    -------
    array, shape (*batch,)
    """
    return logsumexp(log_w, axis=axis) - math.log(log_w.shape[axis])


def log_normalise(log_w: Array) -> Array:
    """Normalised log-weights: ``log_w - logsumexp(log_w)`` per row.

    Parameters
    ----------
    log_w : array, shape (*batch, n)

    Returns
    -------
    array, shape (*batch, n)
        Exactly invariant to a common shift of ``log_w``. Rows whose weights are all ``-inf`` come back as
        NaN; call :func:`check_not_extinct` first.
    """
    xp = namespace(log_w)
    shifted, _ = _shift(log_w)
    with np.errstate(divide="ignore", invalid="ignore"):
        return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def normalise(log_w: Array) -> Array:
    """Normalised weights ``W``, summing to one per row.

    Parameters
    ----------
    log_w : array, shape (*batch, n)

    Returns
    -------
    array, shape (*batch, n)
    """
    xp = namespace(log_w)
    return xp.exp(log_normalise(log_w))


def ess(log_w: Array) -> Array:
    """Effective sample size ``1 / sum(W**2)`` per row, from unnormalised log-weights.

    Parameters
    ----------
    log_w : array, shape (*batch, n)

    Returns
    -------
    array, shape (*batch,)
        Between 1 and n for rows with at least one finite weight.
    """
    xp = namespace(log_w)
    scaled = xp.exp(_shift(log_w)[0])
    total = xp.sum(scaled, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return total * total / xp.sum(scaled * scaled, axis=-1)


class Weighted(NamedTuple):
    """Weights after one reweighting: what :func:`weigh` (and a population's ``reweigh``) returns.

    Attributes
    ----------
    log_z : array, shape (*batch,)
        ``log sum exp`` of the unnormalised log-weights (over the whole population): with normalised incoming
        weights, the log-evidence increment. Non-finite in a bad row.
    log_w : array, shape (*batch, n)
        The normalised log-weights (meaningless in a bad row).
    ess : array, shape (*batch,)
        The effective sample size ``(sum w)^2 / sum w^2``.
    bad : boolean array, shape (*batch,)
        Rows whose weights hold NaN or +inf or are all zero; it stays on the device, so that the caller can
        check it without stalling an accelerator (:func:`validate` words the error).
    """

    log_z: Array
    log_w: Array
    ess: Array
    bad: Array


def weigh(log_w: Array) -> Weighted:
    """Normalise unnormalised log-weights and summarise them, in one pass: one ``exp`` per weight.

    The few operations run directly on numpy or torch (this is the engine's per-step hot path); any other
    array-API library goes through the generic namespace.

    Parameters
    ----------
    log_w : array, shape (*batch, n)
        Float32 or wider (see :func:`weight_dtype`).

    Returns
    -------
    Weighted
        Exactly invariant to a common shift of a row of ``log_w``.
    """
    if type(log_w) is np.ndarray:
        m = np.maximum.reduce(log_w, axis=-1, keepdims=True)
        if np.isfinite(m).all():  # no NaN, no +inf, no empty row: nothing below can warn, no row is bad
            return _weigh_numpy(log_w, m, np.zeros(m.shape[:-1], dtype=bool))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return _weigh_numpy(log_w, np.where(np.isfinite(m), m, 0.0), None)
    if is_torch(log_w):
        m = log_w.amax(dim=-1, keepdim=True).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
        shifted = log_w - m
        w = shifted.exp()
        total = w.sum(dim=-1, keepdim=True)
        log_total = total.log()
        log_z = (log_total + m).squeeze(-1)
        ess_value = (total.squeeze(-1) / torch_norm(w)).square()
        # x - x is NaN exactly for NaN and +-inf: two kernels, where isfinite takes five.
        return Weighted(log_z, shifted.sub_(log_total), ess_value, (log_z - log_z).isnan())
    xp = namespace(log_w)
    m = xp.max(log_w, axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    shifted = log_w - m
    w = xp.exp(shifted)
    total = xp.sum(w, axis=-1, keepdims=True)
    log_total = xp.log(total)
    log_z = xp.squeeze(log_total + m, axis=-1)
    total = xp.squeeze(total, axis=-1)
    ess_value = total * total / xp.sum(w * w, axis=-1)
    return Weighted(log_z, shifted - log_total, ess_value, ~xp.isfinite(log_z))


def torch_norm(w: Array) -> Array:
    """The Euclidean norm of each row of a tensor (one kernel)."""
    import torch

    return torch.linalg.vector_norm(w, dim=-1)


def _weigh_numpy(log_w: np.ndarray, m: np.ndarray, bad: np.ndarray | None) -> Weighted:
    """The numpy path of :func:`weigh`, with ufunc methods (numpy's function wrappers cost microseconds).

    Every operation allocates its result: reusing a buffer in place measured slower at 1e5 weights (the
    allocator then keeps returning fresh pages), and a BLAS dot for the squares no faster.
    """
    shifted = log_w - m
    w = np.exp(shifted)
    total = np.add.reduce(w, axis=-1, keepdims=True)
    log_total = np.log(total)
    log_z = (log_total + m)[..., 0]
    ess_value = total[..., 0] ** 2 / np.add.reduce(w * w, axis=-1)
    return Weighted(log_z, shifted - log_total, ess_value, ~np.isfinite(log_z) if bad is None else bad)


def reweigh(log_w: Array) -> tuple[Array, Array, Array]:
    """``(log_z, log_normalised, ess)`` of unnormalised log-weights: :func:`weigh` without the flag.

    Parameters
    ----------
    log_w : array, shape (*batch, n)

    Returns
    -------
    log_z : array, shape (*batch,)
        ``logsumexp(log_w)`` per row (``-inf`` for a row whose weights are all zero).
    log_normalised : array, shape (*batch, n)
        ``log_w - log_z`` (NaN in extinct rows).
    ess : array, shape (*batch,)
        ``1 / sum(W**2)`` of the normalised weights.
    """
    out = weigh(log_w)
    return out.log_z, out.log_w, out.ess


_HALF = ("float16", "bfloat16")


def weight_dtype(log_potential: Array) -> Any:
    """The dtype in which a run keeps log-weights, ESS and increments, given its first log-potential.

    Half precision is widened to float32: float16 sums overflow at 65504 (70,000 equal weights sum to +inf)
    and numpy cannot hold bfloat16. Float32 and float64 are kept as they are.

    Parameters
    ----------
    log_potential : array, shape (*batch, n)

    Returns
    -------
    dtype
        Of the array's own library.

    Raises
    ------
    BackendError
        For a dtype that is not real floating point (integers, complex).
    """
    xp = namespace(log_potential)
    name = str(log_potential.dtype).rsplit(".", 1)[-1]
    if name in _HALF:
        return xp.float32
    if name not in ("float32", "float64"):
        raise BackendError(
            f"log-potentials must be real floating point (float16, bfloat16, float32 or float64), got {name}"
        )
    return log_potential.dtype


def validate(log_w: Array, *, step: int | None, what: str = "log-potential", result: object = None) -> None:
    """Raise the error that explains bad weights; return if every row is fine.

    The one wording of smckit's weight errors: NaN or +inf is an :class:`InvalidWeightsError`; a row whose
    weights are all zero is an :class:`ExtinctionError`. Both carry ``result``.

    Parameters
    ----------
    log_w : array, shape (*batch, n)
        The log-weights (or log-potentials) to explain.
    step : int
        The step, for the message.
    what : str
        Where the values came from, for the message.
    result : Result, optional
        The partial result to attach.

    Raises
    ------
    InvalidWeightsError, ExtinctionError
    """
    try:
        check_finite_or_minus_inf(log_w, step=step, what=what)
    except InvalidWeightsError as err:
        err.result = result
        raise
    check_not_extinct(log_w, step=step, result=result)


def check_finite_or_minus_inf(log_w: Array, *, step: int | None, what: str = "log-potential") -> None:
    """Raise :class:`InvalidWeightsError` if ``log_w`` holds NaN or ``+inf``.

    ``-inf`` is allowed: it is a weight of zero.

    Parameters
    ----------
    log_w : array, shape (*batch, n)
    step : int or None
        The step, for the message (``None`` outside a run, e.g. a resampler called directly).
    what : str
        Where the values came from, for the message.

    Raises
    ------
    InvalidWeightsError
        With the step, the count of bad values and the affected rows.
    """
    xp = namespace(log_w)
    if bool(xp.all(xp.isfinite(log_w))):  # the common case, one pass
        return
    bad = xp.isnan(log_w) | (log_w == float("inf"))
    count = int(xp.sum(xp.astype(bad, xp.int64)))
    if count:
        rows = _bad_rows(xp.any(bad, axis=-1))
        kind = "NaN or +inf"
        where = f" in batch rows {list(rows)[:5]}" if rows and rows[0] else ""
        raise InvalidWeightsError(
            f"{what}{_at(step)} has {count} {kind} value(s){where}; a log-potential must be a real "
            "number or -inf (weight zero). Check the code that computes them for overflow or 0*inf.",
            step=step,
            count=count,
            rows=rows,
        )


def extinct_rows(log_w: Array) -> Array:
    """Rows whose log-weights are all ``-inf`` (every weight zero).

    Parameters
    ----------
    log_w : array, shape (*batch, n)

    Returns
    -------
    boolean array, shape (*batch,)
    """
    xp = namespace(log_w)
    return xp.all(log_w == -float("inf"), axis=-1)


def check_not_extinct(log_w: Array, *, step: int | None, result: object = None, what: str | None = None) -> None:
    """Raise :class:`ExtinctionError` if any row has every log-weight equal to ``-inf``.

    Parameters
    ----------
    log_w : array, shape (*batch, n)
    step : int or None
        The step, for the message (``None`` outside a run).
    what : str, optional
        Where the weights came from, for the message (e.g. "the log-weights given to the 'ssp' resampler").
    result : Result, optional
        The partial result to attach to the error.

    Raises
    ------
    ExtinctionError
        Naming the step and the extinct rows, carrying ``result``.
    """
    xp = namespace(log_w)
    dead = extinct_rows(log_w)
    if bool(xp.any(dead)):
        rows = _bad_rows(dead)
        where = f"batch rows {list(rows)[:5]}" if rows and rows[0] else "the population"
        source = f" in {what}" if what else ""
        kept = "; the partial result up to the previous step is in this error's .result" if step is not None else ""
        raise ExtinctionError(
            f"every particle of {where} has weight zero{source}{' after step ' + str(step) if step is not None else ''}"
            f"{kept}. Use more particles, a softer potential, or a proposal that reaches the region where the "
            "potential is positive.",
            step=step,
            rows=rows,
            result=result,  # type: ignore[arg-type]
        )


def _at(step: int | None) -> str:
    return "" if step is None else f" at step {step}"


def _bad_rows(mask: Array) -> tuple[tuple[int, ...], ...]:
    """Batch indices where ``mask`` is true, as tuples (``((),)`` for an unbatched run)."""
    m = to_host(mask)
    return tuple(tuple(int(i) for i in idx) for idx in zip(*np.nonzero(m))) if m.ndim else ((),) if m else ()
