"""``python -m smckit``: the same as the ``smckit`` command (see :mod:`smckit.cli`)."""

import sys

from smckit.cli import main

if __name__ == "__main__":
    sys.exit(main())
