"""Stands in for a built-in registration module (tests set loader.BUILTIN_MODULES to include it)."""

from smckit.plugins import hookimpl


class BuiltinScheme:
    """A built-in scheme for the tests."""

    origin = "builtin"

    def __init__(self, scale: float = 1.0):
        self.scale = scale


@hookimpl
def smckit_register_resamplers(register):
    register("builtin-scheme", BuiltinScheme, aliases=("bs",))


@hookimpl
def smckit_register_potentials(register):
    register("builtin-potential", BuiltinScheme, description="a built-in potential")
