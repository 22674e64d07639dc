"""The plugin module named by the ``smckit.plugins`` entry point: registers ``fleming-viot`` (alias ``fvd``)."""

from __future__ import annotations

from typing import Any

from smckit.plugins import hookimpl

from smckit_fvd.resampler import FlemingViot

__all__ = ["smckit_register_resamplers"]

DESCRIPTION = (
    "Fleming-Viot birth-death resampling (arXiv 2604.06779 v1): Bernoulli survival min(1, n W_i), rebirth "
    "from excess weight (unbiased), optional absorption-rate control of the selection exponent"
)


@hookimpl
def smckit_register_resamplers(register: Any) -> None:
    """Register :class:`~smckit_fvd.FlemingViot` as ``"fleming-viot"`` with the alias ``"fvd"``."""
    register("fleming-viot", FlemingViot, aliases=("fvd",), description=DESCRIPTION)
