"""Scaling of smckit.distributed on one machine: time per step and bytes exchanged per resampling.

A bootstrap filter on a scalar linear Gaussian model with N particles in total (10^6 by default), run as one
population sharded over R = 1, 2, 4 processes (gloo on the CPU), with resampling at every step (``Always``) and
without (``Never``): the difference is the cost of global resampling and the particle exchange. Island mode
(interaction every 5 steps) and the single-process engine (``smckit.run``) are measured for comparison.

Usage::

    python benchmarks/bench_distributed.py                      # N = 10^6, 20 steps, R = 1, 2, 4
    python benchmarks/bench_distributed.py --quick              # N = 10^5, 10 steps
    python benchmarks/bench_distributed.py --backend nccl --procs 1 --torch   # one GPU, the NCCL code path

Every rank times its steps between barriers, so a step's time is the slowest rank's. Processes share the
machine's cores: on a machine with fewer cores than R x (threads per rank) the numbers show contention, not
scaling. Results are printed as a Markdown table (see benchmarks/README-distributed.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any

import numpy as np


def _model(steps: int, use_torch: bool, device: str) -> Any:
    from smckit.models import Bootstrap, LinearGaussian

    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=1.0)
    _, y = ssm.simulate(steps, seed=1)
    if use_torch:
        import torch

        y = torch.as_tensor(y, device=device)
    return Bootstrap(ssm, y)


def _time_steps(smc: Any, barrier: Any) -> tuple[list[float], list[dict]]:
    times, infos = [], []
    barrier()
    last = time.perf_counter()
    for step in smc:
        barrier()
        now = time.perf_counter()
        times.append(now - last)
        infos.append(step.info)
        last = now
    return times[1:], infos[1:]  # step 0 (initialisation) is not a typical step


def _sharded_worker(n_total: int, steps: int, use_torch: bool, device: str) -> dict:
    """Runs on every rank: one sharded run resampling at every step, one without resampling, one in islands."""
    import torch

    from smckit import Always, Never
    from smckit.distributed import Comm, IslandSMC, ShardedSMC

    comm = Comm()
    if comm.backend == "nccl":
        device = f"cuda:{torch.cuda.current_device()}"
    model = _model(steps, use_torch, device)
    out: dict = {"rank": comm.rank, "size": comm.size}
    for name, policy in (("always", Always()), ("never", Never())):
        smc = ShardedSMC(model, n_total, policy=policy, seed=0, history="none")
        times, infos = _time_steps(smc, comm.barrier)
        out[name] = {
            "step_s": statistics.median(times),
            "bytes": [i.get("bytes_sent", 0) for i in infos],
            "moved": [i.get("moved", 0) for i in infos],
        }
    smc = IslandSMC(model, n_total, policy=Always(), interaction=5, seed=0, history="none")
    times, infos = _time_steps(smc, comm.barrier)
    out["islands"] = {"step_s": statistics.median(times), "moved": [i.get("islands_moved", 0) for i in infos]}
    return out


def _single_process(n_total: int, steps: int, use_torch: bool, device: str) -> float:
    import smckit
    from smckit import Always

    smc = smckit.SMC(_model(steps, use_torch, device), n_total, policy=Always(), seed=0, history="none")
    times, _ = _time_steps(smc, lambda: None)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="particles in total")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    parser.add_argument("--torch", action="store_true", help="torch tensors instead of numpy arrays")
    parser.add_argument("--quick", action="store_true", help="N = 10^5 and 10 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.steps = 100_000, 10
    use_torch = args.torch or args.backend == "nccl"
    device = "cuda" if args.backend == "nccl" else "cpu"

    from smckit.distributed import launch_local

    print(
        f"# smckit.distributed, N = {args.n:,} particles, {args.steps} steps, backend {args.backend}, "
        f"{'torch' if use_torch else 'numpy'}; {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}"
    )
    print()
    baseline = _single_process(args.n, args.steps, use_torch, device)
    print(f"single-process smckit.run (systematic, resampling every step): {1e3 * baseline:.1f} ms/step")
    print()
    print(
        "| ranks | particles/rank | ms/step, resampling every step | ms/step, no resampling | "
        "resampling + exchange, ms | MB sent per resampling (all ranks) | particles moved per resampling | "
        "islands (k=5), ms/step |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for procs in args.procs:
        per_rank = launch_local(
            _sharded_worker, procs, args.n, args.steps, use_torch, device, backend=args.backend, timeout_s=600
        )
        always = max(r["always"]["step_s"] for r in per_rank)
        never = max(r["never"]["step_s"] for r in per_rank)
        islands = max(r["islands"]["step_s"] for r in per_rank)
        bytes_per = np.mean(np.sum([r["always"]["bytes"] for r in per_rank], axis=0))
        moved_per = np.mean(np.sum([r["always"]["moved"] for r in per_rank], axis=0))
        print(
            f"| {procs} | {args.n // procs:,} | {1e3 * always:.1f} | {1e3 * never:.1f} | "
            f"{1e3 * (always - never):.1f} | {bytes_per / 1e6:.3f} | {moved_per:,.0f} | {1e3 * islands:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
