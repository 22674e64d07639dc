"""Optional dependencies, imported on first use with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise ImportError naming the ``pysmckit[extra]`` that installs it.

    Parameters
    ----------
    module : str
        A top-level module name, e.g. ``"transformers"``.
    extra : str
        The optional-dependency group of pysmckit that installs it, e.g. ``"text"``.

    Returns
    -------
    module

    Raises
    ------
    ImportError
        When the module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"this needs {module}: pip install -e '.[{extra}]' in a clone of smckit (the '{extra}' extra) ({exc})"
        ) from exc
