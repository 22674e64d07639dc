"""A plugin whose hook registers one name and then raises: nothing of it may be kept."""

from smckit.plugins import hookimpl


@hookimpl
def smckit_register_resamplers(register):
    register("half-registered", dict)
    raise RuntimeError("hook failure on purpose")
