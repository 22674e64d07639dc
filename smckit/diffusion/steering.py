"""Reward steering of a diffusion model as a Feynman-Kac model.

Target: ``p_theta(x0) exp(lam r(x0))``, with ``p_theta`` the sampler's law and ``r`` a reward on (decoded)
clean samples. With S sampling timesteps ``t_1 > ... > t_S`` (the schedule's list) the model has ``S + 1``
SMC steps, and every step's state is at one noise level:

- step 0: the initial draw ``x ~ N(0, I)`` at level ``t_1``, the denoiser's estimates there, and the
  log-potential ``lam h_0`` (``= lam r(x0_hat)`` for ``diff``; see :mod:`smckit.diffusion.potentials`);
- step k = 1 .. S-1: a reverse move from ``t_k`` (DDPM, DDIM, flow or guided), the denoiser at the new point
  (called at ``t_{k+1}``), and the log-potential ``lam (h_k - h_{k-1})`` (plus the importance correction of a
  guided move);
- step S: the last move to the final level (the sample ``x0``; as in diffusers it is noisy when the scheduler's
  is, unless ``deterministic_last_step=True``), its reward, and the log-potential ``lam (r(x0) - h_{S-1})``.

The schedule is a :class:`~smckit.diffusion.NoiseSchedule` (DDPM, DDIM: levels ``abar``) or a
:class:`~smckit.diffusion.flow.FlowSchedule` (flow matching: levels ``s``, a velocity network, the
:class:`~smckit.diffusion.flow.FlowStep`); everything else is shared.

So ``num_steps = S + 1`` (not S: the initial draw is weighted too) and a run costs exactly S denoiser calls per
particle, one per timestep. The product of all the potentials along a path is ``exp(lam r(x0))`` for every
potential type (times the guided proposal's importance ratios): the final weighted particles target
``p_theta(x0) exp(lam r(x0))``. For ``diff`` the potentials after step 0 sum to ``lam (r(x0) - r(x0_hat at
t_1))``.

The state is a dict of tensors of shape ``(groups, particles, ...)`` (each group is an independent population,
e.g. one prompt or class):

========================  ========================  ====================================================
key                       shape                     meaning
========================  ========================  ====================================================
``"x"``                   (G, n, *event)            x_t at the step's level (the sample x0 at the end)
``"eps"``                 (G, n, *event)            the denoiser's noise estimate at x (0 at the end)
``"x0_hat"``              (G, n, *event)            the Tweedie estimate at x (x itself at the end)
``"reward"``              (G, n)                    r(x0_hat), through ``decode`` when given
``"twist"``               (G, n)                    h_k, in reward units
``"memory"``              (G, n)                    the potential's running statistic
``"log_correction"``      (G, n)                    guided moves only: log p(x_prev | x_t) - log q(...)
``"reward_grad"``         (G, n, *event)            ``guidance_gradient="denoiser"`` only: grad_x r(x0_hat(x))
========================  ========================  ====================================================

Everything a step computes stays on the state's device: noise comes from the run's generator
(:class:`smckit.random.RNG`, ``like=x``), schedule coefficients are Python floats, and nothing is copied to the
host inside the loop. The samples (``x``, ``eps``, ``x0_hat``) keep the particles' dtype, float16 and bfloat16
included; the rewards, twists and log-potentials are kept in float32 or wider (the reward is called on samples of
the particles' dtype and its answer widened), so half-precision particles never make half-precision weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from smckit.diffusion import conditioning as nests
from smckit.diffusion.denoiser import Denoiser, DenoiserOutput
from smckit.diffusion.potentials import RewardPotential, make_potential
from smckit.diffusion.schedule import NoiseSchedule
from smckit.diffusion.transitions import GRADIENTS, Guided, Transition, make_proposal, wide_dtype
from smckit.errors import BackendError, InvalidArgumentError, ShapeError
from smckit.model import FeynmanKac
from smckit.random import RNG

__all__ = ["RewardSteering"]

Tensor = Any
State = dict[str, Any]


class RewardSteering(FeynmanKac):
    """Steer a diffusion sampler towards ``p(x0) exp(lam r(x0))`` with SMC (see the module notes).

    Parameters
    ----------
    denoiser : Denoiser or callable
        The network, ``(x_t, t, **conditioning) -> output``; a plain callable is wrapped with
        :meth:`Denoiser.wrap` (epsilon prediction unless it has a ``prediction_type`` attribute).
    schedule : NoiseSchedule or FlowSchedule
        Noise levels and sampling timesteps; a :class:`~smckit.diffusion.flow.FlowSchedule` makes a
        flow-matching model (the denoiser predicts the velocity, the default sampler is ``"flow"``).
    reward : callable, optional
        ``reward(x0, **reward_conditioning) -> (B,)`` on a batch ``(B, *event)`` of clean samples (decoded first
        when ``decode`` is given). ``None``: no reward (plain sampling, all potentials zero).
    event_shape : sequence of int
        The shape of one sample, e.g. ``(2,)`` or ``(1, 8, 8)``.
    lam : float
        The strength lambda of the tilt.
    potential : str or RewardPotential
        ``"diff"`` (default), ``"max"``, ``"sum"``, ``"rt"`` or a registered name.
    sampler : str or Transition, optional
        ``"ddpm"`` (the default for a NoiseSchedule), ``"ddim"``, ``"flow"`` (the default for a FlowSchedule) or a
        registered proposal name or transition object of the schedule's kind.
    eta : float
        The stochasticity of ``sampler="ddim"`` or ``"flow"`` (0: deterministic).
    guidance : float, optional
        Use the gradient-guided proposal (:class:`Guided`) with this scale; the importance correction is added
        to the potentials. Needs a differentiable reward (and decode) and a stochastic sampler: guiding a
        deterministic one (DDIM or flow with ``eta = 0``) is an error, as it would do nothing.
    guidance_gradient : {"x0", "denoiser"}
        The gradient of the guided shift: of the reward at ``x0_hat`` (default; the Jacobian of ``x0_hat`` taken
        as the identity), or with respect to ``x_t`` through the denoiser (autograd through the network, in the
        same call as the estimates; the importance correction stays exact).
    deterministic_last_step : bool
        Make the step from the last timestep deterministic (returns its mean). Default False: diffusers'
        behaviour, whose last step is noisy for DDIM with ``set_alpha_to_one=False`` and ``eta > 0``, and for
        DDPM ``fixed_large`` with a last timestep above 0.
    decode : callable, optional
        ``decode(z) -> x`` for latent diffusion: the reward sees ``decode(x0_hat)``.
    chunk_size : int, optional
        At most this many samples per reward (and decode) call.
    denoiser_chunk_size : int, optional
        At most this many samples per denoiser call.
    conditioning : dict, optional
        Keyword arguments of the denoiser. Tensors, at any depth of nested dicts, lists and tuples (SDXL's
        ``added_cond_kwargs``), must have a leading axis of length ``groups``; each chunk of particles gets its
        groups' rows (e.g. ``encoder_hidden_states`` of shape (G, L, D), ``class_labels`` of shape (G,)). They stay
        per group, which resampling within a group leaves valid (see :mod:`smckit.diffusion.conditioning`). Other
        values are passed unchanged.
    reward_conditioning : dict, optional
        The same for the reward (e.g. the target class of each group).
    groups : int
        G, the number of independent populations (the batch axis of the run).
    dtype : torch.dtype, optional
        Of the particles (default: torch's default dtype): float16, bfloat16, float32 or float64. The denoiser is
        called in it; rewards and weights are kept in float32 or wider.
    device : str or torch.device, optional
        Where everything runs (default: the CPU). Conditioning tensors must already live there.

    Attributes
    ----------
    num_steps : int
        ``len(schedule.timesteps) + 1``.
    transition : Transition
        The model's own reverse step.
    proposal : Transition
        What the particles move with (the transition, or the guided one).
    denoiser_calls : int
        Network evaluations made so far, per sample: G * n per timestep, times the denoiser's
        :attr:`~smckit.diffusion.Denoiser.evaluations` (2 under classifier-free guidance), for accounting.

    Raises
    ------
    InvalidArgumentError
        For invalid sizes or options (e.g. guidance without a reward or with a deterministic sampler, a sampler
        or denoiser of another schedule kind).
    BackendError
        For conditioning tensors on another device, or a particle dtype that is not real floating point.

    Examples
    --------
    >>> import torch, smckit
    >>> from smckit.diffusion import GaussianMixture, NoiseSchedule, RewardSteering
    >>> gmm = GaussianMixture([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], 0.25, dtype=torch.float64)
    >>> schedule = NoiseSchedule.linear(num_steps=20)
    >>> model = RewardSteering(gmm.denoiser(schedule), schedule, lambda x: x[:, 0], lam=1.0,
    ...                        event_shape=(2,), groups=2, dtype=torch.float64)
    >>> result = smckit.run(model, 64, seed=0)
    >>> tuple(result.particles["x"].shape), tuple(result.log_weights.shape)
    ((2, 64, 2), (2, 64))
    """

    def __init__(
        self,
        denoiser: Denoiser | Callable[..., Tensor],
        schedule: NoiseSchedule,
        reward: Callable[..., Tensor] | None = None,
        *,
        event_shape: Sequence[int],
        lam: float = 1.0,
        potential: str | RewardPotential = "diff",
        sampler: str | Transition | None = None,
        eta: float = 0.0,
        guidance: float | None = None,
        guidance_gradient: str = "x0",
        deterministic_last_step: bool = False,
        decode: Callable[[Tensor], Tensor] | None = None,
        chunk_size: int | None = None,
        denoiser_chunk_size: int | None = None,
        conditioning: Mapping[str, Any] | None = None,
        reward_conditioning: Mapping[str, Any] | None = None,
        groups: int = 1,
        dtype: Any = None,
        device: Any = None,
    ):
        import torch

        from smckit.diffusion.flow import FlowDenoiser, FlowSchedule

        if not isinstance(schedule, (NoiseSchedule, FlowSchedule)):
            raise InvalidArgumentError(
                f"schedule must be a NoiseSchedule or a FlowSchedule, got {type(schedule).__name__}"
            )
        wrapper = FlowDenoiser if schedule.kind == "flow" else Denoiser
        self.denoiser = wrapper.wrap(denoiser)
        if self.denoiser.kind != schedule.kind:
            raise InvalidArgumentError(
                f"the denoiser {self.denoiser!r} reads {self.denoiser.kind!r} levels but the schedule is "
                f"{schedule.kind!r}; a flow-matching network needs a FlowSchedule and a FlowDenoiser"
            )
        self.schedule = schedule
        self.reward = reward
        self.event_shape = tuple(int(s) for s in event_shape)
        if any(s < 1 for s in self.event_shape):
            raise InvalidArgumentError(f"event_shape must hold positive sizes, got {tuple(event_shape)}")
        self.lam = float(lam)
        if not math.isfinite(self.lam):
            raise InvalidArgumentError(f"lam must be finite, got {lam}")
        self.potential = make_potential(potential)
        if sampler is None:
            sampler = "flow" if schedule.kind == "flow" else "ddpm"
        if isinstance(sampler, str) and sampler in ("ddim", "flow"):
            self.transition = make_proposal(sampler, eta=eta)
        else:
            if eta != 0.0:
                raise InvalidArgumentError("eta applies to sampler='ddim' or 'flow' only")
            self.transition = make_proposal(sampler)
        if self.transition.kind != schedule.kind:
            raise InvalidArgumentError(
                f"the sampler {self.transition!r} steps {self.transition.kind!r} levels but the schedule is "
                f"{schedule.kind!r}"
            )
        self.proposal: Transition = self.transition
        if guidance_gradient not in GRADIENTS:
            raise InvalidArgumentError(f"guidance_gradient must be one of {GRADIENTS}, got {guidance_gradient!r}")
        if guidance is not None and float(guidance) != 0.0:
            if self.transition.needs_gradient:
                raise InvalidArgumentError(f"sampler {self.transition!r} is already guided; do not pass guidance too")
            self.proposal = Guided(self.transition, scale=float(guidance), gradient=guidance_gradient)
        if self.proposal.needs_gradient and reward is None:
            raise InvalidArgumentError(f"the proposal {self.proposal!r} needs a reward to take the gradient of")
        self.deterministic_last_step = bool(deterministic_last_step)
        self.decode = decode
        self.chunk_size = _check_chunk(chunk_size, "chunk_size")
        self.denoiser_chunk_size = _check_chunk(denoiser_chunk_size, "denoiser_chunk_size")
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise InvalidArgumentError(f"groups must be a positive integer, got {groups!r}")
        self.groups = groups
        self.dtype = dtype if dtype is not None else torch.get_default_dtype()
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point or self.dtype.is_complex:
            raise BackendError(
                f"RewardSteering particles need a real floating dtype (float16, bfloat16, float32, float64), got "
                f"{dtype!r}"
            )
        self.device = torch.device(device if device is not None else "cpu")
        self._like = torch.empty(0, dtype=self.dtype, device=self.device)
        self.conditioning = nests.check(conditioning, groups, self.device, "conditioning")
        self.reward_conditioning = nests.check(reward_conditioning, groups, self.device, "reward_conditioning")
        self._rows: dict[tuple[int, int, int], Tensor] = {}
        self.num_steps = len(schedule.timesteps) + 1
        self.denoiser_calls = 0

    # -- the Feynman-Kac model ---------------------------------------------------------------------------
    def initial(self, n: int, rng: RNG) -> State:
        """Draw ``x ~ N(0, I)`` at the first timestep and evaluate the denoiser and the reward there."""
        x = rng.normal((self.groups, int(n), *self.event_shape), like=self._like)
        return self._arrive(0, x, None)

    def propose(self, t: int, state: State, rng: RNG) -> State:
        """Move from level ``t-1`` to level ``t`` (the final level when ``t = S``) and evaluate there.

        Parameters
        ----------
        t : int
            The step, ``1 <= t <= S``.
        state : dict
            The state at level ``t - 1`` (entries of shape (G, n, *event) and (G, n), see the module docstring).
        rng : RNG

        Returns
        -------
        dict
            The state at level ``t``, same entries and shapes (plus ``"log_correction"``, shape (G, n), for a
            guided proposal). One denoiser call (and one reward call) on the G * n particles.

        Raises
        ------
        InvalidArgumentError
            For a step outside ``1 .. S``.
        """
        s = len(self.schedule.timesteps)
        if not 1 <= t <= s:
            raise InvalidArgumentError(f"RewardSteering has steps 0 .. {s}, got propose at step {t}")
        x = state["x"]
        out = DenoiserOutput(state["eps"], state["x0_hat"])
        step = self.proposal.step_at(
            self.schedule, t - 1, x, out, len(self.event_shape), deterministic_last=self.deterministic_last_step
        )
        noise = rng.normal(tuple(x.shape), like=x) if step.std > 0.0 else None
        grad = None
        if self.proposal.needs_gradient and step.std > 0.0:
            through = self.proposal.gradient == "denoiser"
            grad = state["reward_grad"] if through else self._reward_gradient(state["x0_hat"])
        x_new, correction = self.proposal.propose(step, noise, grad, self.schedule.landing(t - 1))
        new = self._arrive(t, x_new, state)
        if self.proposal.has_correction:
            new["log_correction"] = correction if correction is not None else new["twist"].new_zeros(new["twist"].shape)
        return new

    def log_potential(self, t: int, prev: State | None, state: State) -> Tensor:
        """``lam (h_t - h_{t-1})`` (``lam h_0`` at step 0), plus the guided move's importance correction.

        Parameters
        ----------
        t : int
            The step.
        prev : dict or None
            The state at step ``t - 1`` (``None`` at step 0).
        state : dict
            The state at step ``t``.

        Returns
        -------
        tensor, shape (G, n)
        """
        log_g = self.lam * state["twist"] if prev is None else self.lam * (state["twist"] - prev["twist"])
        correction = state.get("log_correction")
        return log_g if correction is None else log_g + correction

    def rebirth(self, t: int, state: State, mask: Tensor, scale: float, rng: RNG) -> State:
        """Re-noise reborn particles consistently with the schedule (Fleming-Viot rebirth noise).

        At the level of the state (that of step ``t - 1``), where ``x = alpha x0 + sigma eps`` (``alpha =
        sqrt(abar)``, ``sigma = sqrt(1 - abar)``; ``1 - s`` and ``s`` for a flow), a reborn particle keeps its
        ``x0_hat`` and its implied noise ``e = (x - alpha x0_hat) / sigma`` is mixed with fresh noise ``xi``:
        ``x <- alpha x0_hat + sigma (sqrt(1 - scale^2) e + scale xi)``, as DDIM's eta mixes noise. If
        ``x0_hat`` and ``e`` were an independent clean sample and standard noise, the marginal at that level
        would be unchanged. ``x0_hat``, the reward and the twist stay (nothing is re-evaluated); the stored noise
        estimate moves with ``x``. The weights are not corrected: with ``scale > 0`` this is the FVD heuristic,
        not an exact move; ``scale = 0`` returns the state unchanged, so clones stay identical.

        Parameters
        ----------
        t : int
            The step about to propose (the state is at level ``t - 1``).
        state : dict
        mask : bool tensor, shape (G, n)
            The reborn particles.
        scale : float
            In [0, 1].
        rng : RNG

        Returns
        -------
        dict, the state with ``x`` and ``eps`` replaced at the masked particles
        """
        scale = float(scale)
        if not 0.0 <= scale <= 1.0:
            raise InvalidArgumentError(f"rebirth noise scale must be in [0, 1], got {scale}")
        if scale == 0.0:
            return state
        if not 1 <= t <= len(self.schedule.timesteps):
            raise InvalidArgumentError(f"rebirth at step {t}: the state must be at a noisy level")
        sa, sb = self.schedule.coefficients(self.schedule.level(t - 1))
        x, x0_hat, eps = state["x"], state["x0_hat"], state["eps"]
        implied = (x - sa * x0_hat) / sb
        fresh = rng.normal(tuple(x.shape), like=x)
        mixed = math.sqrt(1.0 - scale * scale) * implied + scale * fresh
        m = mask.reshape(tuple(mask.shape) + (1,) * len(self.event_shape))
        new = dict(state)
        new["x"] = (sa * x0_hat + sb * mixed).where(m, x)
        new["eps"] = (eps + (mixed - implied)).where(m, eps)
        return new

    # -- evaluation at one level ---------------------------------------------------------------------------
    def _arrive(self, i: int, x: Tensor, prev: State | None) -> State:
        """The state at level ``i`` for the points ``x``: denoiser estimates, reward, twist."""
        s = len(self.schedule.timesteps)
        through = self.proposal.needs_gradient and self.proposal.gradient == "denoiser"
        extra: State = {}
        if i == s:
            eps, x0_hat = x.new_zeros(x.shape), x
            reward = self._reward(x0_hat)
            if through:
                extra["reward_grad"] = x.new_zeros(x.shape)
        elif through:
            out, reward, extra["reward_grad"] = self._denoise_with_gradient(i, x)
            eps, x0_hat = out.eps, out.x0_hat
        else:
            out = self._denoise(i, x)
            eps, x0_hat = out.eps, out.x0_hat
            reward = self._reward(x0_hat)
        if prev is None:
            twist, memory = self.potential.initial(reward)
        else:
            twist, memory = self.potential.update(reward, prev["twist"], prev["memory"])
            if i == s:
                twist = reward  # the final twist is r(x0) for every potential: the target is exact
        state = {"x": x, "eps": eps, "x0_hat": x0_hat, "reward": reward, "twist": twist, "memory": memory, **extra}
        if prev is None and self.proposal.has_correction:
            state["log_correction"] = reward.new_zeros(reward.shape)
        return state

    def _denoise(self, i: int, x: Tensor) -> DenoiserOutput:
        import torch

        g, n = x.shape[0], x.shape[1]
        t = self.schedule.timesteps[i]
        level = self.schedule.level(i)
        flat = x.reshape(g * n, *self.event_shape)
        eps_parts, x0_parts = [], []
        with torch.no_grad():
            for lo, hi in _chunks(g * n, self.denoiser_chunk_size):
                out = self.denoiser(flat[lo:hi], t, level, **self._chunk_conditioning(self.conditioning, n, lo, hi))
                eps_parts.append(out.eps)
                x0_parts.append(out.x0_hat)
        self.denoiser_calls += g * n * self.denoiser.evaluations
        eps, x0_hat = _cat(eps_parts), _cat(x0_parts)
        return DenoiserOutput(eps.reshape(x.shape), x0_hat.reshape(x.shape))

    def _denoise_with_gradient(self, i: int, x: Tensor) -> tuple[DenoiserOutput, Tensor, Tensor]:
        """The estimates at level ``i``, their reward, and ``grad_x r(decode(x0_hat(x)))`` through the network."""
        import torch

        g, n = x.shape[0], x.shape[1]
        t = self.schedule.timesteps[i]
        level = self.schedule.level(i)
        flat = x.reshape(g * n, *self.event_shape)
        eps_parts, x0_parts, reward_parts, grad_parts = [], [], [], []
        with torch.enable_grad():
            for lo, hi in _chunks(g * n, self.denoiser_chunk_size):
                chunk = flat[lo:hi].detach().requires_grad_(True)
                out = self.denoiser(chunk, t, level, **self._chunk_conditioning(self.conditioning, n, lo, hi))
                r = self._call_reward(out.x0_hat, self._chunk_conditioning(self.reward_conditioning, n, lo, hi))
                (grad,) = torch.autograd.grad(r.sum(), chunk)
                eps_parts.append(out.eps.detach())
                x0_parts.append(out.x0_hat.detach())
                reward_parts.append(r.detach())
                grad_parts.append(grad.detach())
        self.denoiser_calls += g * n * self.denoiser.evaluations
        out = DenoiserOutput(_cat(eps_parts).reshape(x.shape), _cat(x0_parts).reshape(x.shape))
        return out, _cat(reward_parts).reshape(g, n), _cat(grad_parts).reshape(x.shape)

    def _reward(self, x0: Tensor) -> Tensor:
        import torch

        g, n = x0.shape[0], x0.shape[1]
        if self.reward is None:
            return x0.new_zeros((g, n), dtype=wide_dtype(x0))
        flat = x0.reshape(g * n, *self.event_shape)
        parts = []
        with torch.no_grad():
            for lo, hi in _chunks(g * n, self.chunk_size):
                cond = self._chunk_conditioning(self.reward_conditioning, n, lo, hi)
                parts.append(self._call_reward(flat[lo:hi], cond))
        return _cat(parts).reshape(g, n)

    def _reward_gradient(self, x0: Tensor) -> Tensor:
        """``grad_x0 r(decode(x0))`` at every particle, shape (G, n, *event)."""
        import torch

        g, n = x0.shape[0], x0.shape[1]
        flat = x0.reshape(g * n, *self.event_shape)
        parts = []
        with torch.enable_grad():
            for lo, hi in _chunks(g * n, self.chunk_size):
                chunk = flat[lo:hi].detach().requires_grad_(True)
                r = self._call_reward(chunk, self._chunk_conditioning(self.reward_conditioning, n, lo, hi))
                (grad,) = torch.autograd.grad(r.sum(), chunk)
                parts.append(grad.detach())
        return _cat(parts).reshape(x0.shape)

    def _call_reward(self, x0: Tensor, cond: dict[str, Any]) -> Tensor:
        import torch

        assert self.reward is not None
        decoded = self.decode(x0) if self.decode is not None else x0
        r = self.reward(decoded, **cond)
        if not hasattr(r, "shape") or tuple(r.shape) != (x0.shape[0],):
            shape = tuple(r.shape) if hasattr(r, "shape") else type(r).__name__
            raise ShapeError(
                f"the reward returned {shape} for a batch of {x0.shape[0]} samples; expected ({x0.shape[0]},)"
            )
        if r.device != x0.device:
            raise BackendError(f"the reward returned a tensor on {r.device} for samples on {x0.device}")
        if not r.dtype.is_floating_point:
            raise BackendError(f"the reward returned {r.dtype}; it must return floating-point numbers")
        return r.to(torch.promote_types(r.dtype, wide_dtype(x0)))  # weights never in half precision

    # -- conditioning ----------------------------------------------------------------------------------
    def _chunk_conditioning(self, cond: dict[str, Any], n: int, lo: int, hi: int) -> dict[str, Any]:
        """The conditioning of the flattened particles ``lo .. hi-1`` (of ``G * n``): each its group's rows."""
        if not nests.tensors(cond):
            return cond
        key = (n, lo, hi)
        rows = self._rows.get(key)
        if rows is None:
            import torch

            rows = self._rows[key] = torch.arange(lo, hi, device=self.device) // n
        return nests.gather(cond, rows)

    def __repr__(self) -> str:
        return (
            f"RewardSteering({self.proposal!r}, potential={self.potential.name!r}, lam={self.lam:g}, "
            f"steps={self.num_steps}, groups={self.groups}, event_shape={self.event_shape})"
        )


# -- helpers --------------------------------------------------------------------------------------------------
def _check_chunk(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer or None, got {value!r}")
    return value


def _chunks(total: int, size: int | None) -> list[tuple[int, int]]:
    step = total if size is None else size
    return [(lo, min(lo + step, total)) for lo in range(0, total, step)]


def _cat(parts: list[Tensor]) -> Tensor:
    if len(parts) == 1:
        return parts[0]
    import torch

    return torch.cat(parts, dim=0)
