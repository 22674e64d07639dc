"""The static Bayesian model: a prior and a likelihood, the target of SMC samplers.

    pi(x) ∝ prior(x) L(x),    x in R^d,

given as three vectorised functions (numpy or torch) and, optionally, their gradients. SMC samplers
(:class:`smckit.models.AdaptiveTempering`, :class:`smckit.models.DataTempering`) draw from ``pi`` and estimate
its normalising constant, the evidence ``Z = ∫ prior(x) L(x) dx``.

Data tempering (IBIS) adds observations one at a time: a posterior made with ``num_data=K`` has a likelihood
``log_likelihood(x, start, stop)`` of the observations ``y_start .. y_{stop-1}`` given ``x`` and the earlier ones,
so that ``log_likelihood(x, 0, K)`` is the whole log-likelihood.

Gradients (for MALA and HMC moves) come from ``grad_log_prior`` / ``grad_log_likelihood`` when given, otherwise
from torch autograd when the particles are torch tensors; numpy particles without user gradients have none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from smckit.backend import Array, is_torch, namespace, to_host
from smckit.errors import InvalidArgumentError, ShapeError
from smckit.models.ssm import default_like
from smckit.random import RNG

__all__ = ["Posterior", "Evaluated"]


class Evaluated(NamedTuple):
    """The prior and likelihood parts of the log-target at particles ``x`` (and their gradients, when asked).

    Attributes
    ----------
    x : array, shape (*batch, n, d)
    log_prior : array, shape (*batch, n)
    log_likelihood : array, shape (*batch, n)
        Real or ``-inf``.
    grad_log_prior : array of shape (*batch, n, d), or None
    grad_log_likelihood : array of shape (*batch, n, d), or None
        Zero where the log-likelihood is ``-inf`` (a point there is never accepted).
    """

    x: Array
    log_prior: Array
    log_likelihood: Array
    grad_log_prior: Array | None = None
    grad_log_likelihood: Array | None = None


class Posterior:
    """A prior and a likelihood on R^d, vectorised over particles.

    Parameters
    ----------
    log_prior : callable
        ``log_prior(x)``: ``x`` of shape ``(*batch, n, d)`` to ``(*batch, n)`` (up to a constant).
    log_likelihood : callable
        ``log_likelihood(x)`` to ``(*batch, n)``, real or ``-inf``; with ``num_data``,
        ``log_likelihood(x, start, stop)``, the log-likelihood of observations ``start .. stop-1`` given ``x`` and
        the observations before ``start``.
    sample_prior : callable
        ``sample_prior(shape, rng, like=...)``: draws of shape ``(*shape, d)`` on the backend, dtype and device of
        ``like`` (the signature of :meth:`smckit.models.MultivariateNormal.sample`).
    grad_log_prior, grad_log_likelihood : callable, optional
        Gradients with respect to ``x`` (same arguments, shape ``(*batch, n, d)``). Without them, gradients come
        from torch autograd (torch particles only).
    num_data : int, optional
        The number of observations, for data tempering.

    Raises
    ------
    InvalidArgumentError
        If a function is not callable, only one of the two gradients is given, or ``num_data`` is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> from smckit.models import MultivariateNormal, Posterior
    >>> prior = MultivariateNormal(np.zeros(2), np.eye(2))
    >>> post = Posterior(prior.logpdf, lambda x: -0.5 * np.sum((x - 1.0) ** 2, axis=-1), prior.sample)
    >>> ev = post.evaluate(np.zeros((3, 2)))
    >>> ev.log_likelihood.shape
    (3,)
    """

    def __init__(
        self,
        log_prior: Callable[[Array], Array],
        log_likelihood: Callable[..., Array],
        sample_prior: Callable[..., Array],
        *,
        grad_log_prior: Callable[[Array], Array] | None = None,
        grad_log_likelihood: Callable[..., Array] | None = None,
        num_data: int | None = None,
    ):
        for name, fn in (("log_prior", log_prior), ("log_likelihood", log_likelihood), ("sample_prior", sample_prior)):
            if not callable(fn):
                raise InvalidArgumentError(f"Posterior: {name} must be callable, got {type(fn).__name__}")
        if (grad_log_prior is None) != (grad_log_likelihood is None):
            raise InvalidArgumentError("Posterior: give both grad_log_prior and grad_log_likelihood, or neither")
        if num_data is not None and (isinstance(num_data, bool) or int(num_data) != num_data or num_data < 1):
            raise InvalidArgumentError(f"Posterior: num_data must be a positive integer, got {num_data!r}")
        self.log_prior = log_prior
        self.log_likelihood = log_likelihood
        self.sample_prior = sample_prior
        self.grad_log_prior = grad_log_prior
        self.grad_log_likelihood = grad_log_likelihood
        self.num_data = None if num_data is None else int(num_data)

    @classmethod
    def from_prior(cls, prior: Any, log_likelihood: Callable[..., Array], **kwargs: Any) -> Posterior:
        """A posterior from a prior object with ``sample(shape, rng, like=...)`` and ``logpdf(x)``.

        Parameters
        ----------
        prior : object
            E.g. :class:`smckit.models.MultivariateNormal`.
        log_likelihood : callable
            As in :class:`Posterior`.
        **kwargs
            The keyword arguments of :class:`Posterior` (gradients, ``num_data``).

        Returns
        -------
        Posterior
        """
        return cls(prior.logpdf, log_likelihood, prior.sample, **kwargs)

    # -- evaluation ---------------------------------------------------------------------------------------
    def sample(self, shape: tuple[int, ...], rng: RNG, *, like: Array | None = None) -> Array:
        """Prior draws of shape ``(*shape, d)`` on the backend, dtype and device of ``like``.

        Parameters
        ----------
        shape : tuple of int
        rng : RNG
        like : array, optional

        Returns
        -------
        array, shape (*shape, d)
        """
        like = default_like() if like is None else like
        x = self.sample_prior(tuple(shape), rng, like=like)
        if x.ndim != len(shape) + 1 or tuple(x.shape[:-1]) != tuple(shape):
            raise ShapeError(f"sample_prior{tuple(shape)} returned shape {tuple(x.shape)}; expected (*shape, d)")
        return x

    def has_gradient(self, like: Array) -> bool:
        """Whether :meth:`evaluate` can compute gradients for particles like ``like`` (user functions or torch).

        Parameters
        ----------
        like : array, any shape

        Returns
        -------
        bool
        """
        return self.grad_log_prior is not None or is_torch(like)

    def evaluate(self, x: Array, *, grad: bool = False, data: tuple[int, int] | None = None) -> Evaluated:
        """The log-prior and log-likelihood at ``x`` (and their gradients when ``grad``).

        Parameters
        ----------
        x : array, shape (*batch, n, d)
        grad : bool
        data : (start, stop), optional
            For a posterior with ``num_data``: the observations whose likelihood is wanted (all by default).

        Returns
        -------
        Evaluated

        Raises
        ------
        ShapeError
            If a function returns the wrong shape.
        InvalidArgumentError
            If gradients are asked of numpy particles without user gradients, or a gradient is NaN where the
            log-density is finite.
        """
        args = self._data_args(data)
        if not grad:
            return Evaluated(x, self._check(self.log_prior(x), x, "log_prior"), self._likelihood(x, args))
        if self.grad_log_prior is not None:
            g_prior = self._check(self.grad_log_prior(x), x, "grad_log_prior", event=True)
            g_lik = self._check(self.grad_log_likelihood(x, *args), x, "grad_log_likelihood", event=True)  # type: ignore[misc]
            ev = Evaluated(x, self._check(self.log_prior(x), x, "log_prior"), self._likelihood(x, args), g_prior, g_lik)
        elif is_torch(x):
            ev = self._autograd(x, args)
        else:
            raise InvalidArgumentError(
                "gradient-based moves (MALA, HMC) need gradients: give Posterior grad_log_prior and "
                "grad_log_likelihood, or run on torch tensors (autograd)"
            )
        return self._clean(ev)

    # -- helpers ------------------------------------------------------------------------------------------
    def _data_args(self, data: tuple[int, int] | None) -> tuple[int, ...]:
        if self.num_data is None:
            if data is not None:
                raise InvalidArgumentError("this Posterior has no num_data: its likelihood takes no data range")
            return ()
        start, stop = (0, self.num_data) if data is None else data
        return (int(start), int(stop))

    def _likelihood(self, x: Array, args: tuple[int, ...]) -> Array:
        return self._check(self.log_likelihood(x, *args), x, "log_likelihood")

    def _autograd(self, x: Array, args: tuple[int, ...]) -> Evaluated:
        import torch

        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            lp = self._check(self.log_prior(xg), x, "log_prior")
            ll = self._check(self.log_likelihood(xg, *args), x, "log_likelihood")
            (g_prior,) = torch.autograd.grad(lp.sum(), xg, retain_graph=True, allow_unused=True)
            (g_lik,) = torch.autograd.grad(ll.sum(), xg, allow_unused=True)
        zeros = torch.zeros_like(x)
        g_prior = zeros if g_prior is None else g_prior
        g_lik = zeros if g_lik is None else g_lik
        return Evaluated(x, lp.detach(), ll.detach(), g_prior.detach(), g_lik.detach())

    @staticmethod
    def _clean(ev: Evaluated) -> Evaluated:
        """Zero gradients where their density is ``-inf``; refuse NaN gradients where it is finite."""
        xp = namespace(ev.x)
        out = []
        for value, g, name in (
            (ev.log_prior, ev.grad_log_prior, "prior"),
            (ev.log_likelihood, ev.grad_log_likelihood, "likelihood"),
        ):
            finite = xp.expand_dims(xp.isfinite(value), axis=-1)
            g = xp.where(finite, g, xp.zeros_like(g))
            if bool(to_host(xp.any(xp.isnan(g)))):
                raise InvalidArgumentError(f"the gradient of the log-{name} is NaN at a point where it is finite")
            out.append(g)
        return ev._replace(grad_log_prior=out[0], grad_log_likelihood=out[1])

    @staticmethod
    def _check(value: Array, x: Array, name: str, *, event: bool = False) -> Array:
        expected = tuple(x.shape) if event else tuple(x.shape[:-1])
        if not hasattr(value, "shape") or tuple(value.shape) != expected:
            got = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
            raise ShapeError(
                f"{name} returned shape {got} for particles of shape {tuple(x.shape)}; expected {expected}"
            )
        return value

    def __repr__(self) -> str:
        grads = "user" if self.grad_log_prior is not None else "autograd (torch)"
        return f"Posterior(num_data={self.num_data}, gradients={grads})"
