"""Adaptive tempering: an SMC sampler from a prior to a posterior through the tempered path

    pi_lam(x) ∝ prior(x) L(x)^lam,    0 = lam_(-1) < lam_0 < lam_1 < ... < lam_K = 1.

Each step t, as a Feynman-Kac model run by the engine:

1. (engine) resample, so that the particles are equally weighted draws from pi_{lam_{t-1}};
2. (propose) move each particle with ``n_moves`` random-walk Metropolis steps that leave pi_{lam_{t-1}}
   invariant; the proposal covariance is ``scale^2 / d`` times the covariance of the (equally weighted)
   particles;
3. (propose) choose the next exponent: ``delta_t = lam_t - lam_{t-1}`` is found by bisection so that the
   ESS of the incremental weights ``L(x)^delta_t`` is ``target_ess * n`` (or ``delta_t = 1 - lam_{t-1}``
   when even that keeps the ESS above the target: the last step);
4. (log_potential) weight by ``G_t(x) = L(x)^delta_t``.

Step 0 draws from the prior and chooses lam_0 the same way. The product of the mean incremental weights
estimates the evidence ``Z = ∫ prior(x) L(x) dx``, so the engine's log-evidence is the sampler's.

**Why the default policy is Always.** The weights the engine applies at step t are the incoming weights
times the incremental ones. After resampling the incoming weights are uniform, so the ESS of the weights
actually applied equals the ESS of the incremental weights, which is what the bisection controls. Under
another policy the incoming weights need not be uniform; the model never sees them, so the applied ESS
would not be controlled (the estimates stay valid, the adaptation does not). ``AdaptiveTempering`` therefore
sets ``default_policy = Always()``.

The exponent is part of the particle state (replicated per particle, shape ``(*batch, n)``), so it is
resampled with everything else, and each batch row runs its own exponent schedule. A row that reached
lam = 1 waits (its later increments are zero) until every row has; the run stops when all have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from smckit.backend import Array, device_of, namespace
from smckit.errors import InvalidArgumentError, ShapeError
from smckit.model import FeynmanKac
from smckit.models.ssm import default_like
from smckit.policy import Always
from smckit.random import RNG
from smckit.weights import ess

__all__ = ["AdaptiveTempering", "TemperingState", "Prior", "tempering_trace"]


class Prior(Protocol):
    """What AdaptiveTempering needs of a prior (e.g. :class:`smckit.models.MultivariateNormal`)."""

    def sample(self, shape: tuple[int, ...], rng: RNG, *, like: Array | None = None) -> Array:
        """Draws of shape ``(*shape, d)`` with the backend, dtype and device of ``like``."""
        ...

    def logpdf(self, x: Array) -> Array:
        """Log-density (up to a constant) of ``x`` ``(*shape, d)``; shape ``shape``."""
        ...


@dataclass
class TemperingState:
    """The particles of a tempering run; every array has the particle axis at position ``len(batch)``.

    Attributes
    ----------
    x : array, shape (*batch, n, d)
        The particles.
    log_prior : array, shape (*batch, n)
        ``log prior(x)``.
    log_likelihood : array, shape (*batch, n)
        ``log L(x)``.
    exponent : array, shape (*batch, n)
        The current exponent lam_t of the row (the same for every particle of a row).
    increment : array, shape (*batch, n)
        ``lam_t - lam_{t-1}``, the exponent of the incremental weight ``L(x)^increment`` of this step.
    acceptance : array, shape (*batch, n)
        Fraction of this step's Metropolis moves that each particle accepted (0 at step 0).
    """

    x: Array
    log_prior: Array
    log_likelihood: Array
    exponent: Array
    increment: Array
    acceptance: Array


def tempered(exponent: Array, log_likelihood: Array) -> Array:
    """``exponent * log_likelihood`` with ``0 * (-inf) = 0``: a zero exponent means no tempering at all."""
    xp = namespace(log_likelihood)
    return exponent * xp.where(exponent > 0, log_likelihood, xp.zeros_like(log_likelihood))


class AdaptiveTempering(FeynmanKac):
    """SMC sampler for ``pi(x) ∝ prior(x) L(x)`` by adaptive tempering with random-walk Metropolis moves.

    Parameters
    ----------
    prior : Prior
        ``sample(shape, rng, like=...)`` and ``logpdf(x)``; e.g. ``MultivariateNormal(mean, cov)``.
    log_likelihood : callable
        ``log_likelihood(x)`` for ``x`` of shape ``(*batch, n, d)``, returning ``(*batch, n)`` (real or -inf).
    target_ess : float in (0, 1)
        The ESS fraction each step's weights are tuned to.
    n_moves : int
        Metropolis steps per SMC step.
    scale : float
        The random-walk proposal covariance is ``scale^2 / d`` times the particles' covariance (2.38 is
        the classic optimum for Gaussian targets).
    tol : float, optional
        Bisection tolerance on the ESS fraction: the chosen exponent gives an ESS fraction in
        ``[target_ess, target_ess + tol]``. Default ``sqrt(machine epsilon)`` of the run's dtype.
    max_bisection : int
        The most bisection iterations per step.
    batch_shape : tuple of int
        Independent populations (each with its own exponent schedule) run at once.
    like : array, optional
        Fixes the backend, dtype and device of the run (numpy float64 by default), e.g.
        ``torch.zeros(0, dtype=torch.float32, device="cuda")``.

    Notes
    -----
    Acceptance rates: each particle's fraction of accepted moves is in ``state.acceptance``;
    :meth:`acceptance_rate` averages it per row, and :func:`tempering_trace` gives exponents and acceptance
    rates per step from a run with ``history="full"`` (or from the states of an :class:`smckit.SMC` iteration).

    Examples
    --------
    >>> import numpy as np, smckit
    >>> from smckit.models import AdaptiveTempering, MultivariateNormal
    >>> prior = MultivariateNormal(np.zeros(2), np.eye(2))
    >>> model = AdaptiveTempering(prior, lambda x: -0.5 * np.sum((x - 1.0) ** 2, axis=-1) / 0.1)
    >>> res = smckit.run(model, 500, seed=0)
    >>> float(res.particles.exponent[0])
    1.0
    """

    default_policy = Always()

    def __init__(
        self,
        prior: Prior,
        log_likelihood: Callable[[Array], Array],
        *,
        target_ess: float = 0.5,
        n_moves: int = 5,
        scale: float = 2.38,
        tol: float | None = None,
        max_bisection: int = 100,
        batch_shape: Sequence[int] = (),
        like: Array | None = None,
    ):
        if not 0.0 < target_ess < 1.0:
            raise InvalidArgumentError(f"target_ess must be in (0, 1), got {target_ess}")
        if n_moves < 0 or scale <= 0 or max_bisection < 1:
            raise InvalidArgumentError(
                f"need n_moves >= 0, scale > 0 and max_bisection >= 1; got {n_moves}, {scale}, {max_bisection}"
            )
        if tol is not None and not 0.0 < tol < 1.0:
            raise InvalidArgumentError(f"tol must be in (0, 1), got {tol}")
        self.prior = prior
        self.log_likelihood = log_likelihood
        self.target_ess = float(target_ess)
        self.n_moves = int(n_moves)
        self.scale = float(scale)
        self.max_bisection = int(max_bisection)
        self.batch_shape = tuple(int(b) for b in batch_shape)
        self.like = default_like() if like is None else like
        eps = float(np.finfo(np.float32 if "float32" in str(self.like.dtype) else np.float64).eps)
        self.tol = float(tol) if tol is not None else math.sqrt(eps)

    # -- Feynman-Kac interface --------------------------------------------------------------------------
    def initial(self, n: int, rng: RNG) -> TemperingState:
        x = self.prior.sample((*self.batch_shape, n), rng, like=self.like)
        log_prior = self.prior.logpdf(x)
        log_lik = self._evaluate(x)
        xp = namespace(x)
        zero = xp.zeros(tuple(log_lik.shape), dtype=x.dtype, device=device_of(x))
        increment, exponent = self.next_exponent(log_lik, zero)
        return TemperingState(x, log_prior, log_lik, exponent, increment, zero)

    def propose(self, t: int, state: TemperingState, rng: RNG) -> TemperingState:
        x, log_prior, log_lik, acceptance = self.move(state, rng)
        increment, exponent = self.next_exponent(log_lik, state.exponent)
        return TemperingState(x, log_prior, log_lik, exponent, increment, acceptance)

    def log_potential(self, t: int, prev: TemperingState | None, state: TemperingState) -> Array:
        return tempered(state.increment, state.log_likelihood)

    def done(self, t: int, state: TemperingState) -> bool:
        xp = namespace(state.exponent)
        return bool(xp.all(state.exponent >= 1.0))

    # -- the two ingredients ----------------------------------------------------------------------------
    def next_exponent(self, log_lik: Array, exponent: Array) -> tuple[Array, Array]:
        """Choose the next exponent of every row by bisection on the ESS of the incremental weights.

        Parameters
        ----------
        log_lik : array, shape (*batch, n)
            ``log L`` of the (equally weighted) particles.
        exponent : array, shape (*batch, n)
            The current exponent (constant along the particle axis).

        Returns
        -------
        increment, new_exponent : arrays, shape (*batch, n)
            ``delta`` such that ``ESS(L^delta) / n`` is in ``[target_ess, target_ess + tol]``, or the rest of
            the way to 1 when that keeps the ESS at or above the target (then ``new_exponent`` is exactly 1).
            When no positive ``delta`` reaches the target (a fraction of particles with ``L = 0`` larger than
            ``1 - target_ess``), the smallest ``delta`` tried (``(1 - lam) / 2**max_bisection``): it removes those
            particles and the ESS of that step is below the target.
        """
        xp = namespace(log_lik)
        n = log_lik.shape[-1]
        target = self.target_ess

        def ess_fraction(delta: Array) -> Array:
            return ess(tempered(xp.expand_dims(delta, axis=-1), log_lik)) / n

        lam = exponent[..., 0]
        remaining = xp.clip(1.0 - lam, 0.0, 1.0)
        final = ess_fraction(remaining) >= target
        lo = xp.zeros_like(remaining)
        hi = remaining
        ess_lo = xp.ones_like(remaining)
        for _ in range(self.max_bisection):
            mid = 0.5 * (lo + hi)
            ess_mid = ess_fraction(mid)
            ok = ess_mid >= target
            lo = xp.where(ok, mid, lo)
            ess_lo = xp.where(ok, ess_mid, ess_lo)
            hi = xp.where(ok, hi, mid)
            if bool(xp.all(final | (ess_lo - target <= self.tol))):
                break
        # lo == 0 only when no positive exponent keeps the ESS at the target (e.g. too many particles with
        # L = 0): take the smallest exponent tried, which kills those particles and lets the next step go on.
        delta = xp.where(final, remaining, xp.where(lo > 0, lo, hi))
        new_lam = xp.where(final, xp.ones_like(lam), lam + delta)
        shape = tuple(log_lik.shape)
        return (
            xp.broadcast_to(xp.expand_dims(delta, axis=-1), shape),
            xp.broadcast_to(xp.expand_dims(new_lam, axis=-1), shape),
        )

    def move(self, state: TemperingState, rng: RNG) -> tuple[Array, Array, Array, Array]:
        """``n_moves`` random-walk Metropolis steps invariant for ``prior * L^exponent``.

        Returns
        -------
        x, log_prior, log_likelihood, acceptance
            The moved particles, their densities and each particle's fraction of accepted moves.
        """
        x, log_prior, log_lik = state.x, state.log_prior, state.log_likelihood
        xp = namespace(x)
        lam = state.exponent
        chol_t = xp.matrix_transpose(self.proposal_cholesky(x))
        log_target = log_prior + tempered(lam, log_lik)
        accepted = xp.zeros(tuple(log_lik.shape), dtype=x.dtype, device=device_of(x))
        for _ in range(self.n_moves):
            x_new = x + xp.matmul(rng.normal(tuple(x.shape), like=x), chol_t)
            log_prior_new = self.prior.logpdf(x_new)
            log_lik_new = self._evaluate(x_new)
            log_target_new = log_prior_new + tempered(lam, log_lik_new)
            # Accept when log U < log_target_new - log_target, written without a subtraction so that a
            # current value of -inf never produces NaN; log U = -Exp(1).
            accept = log_target - rng.exponential(tuple(log_target.shape), like=x) < log_target_new
            x = xp.where(xp.expand_dims(accept, axis=-1), x_new, x)
            log_prior = xp.where(accept, log_prior_new, log_prior)
            log_lik = xp.where(accept, log_lik_new, log_lik)
            log_target = xp.where(accept, log_target_new, log_target)
            accepted = accepted + xp.astype(accept, x.dtype)
        return x, log_prior, log_lik, accepted / max(self.n_moves, 1)

    def proposal_cholesky(self, x: Array) -> Array:
        """Cholesky factor of ``scale^2 / d`` times the particles' covariance, per row: ``(*batch, d, d)``.

        The particles are equally weighted here (they were just resampled), so this is their weighted
        covariance. A small jitter keeps the factor defined when the particles have collapsed.
        """
        xp = namespace(x)
        n, d = x.shape[-2], x.shape[-1]
        centred = x - xp.mean(x, axis=-2, keepdims=True)
        cov = xp.matmul(xp.matrix_transpose(centred), centred) / n
        eye = xp.eye(d, dtype=x.dtype, device=device_of(x))
        eps = float(np.finfo(np.float32 if "float32" in str(x.dtype) else np.float64).eps)
        mean_var = xp.sum(cov * eye, axis=(-2, -1)) / d
        jitter = math.sqrt(eps) * (mean_var + eps)
        cov = cov + xp.expand_dims(xp.expand_dims(jitter, axis=-1), axis=-1) * eye
        return xp.linalg.cholesky(cov * (self.scale**2 / d))

    @staticmethod
    def acceptance_rate(state: TemperingState) -> Array:
        """The Metropolis acceptance rate of the step that produced ``state``, per row: ``(*batch,)``."""
        xp = namespace(state.acceptance)
        return xp.mean(state.acceptance, axis=-1)

    def _evaluate(self, x: Array) -> Array:
        log_lik = self.log_likelihood(x)
        if tuple(log_lik.shape) != tuple(x.shape[:-1]):
            raise ShapeError(
                f"log_likelihood returned shape {tuple(log_lik.shape)} for particles of shape {tuple(x.shape)}; "
                f"expected {tuple(x.shape[:-1])}"
            )
        return log_lik

    def __repr__(self) -> str:
        return (
            f"AdaptiveTempering(target_ess={self.target_ess}, n_moves={self.n_moves}, scale={self.scale}, "
            f"batch_shape={self.batch_shape})"
        )


def tempering_trace(states: Sequence[TemperingState]) -> dict[str, np.ndarray]:
    """Exponents and acceptance rates per step, from the states of a run.

    Parameters
    ----------
    states : sequence of TemperingState
        ``result.history.particles`` of a run with ``history="full"``, or ``[step.state for step in smc]``.

    Returns
    -------
    dict with numpy arrays of shape (T, *batch)
        ``exponent`` (lam_t), ``increment`` (lam_t - lam_{t-1}) and ``acceptance`` (the rate of step t's moves;
        0 at step 0).
    """

    def host(a: Any) -> np.ndarray:
        return np.asarray(a.detach().cpu() if hasattr(a, "detach") else a)

    return {
        "exponent": np.stack([host(s.exponent[..., 0]) for s in states]),
        "increment": np.stack([host(s.increment[..., 0]) for s in states]),
        "acceptance": np.stack([host(AdaptiveTempering.acceptance_rate(s)) for s in states]),
    }
