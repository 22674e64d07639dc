"""Rewards on images for steering: a classifier's log-probability, CLIP similarity, an aesthetic head, any scorer.

A reward is a callable ``reward(images, **conditioning) -> (B,)`` on a batch of images of shape ``(B, C, H, W)``
with values in [0, 1] (what :func:`~smckit.diffusion.pipeline.from_pipeline` decodes; a pixel-space model's samples
mapped from [-1, 1]). The rewards here also have

- ``prepare(labels, *, device) -> dict``: the per-group conditioning of the reward, computed once from the groups'
  labels (prompts or classes): e.g. CLIP's normalised text features, shape (G, D), or the target classes, (G,).
  :func:`~smckit.diffusion.pipeline.from_pipeline` calls it and passes the result as ``reward_conditioning``, so
  each particle is scored against its own group's prompt;
- ``differentiable``: whether the reward is a differentiable torch function of the images (gradient guidance
  needs one).

Everything runs on the images' device, in the scoring model's dtype; the score is returned in float32 or wider.
Models are passed in, never downloaded here. Loading published weights (each a one-time download by the user):

- CLIP: ``transformers.CLIPModel.from_pretrained("openai/clip-vit-large-patch14")`` and its ``CLIPTokenizer``;
- the LAION aesthetic predictor (a linear head on normalised CLIP ViT-L/14 image embeddings): its published
  ``sa_0_4_vit_l_14_linear.pth`` state dict loads into ``torch.nn.Linear(768, 1)``;
- any scorer with a ``score(prompts, images)``-like API (ImageReward, PickScore, HPS) through
  :class:`ScoreReward`, which hands it PIL images or arrays and the prompts.

:class:`CLIPReward` and :class:`AestheticReward` need ``transformers`` (the ``text`` extra:
``pip install -e '.[text]'`` in a clone), imported only when one is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from smckit.diffusion._deps import require
from smckit.errors import InvalidArgumentError, ShapeError

__all__ = ["Reward", "ClassifierReward", "CLIPReward", "AestheticReward", "ScoreReward", "to_images", "OUTPUT_TYPES"]

Tensor = Any
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
OUTPUT_TYPES = ("pt", "np", "pil")
"""How images are handed over: torch tensors (B, C, H, W), numpy arrays (B, H, W, C), or a list of PIL images."""


class Reward:
    """The base of the rewards here: ``__call__(images, **conditioning) -> (B,)`` and ``prepare(labels)``.

    Subclasses implement :meth:`__call__`; :meth:`prepare` returns no conditioning by default.
    """

    differentiable: bool = True

    def prepare(self, labels: Sequence[Any], *, device: Any = None) -> dict[str, Any]:
        """The reward's conditioning for groups labelled ``labels`` (one label per group).

        Parameters
        ----------
        labels : sequence
            One prompt (str) or class (int) per group.
        device : torch.device, optional
            Where the tensors must live.

        Returns
        -------
        dict
            Tensors with a leading axis of length ``len(labels)``.
        """
        return {}

    def __call__(self, images: Tensor, **conditioning: Any) -> Tensor:  # pragma: no cover - abstract
        """Score a batch of images of shape (B, C, H, W) in [0, 1]; returns shape (B,)."""
        raise NotImplementedError


def _dtype_of(module: Any) -> Any:
    return next(iter(module.parameters())).dtype


def _wide(x: Tensor) -> Tensor:
    import torch

    return x.to(torch.promote_types(x.dtype, torch.float32))


def _check_images(images: Tensor) -> None:
    if images.ndim != 4:
        raise ShapeError(f"a reward scores images of shape (B, C, H, W), got {tuple(images.shape)}")


class ClassifierReward(Reward):
    """``log p(y = target | image)`` from a classifier's logits (the class-conditional steering reward).

    Parameters
    ----------
    classifier : callable
        ``classifier(x) -> logits`` of shape (B, K) (or an output with a ``logits`` attribute); a torch module
        runs in its own dtype.
    target : int, optional
        One class for every group. Default: each group's label (its class) from :meth:`prepare`.
    preprocess : callable, optional
        Maps the images in [0, 1] to the classifier's input (e.g. ``lambda x: 2 * x - 1``, a resize, a
        normalisation); differentiable if the gradient is wanted.

    Examples
    --------
    >>> import torch
    >>> from smckit.diffusion.rewards import ClassifierReward
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    >>> reward = ClassifierReward(net)
    >>> cond = reward.prepare([2, 4])
    >>> cond["target"].tolist()
    [2, 4]
    >>> reward(torch.rand(2, 3, 4, 4), **cond).shape
    torch.Size([2])
    """

    def __init__(self, classifier: Callable[[Tensor], Any], target: int | None = None, *, preprocess: Any = None):
        if not callable(classifier):
            raise InvalidArgumentError(f"the classifier must map images to logits, got {classifier!r}")
        self.classifier = classifier
        self.target = None if target is None else int(target)
        self.preprocess = preprocess

    def prepare(self, labels: Sequence[Any], *, device: Any = None) -> dict[str, Any]:
        """``{"target": (G,) int64}``: the fixed target, or each group's label, which must be a class index.

        Parameters
        ----------
        labels : sequence of int (or anything when ``target`` is fixed)
        device : torch.device, optional

        Returns
        -------
        dict

        Raises
        ------
        InvalidArgumentError
            For a label that is not an integer class when no fixed ``target`` is set.
        """
        import torch

        if self.target is not None:
            return {"target": torch.full((len(labels),), self.target, dtype=torch.int64, device=device)}
        if not all(isinstance(y, int) or (hasattr(y, "ndim") and y.ndim == 0) for y in labels):
            raise InvalidArgumentError(
                f"ClassifierReward needs integer class labels, got {list(labels)!r}; pass target= for one fixed class"
            )
        return {"target": torch.as_tensor([int(y) for y in labels], dtype=torch.int64, device=device)}

    def __call__(self, images: Tensor, target: Tensor | None = None, **unused: Any) -> Tensor:
        """``log_softmax(classifier(preprocess(images)))[target]`` per image.

        Parameters
        ----------
        images : tensor, shape (B, C, H, W), values in [0, 1]
        target : int tensor, shape (B,), optional
            The class of each image (from :meth:`prepare`, gathered per particle); default the fixed target.
        **unused
            Other conditioning, ignored.

        Returns
        -------
        tensor, shape (B,), float32 or wider
        """
        import torch

        x = self.preprocess(images) if self.preprocess is not None else images
        if isinstance(self.classifier, torch.nn.Module):
            x = x.to(_dtype_of(self.classifier))
        out = self.classifier(x)
        logits = _wide(getattr(out, "logits", out))
        if logits.ndim != 2 or logits.shape[0] != images.shape[0]:
            raise ShapeError(f"the classifier returned logits of shape {tuple(logits.shape)}; expected (B, classes)")
        if target is None:
            if self.target is None:
                raise InvalidArgumentError("ClassifierReward needs a target: prepare(labels) or target=")
            target = torch.full((images.shape[0],), self.target, dtype=torch.int64, device=images.device)
        return logits.log_softmax(dim=-1).gather(1, target.reshape(-1, 1).to(torch.int64)).squeeze(1)


class _CLIPImages:
    """CLIP's image preprocessing as a differentiable torch function: resize, centre crop, normalise."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]):
        self.size = int(size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, images: Tensor, dtype: Any) -> Tensor:
        import torch
        import torch.nn.functional as F

        _check_images(images)
        h, w = images.shape[-2:]
        x = _wide(images)
        if (h, w) != (self.size, self.size):
            scale = self.size / min(h, w)
            size = (max(self.size, round(h * scale)), max(self.size, round(w * scale)))
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
            top, left = (size[0] - self.size) // 2, (size[1] - self.size) // 2
            x = x[..., top : top + self.size, left : left + self.size]
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
        return ((x - mean) / std).to(dtype)


def _image_features(model: Any, pixels: Tensor) -> Tensor:
    """Normalised CLIP image embeddings, shape (B, D), from ``vision_model`` and ``visual_projection``."""
    pooled = model.vision_model(pixel_values=pixels).pooler_output
    features = _wide(model.visual_projection(pooled))
    return features / features.norm(dim=-1, keepdim=True)


def _check_clip(model: Any, needs_text: bool) -> None:
    parts = ("vision_model", "visual_projection") + (("text_model", "text_projection") if needs_text else ())
    missing = [p for p in parts if not hasattr(model, p)]
    if missing:
        raise InvalidArgumentError(
            f"{type(model).__name__} lacks {missing}: pass a transformers CLIPModel"
            + ("" if needs_text else " or CLIPVisionModelWithProjection")
        )


class CLIPReward(Reward):
    """CLIP image-text similarity: the cosine of the image's and the group's prompt embeddings, times ``scale``.

    Parameters
    ----------
    model : transformers.CLIPModel
        Any CLIP checkpoint (e.g. ``openai/clip-vit-large-patch14``), on the device and in the dtype of choice.
    tokenizer : transformers tokenizer
        The model's tokenizer.
    image_size : int, optional
        The vision tower's input size; default ``model.config.vision_config.image_size``.
    mean, std : sequence of float
        The normalisation of the pixels (OpenAI CLIP's by default).
    scale : float
        Multiplies the cosine (100 gives the usual CLIP score scale).

    Notes
    -----
    The images are resized (bicubic, antialiased) so that their short side is ``image_size``, centre-cropped and
    normalised in torch, so the reward is differentiable. :meth:`prepare` encodes the prompts once per group.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        image_size: int | None = None,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        scale: float = 1.0,
    ):
        require("transformers", "text")
        _check_clip(model, needs_text=True)
        self.model = model
        self.tokenizer = tokenizer
        size = image_size if image_size is not None else model.config.vision_config.image_size
        self.pixels = _CLIPImages(size, mean, std)
        self.scale = float(scale)

    def prepare(self, labels: Sequence[Any], *, device: Any = None) -> dict[str, Any]:
        """``{"text_features": (G, D)}``: the normalised embeddings of the groups' prompts.

        Parameters
        ----------
        labels : sequence of str
            One prompt per group.
        device : torch.device, optional

        Returns
        -------
        dict
        """
        import torch

        prompts = [str(p) for p in labels]
        tokens = self.tokenizer(prompts, padding="max_length", truncation=True, return_tensors="pt")
        at = next(iter(self.model.parameters())).device
        with torch.no_grad():
            pooled = self.model.text_model(
                input_ids=tokens["input_ids"].to(at), attention_mask=tokens["attention_mask"].to(at)
            ).pooler_output
            features = _wide(self.model.text_projection(pooled))
        features = features / features.norm(dim=-1, keepdim=True)
        return {"text_features": features.to(device) if device is not None else features}

    def __call__(self, images: Tensor, text_features: Tensor | None = None, **unused: Any) -> Tensor:
        """``scale * cos(image embedding, text_features)`` per image.

        Parameters
        ----------
        images : tensor, shape (B, C, H, W), values in [0, 1]
        text_features : tensor, shape (B, D)
            Each image's prompt embedding (from :meth:`prepare`, gathered per particle).
        **unused
            Other conditioning, ignored.

        Returns
        -------
        tensor, shape (B,)
        """
        if text_features is None:
            raise InvalidArgumentError("CLIPReward needs text_features: build the conditioning with prepare(prompts)")
        image = _image_features(self.model, self.pixels(images, _dtype_of(self.model)))
        return self.scale * (image * text_features.to(image.dtype)).sum(dim=-1)


class AestheticReward(Reward):
    """An aesthetic-style score: a linear head on normalised CLIP image embeddings (as the LAION predictor).

    Parameters
    ----------
    model : transformers.CLIPModel or CLIPVisionModelWithProjection
        The image tower (e.g. ``openai/clip-vit-large-patch14`` for the LAION head).
    head : torch.nn.Module
        Maps embeddings (B, D) to scores (B, 1) or (B,), e.g. ``torch.nn.Linear(768, 1)`` loaded with the
        published weights.
    image_size : int, optional
        Default ``model.config.vision_config.image_size`` (or ``model.config.image_size``).
    mean, std : sequence of float
        The pixel normalisation (OpenAI CLIP's by default).
    """

    def __init__(
        self,
        model: Any,
        head: Any,
        *,
        image_size: int | None = None,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ):
        require("transformers", "text")
        _check_clip(model, needs_text=False)
        if not callable(head):
            raise InvalidArgumentError(f"the head must map embeddings (B, D) to scores, got {head!r}")
        config = model.config
        size = image_size or getattr(getattr(config, "vision_config", config), "image_size", None)
        if size is None:
            raise InvalidArgumentError("cannot read the image size from the model's config; pass image_size=")
        self.model = model
        self.head = head
        self.pixels = _CLIPImages(size, mean, std)

    def __call__(self, images: Tensor, **unused: Any) -> Tensor:
        """``head(normalised CLIP embedding)`` per image.

        Parameters
        ----------
        images : tensor, shape (B, C, H, W), values in [0, 1]
        **unused
            Conditioning, ignored.

        Returns
        -------
        tensor, shape (B,)
        """
        features = _image_features(self.model, self.pixels(images, _dtype_of(self.model)))
        head_dtype = _dtype_of(self.head) if hasattr(self.head, "parameters") else features.dtype
        score = _wide(self.head(features.to(head_dtype)))
        if score.ndim == 2 and score.shape[1] == 1:
            score = score[:, 0]
        if tuple(score.shape) != (images.shape[0],):
            raise ShapeError(f"the aesthetic head returned shape {tuple(score.shape)}; expected (B, 1) or (B,)")
        return score


def to_images(images: Tensor, output_type: str) -> Any:
    """Images in [0, 1] of shape (B, C, H, W) as torch tensors, numpy arrays (B, H, W, C) or PIL images.

    Parameters
    ----------
    images : tensor, shape (B, C, H, W)
    output_type : {"pt", "np", "pil"}

    Returns
    -------
    tensor, numpy.ndarray or list of PIL.Image.Image

    Raises
    ------
    InvalidArgumentError
        For another output type.
    """
    if output_type not in OUTPUT_TYPES:
        raise InvalidArgumentError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
    if output_type == "pt":
        return images
    from smckit.backend import to_host

    array = to_host(images.detach().clamp(0, 1).permute(0, 2, 3, 1))
    if output_type == "np":
        return array
    from PIL import Image

    pixels = (array * 255).round().astype("uint8")
    return [Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p) for p in pixels]


class ScoreReward(Reward):
    """Any scorer of ``(images, prompts)`` as a reward: ImageReward, PickScore, HPS, a human-in-the-loop table.

    Parameters
    ----------
    fn : callable
        ``fn(images, prompts) -> scores``: images as ``output_type`` says, one prompt (the group's label) per
        image, scores as a sequence, numpy array or tensor of length B.
    output_type : {"pil", "np", "pt"}
        How the images are handed over (PIL by default, what most scorers take).
    differentiable : bool
        Declare that ``fn`` is a differentiable torch function of tensor images (needs ``output_type="pt"``); by
        default the reward is not, so gradient guidance refuses it.

    Notes
    -----
    :meth:`prepare` returns each group's index and the labels; the scorer then gets each image's label. Handing
    images to a host-side scorer copies them to the host at each call (unavoidable for PIL), so use chunked,
    infrequent scoring (a resampling window) with such rewards on an accelerator.

    Examples
    --------
    >>> import torch
    >>> from smckit.diffusion.rewards import ScoreReward
    >>> reward = ScoreReward(lambda images, prompts: [len(p) + im.size[0] for p, im in zip(prompts, images)])
    >>> cond = reward.prepare(["a cat", "a horse"])
    >>> reward(torch.rand(2, 3, 4, 4), group=cond["group"], labels=cond["labels"]).tolist()
    [9.0, 11.0]
    """

    def __init__(self, fn: Callable[[Any, list[Any]], Any], *, output_type: str = "pil", differentiable: bool = False):
        if not callable(fn):
            raise InvalidArgumentError(f"the scorer must be callable as fn(images, prompts), got {fn!r}")
        if output_type not in OUTPUT_TYPES:
            raise InvalidArgumentError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if differentiable and output_type != "pt":
            raise InvalidArgumentError("a differentiable scorer takes tensors: output_type='pt'")
        self.fn = fn
        self.output_type = output_type
        self.differentiable = bool(differentiable)

    def prepare(self, labels: Sequence[Any], *, device: Any = None) -> dict[str, Any]:
        """``{"group": arange(G), "labels": tuple(labels)}``: the tensor follows the particles, the labels stay.

        Parameters
        ----------
        labels : sequence
            One prompt per group.
        device : torch.device, optional

        Returns
        -------
        dict
        """
        import torch

        return {"group": torch.arange(len(labels), device=device), "labels": tuple(labels)}

    def __call__(
        self, images: Tensor, group: Tensor | None = None, labels: Sequence[Any] = (), **unused: Any
    ) -> Tensor:
        """``fn(images, prompts)`` as a float tensor on the images' device.

        Parameters
        ----------
        images : tensor, shape (B, C, H, W), values in [0, 1]
        group : int tensor, shape (B,)
            Each image's group (from :meth:`prepare`).
        labels : sequence
            The groups' labels.
        **unused
            Other conditioning, ignored.

        Returns
        -------
        tensor, shape (B,), float32 or wider

        Raises
        ------
        ShapeError
            When the scorer returns another number of scores.
        """
        import torch

        _check_images(images)
        prompts = [labels[i] for i in group.tolist()] if group is not None else [None] * images.shape[0]
        scores = self.fn(to_images(images if self.differentiable else images.detach(), self.output_type), prompts)
        if not isinstance(scores, torch.Tensor):
            scores = torch.as_tensor(_host_floats(scores), device=images.device)
        scores = _wide(scores.to(images.device)).reshape(-1)
        if scores.shape[0] != images.shape[0]:
            raise ShapeError(f"the scorer returned {scores.shape[0]} scores for {images.shape[0]} images")
        return scores


def _host_floats(scores: Any) -> Any:
    import numpy as np

    return np.asarray(scores, dtype=np.float64).reshape(-1).astype(np.float32)
