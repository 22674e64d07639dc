"""smckit-vasr: VASR, variance-aware allocation then systematic resampling (arXiv 2604.06779 **v2**), for smckit.

Version 2 of that arXiv identifier (Shekhar, Mukherjee, Zhang and Zhang, "VASR: Variance-Aware Systematic
Resampling for Reward-Guided Diffusion", May 2026) is this method; version 1 is Fleming-Viot resampling
(plugin smckit-fvd). After ``pip install smckit-vasr``::

    import smckit
    from smckit.diffusion.lookahead import RewardLookahead
    from smckit_vasr import VASRMax

    vasr = smckit.run(RewardLookahead(model), 256, resampler="vasr")          # the allocation W e^r, exact
    vasr_max = smckit.run(VASRMax(RewardLookahead(model)), 256, resampler="vasr",
                          policy=smckit.Always())                              # deliberately biased

- :class:`VASR` (``"vasr"``): systematic resampling of the mass the engine hands it, ``W eta`` when the model has a
  look-ahead; the copies carry ``1 / eta`` (engine), so the target and the evidence stay exact.
- :class:`VASRMax`: the biased variant, a model wrapper (see :mod:`smckit_vasr.biased` for smckit's reading).
"""

from smckit_vasr.biased import VASRMax
from smckit_vasr.resampler import VASR

__all__ = ["VASR", "VASRMax"]
__version__ = "0.1.0"
