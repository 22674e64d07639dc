"""Process-group plumbing for smckit's distributed runs: checks, backend choice and the collectives they use.

Every distributed run in smckit goes through a :class:`Comm`, a thin wrapper around one
``torch.distributed`` process group. It

- checks that the process group exists (a clear :class:`ProcessGroupError` otherwise, instead of
  torch's generic ``RuntimeError`` on the first collective);
- moves arrays to the communication device and back: numpy arrays travel as CPU tensors (no copy), torch
  tensors stay on their device with NCCL and go through host memory with gloo (gloo has no CUDA
  all-to-all);
- provides the few collectives the runs need: max/sum all-reduce, all-gather of equal-sized arrays,
  all-to-all with uneven splits, and ``agree`` (all ranks check that they hold the same shapes and dtypes,
  and raise the same :class:`~smckit.errors.ShapeError` together when they do not).

The backend of a new process group is NCCL when CUDA is available and gloo otherwise (:func:`default_backend`);
:func:`init` starts a group from the usual ``torchrun`` environment variables and :func:`launch_local` runs a
function on several local processes (handy in notebooks and tests).

torch is imported lazily: importing :mod:`smckit.distributed` costs nothing to numpy-only users.
"""

from __future__ import annotations

import math
import os
import pickle
import socket
import tempfile
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import numpy as np

from smckit.backend import Array, device_of, is_numpy, is_torch
from smckit.errors import InvalidArgumentError, ProcessGroupError, ShapeError

__all__ = [
    "ProcessGroupError",
    "Comm",
    "default_backend",
    "init",
    "launch_local",
    "free_port",
    "run_seed_sequence",
    "root_seed_sequence",
    "check_divisible",
    "concat_states",
]

# Known dtypes, encoded as small integers so that ranks can compare them in one all-gather.
_DTYPES = (
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "complex64",
    "complex128",
)


def _torch() -> Any:
    try:
        import torch
        import torch.distributed as dist
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ProcessGroupError("smckit.distributed needs torch: pip install torch (the 'torch' extra)") from exc
    return torch, dist


def default_backend() -> str:
    """The torch.distributed backend for this machine: ``"nccl"`` when CUDA is available, else ``"gloo"``."""
    torch, dist = _torch()
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a local process group)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init(backend: str | None = None, *, timeout_s: float = 600.0, **kwargs: Any) -> Comm:
    """Initialise the default process group from the environment (``torchrun``) unless it exists already.

    Parameters
    ----------
    backend : {"nccl", "gloo"}, optional
        Defaults to :func:`default_backend`. With NCCL the current CUDA device is set to ``LOCAL_RANK``.
    timeout_s : float
        Seconds a collective may wait before torch raises; a rank that died then shows as an error on the
        others instead of a hang.
    **kwargs
        Passed to ``torch.distributed.init_process_group`` (e.g. ``rank``, ``world_size``, ``init_method``).

    Returns
    -------
    Comm
        The communicator of the default group.
    """
    torch, dist = _torch()
    if not dist.is_available():  # pragma: no cover - depends on the build
        raise ProcessGroupError("this torch build has no torch.distributed support")
    if not dist.is_initialized():
        backend = backend or default_backend()
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s), **kwargs)
    return Comm()


class Comm:
    """The collectives of one distributed run, over a torch.distributed process group.

    Parameters
    ----------
    group : ProcessGroup, optional
        The group to use (default: the default group).

    Attributes
    ----------
    rank, size : int
        This process's rank in the group and the number of ranks.
    backend : str
        ``"nccl"`` or ``"gloo"`` (or whatever the group uses).
    device : torch.device
        Where collectives happen: the current CUDA device with NCCL, the CPU otherwise.

    Raises
    ------
    ProcessGroupError
        If torch.distributed is unavailable or no process group was initialised.
    """

    def __init__(self, group: Any = None):
        torch, dist = _torch()
        if not dist.is_available():  # pragma: no cover - depends on the build
            raise ProcessGroupError("this torch build has no torch.distributed support")
        if not dist.is_initialized():
            raise ProcessGroupError(
                "torch.distributed is not initialised: start the script with torchrun (or "
                "torch.multiprocessing) and call smckit.distributed.init() or "
                "torch.distributed.init_process_group(...) on every rank before a distributed run"
            )
        self.group = group
        self.rank = int(dist.get_rank(group))
        self.size = int(dist.get_world_size(group))
        self.backend = str(dist.get_backend(group))
        if self.backend == "nccl":
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")
        self._torch, self._dist = torch, dist

    def __repr__(self) -> str:
        return f"Comm(rank={self.rank}, size={self.size}, backend={self.backend!r})"

    # -- conversion --------------------------------------------------------------------------------------
    def to_comm(self, x: Array) -> Any:
        """``x`` as a contiguous tensor on the communication device (numpy arrays: a view, no copy, on CPU).

        Parameters
        ----------
        x : array, any shape
            numpy array or torch tensor.

        Returns
        -------
        torch tensor, the shape and dtype of ``x``, on :attr:`device`
        """
        torch = self._torch
        if is_numpy(x):
            arr = np.asarray(x)  # not ascontiguousarray: it turns 0-d arrays into 1-d ones
            t = torch.from_numpy(arr if arr.flags.c_contiguous else arr.copy(order="C"))
        else:
            t = x
        if t.device != self.device:
            t = t.to(self.device)
        return t.contiguous()

    def from_comm(self, t: Any, like: Array) -> Array:
        """The tensor ``t`` back on the backend and device of ``like``.

        Parameters
        ----------
        t : torch tensor, any shape
        like : array
            numpy array or torch tensor whose backend and device the result takes.

        Returns
        -------
        array, the shape and dtype of ``t``
        """
        if is_numpy(like):
            return t.cpu().numpy()
        dev = device_of(like)
        return t if t.device == dev else t.to(dev)

    # -- collectives ---------------------------------------------------------------------------------------
    def all_reduce(self, x: Array, op: str = "sum") -> Array:
        """Element-wise ``sum``, ``max`` or ``min`` of ``x`` over ranks, on the backend of ``x``.

        Parameters
        ----------
        x : array, any shape
            The same shape and dtype on every rank; never modified.
        op : {"sum", "max", "min"}

        Returns
        -------
        array, the shape and dtype of ``x``, on its backend and device
        """
        dist = self._dist
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        t = self.to_comm(x)
        if is_numpy(x) or t is x:
            t = t.clone()  # never reduce in place into the caller's array
        dist.all_reduce(t, op=ops[op], group=self.group)
        return self.from_comm(t, x)

    def all_gather(self, x: Array) -> Array:
        """Stack ``x`` from every rank: shape ``(size, *x.shape)``; every rank must pass the same shape."""
        torch, dist = self._torch, self._dist
        t = self.to_comm(x)
        out = [torch.empty_like(t) for _ in range(self.size)]
        dist.all_gather(out, t, group=self.group)
        return self.from_comm(torch.stack(out), x)

    def all_to_all(self, x: Array, send_counts: Sequence[int], recv_counts: Sequence[int]) -> Array:
        """Send ``x[rows of block s]`` to rank s, receive the blocks addressed to this rank in rank order.

        Parameters
        ----------
        x : array, shape (sum(send_counts), *rest)
            Rows grouped by destination rank (block s has ``send_counts[s]`` rows).
        send_counts, recv_counts : sequence of int, length size
            Rows sent to and received from each rank.

        Returns
        -------
        array, shape (sum(recv_counts), *rest), on the backend and device of ``x``
        """
        torch, dist = self._torch, self._dist
        t = self.to_comm(x)
        out = torch.empty((int(sum(recv_counts)), *t.shape[1:]), dtype=t.dtype, device=self.device)
        dist.all_to_all_single(out, t, [int(c) for c in recv_counts], [int(c) for c in send_counts], group=self.group)
        return self.from_comm(out, x)

    def exchange_counts(self, send_counts: Sequence[int]) -> list[int]:
        """Tell every rank how many rows it will receive from this one; returns the counts received."""
        torch, dist = self._torch, self._dist
        send = torch.tensor([int(c) for c in send_counts], dtype=torch.int64, device=self.device)
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send, group=self.group)
        return [int(c) for c in recv.cpu().tolist()]

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` from rank ``src`` on every rank (small Python objects only)."""
        box = [obj]
        self._dist.broadcast_object_list(box, src=self._global_rank(src), group=self.group, device=self.device)
        return box[0]

    def all_gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (pickled; for results, not for the per-step loop)."""
        out: list[Any] = [None] * self.size
        self._dist.all_gather_object(out, obj, group=self.group)
        return out

    def gather_objects(self, obj: Any, dst: int = 0) -> list[Any] | None:
        """Every rank's ``obj`` on rank ``dst`` (``None`` elsewhere)."""
        out: list[Any] | None = [None] * self.size if self.rank == dst else None
        self._dist.gather_object(obj, out, dst=self._global_rank(dst), group=self.group)
        return out

    def _global_rank(self, rank: int) -> int:
        """The default-group rank of this group's ``rank`` (torch's object collectives take global ranks)."""
        return rank if self.group is None else int(self._dist.get_global_rank(self.group, rank))

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        self._dist.barrier(group=self.group)

    # -- log-space reductions ----------------------------------------------------------------------------
    def logsumexp(self, x: Array) -> Array:
        """``log sum exp`` over the particle axis of every rank's ``x``, shape ``(*batch,)``.

        Two all-reduces of ``(*batch,)`` values: the global maximum ``M``, then ``sum exp(x - M)``; rows whose
        entries are all ``-inf`` give ``-inf``.
        """
        from smckit.backend import namespace

        xp = namespace(x)
        m = self.all_reduce(xp.max(x, axis=-1), "max")
        m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
        s = self.all_reduce(xp.sum(xp.exp(x - m[..., None]), axis=-1), "sum")
        return xp.log(s) + m

    # -- agreement checks --------------------------------------------------------------------------------
    def agree(self, arrays: dict[str, Array], *, what: str, skip_axis: dict[str, int] | None = None) -> None:
        """Raise the same :class:`~smckit.errors.ShapeError` on every rank unless all ranks hold arrays of
        the same shapes and dtypes.

        Parameters
        ----------
        arrays : dict of str to array
            Named arrays to compare (e.g. the leaves of a state).
        what : str
            What the arrays are, for the message.
        skip_axis : dict of str to int, optional
            An axis per name that may differ between ranks (none by default).

        Raises
        ------
        ShapeError
            On every rank, naming the ranks and shapes that disagree.
        """
        names = list(arrays)
        signature = _signature(arrays, skip_axis or {})
        torch = self._torch
        length = torch.tensor([len(signature)], dtype=torch.int64, device=self.device)
        lengths = self.all_gather(length)[:, 0].cpu().tolist()
        if len(set(lengths)) == 1:
            sig = torch.tensor(signature, dtype=torch.int64, device=self.device)
            gathered = self.all_gather(sig).cpu().tolist()
        else:
            gathered = None
        if gathered is not None and all(g == gathered[0] for g in gathered):
            return
        # Disagreement (rare): collect readable descriptions for the message, the same on every rank.
        mine = {k: (tuple(int(s) for s in arrays[k].shape), _dtype_name(arrays[k])) for k in names}
        everyone = self.all_gather_objects(mine)
        lines = [f"rank {r}: {desc}" for r, desc in enumerate(everyone)]
        raise ShapeError(
            f"the ranks disagree on the shapes or dtypes of {what}:\n  " + "\n  ".join(lines) + "\n"
            "every rank must run the same model with the same batch shape, event shapes and dtypes"
        )

    def check_ok(self, error: BaseException | None, *, where: str) -> None:
        """Collective error check: every rank raises if any rank hit ``error``.

        The failing ranks re-raise their own exception; the others raise :class:`ProcessGroupError` naming
        the failed ranks. Call it on every rank at the same point so that a failure on one rank never leaves
        the others waiting in a collective.
        """
        torch = self._torch
        flag = torch.tensor([0 if error is None else 1], dtype=torch.int64, device=self.device)
        flags = self.all_gather(flag)[:, 0].cpu().tolist()
        failed = [r for r, f in enumerate(flags) if f]
        if not failed:
            return
        if error is not None:
            raise error
        raise ProcessGroupError(f"rank(s) {failed} failed {where}; see their error messages")


def _dtype_name(x: Array) -> str:
    name = str(x.dtype)
    return name.removeprefix("torch.")


def _signature(arrays: dict[str, Array], skip_axis: dict[str, int]) -> list[int]:
    """Shapes and dtype codes of ``arrays`` as one list of integers (the same on ranks that agree)."""
    sig: list[int] = [len(arrays)]
    for name, x in arrays.items():
        shape = [int(s) for s in x.shape]
        if name in skip_axis:
            shape[skip_axis[name]] = -1
        dtype = _dtype_name(x)
        code = _DTYPES.index(dtype) if dtype in _DTYPES else len(_DTYPES) + sum(map(ord, dtype))
        sig += [len(shape), *shape, code, 1 if is_torch(x) else 0]
    return sig


# -- local launcher ------------------------------------------------------------------------------------------
def launch_local(
    fn: Callable[..., Any],
    nprocs: int,
    *args: Any,
    backend: str = "gloo",
    timeout_s: float = 120.0,
    start_method: str | None = None,
) -> list[Any]:
    """Run ``fn(*args)`` on ``nprocs`` local processes in one process group; return each rank's result.

    A convenience for notebooks, tests and examples on one machine (127.0.0.1, a free port); use
    ``torchrun`` for real jobs. ``fn`` must be importable (defined at module level) and its results
    picklable. Each process gets its own default process group, destroyed when ``fn`` returns.

    Parameters
    ----------
    fn : callable
        Runs on every rank; it can call :class:`Comm` or any smckit distributed run.
    nprocs : int
        Number of processes (ranks).
    *args
        Passed to ``fn`` on every rank.
    backend : str
        ``"gloo"`` (CPU) by default; ``"nccl"`` needs one GPU per process.
    timeout_s : float
        Collective timeout: a rank that dies makes the others fail after this long instead of hanging.
    start_method : {"forkserver", "spawn"}, optional
        How processes start; ``"forkserver"`` (the default where available) forks every rank from a server
        that imported torch and smckit once, which starts much faster than ``"spawn"``. (``"fork"`` is unsafe
        once torch has started threads.)

    Returns
    -------
    list
        ``fn``'s return value on rank 0, 1, ...

    Raises
    ------
    torch.multiprocessing.ProcessRaisedException
        If ``fn`` raised on a rank (the message carries that rank's traceback).
    """
    _torch()
    import torch.multiprocessing as mp

    if nprocs < 1:
        raise InvalidArgumentError(f"nprocs must be positive, got {nprocs}")
    if start_method is None:
        import multiprocessing

        start_method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    if start_method == "forkserver":
        # Children fork from a server that imported torch and smckit once, instead of importing them each.
        import multiprocessing

        multiprocessing.get_context("forkserver").set_forkserver_preload(["torch", "smckit.distributed"])
    with tempfile.TemporaryDirectory(prefix="smckit-dist-") as tmp:
        mp.start_processes(
            _local_worker,
            args=(nprocs, free_port(), backend, timeout_s, fn, args, tmp),
            nprocs=nprocs,
            join=True,
            start_method=start_method,
        )
        results = []
        for rank in range(nprocs):
            with open(os.path.join(tmp, f"{rank}.pkl"), "rb") as f:
                results.append(pickle.load(f))
    return results


def _local_worker(
    rank: int,
    world: int,
    port: int,
    backend: str,
    timeout_s: float,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    out_dir: str,
) -> None:
    torch, dist = _torch()
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)  # ranks share the machine's cores
    if backend == "nccl":
        torch.cuda.set_device(rank % max(1, torch.cuda.device_count()))
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    try:
        result = fn(*args)
    finally:
        dist.destroy_process_group()
    with open(os.path.join(out_dir, f"{rank}.pkl"), "wb") as f:
        pickle.dump(result, f)


def check_divisible(n: int, size: int, what: str = "n_particles") -> int:
    """``n // size``, or an :class:`~smckit.errors.InvalidArgumentError` when ``size`` does not divide ``n``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidArgumentError(f"{what} must be a positive integer, got {n!r}")
    if n % size:
        lo, hi = (n // size) * size, math.ceil(n / size) * size
        raise InvalidArgumentError(
            f"{what}={n} is not divisible by the {size} ranks: every rank holds n/R particles; use {lo or size} or {hi}"
        )
    return n // size


# -- seeds -----------------------------------------------------------------------------------------------------
def run_seed_sequence(seed: Any, comm: Comm) -> np.random.SeedSequence:
    """The run's root :class:`numpy.random.SeedSequence`, identical on every rank.

    Parameters
    ----------
    seed : int, SeedSequence, smckit.RNG or None
        ``None`` draws fresh entropy on rank 0 and broadcasts it, so that the ranks still agree.
    comm : Comm

    Raises
    ------
    InvalidArgumentError
        If the ranks were given different seeds (each rank must pass the same seed).
    """
    if seed is None:
        root = np.random.SeedSequence(
            comm.broadcast_object(np.random.SeedSequence().entropy if comm.rank == 0 else None)
        )
    else:
        root = root_seed_sequence(seed)
    words = root.generate_state(2, dtype=np.uint32)
    digest = np.asarray([(int(words[0]) << 31) ^ int(words[1])], dtype=np.int64)
    everyone = comm.all_gather(digest)[:, 0]
    if not bool(np.all(everyone == everyone[0])):
        raise InvalidArgumentError(
            "the ranks were given different seeds: pass the same seed on every rank (smckit derives the "
            "per-rank and per-row streams from it)"
        )
    return root


def root_seed_sequence(seed: Any) -> np.random.SeedSequence:
    """A fresh :class:`numpy.random.SeedSequence` for ``seed`` (int, SeedSequence, smckit.RNG or None).

    A SeedSequence or RNG gives a copy with the same entropy and spawn key (its spawn counter is not used or
    changed), so children spawned from the result are the same however often this is called.
    """
    from smckit.random import RNG

    if isinstance(seed, RNG):
        seed = seed.seed_sequence
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.entropy, spawn_key=tuple(seed.spawn_key), pool_size=seed.pool_size)
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise InvalidArgumentError(f"seed must be a non-negative integer, a SeedSequence, an RNG or None, got {seed!r}")


# -- moving results between ranks ----------------------------------------------------------------------------
def concat_states(states: Sequence[Any], axis: int) -> Any:
    """Concatenate states of the same structure leaf by leaf along ``axis``.

    Parameters
    ----------
    states : sequence of nests of arrays
        All with the same structure and backend.
    axis : int
        The axis to join (0 for batch rows, ``len(batch)`` for the particle axis).
    """
    from smckit.backend import namespace
    from smckit.state import leaves, tree_map

    columns = list(zip(*(leaves(s) for s in states)))
    joined = iter([namespace(*col).concat(list(col), axis=axis) for col in columns])
    return tree_map(lambda _: next(joined), states[0])
