"""Maths rendered without the network: MathJax 3 served from the built site itself, never from a CDN.

MathJax (3.2.2) comes from the PyPI package ``sphinx-mathjax-offline`` (in the ``docs`` extra), which ships it as
static files; this extension copies the TeX-to-CommonHTML component, with the fonts, extensions and menu it
loads on demand, into ``_static/mathjax`` of the HTML output, and points ``mathjax_path`` there. A build without
the package fails with an error that says how to install it, rather than quietly linking to the network.

KaTeX (npm) would need Node at build time, and ``sphinx.ext.imgmath`` needs a LaTeX installation; a wheel from
the same registry as the rest of the docs toolchain needs neither.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from sphinx.errors import ExtensionError
from sphinx.util.fileutil import copy_asset

PACKAGE = "sphinx-mathjax-offline"
ENTRY = "tex-chtml.js"
TARGET = "_static/mathjax"


def mathjax_source() -> Path | None:
    """The folder of MathJax's files in the installed package, or None."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "static" / "mathjax"
    return folder if (folder / ENTRY).is_file() else None


def _copy(app: Any, exc: Exception | None) -> None:
    if exc is not None or app.builder.format != "html":
        return
    source = mathjax_source()
    assert source is not None  # checked in setup
    target = Path(app.outdir) / TARGET
    target.mkdir(parents=True, exist_ok=True)
    copy_asset(str(source / ENTRY), str(target))
    # The component loads these on demand: TeX extensions, the CommonHTML fonts, the menu, accessibility.
    for sub in ("input", "output/chtml", "ui", "a11y", "sre", "adaptors"):
        if (source / sub).is_dir():
            copy_asset(str(source / sub), str(target / sub))


def setup(app: Any) -> dict[str, Any]:
    """Register the copy step and set ``mathjax_path`` to the local copy."""
    if mathjax_source() is None:
        raise ExtensionError(
            f"the docs render maths offline with the MathJax files of the {PACKAGE!r} package, which is not "
            f"installed: pip install {PACKAGE} (or pip install -e '.[docs]')"
        )
    app.config.mathjax_path = "mathjax/" + ENTRY
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
