"""smckit's plugins: named resamplers, potentials and proposals, from smckit itself and from other packages.

Use a scheme by name::

    >>> from smckit.plugins import make_resampler
    >>> resampler = make_resampler("systematic")            # doctest: +SKIP
    >>> resampler = make_resampler("pysmckit:systematic")   # doctest: +SKIP

Provide one from your own package: implement a hook with :data:`hookimpl` in a module and name that module in
your distribution's ``pyproject.toml``::

    [project.entry-points."smckit.plugins"]
    my-plugin = "my_package.smckit_plugin"

How names resolve (see :mod:`smckit.plugins.registry`): ``"distribution:name"`` always works; a bare name works
when one plugin claims it; two third-party plugins claiming one bare name make it ambiguous
(:class:`~smckit.errors.AmbiguousPluginError`); a third party cannot take a built-in's bare name (its
registration is reported as a conflict and stays reachable under its qualified name only); unknown names raise
:class:`~smckit.errors.UnknownPluginError` listing what is available and what failed to load.

Loading is lazy (first use) and cached; ``SMCKIT_DISABLE_PLUGIN_AUTOLOAD=1`` skips the entry points and
``SMCKIT_STRICT_PLUGINS=1`` turns plugin errors into exceptions (see :mod:`smckit.plugins.loader`).
"""

from __future__ import annotations

from typing import Any, overload

from smckit.plugins.hooks import SMCKitHookSpecs, hookimpl, hookspec
from smckit.plugins.loader import (
    get_plugin_manager,
    get_registry,
    load,
    plugins,
    register_plugin,
    reset,
    unregister_plugin,
)
from smckit.plugins.registry import KINDS, Conflict, Entry, PluginRecord, Registry, SMCKitPluginWarning

__all__ = [
    "hookimpl",
    "hookspec",
    "SMCKitHookSpecs",
    "KINDS",
    "make_resampler",
    "make_potential",
    "make_proposal",
    "available",
    "plugins",
    "get_registry",
    "get_plugin_manager",
    "register_plugin",
    "unregister_plugin",
    "load",
    "reset",
    "Entry",
    "Conflict",
    "PluginRecord",
    "Registry",
    "SMCKitPluginWarning",
]


def make_resampler(name: str, **options: Any) -> Any:
    """Create the resampler registered as ``name`` with keyword ``options``.

    Parameters
    ----------
    name : str
        A bare name (``"systematic"``), an alias, or a qualified name (``"pysmckit:systematic"``).
    **options
        Passed to the scheme's factory.

    Returns
    -------
    Resampler

    Raises
    ------
    UnknownPluginError
        No resampler has this name (the message lists the available ones and the plugins that failed to load).
    AmbiguousPluginError
        Several third-party plugins claim this bare name (the message lists the qualified names).
    InvalidArgumentError
        The factory does not accept these options.
    """
    return get_registry().make("resampler", name, **options)


def make_potential(name: str, **options: Any) -> Any:
    """Create the potential registered as ``name`` with keyword ``options`` (lookup as in :func:`make_resampler`)."""
    return get_registry().make("potential", name, **options)


def make_proposal(name: str, **options: Any) -> Any:
    """Create the proposal registered as ``name`` with keyword ``options`` (lookup as in :func:`make_resampler`)."""
    return get_registry().make("proposal", name, **options)


@overload
def available(kind: None = None) -> dict[str, list[str]]: ...
@overload
def available(kind: str) -> list[str]: ...
def available(kind: str | None = None) -> dict[str, list[str]] | list[str]:
    """The names you can use, one per registered entry, sorted.

    Each entry is listed by its bare name when that name finds it, otherwise (a name shared by several
    plugins, or a plugin's name that belongs to a built-in) by its qualified ``"distribution:name"``.

    Parameters
    ----------
    kind : {"resampler", "potential", "proposal"}, optional
        One kind; default: all, as a dict keyed by kind.

    Returns
    -------
    list of str, or dict of str to list of str

    Raises
    ------
    InvalidArgumentError
        For an unknown kind.
    """
    registry = get_registry()
    if kind is None:
        return {k: registry.available(k) for k in KINDS}
    return registry.available(kind)
