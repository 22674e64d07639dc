"""Compatibility module: :class:`History` and :class:`Result` live in :mod:`smckit.result`."""

from smckit.result import History, Result

__all__ = ["History", "Result"]
