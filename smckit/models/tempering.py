"""Adaptive tempering: an SMC sampler from a prior to a posterior through the tempered path

    pi_lam(x) ∝ prior(x) L(x)^lam,    0 = lam_(-1) < lam_0 < lam_1 < ... < lam_K = 1.

Each step t, as a Feynman-Kac model run by the engine (:class:`~smckit.models.samplers.SMCSampler`):

1. (engine) resample the rows the policy selects;
2. (propose) the rows that resampled move with an MCMC kernel invariant for pi_{lam_{t-1}} (random walk, MALA or
   HMC, preconditioned by the particles' covariance, :mod:`smckit.models.moves`), ``n_moves`` steps per particle
   or waste-free chains of length ``chain_length``;
3. (propose) choose the next exponent: ``delta_t = lam_t - lam_{t-1}`` is found by bisection so that the
   criterion of the weights the engine will apply, ``W_i L(x_i)^delta`` (``W`` the incoming weights), equals
   ``target_ess``; ``delta_t = 1 - lam_{t-1}`` when even that keeps the criterion above the target (the last
   step). Criteria: ``"ess"``, the ESS of the new weights relative to the ESS of the incoming ones (the ESS
   fraction itself after resampling), and ``"cess"``, the conditional ESS ``(sum W_i G_i)^2 / sum W_i G_i^2``
   of Zhou, Johansen and Aston (2016), which measures the step's own discrepancy whatever the incoming weights;
4. (log_potential) weight by ``G_t(x) = L(x)^delta_t``.

Step 0 draws from the prior and chooses lam_0 the same way. The product of the incremental weights' averages
estimates the evidence ``Z = ∫ prior(x) L(x) dx``, so the engine's log-evidence is the sampler's.

**Any policy, exactly.** The incoming weights ``W`` are the engine's, which it hands to the sampler before each
step (:meth:`~smckit.models.SMCSampler.observe_weights`), so the criterion is computed on exactly the weights the
engine applies, under ``Always`` (the default), ``ESSBelow`` or any other policy, given to the sampler or to
:func:`smckit.run`.

The exponent is part of the particle state (replicated per particle, shape ``(*batch, n)``), so each batch row
runs its own exponent schedule. A row that reached lam = 1 waits (its later increments are zero) until every
row has; the run stops when all have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from smckit.backend import Array, namespace, to_host
from smckit.errors import InvalidArgumentError
from smckit.models.moves import Move, RandomWalk, Target, tempered, whitening_cholesky
from smckit.models.posterior import Evaluated, Posterior
from smckit.models.samplers import SMCSampler, TemperingState
from smckit.policy import Policy
from smckit.random import RNG
from smckit.weights import ess, log_normalise, logsumexp

__all__ = ["AdaptiveTempering", "TemperingState", "Prior", "tempering_trace", "CRITERIA"]

CRITERIA = ("ess", "cess")
"""The criteria :class:`AdaptiveTempering` can tune its exponents to."""


class Prior(Protocol):
    """What AdaptiveTempering needs of a prior (e.g. :class:`smckit.models.MultivariateNormal`)."""

    def sample(self, shape: tuple[int, ...], rng: RNG, *, like: Array | None = None) -> Array:
        """Draws of shape ``(*shape, d)`` with the backend, dtype and device of ``like``."""
        ...

    def logpdf(self, x: Array) -> Array:
        """Log-density (up to a constant) of ``x`` ``(*shape, d)``; shape ``shape``."""
        ...


class AdaptiveTempering(SMCSampler):
    """SMC sampler for ``pi(x) ∝ prior(x) L(x)`` by adaptive tempering with MCMC moves.

    Parameters
    ----------
    prior : Posterior or Prior
        A :class:`~smckit.models.Posterior` (then ``log_likelihood`` is omitted), or a prior with
        ``sample(shape, rng, like=...)`` and ``logpdf(x)``, e.g. ``MultivariateNormal(mean, cov)``.
    log_likelihood : callable, optional
        ``log_likelihood(x)`` for ``x`` of shape ``(*batch, n, d)``, returning ``(*batch, n)`` (real or -inf).
    target_ess : float in (0, 1)
        The value of the criterion each step's weights are tuned to.
    criterion : {"ess", "cess"}
        ESS of the applied weights relative to the incoming ones, or the conditional ESS.
    move : Move, optional
        The MCMC kernel; default a random walk with the particles' covariance and an adapted scale.
    n_moves : int
        Kernel steps per SMC step (resample-move).
    chain_length : int, optional
        Waste-free SMC with chains of this length (``n_particles`` a multiple of it); ``n_moves`` is then unused.
    scale : float
        The random walk's first step size is ``scale / sqrt(d)`` in the whitened coordinates (2.38 is the
        classic optimum for Gaussian targets); ignored when ``move`` is given.
    policy : Policy, optional
        When to resample (default :class:`smckit.Always`); becomes ``default_policy``.
    tol : float, optional
        Bisection tolerance on the criterion: the chosen exponent gives a value in ``[target_ess,
        target_ess + tol]``. Default ``sqrt(machine epsilon)`` of the run's dtype.
    max_bisection : int
        The most bisection iterations per step.
    batch_shape : tuple of int
        Independent populations (each with its own exponent schedule) run at once.
    like : array, optional
        Fixes the backend, dtype and device of the run (numpy float64 by default), e.g.
        ``torch.zeros(0, dtype=torch.float32, device="cuda")``.
    progress : bool
        Show a tqdm bar over the exponent, with the acceptance rate and step size.

    Notes
    -----
    Acceptance rates: each particle's fraction of accepted moves is in ``state.acceptance``;
    :meth:`acceptance_rate` averages it per row, and :func:`tempering_trace` gives exponents, acceptance
    rates and step sizes per step from a run with ``history="full"``.

    Examples
    --------
    >>> import numpy as np, smckit
    >>> from smckit.models import AdaptiveTempering, MultivariateNormal
    >>> prior = MultivariateNormal(np.zeros(2), np.eye(2))
    >>> model = AdaptiveTempering(prior, lambda x: -0.5 * np.sum((x - 1.0) ** 2, axis=-1) / 0.1)
    >>> res = smckit.run(model, 500, seed=0)
    >>> float(res.particles.exponent[0])
    1.0
    """

    def __init__(
        self,
        prior: Posterior | Prior,
        log_likelihood: Callable[[Array], Array] | None = None,
        *,
        target_ess: float = 0.5,
        criterion: str = "ess",
        move: Move | None = None,
        n_moves: int = 5,
        chain_length: int | None = None,
        scale: float = 2.38,
        policy: Policy | None = None,
        tol: float | None = None,
        max_bisection: int = 100,
        batch_shape: Sequence[int] = (),
        like: Array | None = None,
        progress: bool = False,
    ):
        if not 0.0 < target_ess < 1.0:
            raise InvalidArgumentError(f"target_ess must be in (0, 1), got {target_ess}")
        if criterion not in CRITERIA:
            raise InvalidArgumentError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        if not scale > 0 or max_bisection < 1:
            raise InvalidArgumentError(f"need scale > 0 and max_bisection >= 1; got {scale}, {max_bisection}")
        if tol is not None and not 0.0 < tol < 1.0:
            raise InvalidArgumentError(f"tol must be in (0, 1), got {tol}")
        if isinstance(prior, Posterior):
            if log_likelihood is not None:
                raise InvalidArgumentError("give either a Posterior, or a prior and a log_likelihood, not both")
            posterior = prior
        else:
            if not callable(log_likelihood):
                raise InvalidArgumentError("AdaptiveTempering(prior, log_likelihood): log_likelihood must be callable")
            posterior = Posterior.from_prior(prior, log_likelihood)
        super().__init__(
            posterior,
            move=RandomWalk(scale=scale) if move is None else move,
            n_moves=n_moves,
            chain_length=chain_length,
            policy=policy,
            batch_shape=batch_shape,
            like=like,
            progress=progress,
        )
        self.prior = prior
        self.log_likelihood = posterior.log_likelihood
        self.target_ess = float(target_ess)
        self.criterion = criterion
        self.scale = float(scale)
        self.max_bisection = int(max_bisection)
        eps = float(np.finfo(np.float32 if "float32" in str(self.like.dtype) else np.float64).eps)
        self.tol = float(tol) if tol is not None else math.sqrt(eps)

    # -- the sampler's choices ------------------------------------------------------------------------------
    def target(self, t: int, state: TemperingState) -> Target:
        """``prior * L^lam_{t-1}``, the target the moves of step ``t`` leave invariant."""
        return Target(self.posterior, state.exponent[..., :1])

    def advance(
        self, t: int, ev: Evaluated, log_w: Array, state: TemperingState | None
    ) -> tuple[Array, Array, Array, Array]:
        """The next exponent by bisection, and the log-potential ``delta * log L`` (see :class:`SMCSampler`).

        Parameters
        ----------
        t : int
        ev : Evaluated
        log_w : array, shape (*batch, n)
        state : TemperingState or None

        Returns
        -------
        exponent, increment, log_likelihood, log_g : arrays, shape (*batch, n)
        """
        exponent = namespace(log_w).zeros_like(log_w) if state is None else state.exponent
        increment, new_exponent = self.next_exponent(ev.log_likelihood, exponent, log_w)
        return new_exponent, increment, ev.log_likelihood, tempered(increment, ev.log_likelihood)

    def done(self, t: int, state: TemperingState) -> bool:
        xp = namespace(state.exponent)
        return bool(xp.all(state.exponent >= 1.0))

    def criterion_value(self, delta: Array, log_lik: Array, log_w: Array | None = None) -> Array:
        """The criterion of the weights ``W_i L(x_i)^delta``, per row.

        Parameters
        ----------
        delta : array, shape (*batch,)
        log_lik : array, shape (*batch, n)
        log_w : array of shape (*batch, n), optional
            Incoming log-weights (uniform when omitted).

        Returns
        -------
        array, shape (*batch,)
            ``ess(W G) / ess(W)`` for ``"ess"``, ``(sum W G)^2 / sum W G^2`` for ``"cess"``; 1 at ``delta = 0``.
        """
        xp = namespace(log_lik)
        log_g = tempered(xp.expand_dims(delta, axis=-1), log_lik)
        if log_w is None:
            log_w = xp.zeros_like(log_lik)
        if self.criterion == "ess":
            return ess(log_w + log_g) / ess(log_w)
        log_W = log_normalise(log_w)
        return xp.exp(2.0 * logsumexp(log_W + log_g) - logsumexp(log_W + 2.0 * log_g))

    def next_exponent(self, log_lik: Array, exponent: Array, log_w: Array | None = None) -> tuple[Array, Array]:
        """Choose the next exponent of every row by bisection on the criterion of the applied weights.

        Parameters
        ----------
        log_lik : array, shape (*batch, n)
            ``log L`` of the particles.
        exponent : array, shape (*batch, n)
            The current exponent (constant along the particle axis).
        log_w : array of shape (*batch, n), optional
            The incoming log-weights (uniform when omitted, as after resampling).

        Returns
        -------
        increment, new_exponent : arrays, shape (*batch, n)
            ``delta`` such that the criterion is in ``[target_ess, target_ess + tol]``, or the rest of the way
            to 1 when that keeps it at or above the target (then ``new_exponent`` is exactly 1). When no
            positive ``delta`` reaches the target (a fraction of the weight on particles with ``L = 0`` larger
            than ``1 - target_ess``), the smallest ``delta`` tried (``(1 - lam) / 2**max_bisection``): it removes
            those particles and the criterion of that step is below the target.
        """
        xp = namespace(log_lik)
        target = self.target_ess
        lam = exponent[..., 0]
        remaining = xp.clip(1.0 - lam, 0.0, 1.0)
        final = self.criterion_value(remaining, log_lik, log_w) >= target
        lo = xp.zeros_like(remaining)
        hi = remaining
        value_lo = xp.ones_like(remaining)
        for _ in range(self.max_bisection):
            mid = 0.5 * (lo + hi)
            value = self.criterion_value(mid, log_lik, log_w)
            ok = value >= target
            lo = xp.where(ok, mid, lo)
            value_lo = xp.where(ok, value, value_lo)
            hi = xp.where(ok, hi, mid)
            if bool(xp.all(final | (value_lo - target <= self.tol))):
                break
        # lo == 0 only when no positive exponent keeps the criterion at the target (e.g. too much weight on
        # particles with L = 0): take the smallest exponent tried, which kills those particles.
        delta = xp.where(final, remaining, xp.where(lo > 0, lo, hi))
        new_lam = xp.where(final, xp.ones_like(lam), lam + delta)
        shape = tuple(log_lik.shape)
        return (
            xp.broadcast_to(xp.expand_dims(delta, axis=-1), shape),
            xp.broadcast_to(xp.expand_dims(new_lam, axis=-1), shape),
        )

    def move_particles(self, state: TemperingState, rng: RNG, n_moves: int | None = None) -> tuple[Evaluated, Array]:
        """Apply ``n_moves`` kernel steps (default: the sampler's ``n_moves``) invariant for ``prior * L^exponent``.

        The proposal is preconditioned by the particles' covariance (equally weighted) and uses the state's step
        size; useful to check a kernel on exact draws.

        Parameters
        ----------
        state : TemperingState
        rng : RNG
        n_moves : int, optional

        Returns
        -------
        ev : Evaluated
            The moved particles and their densities.
        acceptance : array, shape (*batch, n)
            Each particle's fraction of accepted proposals.
        """
        xp = namespace(state.x)
        target = self.target(0, state)
        ev = target.evaluate(state.x, grad=self.move.needs_gradient)
        chol = whitening_cholesky(state.x, xp.zeros_like(state.log_prior))
        h = (
            state.step_size[..., 0]
            if state.step_size is not None
            else xp.zeros_like(state.log_prior[..., 0]) + self.move.initial_step_size(state.x.shape[-1])
        )
        step = xp.reshape(h, (*h.shape, 1, 1))
        accepted = xp.zeros_like(state.log_prior)
        for _ in range(self.n_moves if n_moves is None else n_moves):
            ev, accept = self.move.step(target, ev, chol, step, rng)
            accepted = accepted + xp.astype(accept, state.x.dtype)
        return ev, accepted / max(self.n_moves if n_moves is None else n_moves, 1)

    @staticmethod
    def acceptance_rate(state: TemperingState) -> Array:
        """The MCMC acceptance rate of the step that produced ``state``, per row: ``(*batch,)``."""
        xp = namespace(state.acceptance)
        return xp.mean(state.acceptance, axis=-1)

    def __repr__(self) -> str:
        return (
            f"AdaptiveTempering(target_ess={self.target_ess}, criterion={self.criterion!r}, move={self.move!r}, "
            f"n_moves={self.n_moves}, chain_length={self.chain_length}, policy={self.default_policy!r}, "
            f"batch_shape={self.batch_shape})"
        )


def tempering_trace(states: Sequence[TemperingState]) -> dict[str, np.ndarray]:
    """Exponents and acceptance rates per step, from the states of a run.

    Parameters
    ----------
    states : sequence of TemperingState
        ``result.history.particles`` of a run with ``history="full"``, or ``[step.state for step in smc]``.

    Returns
    -------
    dict with numpy arrays of shape (T, *batch)
        ``exponent`` (lam_t), ``increment`` (lam_t - lam_{t-1}), ``acceptance`` (the rate of step t's moves;
        0 at step 0 and in rows that did not move) and ``step_size`` (of the next moves).
    """

    def nan(s: TemperingState) -> np.ndarray:
        return np.full(tuple(s.exponent.shape[:-1]), np.nan)

    return {
        "exponent": np.stack([to_host(s.exponent[..., 0]) for s in states]),
        "increment": np.stack([to_host(s.increment[..., 0]) for s in states]),
        "acceptance": np.stack([to_host(AdaptiveTempering.acceptance_rate(s)) for s in states]),
        "step_size": np.stack([to_host(s.step_size[..., 0]) if s.step_size is not None else nan(s) for s in states]),
    }
