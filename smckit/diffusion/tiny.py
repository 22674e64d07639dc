"""Tiny diffusers pipelines and models with random weights, built from configs: no download, a few milliseconds
per step on a CPU.

They have the structure of the real ones (Stable Diffusion 1.x/2.x, SDXL with its two text encoders and
``added_cond_kwargs``, SD3's flow-matching transformer, a class-conditional UNet, CLIP), so that tests, the
documentation's examples and the benchmarks run the code paths that real models run, offline. Their outputs are
meaningless. The tokenizer is a CLIP byte-pair tokenizer whose vocabulary is the lowercase letters (written to a
folder, as diffusers' own tests build theirs), so any lowercase prompt encodes.

Everything here needs ``diffusers`` and ``transformers`` (the ``text`` extra: ``pip install -e '.[text]'`` in a clone).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from smckit.errors import InvalidArgumentError

__all__ = ["FAMILIES", "tiny_tokenizer", "tiny_pipeline", "tiny_class_unet", "tiny_clip"]

FAMILIES = ("sd", "sdxl", "sd3")
"""The pipeline families :func:`tiny_pipeline` builds."""

MAX_LENGTH = 32
WIDTH = 16
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _require_text() -> None:
    from smckit.diffusion._deps import require

    require("transformers", "text")
    require("diffusers", "diffusion")


def tiny_tokenizer(folder: str | os.PathLike[str] | None = None) -> Any:
    """A CLIP tokenizer over the lowercase letters, written to ``folder`` (a new temporary folder by default).

    Parameters
    ----------
    folder : path, optional
        Where ``vocab.json`` and ``merges.txt`` are written.

    Returns
    -------
    transformers.CLIPTokenizer
        Sequences of ``MAX_LENGTH`` (32) tokens; token 0 starts and token 1 ends (and pads) a sequence.
    """
    _require_text()
    from transformers import CLIPTokenizer

    where = tempfile.mkdtemp(prefix="smckit-tokenizer-") if folder is None else os.fspath(folder)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in LETTERS:
            vocab[c + suffix] = len(vocab)
    with open(os.path.join(where, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f)
    with open(os.path.join(where, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(where, model_max_length=MAX_LENGTH)


def _text_config(hidden: int = WIDTH) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_attention_heads=2,
        num_hidden_layers=1,
        vocab_size=2 + 2 * len(LETTERS),
        max_position_embeddings=MAX_LENGTH,
        projection_dim=hidden,
    )


def _vae(**options: Any) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[8, 16],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=16,
        **options,
    )


def _unet(cross_attention_dim: int, **options: Any) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=4,
        attention_head_dim=2,
        **options,
    )


def tiny_pipeline(
    family: str = "sd", *, seed: int = 0, scheduler: str = "ddim", dtype: Any = None, device: Any = None
) -> Any:
    """A diffusers text-to-image pipeline of ``family`` with tiny random components (8x8x4 latents, 16x16 images).

    Parameters
    ----------
    family : {"sd", "sdxl", "sd3"}
        ``StableDiffusionPipeline`` (one CLIP text encoder, a ``UNet2DConditionModel``),
        ``StableDiffusionXLPipeline`` (two text encoders, pooled embeddings and time ids in ``added_cond_kwargs``)
        or ``StableDiffusion3Pipeline`` (two CLIP encoders, no T5, an ``SD3Transformer2DModel``, flow matching).
    seed : int
        Seeds torch's generator for the random weights (the global generator's state is restored after).
    scheduler : {"ddim", "ddpm"}
        The scheduler of the SD and SDXL families (Stable Diffusion's scaled-linear betas); SD3 always gets
        ``FlowMatchEulerDiscreteScheduler(shift=3.0)``.
    dtype, device : optional
        Moved there at the end (default float32 on the CPU).

    Returns
    -------
    diffusers pipeline

    Raises
    ------
    InvalidArgumentError
        For an unknown family or scheduler.
    """
    if family not in FAMILIES:
        raise InvalidArgumentError(f"family must be one of {FAMILIES}, got {family!r}")
    if scheduler not in ("ddim", "ddpm"):
        raise InvalidArgumentError(f"scheduler must be 'ddim' or 'ddpm', got {scheduler!r}")
    _require_text()
    import torch
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    betas = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": False}
    make = DDIMScheduler if scheduler == "ddim" else DDPMScheduler
    tokenizer = tiny_tokenizer()
    pipe: Any
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "sd":
            pipe = StableDiffusionPipeline(
                vae=_vae(),
                text_encoder=CLIPTextModel(_text_config()),
                tokenizer=tokenizer,
                unet=_unet(WIDTH),
                scheduler=make(**betas, steps_offset=1),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        elif family == "sdxl":
            unet = _unet(
                2 * WIDTH,
                use_linear_projection=True,
                addition_embed_type="text_time",
                addition_time_embed_dim=4,
                projection_class_embeddings_input_dim=6 * 4 + WIDTH,
            )
            pipe = StableDiffusionXLPipeline(
                vae=_vae(),
                text_encoder=CLIPTextModel(_text_config()),
                text_encoder_2=CLIPTextModelWithProjection(_text_config()),
                tokenizer=tokenizer,
                tokenizer_2=tokenizer,
                unet=unet,
                scheduler=make(**betas, steps_offset=1),
                add_watermarker=False,
            )
        else:
            transformer = SD3Transformer2DModel(
                sample_size=8,
                patch_size=1,
                in_channels=4,
                num_layers=1,
                attention_head_dim=8,
                num_attention_heads=2,
                caption_projection_dim=WIDTH,
                joint_attention_dim=WIDTH,
                pooled_projection_dim=2 * WIDTH,
                out_channels=4,
            )
            pipe = StableDiffusion3Pipeline(
                transformer=transformer,
                scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                vae=_vae(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035),
                text_encoder=CLIPTextModelWithProjection(_text_config()),
                tokenizer=tokenizer,
                text_encoder_2=CLIPTextModelWithProjection(_text_config()),
                tokenizer_2=tokenizer,
                text_encoder_3=None,
                tokenizer_3=None,
            )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype) if dtype is not None or device is not None else pipe


def tiny_class_unet(num_classes: int = 10, *, seed: int = 0, channels: int = 1, size: int = 8) -> Any:
    """A class-conditional ``UNet2DModel`` (``class_labels``) with random weights, for the pixel-space route.

    Parameters
    ----------
    num_classes : int
        Class embeddings; give one more than the classes to reserve a null class for classifier-free guidance.
    seed : int
        Seeds the random weights.
    channels, size : int
        Samples of shape ``(channels, size, size)``.

    Returns
    -------
    diffusers.UNet2DModel
    """
    _require_text()
    import torch
    from diffusers import UNet2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(
            sample_size=size,
            in_channels=channels,
            out_channels=channels,
            block_out_channels=(8, 16),
            layers_per_block=1,
            norm_num_groups=4,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            num_class_embeds=num_classes,
        )


def tiny_clip(*, seed: int = 0, image_size: int = 16) -> tuple[Any, Any]:
    """A CLIP model (``transformers.CLIPModel``) with random weights and its tokenizer (:func:`tiny_tokenizer`).

    Parameters
    ----------
    seed : int
        Seeds the random weights.
    image_size : int
        The vision tower's input size (patches of 8 pixels).

    Returns
    -------
    model : transformers.CLIPModel
    tokenizer : transformers.CLIPTokenizer
    """
    _require_text()
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig

    vision = CLIPVisionConfig(
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_attention_heads=2,
        num_hidden_layers=1,
        image_size=image_size,
        patch_size=8,
        projection_dim=WIDTH,
    )
    config = CLIPConfig(text_config=_text_config().to_dict(), vision_config=vision.to_dict(), projection_dim=WIDTH)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    return model.eval(), tiny_tokenizer()
