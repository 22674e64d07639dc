"""When to resample: policies that look at the step and the effective sample size.

A policy answers, at the start of step ``t`` (before the move), whether each population (batch row)
resamples, given the ESS fraction ``ESS / n`` of the weights left by step ``t - 1``. The scheme that does
the resampling is a separate choice (:mod:`smckit.resamplers`).
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from smckit.backend import Array
from smckit.errors import InvalidArgumentError

__all__ = ["Policy", "ESSBelow", "Always", "Every", "Window", "Never"]


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Policy(ABC):
    """Decides when to resample.

    Subclasses implement :meth:`decide`. A policy whose answer depends only on ``t`` sets ``static = True``
    and returns a Python bool: the engine then never computes the ESS fraction for it and decides on the host,
    without waiting for an accelerator.
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
        if not _is_real(self.threshold) or not 0.0 < self.threshold <= 1.0:
            raise InvalidArgumentError(
                f"ESSBelow(threshold): threshold must be a number in (0, 1], got {self.threshold!r}"
            )

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
        if not _is_int(self.k) or self.k < 1:
            raise InvalidArgumentError(f"Every(k): k must be an integer >= 1, got {self.k!r}")

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
        if not _is_int(self.start) or self.start < 0:
            raise InvalidArgumentError(f"Window(start): start must be an integer >= 0, got {self.start!r}")
        if self.stop is not None and (not _is_int(self.stop) or self.stop < self.start):
            raise InvalidArgumentError(
                f"Window(stop): stop must be None or an integer >= start = {self.start}, got {self.stop!r}"
            )
        if not isinstance(self.inner, Policy):
            raise InvalidArgumentError(
                f"Window(inner): inner must be a smckit Policy (e.g. ESSBelow(0.5)), got {self.inner!r}"
            )

    @property
    def static(self) -> bool:  # type: ignore[override]
        return self.inner.static

    def decide(self, t: int, ess_fraction: Array) -> bool | Array:
        inside = t >= self.start and (self.stop is None or t < self.stop)
        return self.inner.decide(t, ess_fraction) if inside else False
