"""Fake installed distributions for the plugin tests.

:class:`FakePlugins` writes ``<name>-<version>.dist-info`` folders (METADATA and entry_points.txt) into a
temporary folder, so that :mod:`importlib.metadata` sees them as installed distributions with real names and
versions. In-process tests point :func:`smckit.plugins.loader._entry_points` at these distributions only; tests
that start a subprocess put the folder on ``PYTHONPATH`` instead.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent
GROUP = "smckit.plugins"


class FakePlugins:
    """Fake distributions with ``smckit.plugins`` entry points, in ``folder``."""

    def __init__(self, folder: Path, monkeypatch=None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.monkeypatch = monkeypatch
        if monkeypatch is not None:
            from smckit.plugins import loader

            monkeypatch.setattr(loader, "_entry_points", self.entry_points)

    def install(self, distribution: str, version: str, entry_points: dict[str, str]) -> None:
        """Create the distribution ``distribution`` ``version`` whose entry points map names to modules."""
        stem = re.sub(r"[-_.]+", "_", distribution)
        info = self.folder / f"{stem}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
        lines = [f"[{GROUP}]", *(f"{name} = {value}" for name, value in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")

    def entry_points(self) -> list[importlib.metadata.EntryPoint]:
        """The ``smckit.plugins`` entry points of the fake distributions only, sorted by distribution."""
        dists = sorted(importlib.metadata.distributions(path=[str(self.folder)]), key=lambda d: d.name)
        return [ep for d in dists for ep in d.entry_points if ep.group == GROUP]

    def env(self, **extra: str) -> dict[str, str]:
        """An environment for a subprocess that sees the fake distributions and the fixture modules."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMCKIT_")}
        paths = [str(self.folder), str(FIXTURES), os.environ.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        env.update(extra)
        return env
