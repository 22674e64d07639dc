"""Particle marginal Metropolis-Hastings (Andrieu, Doucet and Holenstein, 2010).

A random-walk Metropolis-Hastings chain on the parameter theta whose intractable likelihood ``p(y | theta)`` is
replaced by the unbiased estimate of a particle filter, ``Z_hat(theta)``, the evidence of an SMC run of
``model_of(theta)``. The estimate of the current state is kept, not recomputed, so the chain targets the exact
posterior ``p(theta | y)`` whatever the number of particles (fewer particles only make it mix more slowly).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from smckit.engine import run
from smckit.errors import InvalidArgumentError
from smckit.inference._family import Family, RandomWalkProposal, accept, as_thetas, progress_bar, seeds
from smckit.inference.chains import Chains
from smckit.model import FeynmanKac
from smckit.policy import Policy
from smckit.random import RNG, as_rng

__all__ = ["pmmh", "log_likelihood_estimate"]


def log_likelihood_estimate(
    family: Family,
    theta: np.ndarray,
    valid: np.ndarray,
    n_particles: int,
    rng: RNG,
    *,
    resampler: Any = "systematic",
    policy: Policy | None = None,
) -> np.ndarray:
    """Particle estimates of ``log p(y | theta)`` for the rows of ``theta`` ``(C, d)`` where ``valid``; -inf elsewhere.

    Invalid rows (outside the prior's support) are never given to ``model_of``: the model is built for a valid
    stand-in and the estimate discarded. One SMC run covers every row.

    Parameters
    ----------
    family : Family
    theta : ndarray, shape (C, d)
    valid : ndarray of bool, shape (C,)
    n_particles : int
    rng : RNG
    resampler, policy
        For :func:`smckit.run`.

    Returns
    -------
    ndarray, shape (C,)
    """
    out = np.full(theta.shape[0], -np.inf)
    if not valid.any():
        return out
    stand_in = np.where(valid[:, None], theta, theta[np.argmax(valid)])
    model = family.model(stand_in)
    result = run(model, n_particles, resampler=resampler, policy=policy, seed=seeds(rng), history="none")
    return np.where(valid, family.log_evidence(result, theta.shape[0]), -np.inf)


def pmmh(
    model_of: Callable[[np.ndarray], FeynmanKac],
    log_prior: Callable[[np.ndarray], Any],
    theta0: Any,
    *,
    n_particles: int,
    n_iter: int,
    seed: RNG | int | None = None,
    vectorized: bool = False,
    proposal_cov: Any = None,
    adapt: bool = True,
    resampler: Any = "systematic",
    policy: Policy | None = None,
    names: Sequence[str] | None = None,
    progress: bool = False,
) -> Chains:
    """Particle marginal Metropolis-Hastings with an adaptive random-walk proposal.

    Parameters
    ----------
    model_of : callable
        ``model_of(theta)`` returns a :class:`smckit.FeynmanKac` model whose evidence is the likelihood of
        ``theta`` (e.g. ``Bootstrap(ssm_of(theta), y)``); ``theta`` has shape (d,), or ``(C, d)`` with
        ``vectorized=True`` (the model then has batch shape ``(C,)``, one row per chain).
    log_prior : callable
        ``log_prior(theta)``: a float for ``theta`` (d,), or ``(C,)`` values with ``vectorized=True``; ``-inf``
        outside the support (``model_of`` is never called there).
    theta0 : array_like, shape (d,) or (n_chains, d)
        Starting points; several chains run side by side (and share the adaptive proposal).
    n_particles : int
        Particles of each likelihood estimate.
    n_iter : int
        Iterations per chain.
    seed : int, RNG or None
    vectorized : bool
        Whether ``model_of`` and ``log_prior`` take a batch of parameters. Either way one SMC run per iteration
        serves every chain; without vectorisation each step calls every chain's model in turn.
    proposal_cov : array_like, shape (d, d), optional
        The first proposal covariance (default ``0.01 / d`` times the identity).
    adapt : bool
        Adapt the proposal covariance to ``2.38^2 / d`` times the covariance of the draws so far.
    resampler, policy
        Of the particle filters.
    names : sequence of str, optional
        Coordinate names (for ArviZ).
    progress : bool
        A tqdm bar with the acceptance rate and the current log-likelihood.

    Returns
    -------
    Chains
        ``theta`` of shape ``(n_iter, d)`` (or ``(n_chains, n_iter, d)``), ``acceptance_rate``, the
        log-likelihood estimates, and ``info["proposal_cov"]``.

    Raises
    ------
    InvalidArgumentError
        For non-positive sizes, or a starting point outside the prior's support or with a likelihood estimate of
        zero.

    Examples
    --------
    >>> import numpy as np
    >>> from smckit.inference import pmmh
    >>> from smckit.models import Bootstrap, LinearGaussian
    >>> _, y = LinearGaussian.scalar(rho=0.7).simulate(30, seed=0)
    >>> def model_of(theta):
    ...     return Bootstrap(LinearGaussian.scalar(rho=theta[0]), y)
    >>> def log_prior(theta):
    ...     return 0.0 if abs(theta[0]) < 1 else -np.inf
    >>> chains = pmmh(model_of, log_prior, [0.5], n_particles=50, n_iter=20, seed=1)
    >>> chains.theta.shape
    (20, 1)
    """
    if int(n_particles) < 1 or int(n_iter) < 1:
        raise InvalidArgumentError(f"n_particles and n_iter must be positive, got {n_particles} and {n_iter}")
    theta, chain_shape = as_thetas(theta0)
    c, d = theta.shape
    family = Family(model_of, log_prior, vectorized)
    rng = as_rng(seed)
    proposal = RandomWalkProposal(d, proposal_cov, adapt=adapt)
    lp = family.log_prior(theta)
    if not np.isfinite(lp).all():
        raise InvalidArgumentError("theta0 is outside the prior's support (log_prior is -inf)")

    def estimate(th: np.ndarray, ok: np.ndarray) -> np.ndarray:
        return log_likelihood_estimate(family, th, ok, n_particles, rng, resampler=resampler, policy=policy)

    ll = estimate(theta, np.ones(c, dtype=bool))
    if not np.isfinite(ll).all():
        raise InvalidArgumentError("the likelihood estimate at theta0 is zero: start elsewhere or use more particles")
    draws = np.empty((c, n_iter, d))
    lls, lps = np.empty((c, n_iter)), np.empty((c, n_iter))
    accepted = np.zeros((c, n_iter), dtype=bool)
    bar = progress_bar(n_iter, "PMMH", progress)
    for i in range(n_iter):
        prop = proposal.draw(theta, rng)
        lp_prop = family.log_prior(prop)
        ll_prop = estimate(prop, np.isfinite(lp_prop))
        ok = accept(lp_prop + ll_prop - lp - ll, rng)
        theta = np.where(ok[:, None], prop, theta)
        lp, ll = np.where(ok, lp_prop, lp), np.where(ok, ll_prop, ll)
        draws[:, i], lls[:, i], lps[:, i], accepted[:, i] = theta, ll, lp, ok
        proposal.update(theta)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                acceptance=f"{accepted[:, : i + 1].mean():.3f}", log_likelihood=f"{ll.mean():.4g}", refresh=False
            )
    if bar is not None:
        bar.close()
    shape = chain_shape
    return Chains(
        draws.reshape(*shape, n_iter, d),
        lls.reshape(*shape, n_iter),
        lps.reshape(*shape, n_iter),
        accepted.reshape(*shape, n_iter),
        names=list(names) if names is not None else [],
        info={"proposal_cov": proposal.cov, "n_particles": int(n_particles)},
    )
