"""The plugin module named by the ``smckit.plugins`` entry point: registers ``vasr``."""

from __future__ import annotations

from typing import Any

from smckit.plugins import hookimpl

from smckit_vasr.resampler import VASR

__all__ = ["smckit_register_resamplers"]

DESCRIPTION = (
    "VASR (arXiv 2604.06779 v2): systematic resampling of the allocation mass W eta given by the model's "
    "look-ahead (unbiased, floor/ceil counts); records the mass's ESS fraction"
)


@hookimpl
def smckit_register_resamplers(register: Any) -> None:
    """Register :class:`~smckit_vasr.VASR` as ``"vasr"``."""
    register("vasr", VASR, description=DESCRIPTION)
