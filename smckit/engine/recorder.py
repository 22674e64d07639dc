"""The recorder: the one owner of a run's per-step records.

Scalars per row (ESS, evidence increments, resampling masks) go into buffers preallocated for the model's
horizon on the weights' device (grown by doubling for adaptive horizons); ancestors are kept only for the steps
that resampled; everything is copied to the host once, when a :class:`~smckit.result.History` is asked for.
A new per-step diagnostic belongs here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from smckit.backend import Array, device_of, namespace, to_host
from smckit.result import History

__all__ = ["HISTORY_MODES", "Recorder"]

HISTORY_MODES = ("none", "ancestors", "full")


class Recorder:
    """Per-step records of one run.

    Parameters
    ----------
    mode : {"none", "ancestors", "full"}
        What to keep beyond the scalar diagnostics.
    capacity : int or None
        The horizon when known (``num_steps``), else None (the buffers grow).
    scheme : str, optional
        The resampler's name, kept in the history.
    """

    def __init__(self, mode: str, capacity: int | None, scheme: str | None = None):
        self.mode = mode
        self.scheme = scheme
        self.capacity = capacity or 64
        self.steps = 0
        self._ess: Array = None  # (capacity, *batch), on the device of the weights
        self._inc: Array = None
        self._masks: Array = None  # (capacity, *batch) bool, allocated when a per-row decision first arrives
        self._static = np.zeros(self.capacity, dtype=bool)  # steps whose decision was one Python bool
        self._from_mask = np.zeros(self.capacity, dtype=bool)
        self._ancestors: dict[int, Array] = {}
        self.info: list[dict[str, Any]] = []
        self.particles: list[Any] | None = [] if mode == "full" else None
        self.log_weights: list[Array] | None = [] if mode == "full" else None

    def record(
        self,
        t: int,
        ess: Array,
        increment: Array,
        resampled: Any,
        ancestors: Array | None,
        info: dict[str, Any],
        state: Any,
        log_w: Array,
    ) -> None:
        """Keep step ``t``'s records (``t`` counts up from 0 by one).

        Parameters
        ----------
        t : int
        ess, increment : arrays, shape (*batch,)
        resampled : bool or boolean array of shape (*batch,)
        ancestors : integer array of shape (*batch, n), or None when no row resampled
        info : dict
        state : state
            Kept with ``mode="full"`` only.
        log_w : array, shape (*batch, n)
            Kept with ``mode="full"`` only.
        """
        if self._ess is None:
            self._ess = _empty_like(ess, self.capacity)
            self._inc = _empty_like(increment, self.capacity)
        elif t == self.capacity:
            self._grow()
        self._ess[t] = ess
        self._inc[t] = increment
        if isinstance(resampled, bool):
            self._static[t] = resampled
        else:
            if self._masks is None:
                self._masks = _empty_like(resampled, self.capacity)
            self._masks[t] = resampled
            self._from_mask[t] = True
        if ancestors is not None and self.mode != "none":
            self._ancestors[t] = ancestors
        self.info.append(info)
        if self.particles is not None and self.log_weights is not None:
            self.particles.append(state)
            self.log_weights.append(log_w)
        self.steps = t + 1

    def history(self, *, steps: int | None = None, n: int, offset: int = 0, n_total: int | None = None) -> History:
        """The records of the first ``steps`` steps (all by default) as a host :class:`History`.

        ``n`` particles per row are held here, with global indices ``offset .. offset + n - 1`` among
        ``n_total``; ancestors of steps that did not resample are those identities.
        """
        steps = self.steps if steps is None else steps
        ess = to_host(self._ess[:steps])
        batch = tuple(ess.shape[1:])
        resampled = np.broadcast_to(self._static[:steps].reshape((steps,) + (1,) * len(batch)), (steps, *batch)).copy()
        if self._masks is not None:
            from_mask = self._from_mask[:steps]
            resampled[from_mask] = to_host(self._masks[:steps])[from_mask]
        ancestors = None
        if self.mode != "none":
            total = n_total if n_total is not None else n
            dtype = np.int32 if total < 2**31 else np.int64
            ancestors = np.empty((steps, *batch, n), dtype=dtype)
            ancestors[...] = np.arange(offset, offset + n, dtype=dtype)
            kept = sorted(t for t in self._ancestors if t < steps)
            if kept:
                xp = namespace(self._ancestors[kept[0]])
                stacked = to_host(xp.stack([self._ancestors[t] for t in kept]))
                ancestors[kept] = stacked
        return History(
            ess=ess.astype(np.float64, copy=False),
            resampled=resampled,
            log_evidence_increments=to_host(self._inc[:steps]).astype(np.float64, copy=False),
            ancestors=ancestors,
            info=self.info[:steps],
            particles=None if self.particles is None else self.particles[:steps],
            log_weights=None if self.log_weights is None else self.log_weights[:steps],
            scheme=self.scheme,
        )

    def _grow(self) -> None:
        extra = self.capacity
        self._ess = _concat(self._ess, _empty_like(self._ess[0], extra))
        self._inc = _concat(self._inc, _empty_like(self._inc[0], extra))
        if self._masks is not None:
            self._masks = _concat(self._masks, _empty_like(self._masks[0], extra))
        self._static = np.concatenate([self._static, np.zeros(extra, dtype=bool)])
        self._from_mask = np.concatenate([self._from_mask, np.zeros(extra, dtype=bool)])
        self.capacity += extra


def _empty_like(x: Array, steps: int) -> Array:
    if isinstance(x, (np.generic, bool)):  # numpy reductions over a single row return scalars
        return np.empty((steps,), dtype=np.asarray(x).dtype)
    xp = namespace(x)
    return xp.empty((steps, *tuple(x.shape)), dtype=x.dtype, device=device_of(x))


def _concat(a: Array, b: Array) -> Array:
    return namespace(a).concat([a, b], axis=0)
