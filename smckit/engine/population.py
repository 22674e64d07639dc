"""Populations: who holds the particles, and how the weights of all of them are normalised and resampled.

The loop (:mod:`smckit.engine.loop`) runs the same step for every kind of population; a population owns the
two operations that involve more than one particle, and nothing else:

- ``reweigh(log_w, step=t)``: normalise unnormalised log-weights over the whole population and summarise them
  (:class:`~smckit.weights.Weighted`); a distributed population reduces across ranks here;
- ``resample(t, particles, log_w, policy)``: resample the rows the policy selects, move every leaf of
  ``particles`` with the ancestors, and return :class:`Moved`.

The evidence is written once, in the loop: ``log Z += Weighted.log_z``. ``Moved.log_w`` may be unnormalised: a
scheme with non-uniform output weights (Fleming-Viot with ``keep_target``) leaves total mass ``mean exp(out)`` in
them, which the next ``reweigh`` folds into ``log_z``; that is what keeps the evidence unbiased, in every kind of
population alike. :class:`Local` is the single-process population; :mod:`smckit.distributed` adds sharded and
island populations.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

import numpy as np

from smckit.backend import Array, device_of, namespace, to_host
from smckit.engine.checks import check_resampled, on_host
from smckit.policy import Policy
from smckit.random import RNG
from smckit.state import take
from smckit.weights import Weighted, validate, weigh

__all__ = ["Moved", "Population", "Local", "select_rows"]


class Moved(NamedTuple):
    """What a resampling returns to the loop.

    Attributes
    ----------
    particles : state
        The particles (and whatever else the loop moves with them), leaves of shape (*batch, n_local, *event).
    log_w : array, shape (*batch, n_local)
        Log-weights after the resampling; their total mass over the population is the resampling's evidence
        factor (1 for the standard schemes).
    resampled : bool or boolean array of shape (*batch,)
        Which rows resampled.
    ancestors : integer array of shape (*batch, n_local), or None
        Global index of each particle's parent (None: nobody moved).
    reborn : boolean array of shape (*batch, n_local), or None
        Particles that the scheme marks for rebirth noise.
    info : dict
        The scheme's diagnostics.
    flag : boolean array of shape () or None
        A device-side flag, set when a deferred check of the scheme's output failed.
    """

    particles: Any
    log_w: Array
    resampled: Any
    ancestors: Array | None
    reborn: Array | None
    info: dict[str, Any]
    flag: Array | None


class Population(Protocol):
    """The extension contract between the loop and a kind of population (see the module docstring).

    Attributes: ``n`` particles per row held here, ``n_total`` over the whole population, ``offset`` the global
    index of the first local particle, ``rng`` the local random stream, ``rebirth_noise`` the scale the scheme
    asks for (0: none).
    """

    n: int
    n_total: int
    offset: int
    rng: RNG
    rebirth_noise: float

    def start(self, log_w: Array, state: Any) -> None:
        """Called once at step 0, before the first reweighting (ranks agree on layouts here).

        Parameters
        ----------
        log_w : array, shape (*batch, n)
            The uniform initial log-weights ``-log n_total``, in the run's weight dtype.
        state : state, leaves of shape (*batch, n, *event)
            The initial particles.
        """

    def reweigh(self, log_w: Array, *, step: int) -> Weighted:
        """Normalise over the whole population.

        Parameters
        ----------
        log_w : array, shape (*batch, n)
            Unnormalised log-weights of the particles held here.
        step : int

        Returns
        -------
        Weighted
            With ``log_z``, ``ess`` and ``bad`` of shape (*batch,) for the whole population.
        """

    def resample(self, t: int, particles: Any, log_w: Array, policy: Policy, lookahead: Any = None) -> Moved:
        """Resample the rows that ``policy`` selects, given the ESS of the last reweighting.

        Parameters
        ----------
        t : int
        particles : state, leaves of shape (*batch, n, *event)
        log_w : array, shape (*batch, n)
            Normalised log-weights.
        policy : Policy
            Asked once, with the ESS fraction this kind of population resamples on (none for a static policy).
        lookahead : callable, optional
            ``lookahead(particles)``: auxiliary log-weights ``log eta`` (*batch, n), asked for only if a row
            resamples.

        Returns
        -------
        Moved
        """

    def explain(self, log_w: Array, log_g: Array, weighted: Weighted, *, step: int, what: str, result: object) -> None:
        """Raise the error that ``weighted.bad`` stands for, with ``result`` attached.

        Parameters
        ----------
        log_w : array, shape (*batch, n)
            The unnormalised log-weights that were reweighted.
        log_g : array, shape (*batch, n)
            The log-potential in them, which came from ``what``.
        weighted : Weighted
        step : int
        what : str
        result : Result or None
        """

    def fail(self, error: BaseException, *, step: int) -> None:
        """This process hit ``error`` during step ``step``: make sure no other process waits for it, then raise."""

    def agree(self, flag: bool, *, what: str) -> bool:
        """A host decision (``done``) that every process must share."""

    def wrap(self, result: Any) -> Any:
        """The run's result, as this kind of population presents it."""


def select_rows(policy: Policy, t: int, ess_fraction: Array | None) -> tuple[Any, Any]:
    """Ask ``policy`` which rows resample at step ``t``: ``(decision, mask)``.

    ``decision`` is what the run records (a bool, or a boolean array of shape (*batch,)); ``mask`` is ``False``
    when no row resamples, ``None`` when every row does, and the boolean array otherwise. A per-row decision is
    read back to the host (free there, one small copy on an accelerator).

    Parameters
    ----------
    policy : Policy
    t : int
    ess_fraction : array of shape (*batch,), or None for a static policy

    Returns
    -------
    tuple
    """
    decision = policy.decide(t, ess_fraction)
    if isinstance(decision, np.bool_):  # one row: a numpy scalar
        decision = bool(decision)
    if isinstance(decision, bool):
        return decision, None if decision else False
    selected = to_host(decision)
    if not selected.any():
        return decision, False
    return decision, None if selected.all() else decision


class Local:
    """Every particle of every row in this process.

    Parameters
    ----------
    n : int
        Particles per row.
    resampler : Resampler
        A resolved resampler object (see :func:`smckit.engine.checks.resolve_resampler`).
    rng : RNG
    rebirth_noise : float
    """

    def __init__(self, n: int, resampler: Any, rng: RNG, rebirth_noise: float = 0.0):
        self.n = self.n_total = n
        self.offset = 0
        self.resampler = resampler
        self.rng = rng
        self.rebirth_noise = rebirth_noise
        self._uniform_output = bool(resampler.capabilities.uniform_output_weights)
        self._log_n = math.log(n)
        self._uniform: Array = None
        self._identity: Array = None
        self.ess: Array = None  # of the last reweighting, shape (*batch,)
        self.defer = False  # check the scheme's output through device flags (set at step 0 on an accelerator)

    def start(self, log_w: Array, state: Any) -> None:
        """Build the constants of the run (uniform log-weights, identity ancestors); see :meth:`Population.start`.

        Parameters
        ----------
        log_w : array, shape (*batch, n)
        state : state
        """
        xp = namespace(log_w)
        self.defer = not on_host(log_w)
        self._uniform = xp.full(tuple(log_w.shape), -self._log_n, dtype=log_w.dtype, device=device_of(log_w))
        self._identity = xp.broadcast_to(xp.arange(self.n, dtype=xp.int64, device=device_of(log_w)), tuple(log_w.shape))

    def reweigh(self, log_w: Array, *, step: int) -> Weighted:
        """:func:`smckit.weights.weigh`: every particle is here.

        Parameters
        ----------
        log_w : array, shape (*batch, n)
        step : int

        Returns
        -------
        Weighted
        """
        weighted = weigh(log_w)
        self.ess = weighted.ess
        return weighted

    def resample(self, t: int, particles: Any, log_w: Array, policy: Policy, lookahead: Any = None) -> Moved:
        """Run the scheme where ``policy`` says (on ``ESS / n``), check its output, gather the particles.

        Parameters
        ----------
        t : int
        particles : state, leaves of shape (*batch, n, *event)
        log_w : array, shape (*batch, n)
        policy : Policy
            Per-row decisions are read back to the host: when no row is selected the scheme does not run, and
            rows that are not selected keep their own particles.
        lookahead : callable, optional
            ``lookahead(particles)`` returns auxiliary log-weights ``log eta`` of shape (*batch, n), asked for only
            when a row resamples:
            the scheme then draws on ``log_w + log eta`` and each copy carries ``-log eta`` of its parent (the
            auxiliary particle filter).

        Returns
        -------
        Moved
        """
        decision, mask = select_rows(policy, t, None if policy.static else self.ess / self.n)
        if decision is False or mask is False:
            return Moved(particles, log_w, decision, None, None, {}, None)
        log_eta = None if lookahead is None else lookahead(particles)
        x = log_w if log_eta is None else log_w + log_eta
        out = self.resampler(x, self.rng)
        ancestors, out_w, flag = check_resampled(
            out, x, self.resampler, t, uniform=self._uniform_output, defer=self.defer
        )
        xp = namespace(log_w)
        new_w = self._uniform if out_w is None else out_w - self._log_n
        if log_eta is not None:
            # Auxiliary weights: copies were drawn on W eta, so each carries S / eta(parent), S = sum_j W_j eta_j;
            # their mass is then 1 in expectation and the evidence stays unbiased.
            new_w = new_w + weigh(x).log_z[..., None] - take(log_eta, ancestors)
        reborn = out.reborn
        if mask is not None:
            keep = ~mask[..., None]
            ancestors = xp.where(keep, xp.astype(self._identity, ancestors.dtype), ancestors)
            new_w = xp.where(keep, log_w, new_w)
            if reborn is not None:
                reborn = reborn & mask[..., None]
        return Moved(take(particles, ancestors), new_w, decision, ancestors, reborn, dict(out.info), flag)

    def explain(self, log_w: Array, log_g: Array, weighted: Weighted, *, step: int, what: str, result: object) -> None:
        """Word the error with :func:`smckit.weights.validate`, blaming the potential first.

        Parameters
        ----------
        log_w : array, shape (*batch, n)
        log_g : array, shape (*batch, n)
        weighted : Weighted
        step : int
        what : str
        result : Result or None
        """
        validate(log_g, step=step, what=what, result=result)
        validate(log_w, step=step, what="the log-weights", result=result)

    def fail(self, error: BaseException, *, step: int) -> None:
        """Nobody else waits: raise ``error``."""
        raise error

    def agree(self, flag: bool, *, what: str) -> bool:
        """One process agrees with itself."""
        return flag

    def wrap(self, result: Any) -> Any:
        """A plain :class:`~smckit.result.Result`."""
        return result
