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
from smckit.distributed.comm import Comm
from smckit.distributed.population import RankPopulation
from smckit.engine import SMC
from smckit.engine.checks import rebirth_noise_of, resolve_resampler
from smckit.engine.population import Local, Moved
from smckit.errors import InvalidArgumentError
from smckit.model import FeynmanKac
from smckit.policy import Every, Policy
from smckit.resamplers.base import Resampler
from smckit.state import tree_map
from smckit.weights import Weighted, weigh

__all__ = ["Islands", "IslandSMC", "run_islands", "island_ancestors", "exchange_islands"]

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


class Islands(RankPopulation):
    """One island per rank: local resampling by any scheme, island weights, island resampling every k steps.

    The extension of :class:`smckit.SMC`'s loop for island runs (see the module docstring); build it through
    :class:`IslandSMC` or :func:`run_islands`. The log-weights the loop sees are global: ``log omega_r`` plus the
    island's own normalised log-weights, so the loop's evidence update (the log-sum-exp over all islands) is the
    outer SMC's, with a scheme's output-weight mass folded into its island's weight.

    Parameters
    ----------
    comm : Comm
    n_total : int
        Particles per row over all islands.
    resampler : Resampler
        The scheme every island resamples with, locally.
    interaction : Policy
        When islands interact, on the island ESS fraction ``1 / (R sum_r omega_r^2)``.
    seed : int, SeedSequence, RNG or None
    rebirth_noise : float
    """

    def __init__(self, comm: Comm, n_total: int, resampler: Any, interaction: Policy, seed: Any, rebirth_noise: float):
        super().__init__(comm, n_total, seed)
        self.resampler = resampler
        self.interaction = interaction
        self.rebirth_noise = rebirth_noise
        self.local = Local(self.n, resampler, self.rng, rebirth_noise)
        self.log_omega: np.ndarray = np.zeros(0)  # island log-weights (*batch, R), normalised, on the host
        self.inv_ess: np.ndarray = np.zeros(0)  # 1 / (each island's own ESS), (*batch, R), on the host

    def start(self, log_w: Array, state: Any) -> None:
        """Agree on step 0 (see :class:`RankPopulation`) and set up the island's own resampling.

        Parameters
        ----------
        log_w : array, shape (*batch, n)
        state : state
        """
        super().start(log_w, state)
        self.local.start(log_w, state)

    def report(self, error: BaseException) -> None:
        """Enter :meth:`reweigh`'s all-gather with this rank's failure flag."""
        xp = namespace(self.like)
        rows = math.prod(self.batch)
        vec = xp.zeros((2 * rows + 2,), dtype=self.like.dtype, device=device_of(self.like))
        marker = xp.asarray([self.comm.rank + 1.0, 0.0], dtype=self.like.dtype, device=device_of(self.like))
        self.comm.all_gather(xp.concat([vec[:-2], marker]))

    def reweigh(self, log_w: Array, *, step: int) -> Weighted:
        """Island sums, then one all-gather of every island's log-sum-exp and inverse ESS (and error flags).

        Parameters
        ----------
        log_w : array, shape (*batch, n)
            This island's particles' global unnormalised log-weights.
        step : int

        Returns
        -------
        Weighted
            Over all islands (the same ``log_z``, ``ess`` and ``bad`` on every rank).
        """
        xp = namespace(log_w)
        dev = device_of(log_w)
        rows, size = math.prod(self.batch), self.comm.size
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # a dead island is allowed here
            own = weigh(log_w)
            inv_ess = 1.0 / own.ess
        has_bad = bool(xp.any(xp.isnan(log_w) | (log_w == math.inf)))
        marker = xp.asarray([0.0, 1.0 if has_bad else 0.0], dtype=log_w.dtype, device=dev)
        vec = xp.concat([xp.reshape(own.log_z, (-1,)), xp.reshape(xp.astype(inv_ess, log_w.dtype), (-1,)), marker])
        table = self._host(self.comm.all_gather(vec))  # (R, 2 rows + 2)
        self._failed_ranks(table[:, -2], step)
        if table[:, -1].any():
            nan = xp.full(self.batch, math.nan, dtype=log_w.dtype, device=dev)
            return Weighted(nan, log_w, nan, xp.ones(self.batch, dtype=xp.bool, device=dev))
        lse = np.moveaxis(table[:, :rows], 0, -1).reshape(*self.batch, size)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            top = np.max(lse, axis=-1, keepdims=True)
            top = np.where(np.isfinite(top), top, 0.0)
            log_z = np.log(np.sum(np.exp(lse - top), axis=-1)) + top[..., 0]
            self.log_omega = lse - log_z[..., None]
            self.inv_ess = np.moveaxis(table[:, rows : 2 * rows], 0, -1).reshape(*self.batch, size)
            omega = np.exp(self.log_omega)
            ess = 1.0 / np.sum(np.where(omega > 0, omega * omega * self.inv_ess, 0.0), axis=-1)
        log_z_dev = xp.asarray(log_z, dtype=log_w.dtype, device=dev)
        with np.errstate(invalid="ignore"):
            normalised = log_w - log_z_dev[..., None]
        return Weighted(log_z_dev, normalised, xp.asarray(ess, dtype=log_w.dtype, device=dev), ~xp.isfinite(log_z_dev))

    def resample(self, t: int, particles: Any, log_w: Array, policy: Policy, lookahead: Any = None) -> Moved:
        """Island resampling when the interaction policy says so (or an island died), then the island's own.

        Parameters
        ----------
        t : int
        particles : state, leaves of shape (*batch, n, *event)
        log_w : array, shape (*batch, n)
            Global normalised log-weights.
        policy : Policy
            The island's own resampling policy, on the island's own ESS.
        lookahead : callable, optional
            Auxiliary log-weights, used by the island's own resampling and asked for with the particles the
            island holds after an interaction.

        Returns
        -------
        Moved
            Ancestors are global indices (``island * n + local index``); ``info`` has ``island_ancestors``
            (shape (*batch, R)) at interaction steps.
        """
        xp = namespace(log_w)
        dev = device_of(log_w)
        size, rank = self.comm.size, self.comm.rank
        own = xp.asarray(self.log_omega[..., rank], dtype=log_w.dtype, device=dev)
        alive = xp.isfinite(own)[..., None]
        with np.errstate(invalid="ignore"):
            local_w = xp.where(alive, log_w - own[..., None], xp.full_like(log_w, -math.inf))
        omega = np.exp(self.log_omega)
        island_ess = 1.0 / np.sum(omega * omega, axis=-1)
        decision = self.interaction.decide(t, island_ess / size)
        mask = np.broadcast_to(np.asarray(decision, dtype=bool), self.batch) | ~np.all(
            np.isfinite(self.log_omega), axis=-1
        )
        info: dict[str, Any] = {}
        sources = None
        if mask.any():
            identity = np.broadcast_to(np.arange(size), self.log_omega.shape)
            chosen = island_ancestors(self.log_omega, self.shared.random(self.batch))
            islands = np.where(mask[..., None], chosen, identity)
            particles, local_w = exchange_islands((particles, local_w), islands, self.comm)
            self.log_omega = np.where(mask[..., None], -math.log(size), self.log_omega)
            self.inv_ess = np.take_along_axis(self.inv_ess, islands, axis=-1)
            sources = islands[..., rank]
            info = {"island_ancestors": islands, "islands_moved": int(np.count_nonzero(islands != identity))}
            own = xp.asarray(self.log_omega[..., rank], dtype=log_w.dtype, device=dev)
        with np.errstate(divide="ignore"):
            self.local.ess = xp.asarray(1.0 / self.inv_ess[..., rank], dtype=log_w.dtype, device=dev)
        moved = self.local.resample(t, particles, local_w, policy, lookahead)
        ancestors = None
        if moved.ancestors is not None or sources is not None:
            local_anc = (
                moved.ancestors
                if moved.ancestors is not None
                else xp.broadcast_to(xp.arange(self.n, dtype=xp.int64, device=dev), tuple(log_w.shape))
            )
            island = rank if sources is None else xp.asarray(sources, dtype=xp.int64, device=dev)[..., None]
            ancestors = island * self.n + xp.astype(local_anc, xp.int64)
        info.update(moved.info)
        global_w = moved.log_w + own[..., None]
        return Moved(moved.particles, global_w, moved.resampled, ancestors, moved.reborn, info, moved.flag)


class IslandSMC(SMC):
    """Island SMC: one island of ``n_particles / R`` particles per rank, interacting every k steps.

    Every rank constructs it with the same arguments and iterates in lockstep; it is :class:`smckit.SMC` with
    an :class:`Islands` population. See the module docstring for the scheme, why its evidence is unbiased, and
    its communication.

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
        comm = Comm(group)
        if isinstance(interaction, (int, np.integer)) and not isinstance(interaction, bool) and interaction >= 1:
            interaction = Every(int(interaction))
        if not isinstance(interaction, Policy):
            raise InvalidArgumentError(f"interaction must be a positive integer k or a Policy, got {interaction!r}")
        scheme = resolve_resampler(resampler)
        noise = rebirth_noise_of(scheme, model)
        population = Islands(comm, n_particles, scheme, interaction, seed, noise)
        super().__init__(model, n_particles, policy=policy, history=history, population=population)
        self.comm = comm
        self.n_total = population.n_total
        self.interaction = interaction


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
