"""What the sharded and island populations share: seeds, agreement at step 0, errors reported to every rank.

A population on ranks is a :class:`~smckit.engine.population.Population` (the loop is
:class:`smckit.SMC`'s, unchanged). Each rank holds ``n = N / R`` particles per row, global particles
``rank * n .. (rank + 1) * n - 1``. Rank r draws from the child stream ``SeedSequence(seed).spawn(2)[1].spawn(R)[r]``;
uniforms that every rank must share come from ``spawn(2)[0]``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from smckit.backend import Array, device_of, namespace, to_host
from smckit.distributed.comm import Comm, ProcessGroupError, check_divisible, run_seed_sequence
from smckit.errors import InvalidArgumentError, InvalidWeightsError
from smckit.random import RNG
from smckit.state import leaves
from smckit.weights import Weighted, check_finite_or_minus_inf, check_not_extinct

__all__ = ["RankPopulation"]


class RankPopulation:
    """The common part of :class:`~smckit.distributed.sharded.Sharded` and
    :class:`~smckit.distributed.islands.Islands` (see the module docstring).

    Parameters
    ----------
    comm : Comm
    n_total : int
        Particles per row over all ranks (divisible by the number of ranks).
    seed : int, SeedSequence, RNG or None
        The same on every rank.
    """

    rebirth_noise = 0.0

    def __init__(self, comm: Comm, n_total: int, seed: Any):
        self.comm = comm
        self.n_total = int(n_total)
        self.n = check_divisible(n_total, comm.size)
        self.offset = comm.rank * self.n
        shared_seq, local_seq = run_seed_sequence(seed, comm).spawn(2)
        self.rng = RNG(local_seq.spawn(comm.size)[comm.rank])
        self.shared = np.random.Generator(np.random.PCG64DXSM(shared_seq))
        self.like: Array = None  # an array with the run's backend, device and weight dtype
        self.batch: tuple[int, ...] = ()

    def start(self, log_w: Array, state: Any) -> None:
        """Agree on step 0 with every rank: nobody failed, and every rank's layouts and dtypes match.

        Parameters
        ----------
        log_w : array, shape (*batch, n)
        state : state, leaves of shape (*batch, n, *event)
        """
        self.comm.check_ok(None, where="at step 0 (initial or log_potential)")
        arrays = {"log-weights": log_w, **{f"state leaf {i}": x for i, x in enumerate(leaves(state))}}
        self.comm.agree(arrays, what="the model's log-potential and state at step 0")
        self.like, self.batch = log_w, tuple(log_w.shape[:-1])

    def fail(self, error: BaseException, *, step: int) -> None:
        """Tell every rank that this one failed at ``step`` (in the collective they are about to enter), then raise."""
        if step == 0:
            self.comm.check_ok(error, where="at step 0 (initial or log_potential)")
        else:
            self.report(error)
        raise error

    def report(self, error: BaseException) -> None:
        """Enter this step's first collective with a failure flag (the kinds differ in that collective)."""
        raise NotImplementedError

    def explain(self, log_w: Array, log_g: Array, weighted: Weighted, *, step: int, what: str, result: object) -> None:
        """The single-process wording where this rank holds the bad values, else an error naming another rank.

        Parameters
        ----------
        log_w : array, shape (*batch, n)
            This rank's unnormalised log-weights.
        log_g : array, shape (*batch, n)
            This rank's log-potential.
        weighted : Weighted
            The global reweighting, whose ``bad`` flag is set.
        step : int
        what : str
        result : Result or None
        """
        try:
            check_finite_or_minus_inf(log_g, step=step, what=what)
            check_finite_or_minus_inf(log_w, step=step, what="the log-weights")
        except InvalidWeightsError as err:
            err.result = result
            raise
        xp = namespace(weighted.log_z)
        if bool(xp.any(xp.isnan(weighted.log_z) | (weighted.log_z == math.inf))):
            raise InvalidWeightsError(
                f"the log-weights at step {step} hold NaN or +inf on another rank; see that rank's error",
                step=step,
                count=0,
                result=result,
            )
        check_not_extinct(weighted.log_z[..., None], step=step, result=result)

    def agree(self, flag: bool, *, what: str) -> bool:
        """Every rank's ``flag`` must be the same (a stopping rule that ignores the local particles).

        Parameters
        ----------
        flag : bool
        what : str

        Returns
        -------
        bool
        """
        flags = self.comm.all_gather(np.asarray([flag], dtype=np.int64))[:, 0]
        if len(set(flags.tolist())) > 1:
            raise InvalidArgumentError(
                f"{what} disagrees across ranks: a distributed run needs a stopping rule that does not depend on "
                "the local particles (use rows mode for adaptive models)"
            )
        return flag

    def wrap(self, result: Any) -> Any:
        """This rank's view of the run, with :meth:`~smckit.distributed.sharded.ShardedResult.gather`."""
        from smckit.distributed.sharded import ShardedResult

        return ShardedResult(
            result.particles,
            result.log_weights,
            result.log_evidence,
            result.history,
            eve=result.eve,
            tracked=result.tracked,
            rank=self.comm.rank,
            world_size=self.comm.size,
            n_total=self.n_total,
            offset=self.offset,
            comm=self.comm,
        )

    def identity(self, like: Array) -> Array:
        """Global indices of this rank's particles, shape like ``like`` (int64)."""
        xp = namespace(like)
        ids = xp.arange(self.offset, self.offset + self.n, dtype=xp.int64, device=device_of(like))
        return xp.broadcast_to(ids, tuple(like.shape))

    def _failed_ranks(self, flags: np.ndarray, step: int) -> None:
        """Raise :class:`ProcessGroupError` when another rank reported a failure (``flags``: rank + 1, or 0)."""
        failed = [int(f) - 1 for f in np.atleast_1d(flags) if f]
        if failed:
            raise ProcessGroupError(
                f"rank(s) {failed} failed at step {step}; see their error messages. This rank stops too"
            )

    def _host(self, x: Array) -> np.ndarray:
        """``to_host`` as float64, for the small per-row tables the ranks exchange."""
        return to_host(x, np.float64)
