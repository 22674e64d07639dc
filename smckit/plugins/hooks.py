"""The hook specifications a smckit plugin implements.

A plugin is a module (or object) named by an entry point in the group ``smckit.plugins``. It implements
any of the hooks below with the :data:`hookimpl` marker; each hook receives a ``register`` callback:

.. code-block:: python

    from smckit.plugins import hookimpl

    @hookimpl
    def smckit_register_resamplers(register):
        register("my-scheme", MyScheme, aliases=("mine",), description="what it does")

``register(name, factory, *, aliases=(), description="")`` records ``factory``, a callable that takes the
scheme's keyword options and returns the object (for resamplers: a :class:`smckit.Resampler`).
"""

from __future__ import annotations

from typing import Any

import pluggy

__all__ = ["PROJECT", "hookspec", "hookimpl", "SMCKitHookSpecs"]

PROJECT = "smckit"
"""The pluggy project name of smckit's hooks."""

hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks smckit's hook specifications (used by smckit itself)."""

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's hook implementations: decorate ``smckit_register_resamplers`` and the other hooks with it."""


class SMCKitHookSpecs:
    """Hook specifications (pluggy) of smckit."""

    @hookspec
    def smckit_register_resamplers(self, register: Any) -> None:
        """Register resampling schemes: ``register(name, factory, *, aliases=(), description="")``."""

    @hookspec
    def smckit_register_potentials(self, register: Any) -> None:
        """Register potentials (e.g. diffusion reward potentials) by name."""

    @hookspec
    def smckit_register_proposals(self, register: Any) -> None:
        """Register proposals (Markov kernels, e.g. diffusion reverse steps) by name."""

    @hookspec
    def smckit_register_commands(self, subparsers: Any) -> None:
        """Add sub-commands to the ``smckit`` command line (``argparse`` sub-parsers).

        Each added parser should set ``func`` with ``parser.set_defaults(func=callable)``; the callable
        takes the parsed ``argparse.Namespace`` and returns an exit code.
        """
