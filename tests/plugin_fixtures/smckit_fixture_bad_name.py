"""A plugin that registers an invalid name (':' is reserved for qualified names)."""

from smckit.plugins import hookimpl


@hookimpl
def smckit_register_resamplers(register):
    register("bad:name", dict)
