"""Diffusers pipelines as Feynman-Kac models: text-to-image and class-conditional steering.

:func:`from_pipeline` reads a diffusers text-to-image pipeline (the Stable Diffusion 1.x/2.x, SDXL and SD3
families) and returns a :class:`PipelineSteering`, a :class:`~smckit.diffusion.RewardSteering` whose groups are the
prompts (each prompt one independent population of particles). It takes from the pipeline, without copying its code:

- the prompt encoding, once per group, through the pipeline's own ``encode_prompt`` (negative prompts, ``clip_skip``,
  SDXL's pooled embeddings and ``_get_add_time_ids``, SD3's two encoders), or the embeddings given;
- the network (``unet`` or SD3's ``transformer``) and its timestep convention;
- the scheduler (copied, never modified): DDPM, DDIM (the pipeline's or ``scheduler="ddim"``) and flow matching, read
  by :meth:`~smckit.diffusion.NoiseSchedule.from_diffusers` or
  :meth:`~smckit.diffusion.flow.FlowSchedule.from_diffusers`, with their exact Gaussian step;
- the VAE, whose decoder turns latents into images for the reward, in chunks, as the pipeline decodes them
  (scaling and shift factors, SDXL's latent statistics and float16 upcast), and the image processor, which turns
  the final particles into what the pipeline returns (PIL images, arrays or tensors).

Classifier-free guidance (:class:`ClassifierFreeGuidance`) runs the conditional and the unconditional branch in
one network call on a doubled batch and combines them as diffusers does, ``u + w (c - u)``, with guidance rescale
(Lin et al., 2024, section 3.4). It counts as two network evaluations per particle in ``model.denoiser_calls``.

The conditioning (nested dicts included, e.g. ``added_cond_kwargs``) stays per group in the model: resampling acts
within a group, so it remains right for every particle (:mod:`smckit.diffusion.conditioning`). Everything runs on
the pipeline's device and in its network's dtype; nothing is copied to the host in the loop (a host-side scorer
such as :class:`~smckit.diffusion.rewards.ScoreReward` is the one exception, by its nature).

:func:`from_class_conditional` is the sibling for class-conditional networks (``class_labels``, as in the FVD
paper's MNIST and CIFAR-10 settings): one group per class, classifier-free guidance against a null class, a pixel
or latent model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smckit.diffusion import conditioning as nests
from smckit.diffusion._deps import require
from smckit.diffusion.denoiser import Denoiser, scheduler_options
from smckit.diffusion.steering import RewardSteering, _cat, _chunks
from smckit.errors import InvalidArgumentError, ShapeError

__all__ = [
    "from_pipeline",
    "from_class_conditional",
    "PipelineSteering",
    "SteeredImages",
    "ClassifierFreeGuidance",
    "Conditional",
    "LatentDecoder",
    "PixelDecoder",
    "rescale_guidance",
    "family_of",
    "PIPELINE_FAMILIES",
]

Tensor = Any
PIPELINE_FAMILIES = ("sd", "sdxl", "sd3")
"""The text-to-image families :func:`from_pipeline` reads."""
DEFAULT_GUIDANCE = {"sd": 7.5, "sdxl": 5.0, "sd3": 7.0}
"""The pipelines' own default guidance scales."""


# -- the network under guidance ----------------------------------------------------------------------------------
def rescale_guidance(guided: Tensor, conditional: Tensor, rescale: float) -> Tensor:
    """Guidance rescale (Lin et al., 2024, section 3.4): match the guided output's spread to the conditional one's.

    ``guided * std(c) / std(guided)`` per sample (standard deviations over all but the batch axis), mixed with the
    unrescaled output: ``rescale * rescaled + (1 - rescale) * guided``.

    Parameters
    ----------
    guided : tensor, shape (B, *event)
        The classifier-free-guided output.
    conditional : tensor, shape (B, *event)
        The conditional branch's output.
    rescale : float
        In [0, 1].

    Returns
    -------
    tensor, shape (B, *event)
    """
    dims = list(range(1, guided.ndim))
    ratio = conditional.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
    return rescale * (guided * ratio) + (1.0 - rescale) * guided


class ClassifierFreeGuidance:
    """A conditional network under classifier-free guidance, both branches in one batched call.

    Parameters
    ----------
    network : callable
        ``network(x, t, **conditioning) -> output`` on a batch of shape (B, *event).
    scale : float
        The guidance scale ``w``: the output is ``u + w (c - u)`` (``w = 1``: the conditional output).
    rescale : float
        Guidance rescale in [0, 1] (:func:`rescale_guidance`); 0 turns it off.

    Attributes
    ----------
    evaluations : int
        2: each call evaluates the network on both branches of every sample.

    Examples
    --------
    >>> import torch
    >>> from smckit.diffusion.pipeline import ClassifierFreeGuidance
    >>> net = lambda x, t, shift: x + shift[:, None]
    >>> cfg = ClassifierFreeGuidance(net, 3.0)
    >>> x = torch.zeros(2, 1)
    >>> cfg(x, 0, cond={"shift": torch.ones(2)}, uncond={"shift": torch.zeros(2)}).tolist()
    [[3.0], [3.0]]
    """

    evaluations = 2

    def __init__(self, network: Callable[..., Tensor], scale: float, rescale: float = 0.0):
        if not callable(network):
            raise InvalidArgumentError(f"the network must be callable, got {network!r}")
        if not math.isfinite(float(scale)):
            raise InvalidArgumentError(f"the guidance scale must be finite, got {scale}")
        if not 0.0 <= float(rescale) <= 1.0:
            raise InvalidArgumentError(f"guidance_rescale must be in [0, 1], got {rescale}")
        self.network = network
        self.scale = float(scale)
        self.rescale = float(rescale)

    def __call__(self, x: Tensor, t: Any, *, cond: Mapping[str, Any], uncond: Mapping[str, Any]) -> Tensor:
        """The guided output at ``x``.

        Parameters
        ----------
        x : tensor, shape (B, *event)
        t : int or float
            The network time.
        cond, uncond : dict
            The two branches' conditioning, tensors with B rows each.

        Returns
        -------
        tensor, shape (B, *event)
        """
        import torch

        both = nests.concat(uncond, cond)
        out = self.network(torch.cat([x, x]), t, **both)
        u, c = out.chunk(2)
        guided = u + self.scale * (c - u)
        return rescale_guidance(guided, c, self.rescale) if self.rescale > 0.0 else guided

    def __repr__(self) -> str:
        rescale = f", rescale={self.rescale:g}" if self.rescale else ""
        return f"ClassifierFreeGuidance(scale={self.scale:g}{rescale})"


class Conditional:
    """A conditional network without guidance, called as :class:`ClassifierFreeGuidance` is (one evaluation).

    Parameters
    ----------
    network : callable
        ``network(x, t, **conditioning) -> output``.
    """

    evaluations = 1

    def __init__(self, network: Callable[..., Tensor]):
        self.network = network

    def __call__(self, x: Tensor, t: Any, *, cond: Mapping[str, Any]) -> Tensor:
        """``network(x, t, **cond)``; ``x`` of shape (B, *event), the output of the same shape.

        Parameters
        ----------
        x : tensor, shape (B, *event)
        t : int or float
        cond : dict

        Returns
        -------
        tensor, shape (B, *event)
        """
        return self.network(x, t, **cond)

    def __repr__(self) -> str:
        return "Conditional()"


def _unet_network(unet: Any) -> Callable[..., Tensor]:
    """``unet(x, t, **c).sample`` with the timestep as a device tensor, as the pipelines pass it (no host copy)."""
    import torch

    def call(x: Tensor, t: Any, **c: Any) -> Tensor:
        step = torch.full((), t, dtype=torch.int64 if isinstance(t, int) else torch.float32, device=x.device)
        return unet(x, step, **c, return_dict=False)[0]

    call.__qualname__ = type(unet).__name__
    return call


def _transformer_network(transformer: Any) -> Callable[..., Tensor]:
    """SD3's ``transformer(hidden_states=x, timestep=t expanded to the batch, **c)``."""
    import torch

    def call(x: Tensor, t: Any, **c: Any) -> Tensor:
        step = torch.full((x.shape[0],), float(t), dtype=torch.float32, device=x.device)
        return transformer(hidden_states=x, timestep=step, **c, return_dict=False)[0]

    call.__qualname__ = type(transformer).__name__
    return call


# -- decoding ----------------------------------------------------------------------------------------------------
class LatentDecoder:
    """Latents to images in [0, 1] through a diffusers VAE, as the pipelines decode them.

    ``z / scaling_factor + shift_factor`` (SD3's shift; 0 when the config has none), or ``z * latents_std /
    scaling_factor + latents_mean`` when the config has latent statistics (SDXL variants); then ``vae.decode``,
    whose output in [-1, 1] is mapped to [0, 1].

    Parameters
    ----------
    vae : diffusers.AutoencoderKL
    upcast : bool
        Decode a float16 VAE whose config sets ``force_upcast`` in float32, as the SDXL pipeline does (with a
        float32 copy of the VAE made once, on first use).

    Examples
    --------
    >>> from smckit.diffusion.tiny import tiny_pipeline
    >>> from smckit.diffusion.pipeline import LatentDecoder
    >>> import torch
    >>> decode = LatentDecoder(tiny_pipeline("sd").vae)
    >>> decode(torch.zeros(2, 4, 8, 8)).shape
    torch.Size([2, 3, 16, 16])
    """

    def __init__(self, vae: Any, *, upcast: bool = False):
        import torch

        config = vae.config
        self.vae = vae
        self.scaling_factor = float(config.scaling_factor)
        self.shift_factor = float(config.get("shift_factor") or 0.0)
        mean, std = config.get("latents_mean"), config.get("latents_std")
        self.statistics = None if mean is None or std is None else (tuple(mean), tuple(std))
        self.upcast = bool(upcast and vae.dtype == torch.float16 and config.get("force_upcast", False))
        self._wide_vae: Any = None

    def _module(self) -> Any:
        if not self.upcast:
            return self.vae
        if self._wide_vae is None:
            import torch

            self._wide_vae = copy.deepcopy(self.vae).to(torch.float32)
        return self._wide_vae

    def raw(self, z: Tensor) -> Tensor:
        """The VAE's images in [-1, 1], shape (B, 3, H, W), from latents of shape (B, C, h, w).

        Parameters
        ----------
        z : tensor, shape (B, C, h, w)

        Returns
        -------
        tensor, shape (B, 3, H, W), in the VAE's dtype
        """
        import torch

        vae = self._module()
        z = z.to(vae.dtype)
        if self.statistics is not None:
            mean, std = (torch.tensor(s, dtype=z.dtype, device=z.device).reshape(1, -1, 1, 1) for s in self.statistics)
            z = z * std / self.scaling_factor + mean
        else:
            z = z / self.scaling_factor + self.shift_factor
        return vae.decode(z, return_dict=False)[0]

    def __call__(self, z: Tensor) -> Tensor:
        """Images in [0, 1], shape (B, 3, H, W), differentiable in ``z``.

        Parameters
        ----------
        z : tensor, shape (B, C, h, w)

        Returns
        -------
        tensor, shape (B, 3, H, W)
        """
        return (self.raw(z) / 2 + 0.5).clamp(0, 1)

    def __repr__(self) -> str:
        return f"LatentDecoder({type(self.vae).__name__}, scaling={self.scaling_factor:g})"


class PixelDecoder:
    """A pixel-space model's samples in [-1, 1] as images in [0, 1] (no VAE)."""

    def raw(self, x: Tensor) -> Tensor:
        """``x`` itself (the model's space, [-1, 1]); shape (B, C, H, W).

        Parameters
        ----------
        x : tensor, shape (B, C, H, W)

        Returns
        -------
        tensor, shape (B, C, H, W)
        """
        return x

    def __call__(self, x: Tensor) -> Tensor:
        """``clamp((x + 1) / 2, 0, 1)``, shape (B, C, H, W).

        Parameters
        ----------
        x : tensor, shape (B, C, H, W)

        Returns
        -------
        tensor, shape (B, C, H, W)
        """
        return (x / 2 + 0.5).clamp(0, 1)

    def __repr__(self) -> str:
        return "PixelDecoder()"


# -- the model ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SteeredImages:
    """The final particles as images, with their weights.

    Attributes
    ----------
    images : list of lists of PIL images, numpy array or tensor
        Per group, as the pipeline returns them: ``output_type="pil"``: G lists of n images; ``"np"``: an array of
        shape (G, n, H, W, C); ``"pt"``: a tensor of shape (G, n, C, H, W); ``"latent"``: the latents (G, n, ...).
    weights : tensor, shape (G, n)
        The normalised importance weights of each group's images (sum 1 per group).
    log_weights : tensor, shape (G, n)
        The unnormalised log-weights as the run returned them.
    rewards : tensor, shape (G, n)
        The reward of each final image.
    labels : list
        The groups' prompts or classes.
    """

    images: Any
    weights: Tensor
    log_weights: Tensor
    rewards: Tensor
    labels: list[Any]


class PipelineSteering(RewardSteering):
    """A :class:`~smckit.diffusion.RewardSteering` built from a pipeline's parts, that returns images.

    Built by :func:`from_pipeline` or :func:`from_class_conditional`; the parameters are
    :class:`~smckit.diffusion.RewardSteering`'s, plus:

    Parameters
    ----------
    *args, **options
        As for :class:`~smckit.diffusion.RewardSteering`.
    labels : list
        The groups' prompts or classes.
    decoder : LatentDecoder or PixelDecoder
        Latents to images (what the reward sees, and :meth:`images` returns).
    image_processor : diffusers VaeImageProcessor, optional
        Formats the final images as the pipeline does; default :func:`smckit.diffusion.rewards.to_images`.
    family : str
        ``"sd"``, ``"sdxl"``, ``"sd3"`` or ``"class"``.

    Attributes
    ----------
    labels : list
    decoder : LatentDecoder or PixelDecoder
    family : str
    network : ClassifierFreeGuidance or Conditional
        The network as the denoiser calls it.
    """

    def __init__(
        self,
        *args: Any,
        labels: Sequence[Any],
        decoder: Any,
        image_processor: Any = None,
        family: str = "sd",
        **options: Any,
    ):
        super().__init__(*args, **options)
        self.labels = list(labels)
        self.decoder = decoder
        self.image_processor = image_processor
        self.family = family
        self.network = self.denoiser.fn

    def images(self, result: Any, output_type: str = "pil") -> SteeredImages:
        """Decode the final particles of a run (in chunks of ``chunk_size``) into images, with their weights.

        Parameters
        ----------
        result : smckit.Result or smckit.Step
            Its particles (``result.particles`` or ``step.state``), dict with ``"x"`` of shape (G, n, *event), and
            its ``log_weights``, shape (G, n).
        output_type : {"pil", "np", "pt", "latent"}
            As the pipeline's ``output_type``.

        Returns
        -------
        SteeredImages

        Raises
        ------
        InvalidArgumentError
            For an unknown output type.
        ShapeError
            For particles of another shape than this model's.
        """
        import torch

        if output_type not in ("pil", "np", "pt", "latent"):
            raise InvalidArgumentError(f"output_type must be 'pil', 'np', 'pt' or 'latent', got {output_type!r}")
        state = result.particles if hasattr(result, "particles") else result.state
        x, log_w = state["x"], result.log_weights
        g, n = x.shape[0], x.shape[1]
        if g != self.groups or tuple(x.shape[2:]) != self.event_shape:
            raise ShapeError(
                f"particles of shape {tuple(x.shape)} do not belong to this model ({self.groups} groups, event "
                f"shape {self.event_shape})"
            )
        weights = torch.softmax(log_w.to(torch.promote_types(log_w.dtype, torch.float32)), dim=-1)
        if output_type == "latent":
            return SteeredImages(x, weights, log_w, state["reward"], self.labels)
        flat = x.reshape(g * n, *self.event_shape)
        with torch.no_grad():
            raw = _cat([self.decoder.raw(flat[lo:hi]) for lo, hi in _chunks(g * n, self.chunk_size)])
        if self.image_processor is not None:
            images = self.image_processor.postprocess(raw, output_type=output_type)
        else:
            from smckit.diffusion.rewards import to_images

            images = to_images((raw / 2 + 0.5).clamp(0, 1), output_type)
        if output_type == "pil":
            grouped: Any = [images[i * n : (i + 1) * n] for i in range(g)]
        else:
            grouped = images.reshape(g, n, *images.shape[1:])
        return SteeredImages(grouped, weights, log_w, state["reward"], self.labels)

    def __repr__(self) -> str:
        return (
            f"PipelineSteering({self.family}, {self.network!r}, {self.proposal!r}, potential={self.potential.name!r}, "
            f"lam={self.lam:g}, steps={self.num_steps}, groups={self.groups}, event_shape={self.event_shape})"
        )


# -- the entry points --------------------------------------------------------------------------------------------
def family_of(pipe: Any) -> str:
    """``"sd"``, ``"sdxl"`` or ``"sd3"``: the family of a diffusers text-to-image pipeline, read from its parts.

    Parameters
    ----------
    pipe : diffusers pipeline

    Returns
    -------
    str

    Raises
    ------
    InvalidArgumentError
        For a pipeline with neither a conditional UNet nor an SD3 transformer.
    """
    transformer = getattr(pipe, "transformer", None)
    if transformer is not None and "pooled_projection_dim" in transformer.config:
        return "sd3"
    unet = getattr(pipe, "unet", None)
    if unet is not None and "cross_attention_dim" in unet.config and hasattr(pipe, "encode_prompt"):
        return "sdxl" if unet.config.get("addition_embed_type") == "text_time" else "sd"
    raise InvalidArgumentError(
        f"{type(pipe).__name__} is not a text-to-image pipeline smckit reads (Stable Diffusion 1.x/2.x, SDXL, SD3); "
        "a class-conditional UNet goes through from_class_conditional"
    )


def _scheduler(pipe_scheduler: Any, choice: Any) -> Any:
    """A fresh scheduler (the pipeline's is never modified): a copy of the pipeline's, or the one asked for."""
    if choice is None:
        return type(pipe_scheduler).from_config(pipe_scheduler.config)
    if isinstance(choice, str):
        require("diffusers", "diffusion")
        import diffusers

        names = {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler", "flow": "FlowMatchEulerDiscreteScheduler"}
        if choice not in names:
            raise InvalidArgumentError(f"scheduler must be one of {sorted(names)} or a scheduler, got {choice!r}")
        return getattr(diffusers, names[choice]).from_config(pipe_scheduler.config)
    return type(choice).from_config(choice.config)


def _schedule(scheduler: Any, num_inference_steps: int, *, mu: float | None, previous: str | None, eta: float) -> Any:
    """The smckit schedule and transition of a scheduler after ``set_timesteps``."""
    from smckit.diffusion.flow import FlowSchedule
    from smckit.diffusion.schedule import NoiseSchedule, scheduler_kind
    from smckit.diffusion.transitions import from_diffusers

    kind = scheduler_kind(scheduler)
    if kind == "flow":
        if mu is None and scheduler.config.get("use_dynamic_shifting", False):
            raise InvalidArgumentError("the scheduler uses dynamic shifting: pass mu (the pipeline computes it)")
        scheduler.set_timesteps(int(num_inference_steps), **({} if mu is None else {"mu": float(mu)}))
        schedule: Any = FlowSchedule.from_diffusers(scheduler)
    else:
        scheduler.set_timesteps(int(num_inference_steps))
        schedule = NoiseSchedule.from_diffusers(scheduler, previous=previous)
    sigma = float(getattr(scheduler, "init_noise_sigma", 1.0))
    if sigma != 1.0:
        raise InvalidArgumentError(f"{type(scheduler).__name__} starts from noise of scale {sigma}, not 1")
    return schedule, from_diffusers(scheduler, eta)


def _prepare_reward(reward: Any, labels: Sequence[Any], device: Any, guidance: Any) -> dict[str, Any]:
    if reward is None:
        return {}
    if not callable(reward):
        raise InvalidArgumentError(f"the reward must be callable as reward(images, **conditioning), got {reward!r}")
    if guidance and not getattr(reward, "differentiable", True):
        raise InvalidArgumentError(
            f"gradient guidance needs a differentiable reward, and {type(reward).__name__} declares it is not "
            "(a host-side scorer): steer by resampling only (guidance=None)"
        )
    prepare = getattr(reward, "prepare", None)
    return dict(prepare(list(labels), device=device)) if prepare is not None else {}


def _encode(pipe: Any, family: str, prompts: Any, cfg: bool, device: Any, options: dict[str, Any]) -> tuple:
    """The per-group conditional and unconditional network inputs, from the pipeline's ``encode_prompt``."""
    embeds = {k: options.pop(k) for k in list(options) if k.endswith("_embeds")}
    negative = options.pop("negative_prompt")
    if family == "sd":
        pe, ne = pipe.encode_prompt(prompts, device, 1, cfg, negative, clip_skip=options.pop("clip_skip"), **embeds)
        return {"encoder_hidden_states": pe}, ({"encoder_hidden_states": ne} if cfg else None)
    if family == "sdxl":
        pe, ne, pp, npool = pipe.encode_prompt(
            prompt=prompts,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=cfg,
            negative_prompt=negative,
            clip_skip=options.pop("clip_skip"),
            **embeds,
        )
        size = options.pop("size")
        original = tuple(options.pop("original_size") or size)
        target = tuple(options.pop("target_size") or size)
        crops = tuple(options.pop("crops_coords_top_left"))
        projection = int(pp.shape[-1]) if pipe.text_encoder_2 is None else pipe.text_encoder_2.config.projection_dim
        ids = pipe._get_add_time_ids(original, crops, target, dtype=pe.dtype, text_encoder_projection_dim=projection)
        ids = ids.to(device).expand(pe.shape[0], -1)
        cond = {"encoder_hidden_states": pe, "added_cond_kwargs": {"text_embeds": pp, "time_ids": ids}}
        uncond = {"encoder_hidden_states": ne, "added_cond_kwargs": {"text_embeds": npool, "time_ids": ids}}
        return cond, (uncond if cfg else None)
    pe, ne, pp, npool = pipe.encode_prompt(
        prompt=prompts,
        prompt_2=None,
        prompt_3=None,
        device=device,
        num_images_per_prompt=1,
        do_classifier_free_guidance=cfg,
        negative_prompt=negative,
        clip_skip=options.pop("clip_skip"),
        max_sequence_length=options.pop("max_sequence_length"),
        **embeds,
    )
    cond = {"encoder_hidden_states": pe, "pooled_projections": pp}
    return cond, ({"encoder_hidden_states": ne, "pooled_projections": npool} if cfg else None)


def _guided_network(network: Callable[..., Tensor], scale: float, rescale: float, cfg: bool) -> Any:
    if not cfg:
        if rescale:
            raise InvalidArgumentError("guidance_rescale needs classifier-free guidance (guidance_scale > 1)")
        return Conditional(network)
    return ClassifierFreeGuidance(network, scale, rescale)


def _check_size(value: int, factor: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % factor:
        raise InvalidArgumentError(f"{what} must be a positive multiple of {factor}, got {value!r}")
    return value


def from_pipeline(
    pipe: Any,
    prompts: str | Sequence[str] | None = None,
    *,
    reward: Callable[..., Tensor] | None = None,
    lam: float = 1.0,
    num_inference_steps: int = 50,
    guidance_scale: float | None = None,
    negative_prompt: str | Sequence[str] | None = None,
    guidance_rescale: float = 0.0,
    prompt_embeds: Tensor | None = None,
    negative_prompt_embeds: Tensor | None = None,
    pooled_prompt_embeds: Tensor | None = None,
    negative_pooled_prompt_embeds: Tensor | None = None,
    height: int | None = None,
    width: int | None = None,
    scheduler: Any = None,
    eta: float = 0.0,
    previous: str | None = None,
    mu: float | None = None,
    clip_skip: int | None = None,
    max_sequence_length: int = 256,
    original_size: tuple[int, int] | None = None,
    target_size: tuple[int, int] | None = None,
    crops_coords_top_left: tuple[int, int] = (0, 0),
    decode: bool = True,
    chunk_size: int | None = 8,
    denoiser_chunk_size: int | None = None,
    **steering: Any,
) -> PipelineSteering:
    """Steer a diffusers text-to-image pipeline towards ``p(image | prompt) exp(lam r(image))``, one group per prompt.

    Parameters
    ----------
    pipe : diffusers pipeline
        ``StableDiffusionPipeline`` (1.x, 2.x), ``StableDiffusionXLPipeline`` or ``StableDiffusion3Pipeline`` (or
        any pipeline with their parts and ``encode_prompt``), on its device and in its dtype.
    prompts : str or sequence of str, optional
        One group (an independent population) per prompt. May be omitted when ``prompt_embeds`` is given (the
        reward then gets ``None`` labels).
    reward : callable, optional
        ``reward(images, **conditioning) -> (B,)`` on decoded images (B, 3, H, W) in [0, 1] (or on the latents
        with ``decode=False``); a reward with ``prepare`` (:mod:`smckit.diffusion.rewards`) gets its per-group
        conditioning from the prompts. ``None``: plain sampling.
    lam : float
        The strength of the tilt.
    num_inference_steps : int
        S; the model has S + 1 steps (the initial draw is weighted too).
    guidance_scale : float, optional
        Classifier-free guidance ``w`` (the family's pipeline default when omitted: 7.5, 5.0 and 7.0 for SD, SDXL
        and SD3); on when ``w > 1`` (and, for SD/SDXL, the UNet has no guidance embedding), as in diffusers.
    negative_prompt : str or sequence of str, optional
        The unconditional branch's prompt (default: the empty prompt, or zeros where the pipeline says so).
    guidance_rescale : float
        In [0, 1]: :func:`rescale_guidance`.
    prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds : tensor, optional
        Precomputed embeddings, one row per group, passed to ``encode_prompt`` (pooled ones for SDXL and SD3).
    height, width : int, optional
        Image size (default the pipeline's); multiples of the VAE's scale factor.
    scheduler : diffusers scheduler or {"ddim", "ddpm", "flow"}, optional
        The sampler (default a copy of ``pipe.scheduler``); a name builds that scheduler from the pipeline
        scheduler's config. Multistep and ODE schedulers (PNDM, Euler, DPM-Solver) are refused with the
        ``scheduler="ddim"`` route named: their hidden state does not survive resampling.
    eta : float
        The stochasticity of DDIM and flow steps (0: deterministic; use rebirth noise or ``eta > 0`` with
        resampling).
    previous : {"list", "stride"}, optional
        DDIM's previous-timestep rule (:meth:`~smckit.diffusion.NoiseSchedule.from_diffusers`).
    mu : float, optional
        The flow scheduler's dynamic shift, when its config asks for one.
    clip_skip : int, optional
        As in the pipelines.
    max_sequence_length : int
        SD3's T5 sequence length.
    original_size, target_size, crops_coords_top_left : tuple of int
        SDXL's micro-conditioning (default: the image size and (0, 0)).
    decode : bool
        Whether the reward sees decoded images (default) or the latents.
    chunk_size : int, optional
        At most this many images per decode and reward call (default 8); also bounds :meth:`PipelineSteering.images`.
    denoiser_chunk_size : int, optional
        At most this many particles per network call (twice as many inputs under classifier-free guidance).
    **steering
        Further :class:`~smckit.diffusion.RewardSteering` options: ``potential``, ``guidance`` (gradient
        guidance), ``guidance_gradient``, ``deterministic_last_step``, ``sampler`` (a transition replacing the
        scheduler's own step).

    Returns
    -------
    PipelineSteering
        Run it with :func:`smckit.run`; ``model.images(result)`` returns the images and their weights.

    Raises
    ------
    InvalidArgumentError
        For an unsupported pipeline or scheduler, no prompts and no embeddings, a size that is not a multiple of the
        VAE's factor, a gradient guidance with a non-differentiable reward, or ``guidance_rescale`` without
        classifier-free guidance.

    Examples
    --------
    >>> import smckit
    >>> from smckit.diffusion import from_pipeline
    >>> from smckit.diffusion.tiny import tiny_pipeline
    >>> pipe = tiny_pipeline("sd")
    >>> model = from_pipeline(pipe, ["a cat", "a dog"], reward=lambda images: images.mean(dim=(1, 2, 3)),
    ...                       num_inference_steps=4, lam=10.0)
    >>> model.network
    ClassifierFreeGuidance(scale=7.5)
    >>> result = smckit.run(model, 3, seed=0)
    >>> out = model.images(result, output_type="pt")
    >>> out.images.shape, out.weights.shape, model.denoiser_calls      # 2 prompts x 3 particles x 4 steps x 2
    (torch.Size([2, 3, 3, 16, 16]), torch.Size([2, 3]), 48)
    """
    family = family_of(pipe)
    if prompts is None and prompt_embeds is None:
        raise InvalidArgumentError("give the prompts, or prompt_embeds with one row per group")
    labels: list[Any]
    if isinstance(prompts, str):
        prompts = [prompts]
    if prompts is not None:
        labels = list(prompts)
        if not labels or not all(isinstance(p, str) for p in labels):
            raise InvalidArgumentError(f"prompts must be a non-empty list of strings, got {prompts!r}")
    else:
        assert prompt_embeds is not None
        labels = [None] * int(prompt_embeds.shape[0])
    if prompt_embeds is not None and int(prompt_embeds.shape[0]) != len(labels):
        raise ShapeError(f"prompt_embeds has {prompt_embeds.shape[0]} rows for {len(labels)} prompts")
    network_module = pipe.transformer if family == "sd3" else pipe.unet
    device = getattr(pipe, "_execution_device", None) or network_module.device
    dtype = network_module.dtype
    scale = DEFAULT_GUIDANCE[family] if guidance_scale is None else float(guidance_scale)
    time_cond = None if family == "sd3" else pipe.unet.config.get("time_cond_proj_dim")
    cfg = scale > 1.0 and time_cond is None
    factor = int(pipe.vae_scale_factor)
    size = int(network_module.config.sample_size) * factor
    height = _check_size(size if height is None else height, factor, "height")
    width = _check_size(size if width is None else width, factor, "width")
    if isinstance(negative_prompt, str):
        negative_prompt = [negative_prompt] * len(labels)
    if negative_prompt is not None and len(negative_prompt) != len(labels):
        raise ShapeError(f"{len(negative_prompt)} negative prompts for {len(labels)} groups")
    options = {
        "negative_prompt": None if negative_prompt is None else list(negative_prompt),
        "clip_skip": clip_skip,
        "max_sequence_length": max_sequence_length,
        "size": (height, width),
        "original_size": original_size,
        "target_size": target_size,
        "crops_coords_top_left": crops_coords_top_left,
        "prompt_embeds": prompt_embeds,
        "negative_prompt_embeds": negative_prompt_embeds,
    }
    if family != "sd":
        options["pooled_prompt_embeds"] = pooled_prompt_embeds
        options["negative_pooled_prompt_embeds"] = negative_pooled_prompt_embeds
    elif pooled_prompt_embeds is not None or negative_pooled_prompt_embeds is not None:
        raise InvalidArgumentError("pooled embeddings belong to SDXL and SD3, not to Stable Diffusion 1.x/2.x")
    import torch

    with torch.no_grad():
        cond, uncond = _encode(pipe, family, prompts, cfg, device, options)
    if time_cond is not None:
        guidance_embed = torch.full((len(labels),), scale - 1.0)
        cond["timestep_cond"] = pipe.get_guidance_scale_embedding(guidance_embed, embedding_dim=time_cond).to(
            device=device, dtype=dtype
        )
    sched = _scheduler(pipe.scheduler, scheduler)
    schedule, transition = _schedule(sched, num_inference_steps, mu=mu, previous=previous, eta=eta)
    raw = _transformer_network(network_module) if family == "sd3" else _unet_network(network_module)
    network = _guided_network(raw, scale, guidance_rescale, cfg)
    decoder = LatentDecoder(pipe.vae, upcast=family == "sdxl")
    denoiser = _denoiser(network, sched, schedule)
    sampler = steering.pop("sampler", transition)
    reward_cond = _prepare_reward(reward, labels, device, steering.get("guidance"))
    return PipelineSteering(
        denoiser,
        schedule,
        reward,
        event_shape=(int(network_module.config.in_channels), height // factor, width // factor),
        lam=lam,
        sampler=sampler,
        decode=decoder if decode and reward is not None else None,
        chunk_size=chunk_size,
        denoiser_chunk_size=denoiser_chunk_size,
        conditioning=_branches(cond, uncond),
        reward_conditioning=reward_cond,
        groups=len(labels),
        dtype=dtype,
        device=device,
        labels=labels,
        decoder=decoder,
        image_processor=getattr(pipe, "image_processor", None),
        family=family,
        **steering,
    )


def _branches(cond: dict[str, Any], uncond: dict[str, Any] | None) -> dict[str, Any]:
    return {"cond": cond} if uncond is None else {"cond": cond, "uncond": uncond}


def _denoiser(network: Any, scheduler: Any, schedule: Any) -> Denoiser:
    """The network as a :class:`Denoiser` of the schedule's kind, with the scheduler's clipping options."""
    if schedule.kind == "flow":
        from smckit.diffusion.flow import FlowDenoiser

        return FlowDenoiser(network)
    return Denoiser(network, **scheduler_options(scheduler))


def from_class_conditional(
    unet: Any,
    scheduler: Any,
    classes: Sequence[int],
    *,
    reward: Callable[..., Tensor] | None = None,
    lam: float = 1.0,
    num_inference_steps: int = 50,
    guidance_scale: float = 1.0,
    null_class: int | None = None,
    guidance_rescale: float = 0.0,
    vae: Any = None,
    eta: float = 0.0,
    previous: str | None = None,
    chunk_size: int | None = 64,
    denoiser_chunk_size: int | None = None,
    **steering: Any,
) -> PipelineSteering:
    """Steer a class-conditional network (``class_labels``), one group per class, towards ``exp(lam r)``.

    The FVD paper's MNIST and CIFAR-10 setting: a class-conditional UNet, optionally classifier-free guided against
    a null class, and a classifier's log-probability of each group's class as the reward
    (:class:`~smckit.diffusion.rewards.ClassifierReward`, whose targets come from ``classes``).

    Parameters
    ----------
    unet : diffusers.UNet2DModel
        With a class embedding (``num_class_embeds``), called as ``unet(x, t, class_labels=...)``; any module
        with that call, a ``config`` (``in_channels``, ``sample_size``), ``device`` and ``dtype`` will do.
    scheduler : diffusers scheduler
        DDPM, DDIM or flow matching (copied, never modified).
    classes : sequence of int
        One group per entry.
    reward : callable, optional
        On images (B, C, H, W) in [0, 1] (the samples mapped from [-1, 1], or decoded by ``vae``); a reward with
        ``prepare`` gets the classes as its labels.
    lam : float
        The strength of the tilt.
    num_inference_steps : int
        S.
    guidance_scale : float
        Classifier-free guidance against ``null_class``; 1 (default) turns it off.
    null_class : int, optional
        The label the network was trained with for "no class" (needed for guidance).
    guidance_rescale : float
        In [0, 1]: :func:`rescale_guidance`.
    vae : diffusers.AutoencoderKL, optional
        For a latent model; the reward then sees the decoded images.
    eta : float
        Stochasticity of DDIM and flow steps.
    previous : {"list", "stride"}, optional
        DDIM's previous-timestep rule.
    chunk_size, denoiser_chunk_size : int, optional
        As for :func:`from_pipeline`.
    **steering
        Further :class:`~smckit.diffusion.RewardSteering` options.

    Returns
    -------
    PipelineSteering

    Raises
    ------
    InvalidArgumentError
        For no classes, guidance without a null class, or an unsupported scheduler.

    Examples
    --------
    >>> import smckit, torch
    >>> from diffusers import DDIMScheduler
    >>> from smckit.diffusion import from_class_conditional
    >>> from smckit.diffusion.rewards import ClassifierReward
    >>> from smckit.diffusion.tiny import tiny_class_unet
    >>> unet = tiny_class_unet(11)                        # classes 0-9 and the null class 10
    >>> classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    >>> model = from_class_conditional(unet, DDIMScheduler(), [3, 7], reward=ClassifierReward(classifier),
    ...                                num_inference_steps=5, guidance_scale=2.0, null_class=10, eta=1.0)
    >>> result = smckit.run(model, 8, seed=0)
    >>> model.images(result, output_type="pt").images.shape, model.denoiser_calls
    (torch.Size([2, 8, 1, 8, 8]), 160)
    """
    import torch

    labels = [int(c) for c in classes]
    if not labels:
        raise InvalidArgumentError("classes must name at least one class (one group per class)")
    cfg = float(guidance_scale) != 1.0
    if cfg and null_class is None:
        raise InvalidArgumentError("classifier-free guidance needs the null_class the network was trained with")
    device, dtype = unet.device, unet.dtype
    cond = {"class_labels": torch.as_tensor(labels, dtype=torch.int64, device=device)}
    uncond = {"class_labels": torch.full((len(labels),), int(null_class or 0), dtype=torch.int64, device=device)}
    sched = _scheduler(scheduler, None)
    schedule, transition = _schedule(sched, num_inference_steps, mu=None, previous=previous, eta=eta)
    network = _guided_network(_unet_network(unet), float(guidance_scale), guidance_rescale, cfg)
    sample = unet.config.sample_size
    h, w = (sample, sample) if isinstance(sample, int) else tuple(sample)
    decoder: Any = PixelDecoder() if vae is None else LatentDecoder(vae)
    sampler = steering.pop("sampler", transition)
    return PipelineSteering(
        _denoiser(network, sched, schedule),
        schedule,
        reward,
        event_shape=(int(unet.config.in_channels), int(h), int(w)),
        lam=lam,
        sampler=sampler,
        decode=decoder if reward is not None else None,
        chunk_size=chunk_size,
        denoiser_chunk_size=denoiser_chunk_size,
        conditioning=_branches(cond, uncond if cfg else None),
        reward_conditioning=_prepare_reward(reward, labels, device, steering.get("guidance")),
        groups=len(labels),
        dtype=dtype,
        device=device,
        labels=labels,
        decoder=decoder,
        family="class",
        **steering,
    )
