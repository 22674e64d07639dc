"""Whole trajectories: reading a full-history run, and the ancestral paths of its final particles.

A run with ``history="full"`` keeps, for every step t, the weighted population after step t and before any
resampling (``history.particles[t]``, ``history.log_weights[t]``, the latter normalised) and the parent at t - 1
of every particle at t (``history.ancestors[t]``). That is enough to rebuild any trajectory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smckit.backend import Array, device_of, namespace
from smckit.errors import InvalidArgumentError
from smckit.state import leaves, take, tree_map

__all__ = ["Trajectories", "FullHistory", "full_history", "genealogy_paths", "stack_states", "weighted_sum"]

State = Any


@dataclass(frozen=True)
class FullHistory:
    """The per-step populations of a run, on the run's backend and device.

    Attributes
    ----------
    states : list of states
        ``states[t]``: the particles after step t, before resampling (leaves ``(*batch, n, *event)``).
    log_weights : list of arrays
        ``log_weights[t]``: their normalised log-weights, ``(*batch, n)``.
    ancestors : ndarray of int, shape (T, *batch, n)
        ``ancestors[t]`` indexes ``states[t - 1]`` (host copy, as the run recorded it).
    resampled : ndarray of bool, shape (T, *batch)
        Whether each row resampled before step t.
    """

    states: list[State]
    log_weights: list[Array]
    ancestors: np.ndarray
    resampled: np.ndarray

    @property
    def num_steps(self) -> int:
        """The number of steps T."""
        return len(self.states)

    @property
    def batch(self) -> tuple[int, ...]:
        """The batch shape."""
        return tuple(self.log_weights[0].shape[:-1])

    @property
    def n(self) -> int:
        """The number of particles per row."""
        return int(self.log_weights[0].shape[-1])

    def ancestors_at(self, t: int) -> Array | None:
        """``ancestors[t]`` on the run's device (int64, ``(*batch, n)``), or ``None`` if no row resampled.

        Parameters
        ----------
        t : int
            A step, ``1 <= t < T``.

        Returns
        -------
        array of int64, shape (*batch, n), or None
        """
        if not bool(np.any(self.resampled[t])):
            return None
        like = self.log_weights[t]
        return namespace(like).asarray(self.ancestors[t].astype(np.int64), device=device_of(like))


def full_history(result: Any, *, what: str) -> FullHistory:
    """The per-step populations of ``result``, checked.

    Parameters
    ----------
    result : smckit.Result
        A run with ``history="full"``.
    what : str
        Who asks, for the error message.

    Returns
    -------
    FullHistory

    Raises
    ------
    InvalidArgumentError
        If the run did not keep its particles (``history="full"``) or has no steps.
    """
    history: Any = getattr(result, "history", None)
    particles = getattr(history, "particles", None)
    if particles is None or getattr(history, "ancestors", None) is None:
        raise InvalidArgumentError(
            f"{what} needs every step's particles: run with smckit.run(..., history='full') "
            "(this result kept only the final population)"
        )
    if len(particles) == 0:
        raise InvalidArgumentError(f"{what}: the run has no steps")
    return FullHistory(
        states=list(particles),
        log_weights=list(history.log_weights),
        ancestors=np.asarray(history.ancestors),
        resampled=np.asarray(history.resampled, dtype=bool),
    )


def stack_states(states: list[State]) -> State:
    """Stack states along a new leading (time) axis, leaf by leaf.

    Parameters
    ----------
    states : list of states
        The same structure each, leaves of one shape per position.

    Returns
    -------
    state with leaves of shape (len(states), *leaf_shape)
    """
    columns = [leaves(s) for s in states]
    stacked = iter([namespace(*col).stack(col) for col in zip(*columns, strict=True)])
    return tree_map(lambda _: next(stacked), states[0])


@dataclass(frozen=True)
class Trajectories:
    """Weighted whole trajectories ``x_{0:T-1}``, a particle approximation of the smoothing distribution.

    Attributes
    ----------
    paths : state
        Leaves of shape ``(T, *batch, k, *event)``: ``paths[t][..., j, :]`` is trajectory j at step t.
    log_weights : array, shape (*batch, k)
        Normalised log-weights of the trajectories (uniform for backward sampling).
    info : dict
        Diagnostics of the method that produced them (e.g. acceptance rates per step).
    """

    paths: State
    log_weights: Array
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        """The number of steps T."""
        return int(leaves(self.paths)[0].shape[0])

    def at(self, t: int) -> State:
        """Step ``t`` of every trajectory: leaves of shape (*batch, k, *event).

        Parameters
        ----------
        t : int

        Returns
        -------
        state
        """
        return tree_map(lambda x: x[t], self.paths)

    def estimate(self, f: Callable[[State], Array]) -> Array:
        """Smoothed expectations ``sum_j W^j f(x_t^j)`` for every step t.

        Parameters
        ----------
        f : callable
            Maps a state with leaves ``(*batch, k, *event)`` to values of shape ``(*batch, k, *out)``.

        Returns
        -------
        array, shape (T, *batch, *out)
        """
        out = [weighted_sum(self.log_weights, f(self.at(t))) for t in range(self.num_steps)]
        return namespace(*out).stack(out)


def weighted_sum(log_weights: Array, values: Array) -> Array:
    """``sum_i W^i values^i`` per row, with ``W = exp(log_weights)`` (normalised log-weights).

    Parameters
    ----------
    log_weights : array, shape (*batch, n)
    values : array, shape (*batch, n, *out)

    Returns
    -------
    array, shape (*batch, *out), in the dtype of ``values``
    """
    xp = namespace(values)
    w = xp.astype(xp.exp(log_weights), values.dtype)
    w = xp.reshape(w, tuple(w.shape) + (1,) * (values.ndim - w.ndim))
    return xp.sum(w * values, axis=log_weights.ndim - 1)


def genealogy_paths(result: Any) -> Trajectories:
    """The ancestral trajectories of the final particles, weighted by the final weights.

    Trajectory i at step t is the ancestor at t of final particle i. This estimates the smoothing distribution
    at no extra cost, but resampling makes the paths coalesce: going back in time, fewer and fewer distinct
    ancestors remain (``result.history.lineages()``), so the estimates at early steps rest on a handful of
    distinct states and have a large variance. Backward sampling (:func:`backward_sampling`) does not degenerate.

    Parameters
    ----------
    result : smckit.Result
        A run with ``history="full"``.

    Returns
    -------
    Trajectories
        Paths with leaves ``(T, *batch, n, *event)`` and the final normalised log-weights ``(*batch, n)``.

    Raises
    ------
    InvalidArgumentError
        If the run did not keep its particles.

    Examples
    --------
    >>> import smckit
    >>> from smckit.models import Bootstrap, LinearGaussian
    >>> ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    >>> _, y = ssm.simulate(20, seed=0)
    >>> res = smckit.run(Bootstrap(ssm, y), 100, seed=1, history="full")
    >>> genealogy_paths(res).paths.shape
    (20, 100, 1)
    """
    hist = full_history(result, what="genealogy_paths")
    xp = namespace(hist.log_weights[-1])
    index = None  # the ancestor at step t of each final particle (None: the identity)
    steps = [hist.states[-1]]
    for t in range(hist.num_steps - 1, 0, -1):
        parents = hist.ancestors_at(t)
        if parents is not None:
            index = parents if index is None else xp.take_along_axis(parents, index, axis=-1)
        steps.append(hist.states[t - 1] if index is None else take(hist.states[t - 1], index))
    return Trajectories(stack_states(steps[::-1]), hist.log_weights[-1], {"method": "genealogy"})
