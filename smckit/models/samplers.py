"""SMC samplers: a sequence of targets from the prior to the posterior, bridged by reweighting and MCMC moves.

A sampler is a Feynman-Kac model. Its particles are equally or unequally weighted draws from the current target
``pi_{t-1}``; step t

1. (engine) resamples the rows its policy selects;
2. (propose) moves the particles with an MCMC kernel invariant for ``pi_{t-1}`` (:mod:`smckit.models.moves`):
   ``n_moves`` steps for every particle (resample-move), or, with ``chain_length = P``, **waste-free** SMC (Dau and
   Chopin, 2022): ``M = n / P`` of the resampled particles start chains of length P and all ``M P`` states are
   kept, equally weighted;
3. (propose) chooses the next target (the subclass: a tempering exponent, the next observation);
4. (log_potential) weights by ``pi_t / pi_{t-1}`` at the moved particles.

**Any resampling policy.** The next target is chosen from the weights the engine will apply, the incoming ones
times the incremental ones. The engine hands the incoming log-weights of step t to :meth:`SMCSampler.observe_weights`
after it resampled, whatever the policy and the scheme; the sampler puts them in the state (``log_w``) for
``propose`` to use. The rows whose incoming weights are all equal, as resampling leaves them, move; the others
keep their particles (moving them would be valid, but costs likelihood evaluations without fixing their weights).
A policy given to the sampler (``policy=``) becomes its ``default_policy``; one given to :func:`smckit.run`
replaces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from smckit.backend import Array, device_of, namespace, to_host
from smckit.errors import InvalidArgumentError
from smckit.model import FeynmanKac
from smckit.models.moves import Move, RandomWalk, Target, whitening_cholesky
from smckit.models.posterior import Evaluated, Posterior
from smckit.models.ssm import default_like
from smckit.policy import Always, Policy
from smckit.random import RNG
from smckit.state import take

__all__ = ["SMCSampler", "TemperingState", "equal_weights"]


def equal_weights(log_w: Array) -> np.ndarray:
    """Which rows have all their weights equal, as resampling (with uniform output weights) leaves them.

    Parameters
    ----------
    log_w : array, shape (*batch, n)

    Returns
    -------
    ndarray of bool, shape (*batch,)
        On the host.
    """
    xp = namespace(log_w)
    return to_host(xp.all(log_w == log_w[..., :1], axis=-1)).astype(bool)


@dataclass
class TemperingState:
    """The particles of an SMC sampler; every array has the particle axis at position ``len(batch)``.

    Attributes
    ----------
    x : array, shape (*batch, n, d)
        The particles.
    log_prior : array, shape (*batch, n)
        ``log prior(x)``.
    log_likelihood : array, shape (*batch, n)
        The log-likelihood in the current target (all the data for tempering, the observations so far for data
        tempering).
    exponent : array, shape (*batch, n)
        The current tempering exponent of the row (the same for every particle of a row); for data tempering,
        the fraction of the observations in the target.
    increment : array, shape (*batch, n)
        The exponent's increment at this step.
    acceptance : array, shape (*batch, n)
        Fraction of this step's MCMC proposals that each particle (or its chain) accepted (0 at step 0).
    step_size : array of shape (*batch, n), or None
        The step size of the next moves, per row (tuned from this step's acceptance rate).
    log_g : array of shape (*batch, n), or None
        This step's log-potential ``log pi_t / pi_{t-1}``.
    log_w : array of shape (*batch, n), or None
        The incoming log-weights of the coming step (normalised up to a constant per row), which the engine hands
        to :meth:`SMCSampler.observe_weights` before ``propose``; ``propose`` uses them and leaves ``None``.
    """

    x: Array
    log_prior: Array
    log_likelihood: Array
    exponent: Array
    increment: Array
    acceptance: Array
    step_size: Array | None = None
    log_g: Array | None = None
    log_w: Array | None = None


class SMCSampler(FeynmanKac):
    """Base class of the SMC samplers (see the module docstring); subclasses choose the targets.

    Parameters
    ----------
    posterior : Posterior
    move : Move, optional
        The MCMC kernel (default :class:`~smckit.models.moves.RandomWalk`).
    n_moves : int
        Kernel steps per particle and SMC step (resample-move; ignored with ``chain_length``).
    chain_length : int, optional
        Waste-free SMC with chains of this length P; ``n_particles`` must then be a multiple of P.
    policy : Policy
        When the engine resamples (default :class:`smckit.Always`); becomes ``default_policy``.
    batch_shape : tuple of int
        Independent samplers run at once.
    like : array, optional
        Fixes the backend, dtype and device (numpy float64 by default).
    progress : bool
        Show a tqdm bar of the sampler's progress with the acceptance rate and step size.

    Notes
    -----
    Subclasses implement :meth:`target` (the target the moves of step t leave invariant) and :meth:`advance`
    (the next target and this step's log-potential).
    """

    def __init__(
        self,
        posterior: Posterior,
        *,
        move: Move | None = None,
        n_moves: int = 5,
        chain_length: int | None = None,
        policy: Policy | None = None,
        batch_shape: Sequence[int] = (),
        like: Array | None = None,
        progress: bool = False,
    ):
        if not isinstance(posterior, Posterior):
            raise InvalidArgumentError(f"posterior must be a smckit.models.Posterior, got {type(posterior).__name__}")
        move = RandomWalk() if move is None else move
        if not isinstance(move, Move):
            raise InvalidArgumentError(f"move must be a smckit.models.moves.Move, got {type(move).__name__}")
        if isinstance(n_moves, bool) or int(n_moves) != n_moves or n_moves < 0:
            raise InvalidArgumentError(f"n_moves must be a non-negative integer, got {n_moves!r}")
        if chain_length is not None and (int(chain_length) != chain_length or chain_length < 1):
            raise InvalidArgumentError(f"chain_length must be a positive integer, got {chain_length!r}")
        self.posterior = posterior
        self.move = move
        self.n_moves = int(n_moves)
        self.chain_length = None if chain_length is None else int(chain_length)
        if policy is not None and not isinstance(policy, Policy):
            raise InvalidArgumentError(f"policy must be a smckit Policy, got {type(policy).__name__}")
        self.default_policy: Policy = Always() if policy is None else policy
        self.batch_shape = tuple(int(b) for b in batch_shape)
        self.like = default_like() if like is None else like
        if move.needs_gradient and not posterior.has_gradient(self.like):
            raise InvalidArgumentError(
                f"{type(move).__name__} needs gradients: give the Posterior grad_log_prior and grad_log_likelihood, "
                "or run on torch (like=torch.zeros(0, dtype=...)) for autograd"
            )
        self.progress = bool(progress)
        self._bar: Any = None
        self.evaluations = 0

    # -- what subclasses choose ----------------------------------------------------------------------------
    def target(self, t: int, state: TemperingState) -> Target:
        """The target that the moves of step ``t`` leave invariant (``pi_{t-1}``)."""
        raise NotImplementedError

    def advance(
        self, t: int, ev: Evaluated, log_w: Array, state: TemperingState | None
    ) -> tuple[Array, Array, Array, Array]:
        """Choose the next target given the moved particles ``ev`` and the incoming log-weights ``log_w``.

        Parameters
        ----------
        t : int
        ev : Evaluated
            The particles after the moves, evaluated under :meth:`target`.
        log_w : array, shape (*batch, n)
            The engine's incoming log-weights, normalised up to a constant per row (zero at step 0).
        state : TemperingState or None
            The state before the moves (``None`` at step 0).

        Returns
        -------
        exponent, increment, log_likelihood, log_g : arrays, shape (*batch, n)
        """
        raise NotImplementedError

    def first_evaluation(self, x: Array) -> Evaluated:
        """The particles drawn from the prior, evaluated for :meth:`advance` at step 0 (shape (*batch, n, d))."""
        return self.posterior.evaluate(x)

    # -- Feynman-Kac interface -----------------------------------------------------------------------------
    def initial(self, n: int, rng: RNG) -> TemperingState:
        if self.chain_length is not None and n % self.chain_length:
            raise InvalidArgumentError(
                f"waste-free SMC keeps n / chain_length chains: n_particles={n} is not a multiple of "
                f"chain_length={self.chain_length}"
            )
        x = self.posterior.sample((*self.batch_shape, n), rng, like=self.like)
        ev = self.first_evaluation(x)
        xp = namespace(x)
        zero = xp.zeros(tuple(ev.log_prior.shape), dtype=x.dtype, device=device_of(x))
        exponent, increment, log_lik, log_g = self.advance(0, ev, zero, None)
        h = zero + self.move.initial_step_size(x.shape[-1])
        self._open_bar()
        state = TemperingState(x, ev.log_prior, log_lik, exponent, increment, zero, h, log_g)
        self._show(state)
        return state

    def observe_weights(self, t: int, state: TemperingState, log_weights: Array) -> TemperingState:
        """Keep the incoming log-weights of step ``t`` in the state for :meth:`propose` (the engine's hook).

        Parameters
        ----------
        t : int
        state : TemperingState
            After the engine's resampling.
        log_weights : array, shape (*batch, n)
            The log-weights that step t's potential multiplies, normalised up to a constant per row.

        Returns
        -------
        TemperingState
            ``state`` with ``log_w = log_weights``.
        """
        return replace(state, log_w=log_weights)

    def propose(self, t: int, state: TemperingState, rng: RNG) -> TemperingState:
        log_w = state.log_w
        if log_w is None:
            raise InvalidArgumentError(
                f"{type(self).__name__}.propose at step {t} needs the incoming log-weights, which the engine hands "
                "to observe_weights first: a wrapper around the sampler must forward observe_weights"
            )
        xp = namespace(state.x)
        moving = equal_weights(log_w)
        moves = xp.asarray(moving[..., None], device=device_of(state.x))
        h = self.step_size_of(state)
        target = self.target(t, state)
        ev = Evaluated(state.x, state.log_prior, state.log_likelihood)
        acceptance = xp.zeros_like(state.log_prior)
        if moving.any():  # rows that resampled move; weighted rows keep their particles (valid, and cheaper)
            ev, acceptance, h = self._move(target, ev, log_w, h, moves, rng, all_rows=bool(moving.all()))
        self.evaluations += target.evaluations
        exponent, increment, log_lik, log_g = self.advance(t, ev, log_w, state)
        step_size = xp.broadcast_to(xp.expand_dims(h, axis=-1), tuple(log_g.shape))
        new = TemperingState(ev.x, ev.log_prior, log_lik, exponent, increment, acceptance, step_size, log_g)
        self._show(new)
        return new

    def log_potential(self, t: int, prev: TemperingState | None, state: TemperingState) -> Array:
        return state.log_g

    def step_size_of(self, state: TemperingState) -> Array:
        """The step size of the next moves per row, shape (*batch,) (the move's initial one if the state has none)."""
        if state.step_size is not None:
            return state.step_size[..., 0]
        return namespace(state.x).zeros_like(state.log_prior[..., 0]) + self.move.initial_step_size(state.x.shape[-1])

    # -- the moves --------------------------------------------------------------------------------------------
    def _move(
        self, target: Target, ev: Evaluated, log_w: Array, h: Array, moves: Array, rng: RNG, *, all_rows: bool
    ) -> tuple[Evaluated, Array, Array]:
        """Move every row, keep the moves of the rows where ``moves`` (*batch, 1) holds; returns the particles, each
        particle's acceptance rate and the next step size of each row (tuned where the row moved)."""
        xp = namespace(ev.x)
        start = ev
        if self.move.needs_gradient:
            ev = target.evaluate(ev.x, grad=True)
        chol = whitening_cholesky(ev.x, log_w)
        step = xp.reshape(h, (*h.shape, 1, 1))
        if self.chain_length is None:
            ev, acceptance = self._resample_move(target, ev, chol, step, rng)
        else:
            ev, acceptance = self._waste_free(target, ev, chol, step, rng)
        ev = Evaluated(ev.x, ev.log_prior, ev.log_likelihood)
        h_next = self.move.tune(h, xp.mean(acceptance, axis=-1))
        if not all_rows:
            keep = ~moves
            ev = Evaluated(
                *(
                    xp.where(keep if a.ndim == keep.ndim else xp.expand_dims(keep, axis=-1), b, a)
                    for a, b in zip(ev[:3], start[:3])
                )
            )
            acceptance = xp.where(keep, xp.zeros_like(acceptance), acceptance)
            h_next = xp.where(keep[..., 0], h, h_next)
        return ev, acceptance, h_next

    def _resample_move(self, target: Target, ev: Evaluated, chol: Array, h: Array, rng: RNG) -> tuple[Evaluated, Array]:
        xp = namespace(ev.x)
        accepted = xp.zeros(tuple(ev.log_prior.shape), dtype=ev.x.dtype, device=device_of(ev.x))
        for _ in range(self.n_moves):
            ev, accept = self.move.step(target, ev, chol, h, rng)
            accepted = accepted + xp.astype(accept, ev.x.dtype)
        return ev, accepted / max(self.n_moves, 1)

    def _waste_free(self, target: Target, ev: Evaluated, chol: Array, h: Array, rng: RNG) -> tuple[Evaluated, Array]:
        """M = n / P chains of length P from a random systematic subset of the resampled particles.

        The engine resampled n particles; taking every P-th of them from a uniform random offset is an unbiased
        choice of M (after systematic resampling it is exactly systematic resampling of M). All M P states are
        kept, equally weighted; each carries its chain's acceptance rate.
        """
        xp = namespace(ev.x)
        P = int(self.chain_length)  # type: ignore[arg-type]
        batch, n = tuple(ev.log_prior.shape[:-1]), ev.log_prior.shape[-1]
        m = n // P
        dev = device_of(ev.x)
        offset = xp.asarray(rng.integers(P, batch, like=ev.x), device=dev)
        cur: Evaluated = take(ev, xp.expand_dims(offset, axis=-1) + P * xp.arange(m, dtype=xp.int64, device=dev))
        links = [cur]
        accepted = xp.zeros((*batch, m), dtype=ev.x.dtype, device=dev)
        for _ in range(P - 1):
            cur, accept = self.move.step(target, cur, chol, h, rng)
            accepted = accepted + xp.astype(accept, ev.x.dtype)
            links.append(cur)
        axis = len(batch) + 1

        def chains(name: str) -> Array | None:
            if getattr(cur, name) is None:
                return None
            stacked = xp.stack([getattr(c, name) for c in links], axis=axis)  # (*batch, m, P, *event)
            return xp.reshape(stacked, (*batch, n, *stacked.shape[axis + 1 :]))

        rate = xp.expand_dims(accepted / max(P - 1, 1), axis=-1)
        rate = xp.reshape(xp.broadcast_to(rate, (*batch, m, P)), (*batch, n))
        return Evaluated(*(chains(name) for name in Evaluated._fields)), rate

    # -- progress ---------------------------------------------------------------------------------------------
    def fraction_done(self, state: TemperingState) -> float:
        """How far the slowest row has come, in [0, 1] (for the progress bar)."""
        return float(np.min(to_host(state.exponent[..., 0], np.float64)))

    def _open_bar(self) -> None:
        if self.progress:
            from tqdm.auto import tqdm

            if self._bar is not None:
                self._bar.close()
            self._bar = tqdm(total=1000, desc=type(self).__name__, unit="‰", leave=False)

    def _show(self, state: TemperingState) -> None:
        bar = self._bar
        if bar is None:
            return
        done = self.fraction_done(state)
        bar.update(int(1000 * done) - bar.n)
        acc = float(np.mean(to_host(state.acceptance, np.float64)))
        h = float(np.mean(to_host(self.step_size_of(state), np.float64)))
        bar.set_postfix(progress=f"{done:.3g}", acceptance=f"{acc:.2f}", step_size=f"{h:.3g}", refresh=False)
        if done >= 1.0:
            bar.close()
            self._bar = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_bar"] = None
        return state
