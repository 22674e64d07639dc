"""Absorption-rate controllers: choose the selection exponent beta so that deaths track a target rate.

Fleming-Viot resampling with normalised weights ``W_i(beta) ∝ w_i**beta`` kills particle i with probability
``(1 - n W_i(beta))+``. Its expected death fraction

    a(beta) = (1/n) sum_i (1 - n W_i(beta))+ = sum_i (1/n - W_i(beta))+

is the total-variation distance between the tempered weights and the uniform distribution. It is zero at
``beta = 0``, non-decreasing in beta (see :func:`expected_death_fraction`) and tends to ``1 - k/n`` as beta
grows, where k is the number of particles of largest weight. A target absorption rate ``alpha*`` therefore
picks one exponent per row. Two controllers find it:

- :class:`RobbinsMonro`, the stochastic-approximation rule of Fleming-Viot Diffusion (arXiv 2604.06779 v1):
  after each resampling it moves ``log beta`` against the observed relative error ``(deaths/n - alpha*) / alpha*``
  with a decreasing step. It keeps state across calls.
- :class:`ExactBisection` solves ``a(beta) = alpha*`` afresh at every call by bisection on ``log beta``, for
  every batch row at once. It is stateless.

Both work on numpy and torch arrays (any device) through :mod:`smckit.backend`, with no Python loop over
particles or rows.
"""

from __future__ import annotations

import math
from typing import Any

from smckit.backend import Array, device_of, namespace
from smckit.errors import InvalidArgumentError
from smckit.resamplers import kit

__all__ = [
    "CONTROLLERS",
    "AbsorptionController",
    "RobbinsMonro",
    "ExactBisection",
    "expected_death_fraction",
    "relative_weights",
    "temper",
    "make_controller",
]


def temper(log_weights: Array, beta: Array) -> Array:
    """``beta * log_weights`` per row, keeping ``-inf`` (weight zero) as ``-inf``.

    Parameters
    ----------
    log_weights : array, shape (*batch, n)
    beta : array, shape (*batch,)
        Positive exponents.

    Returns
    -------
    array, shape (*batch, n)
    """
    xp = namespace(log_weights)
    finite = xp.isfinite(log_weights)
    scaled = xp.astype(beta, log_weights.dtype)[..., None] * xp.where(finite, log_weights, xp.zeros_like(log_weights))
    return xp.where(finite, scaled, log_weights)


def relative_weights(log_weights: Array) -> Array:
    """``m_i = n W_i``: each weight relative to the mean weight of its row, shape ``(*batch, n)``.

    Computed as ``e_i * (n / sum_j e_j)`` with ``e_i = exp(l_i - max_j l_j)``. Two consequences hold exactly in
    floating point, not only in exact arithmetic: equal log-weights give ``m_i == 1`` exactly (the sum of n ones
    is n), and the particle of largest weight has ``m_i >= 1`` (the rounded sum of n numbers in [0, 1] is at
    most n). Fleming-Viot survival relies on both.

    Parameters
    ----------
    log_weights : array, shape (*batch, n)
        Unnormalised log-weights; ``-inf`` is weight zero. A row must have a finite entry.

    Returns
    -------
    array, shape (*batch, n)
        The dtype of ``log_weights``; float32 for float16 and bfloat16 (whose sums overflow from 65,504 on).

    Raises
    ------
    InvalidWeightsError, ExtinctionError
        On the host, for NaN or ``+inf`` log-weights or a row of ``-inf`` (:func:`smckit.resamplers.kit.shift`).
    """
    xp = namespace(log_weights)
    n = log_weights.shape[-1]
    e = kit.exp_(kit.shift(kit.float32_or_wider(log_weights), name="fleming-viot"))
    e *= float(n) / xp.sum(e, axis=-1, keepdims=True)
    return e


def expected_death_fraction(log_weights: Array, beta: Array | float = 1.0) -> Array:
    """Expected fraction of particles that Fleming-Viot resampling kills: ``(1/n) sum_i (1 - n W_i(beta))+``.

    ``W(beta)`` is the row-normalised ``w**beta``. The function is non-decreasing in beta: with ``l_i`` the
    log-weights, ``A(beta) = log sum_i exp(beta l_i)`` is convex, so the tempered mean ``A'(beta) = E_beta[l]``
    exceeds the threshold ``(A(beta) - log n) / beta`` below which a particle can die; the derivative of the
    dying mass, ``-sum_{dying i} W_i (l_i - E_beta[l])``, is then non-negative.

    Parameters
    ----------
    log_weights : array, shape (*batch, n)
        Unnormalised log-weights (shift-invariant; ``-inf`` is weight zero).
    beta : float or array of shape (*batch,)
        The selection exponent(s), positive.

    Returns
    -------
    array, shape (*batch,), the dtype of ``log_weights``
    """
    xp = namespace(log_weights)
    if not hasattr(beta, "shape"):
        beta = xp.full(
            tuple(log_weights.shape[:-1]), float(beta), dtype=log_weights.dtype, device=device_of(log_weights)
        )
    m = relative_weights(temper(log_weights, beta))
    return xp.mean(xp.clip(1.0 - m, 0.0, None), axis=-1)


class AbsorptionController:
    """Chooses the selection exponent beta per row so that the death fraction tracks ``target``.

    Parameters
    ----------
    target : float in (0, 1)
        The absorption rate alpha*: the desired fraction of particles killed per resampling.
    beta_bounds : (float, float)
        ``0 < low < high``: beta is kept in this interval.

    Raises
    ------
    InvalidArgumentError
        For a target outside (0, 1) or invalid bounds.
    """

    name = "controller"

    def __init__(self, target: float, *, beta_bounds: tuple[float, float] = (1e-3, 1e3)):
        target = float(target)
        if not 0.0 < target < 1.0:
            raise InvalidArgumentError(f"the absorption rate must be in (0, 1), got {target}")
        low, high = (float(b) for b in beta_bounds)
        if not 0.0 < low < high < math.inf:
            raise InvalidArgumentError(f"beta_bounds must satisfy 0 < low < high < inf, got {beta_bounds}")
        self.target = target
        self.beta_bounds = (low, high)

    def beta(self, log_weights: Array) -> Array:
        """The exponent to apply to ``log_weights`` (shape ``(*batch, n)``), shape ``(*batch,)``."""
        raise NotImplementedError

    def observe(self, death_fraction: Array) -> None:
        """Feed back the observed death fraction ``(*batch,)`` of the resampling that used :meth:`beta`."""

    def reset(self) -> None:
        """Forget any state kept across calls."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target}, beta_bounds={self.beta_bounds})"


class RobbinsMonro(AbsorptionController):
    """Robbins-Monro stochastic approximation of the exponent that gives ``target`` deaths.

    After the k-th resampling (k = 1, 2, ...) with observed death fraction ``d_k`` (deaths / n, per row):

        log beta_{k+1} = log beta_k - clip(gamma_k (d_k - alpha*) / alpha*, -max_step, max_step),
        gamma_k = step_size / k**step_exponent,

    then clipped to ``beta_bounds``. Too many deaths lower beta (gentler selection), too few raise it.

    Choices, and why:

    - ``log beta``, not beta: beta stays positive and one step changes it by a factor, whatever its scale.
    - the error relative to the target, ``(d - alpha*) / alpha*``: the sensitivity of the expected death
      fraction to ``log beta`` is close to ``alpha*`` itself (exactly ``alpha*`` for small spreads of the
      log-weights, between ``0.4 alpha*`` and ``alpha*`` for Gaussian log-weights with targets up to 0.9), so
      the effective gain is about ``gamma_k`` for every target, and ``step_size = 1`` is close to a Newton step at
      the first update. The error is linear in ``d``, so the root of the mean update is exactly
      ``E[d](beta) = alpha*``.
    - ``step_exponent = 0.6``: in (1/2, 1] the steps satisfy the Robbins-Monro conditions (sum gamma_k = inf,
      sum gamma_k**2 < inf), so for a steady spread of weights beta converges to that root; a decay slower than
      ``1/k`` keeps the controller able to follow weights whose spread drifts during a run.
    - ``max_step = 1``: far from the root the relative error is unbounded above (``d`` up to 1 for a small
      target), so one step may change beta by at most a factor e; near the root it does not bind.

    Measured on log-weights N(0, 1) per step (16 rows): with n = 500 particles, ``log beta`` is within 0.05 of the
    root after 30 resamplings for targets 0.05 to 0.8; with n = 64, within 0.1 after 60.

    The state (current beta per row and the step counter k) lives on the controller; it is created on the first
    call with the batch shape, dtype and device of the log-weights, and recreated if those change.

    Parameters
    ----------
    target : float in (0, 1)
        The absorption rate alpha*.
    beta0 : float
        Initial exponent (1: start from the plain weights).
    step_size : float
        The constant c of ``gamma_k = c / k**kappa``; positive.
    step_exponent : float in (1/2, 1]
        The decay kappa.
    max_step : float
        The largest change of ``log beta`` in one update; positive.
    beta_bounds : (float, float)
        Interval that beta is clipped to.

    Raises
    ------
    InvalidArgumentError
        For invalid parameters.
    """

    name = "robbins-monro"

    def __init__(
        self,
        target: float,
        *,
        beta0: float = 1.0,
        step_size: float = 1.0,
        step_exponent: float = 0.6,
        max_step: float = 1.0,
        beta_bounds: tuple[float, float] = (1e-3, 1e3),
    ):
        super().__init__(target, beta_bounds=beta_bounds)
        if not step_size > 0.0:
            raise InvalidArgumentError(f"step_size must be positive, got {step_size}")
        if not 0.5 < step_exponent <= 1.0:
            raise InvalidArgumentError(f"step_exponent must be in (1/2, 1], got {step_exponent}")
        if not max_step > 0.0:
            raise InvalidArgumentError(f"max_step must be positive, got {max_step}")
        low, high = self.beta_bounds
        if not low <= beta0 <= high:
            raise InvalidArgumentError(f"beta0={beta0} is outside beta_bounds {self.beta_bounds}")
        self.beta0 = float(beta0)
        self.step_size = float(step_size)
        self.step_exponent = float(step_exponent)
        self.max_step = float(max_step)
        self.k = 0
        self._log_beta: Array = None

    def reset(self) -> None:
        """Return to ``beta0`` and step 1."""
        self.k = 0
        self._log_beta = None

    def _state_for(self, log_weights: Array) -> Array:
        xp = namespace(log_weights)
        batch = tuple(log_weights.shape[:-1])
        cur = self._log_beta
        if (
            cur is None
            or tuple(cur.shape) != batch
            or cur.dtype != log_weights.dtype
            or str(device_of(cur)) != str(device_of(log_weights))
            or type(cur) is not type(log_weights)
        ):
            self.reset()
            cur = xp.full(batch, math.log(self.beta0), dtype=log_weights.dtype, device=device_of(log_weights))
            self._log_beta = cur
        return cur

    def beta(self, log_weights: Array) -> Array:
        """The current exponent per row, shape ``(*batch,)`` (``beta0`` at the first call)."""
        return namespace(log_weights).exp(self._state_for(log_weights))

    def observe(self, death_fraction: Array) -> None:
        """One Robbins-Monro step from the observed death fraction ``(*batch,)``."""
        if self._log_beta is None:
            raise InvalidArgumentError("observe() called before beta(): the controller has no state yet")
        xp = namespace(self._log_beta)
        self.k += 1
        gamma = self.step_size / self.k**self.step_exponent
        error = (xp.astype(death_fraction, self._log_beta.dtype) - self.target) / self.target
        step = xp.clip(gamma * error, -self.max_step, self.max_step)
        low, high = (math.log(b) for b in self.beta_bounds)
        self._log_beta = xp.clip(self._log_beta - step, low, high)

    @property
    def current_beta(self) -> Array | None:
        """The exponent the next call will use, shape ``(*batch,)``, or ``None`` before the first call."""
        return None if self._log_beta is None else namespace(self._log_beta).exp(self._log_beta)

    def __repr__(self) -> str:
        return (
            f"RobbinsMonro(target={self.target}, beta0={self.beta0}, step_size={self.step_size}, "
            f"step_exponent={self.step_exponent}, max_step={self.max_step}, beta_bounds={self.beta_bounds})"
        )


class ExactBisection(AbsorptionController):
    """Solve ``expected_death_fraction(log_w, beta) = target`` per row by bisection on ``log beta``.

    All rows are bisected at once for a fixed number of iterations (no data-dependent stopping, hence no host
    synchronisation on a GPU). After ``iterations`` halvings of ``[log low, log high]`` the exponent is known to
    a relative precision of ``log(high / low) / 2**iterations`` (about 1e-8 with the defaults). A row whose
    target cannot be reached (too few distinct weights) gets the upper bound; a row of equal weights, whose
    death fraction is zero for every beta, too.

    Parameters
    ----------
    target : float in (0, 1)
        The absorption rate alpha*.
    iterations : int
        Number of bisection steps, at least 1.
    beta_bounds : (float, float)
        The search interval for beta.

    Raises
    ------
    InvalidArgumentError
        For invalid parameters.
    """

    name = "exact"

    def __init__(self, target: float, *, iterations: int = 30, beta_bounds: tuple[float, float] = (1e-3, 1e3)):
        super().__init__(target, beta_bounds=beta_bounds)
        if int(iterations) < 1:
            raise InvalidArgumentError(f"iterations must be at least 1, got {iterations}")
        self.iterations = int(iterations)

    def beta(self, log_weights: Array) -> Array:
        """The exponent per row whose expected death fraction is ``target``, shape ``(*batch,)``."""
        xp = namespace(log_weights)
        batch = tuple(log_weights.shape[:-1])
        dev = device_of(log_weights)
        low = xp.full(batch, math.log(self.beta_bounds[0]), dtype=log_weights.dtype, device=dev)
        high = xp.full(batch, math.log(self.beta_bounds[1]), dtype=log_weights.dtype, device=dev)
        # Shift once so that every row's largest log-weight is 0; tempering keeps it 0 (and -inf stays -inf
        # for beta > 0), so each iteration needs only exp, a sum and a clip.
        top = xp.max(log_weights, axis=-1, keepdims=True)
        z = log_weights - xp.where(xp.isfinite(top), top, xp.zeros_like(top))
        n = float(log_weights.shape[-1])
        for _ in range(self.iterations):
            mid = 0.5 * (low + high)
            e = xp.exp(xp.exp(mid)[..., None] * z)
            m = e * (n / xp.sum(e, axis=-1, keepdims=True))
            below = xp.mean(xp.clip(1.0 - m, 0.0, None), axis=-1) < self.target
            low = xp.where(below, mid, low)
            high = xp.where(below, high, mid)
        return xp.exp(0.5 * (low + high))

    def __repr__(self) -> str:
        return f"ExactBisection(target={self.target}, iterations={self.iterations}, beta_bounds={self.beta_bounds})"


CONTROLLERS = ("robbins-monro", "rm", "exact", "bisection")
"""Controller names accepted by :func:`make_controller` (``"rm"`` and ``"bisection"`` are aliases)."""


def make_controller(kind: str, target: float, **options: Any) -> AbsorptionController:
    """A controller by name: ``"robbins-monro"`` (:class:`RobbinsMonro`) or ``"exact"`` (:class:`ExactBisection`).

    Raises
    ------
    InvalidArgumentError
        For an unknown name or invalid options.
    """
    if kind in ("robbins-monro", "rm"):
        return RobbinsMonro(target, **options)
    if kind in ("exact", "bisection"):
        return ExactBisection(target, **options)
    raise InvalidArgumentError(f"unknown absorption controller {kind!r}; choose one of {CONTROLLERS}")
