"""The backward kernel: drawing the parent at t - 1 of a state at t under the smoothing distribution.

For a Feynman-Kac model with Markov kernels of density ``m_t`` and potentials ``G_t``, the smoothing
distribution decomposes backwards, and its kernel from step t to t - 1, given the weighted particles
``(x_{t-1}^j, W_{t-1}^j)`` of step t - 1, is

    B_t(j | x_t) ∝ W_{t-1}^j m_t(x_{t-1}^j, x_t) G_t(x_{t-1}^j, x_t).

The model supplies the product through ``log_transition(t, prev, state)`` (up to a term free of ``prev``); for a
state-space filter it is the transition density ``f_t(x_t | x_{t-1})``. Two exact samplers:

- ``"quadratic"``: compute the n weights of every draw, O(n) per draw;
- ``"reject"``: propose ``j ~ W_{t-1}`` and accept with probability ``exp(log_transition - bound)``, where
  ``bound = model.log_transition_max(t)`` bounds the density; O(1 / acceptance) per draw. Acceptance can
  collapse (an x_t far from the particles that carry the weight): when exact draws for the targets still pending
  cost less than the rounds they are expected to need at the latest acceptance rate, or than the rounds already
  made (ski rental: the total stays within about twice the cheaper strategy), or after ``max_tries`` rounds, the
  pending draws are completed with the quadratic sampler. Each
  draw is then exact: it is either an accepted proposal, whose law given acceptance is ``B_t``, or an exact draw
  from ``B_t``, and the switch depends only on rejections already made, not on the value it will draw (the
  hybrid of Dau and Chopin, 2022, "On the complexity of backward smoothing algorithms").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from smckit.backend import Array, device_of, namespace, to_host
from smckit.errors import InvalidArgumentError
from smckit.random import RNG
from smckit.smoothing.categorical import Categorical, sample_each
from smckit.state import num_particles, take, tree_map

__all__ = ["BackwardKernel", "METHODS", "transition_of"]

State = Any

METHODS = ("reject", "quadratic")

# Pairs (target, candidate parent) evaluated at once by the quadratic sampler: bounds its temporaries.
PAIRS_PER_CHUNK = 1 << 16  # temporaries of 512 KiB in float64: they stay in cache (measured best at n = 1e4)
# Costs in pair evaluations of the quadratic sampler (about 13 ns each with numpy at n = 1e4), measured with
# benchmarks/bench_smoothing.py: a rejection round's fixed cost (calls, searches), and each proposal's.
ROUND_COST = 8192
PROPOSAL_COST = 8
# Slack on the bound check, relative to its magnitude (round-off in float32 log-densities).
BOUND_SLACK = 1e-4


def transition_of(model: Any, *, what: str) -> Any:
    """The model's ``log_transition`` method, or a clear error.

    Parameters
    ----------
    model : FeynmanKac
    what : str
        Who asks, for the message.

    Returns
    -------
    callable
        ``log_transition(t, prev, state) -> (*batch, k)``.

    Raises
    ------
    InvalidArgumentError
        If the model does not define it.
    """
    fn = getattr(model, "log_transition", None)
    if not callable(fn):
        raise InvalidArgumentError(
            f"{what} needs the transition log-density of {type(model).__name__}: define "
            "log_transition(t, prev, state) -> (*batch, k), the log of m_t(prev, state) G_t(prev, state) up to a term "
            "that does not depend on prev (for a state-space filter, log f_t(state | prev)); the bundled filters "
            "smckit.models.Bootstrap and Guided have it"
        )
    return fn


@dataclass
class BackwardKernel:
    """Exact draws from the backward kernel of a model, by the quadratic or the rejection sampler.

    Parameters
    ----------
    model : FeynmanKac
        Defines ``log_transition(t, prev, state)``; ``method="reject"`` also needs ``log_transition_max(t)``.
    method : {"reject", "quadratic"}
    max_tries : int
        Rejection rounds before the pending draws fall back to the quadratic sampler.
    what : str
        Who uses the kernel, for error messages.

    Attributes
    ----------
    proposals, accepted, fallbacks : int
        Running totals: proposals made by rejection, proposals accepted, draws completed exactly.
    """

    model: Any
    method: str = "reject"
    max_tries: int = 1000
    what: str = "backward sampling"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidArgumentError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.max_tries < 0:
            raise InvalidArgumentError(f"max_tries must be non-negative, got {self.max_tries}")
        self.log_transition = transition_of(self.model, what=self.what)
        if self.method == "reject" and not callable(getattr(self.model, "log_transition_max", None)):
            raise InvalidArgumentError(
                f"{self.what} with method='reject' needs an upper bound of {type(self.model).__name__}'s transition "
                "density: define log_transition_max(t) -> float, or use method='quadratic'"
            )
        self.proposals = self.accepted = self.fallbacks = 0

    def draw(self, t: int, prev: State, prev_log_weights: Array, state: State, rng: RNG) -> Array:
        """For every target ``state[..., j]``, the index of its parent among the particles of step t - 1.

        Parameters
        ----------
        t : int
            The step of the targets (t >= 1).
        prev : state
            The particles of step t - 1 (before resampling), leaves ``(*batch, n, *event)``.
        prev_log_weights : array, shape (*batch, n)
            Their log-weights (normalised or not).
        state : state
            The targets, leaves ``(*batch, m, *event)``.
        rng : RNG

        Returns
        -------
        array of int64, shape (*batch, m)
            Independent draws from ``B_t(. | state[..., j])`` (given the particles).

        Raises
        ------
        InvalidArgumentError
            If a target has no possible parent, or ``log_transition`` exceeds ``log_transition_max``.
        """
        if self.method == "quadratic":
            return self._exact(t, prev, prev_log_weights, state, rng)
        return self._reject(t, prev, prev_log_weights, state, rng)

    # -- the quadratic sampler -----------------------------------------------------------------------------
    def _exact(self, t: int, prev: State, prev_log_weights: Array, state: State, rng: RNG) -> Array:
        xp = namespace(prev_log_weights)
        nb = prev_log_weights.ndim - 1
        n = prev_log_weights.shape[-1]
        m = _num(state, prev_log_weights)
        chunk = max(1, PAIRS_PER_CHUNK // max(n, 1))
        out = []
        for start in range(0, m, chunk):
            c = min(chunk, m - start)
            lp = self.log_transition(t, *_pairs(prev, _particles(state, nb, start, start + c), nb, n, c))
            logits = xp.reshape(lp, (*prev_log_weights.shape[:-1], c, n)) + xp.expand_dims(prev_log_weights, axis=-2)
            out.append(sample_each(logits, rng, where=f"{self.what} at step {t}: the backward kernel of a path"))
        return out[0] if len(out) == 1 else xp.concat(out, axis=-1)

    # -- the rejection sampler -----------------------------------------------------------------------------
    def _reject(self, t: int, prev: State, prev_log_weights: Array, state: State, rng: RNG) -> Array:
        xp = namespace(prev_log_weights)
        n = prev_log_weights.shape[-1]
        m = _num(state, prev_log_weights)
        batch = tuple(prev_log_weights.shape[:-1])
        device = device_of(prev_log_weights)
        bound = float(self.model.log_transition_max(t))
        proposal = Categorical(prev_log_weights, where=f"{self.what} at step {t}: the weights of step {t - 1}")
        rows = math.prod(batch)
        # Results are written into a flat (rows * m) array; `pos` lists, per row, the targets still pending
        # (compacted to the front, `count` of them valid).
        result = xp.zeros(rows * m, dtype=xp.int64, device=device)
        offset = xp.reshape(xp.arange(rows, dtype=xp.int64, device=device) * m, (*batch, 1))
        pos = xp.broadcast_to(xp.arange(m, dtype=xp.int64, device=device), (*batch, m))
        count = xp.full(batch, m, dtype=xp.int64, device=device)
        width, spent = m, 0
        for _ in range(self.max_tries):
            if width == 0:
                break
            parents = proposal.draw(width, rng)
            lp = self.log_transition(t, take(prev, parents), take(state, pos))
            valid = xp.arange(width, dtype=xp.int64, device=device) < xp.expand_dims(count, axis=-1)
            self._check_bound(t, lp, bound, valid)
            log_u = xp.log(rng.uniform(tuple(lp.shape), like=lp))
            accept = valid & (log_u < lp - bound)
            flat = xp.reshape(pos + offset, (-1,))
            hit = xp.reshape(accept, (-1,))
            result[flat[hit]] = xp.reshape(parents, (-1,))[hit]
            tried, won = int(xp.sum(xp.astype(valid, xp.int64))), int(xp.sum(xp.astype(accept, xp.int64)))
            self.proposals += tried
            self.accepted += won
            still = valid & ~accept
            order = xp.argsort(xp.astype(~still, xp.int8), axis=-1, stable=True)
            count = xp.sum(xp.astype(still, xp.int64), axis=-1)
            width = int(xp.max(count))
            pos = xp.take_along_axis(pos, order, axis=-1)[..., :width]
            # Finish exactly when that is cheaper than what the rounds are expected to cost at the latest
            # acceptance rate, or (ski rental, robust to a noisy rate) once the rounds have cost as much as it.
            exact = width * n
            spent += ROUND_COST + PROPOSAL_COST * tried
            expected = (ROUND_COST + PROPOSAL_COST * width) * (tried + 1) / (won + 0.5)
            if exact <= spent or exact <= expected:
                break
        if width > 0:
            self._complete(t, prev, prev_log_weights, state, rng, result, pos, count, offset)
        return xp.reshape(result, (*batch, m))

    def _complete(
        self,
        t: int,
        prev: State,
        prev_log_weights: Array,
        state: State,
        rng: RNG,
        result: Array,
        pos: Array,
        count: Array,
        offset: Array,
    ) -> None:
        """Exact draws for the pending targets ``pos`` (the first ``count`` per row), written into ``result``."""
        xp = namespace(prev_log_weights)
        width = pos.shape[-1]
        exact = self._exact(t, prev, prev_log_weights, take(state, pos), rng)
        valid = xp.arange(width, dtype=xp.int64, device=device_of(pos)) < xp.expand_dims(count, axis=-1)
        flat = xp.reshape(pos + offset, (-1,))
        hit = xp.reshape(valid, (-1,))
        result[flat[hit]] = xp.reshape(exact, (-1,))[hit]
        self.fallbacks += int(xp.sum(xp.astype(valid, xp.int64)))

    def _check_bound(self, t: int, lp: Array, bound: float, valid: Array) -> None:
        xp = namespace(lp)
        slack = BOUND_SLACK * max(1.0, abs(bound))
        over = valid & (lp > bound + slack)
        if bool(xp.any(over)):
            worst = float(np.max(to_host(xp.where(over, lp, xp.full_like(lp, -math.inf)))))
            raise InvalidArgumentError(
                f"{self.what} at step {t}: {type(self.model).__name__}.log_transition returned {worst:.6g}, above "
                f"log_transition_max({t}) = {bound:.6g}; the bound must hold for every pair of states"
            )


def _particles(state: State, nb: int, start: int, stop: int) -> State:
    """Particles ``start .. stop - 1`` of every row (a view)."""
    index = (slice(None),) * nb + (slice(start, stop),)
    return tree_map(lambda x: x[index], state)


def _pairs(prev: State, targets: State, nb: int, n: int, c: int) -> tuple[State, State]:
    """Every (candidate, target) pair, both laid out as ``(*batch, c * n, *event)``: pair ``k * n + j`` is
    candidate j of ``prev`` with target k of ``targets``."""

    def spread(x: Array, axis: int) -> Array:
        xp = namespace(x)
        grid = xp.expand_dims(x, axis=axis)  # (*batch, 1, n, *event) or (*batch, c, 1, *event)
        shape = (*x.shape[:nb], c, n, *x.shape[nb + 1 :])
        return xp.reshape(xp.broadcast_to(grid, shape), (*x.shape[:nb], c * n, *x.shape[nb + 1 :]))

    return tree_map(lambda x: spread(x, nb), prev), tree_map(lambda x: spread(x, nb + 1), targets)


def _num(state: State, like: Array) -> int:
    """The number of particles (targets) per row of ``state``, whose batch shape is that of ``like[..., 0]``."""
    return num_particles(state, like.ndim - 1)
