"""Array-namespace helpers: one implementation for numpy and torch (CPU and CUDA).

smckit writes its numerics against the array API through :mod:`array_api_compat`; this module adds the
few checks the engine needs: that arrays share one backend, device and dtype, and helpers to build index
arrays on the right device. torch is never imported here; array_api_compat imports it only when a torch
tensor is passed in.
"""

from __future__ import annotations

import functools
from typing import Any

import array_api_compat
import numpy as np

from smckit.errors import BackendError

__all__ = [
    "Array",
    "namespace",
    "is_numpy",
    "is_torch",
    "device_of",
    "describe",
    "check_compatible",
    "arange_like",
    "is_floating",
    "to_host",
    "to_cpu",
    "to_device_of",
]

Array = Any
"""Type alias for an array of any supported backend (numpy.ndarray or torch.Tensor)."""


def namespace(*arrays: Array) -> Any:
    """The array-API namespace shared by ``arrays``.

    Parameters
    ----------
    *arrays : array
        numpy arrays or torch tensors (any shape).

    Returns
    -------
    module
        The array_api_compat namespace (``array_api_compat.numpy`` or ``array_api_compat.torch``).

    Raises
    ------
    BackendError
        If the arrays come from different libraries (numpy and torch mixed).
    """
    # Fast path for the common case, all numpy arrays: the engine asks several times per step, and
    # array_namespace's general dispatch costs microseconds that dominate small populations.
    if all(type(a) is np.ndarray for a in arrays):
        return _numpy_namespace()
    try:
        return array_api_compat.array_namespace(*arrays)
    except TypeError as exc:
        kinds = sorted({type(a).__module__.split(".")[0] + "." + type(a).__name__ for a in arrays})
        raise BackendError(
            f"arrays from different backends were mixed: {', '.join(kinds)}; "
            "convert them to one library (numpy or torch) before calling smckit"
        ) from exc


@functools.cache
def _numpy_namespace() -> Any:
    return array_api_compat.array_namespace(np.empty(0))


def is_numpy(x: Array) -> bool:
    """Whether ``x`` is a numpy array (or numpy scalar)."""
    return isinstance(x, (np.ndarray, np.generic))


def is_torch(x: Array) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    if type(x) is np.ndarray:  # the common case, without array_api_compat's dispatch
        return False
    return array_api_compat.is_torch_array(x)


def device_of(x: Array) -> Any:
    """The device of ``x``.

    Parameters
    ----------
    x : array
        Any shape.

    Returns
    -------
    device
        ``"cpu"`` for numpy arrays, the tensor's ``torch.device`` otherwise.
    """
    if type(x) is np.ndarray:
        return "cpu"
    return array_api_compat.device(x)


def describe(x: Array) -> str:
    """A short human description: backend, dtype, device and shape."""
    lib = "torch" if is_torch(x) else "numpy"
    return f"{lib} {x.dtype} on {device_of(x)} with shape {tuple(x.shape)}"


def is_floating(x: Array) -> bool:
    """Whether ``x`` has a real floating dtype."""
    if is_torch(x):
        return bool(x.is_floating_point())
    return np.asarray(x).dtype.kind == "f"


def check_compatible(reference: Array, other: Array, *, what: str, dtype: bool = True) -> None:
    """Raise unless ``other`` has the backend, device (and dtype) of ``reference``.

    Parameters
    ----------
    reference, other : array
        The arrays to compare.
    what : str
        Where ``other`` came from, for the message (e.g. ``"log_potential at step 3"``).
    dtype : bool
        Whether the dtypes must match too.

    Raises
    ------
    BackendError
        On a different backend, device or (with ``dtype=True``) dtype.
    """
    same_lib = is_torch(reference) == is_torch(other)
    same_device = same_lib and str(device_of(reference)) == str(device_of(other))
    same_dtype = same_lib and reference.dtype == other.dtype
    if not same_lib or not same_device or (dtype and not same_dtype):
        raise BackendError(
            f"{what}: got a {describe(other)}, expected the backend and device of {describe(reference)}; "
            "smckit never moves or casts arrays silently: create it on the same device with the same dtype"
        )


def arange_like(n: int, like: Array, *, dtype: Any = None) -> Array:
    """``arange(n)`` with the backend and device of ``like``.

    Parameters
    ----------
    n : int
    like : array
        Any shape; fixes backend and device.
    dtype : dtype, optional
        int64 by default.

    Returns
    -------
    array, shape (n,)
    """
    xp = namespace(like)
    return xp.arange(n, dtype=dtype if dtype is not None else xp.int64, device=device_of(like))


def to_host(x: Array, dtype: Any = None) -> np.ndarray:
    """A numpy copy (or view) of ``x`` in host memory: the one place where arrays leave their device.

    Parameters
    ----------
    x : array or scalar
        numpy array, torch tensor (any device) or Python scalar; any shape.
    dtype : numpy dtype, optional
        The dtype of the result. By default the input's; a torch bfloat16 tensor, which numpy cannot hold,
        comes back as float32 (exact: every bfloat16 value is a float32 value).

    Returns
    -------
    ndarray, the shape of ``x``
    """
    if is_torch(x):
        x = x.detach()
        if str(x.dtype) == "torch.bfloat16":  # numpy has no bfloat16; float32 holds every value exactly
            x = x.float()
        x = x.cpu()
    return np.asarray(x, dtype=dtype)


def to_cpu(tree: Any) -> Any:
    """Every torch leaf of a nest detached and moved to the CPU (numpy leaves and non-arrays unchanged).

    Unlike :func:`to_host` this keeps tensors as tensors (bfloat16 included), e.g. for pickling to another process.

    Parameters
    ----------
    tree : array or nest of arrays, any shapes

    Returns
    -------
    the nest, its torch leaves on the CPU (shapes and dtypes unchanged)
    """
    from smckit.state import tree_map

    return tree_map(lambda x: x.detach().cpu() if is_torch(x) else x, tree)


def to_device_of(tree: Any, like: Array | None) -> Any:
    """Every torch leaf of a nest moved to the device of ``like`` (unchanged when ``like`` is None or numpy).

    Parameters
    ----------
    tree : array or nest of arrays, any shapes
    like : array or None

    Returns
    -------
    the nest, its torch leaves on the device of ``like`` (shapes and dtypes unchanged)
    """
    from smckit.state import tree_map

    if like is None or not is_torch(like):
        return tree
    dev = device_of(like)
    return tree_map(lambda x: x.to(dev) if is_torch(x) else x, tree)
