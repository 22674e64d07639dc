"""A working plugin: one name of each kind, and the name "dup" that plugin b claims too."""

from smckit.plugins import hookimpl


class Made:
    def __init__(self, origin: str, **options):
        self.origin = origin
        self.options = options


def make_dup(**options):
    """Plugin a's dup."""
    return Made("a", **options)


def make_only_a(level: int = 0):
    """Only plugin a has this one."""
    return Made("a", level=level)


@hookimpl
def smckit_register_resamplers(register):
    register("dup", make_dup)
    register("only-a", make_only_a, aliases="a-alias")


@hookimpl
def smckit_register_potentials(register):
    register("pot-a", make_only_a)


@hookimpl
def smckit_register_proposals(register):
    register("prop-a", make_only_a)
