"""The exceptions smckit raises.

Every error derives from :class:`SMCError`. Messages say what was wrong, where (step, row) and what to do.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SMCError",
    "InvalidArgumentError",
    "ShapeError",
    "BackendError",
    "InvalidWeightsError",
    "ExtinctionError",
    "PluginError",
    "UnknownPluginError",
    "AmbiguousPluginError",
    "PluginConflictError",
    "PluginLoadError",
    "ProcessGroupError",
    "SMCWarning",
]


class SMCError(Exception):
    """Base class of every error raised by smckit.

    Every smckit error pickles with its fields (and the partial result it carries, if any), so an error raised in
    a worker process (``ProcessPoolExecutor``, ``multiprocessing``) reaches the parent whole.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default pickling calls cls(*args), which fails for required keyword-only fields.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type[SMCError], args: tuple[Any, ...], fields: dict[str, Any]) -> SMCError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(fields)
    return error


class InvalidArgumentError(SMCError, ValueError):
    """An argument has a value smckit cannot use (negative sizes, thresholds outside (0, 1], ...)."""


class ShapeError(InvalidArgumentError):
    """Arrays whose shapes do not fit together (particle axis, batch shape, event shape)."""


class BackendError(SMCError, TypeError):
    """Arrays from different backends, devices or dtypes were mixed; smckit never converts silently."""


class InvalidWeightsError(SMCError, FloatingPointError):
    """A log-potential or log-weight was NaN or +inf.

    Attributes
    ----------
    step : int or None
        The step whose potential produced the bad values (``None`` outside a run).
    count : int
        How many bad values there were.
    rows : tuple of tuple of int
        Batch indices of the affected rows (``((),)`` for an unbatched run).
    result : Result or None
        The partial result up to the previous step, when raised by the engine (typed ``object`` here:
        this module imports nothing from smckit).
    """

    def __init__(
        self,
        message: str,
        *,
        step: int | None,
        count: int,
        rows: tuple[tuple[int, ...], ...] = (),
        result: object = None,
    ):
        super().__init__(message)
        self.step = step
        self.count = count
        self.rows = rows
        self.result = result


class ExtinctionError(SMCError):
    """Every particle of a row got weight zero (all log-weights -inf).

    Attributes
    ----------
    step : int or None
        The step at which the row died out (``None`` outside a run).
    rows : tuple of tuple of int
        Batch indices of the extinct rows.
    result : Result or None
        The partial result up to the step before extinction: nothing computed is lost.
    """

    def __init__(
        self,
        message: str,
        *,
        step: int | None,
        rows: tuple[tuple[int, ...], ...] = (),
        result: object = None,
    ):
        super().__init__(message)
        self.step = step
        self.rows = rows
        self.result = result


class PluginError(SMCError):
    """Base class of the plugin registry's errors."""


class UnknownPluginError(PluginError, LookupError):
    """No plugin provides the requested name."""


class AmbiguousPluginError(PluginError, LookupError):
    """Two or more plugins claim the same bare name; use a qualified ``"distribution:name"``."""


class PluginConflictError(PluginError):
    """A plugin tried to register a name that one of smckit's built-ins owns (strict mode)."""


class PluginLoadError(PluginError):
    """A plugin failed to import or register (raised in strict mode, recorded otherwise)."""

    def __init__(self, message: str, *, plugin: str = "", cause: Any = None):
        super().__init__(message)
        self.plugin = plugin
        self.cause = cause


class ProcessGroupError(SMCError, RuntimeError):
    """torch.distributed is unavailable or not initialised, or another rank failed during a distributed run."""


class SMCWarning(UserWarning):
    """A result that smckit computed but whose assumptions the run does not meet (e.g. an error bar's)."""
