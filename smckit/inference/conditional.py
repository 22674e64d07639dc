"""Conditional SMC: a particle filter that keeps a reference path, the kernel of particle Gibbs.

Built from two public pieces around any model and the engine:

- :class:`Pinned`, a model wrapper that writes the reference state ``x*_t`` into particle slot 0 after every
  ``initial`` / ``propose``;
- :class:`ConditionalResampler`, a resampler wrapper that draws the ancestors of slots ``1 .. n-1`` as ``n - 1``
  independent draws from the weights (multinomial, as conditional SMC needs: systematic or residual draws would
  not have the right law given the reference) and gives slot 0 its ancestor: slot 0 itself (the reference's own
  lineage, then a path is drawn by backward sampling), or a draw from ``W_{t-1}^j f_t(x*_t | x_{t-1}^j)``
  (ancestor sampling, Lindsten, Jordan and Schön 2014), using the model's ``log_transition``.

The run resamples at every step (``Always``). Slot 0 then holds the reference at every step, whatever happens to
the other particles: :func:`conditional_smc` checks it, and the tests check it on every step of the history.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from smckit.backend import Array, namespace
from smckit.engine import run
from smckit.errors import InvalidArgumentError
from smckit.model import FeynmanKac
from smckit.policy import Always
from smckit.random import RNG
from smckit.resamplers.base import Capabilities, Resampled
from smckit.result import Result
from smckit.smoothing import Categorical, backward_sampling, genealogy_paths
from smckit.state import leaves, take, tree_map

__all__ = ["Pinned", "ConditionalResampler", "conditional_smc", "draw_path", "SAMPLING"]

SAMPLING = ("ancestor", "backward")
"""How particle Gibbs draws its next path: ancestor sampling during the run, or backward sampling after it."""


class _Shared:
    """What the resampler needs from the model wrapper: the step and the particles of the last step."""

    def __init__(self) -> None:
        self.t = -1
        self.state: Any = None


class Pinned(FeynmanKac):
    """``model`` with the reference path written into particle slot 0 at every step.

    Parameters
    ----------
    model : FeynmanKac
    reference : list of states
        ``reference[t]`` is ``x*_t`` with a particle axis of length one: leaves ``(*batch, 1, *event)``; one per
        step of the model.
    batch_ndim : int
        The number of batch dimensions of the model's states.
    """

    def __init__(self, model: FeynmanKac, reference: list[Any], batch_ndim: int):
        self.model = model
        self.reference = reference
        self.batch_ndim = int(batch_ndim)
        self.num_steps = len(reference)
        self.shared = _Shared()
        if callable(getattr(model, "log_transition", None)):
            self.log_transition = model.log_transition  # type: ignore[attr-defined]

    def pin(self, t: int, state: Any) -> Any:
        """``state`` with slot 0 replaced by ``reference[t]`` (leaves (*batch, n, *event))."""
        refs = iter(leaves(self.reference[t]))
        rest = (slice(None),) * self.batch_ndim + (slice(1, None),)

        def put(leaf: Array) -> Array:
            return namespace(leaf).concat([next(refs), leaf[rest]], axis=self.batch_ndim)

        pinned = tree_map(put, state)
        self.shared.t, self.shared.state = t, pinned
        return pinned

    def initial(self, n: int, rng: RNG) -> Any:
        return self.pin(0, self.model.initial(n, rng))

    def propose(self, t: int, state: Any, rng: RNG) -> Any:
        return self.pin(t, self.model.propose(t, state, rng))

    def log_potential(self, t: int, prev: Any, state: Any) -> Array:
        return self.model.log_potential(t, prev, state)

    def __repr__(self) -> str:
        return f"Pinned({self.model!r}, T={self.num_steps})"


class ConditionalResampler:
    """Multinomial resampling of slots ``1 .. n-1``, and slot 0's ancestor chosen for the reference.

    Parameters
    ----------
    pinned : Pinned
        The model wrapper of the same run (it tells the step and the particles of the last step).
    ancestor_sampling : bool
        Draw slot 0's ancestor from ``W_{t-1}^j f_t(x*_t | x_{t-1}^j)`` (needs the model's ``log_transition``);
        otherwise slot 0 descends from slot 0.
    """

    name = "conditional"
    rebirth_noise = 0.0
    capabilities = Capabilities(unbiased=False, variable_size=False, uniform_output_weights=True)

    def __init__(self, pinned: Pinned, *, ancestor_sampling: bool):
        if ancestor_sampling and not callable(getattr(pinned, "log_transition", None)):
            raise InvalidArgumentError(
                f"ancestor sampling needs the model's log_transition(t, prev, state); {type(pinned.model).__name__} "
                "has none (use sampling='backward' with such a method, or add it)"
            )
        self.pinned = pinned
        self.ancestor_sampling = bool(ancestor_sampling)

    def __call__(self, log_weights: Array, rng: RNG, *, n_out: int | None = None) -> Resampled:
        """Resample from log-weights ``(*batch, n)``; returns ancestors ``(*batch, n)`` with slot 0 the reference's."""
        xp = namespace(log_weights)
        n = log_weights.shape[-1]
        if n_out is not None and n_out != n:
            raise InvalidArgumentError("conditional resampling keeps the number of particles")
        others = categorical(log_weights, n - 1, rng)
        shared = self.pinned.shared
        if self.ancestor_sampling:
            t = shared.t + 1
            b = self.pinned.batch_ndim
            ref = tree_map(lambda r: xp.broadcast_to(r, (*r.shape[:b], n, *r.shape[b + 1 :])), self.pinned.reference[t])
            log_f = self.pinned.log_transition(t, shared.state, ref)  # type: ignore[attr-defined]
            first = categorical(log_weights + log_f, 1, rng)[..., 0]
        else:
            first = xp.zeros(tuple(log_weights.shape[:-1]), dtype=others.dtype)
        ancestors = xp.concat([xp.expand_dims(xp.astype(first, others.dtype), axis=-1), others], axis=-1)
        return Resampled(ancestors, xp.zeros_like(log_weights), None, {})


def categorical(log_weights: Array, k: int, rng: RNG) -> Array:
    """``k`` independent draws per row from unnormalised log-weights ``(*batch, n)``: int64 ``(*batch, k)``.

    Host arrays take a short path (one cumulative sum and one sorted search over all rows, the rows' normalised
    cumulative sums offset by their row index); others go through :class:`smckit.smoothing.Categorical`. A zero
    weight is never drawn: a search to the right of equal cumulative sums skips it, and a draw rounded past the
    end of its row is clamped to the row's last positive weight.
    """
    if not isinstance(log_weights, np.ndarray):
        return Categorical(log_weights, where="conditional SMC: the weights").draw(k, rng)
    batch, n = log_weights.shape[:-1], log_weights.shape[-1]
    lw = log_weights.reshape(-1, n)
    rows = lw.shape[0]
    with np.errstate(invalid="ignore"):
        w = np.exp(lw - np.max(lw, axis=-1, keepdims=True))
    if not np.isfinite(w).all() or not (w.sum(axis=-1) > 0).all():
        Categorical(log_weights, where="conditional SMC: the weights")  # words the error
    cum = np.cumsum(w, axis=-1)
    offsets = np.arange(rows, dtype=np.float64)[:, None]
    grid = (cum / cum[:, -1:] + offsets).reshape(-1)
    u = rng.numpy.random((rows, k)) + offsets
    index = np.searchsorted(grid, u.reshape(-1), side="right").reshape(rows, k) - (offsets * n).astype(np.int64)
    last = n - 1 - np.argmax(w[:, ::-1] > 0, axis=-1)
    return np.minimum(index, last[:, None]).reshape(*batch, k)


def conditional_smc(
    model: FeynmanKac, reference: list[Any] | None, n_particles: int, rng: RNG, *, sampling: str, batch_ndim: int
) -> Result:
    """One run of conditional SMC (plain SMC when ``reference`` is None), keeping the full history.

    Parameters
    ----------
    model : FeynmanKac
    reference : list of states or None
        As in :class:`Pinned`.
    n_particles : int
    rng : RNG
    sampling : {"ancestor", "backward"}
    batch_ndim : int

    Returns
    -------
    Result
        With ``history="full"``; slot 0 holds the reference at every step.
    """
    if reference is None:
        return run(model, n_particles, policy=Always(), seed=rng.spawn(1)[0], history="full")
    pinned = Pinned(model, reference, batch_ndim)
    resampler = ConditionalResampler(pinned, ancestor_sampling=sampling == "ancestor")
    return run(pinned, n_particles, resampler=resampler, policy=Always(), seed=rng.spawn(1)[0], history="full")


def draw_path(result: Result, model: FeynmanKac, rng: RNG, *, sampling: str, batch_ndim: int) -> list[Any]:
    """One path per batch row from a (conditional) SMC run: the lineage of a particle drawn from the final
    weights, or a backward-sampled path.

    Parameters
    ----------
    result : Result
        With ``history="full"``.
    model : FeynmanKac
        The model that ran (``log_transition`` is needed for backward sampling).
    rng : RNG
    sampling : {"ancestor", "backward"}
    batch_ndim : int

    Returns
    -------
    list of states
        One per step, leaves ``(*batch, 1, *event)``.
    """
    if sampling == "backward":
        paths = backward_sampling(result, model, 1, method="quadratic", seed=rng.spawn(1)[0]).paths
    else:
        lineage = genealogy_paths(result)
        pick = Categorical(lineage.log_weights, where="the final weights").draw(1, rng)
        paths = tree_map(lambda a: take_steps(a, pick), lineage.paths)
    steps = leaves(paths)[0].shape[0]
    return [_at(paths, t) for t in range(steps)]


def _at(paths: Any, t: int) -> Any:
    return tree_map(lambda a: a[t], paths)


def take_steps(paths: Array, pick: Array) -> Array:
    """Trajectories ``(T, *batch, n, *event)`` at the indices ``pick`` ``(*batch, k)``: ``(T, *batch, k, *event)``."""
    return namespace(paths).stack([take(paths[t], pick) for t in range(paths.shape[0])], axis=0)
