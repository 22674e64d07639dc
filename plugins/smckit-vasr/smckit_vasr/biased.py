"""VASR-Max, the deliberately biased variant: the allocation selects, and nothing pays it back.

arXiv 2604.06779 v2 proposes VASR-Max for latent diffusion models whose intermediate rewards are noisy, as "a
deliberately biased high-selection variant" for reward optimisation. smckit's reading (the paper's text was not
available to us; this is a choice, and the docs say so): resample on the same mass ``W_i eta_i`` as VASR, but let
the copies carry uniform weights instead of ``1 / eta`` of their parent. Each resampling then multiplies the
target by the look-ahead, and the final particles target

    p(x_{0:T}) prod_t G_t(x_{t-1}, x_t) prod_{t < T-1} eta_{t+1}(x_t)

instead of the model's Feynman-Kac target: for reward steering with ``eta = exp(lam_eta r(x0_hat))``, the tilt
``exp(lam r(x0) + lam_eta sum_t r(x0_hat_t))``, stronger than the ``exp(lam r(x0))`` asked for. The log-evidence
estimates the normaliser of that product, not the model's.

:class:`VASRMax` builds this from any model with a look-ahead: it moves ``log eta`` from ``log_lookahead`` into
the log-potential of the step before each resampling (so the engine, seeing no look-ahead, carries nothing back).
With a resampling at every step (``policy=smckit.Always()``, the setting to use) this is exactly "systematic
resampling of ``W eta``, then uniform weights"; with an ESS-triggered policy the extra factors also enter the
weights between resamplings.
"""

from __future__ import annotations

from typing import Any

from smckit.errors import InvalidArgumentError
from smckit.model import FeynmanKac, Wrapped, supports_rebirth
from smckit.random import RNG

__all__ = ["VASRMax"]

State = Any


class VASRMax(Wrapped):
    """The biased, high-selection VASR-Max: a model's look-ahead applied as an extra potential (module notes).

    Parameters
    ----------
    model : FeynmanKac
        A model with ``log_lookahead(t, state)``, e.g. :class:`smckit.diffusion.lookahead.RewardLookahead`.

    Attributes
    ----------
    inner : FeynmanKac
    num_steps, default_policy
        The wrapped model's.

    Raises
    ------
    InvalidArgumentError
        If ``model`` is not a Feynman-Kac model with a ``log_lookahead`` method.

    Examples
    --------
    >>> import numpy as np, smckit
    >>> from smckit.models import Bootstrap, LinearGaussian
    >>> class Ahead(Bootstrap):
    ...     def log_lookahead(self, t, state):
    ...         return -0.5 * (self.observation(t)[..., 0] - 0.9 * state[..., 0]) ** 2
    >>> ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    >>> _, y = ssm.simulate(5, seed=0)
    >>> result = smckit.run(VASRMax(Ahead(ssm, y)), 100, resampler="vasr", policy=smckit.Always(), seed=0)
    >>> result.log_weights.shape
    (100,)
    """

    def __init__(self, model: FeynmanKac):
        if not isinstance(model, FeynmanKac) or not callable(getattr(model, "log_lookahead", None)):
            raise InvalidArgumentError(
                f"VASRMax needs a FeynmanKac model with log_lookahead(t, state), got {type(model).__name__}; wrap "
                "a diffusion model in smckit.diffusion.lookahead.RewardLookahead first"
            )
        super().__init__(model)

    def log_potential(self, t: int, prev: State | None, state: State) -> Any:
        """``log G_t + log eta_{t+1}(x_t)``, the look-ahead of the next resampling; ``log G_t`` at the last step.

        Parameters
        ----------
        t : int
        prev : state or None
        state : state

        Returns
        -------
        array, shape (*batch, n)
        """
        log_g = self.inner.log_potential(t, prev, state)
        if self.inner.done(t, state):
            return log_g
        return log_g + self.inner.log_lookahead(t + 1, state)  # type: ignore[attr-defined]

    def rebirth(self, t: int, state: State, mask: Any, scale: float, rng: RNG) -> State:
        """The wrapped model's rebirth.

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
        # Attribute reads go to the wrapped model (denoiser_calls, lam, ...), except its look-ahead: the engine
        # must not see one, or it would carry 1 / eta and undo the bias this class exists for.
        if name in ("inner", "log_lookahead"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"VASRMax({self.inner!r})"
