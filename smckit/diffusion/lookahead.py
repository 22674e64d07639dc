"""Auxiliary (look-ahead) resampling weights for reward steering, from the reward of the x0 estimate.

The engine resamples a model that defines ``log_lookahead(t, state)`` on ``W_i eta_i`` instead of ``W_i`` and gives
each copy the output weight ``S / eta(parent)``, ``S = sum_j W_j eta_j`` (the auxiliary particle filter; see
:mod:`smckit.model`). Whatever ``eta`` is, the target and the unbiasedness of the evidence are unchanged; ``eta``
only decides which particles get copies. :class:`RewardLookahead` wraps a reward-steering model and sets

    log eta_i = lam_eta * r(x0_hat_i),

the reward of particle i's current estimate of the clean sample (the ``"reward"`` entry of
:class:`~smckit.diffusion.RewardSteering`'s state), so the resampling mass is ``W_i exp(lam_eta r_i)``. This is
the allocation of VASR (Variance-Aware Systematic Resampling, arXiv 2604.06779 **v2**; v1 of that identifier is
Fleming-Viot), which resamples this mass systematically (``resampler="vasr"`` from the smckit-vasr plugin, or
``"systematic"``).

What the carried ``1 / eta`` does: between two resamplings at levels s < t, a particle's weight holds
``exp(lam (h_t - h_s))`` from the ``diff`` potential and ``exp(-lam_eta r_s)`` from its parent, so the mass at t is
``exp(lam (h_t - h_s) + lam_eta (r_t - r_s))`` times earlier factors: selection acts as if the tilt were
``lam + lam_eta`` over the interval, while the weights keep the target ``p(x0) exp(lam r(x0))``. ``lam_eta = lam``
(the default) reads the v2 paper's ``m ∝ w e^r`` with ``r`` on the tilt's scale ``lam r``; that reading is smckit's
choice, the paper's text not being available to us.

The wrapper delegates everything else to the model (``initial``, ``propose``, ``log_potential``, ``rebirth``, and
attribute reads such as ``denoiser_calls``), so it composes with any model whose state carries the reward; a
model that already has a look-ahead keeps it, and the two log-weights add.
"""

from __future__ import annotations

import math
from typing import Any

from smckit.errors import InvalidArgumentError, ShapeError
from smckit.model import FeynmanKac, Wrapped, supports_rebirth
from smckit.random import RNG

__all__ = ["RewardLookahead"]

State = Any


class RewardLookahead(Wrapped):
    """A reward-steering model with auxiliary resampling weights ``eta = exp(lam_eta r(x0_hat))``.

    Parameters
    ----------
    model : FeynmanKac
        Usually a :class:`~smckit.diffusion.RewardSteering`; any model whose state is a dict with a ``key`` entry
        of shape (*batch, n).
    lam : float, optional
        ``lam_eta``, the strength of the look-ahead; default: ``model.lam`` (the tilt's own strength). ``0`` turns
        the look-ahead off (``eta = 1``: plain resampling). Negative values are allowed (gentler selection).
    key : str
        The state entry holding the reward of the x0 estimate (default ``"reward"``).

    Attributes
    ----------
    inner : FeynmanKac
        The wrapped model.
    lam : float
        ``lam_eta``.
    num_steps, default_policy
        The wrapped model's.

    Raises
    ------
    InvalidArgumentError
        If ``model`` is not a Feynman-Kac model, ``lam`` is not finite, or is not given and the model has no
        ``lam``.

    Examples
    --------
    >>> import torch, smckit
    >>> from smckit.diffusion import GaussianMixture, NoiseSchedule, RewardSteering
    >>> from smckit.diffusion.lookahead import RewardLookahead
    >>> gmm = GaussianMixture([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], 0.25, dtype=torch.float64)
    >>> schedule = NoiseSchedule.linear(num_steps=10)
    >>> steering = RewardSteering(gmm.denoiser(schedule), schedule, lambda x: x[:, 0], event_shape=(2,),
    ...                           dtype=torch.float64)
    >>> result = smckit.run(RewardLookahead(steering), 32, resampler="systematic", policy=smckit.Always(), seed=0)
    >>> tuple(result.log_weights.shape)
    (1, 32)
    """

    def __init__(self, model: FeynmanKac, lam: float | None = None, *, key: str = "reward"):
        if not isinstance(model, FeynmanKac):
            raise InvalidArgumentError(f"RewardLookahead wraps a FeynmanKac model, got {type(model).__name__}")
        if lam is None:
            if not hasattr(model, "lam"):
                raise InvalidArgumentError(
                    f"{type(model).__name__} has no lam attribute: give RewardLookahead's lam explicitly"
                )
            lam = model.lam
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
            raise InvalidArgumentError(f"RewardLookahead lam must be a finite number, got {lam!r}")
        super().__init__(model)
        self.lam = float(lam)
        self.key = key

    def log_lookahead(self, t: int, state: State) -> Any:
        """``log eta = lam_eta * state[key]`` (plus the wrapped model's own look-ahead, if it has one).

        Parameters
        ----------
        t : int
            The step about to be proposed (the state is that of step ``t - 1``).
        state : dict
            With ``state[key]`` of shape (*batch, n).

        Returns
        -------
        array, shape (*batch, n)

        Raises
        ------
        ShapeError
            If the state is not a dict with a ``key`` entry.
        """
        if not isinstance(state, dict) or self.key not in state:
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ShapeError(
                f"RewardLookahead reads state[{self.key!r}] (the reward of the x0 estimate) at step {t}, but the "
                f"state of {type(self.inner).__name__} has {found}"
            )
        log_eta = self.lam * state[self.key]
        own = getattr(self.inner, "log_lookahead", None)
        return log_eta if own is None else log_eta + own(t, state)

    def rebirth(self, t: int, state: State, mask: Any, scale: float, rng: RNG) -> State:
        """The wrapped model's rebirth (Fleming-Viot rebirth noise).

        Parameters
        ----------
        t : int
        state : state
        mask : bool array, shape (*batch, n)
        scale : float
        rng : RNG

        Returns
        -------
        state

        Raises
        ------
        InvalidArgumentError
            If the wrapped model has no ``rebirth``.
        """
        if not supports_rebirth(self.inner):
            raise InvalidArgumentError(f"{type(self.inner).__name__} has no rebirth(t, state, mask, scale, rng)")
        return self.inner.rebirth(t, state, mask, scale, rng)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found here: read them on the wrapped model (denoiser_calls, schedule, ...).
        if name == "inner":  # not set yet (e.g. during unpickling): do not recurse
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"RewardLookahead({self.inner!r}, lam={self.lam:g})"
