"""Particle containers: a state is an array or a nest (dict, list, tuple, dataclass) of arrays.

Every array (leaf) of a state has the layout ``(*batch, n, *event)``: leading batch dimensions (one
independent population per batch row), the particle axis, then the particle's own dimensions. Resampling
permutes all leaves together through :func:`take`, so no per-particle data can be left behind.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from smckit.backend import Array, check_compatible, device_of, is_torch, namespace
from smckit.errors import ShapeError

__all__ = ["tree_map", "leaves", "take", "num_particles"]

State = Any


def tree_map(fn: Callable[[Array], Array], state: State) -> State:
    """Apply ``fn`` to every array leaf of ``state``, keeping the nest's structure.

    Dicts, lists, tuples, namedtuples and dataclass instances are traversed; ``None`` is kept as is.

    Parameters
    ----------
    fn : callable
        Maps an array to an array.
    state : array or nest of arrays

    Returns
    -------
    a nest of the same structure holding ``fn(leaf)`` for every leaf
    """
    if state is None:
        return None
    if isinstance(state, dict):
        return type(state)((k, tree_map(fn, v)) for k, v in state.items())
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # namedtuple
        return type(state)(*(tree_map(fn, v) for v in state))
    if isinstance(state, (list, tuple)):
        return type(state)(tree_map(fn, v) for v in state)
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        changes = {f.name: tree_map(fn, getattr(state, f.name)) for f in dataclasses.fields(state) if f.init}
        return dataclasses.replace(state, **changes)
    return fn(state)


def leaves(state: State) -> list[Array]:
    """The array leaves of ``state``, in traversal order.

    Parameters
    ----------
    state : array or nest of arrays

    Returns
    -------
    list of arrays
    """
    found: list[Array] = []

    def visit(x: Array) -> Array:
        found.append(x)
        return x

    tree_map(visit, state)
    return found


def num_particles(state: State, batch_ndim: int = 0) -> int:
    """The length of the particle axis shared by every leaf.

    Parameters
    ----------
    state : array or nest of arrays, each of shape (*batch, n, *event)
    batch_ndim : int
        ``len(batch)``.

    Returns
    -------
    int
        n.

    Raises
    ------
    ShapeError
        If the state has no leaves or the leaves disagree.
    """
    sizes = {tuple(x.shape[: batch_ndim + 1]) for x in leaves(state)}
    if len(sizes) != 1:
        raise ShapeError(
            f"the state's arrays disagree on the (*batch, n) axes: {sorted(sizes)}; every array of a state "
            "must have the layout (*batch, n, *event)"
        )
    return sizes.pop()[-1]


def take(state: State, ancestors: Array) -> State:
    """Select particles: ``out[..., i, ...] = state[..., ancestors[..., i], ...]`` for every leaf.

    Parameters
    ----------
    state : array or nest of arrays, each of shape (*batch, n, *event)
    ancestors : integer array, shape (*batch, n_out)
        Indices into the particle axis, per batch row.

    Returns
    -------
    state of the same structure, each leaf of shape (*batch, n_out, *event)

    Raises
    ------
    ShapeError
        If a leaf's batch shape differs from the ancestors' or a leaf lacks the particle axis.
    """
    batch = tuple(ancestors.shape[:-1])
    n_out = ancestors.shape[-1]
    rows = math.prod(batch)
    cache: dict[Any, Array] = {}

    def flat_index(leaf: Array) -> Array:
        # One gather over the flattened (rows * n) axis serves every backend: row r's index i becomes r*n + i.
        n = leaf.shape[len(batch)]
        key = (str(device_of(leaf)), n)
        if key not in cache:
            xp = namespace(ancestors)
            idx = xp.reshape(xp.astype(ancestors, xp.int64), (rows, n_out))
            if rows > 1:
                offsets = xp.arange(rows, dtype=xp.int64, device=device_of(ancestors)) * n
                idx = idx + offsets[:, None]
            cache[key] = xp.reshape(idx, (rows * n_out,))
        return cache[key]

    def take_leaf(leaf: Array) -> Array:
        if leaf.ndim < len(batch) + 1 or tuple(leaf.shape[: len(batch)]) != batch:
            raise ShapeError(
                f"cannot resample a state array of shape {tuple(leaf.shape)} with ancestors of shape "
                f"{tuple(ancestors.shape)}: expected (*batch, n, *event) with batch = {batch}"
            )
        if type(leaf) is not type(ancestors) or getattr(leaf, "device", None) != getattr(ancestors, "device", None):
            check_compatible(ancestors, leaf, what="a state array given to take()", dtype=False)
        event = tuple(leaf.shape[len(batch) + 1 :])
        if is_torch(leaf):  # one gather kernel along the particle axis, the index broadcast over the event axes
            index = torch_index().reshape(*batch, n_out, *(1,) * len(event)).expand(*batch, n_out, *event)
            return leaf.gather(len(batch), index)
        xp = namespace(leaf)
        n = leaf.shape[len(batch)]
        flat = xp.reshape(leaf, (rows * n, *event))
        out = xp.take(flat, flat_index(leaf), axis=0)
        return xp.reshape(out, (*batch, n_out, *event))

    def torch_index() -> Array:
        if "torch" not in cache:
            cache["torch"] = ancestors.long()  # no copy when already int64
        return cache["torch"]

    return tree_map(take_leaf, state)
