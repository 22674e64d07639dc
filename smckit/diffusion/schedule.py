"""Noise schedules: ``alphas_cumprod`` and the descending list of sampling timesteps.

The forward (noising) process is ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` with ``eps ~ N(0, I)`` and
``abar_t = alphas_cumprod[t]`` for the training timesteps ``t = 0 .. K-1``. A sampler visits a descending
subset ``timesteps = (t_1 > t_2 > ... > t_S)``, one denoiser call at each. Where the step from ``t_i`` lands is
the schedule's ``previous`` rule:

- ``"list"`` (the default for schedules built here, and what diffusers' ``DDPMScheduler`` does): the next entry
  ``t_{i+1}`` of the list; the step from ``t_S`` lands on the *final* level, whose ``abar`` is
  ``final_alpha_cumprod`` (1 by default: the clean sample);
- ``"stride"`` (what diffusers' ``DDIMScheduler`` does, so the default of :meth:`NoiseSchedule.from_diffusers` for
  it): ``t_i - K // S``, the final level when that is negative. With ``linspace`` spacing (and ``trailing`` at some
  step counts) this is *not* the next entry of the list (999 steps to 899, then the network is called at 888): the
  sample lands at one noise level and is denoised as if it were at another. smckit reproduces it for parity with
  diffusers; ``previous="list"`` is the consistent sampler.

Zero-terminal-SNR schedules (``rescale_betas_zero_snr``) have ``alphas_cumprod = 0`` at the last training step:
accepted, as long as no step lands there (a level of pure noise can only be a starting point).

The schedule's numbers are kept on the host in float64 (:attr:`NoiseSchedule.alpha_bars`): the transitions use
them as Python scalars, so no tensor is created or moved when a step multiplies a tensor by a coefficient.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from smckit.errors import InvalidArgumentError

__all__ = ["NoiseSchedule", "spaced_timesteps", "scheduler_kind"]

SPACINGS = ("leading", "linspace", "trailing")
PREVIOUS_RULES = ("list", "stride")
DDPM_SCHEDULERS = ("DDPMScheduler", "DDPMParallelScheduler")
DDIM_SCHEDULERS = ("DDIMScheduler", "DDIMParallelScheduler")
FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler",)


def scheduler_kind(scheduler: Any) -> str:
    """``"ddpm"``, ``"ddim"`` or ``"flow"`` for the diffusers schedulers smckit reads, by class (or base class).

    Parameters
    ----------
    scheduler : diffusers scheduler
        Any object; its class and base classes are looked up by name (diffusers is not imported).

    Returns
    -------
    str

    Raises
    ------
    InvalidArgumentError
        For any other scheduler, naming the supported ones and the ``from_config`` route.
    """
    names = {c.__name__ for c in type(scheduler).__mro__}
    for kind, supported in (("ddpm", DDPM_SCHEDULERS), ("ddim", DDIM_SCHEDULERS), ("flow", FLOW_SCHEDULERS)):
        if names & set(supported):
            return kind
    raise InvalidArgumentError(
        f"{type(scheduler).__name__} is not supported: smckit reads {', '.join(DDPM_SCHEDULERS + DDIM_SCHEDULERS)} "
        f"(NoiseSchedule.from_diffusers) and {', '.join(FLOW_SCHEDULERS)} (FlowSchedule.from_diffusers), whose "
        "steps are Gaussian with no hidden state. Multistep and ODE solvers keep a step counter and a history that "
        "resampling would desynchronise; for a noise-prediction model use "
        f"diffusers.DDIMScheduler.from_config(scheduler.config) (or DDPMScheduler.from_config) instead"
    )


def _host_float64(values: Any) -> np.ndarray:
    """A float64 numpy copy of a numpy array, sequence or torch tensor (once, at construction)."""
    if hasattr(values, "detach"):  # torch tensor on any device
        values = values.detach().to("cpu").double().numpy()
    return np.array(values, dtype=np.float64, copy=True).reshape(-1)


def spaced_timesteps(
    num_train_timesteps: int, num_steps: int, spacing: str = "leading", steps_offset: int = 0
) -> tuple[int, ...]:
    """A descending subset of ``0 .. num_train_timesteps-1`` with diffusers' spacing rules.

    Parameters
    ----------
    num_train_timesteps : int
        K, the number of training timesteps.
    num_steps : int
        S, the number of sampling timesteps (1 <= S <= K).
    spacing : {"leading", "linspace", "trailing"}
        ``leading``: ``(0, r, 2r, ...) + steps_offset`` with ``r = K // S``; ``linspace``: ``round(linspace(0,
        K-1, S))``; ``trailing``: ``round(arange(K, 0, -K/S)) - 1``. Reversed, as sampling runs from noise.
    steps_offset : int
        Added to the ``leading`` timesteps (diffusers' ``steps_offset``).

    Returns
    -------
    tuple of int, length S, strictly descending

    Raises
    ------
    InvalidArgumentError
        For S outside ``[1, K]`` or an unknown spacing.
    """
    k, s = int(num_train_timesteps), int(num_steps)
    if not 1 <= s <= k:
        raise InvalidArgumentError(f"num_steps must be in [1, {k}], got {num_steps}")
    if spacing == "linspace":
        steps = np.linspace(0, k - 1, s).round()[::-1]
    elif spacing == "leading":
        steps = (np.arange(0, s) * (k // s)).round()[::-1] + int(steps_offset)
    elif spacing == "trailing":
        steps = np.round(np.arange(k, 0, -k / s)) - 1
    else:
        raise InvalidArgumentError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    return tuple(int(t) for t in steps)


class NoiseSchedule:
    """``alphas_cumprod`` over the training timesteps and the descending sampling timesteps.

    Parameters
    ----------
    alphas_cumprod : array or tensor, shape (K,)
        ``abar_t`` for the training timesteps ``t = 0 .. K-1``: in [0, 1], non-increasing, positive wherever a
        step lands (0 only at pure-noise starting levels, as in zero-terminal-SNR schedules). Kept as given in
        :attr:`alphas_cumprod`; a float64 host copy serves the computations.
    timesteps : sequence of int, optional
        The sampling timesteps, strictly descending, each in ``[0, K)``. Default: every training timestep
        ``(K-1, ..., 0)``.
    final_alpha_cumprod : float
        ``abar`` of the level reached by the last step (1: the clean sample; diffusers' DDIM with
        ``set_alpha_to_one=False`` uses ``alphas_cumprod[0]``).
    previous : {"list", "stride"}
        Where a step lands (see the module notes): the next entry of ``timesteps`` (default), or diffusers'
        DDIM rule ``t - K // S``.

    Attributes
    ----------
    alphas_cumprod : array or tensor, shape (K,)
    timesteps : tuple of int, length S
    final_alpha_cumprod : float
    previous_rule : str
    alpha_bars : numpy.ndarray, shape (K,), float64
        Host copy of ``alphas_cumprod``.

    Raises
    ------
    InvalidArgumentError
        For values outside [0, 1], an increasing ``alphas_cumprod``, a step that lands on a level of pure noise,
        or timesteps that are not strictly descending within range.

    Examples
    --------
    >>> from smckit.diffusion import NoiseSchedule
    >>> s = NoiseSchedule.linear(num_train_timesteps=1000, num_steps=4, spacing="linspace")
    >>> s.timesteps
    (999, 666, 333, 0)
    >>> s.previous(666), s.previous(0)
    (333, None)
    """

    kind = "vp"
    """The family of the schedule: variance preserving, ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``."""

    def __init__(
        self,
        alphas_cumprod: Any,
        timesteps: Sequence[int] | None = None,
        *,
        final_alpha_cumprod: float = 1.0,
        previous: str = "list",
    ):
        abar = _host_float64(alphas_cumprod)
        if abar.size == 0 or not np.all((abar >= 0) & (abar <= 1)):
            raise InvalidArgumentError("alphas_cumprod must be a non-empty array of values in [0, 1]")
        if np.any(np.diff(abar) > 0):
            raise InvalidArgumentError("alphas_cumprod must be non-increasing in t (more noise at larger t)")
        if previous not in PREVIOUS_RULES:
            raise InvalidArgumentError(f"previous must be one of {PREVIOUS_RULES}, got {previous!r}")
        k = abar.size
        steps = tuple(range(k - 1, -1, -1)) if timesteps is None else tuple(int(t) for t in _host_ints(timesteps))
        if len(steps) == 0 or any(not 0 <= t < k for t in steps):
            raise InvalidArgumentError(f"timesteps must be a non-empty list of integers in [0, {k}), got {steps}")
        if any(a <= b for a, b in itertools.pairwise(steps)):
            raise InvalidArgumentError(f"timesteps must be strictly descending, got {steps}")
        if np.any(abar[list(steps)] >= 1):
            raise InvalidArgumentError("alphas_cumprod must be below 1 at every sampling timestep (some noise left)")
        final = float(final_alpha_cumprod)
        if not 0 < final <= 1 or final < abar[steps[-1]]:
            raise InvalidArgumentError(
                f"final_alpha_cumprod must be in (0, 1] and at least alphas_cumprod[{steps[-1]}] = "
                f"{abar[steps[-1]]:.6g}, got {final_alpha_cumprod}"
            )
        self.alphas_cumprod = alphas_cumprod
        self.alpha_bars = abar
        self.timesteps = steps
        self.final_alpha_cumprod = final
        self.previous_rule = previous
        self._index = {t: i for i, t in enumerate(steps)}
        stride = k // len(steps)
        landing = [t - stride for t in steps] if previous == "stride" else [*steps[1:], -1]
        self._landing: tuple[int | None, ...] = tuple(None if t < 0 else t for t in landing)
        for t, prev in zip(steps, self._landing, strict=True):
            if prev is not None and abar[prev] <= 0:
                raise InvalidArgumentError(
                    f"the step from timestep {t} lands on timestep {prev}, where alphas_cumprod is 0 (pure noise): "
                    "a zero-terminal-SNR level can only be a starting point; choose timesteps (e.g. "
                    "timestep_spacing='trailing') that visit it first, if at all"
                )

    # -- constructors -----------------------------------------------------------------------------------
    @classmethod
    def linear(
        cls,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        *,
        num_steps: int | None = None,
        spacing: str = "leading",
    ) -> NoiseSchedule:
        """The DDPM schedule: betas linear from ``beta_start`` to ``beta_end`` (float64).

        ``num_steps`` sampling timesteps with ``spacing`` (see :func:`spaced_timesteps`); all by default.
        """
        betas = np.linspace(beta_start, beta_end, int(num_train_timesteps), dtype=np.float64)
        return cls._from_betas(betas, num_steps, spacing)

    @classmethod
    def scaled_linear(
        cls,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        *,
        num_steps: int | None = None,
        spacing: str = "leading",
    ) -> NoiseSchedule:
        """Stable Diffusion's schedule (diffusers' ``scaled_linear``): ``sqrt(beta)`` linear, float64.

        ``num_steps`` sampling timesteps with ``spacing`` (see :func:`spaced_timesteps`); all by default.
        """
        betas = np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), int(num_train_timesteps)) ** 2
        return cls._from_betas(betas, num_steps, spacing)

    @classmethod
    def cosine(
        cls,
        num_train_timesteps: int = 1000,
        *,
        s: float = 0.008,
        max_beta: float = 0.999,
        num_steps: int | None = None,
        spacing: str = "leading",
    ) -> NoiseSchedule:
        """The cosine schedule (Nichol and Dhariwal, 2021; diffusers' ``squaredcos_cap_v2``).

        ``f(u) = cos((u + s) / (1 + s) * pi / 2)^2``, ``beta_i = min(1 - f((i+1)/K) / f(i/K), max_beta)``.
        """
        k = int(num_train_timesteps)
        u = np.arange(k + 1, dtype=np.float64) / k
        f = np.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        betas = np.minimum(1 - f[1:] / f[:-1], max_beta)
        return cls._from_betas(betas, num_steps, spacing)

    @classmethod
    def _from_betas(cls, betas: np.ndarray, num_steps: int | None, spacing: str) -> NoiseSchedule:
        abar = np.cumprod(1.0 - betas)
        steps = None if num_steps is None else spaced_timesteps(abar.size, num_steps, spacing)
        return cls(abar, steps)

    @classmethod
    def from_diffusers(cls, scheduler: Any, *, previous: str | None = None) -> NoiseSchedule:
        """Read ``alphas_cumprod``, ``timesteps``, the final level and the previous-timestep rule from diffusers.

        Parameters
        ----------
        scheduler : diffusers.DDPMScheduler, DDPMParallelScheduler, DDIMScheduler or DDIMParallelScheduler
            After ``set_timesteps`` (required for DDIM; a DDPM scheduler without it uses every training
            timestep). Zero-terminal-SNR schedules (``rescale_betas_zero_snr=True``) are read as they are.
        previous : {"list", "stride"}, optional
            Where a step lands (see the module notes). Default: what the scheduler's ``step`` does, ``"stride"``
            for DDIM and ``"list"`` for DDPM; ``previous="list"`` makes a DDIM schedule step to the next
            timestep it will actually visit (a deliberate departure from diffusers).

        Returns
        -------
        NoiseSchedule

        Raises
        ------
        InvalidArgumentError
            For another scheduler class (the message names the supported ones and the
            ``DDIMScheduler.from_config(scheduler.config)`` route), or a DDIM scheduler whose timesteps were never
            set.
        """
        kind = scheduler_kind(scheduler)
        if kind == "flow":
            raise InvalidArgumentError(
                f"{type(scheduler).__name__} is a flow-matching scheduler: use "
                "smckit.diffusion.flow.FlowSchedule.from_diffusers(scheduler)"
            )
        if kind == "ddim":
            if getattr(scheduler, "num_inference_steps", None) is None:
                raise InvalidArgumentError("call scheduler.set_timesteps(num_inference_steps) before from_diffusers")
            final = float(scheduler.final_alpha_cumprod)
            rule = "stride" if previous is None else previous
        else:
            final = 1.0  # DDPMScheduler.step uses alpha_prod_t_prev = 1 after the last timestep
            rule = "list" if previous is None else previous
        return cls(scheduler.alphas_cumprod, _host_ints(scheduler.timesteps), final_alpha_cumprod=final, previous=rule)

    def with_steps(self, num_steps: int, spacing: str = "leading", steps_offset: int = 0) -> NoiseSchedule:
        """The same ``alphas_cumprod`` with ``num_steps`` sampling timesteps (see :func:`spaced_timesteps`)."""
        steps = spaced_timesteps(self.num_train_timesteps, num_steps, spacing, steps_offset)
        return self.with_timesteps(steps)

    def with_timesteps(self, timesteps: Sequence[int]) -> NoiseSchedule:
        """The same ``alphas_cumprod``, final level and previous-timestep rule with other sampling timesteps."""
        return type(self)(
            self.alphas_cumprod, timesteps, final_alpha_cumprod=self.final_alpha_cumprod, previous=self.previous_rule
        )

    def to(self, device: Any = None, dtype: Any = None) -> NoiseSchedule:
        """A copy whose :attr:`alphas_cumprod` is a torch tensor on ``device`` with ``dtype`` (default float64).

        The computations always use the float64 host copy, so this only matters to code that reads
        :attr:`alphas_cumprod` itself (e.g. to noise training data on the device).
        """
        import torch

        values = torch.as_tensor(self.alpha_bars, dtype=dtype or torch.float64, device=device)
        return type(self)(
            values, self.timesteps, final_alpha_cumprod=self.final_alpha_cumprod, previous=self.previous_rule
        )

    # -- queries ----------------------------------------------------------------------------------------
    @property
    def num_train_timesteps(self) -> int:
        """K, the number of training timesteps."""
        return int(self.alpha_bars.size)

    @property
    def num_steps(self) -> int:
        """S, the number of sampling timesteps (= reverse steps = denoiser calls per sample)."""
        return len(self.timesteps)

    def previous(self, t: int) -> int | None:
        """The timestep the step from ``t`` lands on, or ``None`` for the final level.

        With the ``"list"`` rule, the next entry of :attr:`timesteps`; with ``"stride"``, ``t - K // S``.

        Raises
        ------
        InvalidArgumentError
            If ``t`` is not one of :attr:`timesteps`.
        """
        return self._landing[self.index(t)]

    def landing(self, i: int) -> float:
        """``abar`` of the level the step from ``timesteps[i]`` lands on (see :meth:`previous`).

        Parameters
        ----------
        i : int
            In ``[0, S)``.

        Returns
        -------
        float
        """
        if not 0 <= i < len(self.timesteps):
            raise InvalidArgumentError(f"step index must be in [0, {len(self.timesteps)}), got {i}")
        return self.alpha_bar(self._landing[i])

    def coefficients(self, level: float) -> tuple[float, float]:
        """``(alpha, sigma) = (sqrt(abar), sqrt(1 - abar))``: ``x = alpha x0 + sigma eps`` at that level.

        Parameters
        ----------
        level : float
            An ``abar`` (e.g. :meth:`level` or :meth:`landing`).

        Returns
        -------
        tuple of float
        """
        return math.sqrt(level), math.sqrt(1.0 - level)

    def index(self, t: int) -> int:
        """The position of timestep ``t`` in :attr:`timesteps`."""
        try:
            return self._index[int(t)]
        except KeyError:
            raise InvalidArgumentError(f"timestep {t} is not one of the sampling timesteps {self.timesteps}") from None

    def alpha_bar(self, t: int | None) -> float:
        """``abar_t`` as a float; ``t=None`` (or negative) gives the final level's ``final_alpha_cumprod``."""
        if t is None or t < 0:
            return self.final_alpha_cumprod
        return float(self.alpha_bars[int(t)])

    def level(self, i: int) -> float:
        """``abar`` of the i-th level: ``timesteps[i]`` for ``i < S``, the final level for ``i = S``."""
        if not 0 <= i <= len(self.timesteps):
            raise InvalidArgumentError(f"level index must be in [0, {len(self.timesteps)}], got {i}")
        return self.final_alpha_cumprod if i == len(self.timesteps) else float(self.alpha_bars[self.timesteps[i]])

    def add_noise(self, x0: Any, t: int, noise: Any) -> Any:
        """The forward process at timestep ``t``: ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""
        a = self.alpha_bar(t)
        return math.sqrt(a) * x0 + math.sqrt(1.0 - a) * noise

    def __len__(self) -> int:
        return len(self.timesteps)

    def __repr__(self) -> str:
        head = ", ".join(str(t) for t in self.timesteps[:3])
        more = ", ..." if len(self.timesteps) > 3 else ""
        rule = "" if self.previous_rule == "list" else f", previous={self.previous_rule!r}"
        return (
            f"NoiseSchedule(K={self.num_train_timesteps}, timesteps=({head}{more}) [{len(self.timesteps)}], "
            f"final_alpha_cumprod={self.final_alpha_cumprod:g}{rule})"
        )


def _host_ints(values: Any) -> list[int]:
    if hasattr(values, "detach"):
        values = values.detach().to("cpu").numpy()
    return [int(v) for v in np.asarray(values).reshape(-1)]
