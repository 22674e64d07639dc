"""Plots of a run's history (matplotlib is imported here only, when a plot is asked for).

Each function draws on the Axes it is given (or on a new figure's), labels what it drew in a legend, and
returns the Axes, so that a script can save the figure (``ax.figure.savefig("ess.png")``) and a notebook shows
it. They stay readable for large populations: the genealogy draws every line that survives to the last step
and only a sample of the extinct ones.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from smckit.errors import InvalidArgumentError

__all__ = ["plot_ess", "plot_lineages", "plot_genealogy"]


def plot_ess(history: Any, ax: Any = None, *, relative: bool = False, threshold: float | None = None) -> Any:
    """ESS per step, one line per batch row, with the resampling decisions and an optional threshold marked.

    A resampling happens between two steps: the run resamples before step t when the policy looks at the ESS
    left by step t-1. Each resampling is marked on that ESS, the value the decision was made from (with
    ``ESSBelow(threshold)``, every mark lies below the threshold line).

    Parameters
    ----------
    history : History
        ESS of shape (T, *batch) and resampling flags of the same shape.
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure.
    relative : bool
        Plot ``ESS / n`` instead of the ESS.
    threshold : float, optional
        The resampling threshold as a fraction of n, in (0, 1] (as in ``ESSBelow(threshold)``), drawn as a
        dashed line.

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    InvalidArgumentError
        If ``threshold`` is not a number in (0, 1].
    """
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 < threshold <= 1
    ):
        raise InvalidArgumentError(
            f"plot_ess(threshold=...): the threshold is a fraction of n in (0, 1], as in ESSBelow, got {threshold!r}"
        )
    ax = _axes(ax)
    steps = np.arange(history.num_steps)
    ess = np.asarray(history.ess, dtype=np.float64).reshape(history.num_steps, -1)
    n = history.n_particles
    scale = 1.0 / n if relative and n else 1.0
    rows = ess.shape[1]
    for r in range(rows):
        label = ("ESS" if rows == 1 else f"ESS ({rows} batch rows)") if r == 0 else None
        ax.plot(steps, ess[:, r] * scale, lw=1.2, color="C0", alpha=1.0 if rows == 1 else 0.45, label=label)
    resampled = np.asarray(history.resampled, dtype=bool).reshape(history.num_steps, -1)
    t_res, r_res = np.nonzero(resampled[1:])  # resampled before step t + 1, decided on the ESS of step t
    if t_res.size:
        ax.scatter(
            t_res,
            ess[t_res, r_res] * scale,
            s=16,
            color="C3",
            edgecolors="white",
            linewidths=0.5,
            zorder=3,
            label=f"resampled before the next step ({len(np.unique(t_res))} steps)",
        )
    if threshold is not None and n:
        level = threshold * (1.0 if relative else n)
        ax.axhline(level, ls="--", color="0.3", lw=1, label=f"threshold {threshold:g} n")
    ax.set_xlabel("step t")
    ax.set_ylabel("ESS / n" if relative else "ESS")
    if n:
        ax.set_ylim(0, 1.05 * (1.0 if relative else n))
    ax.set_xlim(-0.5, max(history.num_steps - 0.5, 0.5))
    ax.legend(loc="best", fontsize="small", framealpha=0.9)
    return ax


def plot_lineages(history: Any, ax: Any = None, *, label: str | None = None) -> Any:
    """Number of distinct step-0 ancestors alive per step (log scale), one line per batch row.

    Parameters
    ----------
    history : History
        With ancestors (a run with ``history="ancestors"`` or ``"full"``).
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure.
    label : str, optional
        Legend label of the first row's line (to compare runs on one Axes); default: "distinct lineages".

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    InvalidArgumentError
        If the run kept no ancestors.
    """
    _require_ancestors(history, "plot_lineages")
    ax = _axes(ax)
    lin = history.lineages().reshape(history.num_steps, -1)
    steps = np.arange(history.num_steps)
    rows = lin.shape[1]
    text = label if label is not None else "distinct lineages"
    if rows > 1:
        text += f" ({rows} batch rows)"
    (first,) = ax.plot(steps, lin[:, 0], lw=1.2, color=None if label is not None else "C0", label=text)
    for r in range(1, rows):
        ax.plot(steps, lin[:, r], lw=1.2, color=first.get_color(), alpha=0.45)
    if rows > 1:
        first.set_alpha(0.45)
    ax.set_xlabel("step t")
    ax.set_ylabel("distinct step-0 ancestors alive")
    ax.set_yscale("log")
    ax.legend(loc="best", fontsize="small", framealpha=0.9)
    return ax


def plot_genealogy(history: Any, ax: Any = None, *, row: int = 0, max_particles: int = 200) -> Any:
    """The ancestral tree of one batch row: every line that survives to the last step, over a sample of the rest.

    A segment joins particle ``a_t^i`` at step t-1 to particle i at step t. The lines whose descendants are alive
    at the last step are all drawn, in black (they coalesce into few lines going back in time, so they stay
    readable for any n); of the extinct ones, at most ``max_particles`` per step (evenly spaced over the
    particle indices) are drawn in light grey.

    Parameters
    ----------
    history : History
        With ancestors.
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure.
    row : int
        The batch row, as a flat index into the batch shape.
    max_particles : int
        Extinct lines drawn per step, at least 1.

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    InvalidArgumentError
        If the run kept no ancestors, ``row`` is not a row of the batch, or ``max_particles`` is not a positive
        integer.
    """
    from matplotlib.collections import LineCollection

    ancestors = _require_ancestors(history, "plot_genealogy")
    n = ancestors.shape[-1]
    anc = ancestors.reshape(history.num_steps, -1, n)
    rows = anc.shape[1]
    if isinstance(row, bool) or not isinstance(row, numbers.Integral) or not 0 <= row < rows:
        raise InvalidArgumentError(
            f"plot_genealogy(row=...): the batch of shape {tuple(ancestors.shape[1:-1])} has rows 0..{rows - 1} "
            f"(flat index), got {row!r}"
        )
    if isinstance(max_particles, bool) or not isinstance(max_particles, numbers.Integral) or max_particles < 1:
        raise InvalidArgumentError(f"plot_genealogy(max_particles=...) must be an integer >= 1, got {max_particles!r}")
    anc = anc[:, row].astype(np.int64)
    T = history.num_steps
    alive = np.zeros((T, n), dtype=bool)  # alive[t, i]: particle i of step t has a descendant at step T-1
    alive[-1] = True
    for t in range(T - 1, 0, -1):
        alive[t - 1, anc[t][alive[t]]] = True
    # Segments ((t-1, a_t^i), (t, i)) for t = 1..T-1, as an array of shape (T-1, n, 2, 2).
    t_end = np.broadcast_to(np.arange(1, T)[:, None], (T - 1, n))
    i_end = np.broadcast_to(np.arange(n)[None, :], (T - 1, n))
    segments = np.stack([np.stack([t_end - 1, anc[1:]], -1), np.stack([t_end, i_end], -1)], axis=-2).astype(float)
    live = alive[1:]
    sample = np.zeros(n, dtype=bool)
    sample[np.unique(np.linspace(0, n - 1, min(n, max_particles)).astype(np.int64))] = True
    dead = ~live & sample[None, :]
    ax = _axes(ax)
    ax.add_collection(
        LineCollection(
            segments[dead],
            colors="0.8",
            linewidths=0.5,
            zorder=1,
            label=f"extinct lines ({int(sample.sum())} of {n} particles per step)",
        )
    )
    roots = int(alive[0].sum())
    ax.add_collection(
        LineCollection(
            segments[live],
            colors="k",
            linewidths=0.8,
            zorder=2,
            label=f"lines alive at step {T - 1} ({roots} step-0 ancestor{'s' if roots != 1 else ''})",
        )
    )
    ax.set_xlim(0, max(T - 1, 1))
    ax.set_ylim(-0.5, n - 0.5)
    ax.set_xlabel("step t")
    ax.set_ylabel("particle index")
    ax.set_title(f"genealogy of batch row {row}" if rows > 1 else "genealogy", fontsize="small")
    ax.legend(loc="upper left", fontsize="small", framealpha=0.9)
    return ax


def _require_ancestors(history: Any, what: str) -> np.ndarray:
    ancestors = getattr(history, "ancestors", None)
    if ancestors is None:
        raise InvalidArgumentError(
            f"{what} needs the ancestors, and this run kept none (history='none'): run with history='ancestors' "
            "(the default) or 'full'"
        )
    return np.asarray(ancestors)


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install matplotlib (the 'plot' extra of smckit)") from exc
    return plt.subplots()[1]
