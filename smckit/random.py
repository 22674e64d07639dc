"""One random-number generator for numpy and torch, on any device.

:class:`RNG` wraps a :class:`numpy.random.Generator` and, on demand, one :class:`torch.Generator` per
device, all derived from one seed through :class:`numpy.random.SeedSequence`. Draws are made on the
backend, device and dtype of a reference array (``like=``), so a model written once runs on numpy, on the
CPU with torch and on CUDA without moving data. The same seed on the same backend and device gives the same
draws, bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from smckit.backend import Array, device_of, is_torch
from smckit.errors import InvalidArgumentError

__all__ = ["RNG", "as_rng"]


def _shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


_DRAW_DOC = """{summary}

Parameters
----------
shape : int or tuple of int
    Shape of the draws.
like : array, optional
    A numpy array or torch tensor whose backend, device and (floating) dtype the draws take; numpy
    float64 when omitted.
dtype : dtype, optional
    Overrides the dtype of ``like``.

Returns
-------
array of shape ``shape``
    On the backend and device of ``like``.

Raises
------
InvalidArgumentError
    For a numpy dtype other than float32 or float64.
"""


class RNG:
    """A seeded random source that draws on the backend and device of a reference array.

    Parameters
    ----------
    seed : int, numpy.random.SeedSequence or None
        The seed. ``None`` draws fresh entropy from the operating system.

    Examples
    --------
    >>> from smckit.random import RNG
    >>> rng = RNG(0)
    >>> rng.normal((2, 3)).shape
    (2, 3)
    """

    def __init__(self, seed: int | np.random.SeedSequence | None = None):
        if isinstance(seed, np.random.SeedSequence):
            self._seq = seed
        else:
            if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
                raise InvalidArgumentError(f"seed must be a non-negative integer or None, got {seed!r}")
            self._seq = np.random.SeedSequence(seed)
        numpy_seq, self._torch_seq = self._seq.spawn(2)
        # PCG64DXSM, not the older PCG64: numpy recommends it for many parallel streams (smckit spawns one per
        # row or process), and it is about 1.6x faster per draw on the CPUs we measured.
        self.numpy = np.random.Generator(np.random.PCG64DXSM(numpy_seq))
        """The numpy generator (for numpy arrays and CPU-side choices)."""
        self._torch: dict[str, Any] = {}

    @property
    def seed_sequence(self) -> np.random.SeedSequence:
        """The :class:`numpy.random.SeedSequence` this generator was built from."""
        return self._seq

    def spawn(self, k: int) -> list[RNG]:
        """``k`` independent child generators (e.g. one per batch row or per process)."""
        return [RNG(s) for s in self._seq.spawn(k)]

    def torch_generator(self, device: Any = "cpu") -> Any:
        """The :class:`torch.Generator` for ``device``, created and seeded on first use."""
        key = str(device)
        gen = self._torch.get(key)
        if gen is None:
            import torch

            # A per-device seed derived from this generator's seed sequence: adding devices later does not
            # change the draws made on the ones already in use.
            entropy = self._torch_seq.generate_state(2, dtype=np.uint32)
            salt = sum(ord(c) * 131**i for i, c in enumerate(key)) % (2**31)
            gen = torch.Generator(device=torch.device(key))
            gen.manual_seed(int(entropy[0]) << 31 ^ int(entropy[1]) ^ salt)
            self._torch[key] = gen
        return gen

    # -- draws ------------------------------------------------------------------------------------------
    def uniform(self, shape: Any, *, like: Array | None = None, dtype: Any = None) -> Array:
        return self._draw("uniform", _shape(shape), like, dtype)

    def normal(self, shape: Any, *, like: Array | None = None, dtype: Any = None) -> Array:
        return self._draw("normal", _shape(shape), like, dtype)

    def exponential(self, shape: Any, *, like: Array | None = None, dtype: Any = None) -> Array:
        return self._draw("exponential", _shape(shape), like, dtype)

    uniform.__doc__ = _DRAW_DOC.format(summary="Uniform draws on [0, 1).")
    normal.__doc__ = _DRAW_DOC.format(summary="Standard normal draws.")
    exponential.__doc__ = _DRAW_DOC.format(summary="Standard exponential draws (rate 1).")

    def integers(self, high: int, shape: Any, *, like: Array | None = None) -> Array:
        """Integers uniform on ``{0, ..., high-1}``.

        Parameters
        ----------
        high : int
            One past the largest value.
        shape : int or tuple of int
            Shape of the draws.
        like : array, optional
            A numpy array or torch tensor whose backend and device the draws take (numpy when omitted).

        Returns
        -------
        int64 array of shape ``shape``
        """
        shape = _shape(shape)
        if like is not None and is_torch(like):
            import torch

            dev = device_of(like)
            return torch.randint(0, high, shape, generator=self.torch_generator(dev), device=dev)
        return self.numpy.integers(0, high, size=shape, dtype=np.int64)

    def _draw(self, kind: str, shape: tuple[int, ...], like: Array | None, dtype: Any) -> Array:
        if like is not None and is_torch(like):
            import torch

            dev = device_of(like)
            dt = dtype if dtype is not None else (like.dtype if like.is_floating_point() else torch.float32)
            gen = self.torch_generator(dev)
            if kind == "uniform":
                return torch.rand(shape, generator=gen, device=dev, dtype=dt)
            if kind == "normal":
                return torch.randn(shape, generator=gen, device=dev, dtype=dt)
            out = torch.empty(shape, device=dev, dtype=dt)
            return out.exponential_(generator=gen)
        if dtype is None:
            dtype = like.dtype if like is not None and np.issubdtype(like.dtype, np.floating) else np.float64
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise InvalidArgumentError(f"random draws need float32 or float64, got {dtype}")
        gen = self.numpy
        if kind == "uniform":
            return gen.random(shape, dtype=dtype)
        if kind == "normal":
            return gen.standard_normal(shape, dtype=dtype)
        return gen.standard_exponential(shape, dtype=dtype)

    def __repr__(self) -> str:
        return f"RNG(entropy={self._seq.entropy}, spawn_key={self._seq.spawn_key})"


def as_rng(seed: RNG | int | np.random.SeedSequence | None) -> RNG:
    """An :class:`RNG` from a seed, or ``seed`` itself when it already is one."""
    return seed if isinstance(seed, RNG) else RNG(seed)
