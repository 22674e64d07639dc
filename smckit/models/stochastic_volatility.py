"""The stochastic volatility model: a latent AR(1) log-variance observed through centred Gaussian returns.

    x_0 ~ N(mu, sigma^2 / (1 - rho^2)),    x_t = mu + rho (x_{t-1} - mu) + sigma eps_t,    y_t ~ N(0, exp(x_t)).

The initial law is the stationary one (``|rho| < 1``). The state and the observation are scalars, stored with
an event axis of length one: ``x`` has shape ``(*shape, 1)``.
"""

from __future__ import annotations

import math

from smckit.backend import Array, namespace
from smckit.errors import InvalidArgumentError
from smckit.models.ssm import StateSpaceModel
from smckit.random import RNG

__all__ = ["StochasticVolatility"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class StochasticVolatility(StateSpaceModel):
    """Stochastic volatility model (log-variance AR(1)).

    Parameters
    ----------
    mu : float
        Mean log-variance.
    rho : float
        Autoregression coefficient, ``|rho| < 1``.
    sigma : float
        Volatility of the log-variance, ``sigma > 0``.

    Raises
    ------
    InvalidArgumentError
        If ``|rho| >= 1`` or ``sigma <= 0``.

    Examples
    --------
    >>> ssm = StochasticVolatility(mu=-1.0, rho=0.95, sigma=0.3)
    >>> x, y = ssm.simulate(5, seed=0)
    >>> y.shape
    (5, 1)
    """

    dim_x = 1
    dim_y = 1

    def __init__(self, mu: float = -1.0, rho: float = 0.95, sigma: float = 0.3):
        if not abs(rho) < 1:
            raise InvalidArgumentError(f"the stochastic volatility model needs |rho| < 1, got rho={rho}")
        if not sigma > 0:
            raise InvalidArgumentError(f"sigma must be positive, got {sigma}")
        self.mu, self.rho, self.sigma = float(mu), float(rho), float(sigma)
        self.sigma0 = self.sigma / math.sqrt(1 - self.rho**2)
        self._shift = (1.0 - self.rho) * self.mu  # E[x_t | x_{t-1}] = shift + rho x_{t-1}

    @staticmethod
    def _normal_logpdf(z: Array, scale: float) -> Array:
        """log N(z; 0, scale^2) elementwise, with the event axis of length one summed away."""
        z = z[..., 0]
        return (-0.5 / scale**2) * (z * z) - (math.log(scale) + _HALF_LOG_2PI)

    def sample_initial(self, shape: tuple[int, ...], rng: RNG, *, like: Array) -> Array:
        return self.mu + self.sigma0 * rng.normal((*shape, 1), like=like)

    def logpdf_initial(self, x: Array) -> Array:
        return self._normal_logpdf(x - self.mu, self.sigma0)

    def _mean(self, x_prev: Array) -> Array:
        return self._shift + self.rho * x_prev

    def sample_transition(self, t: int, x_prev: Array, rng: RNG) -> Array:
        return self._mean(x_prev) + self.sigma * rng.normal(tuple(x_prev.shape), like=x_prev)

    def logpdf_transition(self, t: int, x_prev: Array, x: Array) -> Array:
        return self._normal_logpdf(x - self._mean(x_prev), self.sigma)

    def logpdf_transition_max(self, t: int) -> float:
        """The transition density's maximum, ``log N(0; 0, sigma^2)``."""
        return -(math.log(self.sigma) + _HALF_LOG_2PI)

    def sample_observation(self, t: int, x: Array, rng: RNG) -> Array:
        xp = namespace(x)
        return xp.exp(0.5 * x) * rng.normal(tuple(x.shape), like=x)

    def logpdf_observation(self, t: int, x: Array, y: Array) -> Array:
        # log N(y; 0, e^x) = -(log 2 pi + x + y^2 e^{-x}) / 2
        xp = namespace(x)
        x1 = x[..., 0]
        return -0.5 * (x1 + (y[..., 0] * y[..., 0]) * xp.exp(-x1)) - _HALF_LOG_2PI

    def __repr__(self) -> str:
        return f"StochasticVolatility(mu={self.mu}, rho={self.rho}, sigma={self.sigma})"
