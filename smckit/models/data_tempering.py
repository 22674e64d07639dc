"""Data tempering (IBIS, Chopin 2002): a posterior built up one observation at a time.

    pi_t(x) ∝ prior(x) p(y_0 .. y_t | x),    t = 0 .. K-1.

Step 0 draws from the prior and weights by ``p(y_0 | x)``; step t moves the particles (the rows that resampled)
with an MCMC kernel invariant for ``pi_{t-1}`` and weights by ``p(y_t | y_0 .. y_{t-1}, x)``. The engine's
log-evidence after step t estimates ``log p(y_0 .. y_t)``; the particles after step t are weighted draws from
``pi_t``: sequential Bayesian updating, where the posterior after every observation is wanted.

The posterior's likelihood is ``log_likelihood(x, start, stop)`` (a :class:`~smckit.models.Posterior` made with
``num_data``). Moves evaluate the likelihood of all the observations so far, so a step costs O(t) per particle
and move; moving only after resampling (the default policy resamples when the ESS halves) keeps the total cost
near O(K log K) for regular models.
"""

from __future__ import annotations

from collections.abc import Sequence

from smckit.backend import Array, namespace
from smckit.errors import InvalidArgumentError
from smckit.models.moves import Move, Target
from smckit.models.posterior import Evaluated, Posterior
from smckit.models.samplers import SMCSampler, TemperingState
from smckit.policy import ESSBelow, Policy

__all__ = ["DataTempering"]


class DataTempering(SMCSampler):
    """IBIS: an SMC sampler over the posteriors of growing data sets.

    Parameters
    ----------
    posterior : Posterior
        With ``num_data`` (the number of observations K) and ``log_likelihood(x, start, stop)``.
    move : Move, optional
        The MCMC kernel (default a random walk with the particles' covariance).
    n_moves : int
        Kernel steps per resampled particle.
    chain_length : int, optional
        Waste-free moves with chains of this length.
    policy : Policy
        When to resample (and so move); default ``ESSBelow(0.5)``.
    batch_shape : tuple of int
    like : array, optional
    progress : bool

    Examples
    --------
    >>> import numpy as np, smckit
    >>> from smckit.models import DataTempering, MultivariateNormal, Posterior
    >>> y = np.array([0.3, -0.1, 0.8, 0.5])
    >>> def log_lik(x, start, stop):
    ...     return -0.5 * np.sum((y[start:stop] - x) ** 2, axis=-1) - 0.5 * (stop - start) * np.log(2 * np.pi)
    >>> prior = MultivariateNormal(np.zeros(1), np.eye(1))
    >>> res = smckit.run(DataTempering(Posterior.from_prior(prior, log_lik, num_data=4)), 1000, seed=0)
    >>> res.num_steps
    4
    """

    def __init__(
        self,
        posterior: Posterior,
        *,
        move: Move | None = None,
        n_moves: int = 5,
        chain_length: int | None = None,
        policy: Policy | None = None,
        batch_shape: Sequence[int] = (),
        like: Array | None = None,
        progress: bool = False,
    ):
        if not isinstance(posterior, Posterior) or posterior.num_data is None:
            raise InvalidArgumentError(
                "DataTempering needs a Posterior made with num_data and a log_likelihood(x, start, stop)"
            )
        super().__init__(
            posterior,
            move=move,
            n_moves=n_moves,
            chain_length=chain_length,
            policy=ESSBelow(0.5) if policy is None else policy,
            batch_shape=batch_shape,
            like=like,
            progress=progress,
        )
        self.num_steps: int = posterior.num_data

    def first_evaluation(self, x: Array) -> Evaluated:
        """The prior at the draws, and no likelihood yet (shape (*batch, n, d))."""
        log_prior = self.posterior.log_prior(x)
        return Evaluated(x, Posterior._check(log_prior, x, "log_prior"), namespace(x).zeros_like(log_prior))

    def target(self, t: int, state: TemperingState) -> Target:
        """``prior * p(y_0 .. y_{t-1} | x)``, the target the moves of step ``t`` leave invariant."""
        return Target(self.posterior, namespace(state.x).ones_like(state.exponent[..., :1]), data=(0, t))

    def advance(
        self, t: int, ev: Evaluated, log_w: Array, state: TemperingState | None
    ) -> tuple[Array, Array, Array, Array]:
        """Add observation ``t``: the log-potential is ``log p(y_t | y_0 .. y_{t-1}, x)``.

        Parameters
        ----------
        t : int
        ev : Evaluated
        log_w : array, shape (*batch, n)
        state : TemperingState or None

        Returns
        -------
        exponent, increment, log_likelihood, log_g : arrays, shape (*batch, n)
            ``exponent`` is the fraction of the observations in the target, ``(t + 1) / K``.
        """
        log_g = self.posterior.evaluate(ev.x, data=(t, t + 1)).log_likelihood
        ones = namespace(log_g).ones_like(log_g)
        k = int(self.num_steps)
        return ones * ((t + 1) / k), ones / k, ev.log_likelihood + log_g, log_g

    def __repr__(self) -> str:
        return (
            f"DataTempering(num_data={self.num_steps}, move={self.move!r}, n_moves={self.n_moves}, "
            f"chain_length={self.chain_length}, policy={self.default_policy!r}, batch_shape={self.batch_shape})"
        )
