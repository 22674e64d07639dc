"""PaRIS: online smoothing of additive functionals (Olsson and Westerborn, 2017).

For an additive functional ``S_t(x_{0:t}) = sum_{s<=t} h_s(x_{s-1}, x_s)`` (``h_0(x_0)`` at s = 0), PaRIS
keeps one statistic per particle, ``tau_t^i``, an estimate of ``E[S_t | x_t = x_t^i, y_{0:t}]``, and updates it
with ``K`` draws ``J_1 .. J_K`` from the backward kernel ``B_t(. | x_t^i)``:

    tau_t^i = (1 / K) sum_k ( tau_{t-1}^{J_k} + h_t(x_{t-1}^{J_k}, x_t^i) ).

Then ``sum_i W_t^i tau_t^i`` estimates the smoothed expectation ``E[S_t | y_{0:t}]`` at every step, online, at
O(K n) cost per step (with rejection sampling) and O(n) memory. K = 1 makes the statistics degenerate like the
genealogy; K = 2 is enough for stability (Olsson and Westerborn).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from smckit.backend import Array, device_of, namespace
from smckit.errors import InvalidArgumentError, ShapeError
from smckit.random import RNG, as_rng
from smckit.smoothing.backward import BackwardKernel
from smckit.smoothing.trajectories import weighted_sum
from smckit.state import take

__all__ = ["PaRIS"]

State = Any


class PaRIS:
    """The PaRIS tracker: online smoothed expectations of an additive functional.

    Use it as ``smckit.run(model, n, trackers={"paris": PaRIS(model, h)})`` once the engine takes trackers, or
    offline with :func:`smckit.smoothing.replay` on a run with ``history="full"``.

    Parameters
    ----------
    model : FeynmanKac
        The model that runs; defines ``log_transition`` (and ``log_transition_max`` for ``method="reject"``).
    h : callable
        ``h(t, prev, state) -> (*batch, k, *out)``: the term ``h_t(x_{t-1}, x_t)`` of the additive functional,
        for states with leaves ``(*batch, k, *event)``; ``prev`` is ``None`` at t = 0.
    n_backward : int
        Backward draws K per particle and step (at least 1; 2 is the usual choice).
    method : {"reject", "quadratic"}
        How the backward kernel is sampled (see :func:`smckit.smoothing.backward_sampling`).
    seed : int, RNG or None

    Attributes
    ----------
    statistics : array, shape (*batch, n, *out)
        The per-particle statistics tau_t after the latest step.

    Raises
    ------
    InvalidArgumentError
        If ``n_backward < 1`` or the model lacks what ``method`` needs.

    Examples
    --------
    >>> import smckit
    >>> from smckit.models import Bootstrap, LinearGaussian
    >>> from smckit.smoothing import PaRIS, replay
    >>> ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    >>> _, y = ssm.simulate(20, seed=0)
    >>> model = Bootstrap(ssm, y)
    >>> res = smckit.run(model, 200, seed=1, history="full")
    >>> total = replay(res, PaRIS(model, lambda t, prev, x: x, seed=2))   # E[x_0 + .. + x_t | y_0:t]
    >>> total.shape
    (20, 1)
    """

    def __init__(
        self,
        model: Any,
        h: Callable[[int, State | None, State], Array],
        *,
        n_backward: int = 2,
        method: str = "reject",
        seed: RNG | int | None = None,
    ):
        if int(n_backward) < 1:
            raise InvalidArgumentError(f"n_backward must be at least 1, got {n_backward}")
        self.kernel = BackwardKernel(model, method=method, what="PaRIS")
        self.h = h
        self.n_backward = int(n_backward)
        self.rng = as_rng(seed)
        self.statistics: Array | None = None
        self._estimates: list[Array] = []

    def start(self, state: State, log_weights: Array) -> None:
        """Initialise ``tau_0 = h_0(x_0)``; ``state`` has leaves (*batch, n, *event), log_weights (*batch, n)."""
        self.statistics = self._values(0, None, state, log_weights)
        self._estimates = [weighted_sum(log_weights, self.statistics)]

    def update(
        self,
        t: int,
        prev_state: State,
        prev_log_weights: Array,
        ancestors: Array | None,
        state: State,
        log_weights: Array,
    ) -> None:
        """Advance the statistics to step t; states have leaves (*batch, n, *event), weights (*batch, n)."""
        if self.statistics is None:
            raise InvalidArgumentError("PaRIS.update was called before start")
        xp = namespace(log_weights)
        batch, n, k = tuple(log_weights.shape[:-1]), log_weights.shape[-1], self.n_backward
        # Target j * n + i is particle i (its k-th backward draw), laid out as (*batch, k * n).
        repeat = xp.broadcast_to(
            xp.tile(xp.arange(n, dtype=xp.int64, device=device_of(log_weights)), (k,)), (*batch, k * n)
        )
        targets = take(state, repeat) if k > 1 else state
        parents = self.kernel.draw(t, prev_state, prev_log_weights, targets, self.rng)
        terms = take(self.statistics, parents) + self._values(t, take(prev_state, parents), targets, log_weights, k * n)
        out = tuple(terms.shape[len(batch) + 1 :])
        self.statistics = xp.mean(xp.reshape(terms, (*batch, k, n, *out)), axis=len(batch))
        self._estimates.append(weighted_sum(log_weights, self.statistics))

    def value(self) -> Array:
        """The estimates of ``E[S_t | y_0:t]`` for every step so far, shape (T, *batch, *out)."""
        if not self._estimates:
            raise InvalidArgumentError("PaRIS has not started: no step has run")
        return namespace(*self._estimates).stack(self._estimates)

    @property
    def acceptance(self) -> float:
        """The rejection sampler's overall acceptance rate (NaN before any proposal)."""
        k = self.kernel
        return k.accepted / k.proposals if k.proposals else math.nan

    def _values(self, t: int, prev: State | None, state: State, log_weights: Array, k: int | None = None) -> Array:
        values = self.h(t, prev, state)
        expected = (*log_weights.shape[:-1], k if k is not None else log_weights.shape[-1])
        if not hasattr(values, "shape") or tuple(values.shape[: len(expected)]) != expected:
            got = tuple(values.shape) if hasattr(values, "shape") else type(values).__name__
            raise ShapeError(f"PaRIS: h({t}, prev, state) returned {got}; expected an array of shape {expected} + out")
        return values
