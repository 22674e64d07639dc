"""Generate the API reference: one page per public module, every public name documented exactly once.

The public modules are found by walking the packages in :data:`PACKAGES` (a module whose dotted name has a
component starting with ``_`` is private). A module's public names are its ``__all__``. A name that several
modules export (``smckit.models.Bootstrap`` is ``smckit.models.filters.Bootstrap``) gets its page at one
*home*: the top-level :mod:`smckit` page for ``smckit.__all__`` (written by hand, ``api/smckit.rst``),
otherwise the shallowest module that exports it. Every other module that exports it lists it under "Also
exported here", linking to the home. The pages are regenerated from scratch on each build, so a name that is
added to an ``__all__`` appears without editing the docs, and a name that is removed leaves nothing behind.

``tests/test_docs.py`` imports :func:`plan` to check that every public name has a home.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import shutil
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGES = ("smckit", "smckit_fvd")
TOP = "smckit"  # documented by hand in api/smckit.rst

# The order and titles of the module groups on the API index page; a module joins the first group whose
# prefix matches it (packages match their submodules). Anything unmatched goes to "Other modules".
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Core building blocks",
        (
            "smckit.engine",
            "smckit.model",
            "smckit.result",
            "smckit.history",
            "smckit.plots",
            "smckit.policy",
            "smckit.errors",
            "smckit.weights",
            "smckit.state",
            "smckit.backend",
            "smckit.random",
        ),
    ),
    ("Resamplers and plugins", ("smckit.resamplers", "smckit.plugins", "smckit.testing")),
    ("Models and samplers", ("smckit.models",)),
    ("Parameter inference", ("smckit.inference",)),
    ("Diagnostics, smoothing and error bars", ("smckit.diagnostics", "smckit.smoothing", "smckit.variance")),
    ("Diffusion steering", ("smckit.diffusion",)),
    ("Distributed runs", ("smckit.distributed",)),
    ("Command line and examples", ("smckit.cli", "smckit.examples")),
    ("Fleming-Viot plugin (smckit-fvd)", ("smckit_fvd",)),
)


@dataclass
class Member:
    """One public name of one module."""

    module: str
    name: str
    obj: Any
    kind: str  # "class", "exception", "function", "data"

    @property
    def fullname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class ModulePlan:
    """What one module's page shows."""

    name: str
    own: list[Member] = field(default_factory=list)  # documented on this page
    elsewhere: list[tuple[Member, str]] = field(default_factory=list)  # (member, full name of its home)


def _kind(obj: Any, name: str | None = None) -> str:
    if inspect.isclass(obj) and name is not None and getattr(obj, "__name__", name) != name:
        return "data"  # an alias such as ``Array = Any``: documented by its own doc comment, not as the class
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.ismethod(obj):
        return "function"
    if callable(obj) and hasattr(obj, "__wrapped__"):
        return "function"
    return "data"


PROBLEMS: list[str] = []
"""What the last :func:`plan` could not document (modules or names in ``__all__`` that fail to
import); ``conf.py``
reports each as a Sphinx warning, so a build with warnings as errors fails."""


def public_modules(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """The importable public modules of ``packages``, packages before their submodules, sorted.

    A submodule that fails to import is left out and recorded in :data:`PROBLEMS` (a build warning).
    """
    found: list[str] = []
    for package in packages:
        try:
            pkg = importlib.import_module(package)
        except ImportError:
            if package == TOP:
                raise
            continue  # an optional plugin that is not installed
        found.append(package)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
            if any(part.startswith("_") for part in info.name.split(".")):
                continue
            try:
                importlib.import_module(info.name)
            except Exception as exc:
                PROBLEMS.append(f"module {info.name} cannot be imported: {exc!r}")
                continue
            found.append(info.name)
    return sorted(set(found), key=lambda m: (m.split("."), m))


def public_names(module: types.ModuleType) -> list[str]:
    """``module.__all__`` without dunder names and submodules (or, without ``__all__``, what it defines)."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        ]
    return [n for n in names if not (n.startswith("__") and n.endswith("__"))]


def _has_attr_doc(module: str, name: str) -> bool:
    from sphinx.pycode import ModuleAnalyzer

    try:
        docs = ModuleAnalyzer.for_module(module).find_attr_docs()
    except Exception:
        return False
    return ("", name) in docs


def plan(packages: tuple[str, ...] = PACKAGES) -> tuple[dict[str, ModulePlan], dict[tuple[int, str], str]]:
    """Decide the home of every public name.

    Returns
    -------
    pages : dict of str to ModulePlan
        One entry per public module except the top-level package (whose page is written by hand).
    homes : dict of (id(obj), name) to str
        The full documented name of every public object.
    """
    PROBLEMS.clear()
    modules = public_modules(packages)
    members: list[Member] = []
    for modname in modules:
        module = importlib.import_module(modname)
        for name in public_names(module):
            try:
                obj = getattr(module, name)
            except Exception as exc:
                PROBLEMS.append(f"{modname}.__all__ names {name!r}, which cannot be imported: {exc!r}")
                continue
            if inspect.ismodule(obj):
                continue
            members.append(Member(modname, name, obj, _kind(obj, name)))

    by_key: dict[tuple[int, str], list[Member]] = {}
    for m in members:
        by_key.setdefault((id(m.obj), m.name), []).append(m)

    homes: dict[tuple[int, str], str] = {}
    for key, group in by_key.items():
        top = [m for m in group if m.module == TOP]
        if top:
            homes[key] = top[0].fullname
            continue
        if group[0].kind == "data":
            documented = [m for m in group if _has_attr_doc(m.module, m.name)]
            pool = documented or group
            best = min(pool, key=lambda m: (m.module.count("."), m.module))
        else:
            defined_in = getattr(group[0].obj, "__module__", None)
            best = min(group, key=lambda m: (m.module.count("."), m.module != defined_in, m.module))
        homes[key] = best.fullname

    pages: dict[str, ModulePlan] = {name: ModulePlan(name) for name in modules if name != TOP}
    for m in members:
        if m.module == TOP:
            continue
        home = homes[(id(m.obj), m.name)]
        if home == m.fullname:
            pages[m.module].own.append(m)
        else:
            pages[m.module].elsewhere.append((m, home))
    return pages, homes


def _shadowed(module: str) -> bool:
    """Whether ``module``'s parent package has an attribute of the same name that is not the module itself."""
    parent, _, last = module.rpartition(".")
    if not parent:
        return False
    value = getattr(importlib.import_module(parent), last, None)
    return value is not None and value is not importlib.import_module(module)


def _group_of(module: str) -> str:
    for title, prefixes in GROUPS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return title
    return "Other modules"


def _hide_value(obj: Any) -> bool:
    text = repr(obj)
    return " at 0x" in text or len(text) > 120


def render_module(page: ModulePlan) -> str:
    """The reST source of one module's page.

    Classes and exceptions get a page of their own (an autosummary stub: they have methods); functions and
    data are documented on the module's page, below a summary table. Fewer, fuller pages keep the site
    navigable and the build fast (the theme's navigation costs grow with the square of the page count).
    """
    title = f"``{page.name}``"
    lines = [title, "=" * len(title), "", f".. automodule:: {page.name}", "   :no-members:"]
    if _shadowed(page.name):
        # The parent exports something else under this module's name (``smckit.inference.pmmh`` is the function
        # pmmh): the name belongs to that object, so this page describes the module without claiming it.
        lines.append("   :no-index:")
    lines.append("")
    lines += [f".. currentmodule:: {page.name}", ""]
    classes = [m for m in page.own if m.kind == "class"]
    exceptions = [m for m in page.own if m.kind == "exception"]
    functions = [m for m in page.own if m.kind == "function"]
    data = [m for m in page.own if m.kind == "data"]

    def table(heading: str, members: list[Member], toctree: bool) -> None:
        if not members:
            return
        lines.extend([f".. rubric:: {heading}", "", ".. autosummary::"])
        if toctree:
            lines.append("   :toctree: objects")
        else:
            lines.append("   :nosignatures:")
        lines.append("")
        lines.extend(f"   {m.name}" for m in members)
        lines.append("")

    table("Classes", classes, True)
    table("Exceptions", exceptions, True)
    table("Functions", functions, False)
    table("Data", data, False)
    if page.elsewhere:
        lines += [".. rubric:: Also exported here", "", ".. autosummary::", "   :nosignatures:", ""]
        for _, home in page.elsewhere:
            # autosummary refuses items spelled with the current module's prefix: write those relative.
            relative = home[len(page.name) + 1 :] if home.startswith(page.name + ".") else home
            lines.append(f"   ~{relative}")
        lines.append("")
    if functions:
        lines += ["Functions", "---------", ""]
        for m in functions:
            lines += [f".. autofunction:: {m.name}", ""]
    module = importlib.import_module(page.name)
    version = getattr(module, "__version__", None) if "__version__" in getattr(module, "__all__", ()) else None
    if data or version is not None:
        lines += ["Data", "----", ""]
        for m in data:
            lines.append(f".. autodata:: {m.name}")
            if _hide_value(m.obj):
                lines.append("   :no-value:")
            lines.append("")
        if version is not None:
            lines += [".. data:: __version__", "   :type: str", f"   :value: {version!r}", ""]
            lines += [f"   The version of ``{page.name}``.", ""]
    return "\n".join(lines)


def render_index(pages: dict[str, ModulePlan]) -> str:
    """The grouped toctrees of the module pages (included by ``api/index.rst``)."""
    order = [title for title, _ in GROUPS] + ["Other modules"]
    grouped: dict[str, list[str]] = {title: [] for title in order}
    for name in pages:
        grouped[_group_of(name)].append(name)
    lines: list[str] = []
    for title in order:
        if not grouped[title]:
            continue
        lines += [title, "-" * len(title), "", ".. toctree::", "   :maxdepth: 1", ""]
        lines += [f"   generated/{name}" for name in grouped[title]]
        lines.append("")
    return "\n".join(lines)


def top_level_missing(srcdir: Path) -> list[str]:
    """Names of ``smckit.__all__`` that the hand-written page ``api/smckit.rst`` does not mention."""
    import re

    top = importlib.import_module(TOP)
    text = (Path(srcdir) / "api" / "smckit.rst").read_text(encoding="utf-8")
    return [n for n in public_names(top) if not re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", text)]


def render_top_extra(srcdir: Path) -> str:
    """An autosummary of the top-level names the hand-written page misses (so none goes undocumented).

    ``tests/test_docs.py`` fails while this list is not empty: the names belong in a section of ``api/smckit.rst``.
    """
    missing = top_level_missing(srcdir)
    if not missing:
        return ""
    top = importlib.import_module(TOP)
    members = [Member(TOP, n, getattr(top, n), _kind(getattr(top, n), n)) for n in missing]
    lines = ["More", "----", "", ".. currentmodule:: smckit", ""]
    stubbed = [m.name for m in members if m.kind in ("class", "exception")]
    inline = [m for m in members if m.kind not in ("class", "exception")]
    if stubbed:
        lines += [".. autosummary::", "   :toctree: generated/objects", ""] + [f"   {n}" for n in stubbed] + [""]
    for m in inline:
        lines += [f".. auto{'function' if m.kind == 'function' else 'data'}:: {m.name}", ""]
    return "\n".join(lines)


def generate(srcdir: Path) -> None:
    """Write ``api/generated/*.rst`` and ``api/generated/modules.inc`` under the docs source ``srcdir``.

    ``conf.py`` calls this when Sphinx loads it, before the source files are discovered, so that autosummary
    generates the per-object stubs of these pages in the same build.
    """
    out = Path(srcdir) / "api" / "generated"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pages, _ = plan()
    for name, page in pages.items():
        (out / f"{name}.rst").write_text(render_module(page), encoding="utf-8")
    (out / "modules.inc").write_text(render_index(pages), encoding="utf-8")
    (out / "smckit-extra.inc").write_text(render_top_extra(srcdir), encoding="utf-8")
