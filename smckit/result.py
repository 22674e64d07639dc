"""What a run leaves behind: the final weighted particles, the log-evidence and the per-step history."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smckit.backend import Array, describe, namespace, to_host
from smckit.errors import InvalidArgumentError, SMCWarning

__all__ = ["History", "Result"]

State = Any


@dataclass(repr=False)
class History:
    """Per-step diagnostics of a run, as numpy arrays (copied off the device once, at the end of the run).

    Attributes
    ----------
    ess : ndarray, shape (T, *batch)
        Effective sample size after weighting at each step.
    resampled : ndarray of bool, shape (T, *batch)
        Whether each row resampled at the start of step t (always False at t = 0).
    log_evidence_increments : ndarray, shape (T, *batch)
        The log-evidence increment of each step; their cumulative sum is the log-evidence estimate.
    ancestors : ndarray of int32, shape (T, *batch, n) or None
        Parent index at step t-1 of each particle at step t (``arange(n)`` where no resampling happened).
        ``None`` when the run used ``history="none"``.
    info : list of dict
        The resampler's diagnostics per step (empty dict where it did not run).
    particles : list of states or None
        The weighted particles after each step (before the next step's resampling), with ``history="full"``.
    log_weights : list of arrays or None
        The normalised log-weights after each step, with ``history="full"`` only.
    scheme : str or None
        The name of the resampler that ran (for the assumptions of the single-run error bars).
    """

    ess: np.ndarray
    resampled: np.ndarray
    log_evidence_increments: np.ndarray
    ancestors: np.ndarray | None = None
    info: list[dict[str, Any]] = field(default_factory=list)
    particles: list[State] | None = None
    log_weights: list[Array] | None = None
    scheme: str | None = None

    @property
    def num_steps(self) -> int:
        """The number of steps T that ran."""
        return int(self.ess.shape[0])

    @property
    def n_particles(self) -> int | None:
        """Particles per row (``None`` when neither ancestors nor weights were kept)."""
        if self.ancestors is not None:
            return int(self.ancestors.shape[-1])
        if self.log_weights:
            return int(self.log_weights[0].shape[-1])
        return None

    @property
    def resampling_steps(self) -> np.ndarray:
        """Steps at which at least one row resampled, shape (k,)."""
        flat = self.resampled.reshape(self.num_steps, -1)
        return np.flatnonzero(flat.any(axis=1))

    def roots(self) -> np.ndarray:
        """Index of the step-0 ancestor of every particle at every step, shape (T, *batch, n)."""
        anc = self._require_ancestors()
        roots = np.empty_like(anc)
        roots[0] = np.broadcast_to(np.arange(anc.shape[-1], dtype=anc.dtype), anc.shape[1:])
        for t in range(1, anc.shape[0]):
            roots[t] = np.take_along_axis(roots[t - 1], anc[t], axis=-1)
        return roots

    def lineages(self) -> np.ndarray:
        """Number of distinct step-0 ancestors alive at each step, per row, shape (T, *batch).

        Lineage collapse, the loss of diversity caused by repeated resampling, shows as this count falling
        towards one.
        """
        roots = self.roots()
        t_steps, *batch, n = roots.shape
        rows = int(np.prod(batch, dtype=np.int64))
        flat = roots.reshape(t_steps, rows, n).astype(np.int64) + (np.arange(rows) * n)[None, :, None]
        out = np.empty((t_steps, rows), dtype=np.int64)
        for t in range(t_steps):
            out[t] = np.bincount(flat[t].ravel(), minlength=rows * n).reshape(rows, n).astype(bool).sum(axis=1)
        return out.reshape(t_steps, *batch)

    def _require_ancestors(self) -> np.ndarray:
        if self.ancestors is None:
            raise InvalidArgumentError(
                "this run kept no ancestors (history='none'); run with history='ancestors' or 'full'"
            )
        return self.ancestors

    # -- plots (smckit.plots imports matplotlib when called) ----------------------------------------------------
    def plot_ess(self, ax: Any = None, *, relative: bool = False, threshold: float | None = None) -> Any:
        """Plot the ESS trace with the resampling steps (and ``threshold``) marked; returns the Axes."""
        from smckit.plots import plot_ess

        return plot_ess(self, ax, relative=relative, threshold=threshold)

    def plot_lineages(self, ax: Any = None, *, label: str | None = None) -> Any:
        """Plot the number of distinct surviving lineages per step; returns the Axes."""
        from smckit.plots import plot_lineages

        return plot_lineages(self, ax, label=label)

    def plot_genealogy(self, ax: Any = None, *, row: int = 0, max_particles: int = 200) -> Any:
        """Draw the ancestral tree of one row (at most ``max_particles`` lines per step); returns the Axes."""
        from smckit.plots import plot_genealogy

        return plot_genealogy(self, ax, row=row, max_particles=max_particles)

    def __repr__(self) -> str:
        batch = tuple(self.ess.shape[1:])
        kept = "full" if self.particles is not None else "ancestors" if self.ancestors is not None else "none"
        ess = f"{float(np.min(self.ess[-1])):.4g}" if self.num_steps else "-"
        return (
            f"History(steps={self.num_steps}, batch={batch}, n={self.n_particles}, "
            f"resampling_steps={len(self.resampling_steps)}, final_min_ess={ess}, kept={kept!r})"
        )


@dataclass(repr=False)
class Result:
    """The outcome of :func:`smckit.run`.

    Attributes
    ----------
    particles : state
        The final particles, arrays of shape (*batch, n, *event), on the model's backend and device.
    log_weights : array, shape (*batch, n)
        Their normalised log-weights (``logsumexp`` is 0 per row); float32 or wider.
    log_evidence : array, shape (*batch,)
        The estimate of log Z_T, the log normalising constant of the final Feynman-Kac measure (float64).
    history : History
        Per-step diagnostics.
    eve : ndarray of int, shape (*batch, n) or None
        Each final particle's ancestor at step 0 (its "Eve index"), tracked during the run at O(n) memory; the
        single-run variance estimators use it.
    tracked : dict
        What each tracker given to the run (``trackers=``) kept, by name.
    """

    particles: State
    log_weights: Array
    log_evidence: Array
    history: History
    eve: np.ndarray | None = None
    tracked: dict[str, Any] = field(default_factory=dict)

    @property
    def weights(self) -> Array:
        """Normalised weights, shape (*batch, n)."""
        return namespace(self.log_weights).exp(self.log_weights)

    @property
    def ess(self) -> Array:
        """Effective sample size of the final weights, shape (*batch,)."""
        from smckit.weights import ess

        return ess(self.log_weights)

    @property
    def num_steps(self) -> int:
        """The number of steps that ran."""
        return self.history.num_steps

    def estimate(self, f: Callable[[State], Array], *, error: bool = False) -> Array | tuple[Array, np.ndarray]:
        """The weighted average ``sum_i W_i f(x_i)`` per row, optionally with its single-run variance estimate.

        Parameters
        ----------
        f : callable
            Maps the state to an array of shape (*batch, n, *out).
        error : bool
            Also return the estimated variance of the average, from the genealogy of this one run (see
            :mod:`smckit.variance` for the estimator and its assumptions).

        Returns
        -------
        array, shape (*batch, *out)
            The weighted average; with ``error=True``, a pair ``(average, variance)``, the variance a host array
            of the same shape.
        """
        values = f(self.particles)
        mean = weighted_mean(values, self.log_weights)
        if not error:
            return mean
        from smckit.variance import estimate_variance

        # The genealogy lives on the host (Eve indices): the variance is computed there, once, in float64.
        log_w = to_host(self.log_weights, np.float64)
        variance = estimate_variance(log_w, self._require_eve(), self._resamplings(), to_host(values, np.float64))
        return mean, np.asarray(variance, dtype=np.float64)

    def log_evidence_variance(self) -> np.ndarray:
        """The single-run estimate of the variance of ``log_evidence``, shape (*batch,).

        Computed from the Eve indices of this run (Lee and Whiteley, 2018); see :mod:`smckit.variance`. The
        estimator assumes multinomial resampling: with another scheme it can be badly off (a :class:`SMCWarning`
        says so).
        """
        from smckit.variance import log_evidence_variance

        if self.history.scheme not in (None, "multinomial") and self.history.resampled.any():
            warnings.warn(
                f"the run resampled with {self.history.scheme!r}; the single-run variance of the log-evidence assumes "
                "multinomial resampling and can be badly under-estimated otherwise (see smckit.variance)",
                SMCWarning,
                stacklevel=2,
            )

        log_w = to_host(self.log_weights, np.float64)
        return np.asarray(log_evidence_variance(log_w, self._require_eve(), self._resamplings()), dtype=np.float64)

    def _require_eve(self) -> np.ndarray:
        if self.eve is None:
            raise InvalidArgumentError(
                "this result carries no Eve indices: it was made with history='none' or not by smckit.run / SMC"
            )
        return self.eve

    def _resamplings(self) -> np.ndarray:
        return self.history.resampled.sum(axis=0)

    def __repr__(self) -> str:
        lw = self.log_weights
        batch = tuple(lw.shape[:-1])
        evidence = to_host(self.log_evidence, np.float64)
        ess = to_host(self.ess, np.float64)
        shown = f"{float(evidence):.6g}" if evidence.ndim == 0 else f"array of shape {evidence.shape}"
        leaves_ = [describe(leaf) for leaf in _leaves(self.particles)]
        particles = leaves_[0] if len(leaves_) == 1 else f"{len(leaves_)} arrays, the first a {leaves_[0]}"
        return (
            f"Result(steps={self.num_steps}, batch={batch}, n={lw.shape[-1]}, log_evidence={shown}, "
            f"final_min_ess={float(np.min(ess)):.4g}, resampling_steps={len(self.history.resampling_steps)}, "
            f"particles: {particles})"
        )


def _leaves(state: State) -> list[Array]:
    from smckit.state import leaves

    return leaves(state)


def weighted_mean(values: Array, log_weights: Array) -> Array:
    """``sum_i W_i values_i`` along the particle axis.

    Parameters
    ----------
    values : array, shape (*batch, n, *out)
    log_weights : array, shape (*batch, n)
        Normalised.

    Returns
    -------
    array, shape (*batch, *out)
        In the dtype of ``values`` when it is float32 or float64, else in the weights' dtype (half precision
        and integer values are averaged in float32 or wider).
    """
    xp = namespace(values)
    w = xp.exp(log_weights)
    w = xp.reshape(w, tuple(w.shape) + (1,) * (values.ndim - w.ndim))
    dtype = values.dtype if str(values.dtype).rsplit(".", 1)[-1] in ("float32", "float64") else w.dtype
    return xp.sum(xp.astype(w, dtype) * xp.astype(values, dtype), axis=log_weights.ndim - 1)
