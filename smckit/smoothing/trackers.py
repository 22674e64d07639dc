"""Trackers: statistics updated along a run, one step at a time, at a memory cost that does not grow with T.

A tracker is any object with three methods (the engine calls them through ``smckit.run(..., trackers=...)``;
:func:`replay` calls them on a finished run with ``history="full"``):

- ``start(state, log_weights)``: after step 0; ``log_weights`` normalised, ``(*batch, n)``;
- ``update(t, prev_state, prev_log_weights, ancestors, state, log_weights)``: after step t >= 1, where
  ``prev_state`` / ``prev_log_weights`` are the population after step t - 1 *before* resampling (normalised),
  ``ancestors`` (``(*batch, n)`` integers into prev's particle axis, or ``None`` when no row resampled) gives
  each particle's parent, and ``state`` / ``log_weights`` are the population after step t;
- ``value()``: what the run keeps.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from smckit.backend import Array
from smckit.smoothing.trajectories import full_history

__all__ = ["Tracker", "replay"]

State = Any


@runtime_checkable
class Tracker(Protocol):
    """What the engine (or :func:`replay`) calls on a tracker; see the module docstring."""

    def start(self, state: State, log_weights: Array) -> None:
        """After step 0: the particles (leaves ``(*batch, n, *event)``) and their log-weights (*batch, n)."""

    def update(
        self,
        t: int,
        prev_state: State,
        prev_log_weights: Array,
        ancestors: Array | None,
        state: State,
        log_weights: Array,
    ) -> None:
        """After step t >= 1; states have leaves of shape (*batch, n, *event), weights and ancestors (*batch, n)."""

    def value(self) -> Any:
        """What the run keeps."""


def replay(result: Any, tracker: Tracker) -> Any:
    """Run a tracker over a finished run, offline, exactly as the engine would have during the run.

    Parameters
    ----------
    result : smckit.Result
        A run with ``history="full"``.
    tracker : Tracker
        A fresh tracker.

    Returns
    -------
    Any
        ``tracker.value()``.

    Raises
    ------
    InvalidArgumentError
        If the run kept no particle history.

    Examples
    --------
    >>> import smckit
    >>> from smckit.models import Bootstrap, LinearGaussian
    >>> from smckit.smoothing import FixedLag, replay
    >>> ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    >>> _, y = ssm.simulate(20, seed=0)
    >>> res = smckit.run(Bootstrap(ssm, y), 200, seed=1, history="full")
    >>> replay(res, FixedLag(lambda x: x, lag=5)).shape
    (20, 1)
    """
    hist = full_history(result, what="replay")
    tracker.start(hist.states[0], hist.log_weights[0])
    for t in range(1, hist.num_steps):
        tracker.update(
            t,
            hist.states[t - 1],
            hist.log_weights[t - 1],
            hist.ancestors_at(t),
            hist.states[t],
            hist.log_weights[t],
        )
    return tracker.value()
