"""The SMC loop: move, weight, estimate the evidence, resample when the policy says so, record.

Time runs t = 0 .. T-1. Step 0 draws ``x_0 ~ M_0`` and weights it by ``G_0``. Each later step t

1. resamples (per row) if the policy says so, given the ESS left by step t-1, and applies rebirth noise to
   reborn particles;
2. moves every particle with ``M_t``;
3. adds ``log G_t`` to the log-weights (which accumulate across steps that did not resample);
4. adds ``log sum_i W_{t-1}^i G_t^i`` to the log-evidence;
5. checks the new weights: NaN or +inf is an error, a row with every weight zero is an extinction;
6. records ESS, resampling, ancestors and the resampler's diagnostics.

The final weighted particles are never resampled: a last resampling only adds noise. Draw an equally
weighted sample from the result yourself when you need one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smckit.backend import Array, check_compatible, is_floating, namespace
from smckit.errors import BackendError, InvalidArgumentError, InvalidWeightsError, ShapeError
from smckit.history import History, Result
from smckit.model import FeynmanKac, supports_rebirth
from smckit.policy import ESSBelow, Policy
from smckit.random import RNG, as_rng
from smckit.resamplers.base import Capabilities, Resampled, Resampler
from smckit.state import leaves, num_particles, take
from smckit.weights import check_finite_or_minus_inf, check_not_extinct, log_mean_exp, log_normalise, reweigh

__all__ = ["SMC", "Step", "run"]

State = Any
HISTORY_MODES = ("none", "ancestors", "full")


@dataclass
class Step:
    """What one step of :class:`SMC` produced (returned by ``next(smc)``).

    Attributes
    ----------
    t : int
        The step index.
    state : state
        The particles after the move, arrays of shape (*batch, n, *event).
    log_weights : array, shape (*batch, n)
        Normalised log-weights after weighting.
    ess : array, shape (*batch,)
        Effective sample size of those weights.
    resampled : bool or array of bool, shape (*batch,)
        Whether each row resampled at the start of this step.
    log_evidence : array, shape (*batch,)
        The log-evidence estimate so far.
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


class SMC:
    """The SMC engine as an iterator: each ``next()`` runs one step and returns a :class:`Step`.

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
        population (``"full"``), or only the scalar diagnostics (``"none"``).
    progress : bool
        Show a tqdm progress bar with the ESS and the number of resamplings.

    Raises
    ------
    InvalidArgumentError
        For a non-positive ``n_particles``, an unknown history mode, or a resampler with rebirth noise and a
        model without ``rebirth``.

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
    ):
        if isinstance(n_particles, bool) or not isinstance(n_particles, (int, np.integer)) or n_particles < 1:
            raise InvalidArgumentError(f"n_particles must be a positive integer, got {n_particles!r}")
        if history not in HISTORY_MODES:
            raise InvalidArgumentError(f"history must be one of {HISTORY_MODES}, got {history!r}")
        if not isinstance(model, FeynmanKac):
            raise InvalidArgumentError(
                f"model must be a smckit.FeynmanKac, got {type(model).__name__}; subclass FeynmanKac and "
                "implement initial, propose and log_potential"
            )
        self.model = model
        self.n = int(n_particles)
        self.resampler = _resolve_resampler(resampler)
        self.policy = policy if policy is not None else (model.default_policy or ESSBelow(0.5))
        if not isinstance(self.policy, Policy):
            raise InvalidArgumentError(f"policy must be a smckit Policy, got {type(self.policy).__name__}")
        self.rebirth_noise = float(getattr(self.resampler, "rebirth_noise", 0.0) or 0.0)
        if self.rebirth_noise != 0.0 and not supports_rebirth(model):
            raise InvalidArgumentError(
                f"the resampler {getattr(self.resampler, 'name', self.resampler)!r} asks for rebirth noise "
                f"{self.rebirth_noise}, but {type(model).__name__} has no rebirth(t, state, mask, scale, rng) "
                "method: implement it, or set rebirth_noise=0"
            )
        self.rng = as_rng(seed)
        self.history_mode = history
        self.t = -1
        self.state: State = None
        self.log_weights: Array = None
        self.log_evidence: Array = None
        self._finished = False
        self._batch: tuple[int, ...] = ()
        self._reference: Array = None  # the first log-potential: fixes backend, device and dtype of the run
        self._records: dict[str, list[Any]] = {k: [] for k in ("ess", "resampled", "inc", "ancestors", "info")}
        self._full: tuple[list[State], list[Array]] | None = ([], []) if history == "full" else None
        self._bar: Any = _progress_bar(model) if progress else None
        self._n_resampled = 0

    # -- iteration ---------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Step]:
        return self

    def __next__(self) -> Step:
        if self._finished:
            raise StopIteration
        step = self._first_step() if self.t < 0 else self._next_step()
        self._finished = bool(self.model.done(self.t, self.state))
        if self._bar is not None:
            self._update_bar(step)
        return step

    def run(self) -> Result:
        """Run every remaining step and return the :class:`Result`."""
        for _ in self:
            pass
        return self.result

    @property
    def result(self) -> Result:
        """The result of the steps run so far (the final result once the iterator is exhausted)."""
        if self.t < 0:
            raise InvalidArgumentError("no step has run yet: call next(smc) or smc.run() first")
        return self._result()

    # -- the steps --------------------------------------------------------------------------------------
    def _first_step(self) -> Step:
        state = self.model.initial(self.n, self.rng)
        log_g = self.model.log_potential(0, None, state)
        self._check_potential(0, log_g, state, first=True)
        xp = namespace(log_g)
        uniform = xp.full(tuple(log_g.shape), -math.log(self.n), dtype=log_g.dtype, device=_device(log_g))
        zero_evidence = xp.zeros(self._batch, dtype=xp.float64, device=_device(log_g))
        ancestors = None
        if self.history_mode != "none":
            ancestors = xp.broadcast_to(xp.arange(self.n, dtype=xp.int32, device=_device(log_g)), log_g.shape)
        return self._weigh(0, state, uniform, log_g, zero_evidence, False, ancestors, {})

    def _next_step(self) -> Step:
        t = self.t + 1
        state, log_w, resampled, ancestors, info, log_mass = self._maybe_resample(t, self.state, self.log_weights)
        prev = state
        state = self.model.propose(t, prev, self.rng)
        log_g = self.model.log_potential(t, prev, state)
        self._check_potential(t, log_g, state)
        return self._weigh(t, state, log_w, log_g, self.log_evidence, resampled, ancestors, info, log_mass)

    def _weigh(
        self,
        t: int,
        state: State,
        log_w: Array,
        log_g: Array,
        log_evidence: Array,
        resampled: Any,
        ancestors: Array | None,
        info: dict[str, Any],
        log_mass: Array | None = None,
    ) -> Step:
        """Add log G_t to the normalised log-weights, update the evidence, check and record.

        ``log_mass`` is the log mean output weight of a resampling with non-uniform output weights (or None).
        """
        xp = namespace(log_g)
        # log sum_i W_{t-1}^i G_t^i is the evidence increment, since log_w is normalised.
        increment, new_log_w, ess_t = reweigh(log_w + log_g)
        # NaN or +inf in log G, and rows with no positive weight left, all make the increment non-finite: one
        # reduction over (*batch,) and one host synchronisation per step cover every check.
        if not bool(xp.all(xp.isfinite(increment))):
            partial = self._result() if self.t >= 0 else None
            try:
                check_finite_or_minus_inf(log_g, step=t, what=f"{type(self.model).__name__}.log_potential")
            except InvalidWeightsError as err:
                err.result = partial
                raise
            check_not_extinct(log_w + log_g, step=t, result=partial)
        increment = xp.astype(increment, log_evidence.dtype)
        if log_mass is not None:
            increment = increment + log_mass
        new_evidence = log_evidence + increment

        self.t, self.state, self.log_weights, self.log_evidence = t, state, new_log_w, new_evidence
        rec = self._records
        rec["ess"].append(ess_t)
        rec["resampled"].append(resampled)
        rec["inc"].append(increment)
        rec["ancestors"].append(ancestors)
        rec["info"].append(info)
        if self._full is not None:
            self._full[0].append(state)
            self._full[1].append(new_log_w)
        return Step(t, state, new_log_w, ess_t, resampled, new_evidence, info)

    def _maybe_resample(
        self, t: int, state: State, log_w: Array
    ) -> tuple[State, Array, Any, Array | None, dict, Array | None]:
        """Resample the rows the policy picks.

        Returns (state, log_w, resampled, ancestors, info, log_mass), where ``log_mass`` (or ``None`` for 0) is
        ``log mean exp`` of the resampler's output log-weights per row: schemes with non-uniform output weights
        scale them so that this mass is 1 in expectation, and adding its log keeps the evidence unbiased.
        """
        xp = namespace(log_w)
        decision = self.policy.decide(t, self._records["ess"][-1] / self.n)
        identity = None
        if self.history_mode != "none":
            identity = xp.broadcast_to(xp.arange(self.n, dtype=xp.int32, device=_device(log_w)), log_w.shape)
        if isinstance(decision, (bool, np.bool_)):
            if not decision:
                return state, log_w, False, identity, {}, None
            mask = None
        else:
            mask = decision
            # On the CPU the check is free; on an accelerator it would stall the device, so there the resampler
            # runs and the rows that keep their particles are restored with `where` instead.
            if str(_device(mask)) == "cpu" and not bool(mask.any()):
                return state, log_w, mask, identity, {}, None

        out = self.resampler(log_w, self.rng)
        _check_resampled(out, log_w, t)
        ancestors = out.ancestors
        new_log_w = log_normalise(xp.astype(out.log_weights, log_w.dtype))
        reborn = out.reborn
        log_mass = None
        if not getattr(self.resampler, "capabilities", Capabilities()).uniform_output_weights:
            log_mass = xp.astype(log_mean_exp(xp.astype(out.log_weights, log_w.dtype)), xp.float64)
            if mask is not None:
                log_mass = xp.where(mask, log_mass, xp.zeros_like(log_mass))
        if mask is not None:
            keep = ~mask
            ancestors = xp.where(keep[..., None], xp.astype(_arange(self.n, log_w), ancestors.dtype), ancestors)
            new_log_w = xp.where(keep[..., None], log_w, new_log_w)
            if reborn is not None:
                reborn = reborn & mask[..., None]
        state = take(state, ancestors)
        if reborn is not None and self.rebirth_noise != 0.0:
            state = self.model.rebirth(t, state, reborn, self.rebirth_noise, self.rng)  # type: ignore[attr-defined]
        recorded = None if self.history_mode == "none" else xp.astype(ancestors, xp.int32)
        return state, new_log_w, (True if mask is None else mask), recorded, dict(out.info), log_mass

    # -- checks -----------------------------------------------------------------------------------------
    def _check_potential(self, t: int, log_g: Array, state: State, first: bool = False) -> None:
        where = f"{type(self.model).__name__}.log_potential at step {t}"
        if not hasattr(log_g, "shape") or not hasattr(log_g, "dtype"):
            raise ShapeError(f"{where} returned a {type(log_g).__name__}, expected an array of shape (*batch, n)")
        if first:
            if log_g.ndim < 1 or log_g.shape[-1] != self.n:
                raise ShapeError(
                    f"{where} returned shape {tuple(log_g.shape)}; expected (*batch, {self.n}) with the particle "
                    "axis last"
                )
            if not is_floating(log_g):
                raise BackendError(f"{where} returned dtype {log_g.dtype}; log-potentials must be floating point")
            self._batch = tuple(log_g.shape[:-1])
            self._reference = log_g
            n_state = num_particles(state, len(self._batch))
            if n_state != self.n:
                raise ShapeError(
                    f"{type(self.model).__name__}.initial returned {n_state} particles per row, expected {self.n}"
                )
        else:
            if tuple(log_g.shape) != (*self._batch, self.n):
                raise ShapeError(
                    f"{where} returned shape {tuple(log_g.shape)}; the run has shape {(*self._batch, self.n)}"
                )
            check_compatible(self._reference, log_g, what=where)
        for leaf in leaves(state)[:1]:
            check_compatible(log_g, leaf, what=f"the state at step {t}", dtype=False)

    # -- results ----------------------------------------------------------------------------------------
    def _result(self) -> Result:
        rec = self._records

        def stack(values: list[Array], dtype: Any = None) -> np.ndarray:
            arrays = [_host(v if not isinstance(v, (bool, np.bool_)) else _full_bool(v, self._batch)) for v in values]
            out = np.stack(arrays) if arrays else np.empty((0,))
            return out.astype(dtype) if dtype is not None else out

        ancestors = None
        if self.history_mode != "none":
            ancestors = stack(rec["ancestors"], np.int32)
        history = History(
            ess=stack(rec["ess"], np.float64),
            resampled=stack(rec["resampled"], bool),
            log_evidence_increments=stack(rec["inc"], np.float64),
            ancestors=ancestors,
            info=list(rec["info"]),
            particles=list(self._full[0]) if self._full is not None else None,
            log_weights=list(self._full[1]) if self._full is not None else None,
        )
        return Result(self.state, self.log_weights, self.log_evidence, history)

    def _update_bar(self, step: Step) -> None:
        bar = self._bar
        bar.update(1)
        self._n_resampled += bool(np.any(_host(step.resampled)))
        bar.set_postfix(ess=f"{float(np.min(_host(step.ess))):.1f}", resampled=self._n_resampled, refresh=False)
        if self._finished:
            bar.close()


def run(
    model: FeynmanKac,
    n_particles: int,
    *,
    resampler: str | Resampler = "systematic",
    policy: Policy | None = None,
    seed: RNG | int | np.random.SeedSequence | None = None,
    history: str = "ancestors",
    progress: bool = False,
) -> Result:
    """Run SMC on ``model`` with ``n_particles`` particles per population and return the :class:`Result`.

    See :class:`SMC` for the parameters; ``run(...)`` is ``SMC(...).run()``.

    Raises
    ------
    InvalidWeightsError
        A log-potential was NaN or +inf (the error names the step and the count).
    ExtinctionError
        Every weight of a row became zero; the error carries the partial result.
    ShapeError, BackendError
        The model returned arrays of the wrong shape, backend, device or dtype.
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
        model, n_particles, resampler=resampler, policy=policy, seed=seed, history=history, progress=progress
    ).run()


# -- helpers ------------------------------------------------------------------------------------------------
def _resolve_resampler(spec: str | Resampler) -> Resampler:
    if isinstance(spec, str):
        from smckit.plugins import make_resampler

        return make_resampler(spec)
    if not callable(spec):
        raise InvalidArgumentError(
            f"resampler must be a registered name or a callable resampler, got {type(spec).__name__}"
        )
    return spec


def _check_resampled(out: Resampled, log_w: Array, t: int) -> None:
    if not isinstance(out, Resampled):
        raise InvalidArgumentError(f"the resampler returned {type(out).__name__} at step {t}, expected Resampled")
    if tuple(out.ancestors.shape) != tuple(log_w.shape):
        raise ShapeError(
            f"the resampler returned ancestors of shape {tuple(out.ancestors.shape)} at step {t}; "
            f"the engine keeps the population size, expected {tuple(log_w.shape)}"
        )


def _device(x: Array) -> Any:
    from smckit.backend import device_of

    return device_of(x)


def _arange(n: int, like: Array) -> Array:
    xp = namespace(like)
    return xp.arange(n, device=_device(like))


def _host(x: Array) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)


def _full_bool(value: bool | np.bool_, batch: tuple[int, ...]) -> np.ndarray:
    return np.full(batch, bool(value))


def _progress_bar(model: FeynmanKac) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=model.num_steps, desc=type(model).__name__, unit="step", leave=False)
