"""Independent populations (batch rows, e.g. prompts) split across ranks.

The rows of a batched run are independent SMC populations, so they need no communication while they run;
the only question is how to seed them so that the answer does not depend on how many ranks share the work.
smckit's answer: the rows are cut into fixed **blocks** of ``block_size`` consecutive rows (one row per block
by default), block b is one ordinary :func:`smckit.run` seeded with the b-th child of the run's seed,

    ``seed_b = SeedSequence(seed).spawn(n_blocks)[b]``,

and the ranks share out whole blocks (rank r runs a contiguous run of blocks). Since a block's result depends
only on its rows, its seed and the run options, the gathered result is bit-for-bit the same for any number of
ranks, and the same as the single-process loop (which is what :func:`run_rows_serial` runs)::

    seeds = block_seeds(seed, len(blocks))
    results = [smckit.run(model_for(rows), n, seed=RNG(seeds[b])) for b, rows in enumerate(blocks)]

(same backend and device assumed: the bits of floating-point arithmetic differ between devices). The block
size trades vectorisation (a block is one batched run: on a GPU, bigger blocks use it better) against
balance (whole blocks go to ranks); changing it changes the random streams, so keep it fixed when you compare.

The model factory ``model_for(rows)`` receives the ``range`` of row indices of a block and returns the model
of those rows only: batch shape ``(len(rows),)``, or an unbatched model when ``block_size == 1``. Building the
model per block lets each rank load only its own rows' data (its prompts, its observations).

Results are gathered on request: the per-block results are concatenated along the first batch axis (the row
axis): particles ``(n_rows, n, *event)``, ``log_evidence`` ``(n_rows,)``, history arrays ``(T, n_rows, ...)``;
the resampler's per-step ``info`` becomes ``{"blocks": [info of block 0, block 1, ...]}`` (empty dicts are
kept empty). Blocks must agree on the number of steps to be concatenated (adaptive models may not: use
``gather="none"`` for those). Communication: a seed check at the start and one gather of the results at the
end, nothing per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from smckit.backend import namespace, to_cpu, to_device_of
from smckit.distributed.comm import Comm, concat_states, root_seed_sequence, run_seed_sequence
from smckit.engine import run
from smckit.errors import InvalidArgumentError, ShapeError
from smckit.model import FeynmanKac
from smckit.random import RNG
from smckit.result import History, Result
from smckit.state import tree_map

__all__ = ["row_blocks", "block_seeds", "blocks_for_rank", "run_rows", "run_rows_serial", "concat_results"]

ModelFactory = Callable[[range], FeynmanKac]
GATHER_MODES = ("all", "root", "none")


def row_blocks(n_rows: int, block_size: int = 1) -> list[range]:
    """The blocks of consecutive rows: ``[range(0, b), range(b, 2b), ...]`` (the last may be shorter)."""
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 1:
        raise InvalidArgumentError(f"n_rows must be a positive integer, got {n_rows!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise InvalidArgumentError(f"block_size must be a positive integer, got {block_size!r}")
    return [range(i, min(i + block_size, n_rows)) for i in range(0, n_rows, block_size)]


def block_seeds(seed: Any, n_blocks: int) -> list[np.random.SeedSequence]:
    """The seed of each block: the children ``SeedSequence(seed).spawn(n_blocks)``, independent of the ranks."""
    return root_seed_sequence(seed).spawn(n_blocks)


def blocks_for_rank(n_blocks: int, rank: int, size: int) -> range:
    """The contiguous run of block indices rank ``rank`` of ``size`` runs (as even as possible; may be empty)."""
    base, extra = divmod(n_blocks, size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def run_rows(
    model_for: ModelFactory,
    n_rows: int,
    n_particles: int,
    *,
    block_size: int = 1,
    seed: Any = None,
    gather: str = "all",
    group: Any = None,
    **run_options: Any,
) -> Result | None:
    """Run independent populations split across ranks; call it on every rank with the same arguments.

    Parameters
    ----------
    model_for : callable
        ``model_for(rows)`` returns the model of the rows in ``rows`` (a ``range``), with batch shape
        ``(len(rows),)`` (or unbatched when ``block_size == 1``).
    n_rows : int
        Number of rows (populations) in total.
    n_particles : int
        Particles per row.
    block_size : int
        Rows per block (one :func:`smckit.run` each); part of the seeding, so keep it fixed to compare runs.
    seed : int, SeedSequence, RNG or None
        The run's seed, the same on every rank (``None``: fresh entropy from rank 0).
    gather : {"all", "root", "none"}
        Where the rows' results go: every rank gets all rows (``"all"``), rank 0 gets them and the others
        ``None`` (``"root"``), or each rank keeps its own rows (``"none"``; ``None`` on a rank without rows; its
        rows are ``blocks_for_rank`` of ``row_blocks``).
    group : ProcessGroup, optional
    **run_options
        Passed to :func:`smckit.run` (``resampler``, ``policy``, ``history``).

    Returns
    -------
    Result or None
        Rows concatenated along the first batch axis, on this rank's device (a rank without rows of its own
        keeps gathered torch tensors on the CPU).

    Raises
    ------
    ProcessGroupError
        Without an initialised process group, or on the other ranks when one rank's rows failed.
    ShapeError
        If a block's model has the wrong batch shape, or blocks disagree on the number of steps.

    Examples
    --------
    On every rank (``torchrun --nproc-per-node 2 script.py``)::

        from smckit.distributed import init, run_rows
        from smckit.models import Bootstrap, LinearGaussian

        init()
        ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
        data = [ssm.simulate(50, seed=i)[1] for i in range(8)]    # 8 data sets, one population each
        result = run_rows(lambda rows: Bootstrap(ssm, data[rows[0]]), 8, 1000, seed=0)
        result.log_evidence.shape                                  # (8,) on every rank
    """
    if gather not in GATHER_MODES:
        raise InvalidArgumentError(f"gather must be one of {GATHER_MODES}, got {gather!r}")
    comm = Comm(group)
    blocks = row_blocks(n_rows, block_size)
    seeds = run_seed_sequence(seed, comm).spawn(len(blocks))
    mine = blocks_for_rank(len(blocks), comm.rank, comm.size)
    local, error = None, None
    try:
        if len(mine):
            local = concat_results([_run_block(model_for, blocks[b], n_particles, seeds[b], run_options) for b in mine])
    except Exception as exc:  # reported to every rank before the gather
        error = exc
    comm.check_ok(error, where=f"running their rows (blocks {mine.start}..{mine.stop - 1} on rank {comm.rank})")
    if gather == "none":
        return local
    payload = to_cpu(_parts(local)) if local is not None else None
    everyone = comm.all_gather_objects(payload) if gather == "all" else comm.gather_objects(payload, 0)
    if everyone is None:
        return None
    found = [_from_parts(p) for p in everyone if p is not None]
    full = concat_results(found) if len(found) > 1 else found[0]
    like = local.log_weights if local is not None else None
    return _to_device(full, like)


def run_rows_serial(
    model_for: ModelFactory,
    n_rows: int,
    n_particles: int,
    *,
    block_size: int = 1,
    seed: Any = None,
    **run_options: Any,
) -> Result:
    """The single-process reference of :func:`run_rows`: every block in turn, in this process.

    Bit-for-bit the result :func:`run_rows` gathers, for any number of ranks (same backend and device).
    """
    blocks = row_blocks(n_rows, block_size)
    seeds = block_seeds(seed, len(blocks))
    return concat_results(
        [_run_block(model_for, rows, n_particles, seeds[b], run_options) for b, rows in enumerate(blocks)]
    )


def concat_results(results: list[Result]) -> Result:
    """Join results of consecutive row blocks along the first batch axis (the row axis).

    Raises
    ------
    ShapeError
        If the results disagree on the number of steps or on the history kept.
    """
    if len(results) == 1:
        return results[0]
    steps = {r.history.num_steps for r in results}
    if len(steps) > 1:
        raise ShapeError(
            f"the row blocks ran different numbers of steps ({sorted(steps)}), so their histories cannot be "
            "joined; gather with gather='none' and inspect each rank's rows"
        )
    hs = [r.history for r in results]
    xp = namespace(results[0].log_weights)
    info = [{"blocks": list(step)} if any(step) else {} for step in zip(*(h.info for h in hs))]
    has_anc = {h.ancestors is not None for h in hs}
    has_full = {h.particles is not None for h in hs}
    if len(has_anc) > 1 or len(has_full) > 1:
        raise ShapeError("the row blocks kept different histories; run them all with the same history mode")
    history = History(
        ess=np.concatenate([h.ess for h in hs], axis=1),
        resampled=np.concatenate([h.resampled for h in hs], axis=1),
        log_evidence_increments=np.concatenate([h.log_evidence_increments for h in hs], axis=1),
        ancestors=np.concatenate([h.ancestors for h in hs], axis=1) if has_anc == {True} else None,  # type: ignore[misc]
        info=info,
        particles=[concat_states(s, 0) for s in zip(*(h.particles for h in hs))] if has_full == {True} else None,  # type: ignore[arg-type]
        log_weights=[concat_states(s, 0) for s in zip(*(h.log_weights for h in hs))] if has_full == {True} else None,  # type: ignore[arg-type]
    )
    return Result(
        concat_states([r.particles for r in results], 0),
        xp.concat([r.log_weights for r in results], axis=0),
        xp.concat([r.log_evidence for r in results], axis=0),
        history,
        eve=None if any(r.eve is None for r in results) else np.concatenate([r.eve for r in results], axis=0),
    )


# -- helpers -------------------------------------------------------------------------------------------------
def _run_block(
    model_for: ModelFactory, rows: range, n_particles: int, seed: np.random.SeedSequence, options: dict[str, Any]
) -> Result:
    model = model_for(rows)
    result = run(model, n_particles, seed=RNG(seed), **options)
    batch = tuple(result.log_evidence.shape)
    if batch == () and len(rows) == 1:
        return _add_row_axis(result)
    if len(batch) < 1 or batch[0] != len(rows):
        raise ShapeError(
            f"model_for({rows}) returned a model with batch shape {batch}; expected ({len(rows)}, ...) (one "
            "population per row of the block), or an unbatched model for blocks of one row"
        )
    return result


def _add_row_axis(result: Result) -> Result:
    """An unbatched result as a batch of one row."""

    def expand(x: Any) -> Any:
        return namespace(x).expand_dims(x, axis=0)

    h = result.history
    history = History(
        ess=h.ess[:, None],
        resampled=h.resampled[:, None],
        log_evidence_increments=h.log_evidence_increments[:, None],
        ancestors=None if h.ancestors is None else h.ancestors[:, None],
        info=h.info,
        particles=None if h.particles is None else [tree_map(expand, p) for p in h.particles],
        log_weights=None if h.log_weights is None else [expand(w) for w in h.log_weights],
    )
    eve = None if result.eve is None else result.eve[None]
    return Result(
        tree_map(expand, result.particles), expand(result.log_weights), expand(result.log_evidence), history, eve=eve
    )


def _parts(result: Result) -> tuple[Any, ...]:
    h = result.history
    return (
        result.particles,
        result.log_weights,
        result.log_evidence,
        (h.ess, h.resampled, h.log_evidence_increments, h.ancestors, h.info, h.particles, h.log_weights),
        result.eve,
    )


def _from_parts(parts: tuple[Any, ...]) -> Result:
    particles, log_weights, log_evidence, (ess, resampled, inc, anc, info, full_p, full_w), eve = parts
    history = History(ess, resampled, inc, anc, info, full_p, full_w)
    return Result(particles, log_weights, log_evidence, history, eve=eve)


def _to_device(result: Result, like: Any) -> Result:
    h = result.history
    history = History(
        h.ess,
        h.resampled,
        h.log_evidence_increments,
        h.ancestors,
        h.info,
        to_device_of(h.particles, like),
        to_device_of(h.log_weights, like),
    )
    return Result(
        to_device_of(result.particles, like),
        to_device_of(result.log_weights, like),
        to_device_of(result.log_evidence, like),
        history,
        eve=result.eve,
    )
