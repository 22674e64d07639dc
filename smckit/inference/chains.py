"""What parameter inference returns: MCMC chains (PMMH, particle Gibbs) and weighted samples (SMC^2).

Both hold host numpy arrays, summarise themselves (means, variances, effective sample sizes) and convert to an
ArviZ ``InferenceData`` with :meth:`~Chains.to_arviz` (ArviZ is an optional dependency, imported on first use:
the ``inference`` extra: ``pip install -e '.[inference]'`` in a clone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smckit.errors import InvalidArgumentError

__all__ = ["Chains", "WeightedSamples", "effective_sample_size", "import_arviz"]


def import_arviz() -> Any:
    """Import ArviZ, or say how to install it.

    Returns
    -------
    module
        ``arviz``.

    Raises
    ------
    ImportError
        Naming the extra that installs it.
    """
    try:
        import arviz
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "to_arviz() needs ArviZ, an optional dependency: pip install arviz (the 'inference' extra of smckit)"
        ) from exc
    return arviz


def effective_sample_size(chains: np.ndarray) -> np.ndarray:
    """Effective sample size of each coordinate from one or more chains (Geyer's initial positive sequence).

    Autocorrelations are averaged over chains (each centred on the overall mean, so that chains stuck in
    different places lower the ESS) and summed in pairs until a pair's sum turns negative.

    Parameters
    ----------
    chains : ndarray, shape (n_chains, n_iter, d)

    Returns
    -------
    ndarray, shape (d,)
    """
    x = np.asarray(chains, dtype=np.float64)
    n_chains, n_iter, d = x.shape
    centred = x - x.mean(axis=(0, 1))
    var = np.mean(centred**2, axis=(0, 1))
    size = 1 << int(np.ceil(np.log2(2 * n_iter)))
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :n_iter].mean(axis=0) / n_iter  # (n_iter, d)
    out = np.empty(d)
    for j in range(d):
        if var[j] <= 0:
            out[j] = float(n_chains * n_iter)
            continue
        rho = acov[:, j] / var[j]
        total = -1.0  # tau = -1 + 2 * sum of the pair sums Gamma_k = rho_2k + rho_2k+1 while positive
        for k in range(0, n_iter - 1, 2):
            pair = rho[k] + rho[k + 1]
            if pair <= 0:
                break
            total += 2.0 * pair
        out[j] = n_chains * n_iter / max(total, 1e-12)
    return out


@dataclass(repr=False)
class Chains:
    """MCMC output: draws of the parameter, their log-likelihood estimates and acceptance.

    Attributes
    ----------
    theta : ndarray, shape (*chains, n_iter, d)
        The draws, one per iteration (``*chains`` is the shape of the chains' starting points, ``()`` for one).
    log_likelihood : ndarray, shape (*chains, n_iter)
        The (estimated) log-likelihood at each draw.
    log_prior : ndarray, shape (*chains, n_iter)
    accepted : ndarray of bool, shape (*chains, n_iter)
        Whether each iteration's proposal was accepted.
    names : list of str
        Coordinate names (``theta[0]``, ... by default).
    info : dict
        Method-specific diagnostics (final proposal covariance, particle numbers, paths, ...).
    """

    theta: np.ndarray
    log_likelihood: np.ndarray
    log_prior: np.ndarray
    accepted: np.ndarray
    names: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.names:
            self.names = [f"theta[{j}]" for j in range(self.theta.shape[-1])]

    @property
    def acceptance_rate(self) -> np.ndarray:
        """Fraction of accepted proposals per chain, shape ``(*chains,)``."""
        return np.mean(self.accepted, axis=-1)

    def stacked(self, burn_in: int = 0) -> np.ndarray:
        """The draws as ``(n_chains, n_iter - burn_in, d)`` (one chain gets a leading axis of 1).

        Parameters
        ----------
        burn_in : int
            Iterations dropped at the start of every chain.

        Returns
        -------
        ndarray, shape (n_chains, n_iter - burn_in, d)
        """
        if not 0 <= burn_in < self.theta.shape[-2]:
            raise InvalidArgumentError(f"burn_in must be in [0, {self.theta.shape[-2]}), got {burn_in}")
        x = self.theta[..., burn_in:, :]
        return x.reshape(-1, *x.shape[-2:])

    def mean(self, burn_in: int = 0) -> np.ndarray:
        """Posterior mean estimate over all chains, shape (d,).

        Parameters
        ----------
        burn_in : int

        Returns
        -------
        ndarray, shape (d,)
        """
        return self.stacked(burn_in).mean(axis=(0, 1))

    def var(self, burn_in: int = 0) -> np.ndarray:
        """Posterior variance estimate over all chains, shape (d,).

        Parameters
        ----------
        burn_in : int

        Returns
        -------
        ndarray, shape (d,)
        """
        return self.stacked(burn_in).var(axis=(0, 1))

    def ess(self, burn_in: int = 0) -> np.ndarray:
        """Effective sample size per coordinate over all chains, shape (d,) (see :func:`effective_sample_size`).

        Parameters
        ----------
        burn_in : int

        Returns
        -------
        ndarray, shape (d,)
        """
        return effective_sample_size(self.stacked(burn_in))

    def to_arviz(self, burn_in: int = 0) -> Any:
        """The chains as an ArviZ ``InferenceData``: posterior draws and sample statistics.

        Parameters
        ----------
        burn_in : int

        Returns
        -------
        arviz.InferenceData
            ``posterior`` with one variable per coordinate (dims ``chain``, ``draw``), ``sample_stats`` with
            ``log_likelihood_estimate``, ``lp`` (log prior plus log-likelihood) and ``accepted``.
        """
        az = import_arviz()
        draws = self.stacked(burn_in)
        flat = lambda a: a[..., burn_in:].reshape(-1, draws.shape[1])  # noqa: E731
        posterior = {name: draws[..., j] for j, name in enumerate(self.names)}
        stats = {
            "log_likelihood_estimate": flat(self.log_likelihood),
            "lp": flat(self.log_prior + self.log_likelihood),
            "accepted": flat(self.accepted),
        }
        return az.from_dict(posterior=posterior, sample_stats=stats)

    def __repr__(self) -> str:
        rate = np.atleast_1d(self.acceptance_rate)
        return (
            f"Chains(chains={self.theta.shape[:-2] or (1,)}, n_iter={self.theta.shape[-2]}, d={self.theta.shape[-1]}, "
            f"acceptance_rate={np.round(rate, 3).tolist()})"
        )


@dataclass(repr=False)
class WeightedSamples:
    """Weighted draws of the parameter (SMC^2): a particle approximation of the posterior.

    Attributes
    ----------
    theta : ndarray, shape (n, d)
    log_weights : ndarray, shape (n,)
        Normalised.
    log_evidence : float
        The estimate of the log marginal likelihood ``log p(y)``.
    names : list of str
    info : dict
        Per-step diagnostics: ``ess``, ``resampled``, ``acceptance`` (of each rejuvenation, NaN where none),
        ``n_x`` (inner particles), ``log_evidence_increments``.
    """

    theta: np.ndarray
    log_weights: np.ndarray
    log_evidence: float
    names: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.names:
            self.names = [f"theta[{j}]" for j in range(self.theta.shape[-1])]

    @property
    def weights(self) -> np.ndarray:
        """Normalised weights, shape (n,)."""
        return np.exp(self.log_weights)

    @property
    def ess(self) -> float:
        """Effective sample size of the weights."""
        w = self.weights
        return float(1.0 / np.sum(w * w))

    def mean(self) -> np.ndarray:
        """Weighted posterior mean, shape (d,).

        Returns
        -------
        ndarray, shape (d,)
        """
        return self.weights @ self.theta

    def var(self) -> np.ndarray:
        """Weighted posterior variance, shape (d,).

        Returns
        -------
        ndarray, shape (d,)
        """
        return self.weights @ (self.theta - self.mean()) ** 2

    def to_arviz(self, seed: int | None = 0) -> Any:
        """An ArviZ ``InferenceData`` of equally weighted draws (one chain), resampled from these weights.

        Parameters
        ----------
        seed : int or None
            Seed of the (systematic) resampling.

        Returns
        -------
        arviz.InferenceData
            ``posterior`` with one chain of ``n`` draws per coordinate; ``sample_stats`` with the original
            ``log_weight`` of each resampled draw.
        """
        az = import_arviz()
        n = self.theta.shape[0]
        u = (np.random.default_rng(seed).random() + np.arange(n)) / n
        index = np.minimum(np.searchsorted(np.cumsum(self.weights), u, side="right"), n - 1)
        draws = self.theta[index]
        posterior = {name: draws[None, :, j] for j, name in enumerate(self.names)}
        return az.from_dict(posterior=posterior, sample_stats={"log_weight": self.log_weights[index][None]})

    def __repr__(self) -> str:
        return (
            f"WeightedSamples(n={self.theta.shape[0]}, d={self.theta.shape[-1]}, ess={self.ess:.1f}, "
            f"log_evidence={self.log_evidence:.6g})"
        )
