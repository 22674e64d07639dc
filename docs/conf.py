"""Sphinx configuration of the smckit documentation.

Build (what CI and ``tox -e docs`` run)::

    SMCKIT_DOCS_OFFLINE=1 python -m sphinx -W --keep-going -n -b html docs docs/_build/html

and the doctests (docstring examples and ``>>>`` blocks in the pages)::

    SMCKIT_DOCS_OFFLINE=1 python -m sphinx -b doctest docs docs/_build/doctest

``SMCKIT_DOCS_OFFLINE=1`` turns intersphinx off (no network); references into numpy, scipy, torch and the
standard library then stay plain text instead of links (see ``nitpick_ignore_regex`` below).
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

# The package is installed editable; the path entries make a plain checkout build too. The example plugin is
# importable for the plugin guide's doctests (it is documented there, not in the API reference).
for path in (ROOT, ROOT / "plugins" / "smckit-fvd", ROOT / "plugins" / "smckit-example"):
    if path.is_dir() and str(path) not in sys.path:
        sys.path.insert(0, str(path))

os.environ.setdefault("MPLBACKEND", "Agg")  # gallery and docstring plots never open a window

import smckit  # noqa: E402

OFFLINE = os.environ.get("SMCKIT_DOCS_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")

# -- project -----------------------------------------------------------------------------------------------
project = "smckit"
author = "The smckit developers"
copyright = "2026, The smckit developers"
version = release = smckit.__version__

# -- extensions --------------------------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "offlinemath",  # _ext/offlinemath.py: MathJax from the site itself, not from a CDN
]
if not OFFLINE:
    extensions.append("sphinx.ext.intersphinx")

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "examples/README.rst", "api/generated/benchmark-results.md"]
default_role = "py:obj"  # `name` in prose links to the Python object
nitpicky = True

# -- autodoc / autosummary ---------------------------------------------------------------------------------
# The pages under api/generated are build products (see _ext/apigen.py): regenerated from scratch on every
# build, so a name removed from the code never leaves a stale page behind.
sys.path.insert(0, str(DOCS / "_ext"))
import apigen  # noqa: E402
import benchresults  # noqa: E402
import cligen  # noqa: E402

apigen.generate(DOCS)
cligen.generate(DOCS)

# The benchmarks page shows benchmarks/RESULTS.md (written by the benchmark runs) when the checkout has it.
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
(DOCS / "api" / "generated" / "benchmark-results.md").write_text(
    benchresults.render(RESULTS, DOCS)
    if RESULTS.is_file()
    else "*No results in this checkout: `benchmarks/RESULTS.md` has not been generated yet.*\n",
    encoding="utf-8",
)
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options: dict[str, object] = {}
autodoc_member_order = "bysource"
# Types live in the numpydoc "Parameters" / "Returns" sections, with shapes; signatures stay plain.
autodoc_typehints = "none"
autodoc_class_signature = "mixed"
autodoc_mock_imports: list[str] = []

# -- numpydoc ------------------------------------------------------------------------------------------------
numpydoc_show_class_members = False  # the autosummary class template lists the members
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False  # types are prose ("array, shape (*batch, n)"), not cross-references
numpydoc_validation_checks: set[str] = set()  # style is checked by tests/test_docs.py, not by the build

# -- MyST ------------------------------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath", "deflist"]
myst_heading_anchors = 3

# -- doctest ---------------------------------------------------------------------------------------------------
doctest_global_setup = """
import numpy as np
import smckit
"""
doctest_test_doctest_blocks = "default"

# -- intersphinx (online only) ---------------------------------------------------------------------------------
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
}
intersphinx_timeout = 10

# References into libraries without an inventory here (no intersphinx entry) stay plain text; so do, offline,
# references into the libraries above. They are ignored by package, not one by one, so a typo in a reference
# to smckit itself still fails the build; online, intersphinx resolves the others and any miss is an error.
nitpick_ignore_regex = [
    # Private helpers (a dotted-name component starting with one underscore) are deliberately undocumented;
    # a docstring that names one is explaining an implementation detail.
    (r"py:.*", r"(.+\.)?_[A-Za-z0-9][^.]*(\..+)?"),
    (r"py:.*", r"(array_api_compat|pluggy|matplotlib|diffusers|sklearn|tqdm|hypothesis)(\..*)?"),
]
if OFFLINE:
    nitpick_ignore_regex += [
        (r"py:.*", r"(numpy|np|scipy|torch)(\..*)?"),
        (r"py:.*", r"(typing|collections|collections\.abc|abc|dataclasses|argparse|importlib|pathlib)\..*"),
        (r"py:class", r"(int|float|str|bool|bytes|dict|list|tuple|set|object|type|Exception|ValueError)"),
        (r"py:class", r"(TypeError|LookupError|FloatingPointError|RuntimeError|KeyError|ImportError)"),
        (r"py:class", r"(AssertionError|UserWarning|Warning|NamedTuple)"),
    ]

# -- sphinx-gallery --------------------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("smckit",),
    "backreferences_dir": None,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "min_reported_time": 1,
    "show_memory": False,
    "abort_on_example_error": False,  # a failing example is reported as a warning, which -W turns into an error
    "only_warn_on_example_error": True,
}

# -- HTML --------------------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"smckit {release}"
html_static_path: list[str] = []
html_theme_options = {"navigation_with_keys": True}
suppress_warnings: list[str] = []


# -- docstring preprocessing ---------------------------------------------------------------------------------------
# Shapes are written the way the code reads, "(*batch, n, *event)". In reST a "*" opens emphasis, so an
# unescaped shape would be an "emphasis start-string without end-string" warning; escape the stars that
# start a shape dimension (after "(", "[" or ", ") outside inline literals.
_SHAPE_STAR = re.compile(r"(?<=[(\[,] )\*(?=\w)|(?<=[(\[])\*(?=\w)")
_LITERAL = re.compile(r"(``.*?``|`[^`]*`|:math:`[^`]*`)")


def _escape_shape_stars(line: str) -> str:
    if "*" not in line or line.lstrip().startswith((">>>", "...")):
        return line
    parts = _LITERAL.split(line)
    return "".join(p if i % 2 else _SHAPE_STAR.sub(r"\\*", p) for i, p in enumerate(parts))


def _process_docstring(app, what, name, obj, options, lines):
    if what in ("data", "attribute") and not (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj)):
        # A module-level object without its own documentation would show its *type's* docstring (e.g. a pluggy
        # marker showing pluggy's class docstring): that documents something else, so show nothing.
        type_doc = inspect.getdoc(type(obj))
        if type_doc and "\n".join(lines).strip() == type_doc.strip():
            lines[:] = []
            return
    in_code = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.endswith("::") or stripped.startswith(".. code-block"):
            in_code = True
            continue
        if in_code and stripped and not line.startswith((" ", "\t")):
            in_code = False
        if not in_code:
            lines[i] = _escape_shape_stars(line)


# -- docstring examples run in their module's namespace -------------------------------------------------------
# Python's doctest (and ``pytest --doctest-modules``) runs a docstring's examples with the globals of the module
# that defines it; Sphinx's doctest builder starts from ``doctest_global_setup`` only. For the doctest builder,
# give each docstring with examples a hidden setup that loads its module's globals, so that both agree.
def _doctest_module_namespace(app, what, name, obj, options, lines):
    if app.builder is None or app.builder.name != "doctest" or not any(">>>" in line for line in lines):
        return
    module = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", None)
    if not isinstance(module, str):
        return
    lines += [
        "",
        ".. testsetup:: *",
        "",
        "   import importlib as _importlib",
        f"   globals().update(vars(_importlib.import_module({module!r})))",
        "",
    ]


# -- references resolved the way Python resolves names -----------------------------------------------------
# A docstring in smckit.weights that says :class:`ExtinctionError` means the name its module imported, which
# is documented as smckit.ExtinctionError. When Sphinx finds no target, look the name up in the namespace of
# the module (and class) being documented and link to the page that documents that very object. Names that
# do not exist in that namespace stay unresolved, so typos still fail the build.
def _getattr_path(obj: object, dotted: str) -> object:
    for part in dotted.split("."):
        try:
            obj = getattr(obj, part)
        except Exception:
            return None
    return obj


def _docstring_modules(source: str | None) -> list[str]:
    """The modules a docstring's names may live in, from a node's source (``"...: docstring of pkg.mod.f"``):
    the owner's dotted prefixes, longest first (the docstring of a re-exported function is written in the
    namespace of the module that defines it, not of the page that documents it)."""
    found = re.search(r"docstring of ([\w.]+)", source or "")
    if found is None:
        return []
    parts = found.group(1).split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def _lookup(modname: str | None, classname: str | None, target: str, source: str | None = None) -> object:
    """The object ``target`` names in the namespace of ``modname`` (and ``classname``), of the module whose
    docstring holds the reference (``source``), or as a full path."""
    import importlib

    scopes: list[object] = []
    if modname:
        try:
            module = importlib.import_module(modname)
        except ImportError:
            module = None
        if module is not None:
            cls = _getattr_path(module, classname) if classname else None
            scopes += [cls, module]
            # A docstring's names live in the module that defines the class, which may not be the module that
            # re-exports (and documents) it.
            defining = getattr(cls, "__module__", None)
            if defining and defining != modname:
                try:
                    scopes.append(importlib.import_module(defining))
                except ImportError:
                    pass
    for name in _docstring_modules(source):
        try:
            scopes.append(importlib.import_module(name))
        except ImportError:
            continue
    for scope in scopes:
        if scope is not None:
            obj = _getattr_path(scope, target)
            if obj is not None:
                return obj
    # A full dotted path: import the longest importable prefix, then walk the attributes.
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        return _getattr_path(module, ".".join(parts[i:]))
    return None


def _documented_name(env, obj: object, last: str) -> str | None:
    """The full name under which ``obj`` is documented (its home in the API reference), if any."""
    target = _unbound(obj)
    for name in sorted(env.get_domain("py").objects):
        if name.rsplit(".", 1)[-1] == last and _unbound(_lookup(None, None, name)) is target:
            return name
    return None


def _unbound(obj: object) -> object:
    """The function behind a bound method (a classmethod read from its class is a new object on each access)."""
    return getattr(obj, "__func__", obj)


def _listed_attribute(cls: object, attr: str) -> bool:
    """Whether ``attr`` is an entry of the numpydoc "Attributes" section of ``cls``'s docstring."""
    doc = inspect.getdoc(cls) or ""
    section = re.search(r"^Attributes\n-{3,}\n(.*?)(?=^\S[^\n]*\n-{3,}\n|\Z)", doc, re.MULTILINE | re.DOTALL)
    if section is None:
        return False
    names = re.findall(r"^(\w+(?:\s*,\s*\w+)*)\s*(?::|$)", section.group(1), re.MULTILINE)
    return any(attr in (n.strip() for n in entry.split(",")) for entry in names)


def _resolve_attribute(app, env, node, contnode):
    """An instance attribute documented in its class's "Attributes" section links to the class."""
    target = node["reftarget"]
    owner, _, attr = target.rpartition(".")
    cls = _lookup(node.get("py:module"), node.get("py:class"), owner) if owner else None
    if cls is None and not owner and node.get("py:class"):
        cls = _lookup(node.get("py:module"), None, node["py:class"])
    if not inspect.isclass(cls) or not _listed_attribute(cls, attr):
        return None
    name = _documented_name(env, cls, cls.__name__)
    if name is None:
        return None
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, "class", name, node, contnode)


def _missing_reference(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target or target.startswith("."):
        return None
    if node.get("reftype") in ("attr", "obj"):
        resolved = _resolve_attribute(app, env, node, contnode)
        if resolved is not None:
            return resolved
    obj = _lookup(node.get("py:module"), node.get("py:class"), target, node.source)
    if obj is None:
        return None
    name = _documented_name(env, obj, target.rsplit(".", 1)[-1])
    if name is None or name == target:
        return None
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, "obj", name, node, contnode)


def _public_bases(app, name, obj, options, bases):
    """Show a class's public ancestors instead of a private base class (``Bootstrap(_Filter)``)."""
    result: list[type] = []
    for base in bases:
        todo = [base]
        while todo:
            b = todo.pop(0)
            if getattr(b, "__name__", "").startswith("_") and b is not object:
                todo.extend(b.__bases__)
            elif b not in result:
                result.append(b)
    bases[:] = [b for b in result if b is not object]  # "Bases: object" says nothing


def _drop_empty_bases(app, doctree):
    """Remove the "Bases:" line autodoc (Sphinx 9) still writes when :func:`_public_bases` left no base."""
    from docutils import nodes
    from sphinx.locale import _

    empty = _("Bases: %s") % ""
    for paragraph in list(doctree.findall(nodes.paragraph)):
        if paragraph.astext().strip() == empty.strip():
            paragraph.parent.remove(paragraph)


# autosummary (Sphinx 9) cuts a summary at the first ". ", even inside an inline literal such as
# ``0 .. K-1``; extend such a cut to the end of the literal's sentence.
import sphinx.ext.autosummary as _autosummary  # noqa: E402

_extract_summary = _autosummary.extract_summary


def _balanced_summary(doc, settings):
    summary = _extract_summary(doc, settings)
    if summary.count("``") % 2 == 0:
        return summary
    first: list[str] = []
    for line in doc:
        if line.strip():
            first.append(line.strip())
        elif first:
            break
    paragraph = " ".join(first)
    end = len(summary) - 1
    while True:
        nxt = paragraph.find(". ", end + 1)
        candidate = paragraph if nxt < 0 else paragraph[: nxt + 1]
        if candidate.count("``") % 2 == 0 or nxt < 0:
            return candidate
        end = nxt


_autosummary.extract_summary = _balanced_summary


# numpydoc compiles its Jinja template anew for every docstring (about a fifth of the build's CPU time); build it
# once per builder and reuse it. Falls back to numpydoc's own function if its internals change.
def _cache_numpydoc_template() -> None:
    import numpydoc.docscrape_sphinx as nds
    import numpydoc.numpydoc as nd

    original = nds.get_doc_object
    needed = ("get_doc_object_orig", "SphinxClassDoc", "SphinxFunctionDoc", "SphinxObjDoc", "BuiltinTemplateLoader")
    if not all(hasattr(nds, name) for name in needed) or getattr(nd, "get_doc_object", None) is not original:
        return
    templates: dict[int, object] = {}

    def get_doc_object(obj, what=None, doc=None, config=None, builder=None):
        if builder is None:
            return original(obj, what=what, doc=doc, config=config, builder=builder)
        template = templates.get(id(builder))
        if template is None:
            from jinja2.sandbox import SandboxedEnvironment

            loader = nds.BuiltinTemplateLoader()
            loader.init(builder, dirs=[os.path.join(os.path.dirname(nds.__file__), "templates")])
            template = SandboxedEnvironment(loader=loader).get_template("numpydoc_docstring.rst")
            templates[id(builder)] = template
        config = {} if config is None else config
        config["template"] = template
        return nds.get_doc_object_orig(
            obj,
            what=what,
            doc=doc,
            config=config,
            class_doc=nds.SphinxClassDoc,
            func_doc=nds.SphinxFunctionDoc,
            obj_doc=nds.SphinxObjDoc,
        )

    nd.get_doc_object = get_doc_object


def _report_api_problems(app):
    from sphinx.util import logging

    log = logging.getLogger("apigen")
    for problem in apigen.PROBLEMS:
        log.warning("API reference: %s", problem)


def _no_gallery_for_doctest(app):
    # The gallery has no doctests; the HTML build executes it. Under the doctest builder its scripts are turned
    # into pages without running them.
    if app.builder.name == "doctest":
        app.config.plot_gallery = "False"


def setup(app):
    app.connect("builder-inited", _no_gallery_for_doctest, priority=5)  # before sphinx-gallery reads it (10)
    _cache_numpydoc_template()  # after numpydoc's own setup, which resets the function it calls
    app.connect("builder-inited", _report_api_problems)
    # Before numpydoc (priority 500) so that numpydoc sees the escaped text.
    app.connect("autodoc-process-docstring", _process_docstring, priority=100)
    app.connect("missing-reference", _missing_reference)
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("doctree-read", _drop_empty_bases)
    app.connect("autodoc-process-docstring", _doctest_module_namespace, priority=900)  # after numpydoc
    return {"parallel_read_safe": True}
