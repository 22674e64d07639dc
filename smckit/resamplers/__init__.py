"""The standard resampling schemes, registered through the same plugin hook as any third-party scheme.

Each scheme is a class whose instances are resamplers (see :class:`smckit.Resampler`): ``name``,
``capabilities`` and ``__call__(log_weights, rng, *, n_out=None) -> Resampled``. They take unnormalised
log-weights of shape ``(*batch, n)`` (``-inf`` is a weight of zero), are O(n) per row with no Python loop over
particles, and run on numpy and torch (CPU and CUDA) in float32 and float64 from one implementation.

==============  ==========  ============  ==============  =======  ==============================
name            unbiased    count bounds  n_out != n      sorted   notes
==============  ==========  ============  ==============  =======  ==============================
multinomial     yes         none          yes             yes      iid draws, sorted uniforms
systematic      yes         floor/ceil    yes             yes      one uniform per row
stratified      yes         none          yes             yes      one uniform per stratum
residual        yes         >= floor      yes             yes      floors + multinomial remainder
ssp             yes         floor/ceil    no              yes      Srinivasan sampling process
killing         yes         none          no              no       survivors keep their slot
==============  ==========  ============  ==============  =======  ==============================

With numba installed (the ``fast`` extra), arrays in host memory (numpy, CPU tensors) go to fused compiled
kernels that return the same ancestors as the array-API code on numpy, bit for bit (a CPU tensor is resampled
through a numpy view). :func:`use_numba` switches them off in a block of code, the environment variable
``SMCKIT_NUMBA=0`` everywhere; a CPU tensor then runs torch's operations, whose ``exp`` and sums may round
differently in the last bit, so its ancestors can differ in rare cases.

Every scheme is built from :mod:`smckit.resamplers.kit`, the toolbox for writing one's own: row preparation and
validation, cumulative counts, :func:`refill`, and the skeleton :class:`~smckit.resamplers.kit.Scheme`.
"""

from __future__ import annotations

from typing import Any

from smckit.plugins.hooks import hookimpl
from smckit.resamplers._compiled import use_numba
from smckit.resamplers.base import Capabilities, Resampled, Resampler
from smckit.resamplers.killing import Killing
from smckit.resamplers.kit import refill
from smckit.resamplers.multinomial import Multinomial
from smckit.resamplers.residual import Residual
from smckit.resamplers.ssp import SSP
from smckit.resamplers.stratified import Stratified
from smckit.resamplers.systematic import Systematic

__all__ = [
    "BUILTIN",
    "Capabilities",
    "Killing",
    "Multinomial",
    "Resampled",
    "Resampler",
    "Residual",
    "SSP",
    "Stratified",
    "Systematic",
    "refill",
    "smckit_register_resamplers",
    "use_numba",
]

BUILTIN: dict[str, tuple[type, str]] = {
    "multinomial": (Multinomial, "independent draws from the weights (sorted uniforms, counting merge)"),
    "systematic": (Systematic, "one uniform per row; counts are floor or ceil of n*W_i"),
    "stratified": (Stratified, "one uniform per stratum [k/n, (k+1)/n)"),
    "residual": (Residual, "floor(n*W_i) copies, the remainder drawn multinomially"),
    "ssp": (SSP, "Srinivasan sampling process; counts floor or ceil of n*W_i, keeps n"),
    "killing": (Killing, "survive with probability W_i/max W, killed slots redrawn; keeps n"),
}
"""The built-in schemes: name -> (factory, one-line description)."""


@hookimpl
def smckit_register_resamplers(register: Any) -> None:
    """Register the built-in schemes (the factory is the class; none takes options)."""
    for name, (factory, description) in BUILTIN.items():
        register(name, factory, description=description)
