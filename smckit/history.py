"""What a run leaves behind: the final weighted particles, the log-evidence and the per-step history."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smckit.backend import Array, namespace

__all__ = ["History", "Result"]

State = Any


def _to_numpy(x: Array) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)


@dataclass
class History:
    """Per-step diagnostics of a run, as numpy arrays (copied off the device once, at the end of the run).

    Attributes
    ----------
    ess : ndarray, shape (T, *batch)
        Effective sample size after weighting at each step.
    resampled : ndarray of bool, shape (T, *batch)
        Whether each row resampled at the start of step t (always False at t = 0).
    log_evidence_increments : ndarray, shape (T, *batch)
        ``log sum_i W_{t-1}^i G_t^i``; their cumulative sum is the log-evidence estimate.
    ancestors : ndarray of int32, shape (T, *batch, n) or None
        Parent index at step t-1 of each particle at step t (``arange(n)`` where no resampling happened).
        ``None`` when the run used ``history="none"``.
    info : list of dict
        The resampler's diagnostics per step (empty dict where it did not run).
    particles : list of states or None
        The weighted particles after each step, with ``history="full"`` only.
    log_weights : list of arrays or None
        The normalised log-weights after each step, with ``history="full"`` only.
    """

    ess: np.ndarray
    resampled: np.ndarray
    log_evidence_increments: np.ndarray
    ancestors: np.ndarray | None = None
    info: list[dict[str, Any]] = field(default_factory=list)
    particles: list[State] | None = None
    log_weights: list[Array] | None = None

    @property
    def num_steps(self) -> int:
        """The number of steps T that ran."""
        return int(self.ess.shape[0])

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
            raise ValueError("this run kept no ancestors (history='none'); run with history='ancestors' or 'full'")
        return self.ancestors

    # -- plots (matplotlib is imported only here) -------------------------------------------------------
    def plot_ess(self, ax: Any = None, *, relative: bool = False) -> Any:
        """Plot the ESS trace, marking resampling steps; returns the matplotlib Axes."""
        ax = _axes(ax)
        ess = self.ess.reshape(self.num_steps, -1)
        n = self.ancestors.shape[-1] if self.ancestors is not None else 1
        y = ess / n if relative else ess
        ax.plot(np.arange(self.num_steps), y, lw=1)
        for t in self.resampling_steps:
            ax.axvline(t, color="0.85", lw=0.5, zorder=0)
        ax.set_xlabel("step t")
        ax.set_ylabel("ESS / n" if relative else "ESS")
        return ax

    def plot_lineages(self, ax: Any = None, *, label: str | None = None) -> Any:
        """Plot the number of distinct surviving lineages per step; returns the Axes."""
        ax = _axes(ax)
        lin = self.lineages().reshape(self.num_steps, -1)
        ax.plot(np.arange(self.num_steps), lin, lw=1, label=label)
        ax.set_xlabel("step t")
        ax.set_ylabel("distinct lineages")
        ax.set_yscale("log")
        return ax

    def plot_genealogy(self, ax: Any = None, *, row: int = 0, max_particles: int = 200) -> Any:
        """Draw the ancestral tree of one row (the first ``max_particles`` particles); returns the Axes."""
        ax = _axes(ax)
        anc = self._require_ancestors().reshape(self.num_steps, -1, self.ancestors.shape[-1])[:, row]  # type: ignore[union-attr]
        n = min(anc.shape[-1], max_particles)
        # Surviving paths (ancestors of the final particles) in black, the rest in grey.
        alive = np.zeros((self.num_steps, anc.shape[-1]), dtype=bool)
        alive[-1] = True
        for t in range(self.num_steps - 1, 0, -1):
            alive[t - 1, anc[t][alive[t]]] = True
        for t in range(1, self.num_steps):
            for i in range(n):
                a = anc[t, i]
                ok = alive[t, i]
                ax.plot([t - 1, t], [a, i], color="k" if ok else "0.8", lw=0.8 if ok else 0.4, zorder=2 if ok else 1)
        ax.set_xlabel("step t")
        ax.set_ylabel("particle index")
        return ax


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'pysmckit[plot]'") from exc
    return plt.subplots()[1]


@dataclass
class Result:
    """The outcome of :func:`smckit.run`.

    Attributes
    ----------
    particles : state
        The final particles, arrays of shape (*batch, n, *event), on the model's backend and device.
    log_weights : array, shape (*batch, n)
        Their normalised log-weights (``logsumexp`` is 0 per row).
    log_evidence : array, shape (*batch,)
        The estimate of log Z_T, the log normalising constant of the final Feynman-Kac measure (float64).
    history : History
        Per-step diagnostics.
    """

    particles: State
    log_weights: Array
    log_evidence: Array
    history: History

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

    def estimate(self, f: Callable[[State], Array]) -> Array:
        """The weighted average ``sum_i W_i f(x_i)`` per row.

        Parameters
        ----------
        f : callable
            Maps the state to an array of shape (*batch, n, *out).

        Returns
        -------
        array, shape (*batch, *out)
        """
        values = f(self.particles)
        xp = namespace(values)
        w = self.weights
        w = xp.reshape(w, tuple(w.shape) + (1,) * (values.ndim - w.ndim))
        return xp.sum(xp.astype(w, values.dtype) * values, axis=self.log_weights.ndim - 1)
