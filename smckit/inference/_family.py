"""Shared plumbing of the parameter samplers: parameters as (C, d) arrays, models of a batch of parameters, and
the adaptive random-walk proposal."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from smckit.backend import to_host
from smckit.errors import InvalidArgumentError, ShapeError
from smckit.model import FeynmanKac


def as_thetas(theta0: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """Starting points as a ``(C, d)`` float64 array, and the chains' shape (``()`` for one chain of shape (d,))."""
    theta = np.asarray(theta0, dtype=np.float64)
    if theta.ndim == 1:
        return theta[None, :], ()
    if theta.ndim == 2:
        return theta.copy(), (theta.shape[0],)
    raise ShapeError(f"theta0 must have shape (d,) or (n_chains, d), got {theta.shape}")


class Family:
    """``model_of`` and ``log_prior`` applied to a batch of parameters ``(C, d)``.

    With ``vectorized=True`` both receive the whole batch: ``model_of(theta)`` returns one model with batch shape
    ``(C,)`` and ``log_prior(theta)`` an array ``(C,)``. Otherwise they receive one parameter ``(d,)`` at a time and
    each model runs on its own (one run per chain).
    """

    def __init__(
        self, model_of: Callable[[np.ndarray], FeynmanKac], log_prior: Callable[[np.ndarray], Any], vectorized: bool
    ):
        if not callable(model_of) or not callable(log_prior):
            raise InvalidArgumentError("model_of and log_prior must be callable")
        self.model_of = model_of
        self.log_prior_fn = log_prior
        self.vectorized = bool(vectorized)

    def log_prior(self, theta: np.ndarray) -> np.ndarray:
        """``(C,)`` float64 log-prior values (``-inf`` outside the support)."""
        if self.vectorized:
            out = np.asarray(to_host(self.log_prior_fn(theta)), dtype=np.float64)
        else:
            out = np.array([float(to_host(self.log_prior_fn(th))) for th in theta])
        if out.shape != (theta.shape[0],):
            raise ShapeError(
                f"log_prior returned shape {out.shape} for {theta.shape[0]} parameters; expected ({theta.shape[0]},)"
            )
        if np.isnan(out).any() or np.isposinf(out).any():
            raise InvalidArgumentError(
                f"log_prior returned NaN or +inf at theta = {theta[~np.isfinite(out) & ~np.isneginf(out)][0]}"
            )
        return out

    def model(self, theta: np.ndarray) -> FeynmanKac:
        """One model with batch shape ``(C,)`` for the parameters ``theta`` ``(C, d)``."""
        if self.vectorized:
            return self.check(self.model_of(theta))
        return Stacked([self.check(self.model_of(th)) for th in theta])

    @staticmethod
    def check(model: Any) -> FeynmanKac:
        if not isinstance(model, FeynmanKac):
            raise InvalidArgumentError(
                f"model_of(theta) must return a smckit.FeynmanKac model, got {type(model).__name__}"
            )
        return model

    def log_evidence(self, result: Any, c: int) -> np.ndarray:
        """The run's log-evidence as ``(C,)`` float64, checking that it has one value per parameter."""
        z = np.asarray(to_host(result.log_evidence, np.float64))
        if z.shape != (c,):
            what = "with batch shape (C,)" if self.vectorized else "without batch dimensions"
            raise ShapeError(
                f"model_of(theta) gave a log-evidence of shape {z.shape}; for {c} parameter(s) it must return a "
                f"model {what}"
            )
        return z


class Stacked(FeynmanKac):
    """Models without batch dimensions run as one model with batch shape ``(C,)``: row i is ``models[i]``.

    Each method calls every model on its own row and stacks the results, so one SMC run serves C different
    parameters of a model that is not vectorised over them.

    Parameters
    ----------
    models : list of FeynmanKac
        Models with the same horizon and state layout, each without batch dimensions.
    """

    def __init__(self, models: list[FeynmanKac]):
        self.models = models
        self.num_steps = models[0].num_steps
        self._adaptive = type(models[0]).done is not FeynmanKac.done
        if any(callable(getattr(m, "log_transition", None)) for m in models[:1]):
            self.log_transition = self._log_transition

    def initial(self, n: int, rng: Any) -> Any:
        return _stack([m.initial(n, rng) for m in self.models])

    def propose(self, t: int, state: Any, rng: Any) -> Any:
        return _stack([m.propose(t, _row(state, i), rng) for i, m in enumerate(self.models)])

    def log_potential(self, t: int, prev: Any, state: Any) -> Any:
        rows = [
            m.log_potential(t, None if prev is None else _row(prev, i), _row(state, i))
            for i, m in enumerate(self.models)
        ]
        return _stack(rows)

    def done(self, t: int, state: Any) -> bool:
        if not self._adaptive:
            return FeynmanKac.done(self, t, state)
        return all(bool(m.done(t, _row(state, i))) for i, m in enumerate(self.models))

    def _log_transition(self, t: int, prev: Any, state: Any) -> Any:
        rows = [m.log_transition(t, _row(prev, i), _row(state, i)) for i, m in enumerate(self.models)]  # type: ignore[attr-defined]
        return _stack(rows)

    def __getattr__(self, name: str) -> Any:
        if name == "ssm":  # the state-space models, one per row, for complete-data likelihoods
            return [m.ssm for m in self.__dict__["models"]]  # type: ignore[attr-defined]
        raise AttributeError(name)


def _row(state: Any, i: int) -> Any:
    from smckit.state import tree_map

    return tree_map(lambda a: a[i], state)


def _stack(states: list[Any]) -> Any:
    from smckit.backend import namespace
    from smckit.state import leaves, tree_map

    columns = [leaves(s) for s in states]
    it = iter(range(len(columns[0])))

    def stack(_: Any) -> Any:
        j = next(it)
        parts = [c[j] for c in columns]
        return namespace(parts[0]).stack(parts, axis=0)

    return tree_map(stack, states[0])


class RandomWalkProposal:
    """Adaptive random-walk proposal for the parameters (Haario, Saksman and Tamminen, 2001), pooled over chains.

    Until ``adapt_after`` draws per coordinate have been seen, proposals are ``N(theta, cov0)``; then
    ``N(theta, 2.38^2 / d (Cov + eps I))`` with ``Cov`` the covariance of every draw so far (all chains): a
    diminishing adaptation, so the chains keep the right limit.
    """

    def __init__(self, d: int, cov0: Any = None, *, adapt: bool = True, adapt_after: int | None = None):
        self.d = d
        cov = np.eye(d) * (0.1**2 / d) if cov0 is None else np.atleast_2d(np.asarray(cov0, dtype=np.float64))
        if cov.shape != (d, d):
            raise ShapeError(f"proposal_cov must have shape ({d}, {d}), got {cov.shape}")
        try:
            self.chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError as exc:
            raise InvalidArgumentError("proposal_cov must be symmetric positive definite") from exc
        self.adapt = bool(adapt)
        self.adapt_after = max(2 * d, 50) if adapt_after is None else int(adapt_after)
        self.count = 0
        self.mean = np.zeros(d)
        self.m2 = np.zeros((d, d))

    @property
    def cov(self) -> np.ndarray:
        """The current proposal covariance, (d, d)."""
        return self.chol @ self.chol.T

    def update(self, theta: np.ndarray) -> None:
        """Add the draws ``(C, d)`` of one iteration to the running covariance (and adapt once enough)."""
        for th in theta:
            self.count += 1
            delta = th - self.mean
            self.mean += delta / self.count
            self.m2 += np.outer(delta, th - self.mean)
        if self.adapt and self.count >= self.adapt_after:
            cov = self.m2 / (self.count - 1)
            scale = float(np.mean(np.diag(cov))) or 1.0
            cov = 2.38**2 / self.d * (cov + 1e-10 * scale * np.eye(self.d))
            try:
                self.chol = np.linalg.cholesky(cov)
            except np.linalg.LinAlgError:  # pragma: no cover - keeps the last good factor
                pass

    def draw(self, theta: np.ndarray, rng: Any) -> np.ndarray:
        """Proposals ``(C, d)`` around ``theta`` ``(C, d)``."""
        return theta + rng.numpy.standard_normal(theta.shape) @ self.chol.T


def accept(log_ratio: np.ndarray, rng: Any) -> np.ndarray:
    """Metropolis-Hastings decisions for log acceptance ratios ``(C,)`` (NaN only from -inf - -inf: rejected)."""
    with np.errstate(invalid="ignore"):
        return np.log(rng.numpy.random(log_ratio.shape)) < log_ratio


def seeds(rng: Any) -> Any:
    """A fresh child generator for one inner run."""
    return rng.spawn(1)[0]


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def log_sum(values: np.ndarray) -> float:
    m = float(np.max(values))
    return m + math.log(float(np.sum(np.exp(values - m))))
