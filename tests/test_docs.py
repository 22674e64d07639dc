"""The documentation's coverage of the API, checked without building it (a second or two).

- every name in ``smckit.__all__`` and in the Fleming-Viot plugin's ``smckit_fvd.__all__`` has a docstring;
- every name in ``smckit.__all__`` is placed in a section of the hand-written page ``docs/api/smckit.rst``, and
  every public name of every public module (the plugin's included) gets a page in the generated API reference
  (``docs/_ext/apigen.py`` decides where; a module or name that fails to import is reported);
- the functions and methods that take arrays document them: a function has numpydoc "Parameters" and "Returns"
  sections (a predicate returning bool or str needs neither); a method has a "Parameters" section or states the
  shapes in its summary (``returns shape (*batch, n)``), the pragmatic form for one-line docstrings of methods
  that implement an interface.

The full build (``SMCKIT_DOCS_OFFLINE=1 python -m sphinx -W --keep-going -n -b html docs docs/_build/html``)
checks the rest: that every page renders and every cross-reference resolves.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest

import smckit
from smckit.backend import Array

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import apigen  # noqa: E402

pytest.importorskip("sphinx")  # apigen reads attribute docs with Sphinx's module analyzer

# An annotation that mentions one of these marks an array argument (smckit's aliases ``Array``, ``Tensor`` and
# ``State`` are ``Any`` at run time; the annotations are strings under ``from __future__ import annotations``).
ARRAY_ANNOTATION = re.compile(r"\b(Array|Tensor|ndarray|State)\b")
# "shape", "(*batch, n)", "(G, n, *event)", "same shape / structure as": the ways a summary states shapes.
STATES_SHAPES = re.compile(r"shape|\(\*\w|\((?:\w+, )+\*?\w+\)|same (?:shape|structure)")
SECTION = r"^\s*{}\s*\n\s*-{{3,}}\s*$"

# Functions and methods of submodules that take arrays but do not yet document them (see the module docstring
# for the rule). Empty since session 2; a new public function must be documented from the start.
KNOWN_GAPS: set[str] = set()


def _fvd():
    return pytest.importorskip("smckit_fvd", reason="the smckit-fvd plugin is not installed")


def _top_level_names(module) -> list[str]:
    return [n for n in module.__all__ if not (n.startswith("__") and n.endswith("__"))]


def _doc(obj) -> str:
    return inspect.getdoc(obj) or ""


def _is_data(obj) -> bool:
    return not (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj))


def _documented(module, name: str) -> bool:
    """Whether ``module.name`` has documentation of its own.

    Classes and functions need a docstring. A constant (data) has none of its own (``inspect.getdoc`` would
    return its type's), so it needs a doc comment or docstring next to its assignment in the module that
    defines or re-exports it, as Sphinx reads them.
    """
    obj = getattr(module, name)
    if not _is_data(obj):
        return bool(_doc(obj).strip())
    modules = [m for m in apigen.public_modules() if name in getattr(importlib.import_module(m), "__all__", ())]
    return any(
        getattr(importlib.import_module(m), name) is obj and apigen._has_attr_doc(m, name) for m in modules
    ) or any(apigen._has_attr_doc(m, name) for m in _private_defining_modules(module, name))


def _private_defining_modules(module, name: str) -> list[str]:
    """Submodules of ``module``'s package (private ones included) that assign ``name``."""
    package = module.__name__.split(".")[0]
    found = []
    for modname, mod in list(sys.modules.items()):
        if modname.split(".")[0] == package and mod is not None and getattr(mod, name, None) is getattr(module, name):
            found.append(modname)
    return found


@pytest.mark.parametrize("name", _top_level_names(smckit))
def test_every_top_level_name_has_a_docstring(name):
    assert _documented(smckit, name), f"smckit.{name} has no docstring"


def test_every_plugin_name_has_a_docstring():
    fvd = _fvd()
    missing = [n for n in _top_level_names(fvd) if not _documented(fvd, n)]
    assert not missing, f"smckit_fvd names without a docstring (or doc comment, for constants): {missing}"


def test_every_top_level_name_is_placed_on_the_api_page():
    # The generated fallback ("More") keeps the build complete, but the page should place each name in a section.
    missing = apigen.top_level_missing(DOCS)
    assert not missing, f"add these names of smckit.__all__ to a section of docs/api/smckit.rst: {missing}"


def test_every_public_name_gets_a_page_in_the_api_reference():
    pages, homes = apigen.plan()
    assert not apigen.PROBLEMS, "\n".join(apigen.PROBLEMS)
    documented = {m.fullname for page in pages.values() for m in page.own}
    documented |= {f"smckit.{n}" for n in _top_level_names(smckit)}
    for modname in apigen.public_modules():
        module = importlib.import_module(modname)
        for name in apigen.public_names(module):
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue
            home = homes[(id(obj), name)]
            assert home in documented, f"{modname}.{name} (home {home}) is not documented anywhere"
    if importlib.util.find_spec("smckit_fvd") is not None:
        assert "smckit_fvd" in pages and pages["smckit_fvd"].own, "the Fleming-Viot plugin has no API page"


# -- array arguments are documented ----------------------------------------------------------------------------
def _takes_arrays(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return any(ARRAY_ANNOTATION.search(str(p.annotation)) for n, p in params.items() if n not in ("self", "cls"))


def _returns(fn) -> str:
    ann = inspect.signature(fn).return_annotation
    return "None" if ann in (None, "None", inspect.Signature.empty) else str(ann)


def _has(doc: str, section: str) -> bool:
    return re.search(SECTION.format(section), doc, re.MULTILINE) is not None


def _undocumented_arrays(fullname: str, fn, *, method: bool) -> str | None:
    """Why ``fn`` fails the rule, or None."""
    if not _takes_arrays(fn) or _returns(fn) in ("bool", "str"):
        return None
    doc = _doc(fn)
    if not doc:
        return f"{fullname}: no docstring"
    if method:
        if _has(doc, "Parameters") or STATES_SHAPES.search(doc):
            return None
        return f"{fullname}: neither a Parameters section nor the shapes in the docstring"
    missing = [s for s in ("Parameters", "Returns") if not _has(doc, s)]
    if _returns(fn) == "None" and "Returns" in missing:
        missing.remove("Returns")
    if "Returns" in missing and _has(doc, "Yields"):
        missing.remove("Returns")
    return f"{fullname}: no {' or '.join(missing)} section" if missing else None


def _callables(fullname: str, obj):
    """(full name, function, is_method) for a public function or the public methods of a public class."""
    if inspect.isfunction(obj):
        yield fullname, obj, False
    elif inspect.isclass(obj):
        for name, value in vars(obj).items():
            if name.startswith("_") and name != "__call__":
                continue
            fn = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            if inspect.isfunction(fn):
                yield f"{fullname}.{name}", fn, True


def _array_doc_gaps(objects: dict[str, object]) -> set[str]:
    gaps = set()
    for fullname, obj in objects.items():
        for name, fn, method in _callables(fullname, obj):
            reason = _undocumented_arrays(name, fn, method=method)
            if reason:
                gaps.add(reason)
    return gaps


def test_top_level_and_plugin_api_document_their_arrays():
    objects = {f"smckit.{n}": getattr(smckit, n) for n in _top_level_names(smckit)}
    fvd = importlib.util.find_spec("smckit_fvd") and importlib.import_module("smckit_fvd")
    if fvd:
        objects |= {f"smckit_fvd.{n}": getattr(fvd, n) for n in _top_level_names(fvd)}
    gaps = _array_doc_gaps(objects)
    assert not gaps, "document the array arguments of:\n" + "\n".join(sorted(gaps))


def test_submodule_functions_document_their_arrays():
    pages, _ = apigen.plan()
    objects = {m.fullname: m.obj for page in pages.values() for m in page.own}
    gaps = {g.split(":")[0] for g in _array_doc_gaps(objects)}
    new = gaps - KNOWN_GAPS
    assert not new, "document the array arguments (Parameters/Returns, with shapes) of:\n" + "\n".join(sorted(new))


def test_the_shape_check_can_fail():
    # The checks above must be able to fail: a function taking an array without sections is caught, a method
    # stating its shapes passes.
    def bare(x: Array) -> Array:
        """Do something."""

    def method(self, x: Array) -> Array:
        """``log p(x)`` for ``x`` of shape ``(*shape, d)``; returns shape ``shape``."""

    assert _undocumented_arrays("bare", bare, method=False)
    assert _undocumented_arrays("bare", bare, method=True)
    assert _undocumented_arrays("method", method, method=True) is None


# -- the site works offline ---------------------------------------------------------------------------------
def test_maths_render_from_the_site_itself_not_a_cdn():
    import offlinemath

    source = offlinemath.mathjax_source()
    assert source is not None, "pip install sphinx-mathjax-offline (the docs extra): the site needs MathJax's files"
    for needed in (offlinemath.ENTRY, "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff", "input/tex/extensions"):
        assert (source / needed).exists(), needed
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    assert '"offlinemath"' in conf and "mathjax_path" not in conf.replace("``mathjax_path``", "")


def test_install_instructions_say_the_package_is_not_on_pypi_yet():
    # `pip install pysmckit` (or smckit-fvd) finds nothing until a release is published: the docs must say so
    # wherever they show such a command, and show the install from a clone first.
    for page in (DOCS / "getting-started.rst", DOCS / "guide" / "fleming-viot.rst", ROOT / "README.md"):
        text = page.read_text(encoding="utf-8")
        bare = re.findall(r"^\s*pip install (?!-)(?!\S*-e )\S+", text, re.MULTILINE)
        assert not bare, f"{page.name} shows {bare} as a command; smckit installs from a clone until released"
        assert "pip install -c .ci/constraints.txt -e" in text or "pip install -e" in text, page.name
