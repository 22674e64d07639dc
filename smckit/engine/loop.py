"""The SMC loop: one step, written once, for every kind of population.

Time runs t = 0 .. T-1. Step 0 draws ``x_0 ~ M_0`` and weights it by ``G_0``. Each later step t

1. resamples (per row) if the policy says so, given the ESS left by step t-1, and applies rebirth noise to the
   particles the scheme marks as reborn;
2. moves every particle with ``M_t``;
3. adds ``log G_t`` to the log-weights (which accumulate across steps that did not resample);
4. adds ``log sum_i w_i G_t^i`` to the log-evidence, ``w`` the weights after step 1 (normalised, times the
   total output mass of a scheme whose output weights are not uniform);
5. checks the new weights: NaN or +inf is an error, a row with every weight zero is an extinction;
6. records ESS, resampling, ancestors, the scheme's diagnostics and the Eve indices.

The population (:mod:`smckit.engine.population`) owns the normalisation and the resampling: one process
(:class:`~smckit.engine.population.Local`), or ranks of a process group (:mod:`smckit.distributed`). The loop has
no backend code. The final weighted particles are never resampled: a last resampling only adds noise.

On an accelerator the loop never waits for the device inside a step with a static policy (``Always``,
``Every``, ``Never``, ``Window`` of those): the bad-weights flag of step t is read once step t+1 is queued, and
a set flag is explained exactly from the retained inputs of step t, naming step t, with the result up to step
t-1. ``ESSBelow`` reads its ``(*batch,)`` decision back (one small copy per step), so that steps where no row
resamples cost nothing and rows that keep their particles are not gathered.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smckit.backend import Array, device_of, namespace, to_host
from smckit.engine.checks import (
    check_first_potential,
    check_model,
    check_n_particles,
    check_state,
    check_step,
    on_host,
    rebirth_noise_of,
    resolve_resampler,
)
from smckit.engine.population import Local, Population
from smckit.engine.recorder import HISTORY_MODES, Recorder
from smckit.errors import InvalidArgumentError, InvalidWeightsError, ShapeError
from smckit.model import FeynmanKac
from smckit.policy import ESSBelow, Policy
from smckit.random import RNG, as_rng
from smckit.resamplers.base import Resampler
from smckit.result import Result, weighted_mean
from smckit.weights import Weighted, check_finite_or_minus_inf, weight_dtype

__all__ = ["SMC", "Step", "run"]

State = Any


@dataclass(repr=False)
class Step:
    """What one step of :class:`SMC` produced (returned by ``next(smc)``).

    Attributes
    ----------
    t : int
        The step index.
    state : state
        The particles after the move, arrays of shape (*batch, n, *event).
    log_weights : array, shape (*batch, n)
        Normalised log-weights after weighting (float32 or wider).
    ess : array, shape (*batch,)
        Effective sample size of those weights.
    resampled : bool or array of bool, shape (*batch,)
        Whether each row resampled at the start of this step.
    log_evidence : array, shape (*batch,)
        The log-evidence estimate so far (float64).
    info : dict
        The resampler's diagnostics (empty when it did not run).
    """

    t: int
    state: State
    log_weights: Array
    ess: Array
    resampled: Any
    log_evidence: Array
    info: dict[str, Any] = field(default_factory=dict)

    def estimate(self, f: Any) -> Array:
        """The filtering estimate ``sum_i W_i f(x_i)`` at this step, per row.

        Parameters
        ----------
        f : callable
            Maps the state to an array of shape (*batch, n, *out).

        Returns
        -------
        array, shape (*batch, *out)
        """
        return weighted_mean(f(self.state), self.log_weights)

    def __repr__(self) -> str:
        ess = to_host(self.ess, np.float64)
        resampled = bool(np.any(to_host(self.resampled))) if not isinstance(self.resampled, bool) else self.resampled
        return (
            f"Step(t={self.t}, batch={tuple(self.log_weights.shape[:-1])}, n={self.log_weights.shape[-1]}, "
            f"min_ess={float(np.min(ess)):.4g}, resampled={resampled}, info={sorted(self.info)})"
        )


class SMC:
    """The SMC engine as an iterator: each ``next()`` runs one step and returns a :class:`~smckit.Step`.

    Parameters
    ----------
    model : FeynmanKac
        The model to run.
    n_particles : int
        Particles per population (batch row).
    resampler : str or Resampler
        A registered scheme name (``"systematic"``, ``"multinomial"``, ``"fvd"``, ``"dist:name"``, ...)
        or a resampler object.
    policy : Policy, optional
        When to resample; defaults to the model's ``default_policy`` or ``ESSBelow(0.5)``.
    seed : int, RNG or None
        Seed of the run; the same seed, backend and device give bit-identical results.
    history : {"ancestors", "full", "none"}
        What to keep per step: ancestors and diagnostics (default), also every weighted particle
        population (``"full"``), or only the scalar diagnostics (``"none"``, which also skips the Eve indices).
    progress : bool
        Show a tqdm progress bar with the ESS and the number of resamplings (reads the ESS back every step).
    trackers : mapping of str to tracker, optional
        Objects that follow the run online (smoothing statistics, for instance): ``start(state, log_weights)``
        after step 0, ``update(t, prev_state, prev_log_weights, ancestors, state, log_weights)`` after every
        later step (``prev_*`` the population after step t-1 before resampling, ``ancestors`` indices into it or
        ``None`` when no row resampled), and ``value()``, kept in ``Result.tracked``. A run without trackers
        pays nothing for the hook.

    Raises
    ------
    InvalidArgumentError
        For a non-positive ``n_particles``, an unknown history mode, a model without a usable horizon, a policy
        that is not a :class:`~smckit.Policy`, a resampler whose ``capabilities`` are not
        :class:`~smckit.Capabilities`, or a resampler with rebirth noise and a model without ``rebirth``.

    Notes
    -----
    Any exception that ends a run (an error in the model, ``KeyboardInterrupt``) carries the steps that finished
    as its ``.result`` attribute; smckit's own errors pickle with it.

    Examples
    --------
    >>> import smckit
    >>> from smckit.models import LinearGaussian, Bootstrap
    >>> ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    >>> _, y = ssm.simulate(20, seed=1)
    >>> smc = smckit.SMC(Bootstrap(ssm, y), 100, seed=0)
    >>> steps = list(smc)
    >>> len(steps), smc.result.log_evidence.shape
    (20, ())
    """

    def __init__(
        self,
        model: FeynmanKac,
        n_particles: int,
        *,
        resampler: str | Resampler = "systematic",
        policy: Policy | None = None,
        seed: RNG | int | np.random.SeedSequence | None = None,
        history: str = "ancestors",
        progress: bool = False,
        trackers: Mapping[str, Any] | None = None,
        population: Population | None = None,
    ):
        check_model(model)
        n = check_n_particles(n_particles)
        if history not in HISTORY_MODES:
            raise InvalidArgumentError(f"history must be one of {HISTORY_MODES}, got {history!r}")
        self.model = model
        self.policy = policy if policy is not None else (model.default_policy or ESSBelow(0.5))
        if not isinstance(self.policy, Policy):
            raise InvalidArgumentError(f"policy must be a smckit Policy, got {type(self.policy).__name__}")
        self.trackers = _check_trackers(trackers)
        if population is None:
            scheme = resolve_resampler(resampler)
            population = Local(n, scheme, as_rng(seed), rebirth_noise_of(scheme, model))
        elif self.trackers:
            raise InvalidArgumentError("trackers follow single-process runs only; run them per row (rows mode)")
        self.population = population
        self.resampler = getattr(population, "resampler", resampler)
        self.rng = population.rng
        self.n = population.n
        self.history_mode = history
        self.recorder = Recorder(history, model.num_steps, str(getattr(self.resampler, "name", self.resampler)))
        self.t = -1
        self.state: State = None
        self.log_weights: Array = None
        self.log_evidence: Array = None
        self.eve: Array = None
        self._adaptive = type(model).done is not FeynmanKac.done
        self._lookahead = self._auxiliary if callable(getattr(model, "log_lookahead", None)) else None
        self._observes = callable(getattr(model, "observe_weights", None))
        self._finished = False
        self._batch: tuple[int, ...] = ()
        self._reference: Array = None  # the first log-potential: fixes backend, device and dtype of the run
        self._defer = False  # on an accelerator: value checks are read back one step late
        self._pending: _Pending | None = None
        self._bar: Any = _progress_bar(model) if progress else None
        self._n_resampled = 0

    # -- iteration -------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Step]:
        return self

    def __next__(self) -> Step:
        if self._finished:
            raise StopIteration
        try:
            step = self._first_step() if self.t < 0 else self._next_step()
            done = bool(self.model.done(step.t, step.state))
            if self._adaptive:  # a fixed horizon needs no agreement between processes
                done = self.population.agree(done, what=f"{type(self.model).__name__}.done")
            self._finished = done
            if self._finished:
                self._settle()
        except BaseException as exc:
            self._attach_partial(exc)
            raise
        if self._bar is not None:
            self._update_bar(step)
        return step

    def run(self) -> Result:
        """Run every remaining step and return the :class:`~smckit.Result`."""
        for _ in self:
            pass
        return self.result

    @property
    def result(self) -> Result:
        """The result of the steps run so far (the final result once the iterator is exhausted)."""
        if self.t < 0:
            raise InvalidArgumentError("no step has run yet: call next(smc) or smc.run() first")
        self._settle()
        return self._result(self.t, self.state, self.log_weights, self.log_evidence, self.eve)

    # -- the steps -------------------------------------------------------------------------------------------
    def _first_step(self) -> Step:
        model, pop = self.model, self.population
        try:
            state = model.initial(pop.n, self.rng)
            log_g = model.log_potential(0, None, state)
            self._batch = check_first_potential(model, log_g, state, pop.n)
            dtype = weight_dtype(log_g)
        except Exception as exc:
            pop.fail(exc, step=0)
            raise
        self._reference = log_g
        self._defer = not on_host(log_g)
        xp = namespace(log_g)
        dev = device_of(log_g)
        shape = tuple(log_g.shape)
        uniform = xp.full(shape, -math.log(pop.n_total), dtype=dtype, device=dev)
        pop.start(uniform, state)
        if self.history_mode != "none":
            ids = xp.arange(pop.offset, pop.offset + pop.n, dtype=xp.int64, device=dev)
            self.eve = xp.broadcast_to(ids, shape)
        x = uniform + log_g
        weighted = pop.reweigh(x, step=0)
        self._check(0, x, log_g, weighted, None)
        log_evidence = _float64(weighted.log_z)
        for tracker in self.trackers.values():
            tracker.start(state, weighted.log_w)
        return self._commit(0, state, weighted, log_evidence, False, None, {})

    def _next_step(self) -> Step:
        t = self.t + 1
        model, pop = self.model, self.population
        carry = self.state if self.eve is None else (self.state, self.eve)
        lookahead = None if self._lookahead is None else functools.partial(self._lookahead, t)
        moved = pop.resample(t, carry, self.log_weights, self.policy, lookahead)
        state, eve = (moved.particles, None) if self.eve is None else moved.particles
        if moved.reborn is not None and pop.rebirth_noise:
            state = model.rebirth(t, state, moved.reborn, pop.rebirth_noise, self.rng)  # type: ignore[attr-defined]
        try:
            if self._observes:  # the model sees the weights its next potential multiplies
                state = model.observe_weights(t, state, moved.log_w)  # type: ignore[attr-defined]
                check_state(model, t, state, self._batch, pop.n, method="observe_weights")
            prev = state
            state = model.propose(t, prev, self.rng)
            check_state(model, t, state, self._batch, pop.n)
            log_g = model.log_potential(t, prev, state)
            check_step(model, t, log_g, self._reference, self._batch, pop.n)
        except Exception as exc:
            pop.fail(exc, step=t)
            raise
        x = moved.log_w + log_g
        weighted = pop.reweigh(x, step=t)
        self._check(t, x, log_g, weighted, moved.flag)
        for tracker in self.trackers.values():
            tracker.update(t, self.state, self.log_weights, moved.ancestors, state, weighted.log_w)
        if eve is not None:
            self.eve = eve
        return self._commit(
            t, state, weighted, self.log_evidence + weighted.log_z, moved.resampled, moved.ancestors, moved.info
        )

    def _commit(
        self,
        t: int,
        state: State,
        weighted: Weighted,
        log_evidence: Array,
        resampled: Any,
        ancestors: Array | None,
        info: dict[str, Any],
    ) -> Step:
        self.recorder.record(t, weighted.ess, weighted.log_z, resampled, ancestors, info, state, weighted.log_w)
        self.t, self.state, self.log_weights, self.log_evidence = t, state, weighted.log_w, log_evidence
        return Step(t, state, weighted.log_w, weighted.ess, resampled, log_evidence, info)

    # -- checks ----------------------------------------------------------------------------------------------
    def _check(self, t: int, x: Array, log_g: Array, weighted: Weighted, flag: Array | None) -> None:
        """Raise for bad weights at step t, now (host) or once step t+1 is queued (accelerator)."""
        partial = (self.t, self.state, self.log_weights, self.log_evidence, self.eve)
        if not self._defer:
            if bool(weighted.bad.any()):
                self.population.explain(x, log_g, weighted, step=t, what=self._what(), result=self._partial(partial))
            return
        self._settle()
        xp = namespace(weighted.bad)
        bad = xp.any(weighted.bad)
        flags = bad if flag is None else xp.stack([bad, flag])
        self._pending = _Pending(t, flags, x, log_g, weighted, partial)

    def _settle(self) -> None:
        """Read the pending flags of the last step (they are ready or nearly so) and raise if one is set."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        bad_weights, bad_output = pending.read()
        if bad_output:  # the scheme's output explains any bad weights that followed from it
            raise InvalidWeightsError(
                f"the resampler {getattr(self.resampler, 'name', self.resampler)!r} at step {pending.t} returned "
                f"ancestors outside [0, {self.n - 1}] or NaN/+inf output log-weights (checked on the device)",
                step=pending.t,
                count=0,
                result=self._partial(pending.partial),
            )
        if bad_weights:
            self.population.explain(
                pending.x,
                pending.log_g,
                pending.weighted,
                step=pending.t,
                what=self._what(),
                result=self._partial(pending.partial),
            )

    def _auxiliary(self, t: int, carry: Any) -> Array:
        """The model's look-ahead log-weights of the particles in ``carry`` (about to be resampled before step t)."""
        state = carry if self.eve is None else carry[0]
        log_eta = self.model.log_lookahead(t, state)  # type: ignore[attr-defined]
        what = f"{type(self.model).__name__}.log_lookahead"
        expected = (*self._batch, self.n)
        if tuple(getattr(log_eta, "shape", ())) != expected:
            got = tuple(getattr(log_eta, "shape", ()))
            raise ShapeError(f"{what} at step {t} returned {got}; expected {expected}")
        log_eta = namespace(log_eta).astype(log_eta, self.log_weights.dtype)
        # Checked on the host on every device: it is asked for only at resampling steps, and a bad value must be
        # blamed on the look-ahead before the scheme sees it.
        check_finite_or_minus_inf(log_eta, step=t, what=what)
        return log_eta

    def _what(self) -> str:
        return f"{type(self.model).__name__}.log_potential"

    def _attach_partial(self, exc: BaseException) -> None:
        if self._pending is not None and not isinstance(exc, KeyboardInterrupt):
            pending = self._pending
            try:
                self._settle()  # an earlier step's bad weights explain what went wrong since
            except Exception as earlier:
                raise earlier from exc
            self._pending = pending
        if getattr(exc, "result", None) is None and self.t >= 0:
            try:
                exc.result = self._partial((self.t, self.state, self.log_weights, self.log_evidence, self.eve))  # type: ignore[attr-defined]
            except Exception:  # pragma: no cover - the original error matters more than its partial result
                pass

    # -- results ---------------------------------------------------------------------------------------------
    def _partial(self, snapshot: tuple[int, State, Array, Array, Array]) -> Any:
        t, state, log_w, log_evidence, eve = snapshot
        return None if t < 0 else self._result(t, state, log_w, log_evidence, eve)

    def _result(self, t: int, state: State, log_w: Array, log_evidence: Array, eve: Array) -> Any:
        pop = self.population
        history = self.recorder.history(steps=t + 1, n=pop.n, offset=pop.offset, n_total=pop.n_total)
        tracked = {name: tracker.value() for name, tracker in self.trackers.items()}
        eve_host = None if eve is None else to_host(eve)
        return pop.wrap(Result(state, log_w, log_evidence, history, eve=eve_host, tracked=tracked))

    def _update_bar(self, step: Step) -> None:
        bar = self._bar
        bar.update(1)
        self._n_resampled += bool(np.any(to_host(step.resampled)))
        bar.set_postfix(ess=f"{float(np.min(to_host(step.ess))):.1f}", resampled=self._n_resampled, refresh=False)
        if self._finished:
            bar.close()


class _Pending:
    """The flags of a step whose values are still being computed on an accelerator, and what explains them."""

    def __init__(self, t: int, flags: Array, x: Array, log_g: Array, weighted: Weighted, partial: tuple):
        self.t, self.x, self.log_g, self.weighted, self.partial = t, x, log_g, weighted, partial
        self.flags = flags.to("cpu", non_blocking=True)  # into pinned memory; ready when the event is
        self.event = None
        if flags.device.type != "cpu":
            import torch

            self.event = torch.Event(device=flags.device)
            self.event.record()

    def read(self) -> tuple[bool, bool]:
        """``(bad weights, bad scheme output)``, once the step's device work is done."""
        if self.event is not None:
            self.event.synchronize()
        values = [bool(v) for v in self.flags.reshape(-1).tolist()]
        return values[0], len(values) > 1 and values[1]


def run(
    model: FeynmanKac,
    n_particles: int,
    *,
    resampler: str | Resampler = "systematic",
    policy: Policy | None = None,
    seed: RNG | int | np.random.SeedSequence | None = None,
    history: str = "ancestors",
    progress: bool = False,
    trackers: Mapping[str, Any] | None = None,
) -> Result:
    """Run SMC on ``model`` with ``n_particles`` particles per population and return the :class:`~smckit.Result`.

    See :class:`SMC` for the parameters; ``run(...)`` is ``SMC(...).run()``.

    Raises
    ------
    InvalidWeightsError
        A log-potential was NaN or +inf (the error names the step and the count).
    ExtinctionError
        Every weight of a row became zero; the error carries the partial result.
    ShapeError, BackendError
        The model (or the resampler) returned arrays of the wrong shape, backend, device or dtype.
    UnknownPluginError, AmbiguousPluginError
        ``resampler`` names no registered scheme, or several.

    Examples
    --------
    >>> import smckit
    >>> from smckit.models import LinearGaussian, Bootstrap, kalman_filter
    >>> ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    >>> _, y = ssm.simulate(50, seed=1)
    >>> result = smckit.run(Bootstrap(ssm, y), 2000, seed=0)
    >>> exact = kalman_filter(ssm, y).log_likelihood
    >>> bool(abs(float(result.log_evidence) - exact) < 1.5)  # about 4 standard deviations
    True
    """
    return SMC(
        model,
        n_particles,
        resampler=resampler,
        policy=policy,
        seed=seed,
        history=history,
        progress=progress,
        trackers=trackers,
    ).run()


def _float64(x: Array) -> Array:
    """``x`` in float64 (the evidence's dtype), numpy scalars included."""
    if isinstance(x, np.generic):
        return np.float64(x)
    xp = namespace(x)
    return xp.astype(x, xp.float64)


def _check_trackers(trackers: Mapping[str, Any] | None) -> dict[str, Any]:
    if trackers is None:
        return {}
    if not isinstance(trackers, Mapping):
        raise InvalidArgumentError(f"trackers must be a mapping of names to trackers, got {type(trackers).__name__}")
    for name, tracker in trackers.items():
        missing = [m for m in ("start", "update", "value") if not callable(getattr(tracker, m, None))]
        if missing:
            raise InvalidArgumentError(f"tracker {name!r} ({type(tracker).__name__}) has no method(s) {missing}")
    return dict(trackers)


def _progress_bar(model: FeynmanKac) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=model.num_steps, desc=type(model).__name__, unit="step", leave=False)
