"""Parameter inference with particle methods: PMMH, particle Gibbs and SMC^2.

- :func:`pmmh`: particle marginal Metropolis-Hastings, the likelihood of each proposed parameter estimated by a
  particle filter;
- :func:`particle_gibbs`: conditional SMC with ancestor or backward sampling, alternating with Metropolis updates
  of the parameter given the path;
- :func:`smc2`: SMC^2, an SMC sampler over the parameter whose particles each carry a particle filter, with
  PMMH rejuvenation and an adaptive number of inner particles.

Each takes ``model_of(theta)``, a function returning any :class:`smckit.FeynmanKac` model whose evidence is the
likelihood of theta, and returns :class:`Chains` or :class:`WeightedSamples` with ``to_arviz()``.
"""

from smckit.inference.chains import Chains, WeightedSamples, effective_sample_size
from smckit.inference.conditional import ConditionalResampler, Pinned, conditional_smc
from smckit.inference.particle_gibbs import complete_log_likelihood, particle_gibbs
from smckit.inference.pmmh import pmmh
from smckit.inference.smc2 import smc2

__all__ = [
    "pmmh",
    "particle_gibbs",
    "smc2",
    "Chains",
    "WeightedSamples",
    "effective_sample_size",
    "conditional_smc",
    "Pinned",
    "ConditionalResampler",
    "complete_log_likelihood",
]
