"""The Feynman-Kac model: an initial distribution, Markov kernels and potentials.

A Feynman-Kac model defines the path measure

    Q_T(dx_{0:T}) ∝ M_0(dx_0) G_0(x_0) ∏_{t=1}^{T} M_t(x_{t-1}, dx_t) G_t(x_{t-1}, x_t),

and the SMC engine approximates its normalised marginals and its normalising constant (the evidence).
Subclasses implement the methods below, each vectorised over particles and over leading batch
dimensions. A model never sees the engine: it gets the step, states and a random generator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from smckit.backend import Array

if TYPE_CHECKING:  # pragma: no cover
    from smckit.policy import Policy
    from smckit.random import RNG

__all__ = ["FeynmanKac", "Wrapped"]

State = Any


class FeynmanKac(ABC):
    """Abstract Feynman-Kac model.

    Attributes
    ----------
    num_steps : int or None
        The number of steps T (t = 0 .. T-1). ``None`` for an adaptive horizon decided by :meth:`done`.
    default_policy : Policy or None
        The resampling policy :func:`smckit.run` uses when none is given (``None``: ``ESSBelow(0.5)``).

    Notes
    -----
    Shapes: a state is an array or a nest of arrays of layout ``(*batch, n, *event)``; log-potentials have
    shape ``(*batch, n)``. Each batch row is an independent population.
    """

    num_steps: int | None = None
    default_policy: Policy | None = None

    @abstractmethod
    def initial(self, n: int, rng: RNG) -> State:
        """Draw ``n`` particles from M_0 (per batch row).

        Returns
        -------
        state with arrays of shape (*batch, n, *event)
        """

    @abstractmethod
    def propose(self, t: int, state: State, rng: RNG) -> State:
        """Move every particle with the Markov kernel M_t (t >= 1).

        Returns
        -------
        state of the same structure and shapes as ``state``
        """

    @abstractmethod
    def log_potential(self, t: int, prev: State | None, state: State) -> Array:
        """The log-potential log G_t(x_{t-1}, x_t); ``prev`` is ``None`` at t = 0.

        Returns
        -------
        array, shape (*batch, n)
            Real numbers or ``-inf`` (weight zero); NaN and ``+inf`` are errors.
        """

    def done(self, t: int, state: State) -> bool:
        """Whether the run stops after step ``t``.

        The default stops after ``num_steps`` steps; adaptive models (tempering) override it.
        """
        if self.num_steps is None:
            raise NotImplementedError(
                f"{type(self).__name__} sets no num_steps: give it a fixed horizon or override done(t, state)"
            )
        return t >= self.num_steps - 1

    # Optional methods, found by name:
    #     def rebirth(self, t, state, mask, scale, rng) -> State
    # for Fleming-Viot rebirth noise (mask, shape (*batch, n), marks the particles just reborn as copies of others);
    #     def log_lookahead(self, t, state) -> Array of shape (*batch, n)
    # auxiliary weights log eta_t of the particles about to be resampled before step t: the scheme draws on
    # W * eta and each copy carries 1 / eta of its parent (the auxiliary particle filter; the evidence stays
    # unbiased). Asked for only at steps where a row resamples;
    #     def observe_weights(self, t, state, log_weights) -> State
    # called at every step t >= 1 after the resampling and before propose, with the log-weights (*batch, n) that
    # step t's potential will be added to (normalised up to a constant per row): a model whose next move or
    # potential depends on the weights (adaptive tempering chooses its next exponent from them) keeps what it
    # needs in the returned state, which the engine then resamples with the particles.

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_steps={self.num_steps})"


def supports_rebirth(model: FeynmanKac) -> bool:
    """Whether ``model`` implements ``rebirth(t, state, mask, scale, rng)``."""
    return callable(getattr(model, "rebirth", None))


class Wrapped(FeynmanKac):
    """A model that defers to another one, ``inner``, for every method it does not override.

    The base of wrappers that change one part of a model (its potential, its moves, a look-ahead) and keep the
    rest: the horizon, the default policy, ``initial``, ``propose``, ``log_potential`` and ``done`` are the inner
    model's. Optional methods (``rebirth``, ``log_lookahead``, ``observe_weights``) are not forwarded: a wrapper
    that supports one defines it, so the engine never sees a capability the wrapper did not mean to offer.

    Parameters
    ----------
    inner : FeynmanKac
        The wrapped model.
    """

    def __init__(self, inner: FeynmanKac):
        self.inner = inner
        self.num_steps = inner.num_steps
        self.default_policy = inner.default_policy

    def initial(self, n: int, rng: RNG) -> State:
        """The inner model's initial draw (see :meth:`FeynmanKac.initial`).

        Parameters
        ----------
        n : int
        rng : RNG

        Returns
        -------
        state, arrays of shape (*batch, n, *event)
        """
        return self.inner.initial(n, rng)

    def propose(self, t: int, state: State, rng: RNG) -> State:
        """The inner model's move (see :meth:`FeynmanKac.propose`).

        Parameters
        ----------
        t : int
        state : state
        rng : RNG

        Returns
        -------
        state, same structure and shapes
        """
        return self.inner.propose(t, state, rng)

    def log_potential(self, t: int, prev: State | None, state: State) -> Array:
        """The inner model's log-potential (see :meth:`FeynmanKac.log_potential`).

        Parameters
        ----------
        t : int
        prev : state or None
        state : state

        Returns
        -------
        array, shape (*batch, n)
        """
        return self.inner.log_potential(t, prev, state)

    def done(self, t: int, state: State) -> bool:
        """The inner model's stopping rule.

        Parameters
        ----------
        t : int
        state : state

        Returns
        -------
        bool
        """
        return self.inner.done(t, state)
