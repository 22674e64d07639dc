"""The registry of named resamplers, potentials and proposals, and the rules for finding them by name.

Every registration is an :class:`Entry`: a ``kind`` (``"resampler"``, ``"potential"`` or ``"proposal"``), a bare
``name``, a ``factory`` and the distribution that provided it. Names are looked up as follows:

- a qualified name ``"distribution:name"`` always finds that distribution's entry (the distribution name is
  compared after PEP 503 normalisation; smckit's own entries answer to ``"pysmckit:..."`` and ``"smckit:..."``);
  aliases work after the colon too;
- a bare name finds the one entry that claims it (as its name or as an alias);
- a bare name claimed by two or more third-party distributions is ambiguous: :class:`AmbiguousPluginError`
  lists the qualified names to choose from. This is a *conflict* too (of every claimant): ``smckit plugins``
  marks each claimant ``"conflict"`` and ``--check`` fails, because code that worked with one of the plugins
  installed breaks when the other is installed;
- a bare name (or alias) of a built-in belongs to the built-in. A third-party registration of that name is a
  *conflict*: it is recorded and reported, the bare name keeps meaning the built-in, and the third-party entry
  stays reachable under its qualified name only (so nothing is replaced silently, and nothing that was
  registered is lost);
- an unknown name raises :class:`UnknownPluginError`, listing the names available, close matches, and the
  plugins that failed to load.

The registry is a plain data structure: it never warns or raises about conflicts itself; the loader
(:mod:`smckit.plugins.loader`) decides whether a conflict is a warning or, in strict mode, an error.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from smckit.errors import AmbiguousPluginError, InvalidArgumentError, UnknownPluginError

__all__ = [
    "KINDS",
    "BUILTIN_DISTRIBUTION",
    "SMCKitPluginWarning",
    "Entry",
    "Conflict",
    "PluginRecord",
    "Registry",
    "normalise_distribution",
]

KINDS = ("resampler", "potential", "proposal")
"""The kinds of things plugins register."""

BUILTIN_DISTRIBUTION = "pysmckit"
"""The distribution that owns smckit's built-in entries (the import package is ``smckit``)."""

_BUILTIN_QUALIFIERS = frozenset({"pysmckit", "smckit"})
_NAME = re.compile(r"^[^\s:]+$")

# Plugin statuses, as shown by ``smckit plugins``.
LOADED = "loaded"
CONFLICT = "conflict"  # loaded, but some names were rejected (they clash with built-ins or repeat)
FAILED = "failed"  # import or a hook raised: nothing from it is registered
DISABLED = "disabled"  # found, not loaded: autoload is off
UNAVAILABLE = "unavailable"  # an optional built-in whose dependencies are not installed
STATUSES = (LOADED, CONFLICT, FAILED, DISABLED, UNAVAILABLE)


class SMCKitPluginWarning(UserWarning):
    """A plugin failed to load, or tried to claim a name it may not have (non-strict mode)."""


def normalise_distribution(name: str) -> str:
    """The PEP 503 normal form of a distribution name (``"Smckit_Example"`` -> ``"smckit-example"``).

    smckit's own qualifiers ``"smckit"`` and ``"pysmckit"`` both map to ``"pysmckit"``.
    """
    norm = re.sub(r"[-_.]+", "-", name).lower()
    return BUILTIN_DISTRIBUTION if norm in _BUILTIN_QUALIFIERS else norm


def check_name(name: Any, *, what: str = "name") -> str:
    """Validate a registered name or alias: a non-empty string without whitespace or ``":"``.

    Raises
    ------
    InvalidArgumentError
        For anything else.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgumentError(
            f"a plugin {what} must be a non-empty string without spaces or ':' (':' separates the distribution "
            f"in qualified names), got {name!r}"
        )
    return name


@dataclass(frozen=True)
class Entry:
    """One registered resampler, potential or proposal.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    name : str
        The bare name it was registered under.
    factory : callable
        Called with the user's keyword options; returns the object (e.g. a resampler).
    distribution : str
        The distribution that provided it (``"pysmckit"`` for built-ins).
    version : str or None
        That distribution's version.
    aliases : tuple of str
        Other bare names for it.
    description : str
        One line for listings (the first line of the factory's docstring when none was given).
    plugin : str
        The name of the plugin that registered it (entry-point name, or module name for built-ins).
    builtin : bool
        Whether smckit itself provides it.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    distribution: str
    version: str | None = None
    aliases: tuple[str, ...] = ()
    description: str = ""
    plugin: str = ""
    builtin: bool = False

    @property
    def qualified_name(self) -> str:
        """``"distribution:name"``, the name that always finds this entry."""
        return f"{self.distribution}:{self.name}"

    @property
    def names(self) -> tuple[str, ...]:
        """The name followed by the aliases."""
        return (self.name, *self.aliases)

    def make(self, **options: Any) -> Any:
        """Call the factory with ``options``.

        Raises
        ------
        InvalidArgumentError
            If the factory does not accept these options (checked against its signature first, so that a
            ``TypeError`` raised inside the factory is not mistaken for a wrong option).
        """
        try:
            signature = inspect.signature(self.factory)
        except (TypeError, ValueError):  # builtins without a signature: let the call decide
            signature = None
        if signature is not None:
            try:
                signature.bind(**options)
            except TypeError as exc:
                raise InvalidArgumentError(
                    f"the {self.kind} {self.qualified_name!r} does not accept the options {sorted(options)}: {exc}; "
                    f"its signature is {self.name}{signature}"
                ) from None
        return self.factory(**options)


@dataclass(frozen=True)
class Conflict:
    """A registration the registry did not accept under its bare name.

    Attributes
    ----------
    kind, name : str
        What was claimed.
    plugin, distribution : str
        Who claimed it.
    owner : str
        The qualified name of the entry that keeps the bare name.
    reason : str
        ``"builtin"`` (the name belongs to a built-in), ``"duplicate"`` (the same distribution registered the
        name twice; the first registration is kept) or ``"ambiguous"`` (another third-party distribution claims
        the same bare name: both entries are kept, reachable only by their qualified names; ``owner`` is then
        one of the other claimants, and ``claimants`` lists them all).
    claimants : tuple of str
        For ``"ambiguous"``: the qualified names of every entry that claims the bare name, in registration order.
    """

    kind: str
    name: str
    plugin: str
    distribution: str
    owner: str
    reason: str
    claimants: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """A sentence describing the conflict and what happens to the name."""
        if self.reason == "ambiguous":  # the same sentence for every claimant, so a listing shows it once
            names = ", ".join(repr(q) for q in self.claimants)
            return (
                f"the {self.kind} name {self.name!r} is claimed by {len(self.claimants)} plugins ({names}): the bare "
                f"name is ambiguous (looking it up raises AmbiguousPluginError); use a qualified name, or uninstall "
                f"all but one of them"
            )
        if self.reason == "builtin":
            return (
                f"plugin {self.plugin!r} ({self.distribution}) tried to register the {self.kind} name "
                f"{self.name!r}, which belongs to smckit's built-in {self.owner!r}; the bare name keeps meaning "
                f"the built-in, the plugin's one is reachable only as {self.distribution + ':' + self.name!r}"
            )
        return (
            f"plugin {self.plugin!r} ({self.distribution}) registered the {self.kind} name {self.name!r} twice; "
            f"the first registration ({self.owner!r}) is kept"
        )


@dataclass(frozen=True)
class PluginRecord:
    """What happened to one plugin: where it came from, its status and what it provides.

    Attributes
    ----------
    name : str
        The entry-point name (module name for built-ins, the given name for :func:`register_plugin`).
    distribution : str
        The distribution that ships it.
    version : str or None
        Its version.
    module : str
        The entry point's value (``"module"`` or ``"module:attr"``) or the module name.
    builtin : bool
        Whether it is part of smckit.
    status : str
        ``"loaded"``, ``"conflict"`` (loaded, some names rejected), ``"failed"``, ``"disabled"`` (autoload off)
        or ``"unavailable"`` (an optional built-in whose dependencies are missing).
    error : str or None
        For ``"failed"`` and ``"unavailable"``: the exception, as ``"Type: message"``.
    provides : dict of str to tuple of str
        Registered names per kind (only kinds with at least one name).
    aliases : dict of str to dict of str to tuple of str
        Per kind, the aliases of each provided name that has some (e.g. ``{"resampler": {"fleming-viot":
        ("fvd",)}}``).
    conflicts : tuple of str
        Messages of the conflicts this plugin caused.
    notes : tuple of str
        Other remarks (hooks smckit does not know, a plugin that provides nothing).
    """

    name: str
    distribution: str
    version: str | None
    module: str
    builtin: bool = False
    status: str = LOADED
    error: str | None = None
    provides: dict[str, tuple[str, ...]] = field(default_factory=dict)
    aliases: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    conflicts: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong with it (``--check`` fails on ``"failed"`` and ``"conflict"``)."""
        return self.status not in (FAILED, CONFLICT)

    def describe(self) -> str:
        """``"name (distribution version)"``, for messages."""
        version = f" {self.version}" if self.version else ""
        return f"{self.name} ({self.distribution}{version})"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "status": self.status,
            "error": self.error,
            "provides": {kind: list(names) for kind, names in self.provides.items()},
            "aliases": {kind: {name: list(a) for name, a in names.items()} for kind, names in self.aliases.items()},
            "conflicts": list(self.conflicts),
            "notes": list(self.notes),
        }


class Registry:
    """Named factories of each kind, with the lookup rules of this module.

    Parameters
    ----------
    autoload : bool
        Whether third-party plugins were loaded from entry points (for messages only).
    strict : bool
        Whether the registry was loaded in strict mode (for messages only).
    """

    def __init__(self, *, autoload: bool = True, strict: bool = False):
        self.autoload = autoload
        self.strict = strict
        self._entries: dict[str, list[Entry]] = {kind: [] for kind in KINDS}
        self._records: list[PluginRecord] = []
        self._conflicts: list[Conflict] = []

    # -- building ------------------------------------------------------------------------------------------
    def add(self, entry: Entry) -> list[Conflict]:
        """Add ``entry``; return the conflicts it caused (possibly none).

        A third-party entry whose name or alias belongs to a built-in of the same kind is kept, but that name
        is withheld from bare lookups (it stays reachable as ``"distribution:name"``). A second registration of
        a name by the same distribution is dropped in favour of the first. A name that another third-party
        distribution claims too is kept by both and made ambiguous; the ``"ambiguous"`` conflicts returned are
        the new entry's (the registry derives every claimant's from its entries, see :attr:`conflicts`).
        """
        _check_kind(entry.kind)
        dist = normalise_distribution(entry.distribution)
        same_dist = [e for e in self._entries[entry.kind] if normalise_distribution(e.distribution) == dist]
        taken = {name: e for e in same_dist for name in e.names}
        if entry.name in taken:  # the whole entry repeats an earlier one of the same distribution
            duplicate = self._conflict(entry, entry.name, taken[entry.name].qualified_name, "duplicate")
            self._conflicts.append(duplicate)
            return [duplicate]
        conflicts = [
            self._conflict(entry, alias, taken[alias].qualified_name, "duplicate")
            for alias in entry.aliases
            if alias in taken
        ]
        entry = replace(entry, aliases=tuple(a for a in entry.aliases if a not in taken))
        if not entry.builtin:
            for name in entry.names:
                owner = self._builtin_owner(entry.kind, name)
                if owner is not None:
                    conflicts.append(self._conflict(entry, name, owner, "builtin"))
        self._entries[entry.kind].append(entry)
        self._conflicts.extend(conflicts)
        ambiguous = [
            c
            for c in self._ambiguities(entry.kind)
            if c.name in entry.names and c.plugin == entry.plugin and normalise_distribution(c.distribution) == dist
        ]
        return conflicts + ambiguous

    def add_record(self, record: PluginRecord) -> None:
        """Record what happened to a plugin."""
        self._records.append(record)

    def remove_plugin(self, plugin: str, distribution: str) -> None:
        """Forget every entry, conflict and record of the plugin ``plugin`` of ``distribution``."""
        dist = normalise_distribution(distribution)

        def keep(plugin_name: str, dist_name: str) -> bool:
            return plugin_name != plugin or normalise_distribution(dist_name) != dist

        for kind in KINDS:
            self._entries[kind] = [e for e in self._entries[kind] if keep(e.plugin, e.distribution)]
        self._conflicts = [c for c in self._conflicts if keep(c.plugin, c.distribution)]
        self._records = [r for r in self._records if keep(r.name, r.distribution)]

    # -- queries -------------------------------------------------------------------------------------------
    @property
    def records(self) -> tuple[PluginRecord, ...]:
        """Every plugin seen, built-ins first, in loading order.

        A plugin that claims an ambiguous bare name has the status ``"conflict"`` and the ambiguity among its
        ``conflicts``, whichever of the claimants was loaded first.
        """
        ambiguous: dict[tuple[str, str], list[str]] = {}
        for c in self._ambiguities():
            ambiguous.setdefault((c.plugin, normalise_distribution(c.distribution)), []).append(c.message)
        records = []
        for r in self._records:
            messages = ambiguous.get((r.name, normalise_distribution(r.distribution)))
            if messages and r.status in (LOADED, CONFLICT):
                r = replace(r, status=CONFLICT, conflicts=tuple(dict.fromkeys((*r.conflicts, *messages))))
            records.append(r)
        return tuple(records)

    @property
    def conflicts(self) -> tuple[Conflict, ...]:
        """Every registration that was not accepted under its bare name: names of built-ins claimed by a third
        party, names a distribution registered twice, and bare names claimed by several third parties (one
        ``"ambiguous"`` conflict per claimant)."""
        return (*self._conflicts, *self._ambiguities())

    @property
    def failures(self) -> tuple[PluginRecord, ...]:
        """The plugins that failed to load."""
        return tuple(r for r in self._records if r.status == FAILED)

    def entries(self, kind: str | None = None) -> tuple[Entry, ...]:
        """All entries (of one kind, or of every kind), in registration order."""
        kinds = KINDS if kind is None else (_check_kind(kind),)
        return tuple(e for k in kinds for e in self._entries[k])

    def resolve(self, kind: str, name: str) -> Entry:
        """The entry that ``name`` means for ``kind``.

        Parameters
        ----------
        kind : str
            One of :data:`KINDS`.
        name : str
            A bare name or alias, or ``"distribution:name"``.

        Raises
        ------
        UnknownPluginError
            If nothing of that kind has this name.
        AmbiguousPluginError
            If the bare name is claimed by several third-party distributions.
        InvalidArgumentError
            If ``kind`` is not one of :data:`KINDS` or ``name`` is not a string.
        """
        _check_kind(kind)
        if not isinstance(name, str):
            raise InvalidArgumentError(f"a {kind} name must be a string, got {type(name).__name__}")
        if ":" in name:
            dist, _, bare = name.partition(":")
            found = self._qualified(kind, normalise_distribution(dist), bare)
            if found is None:
                raise UnknownPluginError(self._unknown_message(kind, name))
            return self._by_qualified(kind, found)
        candidates = self._bare(kind, name)
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise UnknownPluginError(self._unknown_message(kind, name))
        choices = ", ".join(repr(e.qualified_name) for e in candidates)
        raise AmbiguousPluginError(
            f"the {kind} name {name!r} is claimed by {len(candidates)} plugins: {choices}. Use a qualified "
            f"name, e.g. make_{kind}({candidates[0].qualified_name!r}), or uninstall one of them."
        )

    def make(self, kind: str, name: str, **options: Any) -> Any:
        """Resolve ``name`` and call its factory with ``options`` (see :meth:`resolve` and :meth:`Entry.make`)."""
        return self.resolve(kind, name).make(**options)

    def available(self, kind: str) -> list[str]:
        """One usable name per entry of ``kind``, sorted: the bare name when it finds the entry, else qualified."""
        _check_kind(kind)
        names = []
        for entry in self._entries[kind]:
            bare = self._bare(kind, entry.name)
            names.append(entry.name if bare == [entry] else entry.qualified_name)
        return sorted(names)

    # -- helpers -------------------------------------------------------------------------------------------
    def _bare(self, kind: str, name: str) -> list[Entry]:
        """Entries that a bare ``name`` may mean: the built-in if one claims it, else every claimant."""
        claimants = [e for e in self._entries[kind] if name in e.names]
        builtins = [e for e in claimants if e.builtin]
        if builtins:
            return builtins[:1]
        return claimants

    def _ambiguities(self, kind: str | None = None) -> list[Conflict]:
        """One ``"ambiguous"`` conflict per claimant of each bare name that several third parties claim (and no
        built-in owns), in registration order."""
        found = []
        for k in KINDS if kind is None else (kind,):
            claims: dict[str, list[Entry]] = {}
            for e in self._entries[k]:
                for name in e.names:
                    claims.setdefault(name, []).append(e)
            for name, claimants in claims.items():
                if len(claimants) < 2 or any(e.builtin for e in claimants):
                    continue
                qualified = tuple(e.qualified_name for e in claimants)
                for i, e in enumerate(claimants):
                    other = qualified[1] if i == 0 else qualified[0]
                    found.append(Conflict(k, name, e.plugin, e.distribution, other, "ambiguous", qualified))
        return found

    def _builtin_owner(self, kind: str, name: str) -> str | None:
        for e in self._entries[kind]:
            if e.builtin and name in e.names:
                return e.qualified_name
        return None

    def _qualified(self, kind: str, dist: str, name: str) -> str | None:
        for e in self._entries[kind]:
            if normalise_distribution(e.distribution) == dist and name in e.names:
                return e.qualified_name
        return None

    def _by_qualified(self, kind: str, qualified: str) -> Entry:
        return next(e for e in self._entries[kind] if e.qualified_name == qualified)

    @staticmethod
    def _conflict(entry: Entry, name: str, owner: str, reason: str) -> Conflict:
        return Conflict(entry.kind, name, entry.plugin, entry.distribution, owner, reason)

    def _unknown_message(self, kind: str, name: str) -> str:
        available = self.available(kind)
        lines = [f"no {kind} is registered as {name!r}."]
        lines.append(f"Available {kind}s: {', '.join(available) if available else '(none)'}.")
        bare = name.partition(":")[2] or name
        all_names = sorted({n for e in self._entries[kind] for n in (*e.names, e.qualified_name)})
        close = difflib.get_close_matches(name, all_names, n=3) or difflib.get_close_matches(bare, all_names, n=3)
        if close:
            lines.append(f"Did you mean {' or '.join(repr(c) for c in close)}?")
        for record in self.failures:
            lines.append(f"Plugin {record.describe()} failed to load: {record.error}")
        unavailable = [r for r in self._records if r.status == UNAVAILABLE]
        for record in unavailable:
            lines.append(f"Built-in {record.name} is unavailable: {record.error}")
        disabled = [r for r in self._records if r.status == DISABLED]
        if disabled:
            names = ", ".join(r.describe() for r in disabled)
            lines.append(f"Plugin autoload is off (SMCKIT_DISABLE_PLUGIN_AUTOLOAD), so these were not loaded: {names}.")
        return " ".join(lines)


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidArgumentError(f"unknown plugin kind {kind!r}; the kinds are {', '.join(KINDS)}")
    return kind
