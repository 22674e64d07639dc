"""The resampler contract: what every scheme, built-in or plugin, takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from smckit.backend import Array
from smckit.random import RNG

__all__ = ["Resampled", "Resampler", "Capabilities"]


@dataclass(frozen=True)
class Capabilities:
    """What a resampling scheme guarantees; the conformance kit checks exactly these.

    Attributes
    ----------
    unbiased : bool
        ``E[count_i] = n_out * W_i`` for every particle i; for schemes with non-uniform output weights, the
        expected output weight mass of the copies of i, ``E[sum_{k: a_k = i} exp(log_weights_k)]``, equals
        ``n_out * W_i`` (for zero output log-weights the two agree).
    count_bounds : str or None
        ``"floor_ceil"``: each count is ``floor`` or ``ceil`` of ``n_out * W_i`` (systematic, SSP);
        ``"at_least_floor"``: each count is at least ``floor(n_out * W_i)`` (residual); ``None``: no bound.
    variable_size : bool
        Whether ``n_out != n`` is supported.
    uniform_output_weights : bool
        Whether the output log-weights are all zero (equal weights).
    sorted_ancestors : bool
        Whether ancestors come back sorted (callers must not assume it unless declared).
    backends : tuple of str
        The array libraries the scheme runs on.
    """

    unbiased: bool = True
    count_bounds: str | None = None
    variable_size: bool = True
    uniform_output_weights: bool = True
    sorted_ancestors: bool = False
    backends: tuple[str, ...] = ("numpy", "torch")


@dataclass(frozen=True)
class Resampled:
    """The outcome of one resampling.

    Attributes
    ----------
    ancestors : integer array, shape (*batch, n_out)
        Index of each new particle's parent along the particle axis.
    log_weights : float array, shape (*batch, n_out)
        Log-weights after resampling (zeros for the standard schemes). A scheme whose output weights are not
        uniform (``capabilities.uniform_output_weights = False``) scales them so that
        ``E[sum over the copies k of particle i of exp(log_weights_k)] = n_out * W_i``; the engine then adds
        ``log mean exp(log_weights)`` to the log-evidence, which keeps it unbiased.
    reborn : boolean array of shape (*batch, n_out) or None
        Particles that were killed and refilled with a copy of another (Fleming-Viot); they may receive
        rebirth noise through the model's ``rebirth``.
    info : dict
        Small per-step diagnostics (e.g. ``{"deaths": ..., "beta": ...}``).
    """

    ancestors: Array
    log_weights: Array
    reborn: Array | None = None
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Resampler(Protocol):
    """A resampling scheme: a callable with declared capabilities.

    Attributes
    ----------
    name : str
        The name the scheme is registered under, for messages.
    capabilities : Capabilities
        What the scheme guarantees (checked to be a :class:`Capabilities` when the engine first makes or gets it).
    rebirth_noise : float, optional
        The scale the engine passes to ``model.rebirth`` for the particles the scheme marks as ``reborn``. A
        scheme without the attribute asks for none (0); the engine checks it is a number >= 0 and that the model
        has ``rebirth`` when it is positive.
    """

    name: str
    capabilities: Capabilities
    rebirth_noise: float

    def __call__(self, log_weights: Array, rng: RNG, *, n_out: int | None = None) -> Resampled:
        """Resample from unnormalised log-weights of shape ``(*batch, n)``; see :class:`Resampled`."""
        ...
