"""Capture the ``smckit`` command line's help texts at build time, so the CLI page never drifts from the code.

``conf.py`` calls :func:`generate`, which writes ``api/generated/cli/<name>.txt`` for :data:`COMMANDS`; the page
``cli.rst`` includes them with ``literalinclude``.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

COMMANDS: dict[str, list[str]] = {
    "smckit": ["--help"],
    "plugins": ["plugins", "--help"],
    "plugins-output": ["plugins"],
    "demo": ["demo", "--help"],
    "bench": ["bench", "--help"],
}


def capture(argv: list[str]) -> str:
    """What ``smckit ARGV`` prints (stdout and stderr), with a fixed terminal width."""
    from smckit.cli import main

    out = io.StringIO()
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            main(argv)
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return out.getvalue().rstrip() + "\n"


def generate(srcdir: Path) -> None:
    """Write the captured texts under ``srcdir/api/generated/cli``."""
    out = Path(srcdir) / "api" / "generated" / "cli"
    out.mkdir(parents=True, exist_ok=True)
    for name, argv in COMMANDS.items():
        (out / f"{name}.txt").write_text(capture(argv), encoding="utf-8")
