"""One population sharded across ranks: global weights, global evidence, global resampling.

With R ranks and N particles in total, rank r holds the contiguous block of global particles
``r * N/R .. (r+1) * N/R - 1`` (its "shard") and runs the model on it: ``model.initial(N/R, rng)``, ``propose``
and ``log_potential`` see only the local block, so any :class:`~smckit.FeynmanKac` whose particles do not
interact runs unchanged. What couples the ranks is the weights:

- evidence and weights: the log-evidence increment ``log sum_i W_{t-1}^i G_t^i`` and the normalisation are
  global log-sum-exps, computed from two all-reduces of ``(*batch,)`` values per step: the global maximum
  ``M`` of the unnormalised log-weights, then ``S1 = sum_i exp(x_i - M)`` and ``S2 = sum_i exp(2 (x_i - M))``
  together. ``log Z_t = log S1 + M`` and ``ESS = S1^2 / S2``. Every rank holds the same (global) evidence,
  ESS and resampling decisions; its log-weights are the global normalised ones restricted to its block.
- resampling (systematic or stratified, the schemes whose offspring counts are cumulative-sum differences):
  new particle k (k = 0 .. N-1) copies the particle j whose interval ``[N C_{j-1}, N C_j)`` contains the
  position ``k + 1 - U`` (systematic, one shared uniform per row) or ``k + U_k`` (stratified), where ``C`` is the
  global cumulative weight. Each rank needs only the total weight of the ranks before it: an all-gather of R
  per-rank totals gives the exclusive scan ``B_r``, and particle j's copies occupy the new slots
  ``[F(N C_{j-1}), F(N C_j))`` with ``F(x)`` the number of positions below x: ``floor(x + U)`` for systematic and
  ``floor(x) + [U_floor(x) < x - floor(x)]`` for stratified. The shared uniforms come from a stream seeded
  identically on every rank, so no broadcast is needed. The boundaries ``B_r`` are summed in the same order on
  every rank and rank r's last cumulative weight is bit-for-bit ``B_{r+1}``, so neighbouring ranks agree on the
  slot where one's range ends and the next's begins: the counts always sum to N, and a zero weight (an
  interval of length exactly zero) never gets a copy, even at the end of a block.
- the exchange: slot k lives on rank ``k // (N/R)``. Each particle with copies sends one piece (the particle and
  its number of copies) to every rank its slot range touches; one all-to-all of R counts, one of the pieces'
  metadata (row, copies, global index) and one per state leaf move them, and the receiver expands the pieces
  in slot order. Every leaf of a nested state moves together; each rank ends with N/R particles again.
- history: ancestors are global indices (``rank * N/R + local index``), so a gathered history reads like a
  single-process one with N particles.

Communication per step: two all-reduces of ``(*batch,)`` and ``2 (*batch,)`` floats. Per resampling: an
all-gather of R totals per row, an all-to-all of R counts, and the pieces that leave their rank (at most N/R +
R - 1 per rank per row; with balanced weights most copies stay at home), each costing the particle's bytes plus
24 bytes of metadata. The step's ``info`` reports ``moved`` (pieces sent to other ranks) and ``bytes_sent``.

The law is exactly that of single-process systematic (stratified) resampling on the concatenated weights; with
the same uniforms the offspring counts are the same (:func:`offspring_ranges` exposes them). The evidence
estimate stays unbiased. The per-rank random streams differ from a single-process run's, so results are not
bit-identical to one, only equal in law.

Not supported here: models whose moves need statistics of the whole population (adaptive tempering chooses
its next exponent from the weights; run it per row with :mod:`smckit.distributed.rows` instead), resamplers
other than systematic and stratified, and rebirth noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smckit.backend import Array, device_of, namespace, to_cpu, to_device_of, to_host
from smckit.distributed.comm import Comm, concat_states
from smckit.distributed.population import RankPopulation
from smckit.engine import SMC
from smckit.engine.population import Moved, select_rows
from smckit.errors import InvalidArgumentError, SMCError
from smckit.model import FeynmanKac
from smckit.policy import Policy
from smckit.result import History, Result
from smckit.state import leaves, tree_map
from smckit.weights import Weighted

__all__ = [
    "SCHEMES",
    "Sharded",
    "ShardedSMC",
    "ShardedResult",
    "run_sharded",
    "offspring_ranges",
    "exchange",
    "stratified_uniforms",
]

State = Any
SCHEMES = ("systematic", "stratified")
"""The global resampling schemes of a sharded population."""


# -- global resampling ---------------------------------------------------------------------------------------
def stratified_uniforms(event_seed: int, chunk: int, shape: tuple[int, ...]) -> np.ndarray:
    """The stratified uniforms ``U_k`` of slots ``k = chunk * n_local .. (chunk + 1) * n_local - 1``.

    Every rank regenerates the chunks it needs from ``(event_seed, chunk)``, so neighbouring ranks see the same
    uniform at the stratum they share. Shape ``(rows, n_local)``, float64, on the host.
    """
    seq = np.random.SeedSequence(int(event_seed), spawn_key=(int(chunk),))
    return np.random.Generator(np.random.PCG64DXSM(seq)).random(shape)


def offspring_ranges(
    log_w: Array,
    comm: Comm,
    *,
    scheme: str = "systematic",
    uniform: Array | None = None,
    event_seed: int | None = None,
    normalised: bool = False,
) -> tuple[Array, Array]:
    """Global systematic or stratified resampling: the new slots each local particle fills (a collective).

    Parameters
    ----------
    log_w : array, shape (*batch, n_local)
        This rank's block of the log-weights of a population of ``N = R * n_local`` particles per row.
    comm : Comm
    scheme : {"systematic", "stratified"}
    uniform : array, shape (*batch,), float64
        Systematic: the shared uniform of each row (the same on every rank).
    event_seed : int
        Stratified: the seed of the shared uniforms ``U_k`` (see :func:`stratified_uniforms`).
    normalised : bool
        Whether ``log_w`` is already globally normalised (skips one all-reduce of the maximum).

    Returns
    -------
    start, end : int64 arrays, shape (*batch, n_local)
        Local particle j's copies are the new global particles ``start[j] .. end[j] - 1``; its offspring count
        is ``end - start``. Over all ranks the ranges tile ``0 .. N - 1`` in order.
    """
    xp = namespace(log_w)
    dev = device_of(log_w)
    n_local = int(log_w.shape[-1])
    n_total = n_local * comm.size
    batch = tuple(log_w.shape[:-1])
    lw = xp.astype(log_w, xp.float64)
    if not normalised:
        m = comm.all_reduce(xp.max(lw, axis=-1), "max")
        lw = lw - xp.where(xp.isfinite(m), m, xp.zeros_like(m))[..., None]
    w = xp.exp(lw)
    cum = xp.cumulative_sum(w, axis=-1)
    if str(dev) != "cpu":
        # Parallel scans (accelerators) may add zeros inexactly: hold the cumulative sum at its value at the last
        # positive weight and make it non-decreasing, so that a zero weight always gets an empty interval. The
        # host's sequential scans add an exact 0.0 and need no guard.
        cum = _cummax(xp.where(w > 0, cum, xp.zeros_like(w)))
    totals = comm.all_gather(cum[..., -1])  # (R, *batch)
    # Exclusive scan, summed in the same order on every rank: bounds[r + 1] is bit-for-bit bounds[r] + cum_r[-1].
    bounds = [xp.zeros(batch, dtype=xp.float64, device=dev)]
    for q in range(comm.size):
        bounds.append(bounds[-1] + totals[q])
    lo, total = bounds[comm.rank], bounds[-1]
    # Positions N * C / C_total of the interval ends; the start of this block is the end of the previous one.
    x = xp.concat([lo[..., None], lo[..., None] + cum], axis=-1) / total[..., None] * float(n_total)
    if scheme == "systematic":
        if uniform is None:
            raise InvalidArgumentError("systematic resampling needs the shared uniform of each row")
        u = xp.asarray(uniform, dtype=xp.float64, device=dev)
        # The points k + 1 - u, k = 0 .. N-1, below x: floor(x + u), the convention of smckit's Systematic, so the
        # same uniform gives the same counts as a single process.
        ends = xp.clip(xp.floor(x + u[..., None]), 0.0, float(n_total))
        ends = xp.astype(ends, xp.int64)
    elif scheme == "stratified":
        if event_seed is None:
            raise InvalidArgumentError("stratified resampling needs the seed of the shared uniforms")
        ends = _stratified_counts_below(x, n_local, n_total, event_seed)
    else:
        raise InvalidArgumentError(f"global resampling supports {SCHEMES}, got {scheme!r}")
    return ends[..., :-1], ends[..., 1:]


def _stratified_counts_below(x: Array, n_local: int, n_total: int, event_seed: int) -> Array:
    """``F(x) = #{k : k + U_k < x}`` for the stratified positions, element-wise, int64."""
    xp = namespace(x)
    dev = device_of(x)
    k = xp.clip(xp.astype(xp.floor(x), xp.int64), 0, n_total - 1)
    # The chunks of uniforms this rank needs (host sync of two numbers per row, once per resampling).
    k_host = to_host(k)
    rows = k_host.reshape(-1, k_host.shape[-1])
    first, last = int(rows.min()) // n_local, int(rows.max()) // n_local
    u_at_k = xp.zeros(tuple(x.shape), dtype=xp.float64, device=dev)
    for chunk in range(first, last + 1):
        u = xp.asarray(stratified_uniforms(event_seed, chunk, (rows.shape[0], n_local)), device=dev)
        u = xp.reshape(u, (*x.shape[:-1], n_local))
        local = k - chunk * n_local
        inside = (local >= 0) & (local < n_local)
        picked = xp.take_along_axis(u, xp.clip(local, 0, n_local - 1), axis=-1)
        u_at_k = xp.where(inside, picked, u_at_k)
    below = k + xp.astype(u_at_k < x - xp.astype(k, xp.float64), xp.int64)
    return xp.where(x >= float(n_total), xp.full_like(k, n_total), below)


def exchange(state: State, start: Array, end: Array, comm: Comm) -> tuple[State, Array, dict[str, Any]]:
    """Move the particle copies to the ranks that own their new slots (a collective).

    Parameters
    ----------
    state : array or nest of arrays, each of shape (*batch, n_local, *event)
        This rank's particles.
    start, end : int64 arrays, shape (*batch, n_local)
        Global slot ranges, as from :func:`offspring_ranges`; over all ranks they tile ``0 .. N - 1`` per row.
    comm : Comm

    Returns
    -------
    state : same structure, each leaf of shape (*batch, n_local, *event)
        The particles of slots ``rank * n_local .. (rank + 1) * n_local - 1``, in slot order.
    ancestors : int64 array, shape (*batch, n_local)
        The global index of each new particle's parent.
    info : dict
        ``moved`` (pieces sent to other ranks) and ``bytes_sent`` (to other ranks, payload and metadata).
    """
    xp = namespace(start)
    batch = tuple(start.shape[:-1])
    n = int(start.shape[-1])
    rows = math.prod(batch)
    dev = device_of(start)
    size, rank = comm.size, comm.rank
    start_f, end_f = xp.reshape(start, (-1,)), xp.reshape(end, (-1,))
    count = end_f - start_f
    first_dest = start_f // n
    pieces = xp.where(count > 0, (end_f - 1) // n - first_dest + 1, xp.zeros_like(count))
    # One piece per (particle, destination rank) pair that receives at least one copy.
    src = xp.repeat(xp.arange(rows * n, dtype=xp.int64, device=dev), pieces)
    first_piece = xp.cumulative_sum(pieces) - pieces
    within = xp.arange(src.shape[0], dtype=xp.int64, device=dev) - xp.repeat(first_piece, pieces)
    dest = xp.take(first_dest, src) + within
    copies = xp.minimum(xp.take(end_f, src), (dest + 1) * n) - xp.maximum(xp.take(start_f, src), dest * n)
    if rows > 1:  # one row's pieces are already in destination order; several rows' need a stable sort
        order = xp.argsort(dest, stable=True)
        src, dest, copies = xp.take(src, order), xp.take(dest, order), xp.take(copies, order)
    edges = xp.searchsorted(dest, xp.arange(size + 1, dtype=xp.int64, device=dev))
    send = [int(c) for c in np.diff(to_host(edges))]
    recv = comm.exchange_counts(send)
    meta = xp.stack([src // n, copies, src % n + rank * n], axis=1)
    meta = comm.all_to_all(meta, send, recv)
    # Received pieces come in source-rank order; a stable sort by row puts each row's pieces in slot order.
    if rows > 1:
        perm = xp.argsort(meta[:, 0], stable=True)
        idx = xp.repeat(perm, xp.take(meta[:, 1], perm))
    else:
        idx = xp.repeat(xp.arange(int(meta.shape[0]), dtype=xp.int64, device=dev), meta[:, 1])
    # Ranges that do not tile the population (cannot happen when the ranks agree on the weights and uniforms)
    # are reported after the leaves' collectives, so that no other rank is left waiting.
    tiled = int(idx.shape[0]) == rows * n

    def move(leaf: Array) -> Array:
        lx = namespace(leaf)
        event = tuple(leaf.shape[len(batch) + 1 :])
        flat = lx.reshape(leaf, (rows * n, *event))
        got = comm.all_to_all(lx.take(flat, src, axis=0), send, recv)
        return lx.reshape(lx.take(got, idx, axis=0), (*batch, n, *event)) if tiled else leaf

    new_state = tree_map(move, state)
    if not tiled:
        raise SMCError(
            f"rank {rank} received {int(idx.shape[0])} particle copies, expected {rows * n}: the slot ranges "
            "do not tile the population (the ranks disagree on the weights or the uniforms)"
        )
    ancestors = xp.reshape(xp.take(meta[:, 2], idx), (*batch, n))
    moved = sum(send) - send[rank]
    per_particle = sum(_bytes_per_particle(leaf, len(batch)) for leaf in leaves(state))
    info = {"moved": moved, "bytes_sent": moved * (per_particle + 24) + 8 * (size - 1)}
    return new_state, ancestors, info


def _bytes_per_particle(leaf: Array, batch_ndim: int) -> int:
    itemsize = int(getattr(leaf, "itemsize", 0) or leaf.element_size())
    return itemsize * math.prod(int(s) for s in leaf.shape[batch_ndim + 1 :])


# -- results ---------------------------------------------------------------------------------------------------
@dataclass
class ShardedResult(Result):
    """The result of a sharded run, as seen by one rank.

    ``particles`` and ``log_weights`` are this rank's block (global particles ``offset .. offset + n_local - 1``);
    ``log_weights`` are normalised over all ranks, ``log_evidence`` and the history's ESS are global, and the
    history's ancestors are global indices. :meth:`gather` assembles the whole population.

    Attributes
    ----------
    rank, world_size : int
    n_total : int
        Particles per row over all ranks.
    offset : int
        Global index of this rank's first particle.
    """

    rank: int = 0
    world_size: int = 1
    n_total: int = 0
    offset: int = 0
    comm: Any = field(default=None, repr=False, compare=False)

    @property
    def ess(self) -> Array:
        """The global effective sample size of the final weights, shape (*batch,) (no communication)."""
        return self.history.ess[-1]

    def estimate(self, f: Any, *, error: bool = False) -> Any:
        """The global weighted average ``sum_i W_i f(x_i)`` per row (a collective: call it on every rank).

        Parameters
        ----------
        f : callable
            Maps the state to an array of shape (*batch, n_local, *out).
        error : bool
            Not available on ranks: gather the population (:meth:`gather`) for a single-run variance.

        Returns
        -------
        array, shape (*batch, *out)
        """
        if error:
            raise InvalidArgumentError("error bars need the whole genealogy: call result.gather() and estimate there")
        local = super().estimate(f)
        return self.comm.all_reduce(local, "sum")

    def gather(self, dst: int | None = 0) -> Result | None:
        """The whole population as a single-process :class:`~smckit.Result` (a collective).

        Parameters
        ----------
        dst : int or None
            The rank that receives the result (``None``: every rank).

        Returns
        -------
        Result or None
            Particles ``(*batch, N, *event)`` on this rank's device, history with ancestors ``(T, *batch, N)``;
            ``None`` on the other ranks when ``dst`` is a rank.
        """
        batch_ndim = self.log_weights.ndim - 1
        h = self.history
        mine = to_cpu((self.particles, self.log_weights, h.ancestors, h.particles, h.log_weights, self.eve))
        everyone = self.comm.all_gather_objects(mine) if dst is None else self.comm.gather_objects(mine, dst)
        if everyone is None:
            return None
        parts = list(zip(*everyone))
        particles = concat_states(parts[0], batch_ndim)
        log_weights = concat_states(parts[1], batch_ndim)
        ancestors = None if parts[2][0] is None else np.concatenate(parts[2], axis=-1)
        full_p = full_w = None
        if parts[3][0] is not None:
            full_p = [concat_states(step, batch_ndim) for step in zip(*parts[3])]
            full_w = [concat_states(step, batch_ndim) for step in zip(*parts[4])]
        like = self.log_weights
        history = History(
            ess=h.ess,
            resampled=h.resampled,
            log_evidence_increments=h.log_evidence_increments,
            ancestors=ancestors,
            info=h.info,
            particles=to_device_of(full_p, like),
            log_weights=to_device_of(full_w, like),
        )
        eve = None if parts[5][0] is None else np.concatenate(parts[5], axis=-1)
        return Result(
            to_device_of(particles, like), to_device_of(log_weights, like), self.log_evidence, history, eve=eve
        )


# -- the population ----------------------------------------------------------------------------------------------
class Sharded(RankPopulation):
    """One population sharded over the ranks: global weights, global evidence, global resampling.

    The extension of :class:`smckit.SMC`'s loop for sharded runs (see the module docstring); build it through
    :class:`ShardedSMC` or :func:`run_sharded`.

    Parameters
    ----------
    comm : Comm
    n_total : int
        Particles per row over all ranks.
    scheme : {"systematic", "stratified"}
    seed : int, SeedSequence, RNG or None
    """

    def __init__(self, comm: Comm, n_total: int, scheme: str, seed: Any):
        if scheme not in SCHEMES:
            raise InvalidArgumentError(
                f"a sharded run resamples globally with one of {SCHEMES}, got {scheme!r}; for other schemes "
                "use island mode (smckit.distributed.islands), which resamples within each rank"
            )
        super().__init__(comm, n_total, seed)
        self.scheme = self.resampler = scheme
        self.ess: Array = None
        self._uniform: Array = None

    def start(self, log_w: Array, state: Any) -> None:
        """Agree on step 0 (see :class:`RankPopulation`) and keep the uniform log-weights ``-log N``.

        Parameters
        ----------
        log_w : array, shape (*batch, n)
        state : state
        """
        super().start(log_w, state)
        self._uniform = log_w

    def report(self, error: BaseException) -> None:
        """Enter :meth:`reweigh`'s first all-reduce with this rank's failure flag."""
        xp = namespace(self.like)
        rows = math.prod(self.batch)
        flags = xp.full((rows + 2,), -math.inf, dtype=self.like.dtype, device=device_of(self.like))
        marker = xp.asarray([self.comm.rank + 1.0, 0.0], dtype=self.like.dtype, device=device_of(self.like))
        self.comm.all_reduce(xp.concat([flags[:-2], marker]), "max")

    def reweigh(self, log_w: Array, *, step: int) -> Weighted:
        """Global normalisation: an all-reduce of the row maxima (and error flags), then one of the two sums.

        Parameters
        ----------
        log_w : array, shape (*batch, n)
            This rank's block of unnormalised log-weights.
        step : int

        Returns
        -------
        Weighted
            ``log_z``, ``ess`` and ``bad`` over all ranks (the same on every rank).
        """
        xp = namespace(log_w)
        dev = device_of(log_w)
        bad = xp.isnan(log_w) | (log_w == math.inf)
        m_local = xp.max(xp.where(bad, xp.full_like(log_w, -math.inf), log_w), axis=-1)
        marker = xp.asarray([0.0, 1.0 if bool(xp.any(bad)) else 0.0], dtype=log_w.dtype, device=dev)
        reduced = self.comm.all_reduce(xp.concat([xp.reshape(m_local, (-1,)), marker]), "max")
        flags = self._host(reduced[-2:])
        self._failed_ranks(flags[:1], step)
        if flags[1]:  # every rank skips the second reduction and explains the bad values
            nan = xp.full(self.batch, math.nan, dtype=log_w.dtype, device=dev)
            return Weighted(nan, log_w, nan, xp.ones(self.batch, dtype=xp.bool, device=dev))
        m = xp.reshape(reduced[:-2], self.batch)
        m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = xp.exp(log_w - m[..., None])
            sums = self.comm.all_reduce(xp.stack([xp.sum(scaled, axis=-1), xp.sum(scaled * scaled, axis=-1)]), "sum")
            log_z = xp.log(sums[0]) + m
            self.ess = sums[0] * sums[0] / sums[1]
        return Weighted(log_z, log_w - log_z[..., None], self.ess, ~xp.isfinite(log_z))

    def resample(self, t: int, particles: Any, log_w: Array, policy: Policy, lookahead: Any = None) -> Moved:
        """Global systematic or stratified resampling of the rows ``policy`` selects on the global ESS.

        Parameters
        ----------
        t : int
        particles : state, leaves of shape (*batch, n, *event)
        log_w : array, shape (*batch, n)
            Globally normalised.
        policy : Policy
        lookahead : callable, optional
            Auxiliary log-weights of this rank's particles (see :meth:`smckit.engine.Local.resample`).

        Returns
        -------
        Moved
            Ancestors are global indices; ``info`` has ``moved`` and ``bytes_sent``.
        """
        xp = namespace(log_w)
        decision, mask = select_rows(policy, t, None if policy.static else self.ess / self.n_total)
        if decision is False or mask is False:  # the same on every rank: it comes from the global ESS
            return Moved(particles, log_w, decision, None, None, {}, None)
        log_eta = None if lookahead is None else lookahead(particles)
        if log_eta is not None:
            particles, log_w = (particles, log_eta), log_w + log_eta
        uniform, event_seed = None, None
        if self.scheme == "systematic":
            uniform = self.shared.random(self.batch)
        else:
            event_seed = int(self.shared.integers(2**63 - 1))
        start, end = offspring_ranges(
            log_w, self.comm, scheme=self.scheme, uniform=uniform, event_seed=event_seed, normalised=True
        )
        if mask is not None:  # rows that keep their particles: every particle is its own single copy
            own = self.identity(log_w)
            keep = ~mask[..., None]
            start, end = xp.where(keep, own, start), xp.where(keep, own + 1, end)
        moved, ancestors, info = exchange(particles, start, end, self.comm)
        info["bytes_sent"] += 8 * math.prod(self.batch) * (self.comm.size - 1)  # the all-gathered block totals
        new_w = self._uniform
        if log_eta is not None:  # copies carry S / eta(parent), S = sum_j W_j eta_j over all ranks (see Local)
            moved, parent_eta = moved
            new_w = new_w + self.comm.logsumexp(log_w)[..., None] - parent_eta
            log_w = log_w - log_eta
        if mask is not None:
            new_w = xp.where(mask[..., None], new_w, log_w)
        return Moved(moved, new_w, decision, ancestors, None, info, None)


class ShardedSMC(SMC):
    """SMC on one population sharded over the ranks of a process group, as an iterator (one step per ``next``).

    Every rank constructs it with the same arguments and iterates in lockstep; it is :class:`smckit.SMC` with a
    :class:`Sharded` population. See the module docstring for the algorithm and its communication.

    Parameters
    ----------
    model : FeynmanKac
        The model; on each rank it is asked for ``n_particles / R`` particles.
    n_particles : int
        Particles per row over all ranks (divisible by the number of ranks R).
    resampler : {"systematic", "stratified"}
        The global resampling scheme.
    policy : Policy, optional
        When to resample, on the global ESS; defaults to the model's ``default_policy`` or ``ESSBelow(0.5)``.
    seed : int, SeedSequence, RNG or None
        The run's seed, the same on every rank. Rank r draws its particles from the child stream
        ``SeedSequence(seed).spawn(2)[1].spawn(R)[r]``; the shared uniforms come from ``spawn(2)[0]``.
    history : {"ancestors", "full", "none"}
    group : ProcessGroup, optional
        The torch.distributed group (default: the default group).

    Raises
    ------
    ProcessGroupError
        Without an initialised process group; on the other ranks when one rank's model raised.
    InvalidArgumentError
        For an unsupported resampler, a particle count the ranks do not divide, or different seeds on the ranks.
    ShapeError
        On every rank, at step 0, when the ranks' models disagree on shapes or dtypes.
    InvalidWeightsError, ExtinctionError
        On every rank, as in :func:`smckit.run`.
    """

    def __init__(
        self,
        model: FeynmanKac,
        n_particles: int,
        *,
        resampler: str = "systematic",
        policy: Policy | None = None,
        seed: Any = None,
        history: str = "ancestors",
        group: Any = None,
    ):
        population = Sharded(Comm(group), n_particles, resampler, seed)
        super().__init__(model, n_particles, policy=policy, history=history, population=population)
        self.comm = population.comm
        self.n_total = population.n_total


def run_sharded(
    model: FeynmanKac,
    n_particles: int,
    *,
    resampler: str = "systematic",
    policy: Policy | None = None,
    seed: Any = None,
    history: str = "ancestors",
    group: Any = None,
) -> ShardedResult:
    """Run SMC on one population of ``n_particles`` sharded over the ranks; call it on every rank.

    ``run_sharded(...)`` is ``ShardedSMC(...).run()``; see :class:`ShardedSMC` for the parameters and errors.

    Examples
    --------
    On every rank of a started process group (``torchrun --nproc-per-node 4 script.py``)::

        from smckit.distributed import init, run_sharded
        from smckit.models import Bootstrap, LinearGaussian

        init()
        ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
        _, y = ssm.simulate(100, seed=1)
        result = run_sharded(Bootstrap(ssm, y), 1_000_000, seed=0)   # 250 000 particles per rank
        full = result.gather()                                        # the whole population on rank 0
    """
    return ShardedSMC(  # type: ignore[return-value]
        model, n_particles, resampler=resampler, policy=policy, seed=seed, history=history, group=group
    ).run()


def _cummax(x: Array) -> Array:
    """Running maximum along the last axis (numpy or torch)."""
    if hasattr(x, "cummax"):
        return x.cummax(dim=-1).values
    return np.maximum.accumulate(x, axis=-1)


def _index_dtype(xp: Any, n_total: int) -> Any:
    return xp.int32 if n_total < 2**31 else xp.int64
