"""Populations beyond one device: smckit on torch.distributed.

When one device cannot hold the particles, or one machine cannot serve all the prompts, smckit runs on several
processes with ``torch.distributed`` (NCCL on GPUs, gloo on CPUs). There is no scheduler of smckit's own: start
the processes the usual way (``torchrun``), initialise the process group, and call one of three runs on every
rank with the same arguments.

Three ways to split the work
----------------------------

=========================  ===========================================  =========================================
mode                       what each rank holds                         use it when
=========================  ===========================================  =========================================
:func:`run_rows`           whole populations (batch rows, prompts)      you have many independent populations
:func:`run_sharded`        a contiguous block of N/R particles of one   one population does not fit on a device
                           population; resampling is global
:func:`run_islands`        an island of N/R particles that resamples    one big population, and communication
                           locally; islands interact every k steps      per step must stay minimal
=========================  ===========================================  =========================================

- **Rows** (:mod:`smckit.distributed.rows`): rows are cut into fixed blocks, block b is one ordinary
  :func:`smckit.run` seeded with ``SeedSequence(seed).spawn(n_blocks)[b]``, and ranks share out whole blocks.
  The gathered result is bit-for-bit that of the single-process loop :func:`run_rows_serial`, for any number
  of ranks.
- **Sharded** (:mod:`smckit.distributed.sharded`): global evidence and ESS by all-reduce of per-rank
  log-sum-exps; global systematic or stratified resampling from one shared uniform and an exclusive scan of the
  per-rank weight totals; an all-to-all exchange that leaves N/R particles on every rank; global ancestor
  indices. Same law as a single-process run with N particles (the offspring counts are identical for the same
  uniforms), unbiased evidence.
- **Islands** (:mod:`smckit.distributed.islands`): the island particle model of Vergé, Dubarry, Del Moral and
  Moulines (2015). Each rank resamples with any registered scheme; island weights multiply the islands'
  incremental evidence; every k steps islands are resampled systematically by those weights and whole blocks
  are copied. The evidence stays unbiased (the islands form an outer SMC with unbiased random weights).

Sharded and island runs return a :class:`ShardedResult`: this rank's particles with globally normalised
log-weights, the global ``log_evidence`` and ESS, global ancestor indices; ``result.gather()`` assembles the
whole population on rank 0 (or every rank), ``result.estimate(f)`` is the global weighted mean.

A runnable example
------------------

On one machine, :func:`launch_local` starts the processes (gloo, 127.0.0.1) and returns each rank's result;
this script runs as it is::

    from smckit.distributed import launch_local, run_sharded
    from smckit.models import Bootstrap, LinearGaussian, kalman_filter

    def main():
        ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=1.0)
        _, y = ssm.simulate(50, seed=1)
        result = run_sharded(Bootstrap(ssm, y), 100_000, seed=0)   # 25 000 particles on each of 4 ranks
        return float(result.log_evidence), float(kalman_filter(ssm, y).log_likelihood)

    if __name__ == "__main__":
        print(launch_local(main, 4))   # every rank reports the same global estimate, next to the exact value

With ``torchrun --nproc-per-node 4 script.py`` (several machines: add ``--nnodes`` and a rendezvous), the
script initialises the group itself::

    from smckit.distributed import init, run_sharded
    init()                                         # NCCL when CUDA is available (device = LOCAL_RANK), else gloo
    result = run_sharded(model, 1_000_000, seed=0)  # the same call on every rank
    full = result.gather()                         # the whole population on rank 0, None elsewhere

On GPUs, give each rank's model its data on ``cuda:LOCAL_RANK``; the particles never leave the device with NCCL
(gloo has no CUDA all-to-all, so with gloo they travel through host memory).

Communication per step
----------------------

R ranks, ``B`` batch rows, N particles per row in total, ``s`` bytes per particle (all leaves of the state)::

    rows      nothing per step; at the start a seed check (R integers), at the end one gather of the results
    sharded   every step: 2 all-reduces, of B + 2 and 2B floats (max, then sum of exp and of exp^2);
              per resampling: an all-gather of B floats per rank (the block totals), an all-to-all of R
              counts, then the pieces that change rank, each s + 24 bytes (the particle and its row,
              number of copies and global index). At most N/R + R - 1 pieces leave a rank per row; with
              balanced weights most copies stay where they are (the step's info reports "moved" and
              "bytes_sent")
    islands   every step: one all-gather of 2B + 2 floats per rank (island increments, sums of squared
              weights, error flags); per interaction: N/R particles (and their log-weights) for each island
              whose copy lands on another rank, nothing for islands that keep their own population

Each step also makes a few host synchronisations (the error flags, the extinction check, the resampling
decision), as the single-process engine does. ``benchmarks/bench_distributed.py`` measures time per step and
bytes per resampling; see ``benchmarks/README-distributed.md``.

Reproducibility and errors
--------------------------

- Every rank must pass the same seed (checked: :class:`~smckit.errors.InvalidArgumentError` otherwise; ``None``
  takes fresh entropy from rank 0). Rows runs do not depend on R; sharded and island runs do (rank r's stream
  is ``SeedSequence(seed).spawn(2)[1].spawn(R)[r]``), but not their law.
- Without an initialised process group every run raises :class:`ProcessGroupError` (not torch's generic error
  on the first collective). At step 0 the ranks compare the shapes and dtypes of their state and
  log-potentials and raise the same :class:`~smckit.errors.ShapeError` together when they differ.
- An exception in one rank's model (or NaN weights) is reported to all ranks at the step's first collective:
  that rank raises its own error, the others :class:`ProcessGroupError` (or
  :class:`~smckit.errors.InvalidWeightsError`), and none is left waiting. A rank that dies outright shows as a
  torch timeout on the others (``init(timeout_s=...)``).
- Not distributed: models whose moves need whole-population statistics (adaptive tempering) in sharded or
  island mode, which would need global reductions inside the model; run them per row.
"""

from smckit.distributed.comm import Comm, ProcessGroupError, default_backend, init, launch_local
from smckit.distributed.islands import IslandSMC, exchange_islands, island_ancestors, run_islands
from smckit.distributed.rows import block_seeds, blocks_for_rank, row_blocks, run_rows, run_rows_serial
from smckit.distributed.sharded import (
    ShardedResult,
    ShardedSMC,
    exchange,
    offspring_ranges,
    run_sharded,
    stratified_uniforms,
)

__all__ = [
    "Comm",
    "ProcessGroupError",
    "default_backend",
    "init",
    "launch_local",
    "run_rows",
    "run_rows_serial",
    "row_blocks",
    "block_seeds",
    "blocks_for_rank",
    "ShardedSMC",
    "ShardedResult",
    "run_sharded",
    "offspring_ranges",
    "exchange",
    "stratified_uniforms",
    "IslandSMC",
    "run_islands",
    "island_ancestors",
    "exchange_islands",
]
