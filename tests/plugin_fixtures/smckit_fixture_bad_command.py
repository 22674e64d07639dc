"""A plugin that tries to replace the built-in ``smckit plugins`` command."""

from smckit.plugins import hookimpl


@hookimpl
def smckit_register_commands(subparsers):
    parser = subparsers.add_parser("plugins")
    parser.set_defaults(func=lambda args: 99)
