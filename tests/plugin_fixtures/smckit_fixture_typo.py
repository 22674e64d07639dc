"""A plugin with a misspelt hook name (resampler instead of resamplers)."""

from smckit.plugins import hookimpl


@hookimpl
def smckit_register_resampler(register):
    register("never-registered", dict)
