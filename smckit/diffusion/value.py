"""A value-based baseline for reward steering: soft value-based decoding, at a counted number of denoiser calls.

Soft value-based decoding (SVDD; Li et al., 2024, "Derivative-free guidance in continuous and discrete diffusion
models with soft value-based decoding") moves every particle alone: at each reverse step it draws M candidate
moves from the sampler, values each by the reward of its x0 estimate, ``v = r(x0_hat)``, and keeps one, drawn with
probability proportional to ``exp(lam v)`` (``lam = inf``: the best one, greedy). There are no weights and no
resampling: particles never copy each other, so there is no lineage collapse, but every step costs M denoiser
calls per particle (one per candidate at its new level), against one for SMC. Compare the two at an equal number
of denoiser calls: the wrapped model's ``denoiser_calls`` counts them (``n (1 + (S - 1) M)`` per group for S
timesteps: the initial evaluation, then M per move to a noisy level; the last move lands on x0, which needs no
denoiser call).

The selection only approximates the tilted target (it is greedy in the current estimate of the value), unlike
SMC, which targets ``p(x0) exp(lam r(x0))`` exactly; SVDD's own temperature ``alpha`` is ``1 / lam``.

:class:`SoftValueDecoding` is a Feynman-Kac model whose potentials are zero; run it with ``policy=Never()`` (its
default policy), so that the engine only carries the particles.
"""

from __future__ import annotations

import math
from typing import Any

from smckit.errors import InvalidArgumentError, ShapeError
from smckit.model import FeynmanKac, Wrapped
from smckit.policy import Never
from smckit.random import RNG
from smckit.state import take

__all__ = ["SoftValueDecoding"]

State = Any


class SoftValueDecoding(Wrapped):
    """Soft value-based decoding around a reward-steering model: M candidate moves per particle, one kept.

    Parameters
    ----------
    model : FeynmanKac
        Usually a :class:`~smckit.diffusion.RewardSteering` (its sampler makes the candidates and its state's
        ``key`` entry, shape (G, n), values them); its own potentials are not used.
    candidates : int
        M >= 1, candidate moves per particle and step (1: the plain sampler).
    lam : float, optional
        Selection strength: candidate j is kept with probability proportional to ``exp(lam v_j)``; ``math.inf``
        keeps the best. Default: ``model.lam``.
    key : str
        The state entry holding the value of each particle (default ``"reward"``, the reward of its x0 estimate).

    Attributes
    ----------
    inner : FeynmanKac
    candidates : int
    lam : float
    num_steps : int
    default_policy : Never

    Raises
    ------
    InvalidArgumentError
        For a model that is not a Feynman-Kac model, ``candidates < 1``, or a NaN or missing ``lam``.

    Examples
    --------
    >>> import torch, smckit
    >>> from smckit.diffusion import GaussianMixture, NoiseSchedule, RewardSteering
    >>> from smckit.diffusion.value import SoftValueDecoding
    >>> gmm = GaussianMixture([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], 0.25, dtype=torch.float64)
    >>> schedule = NoiseSchedule.linear(num_steps=10)
    >>> steering = RewardSteering(gmm.denoiser(schedule), schedule, lambda x: x[:, 0], event_shape=(2,),
    ...                           dtype=torch.float64)
    >>> result = smckit.run(SoftValueDecoding(steering, candidates=4), 8, seed=0)
    >>> steering.denoiser_calls  # 8 particles x (1 + 9 moves x 4 candidates)
    296
    """

    def __init__(self, model: FeynmanKac, candidates: int, *, lam: float | None = None, key: str = "reward"):
        if not isinstance(model, FeynmanKac):
            raise InvalidArgumentError(f"SoftValueDecoding wraps a FeynmanKac model, got {type(model).__name__}")
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
            raise InvalidArgumentError(f"candidates must be a positive integer, got {candidates!r}")
        if lam is None:
            lam = getattr(model, "lam", None)
            if lam is None:
                raise InvalidArgumentError(f"{type(model).__name__} has no lam: give SoftValueDecoding's lam")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or math.isnan(lam):
            raise InvalidArgumentError(f"lam must be a number (math.inf: greedy), got {lam!r}")
        super().__init__(model)
        self.candidates = candidates
        self.lam = float(lam)
        self.key = key
        self.default_policy = Never()

    def propose(self, t: int, state: State, rng: RNG) -> State:
        """M candidate moves of every particle, and the one kept by its value.

        Parameters
        ----------
        t : int
        state : dict
            Entries of shape (G, n, ...).
        rng : RNG

        Returns
        -------
        dict
            The kept candidates, same entries and shapes. The wrapped model evaluates all G n M candidates.

        Raises
        ------
        ShapeError
            If the candidates' state has no ``key`` entry.
        """
        value = _value(state, self.key, "state")
        n, m = value.shape[-1], self.candidates
        xp = _torch_like(value)
        parents = xp.arange(n, device=value.device).repeat_interleave(m).expand(*value.shape[:-1], n * m)
        moved = self.inner.propose(t, take(state, parents), rng)
        v = _value(moved, self.key, "candidates").reshape(*value.shape[:-1], n, m)
        if math.isinf(self.lam):
            score = v if self.lam > 0 else -v
        else:
            # Gumbel-max: argmax_j (lam v_j + G_j) is candidate j with probability softmax(lam v)_j.
            gumbel = -rng.exponential(tuple(v.shape), like=v).log()
            score = self.lam * v + gumbel
        kept = score.argmax(-1) + xp.arange(n, device=v.device) * m
        return take(moved, kept)

    def log_potential(self, t: int, prev: State | None, state: State) -> Any:
        """Zero: the selection inside :meth:`propose` is all the steering there is.

        Parameters
        ----------
        t : int
        prev : state or None
        state : dict

        Returns
        -------
        tensor of zeros, shape (G, n)
        """
        value = _value(state, self.key, "state")
        return value.new_zeros(value.shape)

    def __getattr__(self, name: str) -> Any:
        # Attribute reads go to the wrapped model (denoiser_calls, schedule, ...), but never its optional methods:
        # a look-ahead or a rebirth would make the engine treat this as a resampling model.
        if name in ("inner", "log_lookahead", "rebirth"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"SoftValueDecoding({self.inner!r}, candidates={self.candidates}, lam={self.lam:g})"


def _value(state: State, key: str, what: str) -> Any:
    if not isinstance(state, dict) or key not in state:
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ShapeError(f"SoftValueDecoding values the {what} by their {key!r} entry, but they have {found}")
    return state[key]


def _torch_like(value: Any) -> Any:
    import torch

    if not isinstance(value, torch.Tensor):
        raise ShapeError(f"SoftValueDecoding runs on torch states; the value entry is {type(value).__name__}")
    return torch
