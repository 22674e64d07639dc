"""Flow matching as a Feynman-Kac model: the schedule, the velocity denoiser and a stochastic step.

A flow-matching model (the SD3 and FLUX families; diffusers' ``FlowMatchEulerDiscreteScheduler``) noises a clean
sample along straight lines, ``x_s = (1 - s) x0 + s eps`` for a noise level ``s`` in [0, 1], and its network
predicts the velocity ``v = eps - x0``. So one network call gives both estimates,

    ``x0_hat = x - s v``,    ``eps_hat = x + (1 - s) v``

(:class:`FlowDenoiser`), and the score follows from them: ``grad log p_s(x) = -eps_hat / s``.

:class:`FlowStep` goes from level ``s`` to ``s' < s`` with the DDIM-style Gaussian step that keeps the flow's
marginals (if ``x0_hat`` and ``eps_hat`` were the true pair):

    ``x_s' = (1 - s') x0_hat + sqrt(s'^2 - c^2) eps_hat + c z``,    ``0 <= c <= s'``, ``z ~ N(0, I)``,

a Gaussian with an exact log-density. ``c`` sets the stochasticity, through ``eta`` in [0, 1]:

- ``noise="posterior"`` (default): ``c = eta c_post``, where ``c_post = s' sqrt(1 - (a s' / (a' s))^2)`` (``a = 1 -
  s``, ``a' = 1 - s'``) is the standard deviation of the forward process's posterior ``q(x_s' | x_s, x0)``: ``eta =
  1`` is the flow's DDPM (ancestral) step, ``eta = 0`` its deterministic Euler step, exactly
  ``FlowMatchEulerDiscreteScheduler.step``'s ``x + (s' - s) v``. These are DDIM's step and ``eta`` written for the
  flow's coefficients: the flow is a variance-preserving diffusion in the coordinates ``x / sqrt((1 - s)^2 +
  s^2)``, and DDIM's step is the same in any scaling.
- ``noise="level"``: ``c = eta s'``; ``eta = 1`` draws fresh noise at every step, ``x_s' = (1 - s') x0_hat + s' z``:
  the scheduler's ``stochastic_sampling=True``.

The last step goes to ``s' = 0``, where ``c = 0``: it returns ``x0_hat``. :class:`FlowSchedule` holds the sigmas
and the timesteps the network is called with (``1000 s`` in diffusers), built directly (:meth:`FlowSchedule.uniform`,
with the resolution ``shift``) or read from the scheduler after ``set_timesteps`` (shift, dynamic shifting with
``mu``, terminal stretching and the Karras, exponential and beta spacings all end up in its ``sigmas``).

:class:`~smckit.diffusion.RewardSteering` takes a :class:`FlowSchedule` in place of a
:class:`~smckit.diffusion.NoiseSchedule`: the same potentials, guidance, resamplers and rebirth noise apply (rebirth
re-noises at the level with the flow's coefficients ``(1 - s, s)``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from smckit.diffusion.denoiser import Denoiser, DenoiserOutput
from smckit.diffusion.transitions import Transition
from smckit.errors import InvalidArgumentError

__all__ = ["FlowSchedule", "FlowDenoiser", "FlowStep", "FLOW_NOISE"]

Tensor = Any
FLOW_NOISE = ("posterior", "level")
"""How :class:`FlowStep`'s ``eta`` scales its noise: against the posterior's std or the level ``s'``."""


def _host_float64(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().to("cpu").double().numpy()
    return np.array(values, dtype=np.float64, copy=True).reshape(-1)


class FlowSchedule:
    """The noise levels ``s_1 > ... > s_S`` of a flow-matching sampler, the final level, and the network times.

    Parameters
    ----------
    sigmas : array, tensor or sequence, shape (S,) or (S + 1,)
        The sampling levels, strictly descending in (0, 1]. A trailing entry below the last level that is not
        matched by a timestep (diffusers' appended 0) is taken as the final level.
    timesteps : array, tensor or sequence of float, shape (S,), optional
        What the network is called with at each level. Default: ``num_train_timesteps * s`` (diffusers'
        convention).
    final_sigma : float, optional
        The level reached by the last step; default 0 (the clean sample), or the trailing entry of ``sigmas``.
    num_train_timesteps : int
        Scale of the default timesteps.

    Attributes
    ----------
    sigmas : numpy.ndarray, shape (S,), float64
    timesteps : tuple of float, length S
    final_sigma : float

    Raises
    ------
    InvalidArgumentError
        For levels outside (0, 1], not strictly descending, or timesteps of another length.

    Examples
    --------
    >>> from smckit.diffusion.flow import FlowSchedule
    >>> s = FlowSchedule.uniform(4)
    >>> [round(float(v), 3) for v in s.sigmas], s.final_sigma
    ([1.0, 0.75, 0.5, 0.25], 0.0)
    >>> s.timesteps
    (1000.0, 750.0, 500.0, 250.0)
    """

    kind = "flow"
    """The family of the schedule: ``x_s = (1 - s) x0 + s eps``."""

    def __init__(
        self,
        sigmas: Any,
        timesteps: Any = None,
        *,
        final_sigma: float | None = None,
        num_train_timesteps: int = 1000,
    ):
        levels = _host_float64(sigmas)
        steps = None if timesteps is None else _host_float64(timesteps)
        if final_sigma is None and levels.size >= 2 and (steps is None or steps.size == levels.size - 1):
            if steps is not None or levels[-1] == 0.0:
                levels, final_sigma = levels[:-1], float(levels[-1])
        final = 0.0 if final_sigma is None else float(final_sigma)
        if levels.size == 0 or not np.all((levels > 0) & (levels <= 1)):
            raise InvalidArgumentError(f"flow sigmas must be a non-empty list of levels in (0, 1], got {levels}")
        if any(a <= b for a, b in itertools.pairwise(levels)):
            raise InvalidArgumentError(f"flow sigmas must be strictly descending, got {levels}")
        if not 0.0 <= final < levels[-1]:
            raise InvalidArgumentError(f"final_sigma must be in [0, {levels[-1]:.6g}), got {final}")
        if steps is None:
            steps = levels * int(num_train_timesteps)
        if steps.size != levels.size:
            raise InvalidArgumentError(f"{steps.size} timesteps for {levels.size} sigmas")
        self.sigmas = levels
        self.timesteps = tuple(float(t) for t in steps)
        self.final_sigma = final

    # -- constructors -----------------------------------------------------------------------------------
    @classmethod
    def uniform(cls, num_steps: int, *, shift: float = 1.0, num_train_timesteps: int = 1000) -> FlowSchedule:
        """``S`` levels ``shift(1 - i / S)``, ``i = 0 .. S-1``, then 0; ``shift(u) = m u / (1 + (m - 1) u)``.

        Parameters
        ----------
        num_steps : int
            S.
        shift : float
            ``m`` > 0: above 1 spends more steps at high noise (SD3 uses 3).
        num_train_timesteps : int
            The network times are ``num_train_timesteps * s``.

        Returns
        -------
        FlowSchedule
        """
        if int(num_steps) < 1 or not shift > 0:
            raise InvalidArgumentError(f"need num_steps >= 1 and shift > 0, got {num_steps} and {shift}")
        u = 1.0 - np.arange(int(num_steps), dtype=np.float64) / int(num_steps)
        return cls(shift * u / (1.0 + (shift - 1.0) * u), num_train_timesteps=num_train_timesteps)

    @classmethod
    def from_diffusers(cls, scheduler: Any) -> FlowSchedule:
        """Read the sigmas and timesteps of a ``FlowMatchEulerDiscreteScheduler`` after ``set_timesteps``.

        Parameters
        ----------
        scheduler : diffusers.FlowMatchEulerDiscreteScheduler
            After ``set_timesteps(num_inference_steps)`` (with ``mu`` under dynamic shifting): its ``sigmas``
            (S + 1 values, the last 0) and ``timesteps`` are what its ``step`` uses.

        Returns
        -------
        FlowSchedule

        Raises
        ------
        InvalidArgumentError
            For another scheduler, timesteps never set, or ``invert_sigmas`` (levels that increase).
        """
        from smckit.diffusion.schedule import scheduler_kind

        if scheduler_kind(scheduler) != "flow":
            raise InvalidArgumentError(
                f"{type(scheduler).__name__} is not a flow-matching scheduler: use NoiseSchedule.from_diffusers"
            )
        if getattr(scheduler, "num_inference_steps", None) is None:
            raise InvalidArgumentError("call scheduler.set_timesteps(num_inference_steps) before from_diffusers")
        if scheduler.config.get("invert_sigmas", False):
            raise InvalidArgumentError("invert_sigmas=True (levels from 0 to 1) is not a reverse process smckit reads")
        return cls(
            scheduler.sigmas,
            scheduler.timesteps,
            num_train_timesteps=scheduler.config.num_train_timesteps,
        )

    # -- queries ----------------------------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        """S, the number of sampling levels (= reverse steps = network calls per sample)."""
        return len(self.timesteps)

    def level(self, i: int) -> float:
        """``s`` of the i-th level: ``sigmas[i]`` for ``i < S``, the final level for ``i = S``."""
        if not 0 <= i <= self.num_steps:
            raise InvalidArgumentError(f"level index must be in [0, {self.num_steps}], got {i}")
        return self.final_sigma if i == self.num_steps else float(self.sigmas[i])

    def landing(self, i: int) -> float:
        """``s`` of the level the step from level i reaches: the next one (the final level after the last)."""
        if not 0 <= i < self.num_steps:
            raise InvalidArgumentError(f"step index must be in [0, {self.num_steps}), got {i}")
        return self.level(i + 1)

    def coefficients(self, level: float) -> tuple[float, float]:
        """``(alpha, sigma) = (1 - s, s)``: ``x = alpha x0 + sigma eps`` at level ``s``."""
        return 1.0 - level, level

    def add_noise(self, x0: Tensor, i: int, noise: Tensor) -> Tensor:
        """The forward process at level i: ``(1 - s) x0 + s noise``.

        Parameters
        ----------
        x0 : tensor, shape (*batch, *event)
            Clean samples.
        i : int
            A level index in ``[0, S]``.
        noise : tensor, shape (*batch, *event)
            Standard normal noise.

        Returns
        -------
        tensor, shape (*batch, *event)
        """
        s = self.level(i)
        return (1.0 - s) * x0 + s * noise

    def __len__(self) -> int:
        return self.num_steps

    def __repr__(self) -> str:
        head = ", ".join(f"{v:.4g}" for v in self.sigmas[:3])
        more = ", ..." if self.num_steps > 3 else ""
        return f"FlowSchedule(sigmas=({head}{more}) [{self.num_steps}], final_sigma={self.final_sigma:g})"


class FlowDenoiser(Denoiser):
    """A flow-matching network ``(x_s, t, **conditioning) -> v``, turned into ``(eps_hat, x0_hat)`` at level s.

    Parameters
    ----------
    fn : callable
        ``fn(x_s, t, **conditioning) -> v``: a batch of shape ``(B, *event)``, the network time ``t`` (a float,
        ``1000 s`` for diffusers' models), the velocity ``eps - x0`` of the same shape.
    prediction_type : {"velocity"}
        The only one.
    **options
        Clipping and thresholding of ``x0_hat``, as for :class:`~smckit.diffusion.Denoiser` (off by default, as
        flow models do not clip).

    Examples
    --------
    >>> import torch
    >>> from smckit.diffusion.flow import FlowDenoiser
    >>> d = FlowDenoiser(lambda x, t: torch.ones_like(x))
    >>> out = d(torch.zeros(1, 2), 500.0, 0.5)
    >>> out.x0_hat.tolist(), out.eps.tolist()
    ([[-0.5, -0.5]], [[0.5, 0.5]])
    """

    kind = "flow"

    def __init__(self, fn: Callable[..., Tensor], prediction_type: str = "velocity", **options: Any):
        if prediction_type not in ("velocity", "flow"):
            raise InvalidArgumentError(
                f"a flow-matching network predicts the velocity eps - x0 (prediction_type='velocity'), got "
                f"{prediction_type!r}"
            )
        super().__init__(fn, "epsilon", **options)
        self.prediction_type = "velocity"

    def convert(self, output: Tensor, x_t: Tensor, alpha_bar: float) -> DenoiserOutput:
        """``x0_hat = x - s v`` (clipped as configured) and ``eps_hat = x + (1 - s) v`` at level ``s``.

        Parameters
        ----------
        output : tensor, shape (B, *event)
            The velocity.
        x_t : tensor, shape (B, *event)
            The input, at level ``s``.
        alpha_bar : float
            The level ``s`` in (0, 1] (the name is shared with the diffusion denoiser).

        Returns
        -------
        DenoiserOutput
        """
        s = float(alpha_bar)
        x0 = x_t - s * output
        eps = x_t + (1.0 - s) * output
        x0_hat = self.clip(x0)
        if self.use_clipped_model_output and x0_hat is not x0:
            eps = (x_t - (1.0 - s) * x0_hat) / s
        return DenoiserOutput(eps, x0_hat)


class FlowStep(Transition):
    """The flow's stochastic DDIM-style step from level ``s`` to ``s'`` (see the module notes).

    Parameters
    ----------
    eta : float
        In [0, 1]: 0 is the deterministic Euler step (diffusers' ``step``), 1 the flow's ancestral step
        (``noise="posterior"``) or fresh noise at every level (``noise="level"``).
    noise : {"posterior", "level"}
        What ``eta`` scales.

    Raises
    ------
    InvalidArgumentError
        For ``eta`` outside [0, 1] or an unknown ``noise``.
    """

    name = "flow"
    kind = "flow"

    def __init__(self, eta: float = 0.0, noise: str = "posterior"):
        if not 0.0 <= float(eta) <= 1.0:
            raise InvalidArgumentError(f"eta must be in [0, 1], got {eta}")
        if noise not in FLOW_NOISE:
            raise InvalidArgumentError(f"noise must be one of {FLOW_NOISE}, got {noise!r}")
        self.eta = float(eta)
        self.noise = noise

    @property
    def deterministic(self) -> bool:
        return self.eta == 0.0

    def check_levels(self, level: float, level_prev: float) -> None:
        if not 0 < level <= 1 or not 0 <= level_prev < level:
            raise InvalidArgumentError(
                f"a flow step goes from a level s in (0, 1] to s' in [0, s), got {level} -> {level_prev}"
            )

    def std(self, alpha_bar: float, alpha_bar_prev: float) -> float:
        s, s_next = alpha_bar, alpha_bar_prev
        if self.noise == "level":
            return self.eta * s_next
        ratio = (1.0 - s) * s_next / ((1.0 - s_next) * s)
        return self.eta * s_next * math.sqrt(max(1.0 - ratio * ratio, 0.0))

    def mean(self, x_t: Tensor, out: DenoiserOutput, alpha_bar: float, alpha_bar_prev: float, std: float) -> Tensor:
        s_next = alpha_bar_prev
        return (1.0 - s_next) * out.x0_hat + math.sqrt(max(s_next * s_next - std * std, 0.0)) * out.eps

    def __repr__(self) -> str:
        noise = "" if self.noise == "posterior" else f", noise={self.noise!r}"
        return f"FlowStep(eta={self.eta:g}{noise})"
