"""Particle filters as Feynman-Kac models: the bootstrap filter and the guided filter.

Given a state-space model and observations ``y_0 .. y_{T-1}``:

- bootstrap: ``M_0 = p_0``, ``M_t = f_t``, ``G_t(x_{t-1}, x_t) = g_t(y_t | x_t)``;
- guided: ``M_0 = q_0(. | y_0)``, ``M_t = q_t(. | x_{t-1}, y_t)`` and
  ``G_t = f_t(x_t | x_{t-1}) g_t(y_t | x_t) / q_t(x_t | x_{t-1}, y_t)`` (``p_0 g_0 / q_0`` at t = 0).

In both cases the SMC estimate of the evidence is an unbiased estimate of the likelihood ``p(y_0:T-1)``,
and the weighted particles at step t approximate the filter ``p(x_t | y_0:t)``.

Observations have shape ``(*batch, T, dim_y)``: each batch row is an independent data set and an independent
population. ``batch_shape`` runs replicates: ``Bootstrap(ssm, y, batch_shape=(200,))`` with ``y`` of shape
``(T, dim_y)`` runs 200 independent filters on the same data in one vectorised run. The run's backend, dtype
and device are those of ``y`` (convert ``y`` to a torch tensor to run on torch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from smckit.backend import Array, namespace
from smckit.errors import InvalidArgumentError, ShapeError
from smckit.model import FeynmanKac
from smckit.models.ssm import Proposal, StateSpaceModel
from smckit.random import RNG

__all__ = ["Bootstrap", "Guided"]


class _Filter(FeynmanKac):
    """Shared plumbing: observations, batch shape and the observation at step t."""

    def __init__(self, ssm: StateSpaceModel, y: Any, batch_shape: tuple[int, ...] | None = None):
        if not isinstance(ssm, StateSpaceModel):
            raise InvalidArgumentError(f"ssm must be a smckit.models.StateSpaceModel, got {type(ssm).__name__}")
        self.ssm = ssm
        self.y = ssm.check_observations(y)
        self.num_steps = int(self.y.shape[-2])
        data_batch = tuple(self.y.shape[:-2])
        if batch_shape is None:
            self.batch_shape = data_batch
        else:
            batch_shape = tuple(int(b) for b in batch_shape)
            try:
                self.batch_shape = tuple(np.broadcast_shapes(data_batch, batch_shape))
            except ValueError as exc:
                raise ShapeError(
                    f"observations with batch shape {data_batch} do not broadcast to batch_shape {batch_shape}"
                ) from exc
            if self.batch_shape != batch_shape:
                raise ShapeError(
                    f"batch_shape {batch_shape} is smaller than the observations' batch shape {data_batch}"
                )
        xp = namespace(self.y)
        # y_t with a particle axis of length one, (*data_batch, 1, dim_y): views, made once (not per step).
        self._observations = [xp.expand_dims(self.y[..., t, :], axis=-2) for t in range(self.num_steps)]

    def observation(self, t: int) -> Array:
        """``y_t`` with a particle axis of length one: shape ``(*data_batch, 1, dim_y)``."""
        return self._observations[t]

    def log_transition(self, t: int, prev: Array, state: Array) -> Array:
        """The log-density of the smoothing target's transition, ``log f_t(state | prev)``.

        For both filters ``M_t G_t = f_t g_t`` (the proposal cancels in the guided filter), so the backward
        kernel of the path measure is ``W_{t-1}^j f_t(x_t | x_{t-1}^j)``; :mod:`smckit.smoothing` uses it.

        Parameters
        ----------
        t : int
            The step (t >= 1).
        prev, state : arrays, shape (*batch, k, dim_x)
            States at t - 1 and t (any k, the same for both).

        Returns
        -------
        array, shape (*batch, k)
        """
        return self.ssm.logpdf_transition(t, prev, state)

    def log_transition_max(self, t: int) -> float | None:
        """An upper bound of :meth:`log_transition` at step ``t`` (``None`` if the state-space model has none).

        Parameters
        ----------
        t : int

        Returns
        -------
        float or None
        """
        return self.ssm.logpdf_transition_max(t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.ssm!r}, T={self.num_steps}, batch_shape={self.batch_shape})"


class Bootstrap(_Filter):
    """The bootstrap particle filter of a state-space model.

    Parameters
    ----------
    ssm : StateSpaceModel
    y : array, shape (*batch, T, dim_y) (or (T,) when dim_y = 1)
        Observations; their backend, dtype and device are those of the run.
    batch_shape : tuple of int, optional
        Run this batch of independent populations (the observations broadcast to it).

    Examples
    --------
    >>> import smckit
    >>> from smckit.models import LinearGaussian, Bootstrap
    >>> ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    >>> _, y = ssm.simulate(30, seed=0)
    >>> res = smckit.run(Bootstrap(ssm, y, batch_shape=(4,)), 500, seed=1)
    >>> res.log_evidence.shape, res.particles.shape
    ((4,), (4, 500, 1))
    """

    def initial(self, n: int, rng: RNG) -> Array:
        return self.ssm.sample_initial((*self.batch_shape, n), rng, like=self.y)

    def propose(self, t: int, state: Array, rng: RNG) -> Array:
        return self.ssm.sample_transition(t, state, rng)

    def log_potential(self, t: int, prev: Array | None, state: Array) -> Array:
        return self.ssm.logpdf_observation(t, state, self.observation(t))


class Guided(_Filter):
    """The guided particle filter: particles move with a proposal that sees the next observation.

    Parameters
    ----------
    ssm : StateSpaceModel
    y : array, shape (*batch, T, dim_y) (or (T,) when dim_y = 1)
    proposal : Proposal
        ``q_t(x_t | x_{t-1}, y_t)``; e.g. ``LinearGaussian.optimal_proposal()``.
    batch_shape : tuple of int, optional

    Examples
    --------
    >>> import smckit
    >>> from smckit.models import LinearGaussian, Guided
    >>> ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    >>> _, y = ssm.simulate(30, seed=0)
    >>> res = smckit.run(Guided(ssm, y, ssm.optimal_proposal()), 200, seed=1)
    >>> res.particles.shape
    (200, 1)
    """

    def __init__(self, ssm: StateSpaceModel, y: Any, proposal: Proposal, batch_shape: tuple[int, ...] | None = None):
        super().__init__(ssm, y, batch_shape)
        if not isinstance(proposal, Proposal):
            raise InvalidArgumentError(f"proposal must be a smckit.models.Proposal, got {type(proposal).__name__}")
        self.proposal = proposal

    def initial(self, n: int, rng: RNG) -> Array:
        return self.proposal.sample_initial((*self.batch_shape, n), self.observation(0), rng)

    def propose(self, t: int, state: Array, rng: RNG) -> Array:
        return self.proposal.sample(t, state, self.observation(t), rng)

    def log_potential(self, t: int, prev: Array | None, state: Array) -> Array:
        y = self.observation(t)
        log_g = self.ssm.logpdf_observation(t, state, y)
        if prev is None:
            return self.ssm.logpdf_initial(state) + log_g - self.proposal.logpdf_initial(state, y)
        return self.ssm.logpdf_transition(t, prev, state) + log_g - self.proposal.logpdf(t, prev, state, y)
