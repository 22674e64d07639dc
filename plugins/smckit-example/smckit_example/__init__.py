"""smckit-example: a minimal third-party resampler plugin for smckit, meant to be copied.

After ``pip install smckit-example``, smckit finds it through the ``smckit.plugins`` entry point::

    import smckit

    result = smckit.run(model, 1000, resampler="shuffled-systematic")
    result = smckit.run(model, 1000, resampler="smckit-example:shuffled-systematic")  # qualified name
"""

from smckit_example.resampler import ShuffledSystematic

__all__ = ["ShuffledSystematic"]
__version__ = "0.1.0"
