"""smckit-fvd: the Fleming-Viot resampler for smckit, as a plugin.

Registers the resampling scheme ``"fleming-viot"`` (alias ``"fvd"``) through the ``smckit.plugins`` entry
point, so that ``smckit.run(model, n, resampler="fvd")`` works once this distribution is installed, and
``smckit.plugins.make_resampler("fvd", absorption=0.3)`` builds a configured instance.

Method: Shekhar, Mukherjee, Zhang and Zhang, *Fleming-Viot Diffusion*, arXiv 2604.06779 v1 (April 2026).
Version 2 of that arXiv identifier describes a different method (VASR); cite v1.
"""

from smckit_fvd.controller import (
    AbsorptionController,
    ExactBisection,
    RobbinsMonro,
    expected_death_fraction,
    relative_weights,
)
from smckit_fvd.resampler import PARENT_RULES, FlemingViot

__version__ = "0.1.0"

__all__ = [
    "FlemingViot",
    "PARENT_RULES",
    "AbsorptionController",
    "RobbinsMonro",
    "ExactBisection",
    "expected_death_fraction",
    "relative_weights",
    "__version__",
]
