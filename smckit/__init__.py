"""smckit: Sequential Monte Carlo on the Feynman-Kac formalism, for numpy and torch.

The public API: :func:`run` and :class:`SMC` (the engine), :class:`FeynmanKac` (the model class),
:class:`Resampled` (what a resampler returns), the resampling policies and the errors.
"""

from smckit._version import __version__
from smckit.engine import SMC, Step, run
from smckit.errors import (
    AmbiguousPluginError,
    BackendError,
    ExtinctionError,
    InvalidArgumentError,
    InvalidWeightsError,
    PluginConflictError,
    PluginError,
    PluginLoadError,
    ProcessGroupError,
    ShapeError,
    SMCError,
    SMCWarning,
    UnknownPluginError,
)
from smckit.model import FeynmanKac
from smckit.policy import Always, ESSBelow, Every, Never, Policy, Window
from smckit.random import RNG
from smckit.resamplers.base import Capabilities, Resampled, Resampler
from smckit.result import History, Result

__all__ = [
    "run",
    "SMC",
    "Step",
    "FeynmanKac",
    "Result",
    "History",
    "Resampled",
    "Resampler",
    "Capabilities",
    "RNG",
    "Policy",
    "ESSBelow",
    "Always",
    "Every",
    "Window",
    "Never",
    "SMCError",
    "InvalidArgumentError",
    "ShapeError",
    "BackendError",
    "InvalidWeightsError",
    "ExtinctionError",
    "PluginError",
    "UnknownPluginError",
    "AmbiguousPluginError",
    "PluginConflictError",
    "PluginLoadError",
    "ProcessGroupError",
    "SMCWarning",
    "__version__",
]
