"""What the engine checks, and where: everything at step 0, shapes at every step, values through device flags.

Nothing here touches values on an accelerator without being asked: per step the loop compares shapes (host
metadata) and keeps a device-side flag of bad weights; the flag's exact explanation is worded by
:func:`smckit.weights.validate` when it is set.
"""

from __future__ import annotations

import numbers
from typing import Any

from smckit.backend import Array, check_compatible, describe, is_floating, is_numpy, is_torch, namespace
from smckit.errors import BackendError, InvalidArgumentError, ShapeError
from smckit.model import FeynmanKac, supports_rebirth
from smckit.resamplers.base import Capabilities, Resampled
from smckit.state import leaves, num_particles
from smckit.weights import check_finite_or_minus_inf

__all__ = [
    "check_model",
    "check_n_particles",
    "resolve_resampler",
    "rebirth_noise_of",
    "check_first_potential",
    "check_step",
    "check_state",
    "check_resampled",
    "on_host",
]


def on_host(x: Array) -> bool:
    """Whether ``x`` lives in host memory (numpy, or a CPU tensor): reading it back costs no device sync."""
    return is_numpy(x) or x.device.type == "cpu"


def check_n_particles(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise InvalidArgumentError(f"n_particles must be a positive integer, got {n!r}")
    return int(n)


def check_model(model: Any) -> None:
    """The model is a FeynmanKac with a usable horizon: ``num_steps`` a positive integer, or ``done`` overridden."""
    if not isinstance(model, FeynmanKac):
        raise InvalidArgumentError(
            f"model must be a smckit.FeynmanKac, got {type(model).__name__}; subclass FeynmanKac and "
            "implement initial, propose and log_potential"
        )
    steps = model.num_steps
    adaptive = type(model).done is not FeynmanKac.done
    if steps is None and not adaptive:
        raise InvalidArgumentError(
            f"{type(model).__name__}.num_steps is None and done(t, state) is not overridden: give the model a "
            "fixed horizon (a positive integer) or an adaptive stopping rule"
        )
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1):
        raise InvalidArgumentError(
            f"{type(model).__name__}.num_steps must be a positive integer (the number of steps t = 0 .. T-1), "
            f"got {steps!r}"
        )


def resolve_resampler(spec: Any) -> Any:
    """A resampler object from a registered name or an object; its declared capabilities are checked here."""
    if isinstance(spec, str):
        from smckit.plugins import make_resampler

        spec = make_resampler(spec)
    if not callable(spec):
        raise InvalidArgumentError(
            f"resampler must be a registered name or a callable resampler, got {type(spec).__name__}"
        )
    caps = getattr(spec, "capabilities", None)
    if not isinstance(caps, Capabilities):
        raise InvalidArgumentError(
            f"the resampler {_name(spec)!r} declares capabilities of type {type(caps).__name__}; a resampler's "
            "`capabilities` must be a smckit.Capabilities instance (see the plugin author guide)"
        )
    return spec


def rebirth_noise_of(resampler: Any, model: FeynmanKac) -> float:
    """The resampler's ``rebirth_noise`` (0 when it declares none), checked against the model."""
    scale = getattr(resampler, "rebirth_noise", 0.0)
    if scale is None:
        scale = 0.0
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not float(scale) >= 0:
        raise InvalidArgumentError(
            f"the resampler {_name(resampler)!r} declares rebirth_noise={scale!r}; expected a number >= 0"
        )
    if scale != 0 and not supports_rebirth(model):
        raise InvalidArgumentError(
            f"the resampler {_name(resampler)!r} asks for rebirth noise {scale}, but {type(model).__name__} has no "
            "rebirth(t, state, mask, scale, rng) method: implement it, or set rebirth_noise=0"
        )
    return float(scale)


def check_first_potential(model: FeynmanKac, log_g: Any, state: Any, n: int) -> tuple[int, ...]:
    """Step 0: the log-potential's shape and dtype, and the state's layout. Returns the batch shape."""
    where = f"{type(model).__name__}.log_potential at step 0"
    if not hasattr(log_g, "shape") or not hasattr(log_g, "dtype"):
        raise ShapeError(f"{where} returned a {type(log_g).__name__}, expected an array of shape (*batch, n)")
    if log_g.ndim < 1 or log_g.shape[-1] != n:
        raise ShapeError(
            f"{where} returned shape {tuple(log_g.shape)}; expected (*batch, {n}) with the particle axis last"
        )
    if not is_floating(log_g):
        raise BackendError(f"{where} returned dtype {log_g.dtype}; log-potentials must be floating point")
    batch = tuple(log_g.shape[:-1])
    _check_layout(model, "initial", 0, state, batch, n)
    for leaf in leaves(state):
        check_compatible(log_g, leaf, what=f"the state returned by {type(model).__name__}.initial", dtype=False)
    return batch


def check_step(model: FeynmanKac, t: int, log_g: Any, reference: Array, batch: tuple[int, ...], n: int) -> None:
    """Step t >= 1: the potential's shape (host metadata only), backend, device and dtype.

    Parameters
    ----------
    model : FeynmanKac
    t : int
    log_g : array, shape (*batch, n)
    reference : array
        The first log-potential of the run.
    batch : tuple of int
    n : int

    Raises
    ------
    ShapeError, BackendError
    """
    where = f"{type(model).__name__}.log_potential at step {t}"
    if tuple(getattr(log_g, "shape", ())) != (*batch, n) or not hasattr(log_g, "dtype"):
        shape = tuple(getattr(log_g, "shape", ())) if hasattr(log_g, "shape") else type(log_g).__name__
        raise ShapeError(f"{where} returned {shape}; the run has shape {(*batch, n)}")
    if (
        type(log_g) is not type(reference)
        or log_g.dtype != reference.dtype
        or getattr(log_g, "device", None) != getattr(reference, "device", None)
    ):
        check_compatible(reference, log_g, what=where)


def check_state(model: FeynmanKac, t: int, state: Any, batch: tuple[int, ...], n: int, method: str = "propose") -> None:
    """Step t >= 1: every leaf of the proposed state has the layout (*batch, n, *event) (shapes only).

    Parameters
    ----------
    model : FeynmanKac
    t : int
    state : state
    batch : tuple of int
    n : int
    method : str
        The model method that returned ``state``, for the message.

    Raises
    ------
    ShapeError
        Naming the method and the step.
    """
    _check_layout(model, method, t, state, batch, n)


def _check_layout(model: FeynmanKac, method: str, t: int, state: Any, batch: tuple[int, ...], n: int) -> None:
    if is_numpy(state) or is_torch(state):  # the common case, a single array: one comparison
        if tuple(state.shape[: len(batch) + 1]) == (*batch, n):
            return
    try:
        n_state = num_particles(state, len(batch))
    except ShapeError as err:
        raise ShapeError(f"{type(model).__name__}.{method} at step {t}: {err}") from None
    shapes = {tuple(leaf.shape[: len(batch)]) for leaf in leaves(state)}
    if n_state != n or shapes != {batch}:
        raise ShapeError(
            f"{type(model).__name__}.{method} at step {t} returned a state with (*batch, n) = "
            f"{sorted(shapes)[0] + (n_state,)}; the run has {(*batch, n)}: every array of a state has the layout "
            "(*batch, n, *event)"
        )


def check_resampled(
    out: Any, log_w: Array, resampler: Any, t: int, *, uniform: bool, defer: bool = False
) -> tuple[Array, Array | None, Array | None]:
    """Check what a resampler returned before it indexes anything.

    Parameters
    ----------
    out : Resampled
        What the scheme returned.
    log_w : array, shape (*batch, n)
        What it was given.
    resampler : Resampler
        For the messages.
    t : int
    uniform : bool
        Whether the scheme declares uniform output weights (they are then not used).
    defer : bool
        Check values through a device flag instead of reading them back (on an accelerator).

    Returns
    -------
    ancestors : integer array, shape (*batch, n)
        Clamped into range on an accelerator, where the range check is deferred.
    log_weights : array of shape (*batch, n), or None
        The output log-weights in the run's weight dtype (``None`` for uniform output weights).
    flag : boolean array of shape (), or None
        Set when a deferred value check failed (``None`` when every check ran on the host).

    Raises
    ------
    InvalidArgumentError, ShapeError, BackendError, InvalidWeightsError
        Naming the resampler and the step.
    """
    name = _name(resampler)
    where = f"the resampler {name!r} at step {t}"
    if not isinstance(out, Resampled):
        raise InvalidArgumentError(f"{where} returned a {type(out).__name__}; a resampler returns smckit.Resampled")
    anc = out.ancestors
    shape = tuple(log_w.shape)
    if not hasattr(anc, "shape") or tuple(anc.shape) != shape:
        got = tuple(anc.shape) if hasattr(anc, "shape") else type(anc).__name__
        raise ShapeError(
            f"{where} returned ancestors of shape {got}; the engine keeps the population size, expected {shape}"
        )
    if type(anc) is not type(log_w) or getattr(anc, "device", None) != getattr(log_w, "device", None):
        raise BackendError(
            f"{where} returned ancestors as a {describe(anc)}; expected the backend and device of the "
            f"log-weights, {describe(log_w)}"
        )
    if _kind(anc) not in "iu":
        raise BackendError(f"{where} returned ancestors of dtype {anc.dtype}; ancestors are integer indices")
    n = shape[-1]
    flag = None
    if not defer:
        low, high = (int(anc.min()), int(anc.max())) if anc.shape[-1] else (0, 0)
        if low < 0 or high >= n:
            raise InvalidArgumentError(
                f"{where} returned ancestors in [{low}, {high}]; indices must lie in [0, {n - 1}] (an index of "
                f"{n} or -1 would take a particle of a neighbouring batch row)"
            )
    else:
        xp = namespace(anc)
        clipped = xp.clip(anc, 0, n - 1)  # never index another row, whatever the deferred check finds
        flag = xp.any(clipped != anc)
        anc = clipped
    out_w = out.log_weights
    if not hasattr(out_w, "shape") or tuple(out_w.shape) != shape:
        got = tuple(out_w.shape) if hasattr(out_w, "shape") else type(out_w).__name__
        raise ShapeError(f"{where} returned output log-weights of shape {got}; expected {shape}")
    if out.reborn is not None and tuple(getattr(out.reborn, "shape", ())) != shape:
        raise ShapeError(
            f"{where} returned a reborn mask of shape {tuple(getattr(out.reborn, 'shape', ()))}; expected {shape}"
        )
    if uniform:
        return anc, None, flag
    xp = namespace(out_w)
    out_w = xp.astype(out_w, log_w.dtype)
    if not defer:
        check_finite_or_minus_inf(out_w, step=t, what=f"the output log-weights of the resampler {name!r}")
        if bool(xp.any(xp.all(out_w == -float("inf"), axis=-1))):
            raise InvalidArgumentError(f"{where} returned output log-weights that are all -inf in a row")
    else:
        bad = xp.any(xp.isnan(out_w) | (out_w == float("inf")))
        flag = bad if flag is None else flag | bad
    return anc, out_w, flag


def _kind(x: Array) -> str:
    """numpy's one-letter dtype kind ("f", "i", "u", "b", ...) of a numpy array or torch tensor."""
    if is_numpy(x):
        return str(x.dtype.kind)
    if x.dtype.is_floating_point or x.dtype.is_complex:
        return "f"
    return "b" if str(x.dtype) == "torch.bool" else "i"


def _name(resampler: Any) -> str:
    return str(getattr(resampler, "name", type(resampler).__name__))
