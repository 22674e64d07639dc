"""Particle Gibbs (Andrieu, Doucet and Holenstein, 2010): a Gibbs sampler on the parameter and the hidden path.

Each iteration

1. runs conditional SMC for the current parameter, keeping the current path as the reference
   (:mod:`smckit.inference.conditional`), and draws a new path from it, by ancestor sampling during the run
   (``sampling="ancestor"``) or backward sampling after it (``"backward"``): the path update leaves
   ``p(x | theta, y)`` invariant for any number of particles;
2. updates the parameter given the path with ``n_theta_moves`` random-walk Metropolis steps on
   ``log p(theta) + log p(x, y | theta)``.

The complete-data log-likelihood ``log p(x, y | theta)`` comes from ``log_joint(theta, path)``, or, for the
bundled filters of a state-space model (:class:`smckit.models.Bootstrap`, :class:`smckit.models.Guided`), from
the model's own densities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from smckit.backend import namespace, to_host
from smckit.errors import InvalidArgumentError, ShapeError
from smckit.inference._family import Family, RandomWalkProposal, Stacked, _row, accept, as_thetas, progress_bar
from smckit.inference.chains import Chains
from smckit.inference.conditional import SAMPLING, conditional_smc, draw_path
from smckit.model import FeynmanKac
from smckit.random import RNG, as_rng

__all__ = ["particle_gibbs", "complete_log_likelihood"]


def complete_log_likelihood(model: FeynmanKac, path: list[Any]) -> np.ndarray:
    """``log p(x, y | theta)`` of a path under a filter of a state-space model, per batch row.

    ``log p_0(x_0) + sum_t log f_t(x_t | x_{t-1}) + sum_t log g_t(y_t | x_t)``, from the model's ``ssm`` and
    observations (:class:`smckit.models.Bootstrap` and :class:`smckit.models.Guided`, or several of them stacked).

    Parameters
    ----------
    model : FeynmanKac
    path : list of arrays
        One per step, shape ``(*batch, 1, dim_x)``.

    Returns
    -------
    ndarray, shape (*batch,)

    Raises
    ------
    InvalidArgumentError
        If the model is not a filter of a state-space model.
    """
    if isinstance(model, Stacked):
        return np.stack([complete_log_likelihood(m, [_row(x, i) for x in path]) for i, m in enumerate(model.models)])
    ssm = getattr(model, "ssm", None)
    if ssm is None or not callable(getattr(model, "observation", None)):
        raise InvalidArgumentError(
            f"particle_gibbs needs log p(x, y | theta): {type(model).__name__} is not a filter of a state-space "
            "model, so give log_joint(theta, path)"
        )
    observation = model.observation  # type: ignore[attr-defined]
    total = ssm.logpdf_initial(path[0]) + ssm.logpdf_observation(0, path[0], observation(0))
    for t in range(1, len(path)):
        total = total + ssm.logpdf_transition(t, path[t - 1], path[t])
        total = total + ssm.logpdf_observation(t, path[t], observation(t))
    xp = namespace(total)
    return np.asarray(to_host(xp.sum(total, axis=-1), np.float64))


def particle_gibbs(
    model_of: Callable[[np.ndarray], FeynmanKac],
    log_prior: Callable[[np.ndarray], Any],
    theta0: Any,
    *,
    n_particles: int,
    n_iter: int,
    seed: RNG | int | None = None,
    sampling: str = "ancestor",
    log_joint: Callable[[np.ndarray, list[Any]], Any] | None = None,
    n_theta_moves: int = 5,
    vectorized: bool = False,
    proposal_cov: Any = None,
    adapt: bool = True,
    names: Sequence[str] | None = None,
    progress: bool = False,
) -> Chains:
    """Particle Gibbs with ancestor or backward sampling, and Metropolis updates of the parameter.

    Parameters
    ----------
    model_of : callable
        ``model_of(theta)``, a :class:`smckit.FeynmanKac` model of the hidden path given ``theta`` (d,) (or
        ``(C, d)`` with ``vectorized=True``, the model with batch shape ``(C,)``); it needs
        ``log_transition(t, prev, state)`` (the bundled filters have it).
    log_prior : callable
        As in :func:`smckit.inference.pmmh`.
    theta0 : array_like, shape (d,) or (n_chains, d)
    n_particles : int
        Particles of the conditional SMC runs.
    n_iter : int
    seed : int, RNG or None
    sampling : {"ancestor", "backward"}
    log_joint : callable, optional
        ``log_joint(theta, path)``: ``log p(x, y | theta)`` for ``theta`` ``(C, d)`` and ``path`` a list of one
        state per step with leaves ``(C, 1, *event)``, returning ``(C,)``; default
        :func:`complete_log_likelihood` of ``model_of(theta)``.
    n_theta_moves : int
        Metropolis steps on the parameter per iteration.
    vectorized : bool
    proposal_cov : array_like, shape (d, d), optional
    adapt : bool
    names : sequence of str, optional
    progress : bool

    Returns
    -------
    Chains
        ``theta`` ``(n_iter, d)`` (or ``(n_chains, n_iter, d)``), ``log_likelihood`` the complete-data
        log-likelihood of the draw, ``accepted`` whether the last parameter move of the iteration was accepted,
        and ``info["acceptance_rate_theta"]`` over all parameter moves, ``info["path"]`` the last path.

    Examples
    --------
    >>> import numpy as np
    >>> from smckit.inference import particle_gibbs
    >>> from smckit.models import Bootstrap, LinearGaussian
    >>> _, y = LinearGaussian.scalar(rho=0.7).simulate(30, seed=0)
    >>> def model_of(theta):
    ...     return Bootstrap(LinearGaussian.scalar(rho=theta[0]), y)
    >>> def log_prior(theta):
    ...     return 0.0 if abs(theta[0]) < 1 else -np.inf
    >>> chains = particle_gibbs(model_of, log_prior, [0.5], n_particles=20, n_iter=10, seed=1)
    >>> chains.theta.shape
    (10, 1)
    """
    if sampling not in SAMPLING:
        raise InvalidArgumentError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    if int(n_particles) < 2 or int(n_iter) < 1 or int(n_theta_moves) < 0:
        raise InvalidArgumentError(
            f"need n_particles >= 2, n_iter >= 1 and n_theta_moves >= 0; got {n_particles}, {n_iter}, {n_theta_moves}"
        )
    theta, chain_shape = as_thetas(theta0)
    c, d = theta.shape
    family = Family(model_of, log_prior, vectorized)
    rng = as_rng(seed)
    proposal = RandomWalkProposal(d, proposal_cov, adapt=adapt)

    def joint(th: np.ndarray, path: list[Any]) -> np.ndarray:
        value = log_joint(th, path) if log_joint is not None else complete_log_likelihood(family.model(th), path)
        out = np.asarray(to_host(value), dtype=np.float64).reshape(-1)
        if out.shape != (c,):
            raise ShapeError(f"log_joint returned {out.shape} values for {c} parameters")
        return out

    lp = family.log_prior(theta)
    if not np.isfinite(lp).all():
        raise InvalidArgumentError("theta0 is outside the prior's support (log_prior is -inf)")
    draws = np.empty((c, n_iter, d))
    lls, lps = np.empty((c, n_iter)), np.empty((c, n_iter))
    accepted = np.zeros((c, n_iter), dtype=bool)
    moves_accepted = 0
    reference: list[Any] | None = None
    bar = progress_bar(n_iter, "particle Gibbs", progress)
    for i in range(n_iter):
        model = family.model(theta)
        result = conditional_smc(model, reference, int(n_particles), rng, sampling=sampling, batch_ndim=1)
        reference = draw_path(result, model, rng, sampling=sampling, batch_ndim=1)
        lj = joint(theta, reference)
        ok = np.zeros(c, dtype=bool)
        for _ in range(int(n_theta_moves)):
            prop = proposal.draw(theta, rng)
            lp_prop = family.log_prior(prop)
            valid = np.isfinite(lp_prop)
            stand_in = np.where(valid[:, None], prop, theta)
            lj_prop = np.where(valid, joint(stand_in, reference), -np.inf)
            ok = accept(lp_prop + lj_prop - lp - lj, rng)
            theta = np.where(ok[:, None], prop, theta)
            lp, lj = np.where(ok, lp_prop, lp), np.where(ok, lj_prop, lj)
            moves_accepted += int(ok.sum())
        draws[:, i], lls[:, i], lps[:, i], accepted[:, i] = theta, lj, lp, ok
        proposal.update(theta)
        if bar is not None:
            bar.update(1)
            rate = moves_accepted / max(1, (i + 1) * c * int(n_theta_moves))
            bar.set_postfix(acceptance=f"{rate:.3f}", log_joint=f"{lj.mean():.4g}", refresh=False)
    if bar is not None:
        bar.close()
    return Chains(
        draws.reshape(*chain_shape, n_iter, d),
        lls.reshape(*chain_shape, n_iter),
        lps.reshape(*chain_shape, n_iter),
        accepted.reshape(*chain_shape, n_iter),
        names=list(names) if names is not None else [],
        info={
            "acceptance_rate_theta": moves_accepted / max(1, n_iter * c * int(n_theta_moves)),
            "path": reference,
            "proposal_cov": proposal.cov,
            "sampling": sampling,
        },
    )
