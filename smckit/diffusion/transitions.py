"""Gaussian reverse steps (DDPM, DDIM, and the flow-matching step) and the gradient-guided proposal.

A reverse step goes from level ``a = abar_t`` to level ``a' = abar_prev`` (where the schedule's ``previous`` rule
lands, see :mod:`smckit.diffusion.schedule`). Given ``x_t`` and the denoiser's ``(eps, x0_hat)`` it is the Gaussian
``N(mean, std^2 I)`` with

- DDPM (Ho et al., 2020): ``beta = 1 - a/a'``; ``mean = sqrt(a') beta / (1-a) x0_hat + sqrt(1-beta) (1-a') /
  (1-a) x_t``; ``std^2 = (1-a')/(1-a) beta`` (``variance="small"``, diffusers' ``fixed_small``) or ``beta``
  (``"large"``);
- DDIM (Song et al., 2021) with ``eta``: ``std = eta sqrt((1-a')/(1-a) (1 - a/a'))``; ``mean = sqrt(a') x0_hat
  + sqrt(1 - a' - std^2) eps``.

**The last step is diffusers' by default.** DDPM adds no noise at timestep 0 (diffusers' ``if t > 0``) and
otherwise uses its variance, so ``fixed_large`` with a last timestep above 0 (trailing spacing, ``steps_offset``)
ends with a noisy step; DDIM uses its formula, so ``set_alpha_to_one=False`` with ``eta > 0`` ends with a noisy
step. ``deterministic_last=True`` (:meth:`Transition.step_at`, ``RewardSteering(deterministic_last_step=True)``)
is smckit's deliberate alternative: the step from the last timestep returns its ``std = 0`` mean (for DDIM the
``eta = 0`` mean). A step whose variance is 0 (or ``final=True``) is a point mass: its log-density is taken with
respect to that point mass, so :meth:`GaussianStep.log_prob` returns 0 (it is only ever evaluated at the mean).

Log-densities and importance corrections are computed in float32 or wider whatever the particles' dtype (a
float16 sum of squares over an image overflows at 65504): see :func:`wide_dtype`.

:class:`Guided` is a twisted proposal: it shifts a step's mean by ``d = scale * std^2 * g`` and returns the
importance correction ``log p(x_prev | x_t) - log q(x_prev | x_t)`` that the model adds to its potential. ``g`` is
the reward gradient, either at ``x0_hat`` (``gradient="x0"``: the Jacobian ``d x0_hat / d x`` taken as the
identity) or with respect to ``x_t`` through the denoiser (``gradient="denoiser"``: autograd through the
network's estimate, ``g = J^T grad r(x0_hat(x_t))``, as in twisted diffusion samplers). The locally optimal
proposal is ``p(x_prev | x_t) exp(lam r(x0_hat(x_prev)))``; to first order its mean shift is ``lam std^2 J^T grad
r`` with ``J = d x0_hat / d x_prev``, which ranges from about ``sqrt(a') Cov(x0)`` at high noise to ``I /
sqrt(a')`` at low noise. ``J = I`` is the middle ground that never explodes, so ``scale = lam`` is a reasonable
default. Any scale and either gradient leave the target exact: the shift depends on ``x_t`` only, and the
correction is the exact log-ratio of the two Gaussians. A deterministic base step (DDIM with ``eta = 0``, the
flow step with ``eta = 0``) has nothing to shift (the correction of a moved point mass is undefined): guiding
one is refused with an error, not run as a silent no-op.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from smckit.diffusion.denoiser import DenoiserOutput
from smckit.errors import InvalidArgumentError

__all__ = [
    "Transition",
    "GaussianStep",
    "DDPM",
    "DDIM",
    "Guided",
    "make_proposal",
    "from_diffusers",
    "wide_dtype",
    "GRADIENTS",
]

Tensor = Any
LOG_2PI = math.log(2 * math.pi)
GRADIENTS = ("x0", "denoiser")
"""Where :class:`Guided` takes the reward gradient: at ``x0_hat`` (Jacobian as identity) or through the denoiser."""


def wide_dtype(x: Tensor) -> Any:
    """The dtype that weights computed from ``x`` are kept in: float32 for half precision, else ``x``'s dtype.

    Parameters
    ----------
    x : tensor
        Any floating torch tensor (float16, bfloat16, float32, float64).

    Returns
    -------
    torch.dtype
    """
    import torch

    return torch.promote_types(x.dtype, torch.float32)


@dataclass(frozen=True)
class GaussianStep:
    """One reverse move ``x_prev ~ N(mean, std^2 I)``.

    Attributes
    ----------
    mean : tensor, shape (*batch, *event)
    std : float
        A schedule quantity, the same for every particle; 0 for a deterministic step.
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

        Computed in :func:`wide_dtype` (float32 for half-precision particles). For ``std = 0`` the move is a point
        mass at the mean and the result is 0 (density with respect to that point mass; ``x_prev`` is assumed to be
        the mean).

        Parameters
        ----------
        x_prev : tensor, shape (*batch, *event)

        Returns
        -------
        tensor, shape (*batch,)
        """
        batch = tuple(x_prev.shape[: x_prev.ndim - self.event_ndim])
        wide = wide_dtype(x_prev)
        if self.std == 0.0:
            return x_prev.new_zeros(batch, dtype=wide)
        dims = tuple(range(len(batch), x_prev.ndim))
        size = math.prod(x_prev.shape[len(batch) :])
        z = (x_prev.to(wide) - self.mean.to(wide)) / self.std
        return -0.5 * (z * z).sum(dim=dims) - size * (math.log(self.std) + 0.5 * LOG_2PI)


class Transition(ABC):
    """A Gaussian reverse step; subclasses give the mean and the std.

    Proposals: a transition is itself a proposal (it draws from its own step, with no importance correction);
    :class:`Guided` wraps one to draw from a shifted step.
    """

    name: str = "transition"
    kind: str = "vp"
    """The schedule family the levels belong to: ``"vp"`` (``abar``) or ``"flow"`` (sigma)."""
    needs_gradient: bool = False
    """Whether :meth:`propose` needs the reward gradient."""
    has_correction: bool = False
    """Whether :meth:`propose` returns an importance correction (to be added to the potential)."""
    gradient: str = "x0"
    """Where a guided proposal takes the gradient (see :data:`GRADIENTS`)."""

    @property
    def deterministic(self) -> bool:
        """Whether every step has ``std = 0`` (e.g. DDIM with ``eta = 0``)."""
        return False

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
            The standard deviation of the step (0 for a deterministic step).

        Returns
        -------
        tensor, shape (*batch, *event)
        """

    def check_levels(self, level: float, level_prev: float) -> None:
        """Raise unless a step from ``level`` to ``level_prev`` goes towards less noise (``abar`` grows)."""
        if not 0 <= level < 1 or not level <= level_prev <= 1 or level_prev == 0:
            raise InvalidArgumentError(
                f"a reverse step needs 0 <= alpha_bar < 1 and alpha_bar <= alpha_bar_prev <= 1 (alpha_bar_prev > 0), "
                f"got {level} -> {level_prev}"
            )

    def noiseless(self, schedule: Any, i: int) -> bool:
        """Whether the scheduler adds no noise at the step from ``schedule.timesteps[i]`` (whatever the std)."""
        return False

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
            ``abar`` of the current and of the next level (``alpha_bar_prev >= alpha_bar``); sigmas for a flow
            transition.
        final : bool
            Make the step deterministic (std 0), whatever its variance.
        event_ndim : int, optional
            Trailing axes of one sample; default ``x_t.ndim - 1``.

        Returns
        -------
        GaussianStep
        """
        self.check_levels(alpha_bar, alpha_bar_prev)
        std = 0.0 if final else self.std(alpha_bar, alpha_bar_prev)
        mean = self.mean(x_t, out, alpha_bar, alpha_bar_prev, std)
        ndim = x_t.ndim - 1 if event_ndim is None else int(event_ndim)
        return GaussianStep(mean, std, out.x0_hat, ndim)

    def step_at(
        self,
        schedule: Any,
        i: int,
        x_t: Tensor,
        out: DenoiserOutput,
        event_ndim: int | None = None,
        *,
        deterministic_last: bool = False,
    ) -> GaussianStep:
        """The step from the i-th sampling timestep of ``schedule`` to where its ``previous`` rule lands.

        Parameters
        ----------
        schedule : NoiseSchedule or FlowSchedule
            Of this transition's :attr:`kind`.
        i : int
            In ``[0, S)``.
        x_t : tensor, shape (*batch, *event)
        out : DenoiserOutput
            The denoiser's estimates at ``x_t``.
        event_ndim : int, optional
            Trailing axes of one sample; default ``x_t.ndim - 1``.
        deterministic_last : bool
            Make the step from the last timestep deterministic (smckit's option; diffusers' behaviour by default,
            see the module notes).

        Returns
        -------
        GaussianStep
        """
        if schedule.kind != self.kind:
            raise InvalidArgumentError(f"{self!r} steps a {self.kind!r} schedule, got a {schedule.kind!r} one")
        final = self.noiseless(schedule, i) or (deterministic_last and i == len(schedule.timesteps) - 1)
        return self(x_t, out, schedule.level(i), schedule.landing(i), final=final, event_ndim=event_ndim)

    def step(
        self, schedule: Any, t: int, x_t: Tensor, out: DenoiserOutput, event_ndim: int | None = None
    ) -> GaussianStep:
        """The step from timestep ``t`` of ``schedule`` (:meth:`step_at` at its index, diffusers' last step).

        Parameters
        ----------
        schedule : NoiseSchedule
        t : int
            A timestep of ``schedule``.
        x_t : tensor, shape (*batch, *event)
        out : DenoiserOutput
            The denoiser's estimates at ``x_t``.
        event_ndim : int, optional
            Trailing axes of one sample; default ``x_t.ndim - 1``.

        Returns
        -------
        GaussianStep
        """
        return self.step_at(schedule, schedule.index(t), x_t, out, event_ndim)

    def propose(
        self, step: GaussianStep, noise: Tensor | None, grad: Tensor | None = None, alpha_bar_prev: float = 1.0
    ) -> tuple[Tensor, Tensor | None]:
        """Draw ``x_prev`` for a step; returns ``(x_prev, log_correction)``.

        ``log_correction`` (shape (*batch,)) is ``log p(x_prev | x_t) - log q(x_prev | x_t)`` for a proposal q
        other than the model's step p, or ``None`` when it is 0. This base version draws from the step itself.
        ``noise`` is standard normal of the step's shape (``None`` when ``step.std == 0``); ``grad`` is the
        reward gradient when :attr:`needs_gradient` is set.
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
        ``large``: ``beta`` (``fixed_large``). As in diffusers, the step from timestep 0 adds no noise.
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

    def noiseless(self, schedule: Any, i: int) -> bool:
        return schedule.timesteps[i] == 0  # DDPMScheduler.step adds noise only "if t > 0"

    def __repr__(self) -> str:
        return f"DDPM(variance={self.variance!r})"


class DDIM(Transition):
    """The DDIM step with stochasticity ``eta`` in [0, 1] (0: deterministic, 1: DDPM's variance)."""

    name = "ddim"

    def __init__(self, eta: float = 0.0):
        if not 0.0 <= float(eta) <= 1.0:
            raise InvalidArgumentError(f"eta must be in [0, 1], got {eta}")
        self.eta = float(eta)

    @property
    def deterministic(self) -> bool:
        return self.eta == 0.0

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
        The model's own step (``"ddpm"``, ``"ddim"``, ``"flow"`` or a transition object); it must be stochastic.
    scale : float
        The mean shift is ``scale * std^2 * g`` (see the module notes); ``scale = lam`` is a reasonable default.
    gradient : {"x0", "denoiser"}
        ``g``: the reward gradient at ``x0_hat`` (default), or with respect to ``x_t`` through the denoiser.
    **base_options
        Options of the base transition when it is given by name (e.g. ``eta``).

    Raises
    ------
    InvalidArgumentError
        For a deterministic base (DDIM or flow with ``eta = 0``): there is no noise to shift, so guidance would
        be a silent no-op; or an unknown ``gradient``.
    """

    name = "guided"
    needs_gradient = True
    has_correction = True

    def __init__(self, base: Transition | str = "ddpm", scale: float = 1.0, gradient: str = "x0", **base_options: Any):
        self.base = make_proposal(base, **base_options) if isinstance(base, str) else base
        if not isinstance(self.base, Transition) or isinstance(self.base, Guided):
            raise InvalidArgumentError(f"Guided needs a plain Transition as its base, got {self.base!r}")
        if self.base.deterministic:
            raise InvalidArgumentError(
                f"gradient guidance needs a stochastic step, but {self.base!r} is deterministic: the guided shift "
                "moves the noise of a step, and this step has none (guidance would silently do nothing). Use "
                "eta > 0 (e.g. sampler='ddim', eta=0.5, or the flow step's eta), or steer by resampling only"
            )
        if gradient not in GRADIENTS:
            raise InvalidArgumentError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
        self.kind = self.base.kind
        self.scale = float(scale)
        self.gradient = gradient

    def std(self, alpha_bar: float, alpha_bar_prev: float) -> float:
        return self.base.std(alpha_bar, alpha_bar_prev)

    def mean(self, x_t: Tensor, out: DenoiserOutput, alpha_bar: float, alpha_bar_prev: float, std: float) -> Tensor:
        return self.base.mean(x_t, out, alpha_bar, alpha_bar_prev, std)

    def check_levels(self, level: float, level_prev: float) -> None:
        self.base.check_levels(level, level_prev)

    def noiseless(self, schedule: Any, i: int) -> bool:
        return self.base.noiseless(schedule, i)

    def propose(
        self, step: GaussianStep, noise: Tensor | None, grad: Tensor | None = None, alpha_bar_prev: float = 1.0
    ) -> tuple[Tensor, Tensor | None]:
        """Draw ``x = mean + d + std z`` and return ``(x, log p(x) - log q(x))``.

        With ``d = scale std^2 grad``, the correction is ``-(z . d) / std - |d|^2 / (2 std^2) = -scale std z.grad
        - (scale^2 std^2 / 2) |grad|^2`` (summed over the event axes), written without dividing by a small
        ``std`` and computed in :func:`wide_dtype`.

        Parameters
        ----------
        step : GaussianStep
            The model's step, mean of shape (*batch, *event).
        noise : tensor of shape (*batch, *event), or None
            Standard normal ``z``; ``None`` only for a deterministic step (``std = 0``).
        grad : tensor of shape (*batch, *event), or None
            The reward gradient (see :attr:`gradient`); needed unless the step is deterministic or ``scale = 0``.
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
        x = step.mean + ((self.scale * std * std) * grad + std * noise).to(step.mean.dtype)
        dims = tuple(range(x.ndim - step.event_ndim, x.ndim))
        wide = wide_dtype(x)
        g, z = grad.to(wide), noise.to(wide)
        k1 = self.scale * std
        k2 = 0.5 * k1 * k1
        correction = -k1 * (z * g).sum(dim=dims) - k2 * (g * g).sum(dim=dims)
        return x, correction

    def __repr__(self) -> str:
        via = "" if self.gradient == "x0" else f", gradient={self.gradient!r}"
        return f"Guided({self.base!r}, scale={self.scale:g}{via})"


def _flow_step(**options: Any) -> Transition:
    from smckit.diffusion.flow import FlowStep

    return FlowStep(**options)


_BUILTIN: dict[str, Any] = {"ddpm": DDPM, "ddim": DDIM, "guided": Guided, "flow": _flow_step}


def make_proposal(name: str | Transition, **options: Any) -> Transition:
    """A transition (proposal) by registered name, with keyword ``options``; a Transition passes through.

    The built-in names are ``"ddpm"`` (``variance``), ``"ddim"`` (``eta``), ``"flow"`` (``eta``, ``noise``) and
    ``"guided"`` (``base``, ``scale``, ``gradient``, base options); other names are looked up in the plugin
    registry (:func:`smckit.plugins.make_proposal`).

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
        made = factory(**options)
        assert isinstance(made, Transition)
        return made
    from smckit.plugins import make_proposal as registry_make

    made = registry_make(name, **options)
    if not isinstance(made, Transition):
        raise InvalidArgumentError(f"the proposal {name!r} made a {type(made).__name__}, not a Transition")
    return made


_DDPM_VARIANCES = {"fixed_small": "small", "fixed_small_log": "small", "fixed_large": "large"}


def from_diffusers(scheduler: Any, eta: float = 0.0) -> Transition:
    """The transition a diffusers scheduler's ``step`` performs.

    ``DDPMScheduler`` / ``DDPMParallelScheduler``: :class:`DDPM` with its variance type (``fixed_small_log`` draws
    with the same std as ``fixed_small``); ``DDIMScheduler`` / ``DDIMParallelScheduler``: :class:`DDIM` with
    ``eta`` (an argument of diffusers' ``step``, not of the config); ``FlowMatchEulerDiscreteScheduler``:
    :class:`~smckit.diffusion.flow.FlowStep` with ``eta`` (0: its Euler step), or with ``noise="level"``, eta 1
    when the config sets ``stochastic_sampling``.

    Parameters
    ----------
    scheduler : diffusers scheduler
    eta : float
        The step's stochasticity, for DDIM and flow matching.

    Returns
    -------
    Transition

    Raises
    ------
    InvalidArgumentError
        For another scheduler class (naming the supported ones and the ``from_config`` route), a variance type
        without a fixed Gaussian step (``learned``, ``learned_range``: the network predicts the variance;
        ``fixed_large_log``: diffusers takes the square root of ``log(beta) < 0``), or ``eta`` given to DDPM.
    """
    from smckit.diffusion.schedule import scheduler_kind

    kind = scheduler_kind(scheduler)
    if kind == "ddim":
        return DDIM(eta)
    if kind == "flow":
        from smckit.diffusion.flow import FlowStep

        if scheduler.config.get("stochastic_sampling", False):
            if eta != 0.0:
                raise InvalidArgumentError("the scheduler sets stochastic_sampling (noise s'); do not pass eta too")
            return FlowStep(1.0, noise="level")
        return FlowStep(eta)
    if eta != 0.0:
        raise InvalidArgumentError(f"eta applies to DDIM and flow schedulers, not to {type(scheduler).__name__}")
    variance = scheduler.config.variance_type
    if variance not in _DDPM_VARIANCES:
        raise InvalidArgumentError(
            f"DDPM variance_type {variance!r} is not supported ({', '.join(_DDPM_VARIANCES)} are): learned variances "
            "make the network predict each pixel's variance, and diffusers' fixed_large_log step takes the square "
            "root of a negative log-variance"
        )
    return DDPM(_DDPM_VARIANCES[variance])
