"""The diffusion adapter: steer a diffusion model with SMC as a Feynman-Kac model.

A diffusion model becomes a Feynman-Kac model whose final target is ``p_theta(x0) exp(lam r(x0))``:

- :class:`NoiseSchedule`: ``alphas_cumprod`` and the descending list of sampling timesteps, built directly
  (:meth:`NoiseSchedule.linear`, :meth:`NoiseSchedule.cosine`) or read from a diffusers ``DDPMScheduler`` /
  ``DDIMScheduler`` and their parallel variants (:meth:`NoiseSchedule.from_diffusers`), stepping exactly as
  diffusers does (DDIM's stride rule included; ``previous="list"`` to step to the next visited timestep);
- :class:`Denoiser`: any callable ``(x_t, t, **conditioning) -> output`` with ``prediction_type`` epsilon,
  sample or v_prediction, turned into the noise estimate and the Tweedie estimate ``x0_hat`` (optionally
  clipped or thresholded, consistently for the mean, the reward and the log-density);
  :meth:`Denoiser.from_unet` wraps diffusers ``UNet2DModel`` and ``UNet2DConditionModel``;
- :class:`DDPM` and :class:`DDIM`: the Gaussian reverse steps (mean, std, ``x0_hat``, ``log_prob``), with
  diffusers' last step (or a deterministic one, as an option); :class:`Guided` shifts a stochastic step's mean
  along the reward gradient (at ``x0_hat``, or through the denoiser);
- :class:`RewardSteering`: the Feynman-Kac model (state ``{"x", "eps", "x0_hat", "reward", ...}`` of shape
  ``(groups, particles, *event)``), with the reward potentials ``diff``, ``max``, ``sum`` and ``rt``
  (:mod:`smckit.diffusion.potentials`), optional ``decode`` for latent diffusion, chunked reward calls, and
  schedule-consistent rebirth noise for Fleming-Viot resampling;
- :class:`FlowSchedule`, :class:`FlowDenoiser`, :class:`FlowStep` (:mod:`smckit.diffusion.flow`): flow-matching
  models (``x_s = (1 - s) x0 + s eps``, velocity prediction), read from ``FlowMatchEulerDiscreteScheduler`` or built
  directly, with a stochastic step of exact Gaussian log-density; :class:`RewardSteering` takes them as it takes
  the diffusion ones;
- :func:`from_pipeline` (:mod:`smckit.diffusion.pipeline`): a diffusers text-to-image pipeline (Stable Diffusion
  1.x/2.x, SDXL, SD3) as a :class:`PipelineSteering` model, one group per prompt, with classifier-free guidance
  batched in one network call, chunked VAE decoding for the reward, and the images returned as the pipeline returns
  them; :func:`from_class_conditional` does the same for class-conditional networks; reward models are in
  :mod:`smckit.diffusion.rewards`, tiny offline pipelines for tests and examples in :mod:`smckit.diffusion.tiny`;
- :class:`GaussianMixture`: an analytic Gaussian-mixture diffusion with an exact denoiser, whose tilt by a
  linear reward is again a Gaussian mixture in closed form (a ground truth for tests).

Importing :mod:`smckit.diffusion` does not import torch: the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from smckit.diffusion.denoiser import Denoiser, DenoiserOutput
    from smckit.diffusion.flow import FlowDenoiser, FlowSchedule, FlowStep
    from smckit.diffusion.gmm import GaussianMixture, component_masses, linear_reward
    from smckit.diffusion.pipeline import (
        ClassifierFreeGuidance,
        PipelineSteering,
        SteeredImages,
        from_class_conditional,
        from_pipeline,
    )
    from smckit.diffusion.potentials import (
        DiffPotential,
        MaxPotential,
        RewardPotential,
        RtPotential,
        SumPotential,
        make_potential,
    )
    from smckit.diffusion.schedule import NoiseSchedule
    from smckit.diffusion.steering import RewardSteering
    from smckit.diffusion.transitions import DDIM, DDPM, GaussianStep, Guided, Transition, make_proposal

__all__ = [
    "NoiseSchedule",
    "Denoiser",
    "DenoiserOutput",
    "Transition",
    "GaussianStep",
    "DDPM",
    "DDIM",
    "Guided",
    "make_proposal",
    "FlowSchedule",
    "FlowDenoiser",
    "FlowStep",
    "RewardPotential",
    "DiffPotential",
    "MaxPotential",
    "SumPotential",
    "RtPotential",
    "make_potential",
    "RewardSteering",
    "GaussianMixture",
    "component_masses",
    "linear_reward",
    "from_pipeline",
    "from_class_conditional",
    "PipelineSteering",
    "SteeredImages",
    "ClassifierFreeGuidance",
    "RewardLookahead",
    "SoftValueDecoding",
]

_WHERE = {
    "NoiseSchedule": "schedule",
    "Denoiser": "denoiser",
    "DenoiserOutput": "denoiser",
    "Transition": "transitions",
    "GaussianStep": "transitions",
    "DDPM": "transitions",
    "DDIM": "transitions",
    "Guided": "transitions",
    "make_proposal": "transitions",
    "FlowSchedule": "flow",
    "FlowDenoiser": "flow",
    "FlowStep": "flow",
    "RewardPotential": "potentials",
    "DiffPotential": "potentials",
    "MaxPotential": "potentials",
    "SumPotential": "potentials",
    "RtPotential": "potentials",
    "make_potential": "potentials",
    "RewardSteering": "steering",
    "GaussianMixture": "gmm",
    "component_masses": "gmm",
    "linear_reward": "gmm",
    "from_pipeline": "pipeline",
    "from_class_conditional": "pipeline",
    "PipelineSteering": "pipeline",
    "SteeredImages": "pipeline",
    "ClassifierFreeGuidance": "pipeline",
    "RewardLookahead": "lookahead",
    "SoftValueDecoding": "value",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'smckit.diffusion' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"smckit.diffusion.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
