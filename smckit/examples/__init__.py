"""Application code built on smckit: the bundled 8x8 digits diffusion example and the ``smckit demo`` comparison.

- :mod:`smckit.examples.digits`: a tiny DDPM and a digit classifier trained on scikit-learn's bundled digits
  (weights shipped as package data, ``smckit/examples/data/digits.npz``), the class reward and a feature-space
  FID;
- :mod:`smckit.examples.demo`: ``smckit demo``, which steers that model to one class with several resamplers at
  an equal number of denoiser calls and tabulates the outcome.

Nothing in the core imports this package (only the ``smckit demo`` command loads it, on use); it needs the
``diffusion`` extra (torch) and scikit-learn. Importing :mod:`smckit.examples` itself imports nothing.
"""

__all__: list[str] = []
