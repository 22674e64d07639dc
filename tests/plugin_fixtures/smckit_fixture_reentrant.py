"""A plugin whose hook looks a name up while plugins are being loaded (not allowed)."""

from smckit.plugins import hookimpl, make_resampler


@hookimpl
def smckit_register_resamplers(register):
    register("reentrant", make_resampler("builtin-scheme").__class__)
