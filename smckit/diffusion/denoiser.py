"""The denoiser wrapper: a network's output turned into the noise estimate and the Tweedie estimate ``x0_hat``.

With ``x_t = sqrt(a) x0 + sqrt(1 - a) eps`` (``a = abar_t``), a network predicts one of

- ``"epsilon"``: the noise, ``eps``; then ``x0 = (x_t - sqrt(1 - a) eps) / sqrt(a)``;
- ``"sample"``: the clean sample, ``x0``; then ``eps = (x_t - sqrt(a) x0) / sqrt(1 - a)``;
- ``"v_prediction"``: ``v = sqrt(a) eps - sqrt(1 - a) x0``; then ``x0 = sqrt(a) x_t - sqrt(1 - a) v`` and
  ``eps = sqrt(a) v + sqrt(1 - a) x_t``.

``x0`` is then optionally clipped to ``[-r, r]`` or dynamically thresholded (Saharia et al., 2022), as diffusers
does; the result, ``x0_hat``, is the one estimate that the reverse-step mean, the reward and the log-density all
use. The noise estimate stays the model's own (diffusers' default) unless ``use_clipped_model_output=True``, which
re-derives it from the clipped ``x0_hat``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smckit.errors import BackendError, InvalidArgumentError

__all__ = ["Denoiser", "DenoiserOutput", "PREDICTION_TYPES", "scheduler_options"]

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
"""What a denoiser may predict: the noise, the clean sample, or the velocity (diffusers' names)."""

Tensor = Any


SCHEDULER_OPTIONS = (
    "prediction_type",
    "clip_sample",
    "clip_sample_range",
    "thresholding",
    "dynamic_thresholding_ratio",
    "sample_max_value",
)


def scheduler_options(scheduler: Any) -> dict[str, Any]:
    """The :class:`Denoiser` options a diffusers scheduler's config sets (prediction type, clipping, thresholding).

    Parameters
    ----------
    scheduler : diffusers scheduler

    Returns
    -------
    dict
        The keys of ``SCHEDULER_OPTIONS`` (prediction type, clipping, thresholding) that the config has.
    """
    config = scheduler.config
    return {key: config[key] for key in SCHEDULER_OPTIONS if key in config}


@dataclass(frozen=True)
class DenoiserOutput:
    """What a denoiser says about ``x_t``.

    Attributes
    ----------
    eps : tensor, shape of x_t
        The noise estimate (the DDIM direction uses it).
    x0_hat : tensor, shape of x_t
        The Tweedie estimate of the clean sample, after clipping or thresholding.
    """

    eps: Tensor
    x0_hat: Tensor


class Denoiser:
    """A diffusion network as a map ``(x_t, t, abar_t) -> (eps, x0_hat)``.

    Parameters
    ----------
    fn : callable
        ``fn(x_t, t, **conditioning) -> output``: ``x_t`` of shape ``(B, *event)``, ``t`` an integer timestep,
        the output of the shape of ``x_t``.
    prediction_type : {"epsilon", "sample", "v_prediction"}
        What ``fn`` predicts.
    clip_sample : bool
        Clamp ``x0`` to ``[-clip_sample_range, clip_sample_range]``.
    clip_sample_range : float
        The clamp's bound.
    thresholding : bool
        Dynamic thresholding (takes precedence over ``clip_sample``, as in diffusers): per sample, ``s`` is the
        ``dynamic_thresholding_ratio`` quantile of ``|x0|`` clamped to ``[1, sample_max_value]``, and
        ``x0 <- clamp(x0, -s, s) / s``.
    dynamic_thresholding_ratio, sample_max_value : float
        Thresholding parameters.
    use_clipped_model_output : bool
        Re-derive ``eps`` from the clipped ``x0_hat`` (diffusers' DDIM option of that name).

    Attributes
    ----------
    evaluations : int
        Network evaluations per sample in one call: ``fn.evaluations`` when ``fn`` declares it (2 for
        :class:`~smckit.diffusion.pipeline.ClassifierFreeGuidance`, whose one batched call runs the network on
        the conditional and the unconditional input), else 1. :class:`~smckit.diffusion.RewardSteering` counts
        its ``denoiser_calls`` with it.

    Raises
    ------
    InvalidArgumentError
        For an unknown prediction type or a non-positive clip range.

    Examples
    --------
    >>> import torch
    >>> from smckit.diffusion import Denoiser
    >>> d = Denoiser(lambda x, t: torch.zeros_like(x), "epsilon")
    >>> out = d(torch.ones(2, 3), 10, alpha_bar=0.25)
    >>> out.x0_hat[0].tolist()
    [2.0, 2.0, 2.0]
    """

    kind = "vp"
    """The schedule family whose levels :meth:`convert` reads: ``abar`` of ``x_t = sqrt(abar) x0 + ...``."""

    def __init__(
        self,
        fn: Callable[..., Tensor],
        prediction_type: str = "epsilon",
        *,
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        use_clipped_model_output: bool = False,
    ):
        if not callable(fn):
            raise InvalidArgumentError(f"the denoiser must be callable as fn(x_t, t, **conditioning), got {fn!r}")
        if prediction_type not in PREDICTION_TYPES:
            raise InvalidArgumentError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if clip_sample_range <= 0 or sample_max_value < 1 or not 0 < dynamic_thresholding_ratio <= 1:
            raise InvalidArgumentError(
                "need clip_sample_range > 0, sample_max_value >= 1 and dynamic_thresholding_ratio in (0, 1]"
            )
        self.fn = fn
        self.prediction_type = prediction_type
        self.clip_sample = bool(clip_sample)
        self.clip_sample_range = float(clip_sample_range)
        self.thresholding = bool(thresholding)
        self.dynamic_thresholding_ratio = float(dynamic_thresholding_ratio)
        self.sample_max_value = float(sample_max_value)
        self.use_clipped_model_output = bool(use_clipped_model_output)
        evaluations = getattr(fn, "evaluations", 1)
        if isinstance(evaluations, bool) or not isinstance(evaluations, int) or evaluations < 1:
            raise InvalidArgumentError(f"the denoiser's evaluations must be a positive int, got {evaluations!r}")
        self.evaluations = evaluations

    # -- constructors -----------------------------------------------------------------------------------
    @classmethod
    def wrap(cls, denoiser: Denoiser | Callable[..., Tensor], **options: Any) -> Denoiser:
        """``denoiser`` itself when it is a :class:`Denoiser`, else ``Denoiser(denoiser, **options)``.

        A callable with a ``prediction_type`` attribute (e.g. a bundled network) gets that prediction type.

        Parameters
        ----------
        denoiser : Denoiser or callable
            A ready :class:`Denoiser`, or a network ``f(x_t, t, **conditioning)`` mapping a batch of shape
            (B, *event) and an integer timestep to a prediction of shape (B, *event).
        **options
            :class:`Denoiser` options, for a callable only.

        Returns
        -------
        Denoiser

        Raises
        ------
        InvalidArgumentError
            If options are given with a ready :class:`Denoiser`.
        """
        if isinstance(denoiser, Denoiser):
            if options:
                raise InvalidArgumentError(f"options {sorted(options)} given with a ready Denoiser")
            return denoiser
        declared = getattr(denoiser, "prediction_type", None)
        if "prediction_type" not in options and isinstance(declared, str):
            options["prediction_type"] = declared
        return cls(denoiser, **options)

    @classmethod
    def from_unet(cls, unet: Any, scheduler: Any = None, **options: Any) -> Denoiser:
        """Wrap a diffusers ``UNet2DModel`` or ``UNet2DConditionModel``.

        The wrapper calls ``unet(x_t, t, **conditioning).sample``; for ``UNet2DConditionModel`` pass the
        precomputed ``encoder_hidden_states`` (and any other keyword) as conditioning, e.g. through
        ``RewardSteering(conditioning={"encoder_hidden_states": states})`` with one row per group.

        Parameters
        ----------
        unet : diffusers model
        scheduler : diffusers scheduler, optional
            Its config supplies ``prediction_type``, ``clip_sample``, ``clip_sample_range``, ``thresholding``,
            ``dynamic_thresholding_ratio`` and ``sample_max_value`` (explicit ``options`` win).
        **options
            As for :class:`Denoiser`.
        """
        if scheduler is not None:
            options = {**scheduler_options(scheduler), **options}

        def call(x_t: Tensor, t: int, **conditioning: Any) -> Tensor:
            return unet(x_t, t, **conditioning).sample

        call.__qualname__ = f"from_unet({type(unet).__name__})"
        denoiser = cls(call, **options)
        denoiser.module = unet  # type: ignore[attr-defined]
        return denoiser

    # -- evaluation -------------------------------------------------------------------------------------
    def __call__(self, x_t: Tensor, t: int, alpha_bar: float, **conditioning: Any) -> DenoiserOutput:
        """Evaluate the network at ``(x_t, t)`` and convert its output (see :meth:`convert`).

        Parameters
        ----------
        x_t : tensor, shape (B, *event)
        t : int
            The timestep passed to the network.
        alpha_bar : float
            ``abar_t`` of that timestep.
        **conditioning
            Passed to the network.

        Returns
        -------
        DenoiserOutput

        Raises
        ------
        InvalidArgumentError
            If the output's shape differs from the input's.
        BackendError
            If its dtype or device differs.
        """
        output = self.fn(x_t, t, **conditioning)
        if tuple(output.shape) != tuple(x_t.shape):
            raise InvalidArgumentError(
                f"the denoiser returned shape {tuple(output.shape)} for an input of shape {tuple(x_t.shape)}; "
                "learned-variance outputs (twice the channels) are not supported"
            )
        if output.dtype != x_t.dtype or output.device != x_t.device:
            raise BackendError(
                f"the denoiser returned {output.dtype} on {output.device} for an input of {x_t.dtype} on "
                f"{x_t.device}; run the network in the particles' dtype and device"
            )
        return self.convert(output, x_t, alpha_bar)

    def convert(self, output: Tensor, x_t: Tensor, alpha_bar: float) -> DenoiserOutput:
        """The noise and Tweedie estimates from a network output at noise level ``alpha_bar``.

        Parameters
        ----------
        output : tensor, shape (B, *event)
            The network's prediction, of this denoiser's ``prediction_type`` (epsilon, sample or v).
        x_t : tensor, shape (B, *event)
            The noisy input it was computed from.
        alpha_bar : float
            The input's noise level, in [0, 1) (0, pure noise, only for sample and v predictions).

        Returns
        -------
        DenoiserOutput
            ``eps`` and ``x0_hat``, each of shape (B, *event); ``x0_hat`` clipped or thresholded as configured
            (and ``eps`` made consistent with it when ``use_clipped_model_output`` is set).

        Raises
        ------
        InvalidArgumentError
            For an epsilon prediction at ``alpha_bar = 0``.
        """
        a = float(alpha_bar)
        sa, sb = math.sqrt(a), math.sqrt(1.0 - a)
        if a == 0.0 and self.prediction_type == "epsilon":
            raise InvalidArgumentError(
                "at a level of pure noise (alphas_cumprod = 0, zero terminal SNR) the noise prediction says nothing "
                "about x0: zero-terminal-SNR models predict v (prediction_type='v_prediction') or the sample"
            )
        if self.prediction_type == "epsilon":
            eps = output
            x0 = (x_t - sb * eps) / sa
        elif self.prediction_type == "sample":
            x0 = output
            eps = (x_t - sa * x0) / sb
        else:
            x0 = sa * x_t - sb * output
            eps = sa * output + sb * x_t
        x0_hat = self.clip(x0)
        if self.use_clipped_model_output and x0_hat is not x0:
            eps = (x_t - sa * x0_hat) / sb
        return DenoiserOutput(eps, x0_hat)

    def clip(self, x0: Tensor) -> Tensor:
        """Apply the configured thresholding or clipping to ``x0`` (shape (B, *event)); identity when off."""
        if self.thresholding:
            return self._threshold(x0)
        if self.clip_sample:
            return x0.clamp(-self.clip_sample_range, self.clip_sample_range)
        return x0

    def _threshold(self, x0: Tensor) -> Tensor:
        import torch

        # torch.quantile needs float32 or wider; the result goes back to the particles' dtype, as in diffusers
        flat = x0.reshape(x0.shape[0], -1).to(torch.promote_types(x0.dtype, torch.float32))
        s = torch.quantile(flat.abs(), self.dynamic_thresholding_ratio, dim=1, keepdim=True)
        s = s.clamp(min=1.0, max=self.sample_max_value)
        return (torch.maximum(torch.minimum(flat, s), -s) / s).reshape(x0.shape).to(x0.dtype)

    def __repr__(self) -> str:
        clip = (
            "threshold"
            if self.thresholding
            else (f"clip={self.clip_sample_range:g}" if self.clip_sample else "no clip")
        )
        fn = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        return f"Denoiser({fn}, {self.prediction_type}, {clip})"
