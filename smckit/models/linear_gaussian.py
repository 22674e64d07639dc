"""The linear Gaussian state-space model, the one SSM whose filter is known exactly (Kalman).

    x_0 ~ N(mu0, P0),    x_t = A x_{t-1} + N(0, Q),    y_t = C x_t + N(0, R).

It is the reference for testing particle filters: :func:`smckit.models.kalman_filter` gives the exact
log-likelihood and filtering moments, and :meth:`LinearGaussian.optimal_proposal` the locally optimal
proposal ``p(x_t | x_{t-1}, y_t)`` of a guided filter.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from smckit.backend import Array, namespace
from smckit.errors import InvalidArgumentError
from smckit.models.ssm import (
    Parameters,
    Proposal,
    StateSpaceModel,
    cholesky,
    gaussian_logpdf,
    gaussian_noise,
)
from smckit.random import RNG

__all__ = ["LinearGaussian", "OptimalProposal"]


def _log_norm(chol: np.ndarray) -> float:
    return -0.5 * chol.shape[0] * math.log(2 * math.pi) - float(np.sum(np.log(np.diag(chol))))


class LinearGaussian(StateSpaceModel):
    """Linear Gaussian state-space model.

    Parameters
    ----------
    A : array_like, shape (dx, dx)
        Transition matrix.
    C : array_like, shape (dy, dx)
        Observation matrix.
    Q : array_like, shape (dx, dx)
        Transition noise covariance (positive definite).
    R : array_like, shape (dy, dy)
        Observation noise covariance (positive definite).
    mu0 : array_like, shape (dx,)
        Mean of x_0.
    P0 : array_like, shape (dx, dx)
        Covariance of x_0 (positive definite).

    Raises
    ------
    InvalidArgumentError
        If the shapes disagree or a covariance is not symmetric positive definite.

    Examples
    --------
    >>> ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    >>> x, y = ssm.simulate(10, seed=0)
    >>> x.shape, y.shape
    ((10, 1), (10, 1))
    """

    def __init__(self, A: Any, C: Any, Q: Any, R: Any, mu0: Any, P0: Any):
        A, C, Q, R, P0 = (np.atleast_2d(np.asarray(m, dtype=np.float64)) for m in (A, C, Q, R, P0))
        mu0 = np.atleast_1d(np.asarray(mu0, dtype=np.float64))
        dx, dy = A.shape[0], C.shape[0]
        expected = {"A": (dx, dx), "C": (dy, dx), "Q": (dx, dx), "R": (dy, dy), "mu0": (dx,), "P0": (dx, dx)}
        got = {"A": A.shape, "C": C.shape, "Q": Q.shape, "R": R.shape, "mu0": mu0.shape, "P0": P0.shape}
        wrong = {k: v for k, v in got.items() if v != expected[k]}
        if wrong:
            raise InvalidArgumentError(
                f"LinearGaussian with dx={dx}, dy={dy} expects shapes {expected}; these differ: {wrong}"
            )
        self.dim_x, self.dim_y = dx, dy
        self.A, self.C, self.Q, self.R, self.mu0, self.P0 = A, C, Q, R, mu0, P0
        chol_q, chol_r, chol_p0 = cholesky(Q, "Q"), cholesky(R, "R"), cholesky(P0, "P0")
        self._log_norm_q, self._log_norm_r, self._log_norm_p0 = _log_norm(chol_q), _log_norm(chol_r), _log_norm(chol_p0)
        self.params = Parameters(
            A=A,
            C=C,
            mu0=mu0,
            chol_q=chol_q,
            chol_r=chol_r,
            chol_p0=chol_p0,
            chol_q_inv=np.linalg.inv(chol_q),
            chol_r_inv=np.linalg.inv(chol_r),
            chol_p0_inv=np.linalg.inv(chol_p0),
        )

    @classmethod
    def scalar(
        cls,
        rho: float = 0.9,
        sigma_x: float = 1.0,
        sigma_y: float = 1.0,
        *,
        mu0: float = 0.0,
        sigma0: float | None = None,
    ) -> LinearGaussian:
        """The scalar model ``x_t = rho x_{t-1} + sigma_x eps_t``, ``y_t = x_t + sigma_y eta_t``.

        Parameters
        ----------
        rho, sigma_x, sigma_y : float
            Autoregression coefficient and noise scales (``sigma_x, sigma_y > 0``).
        mu0 : float
            Mean of x_0.
        sigma0 : float, optional
            Standard deviation of x_0; defaults to the stationary ``sigma_x / sqrt(1 - rho^2)`` when
            ``|rho| < 1`` and to ``sigma_x`` otherwise.
        """
        if sigma_x <= 0 or sigma_y <= 0:
            raise InvalidArgumentError(f"sigma_x and sigma_y must be positive, got {sigma_x} and {sigma_y}")
        if sigma0 is None:
            sigma0 = sigma_x / math.sqrt(1 - rho**2) if abs(rho) < 1 else sigma_x
        return cls(A=[[rho]], C=[[1.0]], Q=[[sigma_x**2]], R=[[sigma_y**2]], mu0=[mu0], P0=[[sigma0**2]])

    # -- the SSM interface ------------------------------------------------------------------------------
    def _mat(self, name: str, like: Array) -> Array:
        return self.params.get(name, like)

    def _apply(self, name: str, x: Array) -> Array:
        """``x @ M.T`` for the parameter matrix ``M`` (a product in the 1x1 case)."""
        m = self._mat(name, x)
        if m.shape == (1, 1):
            return x * m[0]
        xp = namespace(x)
        return xp.matmul(x, xp.matrix_transpose(m))

    def sample_initial(self, shape: tuple[int, ...], rng: RNG, *, like: Array) -> Array:
        eps = rng.normal((*shape, self.dim_x), like=like)
        return self._mat("mu0", like) + gaussian_noise(eps, self._mat("chol_p0", like))

    def logpdf_initial(self, x: Array) -> Array:
        return gaussian_logpdf(x - self._mat("mu0", x), self._mat("chol_p0_inv", x), self._log_norm_p0)

    def sample_transition(self, t: int, x_prev: Array, rng: RNG) -> Array:
        eps = rng.normal(tuple(x_prev.shape), like=x_prev)
        return self._apply("A", x_prev) + gaussian_noise(eps, self._mat("chol_q", x_prev))

    def logpdf_transition(self, t: int, x_prev: Array, x: Array) -> Array:
        return gaussian_logpdf(x - self._apply("A", x_prev), self._mat("chol_q_inv", x), self._log_norm_q)

    def logpdf_transition_max(self, t: int) -> float:
        """The Gaussian transition density's maximum, ``log N(0; 0, Q)``."""
        return self._log_norm_q

    def sample_observation(self, t: int, x: Array, rng: RNG) -> Array:
        mean = self._apply("C", x)
        eps = rng.normal(tuple(mean.shape), like=x)
        return mean + gaussian_noise(eps, self._mat("chol_r", x))

    def logpdf_observation(self, t: int, x: Array, y: Array) -> Array:
        return gaussian_logpdf(y - self._apply("C", x), self._mat("chol_r_inv", x), self._log_norm_r)

    def optimal_proposal(self) -> OptimalProposal:
        """The locally optimal proposal ``p(x_t | x_{t-1}, y_t)`` (and ``p(x_0 | y_0)`` at t = 0)."""
        return OptimalProposal(self)

    def __repr__(self) -> str:
        return f"LinearGaussian(dim_x={self.dim_x}, dim_y={self.dim_y})"


class OptimalProposal(Proposal):
    """The locally optimal proposal of a linear Gaussian model.

    Given x_{t-1}, the prior ``N(m, S)`` of x_t (``m = A x_{t-1}``, ``S = Q``; at t = 0 ``m = mu0``,
    ``S = P0``) and the observation ``y_t = C x_t + N(0, R)`` give the Gaussian posterior

        Sigma = (S^{-1} + C^T R^{-1} C)^{-1},    mean = Sigma (S^{-1} m + C^T R^{-1} y_t).

    With it the guided filter's potential ``f g / q`` equals the predictive density
    ``p(y_t | x_{t-1}) = N(y_t; C m, C S C^T + R)``, which does not depend on the proposed x_t: the weights
    of a step carry no variance from the move.

    Parameters
    ----------
    ssm : LinearGaussian
    """

    def __init__(self, ssm: LinearGaussian):
        self.ssm = ssm
        r_inv = np.linalg.inv(ssm.R)
        ct_r_inv = ssm.C.T @ r_inv
        values: dict[str, np.ndarray] = {}
        self._log_norm: dict[str, float] = {}
        for key, prior_cov in (("0", ssm.P0), ("t", ssm.Q)):
            s_inv = np.linalg.inv(prior_cov)
            sigma = np.linalg.inv(s_inv + ct_r_inv @ ssm.C)
            sigma = 0.5 * (sigma + sigma.T)
            chol = cholesky(sigma, "the optimal proposal's covariance")
            values[f"gain_m{key}"] = sigma @ s_inv  # mean = gain_m @ m + gain_y @ y
            values[f"gain_y{key}"] = sigma @ ct_r_inv
            values[f"chol{key}"] = chol
            values[f"chol_inv{key}"] = np.linalg.inv(chol)
            self._log_norm[key] = _log_norm(chol)
        values["mu0"] = ssm.mu0
        values["A"] = ssm.A
        self.params = Parameters(**values)

    def _mean(self, key: str, m: Array, y: Array) -> Array:
        xp = namespace(y)
        gm = self.params.get(f"gain_m{key}", y)
        gy = self.params.get(f"gain_y{key}", y)
        return xp.matmul(m, xp.matrix_transpose(gm)) + xp.matmul(y, xp.matrix_transpose(gy))

    def _prior_mean(self, x_prev: Array) -> Array:
        xp = namespace(x_prev)
        return xp.matmul(x_prev, xp.matrix_transpose(self.params.get("A", x_prev)))

    def sample_initial(self, shape: tuple[int, ...], y: Array, rng: RNG) -> Array:
        xp = namespace(y)
        m = self.params.get("mu0", y)
        mean = self._mean("0", xp.broadcast_to(m, (*y.shape[:-1], m.shape[0])), y)
        eps = rng.normal((*shape, self.ssm.dim_x), like=y)
        return mean + gaussian_noise(eps, self.params.get("chol0", y))

    def logpdf_initial(self, x: Array, y: Array) -> Array:
        xp = namespace(y)
        m = self.params.get("mu0", y)
        mean = self._mean("0", xp.broadcast_to(m, (*y.shape[:-1], m.shape[0])), y)
        return gaussian_logpdf(x - mean, self.params.get("chol_inv0", x), self._log_norm["0"])

    def sample(self, t: int, x_prev: Array, y: Array, rng: RNG) -> Array:
        mean = self._mean("t", self._prior_mean(x_prev), y)
        eps = rng.normal(tuple(mean.shape), like=x_prev)
        return mean + gaussian_noise(eps, self.params.get("cholt", x_prev))

    def logpdf(self, t: int, x_prev: Array, x: Array, y: Array) -> Array:
        mean = self._mean("t", self._prior_mean(x_prev), y)
        return gaussian_logpdf(x - mean, self.params.get("chol_invt", x), self._log_norm["t"])

    def __repr__(self) -> str:
        return f"OptimalProposal({self.ssm!r})"
