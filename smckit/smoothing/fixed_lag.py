"""Fixed-lag smoothing: ``E[phi(x_s) | y_{0:s+L}]`` from the genealogy over the last L steps.

At step t the weighted particles, traced back L steps through their ancestors, approximate
``p(x_{t-L} | y_{0:t})``. Over a fixed lag the genealogy has not yet collapsed, so this keeps most of the
benefit of smoothing (for a forgetting model, ``p(x_s | y_{0:s+L})`` is close to the full smoother for a
moderate L) at O(L n) memory and time per step, without the transition density.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from smckit.backend import Array, namespace
from smckit.errors import InvalidArgumentError
from smckit.smoothing.trajectories import weighted_sum
from smckit.state import take

__all__ = ["FixedLag"]

State = Any


class FixedLag:
    """The fixed-lag smoothing tracker.

    Parameters
    ----------
    phi : callable
        Maps a state (leaves ``(*batch, n, *event)``) to values ``(*batch, n, *out)``.
    lag : int
        L >= 0 (L = 0 gives the filtering means).

    Raises
    ------
    InvalidArgumentError
        If ``lag`` is negative.

    Examples
    --------
    >>> import smckit
    >>> from smckit.models import Bootstrap, LinearGaussian
    >>> from smckit.smoothing import FixedLag, replay
    >>> ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    >>> _, y = ssm.simulate(30, seed=0)
    >>> res = smckit.run(Bootstrap(ssm, y), 300, seed=1, history="full")
    >>> replay(res, FixedLag(lambda x: x[..., 0], lag=5)).shape
    (30,)
    """

    def __init__(self, phi: Callable[[State], Array], lag: int):
        if int(lag) < 0:
            raise InvalidArgumentError(f"lag must be non-negative, got {lag}")
        self.phi = phi
        self.lag = int(lag)
        # One entry per step s of the window: phi(x_s) and, for each current particle, its ancestor at s
        # (None: the identity).
        self._window: deque[tuple[Array, Array | None]] = deque()
        self._estimates: list[Array] = []
        self._log_weights: Array | None = None

    def start(self, state: State, log_weights: Array) -> None:
        """Open the window with step 0; ``state`` has leaves (*batch, n, *event), log_weights (*batch, n)."""
        self._window = deque([(self.phi(state), None)])
        self._estimates = []
        self._log_weights = log_weights
        self._emit_if_full()

    def update(
        self,
        t: int,
        prev_state: State,
        prev_log_weights: Array,
        ancestors: Array | None,
        state: State,
        log_weights: Array,
    ) -> None:
        """Slide the window to step t; states have leaves (*batch, n, *event), weights and ancestors (*batch, n)."""
        if self._log_weights is None:
            raise InvalidArgumentError("FixedLag.update was called before start")
        if ancestors is not None:
            xp = namespace(ancestors)
            self._window = deque(
                (values, ancestors if index is None else xp.take_along_axis(index, ancestors, axis=-1))
                for values, index in self._window
            )
        self._window.append((self.phi(state), None))
        self._log_weights = log_weights
        self._emit_if_full()

    def value(self) -> Array:
        """Estimates of ``E[phi(x_s) | y_0:min(s+L, T-1)]`` for every step s, shape (T, *batch, *out)."""
        if self._log_weights is None:
            raise InvalidArgumentError("FixedLag has not started: no step has run")
        tail = [self._estimate(values, index) for values, index in self._window]
        out = self._estimates + tail
        return namespace(*out).stack(out)

    def _emit_if_full(self) -> None:
        if len(self._window) > self.lag:
            values, index = self._window.popleft()
            self._estimates.append(self._estimate(values, index))

    def _estimate(self, values: Array, index: Array | None) -> Array:
        assert self._log_weights is not None
        return weighted_sum(self._log_weights, values if index is None else take(values, index))
