"""Plots of a run's history (matplotlib is imported here only, when a plot is asked for).

Each function draws on the Axes it is given (or a new figure's) and returns the Axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plot_ess", "plot_lineages", "plot_genealogy"]


def plot_ess(history: Any, ax: Any = None, *, relative: bool = False, threshold: float | None = None) -> Any:
    """ESS per step, one line per batch row, with the resampling steps and an optional threshold marked.

    Parameters
    ----------
    history : History
    ax : matplotlib Axes, optional
    relative : bool
        Plot ``ESS / n`` instead of the ESS.
    threshold : float, optional
        The resampling threshold as a fraction of n (``ESSBelow(threshold)``), drawn as a dashed line.

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax)
    steps = np.arange(history.num_steps)
    ess = history.ess.reshape(history.num_steps, -1)
    n = history.n_particles
    scale = 1.0 / n if relative and n else 1.0
    rows = ess.shape[1]
    for r in range(rows):
        ax.plot(
            steps,
            ess[:, r] * scale,
            lw=1.2,
            color="C0",
            alpha=1.0 if rows == 1 else 0.5,
            label="ESS" if r == 0 else None,
        )
    resampled = history.resampled.reshape(history.num_steps, -1)
    t_res, r_res = np.nonzero(resampled)
    if t_res.size:
        ax.scatter(
            t_res, ess[t_res, r_res] * scale, s=14, color="C3", zorder=3, label="resampled at the start of the step"
        )
    if threshold is not None and n:
        ax.axhline(threshold * (1.0 if relative else n), ls="--", color="0.4", lw=1, label=f"threshold {threshold:g} n")
    ax.set_xlabel("step t")
    ax.set_ylabel("ESS / n" if relative else "ESS")
    if n:
        ax.set_ylim(0, 1.05 * (1.0 if relative else n))
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_lineages(history: Any, ax: Any = None, *, label: str | None = None) -> Any:
    """Number of distinct step-0 ancestors alive per step (log scale), one line per batch row.

    Parameters
    ----------
    history : History
        With ancestors.
    ax : matplotlib Axes, optional
    label : str, optional
        Legend label of the first row's line.

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax)
    lin = history.lineages().reshape(history.num_steps, -1)
    steps = np.arange(history.num_steps)
    for r in range(lin.shape[1]):
        ax.plot(
            steps,
            lin[:, r],
            lw=1.2,
            color="C0" if label is None else None,
            alpha=1.0 if lin.shape[1] == 1 else 0.5,
            label=label if r == 0 else None,
        )
    ax.set_xlabel("step t")
    ax.set_ylabel("distinct lineages")
    ax.set_yscale("log")
    if label is not None:
        ax.legend(loc="best", fontsize="small")
    return ax


def plot_genealogy(history: Any, ax: Any = None, *, row: int = 0, max_particles: int = 200) -> Any:
    """The ancestral tree of one row: the lines that survive to the final step in black, the others in grey.

    At most ``max_particles`` particles (evenly spaced over the population) are drawn per step, so the plot
    stays readable for large n; the y axis shows particle indices of the full population.

    Parameters
    ----------
    history : History
        With ancestors.
    ax : matplotlib Axes, optional
    row : int
        The batch row (flat index).
    max_particles : int
        Particles drawn per step.

    Returns
    -------
    matplotlib Axes
    """
    from matplotlib.collections import LineCollection

    ax = _axes(ax)
    anc_all = history._require_ancestors()
    n = anc_all.shape[-1]
    anc = anc_all.reshape(history.num_steps, -1, n)[:, row]
    alive = np.zeros((history.num_steps, n), dtype=bool)
    alive[-1] = True
    for t in range(history.num_steps - 1, 0, -1):
        alive[t - 1, anc[t][alive[t]]] = True
    shown = np.unique(np.linspace(0, n - 1, min(n, max_particles)).astype(np.int64))
    dead_segments: list[Any] = []
    live_segments: list[Any] = []
    for t in range(1, history.num_steps):
        for i in shown:
            segment = ((t - 1, anc[t, i]), (t, i))
            (live_segments if alive[t, i] else dead_segments).append(segment)
    ax.add_collection(LineCollection(dead_segments, colors="0.8", linewidths=0.5, zorder=1))
    ax.add_collection(LineCollection(live_segments, colors="k", linewidths=0.9, zorder=2, label="surviving lines"))
    ax.set_xlim(0, max(history.num_steps - 1, 1))
    ax.set_ylim(-0.5, n - 0.5)
    ax.set_xlabel("step t")
    ax.set_ylabel("particle index")
    ax.set_title(f"genealogy of row {row} ({len(shown)} of {n} particles shown)", fontsize="small")
    return ax


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install matplotlib (the 'plot' extra of smckit)") from exc
    return plt.subplots()[1]
