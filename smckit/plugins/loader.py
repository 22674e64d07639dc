"""Finding and loading plugins: smckit's built-ins first, then the ``smckit.plugins`` entry points, one by one.

Loading happens once, on first use of the registry, and is cached until :func:`reset`. The order is:

1. built-ins, through the same hooks as anyone else: :data:`BUILTIN_MODULES` (modules imported by name, so
   that nothing heavy is imported when ``smckit`` is). An optional built-in whose dependencies are missing is
   recorded as ``"unavailable"`` without a warning;
2. third-party plugins: each entry point of the group ``smckit.plugins`` is imported and registered on its own.
   One that fails to import, fails pluggy's validation or whose hook raises is recorded as ``"failed"`` (with
   the error) and warned about with :class:`SMCKitPluginWarning`; nothing it registered is kept, and the
   others still load. Registrations are staged per plugin and committed only when all its hooks succeeded;
3. plugins given to :func:`register_plugin` (notebooks, tests), in call order.

Environment switches, read at load time:

``SMCKIT_DISABLE_PLUGIN_AUTOLOAD=1``
    Do not import entry points (built-ins and :func:`register_plugin` still work). The entry points found are
    listed with status ``"disabled"``.
``SMCKIT_STRICT_PLUGINS=1``
    Strict mode: a plugin that fails to load raises :class:`~smckit.errors.PluginLoadError`, and a plugin that
    claims a built-in's name, a name twice, or a bare name that an earlier third-party plugin claims raises
    :class:`~smckit.errors.PluginConflictError`. Outside strict mode each of these is a
    :class:`SMCKitPluginWarning`, and the plugin is listed with the status ``"conflict"``.

Registration modules (built-in or not) should be cheap to import: import heavy libraries such as torch inside
the factories, not at module level, because every first registry lookup imports every registration module.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import threading
import types
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from smckit.errors import InvalidArgumentError, PluginConflictError, PluginError, PluginLoadError
from smckit.plugins.hooks import PROJECT, SMCKitHookSpecs
from smckit.plugins.registry import (
    BUILTIN_DISTRIBUTION,
    CONFLICT,
    DISABLED,
    FAILED,
    LOADED,
    UNAVAILABLE,
    Conflict,
    Entry,
    PluginRecord,
    Registry,
    SMCKitPluginWarning,
    check_name,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_DISABLE_AUTOLOAD",
    "ENV_STRICT",
    "BUILTIN_MODULES",
    "load",
    "get_registry",
    "get_plugin_manager",
    "plugins",
    "register_plugin",
    "unregister_plugin",
    "register_commands",
    "reset",
    "strict_from_env",
    "autoload_from_env",
]

ENTRY_POINT_GROUP = "smckit.plugins"
"""The entry-point group a plugin distribution declares its module in."""

ENV_DISABLE_AUTOLOAD = "SMCKIT_DISABLE_PLUGIN_AUTOLOAD"
"""Set to 1 to load only the built-ins (entry points are listed as disabled, not imported)."""

ENV_STRICT = "SMCKIT_STRICT_PLUGINS"
"""Set to 1 to turn plugin load errors and conflicts into exceptions."""

BUILTIN_MODULES = ("smckit.resamplers", "smckit.diffusion.registry")
"""Modules that register smckit's own resamplers, potentials and proposals, loaded in this order."""

OPTIONAL_BUILTINS: dict[str, tuple[str, ...]] = {
    # module -> the missing modules that make it "unavailable" rather than "failed"
    "smckit.diffusion.registry": ("smckit.diffusion", "smckit.diffusion.registry", "torch", "diffusers"),
}
_EXTRA_HINT = {"smckit.diffusion.registry": "the 'diffusion' extra: pip install -e '.[diffusion]' in a clone of smckit"}

HOOKS = {
    "resampler": "smckit_register_resamplers",
    "potential": "smckit_register_potentials",
    "proposal": "smckit_register_proposals",
}
COMMANDS_HOOK = "smckit_register_commands"

_TRUE = frozenset({"1", "true", "yes", "on"})


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def strict_from_env() -> bool:
    """Whether ``SMCKIT_STRICT_PLUGINS`` asks for strict mode (``1``, ``true``, ``yes`` or ``on``)."""
    return _env_flag(ENV_STRICT)


def autoload_from_env() -> bool:
    """Whether entry points are loaded: false when ``SMCKIT_DISABLE_PLUGIN_AUTOLOAD`` is set to a true value."""
    return not _env_flag(ENV_DISABLE_AUTOLOAD)


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    """The entry points of the group ``smckit.plugins`` (tests replace this function with fakes)."""
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _origin(ep: importlib.metadata.EntryPoint) -> tuple[str, str | None]:
    """The distribution name and version of an entry point (its own name when it has no distribution)."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ep.name, None
    try:
        return dist.name, dist.version
    except Exception:  # broken metadata: still usable by entry-point name
        return ep.name, None


def _builtin_version() -> str:
    from smckit._version import __version__

    return __version__


def _describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Programmatic:
    obj: Any
    name: str
    distribution: str
    version: str | None
    module: str


@dataclass
class _Loaded:
    registry: Registry
    manager: pluggy.PluginManager
    strict: bool
    plugins: list[tuple[PluginRecord, Any]] = field(default_factory=list)  # loaded objects, in order


_lock = threading.RLock()
_state: _Loaded | None = None
_loading = False
_programmatic: list[_Programmatic] = []


# -- public functions ---------------------------------------------------------------------------------------
def load(*, strict: bool | None = None, autoload: bool | None = None) -> Registry:
    """Load every plugin now (again), replacing the cached registry.

    Parameters
    ----------
    strict : bool, optional
        Raise on a plugin error or conflict instead of warning. Default: ``SMCKIT_STRICT_PLUGINS``.
    autoload : bool, optional
        Load the ``smckit.plugins`` entry points. Default: true unless ``SMCKIT_DISABLE_PLUGIN_AUTOLOAD`` is set.

    Returns
    -------
    Registry

    Raises
    ------
    PluginLoadError
        In strict mode, when a plugin fails to import or register.
    PluginConflictError
        In strict mode, when a plugin claims a built-in's name or registers a name twice.
    PluginError
        When a plugin's hook looks names up in the registry while it is being loaded.
    """
    global _state, _loading
    strict = strict_from_env() if strict is None else bool(strict)
    autoload = autoload_from_env() if autoload is None else bool(autoload)
    with _lock:
        if _loading:
            raise PluginError(
                "the plugin registry was used while plugins were being loaded: a plugin hook may only call the "
                "register callback it is given, not look names up"
            )
        _loading = True
        try:
            _state = None
            state = _build(strict=strict, autoload=autoload)
            _state = state
            return state.registry
        finally:
            _loading = False


def get_registry() -> Registry:
    """The registry, loading every plugin on first use (see :func:`load`)."""
    state = _state
    if state is None:
        with _lock:
            if _state is None:
                load()
            state = _state
    assert state is not None
    return state.registry


def get_plugin_manager() -> pluggy.PluginManager:
    """The :class:`pluggy.PluginManager` holding every loaded plugin (loads them on first use)."""
    get_registry()
    assert _state is not None
    return _state.manager


def plugins() -> tuple[PluginRecord, ...]:
    """What happened to every plugin seen, built-ins first: where it came from, its status, what it provides."""
    return get_registry().records


def reset() -> None:
    """Forget the loaded plugins and those given to :func:`register_plugin`; the next use loads again.

    Environment switches are read again then. Meant for tests and interactive sessions.
    """
    global _state
    with _lock:
        _state = None
        _programmatic.clear()


def register_plugin(
    plugin: Any,
    name: str | None = None,
    *,
    distribution: str | None = None,
    version: str | None = None,
) -> PluginRecord:
    """Register a plugin object (a module, class or instance with ``@hookimpl`` functions) by hand.

    The plugin is registered after the built-ins and the entry points, with the same rules: it cannot take a
    built-in's bare name, and its names are reachable as ``"distribution:name"``. It stays registered until
    :func:`unregister_plugin` or :func:`reset`.

    Parameters
    ----------
    plugin : object
        The object whose hook implementations to call.
    name : str, optional
        The plugin's name. Default: the module's or class's ``__name__``, or the instance's class name.
    distribution : str, optional
        The qualifier of its names. Default: ``name``.
    version : str, optional
        Shown by ``smckit plugins``.

    Returns
    -------
    PluginRecord

    Raises
    ------
    PluginLoadError
        If a hook raises or pluggy rejects the object (always, not only in strict mode).
    PluginConflictError
        In strict mode, if it claims a built-in's name; otherwise a warning.
    InvalidArgumentError
        If a plugin of that name is already registered.
    """
    if name is None:
        name = getattr(plugin, "__name__", None) if isinstance(plugin, (types.ModuleType, type)) else None
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    check_name(name, what="plugin name")
    spec = _Programmatic(
        obj=plugin,
        name=name,
        distribution=distribution or name,
        version=version,
        module=getattr(plugin, "__module__", None) or getattr(plugin, "__name__", "") or "",
    )
    with _lock:
        get_registry()
        state = _state
        assert state is not None
        if any(p.name == name for p in _programmatic):
            raise InvalidArgumentError(
                f"a plugin named {name!r} is already registered; call smckit.plugins.unregister_plugin({name!r}) "
                "first, or give another name"
            )
        record = _register(state, spec.obj, spec.name, spec.distribution, spec.version, spec.module, always_raise=True)
        _programmatic.append(spec)
        return record


def unregister_plugin(name: str) -> None:
    """Remove a plugin given to :func:`register_plugin`, with everything it registered.

    Raises
    ------
    InvalidArgumentError
        If no plugin of that name was registered with :func:`register_plugin`.
    """
    with _lock:
        spec = next((p for p in _programmatic if p.name == name), None)
        if spec is None:
            known = ", ".join(p.name for p in _programmatic) or "none"
            raise InvalidArgumentError(f"no plugin named {name!r} was registered by hand (registered: {known})")
        _programmatic.remove(spec)
        state = _state
        if state is not None:
            state.registry.remove_plugin(name, spec.distribution)
            key = f"{spec.distribution}:{name}"
            if state.manager.get_plugin(key) is not None:
                state.manager.unregister(name=key)
            state.plugins = [(r, obj) for r, obj in state.plugins if obj is not spec.obj]


def register_commands(subparsers: Any) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Let every loaded plugin add ``smckit`` sub-commands through ``smckit_register_commands``.

    A plugin whose hook raises, or that reuses a command name, is warned about (strict mode: raises
    :class:`~smckit.errors.PluginLoadError`) and the other plugins still add theirs.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        What ``ArgumentParser.add_subparsers()`` returned.

    Returns
    -------
    added : dict of str to list of str
        Command names added, per plugin (keyed ``"distribution:plugin-name"``).
    errors : dict of str to str
        Per plugin (same keys), why its commands could not be added.
    """
    get_registry()
    state = _state
    assert state is not None
    added: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    for record, obj in list(state.plugins):
        key = f"{record.distribution}:{record.name}"
        before = dict(subparsers.choices)
        caller = _only(state.manager, COMMANDS_HOOK, obj)
        try:
            caller(subparsers=subparsers)
            clobbered = [n for n, p in before.items() if subparsers.choices.get(n) is not p]
            if clobbered:  # Python 3.10 overwrites silently; 3.11+ raises ArgumentError instead
                subparsers.choices.update({n: before[n] for n in clobbered})
                raise InvalidArgumentError(f"command names already taken: {', '.join(clobbered)}")
        except Exception as exc:  # a plugin's mistake must not break the command line
            errors[key] = f"could not add its smckit commands: {_describe_error(exc)}"
            message = f"plugin {record.describe()} {errors[key]}"
            if state.strict:
                raise PluginLoadError(message, plugin=record.name, cause=exc) from exc
            warnings.warn(message, SMCKitPluginWarning, stacklevel=2)
        new = [n for n in subparsers.choices if n not in before]
        if new:
            added[key] = new
    return added, errors


# -- loading ------------------------------------------------------------------------------------------------
def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(SMCKitHookSpecs)
    return manager


def _build(*, strict: bool, autoload: bool) -> _Loaded:
    state = _Loaded(registry=Registry(autoload=autoload, strict=strict), manager=_new_manager(), strict=strict)
    version = _builtin_version()
    for module_name in BUILTIN_MODULES:
        _load_builtin(state, module_name, version)
    for ep in _discover(state):
        distribution, dist_version = _origin(ep)
        if not autoload:
            state.registry.add_record(PluginRecord(ep.name, distribution, dist_version, ep.value, status=DISABLED))
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # any import-time error of a third-party module
            _fail(state, ep.name, distribution, dist_version, ep.value, "could not be imported", exc)
            continue
        _register(state, obj, ep.name, distribution, dist_version, ep.value)
    for spec in _programmatic:
        _register(state, spec.obj, spec.name, spec.distribution, spec.version, spec.module)
    return state


def _discover(state: _Loaded) -> list[importlib.metadata.EntryPoint]:
    try:
        return _entry_points()
    except Exception as exc:  # broken installation metadata
        message = f"could not list the {ENTRY_POINT_GROUP!r} entry points: {_describe_error(exc)}"
        if state.strict:
            raise PluginLoadError(message, cause=exc) from exc
        warnings.warn(message, SMCKitPluginWarning, stacklevel=4)
        return []


def _load_builtin(state: _Loaded, module_name: str, version: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name in OPTIONAL_BUILTINS.get(module_name, ()):
            hint = _EXTRA_HINT.get(module_name)
            error = _describe_error(exc) + (f" ({hint})" if hint and exc.name != module_name else "")
            record = PluginRecord(
                module_name, BUILTIN_DISTRIBUTION, version, module_name, builtin=True, status=UNAVAILABLE, error=error
            )
            state.registry.add_record(record)
            return
        _fail(state, module_name, BUILTIN_DISTRIBUTION, version, module_name, "could not be imported", exc, True)
        return
    except Exception as exc:
        _fail(state, module_name, BUILTIN_DISTRIBUTION, version, module_name, "could not be imported", exc, True)
        return
    _register(state, module, module_name, BUILTIN_DISTRIBUTION, version, module_name, builtin=True)


def _register(
    state: _Loaded,
    obj: Any,
    name: str,
    distribution: str,
    version: str | None,
    module: str,
    *,
    builtin: bool = False,
    always_raise: bool = False,
) -> PluginRecord:
    """Register one plugin object with pluggy, run its registration hooks, commit its entries, record it."""
    manager, registry = state.manager, state.registry
    key = f"{distribution}:{name}"
    fail_args = (state, name, distribution, version, module)
    try:
        manager.register(obj, name=key)
    except Exception as exc:  # pluggy's validation (bad hook signature) or the same object registered twice
        return _fail(*fail_args, "was rejected by pluggy", exc, builtin, always_raise)
    notes = _unknown_hooks(manager, obj)
    staged: list[Entry] = []
    try:
        for kind, hook in HOOKS.items():
            _only(manager, hook, obj)(register=_collector(kind, staged, name, distribution, version, builtin))
    except Exception as exc:  # the plugin's hook raised: keep nothing of it
        manager.unregister(obj)
        return _fail(*fail_args, "raised while registering", exc, builtin, always_raise)
    conflicts: list[Conflict] = []
    for entry in staged:
        conflicts.extend(registry.add(entry))
    provides = {kind: tuple(dict.fromkeys(e.name for e in staged if e.kind == kind)) for kind in HOOKS}
    provides = {kind: names for kind, names in provides.items() if names}
    kept = [e for e in registry.entries() if e.plugin == name and e.distribution == distribution and e.aliases]
    aliases: dict[str, dict[str, tuple[str, ...]]] = {}
    for e in kept:  # the aliases the registry kept (not those the plugin repeated)
        aliases.setdefault(e.kind, {})[e.name] = e.aliases
    has_commands = any(impl.plugin is obj for impl in getattr(manager.hook, COMMANDS_HOOK).get_hookimpls())
    if not staged and not has_commands and not notes:
        where = "" if builtin else " (does the entry point name the module with the @hookimpl functions?)"
        notes.append(f"provides nothing: it implements none of smckit's hooks{where}")
    record = PluginRecord(
        name,
        distribution,
        version,
        module,
        builtin=builtin,
        status=CONFLICT if conflicts else LOADED,
        provides=provides,
        aliases=aliases,
        conflicts=tuple(dict.fromkeys(c.message for c in conflicts)),
        notes=tuple(notes),
    )
    if conflicts and state.strict:
        registry.remove_plugin(name, distribution)
        manager.unregister(obj)
        raise PluginConflictError("; ".join(record.conflicts))
    registry.add_record(record)
    state.plugins.append((record, obj))
    for message in record.conflicts:
        warnings.warn(message, SMCKitPluginWarning, stacklevel=4)
    for note in notes:
        if not note.startswith("provides nothing") or not builtin:
            warnings.warn(f"plugin {record.describe()}: {note}", SMCKitPluginWarning, stacklevel=4)
    return record


def _fail(
    state: _Loaded,
    name: str,
    distribution: str,
    version: str | None,
    module: str,
    what: str,
    exc: BaseException,
    builtin: bool = False,
    always_raise: bool = False,
) -> PluginRecord:
    record = PluginRecord(
        name, distribution, version, module, builtin=builtin, status=FAILED, error=_describe_error(exc)
    )
    message = f"smckit plugin {record.describe()} {what} and is skipped: {record.error}"
    if state.strict or always_raise:
        raise PluginLoadError(message, plugin=name, cause=exc) from exc
    state.registry.add_record(record)
    warnings.warn(message, SMCKitPluginWarning, stacklevel=4)
    return record


def _only(manager: pluggy.PluginManager, hook: str, obj: Any) -> Any:
    """A caller of ``hook`` that runs only ``obj``'s implementation."""
    others = [p for p in manager.get_plugins() if p is not obj]
    return manager.subset_hook_caller(hook, remove_plugins=others)


def _unknown_hooks(manager: pluggy.PluginManager, obj: Any) -> list[str]:
    """Notes about ``@hookimpl`` functions that match no smckit hook (a typo, or a hook of a newer smckit)."""
    callers = manager.get_hookcallers(obj) or []
    unknown = sorted(c.name for c in callers if not c.has_spec())
    if not unknown:
        return []
    known = ", ".join([*HOOKS.values(), COMMANDS_HOOK])
    return [f"implements unknown hook(s) {', '.join(unknown)}, which smckit never calls (known: {known})"]


def _collector(
    kind: str, staged: list[Entry], plugin: str, distribution: str, version: str | None, builtin: bool
) -> Callable[..., None]:
    """The ``register`` callback given to a plugin's ``smckit_register_<kind>s`` hook."""

    def register(name: str, factory: Callable[..., Any], *, aliases: Iterable[str] = (), description: str = "") -> None:
        check_name(name, what=f"{kind} name")
        alias_list = (aliases,) if isinstance(aliases, str) else tuple(aliases)
        for alias in alias_list:
            check_name(alias, what=f"{kind} alias")
        if not callable(factory):
            raise InvalidArgumentError(
                f"the factory registered for the {kind} {name!r} must be callable, got {type(factory).__name__}"
            )
        if not isinstance(description, str):
            raise InvalidArgumentError(f"the description of the {kind} {name!r} must be a string")
        staged.append(
            Entry(
                kind=kind,
                name=name,
                factory=factory,
                distribution=distribution,
                version=version,
                aliases=tuple(dict.fromkeys(a for a in alias_list if a != name)),
                description=description or _first_doc_line(factory),
                plugin=plugin,
                builtin=builtin,
            )
        )

    return register


def _first_doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
