"""Reward potentials for diffusion steering: ``diff``, ``max``, ``sum`` and ``rt``.

Let ``r_k`` be the reward of the Tweedie estimate at step k of a path (``r_0`` at the initial draw, ``r_S`` the
reward of the final sample). A potential defines the *twist* ``h_k`` of a path, a number in reward units that
the model multiplies by the strength ``lam``; the log-potential of step k is ``lam (h_k - h_{k-1})`` (with
``h_{-1} = 0``), so the product of the potentials up to step k is ``exp(lam h_k)``. The final step always sets
``h_S = r_S``: whatever the potential, the weighted final particles target ``p(x0) exp(lam r(x0))`` exactly.

- ``diff``: ``h_k = r_k``. Log-potentials ``lam r_0`` at step 0 and ``lam (r_k - r_{k-1})`` after: they
  telescope, the intermediate targets are ``p_t(x_t) exp(lam r(x0_hat_t))``, and the final potential needs no
  correction.
- ``rt``: each step's log-potential is ``lam r_k`` (``h_k = h_{k-1} + r_k``).
- ``max``: each step's log-potential is ``lam max_{j<=k} r_j`` (the running maximum along the path).
- ``sum``: each step's log-potential is ``lam sum_{j<=k} r_j`` (the running sum along the path).

For ``rt``, ``max`` and ``sum`` (as in FK steering, Singhal et al., 2025) the last log-potential is the
correction ``lam (r_S - h_{S-1})``. A potential keeps its running statistic (``memory``) in the particle state,
so it follows the particles through resampling.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from smckit.errors import InvalidArgumentError

__all__ = ["RewardPotential", "DiffPotential", "RtPotential", "MaxPotential", "SumPotential", "make_potential"]

Tensor = Any


class RewardPotential(ABC):
    """How the rewards along a path become its twist ``h_k`` (see the module notes).

    Methods take and return tensors of shape ``(*batch, n)``.
    """

    name: str = "potential"

    @abstractmethod
    def initial(self, reward: Tensor) -> tuple[Tensor, Tensor]:
        """``(h_0, memory_0)`` from the reward ``r_0`` of the initial draw."""

    @abstractmethod
    def update(self, reward: Tensor, twist: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        """``(h_k, memory_k)`` from ``r_k``, ``h_{k-1}`` and ``memory_{k-1}`` (0 < k < S)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class DiffPotential(RewardPotential):
    """``h_k = r_k``: log-potentials ``lam (r_k - r_{k-1})`` that telescope to ``lam r(x0)``."""

    name = "diff"

    def initial(self, reward: Tensor) -> tuple[Tensor, Tensor]:
        return reward, reward

    def update(self, reward: Tensor, twist: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        return reward, reward


class RtPotential(RewardPotential):
    """Log-potential ``lam r_k`` at every step (corrected at the last step)."""

    name = "rt"

    def initial(self, reward: Tensor) -> tuple[Tensor, Tensor]:
        return reward, reward

    def update(self, reward: Tensor, twist: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        return twist + reward, reward


class MaxPotential(RewardPotential):
    """Log-potential ``lam max_{j<=k} r_j`` at every step (corrected at the last step)."""

    name = "max"

    def initial(self, reward: Tensor) -> tuple[Tensor, Tensor]:
        return reward, reward

    def update(self, reward: Tensor, twist: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        running = memory.maximum(reward)
        return twist + running, running


class SumPotential(RewardPotential):
    """Log-potential ``lam sum_{j<=k} r_j`` at every step (corrected at the last step)."""

    name = "sum"

    def initial(self, reward: Tensor) -> tuple[Tensor, Tensor]:
        return reward, reward

    def update(self, reward: Tensor, twist: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        running = memory + reward
        return twist + running, running


_BUILTIN: dict[str, type[RewardPotential]] = {
    "diff": DiffPotential,
    "rt": RtPotential,
    "max": MaxPotential,
    "sum": SumPotential,
}


def make_potential(name: str | RewardPotential, **options: Any) -> RewardPotential:
    """A reward potential by registered name; a :class:`RewardPotential` passes through.

    The built-ins are ``"diff"``, ``"max"``, ``"sum"`` and ``"rt"``; other names are looked up in the plugin
    registry (:func:`smckit.plugins.make_potential`).

    Raises
    ------
    UnknownPluginError
        When no potential has that name.
    """
    if isinstance(name, RewardPotential):
        if options:
            raise InvalidArgumentError(f"options {sorted(options)} given with a ready potential {name!r}")
        return name
    factory = _BUILTIN.get(name)
    if factory is not None:
        return factory(**options)
    from smckit.plugins import make_potential as registry_make

    made = registry_make(name, **options)
    if not isinstance(made, RewardPotential):
        raise InvalidArgumentError(f"the potential {name!r} made a {type(made).__name__}, not a RewardPotential")
    return made
