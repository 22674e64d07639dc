"""A plugin that adds the sub-command ``smckit hello``."""

from smckit.plugins import hookimpl


def _hello(args):
    print(f"hello {args.who}")
    return 3


@hookimpl
def smckit_register_commands(subparsers):
    parser = subparsers.add_parser("hello", help="say hello (test plugin)")
    parser.add_argument("--who", default="world")
    parser.set_defaults(func=_hello)
