"""MCMC moves for SMC samplers: random walk, MALA and HMC, each invariant for a tempered posterior.

A move leaves invariant the target of the sampler's current step,

    log pi(x) = log prior(x) + lam * log L(x)        (:class:`Target`),

and works in the coordinates ``z`` whitened by the particles' covariance ``Sigma = L L^T`` (``x = L z``): the
particles tell each move the target's scale and correlations, and a step size ``h`` per batch row is left to
tune. In ``z``:

- random walk: ``z' = z + h xi``;
- MALA: ``z' = z + (h^2 / 2) grad_z log pi(z) + h xi``, with the Metropolis-Hastings correction for the
  asymmetric proposal;
- HMC: ``n_leapfrog`` leapfrog steps of size ``h`` with momentum ``p ~ N(0, I)``.

``grad_z = grad_x L`` (row vectors). The linear change of variables has a constant Jacobian, so the acceptance
ratios are those of the whitened target. Step sizes are adapted between SMC steps from the acceptance rate of the
last one (:meth:`Move.tune`): ``log h += rate * (acceptance - target_acceptance)``; within a step the kernel is
fixed, so each move is exactly invariant. A proposal whose log-target is NaN (a diverging HMC trajectory, say)
is rejected like one at ``-inf``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from smckit.backend import Array, device_of, namespace
from smckit.errors import InvalidArgumentError
from smckit.models.posterior import Evaluated, Posterior
from smckit.random import RNG

__all__ = ["Target", "Move", "RandomWalk", "MALA", "HMC", "tempered", "whitening_cholesky"]


def tempered(exponent: Array, log_likelihood: Array) -> Array:
    """``exponent * log_likelihood`` with ``0 * (-inf) = 0``: a zero exponent means no likelihood at all.

    Parameters
    ----------
    exponent : array, broadcasting with ``log_likelihood``
    log_likelihood : array, shape (*batch, n)

    Returns
    -------
    array, shape (*batch, n)
    """
    xp = namespace(log_likelihood)
    return exponent * xp.where(exponent > 0, log_likelihood, xp.zeros_like(log_likelihood))


class Target:
    """The log-density ``log prior(x) + exponent * log L(x)`` that a move leaves invariant.

    Parameters
    ----------
    posterior : Posterior
    exponent : array, shape (*batch, 1)
        The tempering exponent of each row (1 for data tempering).
    data : (start, stop), optional
        The observations in the likelihood (data tempering).
    """

    def __init__(self, posterior: Posterior, exponent: Array, data: tuple[int, int] | None = None):
        self.posterior = posterior
        self.exponent = exponent
        self.data = data
        self.evaluations = 0

    def evaluate(self, x: Array, *, grad: bool = False) -> Evaluated:
        """The prior and likelihood parts at ``x`` ``(*batch, k, d)``, with gradients when ``grad``.

        Parameters
        ----------
        x : array, shape (*batch, k, d)
        grad : bool

        Returns
        -------
        Evaluated
        """
        self.evaluations += 1
        return self.posterior.evaluate(x, grad=grad, data=self.data)

    def log_density(self, ev: Evaluated) -> Array:
        """``log prior + exponent * log L``, shape (*batch, k)."""
        return ev.log_prior + tempered(self.exponent, ev.log_likelihood)

    def grad(self, ev: Evaluated) -> Array:
        """The gradient of :meth:`log_density` with respect to x, shape (*batch, k, d)."""
        xp = namespace(ev.x)
        lam = xp.expand_dims(self.exponent, axis=-1)
        g_lik = xp.where(lam > 0, ev.grad_log_likelihood, xp.zeros_like(ev.grad_log_likelihood))
        return ev.grad_log_prior + lam * g_lik


def whitening_cholesky(x: Array, log_w: Array) -> Array:
    """Lower Cholesky factor of the weighted covariance of the particles, per row: ``(*batch, d, d)``.

    A jitter of ``sqrt(eps)`` times the mean variance keeps the factor defined when the particles collapse.

    Parameters
    ----------
    x : array, shape (*batch, n, d)
    log_w : array, shape (*batch, n)
        Log-weights (normalised or not).

    Returns
    -------
    array, shape (*batch, d, d)
    """
    xp = namespace(x)
    d = x.shape[-1]
    w = xp.exp(log_w - xp.max(log_w, axis=-1, keepdims=True))
    w = xp.expand_dims(w / xp.sum(w, axis=-1, keepdims=True), axis=-1)
    centred = x - xp.sum(w * x, axis=-2, keepdims=True)
    cov = xp.matmul(xp.matrix_transpose(centred), w * centred)
    eye = xp.eye(d, dtype=x.dtype, device=device_of(x))
    eps = float(np.finfo(np.float32 if "float32" in str(x.dtype) else np.float64).eps)
    mean_var = xp.sum(cov * eye, axis=(-2, -1)) / d
    jitter = math.sqrt(eps) * (mean_var + eps)
    return xp.linalg.cholesky(cov + xp.expand_dims(xp.expand_dims(jitter, axis=-1), axis=-1) * eye)


class Move(ABC):
    """An MCMC kernel in whitened coordinates with an adapted step size.

    Attributes
    ----------
    target_acceptance : float
        The acceptance rate the step size is tuned to.
    needs_gradient : bool
        Whether the move evaluates gradients of the log-target.
    adapt_rate : float
        ``log h += adapt_rate * (acceptance - target_acceptance)`` between SMC steps (0: fixed step size).
    """

    target_acceptance: float = 0.234
    needs_gradient: bool = False

    def __init__(
        self, *, step_size: float | None = None, target_acceptance: float | None = None, adapt_rate: float = 1.0
    ):
        if step_size is not None and not step_size > 0:
            raise InvalidArgumentError(f"{type(self).__name__}: step_size must be positive, got {step_size}")
        if target_acceptance is not None and not 0.0 < target_acceptance < 1.0:
            raise InvalidArgumentError(
                f"{type(self).__name__}: target_acceptance must be in (0, 1), got {target_acceptance}"
            )
        if not adapt_rate >= 0:
            raise InvalidArgumentError(f"{type(self).__name__}: adapt_rate must be >= 0, got {adapt_rate}")
        self.step_size = step_size
        if target_acceptance is not None:
            self.target_acceptance = float(target_acceptance)
        self.adapt_rate = float(adapt_rate)

    def initial_step_size(self, d: int) -> float:
        """The step size of the first SMC step in dimension ``d`` (the given one, or the move's default).

        Parameters
        ----------
        d : int

        Returns
        -------
        float
        """
        return float(self.step_size) if self.step_size is not None else self.default_step_size(d)

    @abstractmethod
    def default_step_size(self, d: int) -> float:
        """The classic optimal scaling of the move for a standard Gaussian target in dimension ``d``."""

    def tune(self, h: Array, acceptance: Array) -> Array:
        """The next step size of each row from the acceptance rate of the last step.

        Parameters
        ----------
        h : array, shape (*batch,)
        acceptance : array, shape (*batch,)

        Returns
        -------
        array, shape (*batch,)
        """
        xp = namespace(h)
        return h * xp.exp(self.adapt_rate * (acceptance - self.target_acceptance))

    @abstractmethod
    def step(self, target: Target, ev: Evaluated, chol: Array, h: Array, rng: RNG) -> tuple[Evaluated, Array]:
        """One kernel application to every particle.

        Parameters
        ----------
        target : Target
        ev : Evaluated
            The current particles ``(*batch, k, d)`` (with gradients when the move needs them).
        chol : array, shape (*batch, d, d)
            Whitening Cholesky factor.
        h : array, shape (*batch, 1, 1)
            Step size per row.
        rng : RNG

        Returns
        -------
        ev : Evaluated
            The new particles (with gradients when the move needs them).
        accepted : boolean array, shape (*batch, k)
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(step_size={self.step_size}, target_acceptance={self.target_acceptance})"


def _select(accept: Array, new: Evaluated, old: Evaluated) -> Evaluated:
    xp = namespace(accept)
    wide = xp.expand_dims(accept, axis=-1)

    def pick(a: Any, b: Any) -> Any:
        if a is None:
            return None
        return xp.where(wide if a.ndim == accept.ndim + 1 else accept, a, b)

    return Evaluated(*(pick(a, b) for a, b in zip(new, old)))


def _accept(log_old: Array, log_new: Array, rng: RNG) -> Array:
    """Metropolis-Hastings acceptance ``log U < log_new - log_old``, written without a subtraction of the two
    (so that ``-inf`` on both sides gives no NaN); ``log U = -Exp(1)``. NaN on the new side rejects."""
    return log_old - rng.exponential(tuple(log_old.shape), like=log_old) < log_new


def _half_norm2(v: Array) -> Array:
    xp = namespace(v)
    return 0.5 * xp.sum(v * v, axis=-1)


def _to_x(dz: Array, chol: Array) -> Array:
    """A displacement in whitened coordinates, in the particles' coordinates: ``dz L^T``."""
    xp = namespace(dz)
    return xp.matmul(dz, xp.matrix_transpose(chol))


def _to_z(g: Array, chol: Array) -> Array:
    """A gradient in the particles' coordinates, in whitened ones: ``g L``."""
    xp = namespace(g)
    return xp.matmul(g, chol)


class RandomWalk(Move):
    """Gaussian random-walk Metropolis with the particles' covariance: ``x' = x + h L xi``.

    Parameters
    ----------
    scale : float
        The first step size is ``scale / sqrt(d)`` (2.38: Roberts, Gelman and Gilks, 1997).
    step_size : float, optional
        The first step size, overriding ``scale``.
    target_acceptance : float
        Default 0.234.
    adapt_rate : float
        Default 1; 0 keeps the step size fixed.
    """

    target_acceptance = 0.234

    def __init__(self, scale: float = 2.38, **kwargs: Any):
        super().__init__(**kwargs)
        if not scale > 0:
            raise InvalidArgumentError(f"RandomWalk: scale must be positive, got {scale}")
        self.scale = float(scale)

    def default_step_size(self, d: int) -> float:
        return self.scale / math.sqrt(d)

    def step(self, target: Target, ev: Evaluated, chol: Array, h: Array, rng: RNG) -> tuple[Evaluated, Array]:
        x = ev.x
        new = target.evaluate(x + h * _to_x(rng.normal(tuple(x.shape), like=x), chol))
        accept = _accept(target.log_density(ev), target.log_density(new), rng)
        return _select(accept, new, ev), accept


class MALA(Move):
    """The Metropolis-adjusted Langevin algorithm, preconditioned by the particles' covariance.

    Parameters
    ----------
    step_size : float, optional
        The first step size; default ``1.65 d^(-1/6)`` (Roberts and Rosenthal, 1998).
    target_acceptance : float
        Default 0.574.
    adapt_rate : float
        Default 1.
    """

    target_acceptance = 0.574
    needs_gradient = True

    def default_step_size(self, d: int) -> float:
        return 1.65 * d ** (-1.0 / 6.0)

    def step(self, target: Target, ev: Evaluated, chol: Array, h: Array, rng: RNG) -> tuple[Evaluated, Array]:
        x = ev.x
        g = _to_z(target.grad(ev), chol)
        xi = rng.normal(tuple(x.shape), like=x)
        new = target.evaluate(x + _to_x(h * xi + 0.5 * h * h * g, chol), grad=True)
        g_new = _to_z(target.grad(new), chol)
        # log q(x' | x) = -|xi|^2 / 2 and log q(x | x') = -|xi + h (g + g') / 2|^2 / 2, up to the same constant.
        log_old = target.log_density(ev) - _half_norm2(xi)
        log_new = target.log_density(new) - _half_norm2(xi + 0.5 * h * (g + g_new))
        accept = _accept(log_old, log_new, rng)
        return _select(accept, new, ev), accept


class HMC(Move):
    """Hamiltonian Monte Carlo with ``n_leapfrog`` leapfrog steps, preconditioned by the particles' covariance.

    Parameters
    ----------
    n_leapfrog : int
        Leapfrog steps per proposal (each evaluates one gradient).
    step_size : float, optional
        The first leapfrog step size; default ``d^(-1/4)`` (Beskos et al., 2013).
    target_acceptance : float
        Default 0.65.
    adapt_rate : float
        Default 1.
    """

    target_acceptance = 0.65
    needs_gradient = True

    def __init__(self, n_leapfrog: int = 10, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(n_leapfrog, bool) or int(n_leapfrog) != n_leapfrog or n_leapfrog < 1:
            raise InvalidArgumentError(f"HMC: n_leapfrog must be a positive integer, got {n_leapfrog!r}")
        self.n_leapfrog = int(n_leapfrog)

    def default_step_size(self, d: int) -> float:
        return d ** (-0.25)

    def step(self, target: Target, ev: Evaluated, chol: Array, h: Array, rng: RNG) -> tuple[Evaluated, Array]:
        x = ev.x
        p0 = rng.normal(tuple(x.shape), like=x)
        p = p0 + 0.5 * h * _to_z(target.grad(ev), chol)
        cur = ev
        for k in range(self.n_leapfrog):
            cur = target.evaluate(cur.x + _to_x(h * p, chol), grad=True)
            g = _to_z(target.grad(cur), chol)
            p = p + (0.5 if k == self.n_leapfrog - 1 else 1.0) * h * g
        accept = _accept(target.log_density(ev) - _half_norm2(p0), target.log_density(cur) - _half_norm2(p), rng)
        return _select(accept, cur, ev), accept

    def __repr__(self) -> str:
        return (
            f"HMC(n_leapfrog={self.n_leapfrog}, step_size={self.step_size}, target_acceptance={self.target_acceptance})"
        )
