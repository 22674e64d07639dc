"""When to resample: policies that look at the step and the effective sample size.

A policy answers, at the start of step ``t`` (before the move), whether each population (batch row)
resamples, given the ESS fraction ``ESS / n`` of the weights left by step ``t - 1``. The scheme that does
the resampling is a separate choice (:mod:`smckit.resamplers`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from smckit.backend import Array
from smckit.errors import InvalidArgumentError

__all__ = ["Policy", "ESSBelow", "Always", "Every", "Window", "Never"]


class Policy(ABC):
    """Decides when to resample.

    Subclasses implement :meth:`decide`. A policy whose answer depends only on ``t`` sets ``static = True``
    and returns a Python bool, which lets the engine skip the resampler entirely on GPU backends without a
    host synchronisation.
    """

    static: bool = False

    @abstractmethod
    def decide(self, t: int, ess_fraction: Array) -> bool | Array:
        """Whether to resample at the start of step ``t``.

        Parameters
        ----------
        t : int
            The step about to run (t >= 1).
        ess_fraction : array, shape (*batch,)
            ``ESS / n`` of the current weights, per row, in (0, 1].

        Returns
        -------
        bool or boolean array of shape (*batch,)
        """


@dataclass(frozen=True)
class ESSBelow(Policy):
    """Resample a row when its ESS falls below ``threshold * n`` (adaptive resampling).

    Parameters
    ----------
    threshold : float in (0, 1]
        ``ESSBelow(1.0)`` resamples unless the weights are exactly uniform.
    """

    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise InvalidArgumentError(f"ESSBelow threshold must be in (0, 1], got {self.threshold}")

    def decide(self, t: int, ess_fraction: Array) -> Array:
        # A relative slack of 1e-6 so that uniform weights (ESS fraction 1 up to float32 round-off) never
        # trigger ESSBelow(1.0).
        return ess_fraction < self.threshold * (1.0 - 1e-6)


@dataclass(frozen=True)
class Always(Policy):
    """Resample at every step."""

    static = True

    def decide(self, t: int, ess_fraction: Array) -> bool:
        return True


@dataclass(frozen=True)
class Never(Policy):
    """Never resample (sequential importance sampling)."""

    static = True

    def decide(self, t: int, ess_fraction: Array) -> bool:
        return False


@dataclass(frozen=True)
class Every(Policy):
    """Resample at steps ``t`` with ``t % k == 0``."""

    k: int = 1
    static = True

    def __post_init__(self) -> None:
        if self.k < 1:
            raise InvalidArgumentError(f"Every(k) needs k >= 1, got {self.k}")

    def decide(self, t: int, ess_fraction: Array) -> bool:
        return t % self.k == 0


@dataclass(frozen=True)
class Window(Policy):
    """Apply ``inner`` for ``start <= t < stop`` and never resample outside that window.

    Diffusion steering often resamples only in the middle of the trajectory: early potentials are noisy
    and late resampling only removes diversity.
    """

    start: int = 0
    stop: int | None = None
    inner: Policy = ESSBelow(0.5)

    def __post_init__(self) -> None:
        if self.start < 0 or (self.stop is not None and self.stop < self.start):
            raise InvalidArgumentError(f"Window needs 0 <= start <= stop, got start={self.start}, stop={self.stop}")

    @property
    def static(self) -> bool:  # type: ignore[override]
        return self.inner.static

    def decide(self, t: int, ess_fraction: Array) -> bool | Array:
        inside = t >= self.start and (self.stop is None or t < self.stop)
        return self.inner.decide(t, ess_fraction) if inside else False
