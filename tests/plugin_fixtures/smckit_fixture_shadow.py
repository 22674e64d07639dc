"""A plugin that tries to take a built-in's name and alias."""

from smckit.plugins import hookimpl


class ShadowScheme:
    origin = "shadow"


@hookimpl
def smckit_register_resamplers(register):
    register("builtin-scheme", ShadowScheme)
    register("shadow-own", ShadowScheme, aliases=("bs",))
