"""A second working plugin that also claims the resampler name "dup"."""

from smckit.plugins import hookimpl


class Made:
    def __init__(self, origin: str, **options):
        self.origin = origin
        self.options = options


@hookimpl
def smckit_register_resamplers(register):
    register("dup", lambda **options: Made("b", **options), description="plugin b's dup")
    register("only-b", lambda: Made("b"))
