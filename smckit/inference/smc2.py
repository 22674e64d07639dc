"""SMC^2 (Chopin, Jacob and Papaspiliopoulos, 2013): sequential inference of the parameter of a state-space model.

An SMC sampler over theta whose target at step t is ``p(theta | y_0 .. y_t)``. Each theta-particle carries a
particle filter of ``n_x`` particles for its own parameter, and the filter's likelihood increment
``p_hat(y_t | y_0 .. y_{t-1}, theta)`` is the theta-particle's incremental weight. The outer sampler is itself a
Feynman-Kac model run by the engine (:class:`SMC2Model`): the theta-particles are its particle axis, the inner
filters (all theta-particles at once, as one model with batch shape ``(n_theta,)``) live in its state, so outer
resampling moves each filter with its parameter. When the outer policy resamples:

- **rejuvenation**: every theta-particle makes ``n_moves`` PMMH moves (random walk with the particles' covariance,
  a fresh filter on ``y_0 .. y_{t-1}`` for each proposal);
- **adaptive n_x**: when the acceptance rate falls below ``min_acceptance``, ``n_x`` doubles (up to ``max_n_x``)
  by the exchange step: new filters with ``2 n_x`` particles replace the old ones, and each theta-particle's
  weight is multiplied by the ratio of the new and old likelihood estimates.

The outer log-evidence estimates ``log p(y_0 .. y_{T-1})``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from smckit.backend import Array, device_of, namespace, to_host
from smckit.engine import SMC, run
from smckit.errors import InvalidArgumentError
from smckit.inference._family import Family, accept, as_thetas, progress_bar, seeds
from smckit.inference.chains import WeightedSamples
from smckit.model import FeynmanKac
from smckit.models.samplers import equal_weights
from smckit.policy import ESSBelow, Policy
from smckit.random import RNG, as_rng
from smckit.state import leaves, tree_map

__all__ = ["smc2", "SMC2Model", "Truncated", "Resumed"]


class Truncated(FeynmanKac):
    """The first ``num_steps`` steps of ``model``.

    Parameters
    ----------
    model : FeynmanKac
    num_steps : int
    """

    def __init__(self, model: FeynmanKac, num_steps: int):
        self.model = model
        self.num_steps = int(num_steps)

    def initial(self, n: int, rng: RNG) -> Any:
        return self.model.initial(n, rng)

    def propose(self, t: int, state: Any, rng: RNG) -> Any:
        return self.model.propose(t, state, rng)

    def log_potential(self, t: int, prev: Any, state: Any) -> Array:
        return self.model.log_potential(t, prev, state)


class Resumed(FeynmanKac):
    """``model`` continued from step ``t0``: step 0 restores weighted particles, step 1 is the model's step t0 + 1.

    Parameters
    ----------
    model : FeynmanKac
    t0 : int
        The step the particles come from.
    state : state
        Leaves ``(*batch, n, *event)``.
    log_weights : array, shape (*batch, n)
        Their normalised log-weights.
    """

    num_steps = 2

    def __init__(self, model: FeynmanKac, t0: int, state: Any, log_weights: Array):
        self.model, self.t0, self.state, self.log_weights = model, int(t0), state, log_weights

    def initial(self, n: int, rng: RNG) -> Any:
        return self.state

    def propose(self, t: int, state: Any, rng: RNG) -> Any:
        return self.model.propose(self.t0 + t, state, rng)

    def log_potential(self, t: int, prev: Any, state: Any) -> Array:
        return self.log_weights if prev is None else self.model.log_potential(self.t0 + t, prev, state)


class SMC2Model(FeynmanKac):
    """The outer Feynman-Kac model of SMC^2 (see the module docstring).

    Its state is a dict: ``theta`` ``(N, d)`` (float64, host), ``log_prior`` and ``log_likelihood`` ``(N,)``,
    ``x`` (the inner filters' particles, leaves ``(N, n_x, *event)``), ``log_w`` ``(N, n_x)`` (their normalised
    log-weights) and ``log_g`` ``(N,)`` (this step's log-potential).

    Parameters
    ----------
    family : Family
    sample_prior : callable
        ``sample_prior(shape, rng, like=...)``: prior draws ``(*shape, d)``.
    num_steps : int
    n_x : int
    n_moves : int
    min_acceptance : float
    max_n_x : int
    policy : Policy
    inner_policy : Policy or None
    resampler : str or Resampler
        Of the inner filters.
    """

    def __init__(
        self,
        family: Family,
        sample_prior: Callable[..., Any],
        num_steps: int,
        *,
        n_x: int,
        n_moves: int,
        min_acceptance: float,
        max_n_x: int,
        policy: Policy,
        inner_policy: Policy | None,
        resampler: Any,
    ):
        self.family = family
        self.sample_prior = sample_prior
        self.num_steps = int(num_steps)
        self.n_x = int(n_x)
        self.n_moves = int(n_moves)
        self.min_acceptance = float(min_acceptance)
        self.max_n_x = int(max_n_x)
        self.default_policy = policy
        self.inner_policy = inner_policy
        self.resampler = resampler
        self.trace: dict[str, list[Any]] = {"acceptance": [], "n_x": []}

    # -- inner filters -------------------------------------------------------------------------------------
    def _filter(self, theta: np.ndarray, steps: int, n_x: int, rng: RNG) -> tuple[Any, Array, np.ndarray]:
        """Fresh filters on ``y_0 .. y_{steps-1}``: particles, normalised log-weights, log-likelihood ``(N,)``."""
        model = Truncated(self.family.model(theta), steps)
        res = run(model, n_x, resampler=self.resampler, policy=self.inner_policy, seed=seeds(rng), history="none")
        return res.particles, res.log_weights, self.family.log_evidence(res, theta.shape[0])

    def _advance(self, t: int, state: dict[str, Any], rng: RNG) -> tuple[Any, Array, np.ndarray]:
        """Every filter one step on (step t): particles, log-weights and the likelihood increments ``(N,)``."""
        model = Resumed(self.family.model(state["theta"]), t - 1, state["x"], state["log_w"])
        smc = SMC(model, self.n_x, resampler=self.resampler, policy=self.inner_policy, seed=seeds(rng), history="none")
        first = next(smc)
        last = next(smc)
        inc = to_host(last.log_evidence, np.float64) - to_host(first.log_evidence, np.float64)
        return last.state, last.log_weights, np.asarray(inc).reshape(-1)

    # -- Feynman-Kac interface -----------------------------------------------------------------------------
    def initial(self, n: int, rng: RNG) -> dict[str, Any]:
        self.trace = {"acceptance": [np.nan], "n_x": [self.n_x]}
        theta = np.asarray(to_host(self.sample_prior((n,), rng, like=np.zeros(0))), dtype=np.float64)
        log_prior = self.family.log_prior(theta)
        x, log_w, ll = self._filter(theta, 1, self.n_x, rng)
        return {"theta": theta, "log_prior": log_prior, "log_likelihood": ll, "x": x, "log_w": log_w, "log_g": ll}

    def observe_weights(self, t: int, state: dict[str, Any], log_weights: Array) -> dict[str, Any]:
        """Keep the theta-particles' incoming log-weights ``(N,)`` for :meth:`propose` (the engine's hook).

        Parameters
        ----------
        t : int
        state : dict
        log_weights : array, shape (N,)

        Returns
        -------
        dict
            ``state`` with ``theta_log_w``.
        """
        return {**state, "theta_log_w": log_weights}

    def propose(self, t: int, state: dict[str, Any], rng: RNG) -> dict[str, Any]:
        state = dict(state)
        resampled = bool(equal_weights(state.pop("theta_log_w")))  # equal weights: the theta-particles resampled
        extra = np.zeros(state["theta"].shape[0])
        rate = np.nan
        if resampled:
            state, rate = self._rejuvenate(t, state, rng)
            if rate < self.min_acceptance and 2 * self.n_x <= self.max_n_x:
                state, extra = self._exchange(t, state, rng)
        self.trace["acceptance"].append(rate)
        self.trace["n_x"].append(self.n_x)
        x, log_w, inc = self._advance(t, state, rng)
        return {**state, "x": x, "log_w": log_w, "log_likelihood": state["log_likelihood"] + inc, "log_g": extra + inc}

    def log_potential(self, t: int, prev: Any, state: dict[str, Any]) -> Array:
        return state["log_g"]

    def _rejuvenate(self, t: int, state: dict[str, Any], rng: RNG) -> tuple[dict[str, Any], float]:
        """``n_moves`` PMMH moves of every theta-particle, targeting ``p(theta | y_0 .. y_{t-1})``."""
        theta = state["theta"]
        n, d = theta.shape
        centred = theta - theta.mean(axis=0)
        cov = centred.T @ centred / n
        chol = np.linalg.cholesky(2.38**2 / d * cov + 1e-10 * (np.trace(cov) / d + 1e-300) * np.eye(d))
        accepted = 0
        for _ in range(self.n_moves):
            prop = theta + rng.numpy.standard_normal(theta.shape) @ chol.T
            lp = self.family.log_prior(prop)
            valid = np.isfinite(lp)
            stand_in = np.where(valid[:, None], prop, theta)
            x, log_w, ll = self._filter(stand_in, t, self.n_x, rng)
            ll = np.where(valid, ll, -np.inf)
            ok = accept(lp + ll - state["log_prior"] - state["log_likelihood"], rng)
            state = _where(ok, {"theta": prop, "log_prior": lp, "log_likelihood": ll, "x": x, "log_w": log_w}, state)
            theta = state["theta"]
            accepted += int(ok.sum())
        return state, accepted / max(1, n * self.n_moves)

    def _exchange(self, t: int, state: dict[str, Any], rng: RNG) -> tuple[dict[str, Any], np.ndarray]:
        """Double ``n_x``: new filters for every theta-particle, weighted by the ratio of likelihood estimates."""
        self.n_x *= 2
        x, log_w, ll = self._filter(state["theta"], t, self.n_x, rng)
        ratio = ll - state["log_likelihood"]
        return {**state, "x": x, "log_w": log_w, "log_likelihood": ll}, ratio


def _where(ok: np.ndarray, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """Per theta-particle choice between two states (every leaf has the theta-particle axis first)."""
    out = dict(old)
    for key, value in new.items():
        out[key] = _pick(ok, value, old[key])
    return out


def _pick(ok: np.ndarray, new: Any, old: Any) -> Any:
    others = iter(leaves(old))

    def pick(a: Array) -> Array:
        xp = namespace(a)
        mask = xp.asarray(ok.reshape(-1, *(1,) * (a.ndim - 1)), device=device_of(a))
        return xp.where(mask, a, next(others))

    return tree_map(pick, new)


def smc2(
    model_of: Callable[[np.ndarray], FeynmanKac],
    log_prior: Callable[[np.ndarray], Any],
    sample_prior: Callable[..., Any],
    *,
    n_theta: int,
    n_x: int,
    seed: RNG | int | None = None,
    vectorized: bool = False,
    n_moves: int = 1,
    policy: Policy | None = None,
    adapt_n_x: bool = True,
    min_acceptance: float = 0.1,
    max_n_x: int = 4096,
    resampler: Any = "systematic",
    inner_resampler: Any = "systematic",
    inner_policy: Policy | None = None,
    names: Sequence[str] | None = None,
    progress: bool = False,
) -> WeightedSamples:
    """SMC^2: weighted draws from ``p(theta | y)`` and an estimate of ``log p(y)``.

    Parameters
    ----------
    model_of : callable
        ``model_of(theta)``, a :class:`smckit.FeynmanKac` model with a fixed horizon whose evidence after step t
        is ``p(y_0 .. y_t | theta)`` (a particle filter); ``theta`` ``(d,)``, or ``(n_theta, d)`` with
        ``vectorized=True`` (the model with batch shape ``(n_theta,)``, far faster).
    log_prior : callable
        As in :func:`smckit.inference.pmmh`.
    sample_prior : callable
        ``sample_prior(shape, rng, like=...)``: prior draws ``(*shape, d)`` (e.g.
        :meth:`smckit.models.MultivariateNormal.sample`).
    n_theta : int
        Theta-particles.
    n_x : int
        Initial particles of each inner filter.
    seed : int, RNG or None
    vectorized : bool
    n_moves : int
        PMMH moves per rejuvenation.
    policy : Policy, optional
        When the theta-particles are resampled (and rejuvenated); default ``ESSBelow(0.5)``.
    adapt_n_x : bool
        Double ``n_x`` when a rejuvenation accepts less than ``min_acceptance`` (up to ``max_n_x``).
    min_acceptance : float
    max_n_x : int
    resampler : str or Resampler
        Of the theta-particles.
    inner_resampler : str or Resampler
        Of the inner filters.
    inner_policy : Policy, optional
        Of the inner filters (default ``ESSBelow(0.5)``).
    names : sequence of str, optional
    progress : bool
        A tqdm bar over the observations with the ESS, acceptance rate and ``n_x``.

    Returns
    -------
    WeightedSamples
        ``theta`` ``(n_theta, d)``, ``log_weights``, ``log_evidence``; ``info`` with per-step ``ess``,
        ``resampled``, ``acceptance`` (NaN where no rejuvenation), ``n_x``, ``log_evidence_increments``, and the
        single-run estimate ``log_evidence_variance`` (Lee and Whiteley's, on the outer particle system; NaN unless
        ``resampler="multinomial"``, which it assumes).

    Examples
    --------
    >>> import numpy as np
    >>> from smckit.inference import smc2
    >>> from smckit.models import Bootstrap, LinearGaussian
    >>> _, y = LinearGaussian.scalar(rho=0.7).simulate(10, seed=0)
    >>> def model_of(theta):
    ...     return Bootstrap(LinearGaussian.scalar(rho=theta[0]), y)
    >>> def log_prior(theta):
    ...     return 0.0 if abs(theta[0]) < 1 else -np.inf
    >>> def sample_prior(shape, rng, like=None):
    ...     return rng.uniform((*shape, 1)) * 2 - 1
    >>> out = smc2(model_of, log_prior, sample_prior, n_theta=50, n_x=20, seed=1)
    >>> out.theta.shape
    (50, 1)
    """
    for name, value in (("n_theta", n_theta), ("n_x", n_x), ("max_n_x", max_n_x)):
        if int(value) < 1:
            raise InvalidArgumentError(f"{name} must be positive, got {value}")
    if not 0.0 <= min_acceptance < 1.0:
        raise InvalidArgumentError(f"min_acceptance must be in [0, 1), got {min_acceptance}")
    if int(n_moves) < 1:
        raise InvalidArgumentError(f"n_moves must be positive, got {n_moves}")
    family = Family(model_of, log_prior, vectorized)
    rng = as_rng(seed)
    probe_theta, _ = as_thetas(np.asarray(to_host(sample_prior((1,), rng, like=np.zeros(0))), dtype=np.float64))
    num_steps = family.model(probe_theta).num_steps
    if num_steps is None:
        raise InvalidArgumentError("smc2 needs model_of(theta) with a fixed horizon (num_steps)")
    outer = SMC2Model(
        family,
        sample_prior,
        num_steps,
        n_x=n_x,
        n_moves=n_moves,
        min_acceptance=min_acceptance if adapt_n_x else 0.0,
        max_n_x=max_n_x if adapt_n_x else n_x,
        policy=ESSBelow(0.5) if policy is None else policy,
        inner_policy=inner_policy,
        resampler=inner_resampler,
    )
    smc = SMC(outer, int(n_theta), resampler=resampler, seed=rng.spawn(1)[0])
    bar = progress_bar(num_steps, "SMC^2", progress)
    for step in smc:
        if bar is not None:
            bar.update(1)
            acc = outer.trace["acceptance"][-1]
            bar.set_postfix(
                ess=f"{float(to_host(step.ess)):.1f}", acceptance=f"{acc:.2f}", n_x=outer.n_x, refresh=False
            )
    if bar is not None:
        bar.close()
    result = smc.result
    history = result.history
    variance = float("nan")  # the single-run estimator assumes multinomial resampling of the theta-particles
    if resampler == "multinomial":
        variance = float(result.log_evidence_variance())
    return WeightedSamples(
        np.asarray(result.particles["theta"]),
        np.asarray(to_host(result.log_weights, np.float64)),
        float(to_host(result.log_evidence, np.float64)),
        names=list(names) if names is not None else [],
        info={
            "ess": history.ess,
            "resampled": history.resampled,
            "acceptance": np.asarray(outer.trace["acceptance"]),
            "n_x": np.asarray(outer.trace["n_x"]),
            "log_evidence_increments": history.log_evidence_increments,
            "log_evidence_variance": variance,
        },
    )
