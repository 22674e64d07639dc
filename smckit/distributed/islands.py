"""Island mode: every rank is an island that resamples on its own; islands interact every k steps.

The island particle model of Vergé, Dubarry, Del Moral and Moulines (2015, "On parallel implementation of
sequential Monte Carlo methods: the island particle model", Statistics and Computing 25) runs R independent
particle systems of ``n = N/R`` particles and lets them interact through island-level weights and island-level
resampling. smckit's version, per batch row:

- within island r: an ordinary SMC step (local resampling by any registered scheme under ``policy``, on the
  island's own ESS; move; weight). The island's incremental evidence is ``lambda_r,t = sum_i W_{r,i} G_t(x_{r,i})``
  with ``W_r`` its normalised weights; no communication.
- island weights: ``omega_r`` (normalised over islands, uniform at the start) is multiplied by
  ``lambda_r,t`` at every step and renormalised. The evidence increment is ``log sum_r omega_r lambda_r,t``.
- interaction (every k steps, or under an island-level :class:`~smckit.Policy` on the island ESS
  ``1 / sum_r omega_r^2``): island systematic resampling, with one shared uniform: island s is replaced by a
  copy of island ``a_s`` (its particles and their local weights), with ``E[#copies of r] = R omega_r``; then
  ``omega`` is reset to uniform. An island whose weights all vanish (``omega_r = 0``) forces an interaction at
  the next step, so it is replaced by a copy of a live island instead of dying.

Why the evidence stays unbiased: an island, i.e. its n particles together with their weights, is one "particle"
of an outer SMC whose Markov kernel is one step of the inner SMC and whose potential is ``lambda_r,t``. The outer
SMC resamples islands with an unbiased scheme, so its evidence estimate ``prod_t sum_r omega_r,t-1 lambda_r,t``
is unbiased for the outer normalising constant, which is the expectation of one island's evidence estimate,
i.e. the true evidence (the inner SMC is unbiased too). Without any interaction the estimate is the average of
the R islands' estimates. The weighted particles ``omega_r W_{r,i}`` target the same distribution as a single
run with N particles.

Cost: one all-gather of ``2 (*batch,)`` floats per step (island increments and sums of squared weights) and,
at an interaction, the blocks of the islands that are copied: ``n`` particles for each island whose copy lands
on another rank, nothing for islands that keep their own population. Compared with the sharded mode (global
resampling at every resampling step), islands exchange whole blocks but only every k steps; the price is a
larger variance when islands drift apart between interactions (Vergé et al. discuss the trade-off).

Results are :class:`~smckit.distributed.sharded.ShardedResult` objects, as for sharded runs: local particles
with globally normalised log-weights ``log omega_r + log W_{r,i}``, global evidence and ESS, global ancestor
indices (``island * n + local index``); ``resampled`` records this island's local resampling, and ``info`` has
``island_ancestors`` (shape ``(*batch, R)``) at interaction steps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from smckit.backend import Array, device_of, namespace
from smckit.distributed.comm import Comm, ProcessGroupError
from smckit.distributed.sharded import RankLoop, _index_dtype
from smckit.engine import Step
from smckit.errors import InvalidArgumentError, InvalidWeightsError
from smckit.model import FeynmanKac, supports_rebirth
from smckit.policy import Every, Policy
from smckit.resamplers.base import Resampled, Resampler
from smckit.state import take, tree_map
from smckit.weights import check_finite_or_minus_inf, log_normalise, reweigh

__all__ = ["IslandSMC", "run_islands", "island_ancestors", "exchange_islands"]

State = Any


def island_ancestors(log_omega: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Systematic resampling of islands: the island each new island copies.

    Parameters
    ----------
    log_omega : ndarray, shape (*batch, R)
        Island log-weights (any shift per row; ``-inf`` for dead islands, never all of a row).
    uniform : ndarray, shape (*batch,)
        One uniform per row, the same on every rank.

    Returns
    -------
    ndarray of int64, shape (*batch, R)
        Sorted island indices; island r appears ``floor(R omega_r)`` or ``ceil(R omega_r)`` times (never when
        ``omega_r = 0``).
    """
    size = log_omega.shape[-1]
    top = np.max(log_omega, axis=-1, keepdims=True)
    cum = np.cumsum(np.exp(log_omega - top), axis=-1)
    ends = np.clip(np.ceil(cum / cum[..., -1:] * size - np.asarray(uniform)[..., None]), 0, size).astype(np.int64)
    # New island k copies island j when ends_{j-1} <= k < ends_j, i.e. j = #{i : ends_i <= k}.
    k = np.arange(size)
    return np.sum(ends[..., None, :] <= k[:, None], axis=-1).astype(np.int64)


def exchange_islands(state: State, ancestors: np.ndarray, comm: Comm) -> State:
    """Replace every island by a copy of island ``ancestors[..., rank]``, row by row (a collective).

    Parameters
    ----------
    state : array or nest of arrays, each of shape (*batch, n, *event)
        This island's particles (and anything else with that layout, e.g. its log-weights).
    ancestors : ndarray of int, shape (*batch, R)
        On the host, the same on every rank: row b of island s becomes row b of island ``ancestors[b, s]``.
    comm : Comm

    Returns
    -------
    state of the same structure and shapes
    """
    size, rank = comm.size, comm.rank
    batch_ndim = ancestors.ndim - 1
    anc = np.asarray(ancestors).reshape(-1, size)  # (rows, R)
    if np.array_equal(anc, np.broadcast_to(np.arange(size), anc.shape)):
        return state  # nothing moves anywhere: every rank knows it and skips the collective
    # To rank s go the rows whose island s copies this island, in row order; what arrives comes in
    # (source rank, row) order, i.e. received position k holds row order[k].
    send_rows = [np.flatnonzero(anc[:, s] == rank) for s in range(size)]
    send_counts = [len(rows) for rows in send_rows]
    recv_counts = [int(np.count_nonzero(anc[:, rank] == q)) for q in range(size)]
    order = np.argsort(anc[:, rank], kind="stable")
    place = np.argsort(order)
    send_idx = np.concatenate(send_rows)
    rows = anc.shape[0]

    def move(leaf: Array) -> Array:
        xp = namespace(leaf)
        dev = device_of(leaf)
        shape = tuple(leaf.shape)
        flat = xp.reshape(leaf, (rows, *shape[batch_ndim:]))
        sent = xp.take(flat, xp.asarray(send_idx, dtype=xp.int64, device=dev), axis=0)
        got = comm.all_to_all(sent, send_counts, recv_counts)
        return xp.reshape(xp.take(got, xp.asarray(place, dtype=xp.int64, device=dev), axis=0), shape)

    return tree_map(move, state)


class IslandSMC(RankLoop):
    """Island SMC: one island of ``n_particles / R`` particles per rank, interacting every k steps.

    Every rank constructs it with the same arguments and iterates in lockstep; see the module docstring for
    the scheme, why its evidence is unbiased, and its communication.

    Parameters
    ----------
    model : FeynmanKac
        The model; each island asks it for ``n_particles / R`` particles.
    n_particles : int
        Particles per row over all islands (divisible by the number of ranks R).
    resampler : str or Resampler
        The scheme each island resamples with, locally (any registered name).
    policy : Policy, optional
        When an island resamples, on its own ESS; defaults to the model's ``default_policy`` or ESSBelow(0.5).
    interaction : int or Policy
        ``k``: islands interact at steps ``t % k == 0`` (``Every(k)``); or a Policy applied to the island ESS
        fraction ``1 / (R sum_r omega_r^2)``.
    seed : int, SeedSequence, RNG or None
        The run's seed, the same on every rank.
    history : {"ancestors", "full", "none"}
    group : ProcessGroup, optional

    Raises
    ------
    ProcessGroupError, InvalidArgumentError, ShapeError, InvalidWeightsError, ExtinctionError
        As for :class:`~smckit.distributed.ShardedSMC`; extinction means every island of a row died.
    """

    def __init__(
        self,
        model: FeynmanKac,
        n_particles: int,
        *,
        resampler: str | Resampler = "systematic",
        policy: Policy | None = None,
        interaction: int | Policy = 1,
        seed: Any = None,
        history: str = "ancestors",
        group: Any = None,
    ):
        super().__init__(model, n_particles, policy=policy, seed=seed, history=history, group=group)
        if isinstance(resampler, str):
            from smckit.plugins import make_resampler

            resampler = make_resampler(resampler)
        if not callable(resampler):
            raise InvalidArgumentError(f"resampler must be a registered name or a resampler, got {resampler!r}")
        self.resampler = resampler
        self.rebirth_noise = float(getattr(resampler, "rebirth_noise", 0.0) or 0.0)
        if self.rebirth_noise != 0.0 and not supports_rebirth(model):
            raise InvalidArgumentError(
                f"the resampler asks for rebirth noise {self.rebirth_noise}, but {type(model).__name__} has no "
                "rebirth(t, state, mask, scale, rng) method"
            )
        if isinstance(interaction, Policy):
            self.interaction = interaction
        elif isinstance(interaction, (int, np.integer)) and not isinstance(interaction, bool) and interaction >= 1:
            self.interaction = Every(int(interaction))
        else:
            raise InvalidArgumentError(f"interaction must be a positive integer k or a Policy, got {interaction!r}")
        self.local_log_w: Array = None  # this island's weights, normalised over the island
        self.log_omega: np.ndarray = np.zeros(0)  # island log-weights (*batch, R), normalised, on the host
        self._sq: np.ndarray = np.zeros(0)  # sum of squared local weights of every island (*batch, R)

    # -- steps ----------------------------------------------------------------------------------------------
    def _first_step(self) -> Step:
        state, log_g = self._start()
        xp = namespace(log_g)
        uniform = xp.full(tuple(log_g.shape), -math.log(self.n), dtype=log_g.dtype, device=device_of(log_g))
        self.log_omega = np.full((*self._batch, self.comm.size), -math.log(self.comm.size))
        self.log_evidence = xp.zeros(self._batch, dtype=xp.float64, device=device_of(log_g))
        return self._weigh(0, state, uniform, log_g, False, self._identity(log_g), {}, None)

    def _next_step(self) -> Step:
        t = self.t + 1
        state, local_log_w, sources, info = self._interact(t, self.state, self.local_log_w)
        state, local_log_w, resampled, ancestors, local_info = self._resample_locally(t, state, local_log_w, sources)
        info.update(local_info)
        new_state, log_g, error = self._move(t, state)
        return self._weigh(t, new_state, local_log_w, log_g, resampled, ancestors, info, error)

    def _weigh(
        self,
        t: int,
        state: State,
        local_log_w: Array,
        log_g: Array,
        resampled: Any,
        ancestors: Array | None,
        info: dict[str, Any],
        error: BaseException | None,
    ) -> Step:
        """Local reweighting, then one all-gather of every island's increment and sum of squared weights."""
        ref = self._reference
        xp = namespace(ref)
        dev = device_of(ref)
        rows = math.prod(self._batch)
        bad = False
        if error is None:
            x = local_log_w + log_g
            bad = bool(xp.any(xp.isnan(x) | (x == math.inf)))
            if not bad:
                with np.errstate(divide="ignore", invalid="ignore"):  # a dead island is allowed here
                    inc, new_local, local_ess = reweigh(x)
                vec = xp.concat([xp.reshape(inc, (-1,)), xp.reshape(1.0 / local_ess, (-1,))])
        if error is not None or bad:
            vec = xp.zeros((2 * rows,), dtype=ref.dtype, device=dev)
        flags = xp.asarray([0.0 if error is None else self.comm.rank + 1.0, 1.0 if bad else 0.0], dtype=ref.dtype)
        gathered = self.comm.all_gather(xp.concat([vec, xp.asarray(flags, device=dev)]))
        table = np.asarray(_to_host(gathered), dtype=np.float64)  # (R, 2 rows + 2)
        if error is not None:
            raise error
        failed = np.flatnonzero(table[:, -2])
        if failed.size:
            raise ProcessGroupError(f"rank(s) {failed.tolist()} failed at step {t}; see their error messages")
        if table[:, -1].any():
            if bad:
                check_finite_or_minus_inf(x, step=t, what=f"the log-weights on rank {self.comm.rank}")
            raise InvalidWeightsError(
                f"the log-weights at step {t} hold NaN or +inf on another rank; see that rank's error",
                step=t,
                count=0,
            )
        increments = np.moveaxis(table[:, :rows], 0, -1).reshape(*self._batch, self.comm.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            self._sq = np.moveaxis(table[:, rows : 2 * rows], 0, -1).reshape(*self._batch, self.comm.size)
            joint = self.log_omega + increments
            top = np.max(joint, axis=-1, keepdims=True)
            top = np.where(np.isfinite(top), top, 0.0)
            increment = np.log(np.sum(np.exp(joint - top), axis=-1)) + top[..., 0]
        increment_dev = xp.asarray(increment, device=dev)
        self._extinct(t, increment_dev)
        self.log_omega = joint - increment[..., None]
        omega = np.exp(self.log_omega)
        ess = 1.0 / np.sum(np.where(omega > 0, omega * omega * self._sq, 0.0), axis=-1)
        # A dead island (all local weights zero) keeps weights -inf until the next interaction replaces it.
        dead_here = xp.asarray(~np.isfinite(self.log_omega[..., self.comm.rank]), device=dev)
        new_local = xp.where(dead_here[..., None], xp.full_like(new_local, -math.inf), new_local)
        self.local_log_w = new_local
        own = xp.asarray(self.log_omega[..., self.comm.rank], dtype=ref.dtype, device=dev)
        global_log_w = new_local + own[..., None]
        new_evidence = self.log_evidence + increment_dev
        return self._record(t, state, global_log_w, ess, increment, new_evidence, resampled, ancestors, info)

    def _interact(self, t: int, state: State, local_log_w: Array) -> tuple[State, Array, Array | None, dict]:
        """Island resampling when the interaction policy says so (or an island died): copies whole islands."""
        size = self.comm.size
        omega = np.exp(self.log_omega)
        island_ess = 1.0 / np.sum(omega * omega, axis=-1)
        decision = self.interaction.decide(t, island_ess / size)
        mask = np.broadcast_to(np.asarray(decision, dtype=bool), self._batch)
        mask = mask | ~np.all(np.isfinite(self.log_omega), axis=-1)
        if not mask.any():
            return state, local_log_w, None, {}
        identity = np.broadcast_to(np.arange(size), self.log_omega.shape)
        ancestors = np.where(
            mask[..., None], island_ancestors(self.log_omega, self.shared.random(self._batch)), identity
        )
        state, local_log_w = exchange_islands((state, local_log_w), ancestors, self.comm)
        self.log_omega = np.where(mask[..., None], -math.log(size), self.log_omega)
        self._sq = np.take_along_axis(self._sq, ancestors, axis=-1)
        moved = int(np.count_nonzero(ancestors != identity))
        return (
            state,
            local_log_w,
            ancestors[..., self.comm.rank],
            {"island_ancestors": ancestors, "islands_moved": moved},
        )

    def _resample_locally(
        self, t: int, state: State, local_log_w: Array, sources: np.ndarray | None
    ) -> tuple[State, Array, Any, Array | None, dict]:
        """The island's own resampling (engine semantics), with global ancestor indices."""
        xp = namespace(local_log_w)
        dev = device_of(local_log_w)
        dtype = _index_dtype(xp, self.n_total)
        # Global index of each particle after the island exchange: island a's particle i is a * n + i.
        base = None
        if self.history_mode != "none":
            src = self.comm.rank if sources is None else xp.asarray(sources, dtype=dtype, device=dev)[..., None]
            base = xp.broadcast_to(src * self.n + xp.arange(self.n, dtype=dtype, device=dev), tuple(local_log_w.shape))
        local_ess = xp.asarray(1.0 / self._sq[..., self.comm.rank], dtype=local_log_w.dtype, device=dev)
        decision = self.policy.decide(t, local_ess / self.n)
        if isinstance(decision, (bool, np.bool_)):
            if not decision:
                return state, local_log_w, False, base, {}
            mask = None
        else:
            mask = decision
            if not bool(xp.any(mask)):
                return state, local_log_w, mask, base, {}
        out = self.resampler(local_log_w, self.rng)
        if not isinstance(out, Resampled) or tuple(out.ancestors.shape) != tuple(local_log_w.shape):
            raise InvalidArgumentError(f"the island resampler returned {out!r} at step {t}; expected Resampled")
        anc = xp.astype(out.ancestors, xp.int64)
        new_log_w = log_normalise(xp.astype(out.log_weights, local_log_w.dtype))
        reborn = out.reborn
        if mask is not None:
            keep = ~mask[..., None]
            anc = xp.where(keep, xp.arange(self.n, dtype=xp.int64, device=dev), anc)
            new_log_w = xp.where(keep, local_log_w, new_log_w)
            if reborn is not None:
                reborn = reborn & mask[..., None]
        state = take(state, anc)
        if reborn is not None and self.rebirth_noise != 0.0:
            state = self.model.rebirth(t, state, reborn, self.rebirth_noise, self.rng)  # type: ignore[attr-defined]
        recorded = None if base is None else xp.take_along_axis(base, anc, axis=-1)
        return state, new_log_w, (True if mask is None else mask), recorded, dict(out.info)


def run_islands(
    model: FeynmanKac,
    n_particles: int,
    *,
    resampler: str | Resampler = "systematic",
    policy: Policy | None = None,
    interaction: int | Policy = 1,
    seed: Any = None,
    history: str = "ancestors",
    group: Any = None,
) -> Any:
    """Run island SMC; call it on every rank. ``run_islands(...)`` is ``IslandSMC(...).run()``.

    Returns this rank's :class:`~smckit.distributed.sharded.ShardedResult` (its island's particles, globally
    normalised log-weights, global evidence); see :class:`IslandSMC` for the parameters.
    """
    return IslandSMC(
        model,
        n_particles,
        resampler=resampler,
        policy=policy,
        interaction=interaction,
        seed=seed,
        history=history,
        group=group,
    ).run()


def _to_host(x: Array) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)
