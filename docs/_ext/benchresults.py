"""Show ``benchmarks/RESULTS.md`` on the benchmarks page, adapted to its place in the documentation.

The results file is written for reading in the repository: its headings start at level one and its links and
images are relative to ``benchmarks/``. :func:`render` returns it with every heading one level lower (the page
has its own title), images re-pointed from ``docs/`` (where the including page lives), and links to other
repository files turned into their paths in code font (they are not documentation pages). ``conf.py`` writes the
result to ``api/generated/benchmark-results.md``, which ``benchmarks.md`` includes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,5})(\s)", re.MULTILINE)


def _external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target)) or target.startswith("#")


def render(results: Path, docs: Path) -> str:
    """The text of ``results`` ready to be included by a page in ``docs``."""
    text = results.read_text(encoding="utf-8")
    folder = results.parent
    # Work outside fenced code blocks only.
    parts = re.split(r"(^(?:```|~~~).*?^(?:```|~~~)[^\n]*$)", text, flags=re.MULTILINE | re.DOTALL)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part)
            continue
        part = _HEADING.sub(lambda m: "#" + m.group(1) + m.group(2), part)
        part = _IMAGE.sub(
            lambda m: (
                m.group(0)
                if _external(m.group(2))
                else f"![{m.group(1)}]({Path(os.path.relpath(folder / m.group(2), docs)).as_posix()})"
            ),
            part,
        )
        part = _LINK.sub(
            lambda m: (
                m.group(0)
                if _external(m.group(2))
                else f"{m.group(1)} (`{Path(os.path.relpath(folder / m.group(2), docs.parent)).as_posix()}`)"
            ),
            part,
        )
        out.append(part)
    return "".join(out)
