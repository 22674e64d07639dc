"""Gaussian reverse steps (DDPM, DDIM) and the gradient-guided proposal.

A reverse step goes from level ``a = abar_t`` to level ``a' = abar_prev`` (the next entry of the schedule's
timestep list, or the final level). Given ``x_t`` and the denoiser's ``(eps, x0_hat)`` it is the Gaussian
``N(mean, std^2 I)`` with

- DDPM (Ho et al., 2020): ``beta = 1 - a/a'``; ``mean = sqrt(a') beta / (1-a) x0_hat + sqrt(1-beta) (1-a') /
  (1-a) x_t``; ``std^2 = (1-a')/(1-a) beta`` (``variance="small"``, diffusers' ``fixed_small``) or ``beta``
  (``"large"``);
- DDIM (Song et al., 2021) with ``eta``: ``std = eta sqrt((1-a')/(1-a) (1 - a/a'))``; ``mean = sqrt(a') x0_hat
  + sqrt(1 - a' - std^2) eps``.

**The last step is deterministic.** The step into the final level returns its mean with ``std = 0`` (for DDIM,
the ``eta = 0`` mean). With the default final level ``a' = 1`` the mean is ``x0_hat`` and both samplers'
variances vanish anyway; with diffusers' ``set_alpha_to_one=False`` and ``eta > 0`` diffusers adds noise at the
last step and smckit does not. A move with ``std = 0`` is a point mass: its log-density is taken with respect to
that point mass, so :meth:`GaussianStep.log_prob` returns 0 (it is only ever evaluated at the mean).

:class:`Guided` is a twisted proposal: it shifts a step's mean by ``d = scale * std^2 * grad r(x0_hat)`` and
returns the importance correction ``log p(x_prev | x_t) - log q(x_prev | x_t)`` that the model adds to its
potential. The locally optimal proposal is ``p(x_prev | x_t) exp(lam r(x0_hat(x_prev)))``; to first order its
mean shift is ``lam std^2 J^T grad r`` with ``J = d x0_hat / d x_prev``, which ranges from about
``sqrt(a') Cov(x0)`` at high noise to ``I / sqrt(a')`` at low noise. ``J = I`` is the middle ground that never
explodes (``1 / sqrt(a')`` reaches ~100 at the noisiest levels of common schedules and drives every particle
away), so ``scale = lam`` is a reasonable default. Any scale leaves the target exact: the correction is exact.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from smckit.diffusion.denoiser import DenoiserOutput
from smckit.errors import InvalidArgumentError

__all__ = ["Transition", "GaussianStep", "DDPM", "DDIM", "Guided", "make_proposal", "from_diffusers"]

Tensor = Any
LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class GaussianStep:
    """One reverse move ``x_prev ~ N(mean, std^2 I)``.

    Attributes
    ----------
    mean : tensor, shape (*batch, *event)
    std : float
        A schedule quantity, the same for every particle; 0 for the deterministic last step.
    x0_hat : tensor, shape (*batch, *event)
        The Tweedie estimate the mean was computed from.
    event_ndim : int
        How many trailing axes form one sample (summed over by :meth:`log_prob`).
    """

    mean: Tensor
    std: float
    x0_hat: Tensor
    event_ndim: int

    def sample(self, noise: Tensor) -> Tensor:
        """``mean + std * noise`` (the mean itself when ``std = 0``).

        Parameters
        ----------
        noise : tensor, shape (*batch, *event)
            Standard normal, the shape of :attr:`mean`.

        Returns
        -------
        tensor, shape (*batch, *event)
        """
        return self.mean if self.std == 0.0 else self.mean + self.std * noise

    def log_prob(self, x_prev: Tensor) -> Tensor:
        """``log N(x_prev; mean, std^2 I)`` summed over the event axes; shape (*batch,).

        For ``std = 0`` the move is a point mass at the mean and the result is 0 (density with respect to that
        point mass; ``x_prev`` is assumed to be the mean).
        """
        batch = tuple(x_prev.shape[: x_prev.ndim - self.event_ndim])
        if self.std == 0.0:
            return x_prev.new_zeros(batch)
        dims = tuple(range(len(batch), x_prev.ndim))
        size = math.prod(x_prev.shape[len(batch) :])
        z = (x_prev - self.mean) / self.std
        return -0.5 * (z * z).sum(dim=dims) - size * (math.log(self.std) + 0.5 * LOG_2PI)


class Transition(ABC):
    """A Gaussian reverse step; subclasses give the mean and the std.

    Proposals: a transition is itself a proposal (it draws from its own step, with no importance correction);
    :class:`Guided` wraps one to draw from a shifted step.
    """

    name: str = "transition"
    needs_gradient: bool = False
    """Whether :meth:`propose` needs the reward gradient at ``x0_hat``."""
    has_correction: bool = False
    """Whether :meth:`propose` returns an importance correction (to be added to the potential)."""

    @abstractmethod
    def std(self, alpha_bar: float, alpha_bar_prev: float) -> float:
        """The step's standard deviation (before the last-step rule)."""

    @abstractmethod
    def mean(self, x_t: Tensor, out: DenoiserOutput, alpha_bar: float, alpha_bar_prev: float, std: float) -> Tensor:
        """The step's mean, given the std actually used.

        Parameters
        ----------
        x_t : tensor, shape (*batch, *event)
            The current sample, at level ``alpha_bar``.
        out : DenoiserOutput
            The denoiser's noise and clean-sample estimates at ``x_t`` (each the shape of ``x_t``).
        alpha_bar, alpha_bar_prev : float
            ``abar`` of the current and of the next level.
        std : float
            The standard deviation of the step (0 for the final, deterministic step).

        Returns
        -------
        tensor, shape (*batch, *event)
        """

    def __call__(
        self,
        x_t: Tensor,
        out: DenoiserOutput,
        alpha_bar: float,
        alpha_bar_prev: float,
        *,
        final: bool = False,
        event_ndim: int | None = None,
    ) -> GaussianStep:
        """The reverse step from level ``alpha_bar`` to ``alpha_bar_prev``.

        Parameters
        ----------
        x_t : tensor, shape (*batch, *event)
        out : DenoiserOutput
            The denoiser's estimates at ``x_t``.
        alpha_bar, alpha_bar_prev : float
            ``abar`` of the current and of the next level (``alpha_bar_prev >= alpha_bar``).
        final : bool
            Whether the next level is the final one (deterministic step, std 0).
        event_ndim : int, optional
            Trailing axes of one sample; default ``x_t.ndim - 1``.

        Returns
        -------
        GaussianStep
        """
        if not 0 < alpha_bar < 1 or not alpha_bar <= alpha_bar_prev <= 1:
            raise InvalidArgumentError(
                f"a reverse step needs 0 < alpha_bar < 1 and alpha_bar <= alpha_bar_prev <= 1, got {alpha_bar} -> "
                f"{alpha_bar_prev}"
            )
        std = 0.0 if final else self.std(alpha_bar, alpha_bar_prev)
        mean = self.mean(x_t, out, alpha_bar, alpha_bar_prev, std)
        ndim = x_t.ndim - 1 if event_ndim is None else int(event_ndim)
        return GaussianStep(mean, std, out.x0_hat, ndim)

    def step(
        self, schedule: Any, t: int, x_t: Tensor, out: DenoiserOutput, event_ndim: int | None = None
    ) -> GaussianStep:
        """The step from timestep ``t`` of ``schedule`` to the next entry of its timestep list.

        Parameters
        ----------
        schedule : NoiseSchedule
        t : int
            A timestep of ``schedule`` (the last one of its list makes the final, deterministic step).
        x_t : tensor, shape (*batch, *event)
        out : DenoiserOutput
            The denoiser's estimates at ``x_t``.
        event_ndim : int, optional
            Trailing axes of one sample; default ``x_t.ndim - 1``.

        Returns
        -------
        GaussianStep
        """
        prev = schedule.previous(t)
        return self(
            x_t, out, schedule.alpha_bar(t), schedule.alpha_bar(prev), final=prev is None, event_ndim=event_ndim
        )

    def propose(
        self, step: GaussianStep, noise: Tensor | None, grad: Tensor | None = None, alpha_bar_prev: float = 1.0
    ) -> tuple[Tensor, Tensor | None]:
        """Draw ``x_prev`` for a step; returns ``(x_prev, log_correction)``.

        ``log_correction`` (shape (*batch,)) is ``log p(x_prev | x_t) - log q(x_prev | x_t)`` for a proposal q
        other than the model's step p, or ``None`` when it is 0. This base version draws from the step itself.
        ``noise`` is standard normal of the step's shape (``None`` when ``step.std == 0``); ``grad`` is the
        reward gradient at ``x0_hat`` when :attr:`needs_gradient` is set.
        """
        return step.sample(noise), None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class DDPM(Transition):
    """The ancestral DDPM step.

    Parameters
    ----------
    variance : {"small", "large"}
        ``small``: the posterior variance ``(1-a')/(1-a) beta`` (diffusers' ``fixed_small``, the default);
        ``large``: ``beta`` (``fixed_large``).
    """

    name = "ddpm"

    def __init__(self, variance: str = "small"):
        if variance not in ("small", "large"):
            raise InvalidArgumentError(f"variance must be 'small' or 'large', got {variance!r}")
        self.variance = variance

    def std(self, alpha_bar: float, alpha_bar_prev: float) -> float:
        beta = 1.0 - alpha_bar / alpha_bar_prev
        var = beta if self.variance == "large" else (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * beta
        return math.sqrt(max(var, 0.0))

    def mean(self, x_t: Tensor, out: DenoiserOutput, alpha_bar: float, alpha_bar_prev: float, std: float) -> Tensor:
        beta = 1.0 - alpha_bar / alpha_bar_prev
        c0 = math.sqrt(alpha_bar_prev) * beta / (1.0 - alpha_bar)
        ct = math.sqrt(1.0 - beta) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
        return c0 * out.x0_hat + ct * x_t

    def __repr__(self) -> str:
        return f"DDPM(variance={self.variance!r})"


class DDIM(Transition):
    """The DDIM step with stochasticity ``eta`` in [0, 1] (0: deterministic, 1: DDPM's variance)."""

    name = "ddim"

    def __init__(self, eta: float = 0.0):
        if not 0.0 <= float(eta) <= 1.0:
            raise InvalidArgumentError(f"eta must be in [0, 1], got {eta}")
        self.eta = float(eta)

    def std(self, alpha_bar: float, alpha_bar_prev: float) -> float:
        var = (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev)
        return self.eta * math.sqrt(max(var, 0.0))

    def mean(self, x_t: Tensor, out: DenoiserOutput, alpha_bar: float, alpha_bar_prev: float, std: float) -> Tensor:
        direction = math.sqrt(max(1.0 - alpha_bar_prev - std * std, 0.0))
        return math.sqrt(alpha_bar_prev) * out.x0_hat + direction * out.eps

    def __repr__(self) -> str:
        return f"DDIM(eta={self.eta:g})"


class Guided(Transition):
    """A base transition whose mean is shifted along the reward gradient, with its importance correction.

    Parameters
    ----------
    base : Transition or str
        The model's own step (``"ddpm"``, ``"ddim"`` or a transition object).
    scale : float
        The mean shift is ``scale * std^2 * grad``, ``grad`` the gradient of the reward at ``x0_hat`` (see the
        module notes); ``scale = lam`` is a reasonable default.
    **base_options
        Options of the base transition when it is given by name (e.g. ``eta``).
    """

    name = "guided"
    needs_gradient = True
    has_correction = True

    def __init__(self, base: Transition | str = "ddpm", scale: float = 1.0, **base_options: Any):
        self.base = make_proposal(base, **base_options) if isinstance(base, str) else base
        if not isinstance(self.base, Transition) or isinstance(self.base, Guided):
            raise InvalidArgumentError(f"Guided needs a plain Transition as its base, got {self.base!r}")
        self.scale = float(scale)

    def std(self, alpha_bar: float, alpha_bar_prev: float) -> float:
        return self.base.std(alpha_bar, alpha_bar_prev)

    def mean(self, x_t: Tensor, out: DenoiserOutput, alpha_bar: float, alpha_bar_prev: float, std: float) -> Tensor:
        return self.base.mean(x_t, out, alpha_bar, alpha_bar_prev, std)

    def propose(
        self, step: GaussianStep, noise: Tensor | None, grad: Tensor | None = None, alpha_bar_prev: float = 1.0
    ) -> tuple[Tensor, Tensor | None]:
        """Draw ``x = mean + d + std z`` and return ``(x, log p(x) - log q(x))``.

        With ``d = scale std^2 grad``, the correction is ``-(z . d) / std - |d|^2 / (2 std^2) = -scale std z.grad
        - (scale^2 std^2 / 2) |grad|^2`` (summed over the event axes), written without dividing by a small
        ``std``.

        Parameters
        ----------
        step : GaussianStep
            The model's step, mean of shape (*batch, *event).
        noise : tensor of shape (*batch, *event), or None
            Standard normal ``z``; ``None`` only for a deterministic step (``std = 0``).
        grad : tensor of shape (*batch, *event), or None
            The reward gradient at the step's ``x0_hat``; needed unless the step is deterministic or
            ``scale = 0``.
        alpha_bar_prev : float
            Unused here (kept for proposals whose shift depends on the level).

        Returns
        -------
        x : tensor, shape (*batch, *event)
        log_correction : tensor of shape (*batch,), or None
            ``log p(x) - log q(x)``; ``None`` when the proposal is the step itself (no shift).

        Raises
        ------
        InvalidArgumentError
            If a stochastic step with ``scale > 0`` lacks ``grad`` or ``noise``.
        """
        if step.std == 0.0 or self.scale == 0.0:
            return step.sample(noise), None
        if grad is None or noise is None:
            raise InvalidArgumentError("the guided proposal needs the reward gradient and the noise")
        std = step.std
        x = step.mean + (self.scale * std * std) * grad + std * noise
        dims = tuple(range(x.ndim - step.event_ndim, x.ndim))
        k1 = self.scale * std
        k2 = 0.5 * k1 * k1
        correction = -k1 * (noise * grad).sum(dim=dims) - k2 * (grad * grad).sum(dim=dims)
        return x, correction

    def __repr__(self) -> str:
        return f"Guided({self.base!r}, scale={self.scale:g})"


_BUILTIN = {"ddpm": DDPM, "ddim": DDIM, "guided": Guided}


def make_proposal(name: str | Transition, **options: Any) -> Transition:
    """A transition (proposal) by registered name, with keyword ``options``; a Transition passes through.

    The built-in names are ``"ddpm"`` (``variance``), ``"ddim"`` (``eta``) and ``"guided"`` (``base``,
    ``scale``, base options); other names are looked up in the plugin registry
    (:func:`smckit.plugins.make_proposal`).

    Raises
    ------
    UnknownPluginError
        When no proposal has that name.
    """
    if isinstance(name, Transition):
        if options:
            raise InvalidArgumentError(f"options {sorted(options)} given with a ready proposal {name!r}")
        return name
    factory = _BUILTIN.get(name)
    if factory is not None:
        return factory(**options)
    from smckit.plugins import make_proposal as registry_make

    made = registry_make(name, **options)
    if not isinstance(made, Transition):
        raise InvalidArgumentError(f"the proposal {name!r} made a {type(made).__name__}, not a Transition")
    return made


def from_diffusers(scheduler: Any, eta: float = 0.0) -> Transition:
    """The transition a diffusers scheduler's ``step`` performs: DDPM (its variance type) or DDIM(``eta``).

    Raises
    ------
    InvalidArgumentError
        For another scheduler class or a learned variance.
    """
    kinds = {c.__name__ for c in type(scheduler).__mro__}
    if "DDIMScheduler" in kinds:
        return DDIM(eta)
    if "DDPMScheduler" in kinds:
        variance = scheduler.config.variance_type
        if variance not in ("fixed_small", "fixed_large"):
            raise InvalidArgumentError(f"DDPM variance_type {variance!r} is not supported (fixed_small, fixed_large)")
        return DDPM("small" if variance == "fixed_small" else "large")
    raise InvalidArgumentError(f"{type(scheduler).__name__} is not supported: use DDPMScheduler or DDIMScheduler")
