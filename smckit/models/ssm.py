"""State-space models: the hidden Markov chain and its observations, written once for numpy and torch.

A state-space model (SSM) is a Markov chain ``x_0 ~ p_0``, ``x_t ~ f_t(. | x_{t-1})`` observed through
``y_t ~ g_t(. | x_t)``. :class:`StateSpaceModel` is its abstract interface; :mod:`smckit.models.filters` turns
one into a Feynman-Kac model (bootstrap or guided particle filter).

Layout: a state is an array of shape ``(*shape, dim_x)`` and an observation ``(*shape, dim_y)``; the leading
``shape`` is anything that broadcasts (batch rows, particles). Densities return arrays of shape ``shape``.
Parameters are stored once as numpy float64 arrays and converted, on first use and then cached, to the
backend, dtype and device of the arrays the methods receive, so the same model object serves numpy, torch on
the CPU and torch on CUDA without moving data in the loop.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from smckit.backend import Array, device_of, is_floating, is_torch, namespace
from smckit.errors import InvalidArgumentError, ShapeError
from smckit.random import RNG, as_rng

__all__ = ["StateSpaceModel", "Proposal", "MultivariateNormal", "Parameters", "default_like"]


def default_like() -> np.ndarray:
    """The reference array of a numpy float64 computation (an empty array)."""
    return np.zeros(0, dtype=np.float64)


class Parameters:
    """Numpy parameters converted on demand to the backend, dtype and device of a reference array.

    Parameters
    ----------
    **values : array_like
        The parameters, stored as numpy float64 arrays.

    Examples
    --------
    >>> p = Parameters(a=[[1.0, 0.0], [0.0, 2.0]])
    >>> p.get("a", np.zeros(0, dtype=np.float32)).dtype
    dtype('float32')
    """

    def __init__(self, **values: Any):
        self.values = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}
        self._cache: dict[tuple[str, str, str], dict[str, Array]] = {}

    def get(self, name: str, like: Array) -> Array:
        """Parameter ``name`` with the backend, dtype and device of ``like``.

        Conversions are cached per backend, dtype and device.

        Parameters
        ----------
        name : str
        like : floating array, any shape
            numpy array or torch tensor.

        Returns
        -------
        array, the parameter's own shape

        Raises
        ------
        InvalidArgumentError
            If ``like`` is not floating point.
        """
        key = ("torch" if is_torch(like) else "numpy", str(like.dtype), str(device_of(like)))
        converted = self._cache.get(key)
        if converted is None:
            if not is_floating(like):
                raise InvalidArgumentError(f"model arrays must be floating point, got dtype {like.dtype}")
            xp = namespace(like)
            converted = {k: xp.asarray(v, dtype=like.dtype, device=device_of(like)) for k, v in self.values.items()}
            self._cache[key] = converted
        return converted[name]


class MultivariateNormal:
    """A Gaussian N(mean, cov) on R^d with vectorised sampling and log-density.

    Parameters
    ----------
    mean : array_like, shape (d,)
    cov : array_like, shape (d, d)
        Symmetric positive definite.

    Raises
    ------
    InvalidArgumentError
        If ``cov`` is not symmetric positive definite or the shapes disagree.
    """

    def __init__(self, mean: Any, cov: Any):
        mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        cov = np.atleast_2d(np.asarray(cov, dtype=np.float64))
        d = mean.shape[0]
        if mean.ndim != 1 or cov.shape != (d, d):
            raise InvalidArgumentError(f"a Gaussian needs mean (d,) and cov (d, d), got {mean.shape} and {cov.shape}")
        chol = cholesky(cov, "cov")
        self.dim = d
        self.params = Parameters(mean=mean, chol=chol, chol_inv=np.linalg.inv(chol))
        self.log_norm = -0.5 * d * math.log(2 * math.pi) - float(np.sum(np.log(np.diag(chol))))

    @property
    def mean(self) -> np.ndarray:
        """The mean, shape (d,)."""
        return self.params.values["mean"]

    @property
    def cov(self) -> np.ndarray:
        """The covariance, shape (d, d)."""
        chol = self.params.values["chol"]
        return chol @ chol.T

    def sample(self, shape: tuple[int, ...], rng: RNG, *, like: Array | None = None) -> Array:
        """Draws of shape ``(*shape, d)`` on the backend, dtype and device of ``like`` (numpy float64 if None)."""
        like = default_like() if like is None else like
        eps = rng.normal((*shape, self.dim), like=like)
        return self.params.get("mean", like) + gaussian_noise(eps, self.params.get("chol", like))

    def logpdf(self, x: Array) -> Array:
        """Log-density of ``x`` (shape ``(*shape, d)``), shape ``shape``."""
        return gaussian_logpdf(x - self.params.get("mean", x), self.params.get("chol_inv", x), self.log_norm)

    def __repr__(self) -> str:
        return f"MultivariateNormal(dim={self.dim})"


def cholesky(cov: np.ndarray, name: str) -> np.ndarray:
    """Lower Cholesky factor of a symmetric positive definite matrix, with a clear error otherwise."""
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12):
        raise InvalidArgumentError(f"{name} must be symmetric, got\n{cov}")
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError as exc:
        raise InvalidArgumentError(f"{name} must be positive definite, got\n{cov}") from exc


def gaussian_noise(eps: Array, chol: Array) -> Array:
    """``eps @ chol.T``: standard normal draws ``(*shape, d)`` turned into N(0, chol chol^T) draws."""
    if chol.shape[-1] == 1:  # scalar case: a product is much cheaper than a (n, 1) @ (1, 1) matmul
        return eps * chol[..., 0, :]
    xp = namespace(eps)
    return xp.matmul(eps, xp.matrix_transpose(chol))


def gaussian_logpdf(diff: Array, chol_inv: Array, log_norm: float | Array) -> Array:
    """Gaussian log-density from ``diff = x - mean`` (``(*shape, d)``) and the inverse Cholesky factor.

    ``log_norm`` is ``-d/2 log(2 pi) - log det(chol)``. Returns shape ``shape``.
    """
    xp = namespace(diff)
    if chol_inv.shape[-1] == 1:  # scalar case: no matmul, no reduction over an axis of length one
        z = diff[..., 0] * chol_inv[..., 0, 0]
        return log_norm - 0.5 * (z * z)
    z = xp.matmul(diff, xp.matrix_transpose(chol_inv))
    return log_norm - 0.5 * xp.sum(z * z, axis=-1)


class StateSpaceModel(ABC):
    """Abstract state-space model: initial law, Markov transition and observation density.

    Subclasses set ``dim_x`` and ``dim_y`` and implement the methods below, vectorised over any leading
    shape and written against the array API so that they run on numpy and torch alike.

    Attributes
    ----------
    dim_x, dim_y : int
        Dimensions of the hidden state and of an observation.
    """

    dim_x: int = 1
    dim_y: int = 1

    @abstractmethod
    def sample_initial(self, shape: tuple[int, ...], rng: RNG, *, like: Array) -> Array:
        """Draw ``x_0 ~ p_0``; returns shape ``(*shape, dim_x)`` with the backend, dtype and device of ``like``."""

    @abstractmethod
    def logpdf_initial(self, x: Array) -> Array:
        """``log p_0(x)`` for ``x`` of shape ``(*shape, dim_x)``; returns shape ``shape``."""

    @abstractmethod
    def sample_transition(self, t: int, x_prev: Array, rng: RNG) -> Array:
        """Draw ``x_t ~ f_t(. | x_prev)``; same shape as ``x_prev``."""

    @abstractmethod
    def logpdf_transition(self, t: int, x_prev: Array, x: Array) -> Array:
        """``log f_t(x | x_prev)``; shapes ``(*shape, dim_x)`` broadcast, returns ``shape``."""

    def logpdf_transition_max(self, t: int) -> float | None:
        """An upper bound of ``logpdf_transition(t, x_prev, x)`` over all states, or ``None`` if none is known.

        Rejection-based backward sampling (:func:`smckit.smoothing.backward_sampling` with ``method="reject"``)
        and PaRIS accept a proposed ancestor with probability ``f_t(x | x_prev) / exp(bound)``; models with a
        bounded transition density override this (the default knows no bound).

        Parameters
        ----------
        t : int
            The step of the transition (t >= 1).

        Returns
        -------
        float or None
        """
        return None

    @abstractmethod
    def sample_observation(self, t: int, x: Array, rng: RNG) -> Array:
        """Draw ``y_t ~ g_t(. | x)``; returns shape ``(*shape, dim_y)``."""

    @abstractmethod
    def logpdf_observation(self, t: int, x: Array, y: Array) -> Array:
        """``log g_t(y | x)`` for ``x`` ``(*shape, dim_x)`` and ``y`` ``(*shape', dim_y)`` broadcasting together."""

    def simulate(
        self, num_steps: int, seed: RNG | int | None = None, *, batch_shape: tuple[int, ...] = ()
    ) -> tuple[np.ndarray, np.ndarray]:
        """Simulate states and observations (numpy float64).

        Parameters
        ----------
        num_steps : int
            The number of time steps T.
        seed : int, RNG or None
        batch_shape : tuple of int
            Independent trajectories to simulate at once.

        Returns
        -------
        x : ndarray, shape (*batch_shape, T, dim_x)
        y : ndarray, shape (*batch_shape, T, dim_y)
        """
        if num_steps < 1:
            raise InvalidArgumentError(f"num_steps must be positive, got {num_steps}")
        rng = as_rng(seed)
        like = default_like()
        xs, ys = [], []
        x = self.sample_initial(tuple(batch_shape), rng, like=like)
        for t in range(num_steps):
            if t > 0:
                x = self.sample_transition(t, x, rng)
            xs.append(x)
            ys.append(self.sample_observation(t, x, rng))
        return np.stack(xs, axis=-2), np.stack(ys, axis=-2)

    def check_observations(self, y: Array) -> Array:
        """Validate observations of shape ``(*batch, T, dim_y)`` (``(T,)`` is accepted when ``dim_y == 1``).

        Returns
        -------
        array, shape (*batch, T, dim_y)

        Raises
        ------
        ShapeError
            If the trailing axis is not ``dim_y``.
        """
        if not hasattr(y, "shape"):
            y = np.asarray(y, dtype=np.float64)
        if not is_floating(y):
            raise InvalidArgumentError(f"observations must be floating point, got dtype {y.dtype}")
        if y.ndim == 1 and self.dim_y == 1:
            y = namespace(y).reshape(y, (y.shape[0], 1))
        if y.ndim < 2 or y.shape[-1] != self.dim_y:
            raise ShapeError(
                f"observations must have shape (*batch, T, {self.dim_y}) for {type(self).__name__}, "
                f"got {tuple(y.shape)}"
            )
        return y

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim_x={self.dim_x}, dim_y={self.dim_y})"


class Proposal(ABC):
    """A proposal kernel ``q_t(x_t | x_{t-1}, y_t)`` for a guided particle filter.

    Observations reach a proposal with a particle axis of length one: ``y`` has shape ``(*batch, 1, dim_y)``
    while states have shape ``(*batch, n, dim_x)``.
    """

    @abstractmethod
    def sample_initial(self, shape: tuple[int, ...], y: Array, rng: RNG) -> Array:
        """Draw ``x_0 ~ q_0(. | y_0)``; returns ``(*shape, dim_x)`` on the backend of ``y``."""

    @abstractmethod
    def logpdf_initial(self, x: Array, y: Array) -> Array:
        """``log q_0(x | y_0)``; returns ``x.shape[:-1]``."""

    @abstractmethod
    def sample(self, t: int, x_prev: Array, y: Array, rng: RNG) -> Array:
        """Draw ``x_t ~ q_t(. | x_prev, y_t)``; same shape as ``x_prev``."""

    @abstractmethod
    def logpdf(self, t: int, x_prev: Array, x: Array, y: Array) -> Array:
        """``log q_t(x | x_prev, y_t)``; returns ``x.shape[:-1]``."""
