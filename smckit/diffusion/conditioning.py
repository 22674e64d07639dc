"""Conditioning of a network or a reward: nests of per-group tensors, broadcast to the particles on demand.

A conditioning is a dict of keyword arguments. Its tensors (at any depth of nested dicts, lists and tuples, such
as SDXL's ``added_cond_kwargs = {"text_embeds": ..., "time_ids": ...}``) carry one row per group, shape
``(G, *rest)``; every other value (a float, a string, ``None``) is passed as it is. The model keeps the
conditioning per group and never per particle: resampling acts within a group (each group is one row of the
run), so every particle of group g keeps group g's conditioning whatever the ancestors, and there is nothing to
permute. When a network or a reward is called on a chunk of the flattened ``(G * n)`` particles, the rows of the
chunk are gathered from the groups (:func:`gather`): no ``(G * n, *rest)`` copy is ever materialised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from smckit.errors import BackendError, ShapeError

__all__ = ["is_tensor", "check", "gather", "concat", "tensors"]

Tensor = Any


def is_tensor(value: Any) -> bool:
    """Whether ``value`` is an array with a shape and a device (a torch tensor), i.e. a per-group leaf.

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
    """
    return hasattr(value, "shape") and hasattr(value, "device") and hasattr(value, "ndim")


def _map(value: Any, fn: Callable[[Tensor, str], Any], path: str) -> Any:
    """Apply ``fn(tensor, path)`` to every tensor of a nest of dicts, lists and tuples."""
    if is_tensor(value):
        return fn(value, path)
    if isinstance(value, Mapping):
        return {k: _map(v, fn, f"{path}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map(v, fn, f"{path}[{i}]") for i, v in enumerate(value))
    return value


def tensors(cond: Mapping[str, Any] | None) -> list[Tensor]:
    """Every tensor of a conditioning nest, depth first.

    Parameters
    ----------
    cond : dict or None

    Returns
    -------
    list of tensors
    """
    found: list[Tensor] = []
    _map(dict(cond or {}), lambda v, _: found.append(v), "")
    return found


def check(cond: Mapping[str, Any] | None, groups: int, device: Any, what: str) -> dict[str, Any]:
    """A copy of a conditioning nest whose tensors are checked: leading axis ``groups``, on ``device``.

    Parameters
    ----------
    cond : dict or None
        Keyword arguments; tensors (at any depth) of shape ``(groups, *rest)``.
    groups : int
        G.
    device : torch.device
        Where the model runs.
    what : str
        The argument's name, for messages (e.g. ``"conditioning"``).

    Returns
    -------
    dict
        The same nest (new containers, the same tensors).

    Raises
    ------
    ShapeError
        For a tensor without a leading axis of length ``groups``, naming its path in the nest.
    BackendError
        For a tensor on another device.
    """

    def leaf(value: Tensor, path: str) -> Tensor:
        if value.ndim < 1 or value.shape[0] != groups:
            raise ShapeError(
                f"{path} has shape {tuple(value.shape)}; tensors need a leading axis of length groups = {groups} "
                "(one row per group)"
            )
        if value.device != device:
            raise BackendError(f"{path} lives on {value.device} but the model runs on {device}; move it first")
        return value

    return {k: _map(v, leaf, f"{what}[{k!r}]") for k, v in dict(cond or {}).items()}


def gather(cond: Mapping[str, Any], rows: Tensor) -> dict[str, Any]:
    """Every tensor of the nest indexed by ``rows`` along its leading axis (``tensor[rows]``).

    Parameters
    ----------
    cond : dict
        Tensors of shape ``(G, *rest)``.
    rows : int tensor, shape (B,)
        The group of each sample of a chunk, on the tensors' device.

    Returns
    -------
    dict
        Tensors of shape ``(B, *rest)``; other values unchanged.
    """
    return {k: _map(v, lambda x, _: x.index_select(0, rows), "") for k, v in cond.items()}


def concat(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Two conditionings of one structure joined along the leading axis (classifier-free guidance's batch).

    Parameters
    ----------
    first, second : dict
        The same keys and nest structure; tensors of shapes ``(B, *rest)``.

    Returns
    -------
    dict
        Tensors of shape ``(2B, *rest)`` (``first``'s rows, then ``second``'s); other values from ``first``.

    Raises
    ------
    ShapeError
        When the two nests differ in structure.
    """
    import torch

    def join(a: Any, b: Any, path: str) -> Any:
        if is_tensor(a) and is_tensor(b):
            return torch.cat([a, b.to(a.dtype)], dim=0)
        if isinstance(a, Mapping) and isinstance(b, Mapping) and a.keys() == b.keys():
            return {k: join(a[k], b[k], f"{path}[{k!r}]") for k in a}
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
            return type(a)(join(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b)))
        if is_tensor(a) or is_tensor(b) or isinstance(a, (Mapping, list, tuple)):
            raise ShapeError(f"the conditional and unconditional inputs differ in structure at {path or 'the top'}")
        return a

    joined = join(dict(first), dict(second), "")
    assert isinstance(joined, dict)
    return joined
