"""Benchmark of the Fleming-Viot resampler (plugin smckit-fvd): throughput, and diversity with accuracy.

1. Throughput: ns per particle (median over repeats) of one resampling of a row of N particles with log-weights
   N(0, 1) (Fleming-Viot then kills about 38% of them), for Fleming-Viot (default, and with exact absorption
   control), systematic and multinomial, on numpy and torch (CPU), N up to 10**7.
2. Diversity and accuracy on the analytic Gaussian-mixture diffusion (smckit.diffusion.GaussianMixture), steered
   by a linear reward whose tilted target is known exactly: per resampler, resampling at every step, the distinct
   final lineages per group, the mean ESS, the log-evidence, and the total-variation distance of the weighted
   component masses from the exact tilted masses (smckit.diagnostics.compare_resamplers, same seeds for all).

Run:  python benchmarks/bench_fvd.py [--quick] [--out benchmarks/fvd_results.md]
Needs the plugin installed (pip install --no-deps -e plugins/smckit-fvd) and torch.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import smckit
from smckit.diagnostics import compare_resamplers
from smckit.plugins import make_resampler
from smckit.random import RNG


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )


# -- 1. throughput -----------------------------------------------------------------------------------------
def time_call(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up (allocations, torch kernels, first-use generators)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(sizes: list[int], backends: list[str], repeats: int) -> str:
    import torch

    schemes: dict[str, Callable[[], Any]] = {
        "fleming-viot": lambda: make_resampler("fleming-viot"),
        "fvd exact a=0.3": lambda: make_resampler("fleming-viot", absorption=0.3, controller="exact"),
        "systematic": lambda: make_resampler("systematic"),
        "multinomial": lambda: make_resampler("multinomial"),
    }
    lines = [
        "| backend | N | " + " | ".join(schemes) + " | fvd / multinomial |",
        "| --- | --- | " + " | ".join("---" for _ in schemes) + " | --- |",
    ]
    print("\n".join(lines), flush=True)
    for backend in backends:
        for n in sizes:
            values = RNG(0).normal((n,))
            x = values if backend == "numpy" else torch.from_numpy(values)
            reps = repeats if n <= 10**6 else max(3, repeats // 2)
            ns = {}
            for label, make in schemes.items():
                res = make()
                rng = RNG(1)
                ns[label] = time_call(lambda res=res, rng=rng, x=x: res(x, rng), reps) / n * 1e9
            ratio = ns["fleming-viot"] / ns["multinomial"]
            cells = " | ".join(f"{ns[k]:.1f}" for k in schemes)
            lines.append(f"| {backend} | {n:.0e} | {cells} | {ratio:.2f} |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


# -- 2. diversity and accuracy -----------------------------------------------------------------------------
def mixture_table(steps: int, n: int, groups: int, seeds: list[int]) -> tuple[str, str]:
    import torch

    from smckit.diffusion import GaussianMixture, NoiseSchedule, RewardSteering
    from smckit.diffusion.gmm import linear_reward

    gmm = GaussianMixture(
        [0.4, 0.3, 0.2, 0.1], [[-2.0, -2.0], [2.0, -2.0], [-2.0, 2.0], [2.0, 2.0]], 0.3, dtype=torch.float64
    )
    direction = torch.tensor([1.0, 0.5], dtype=torch.float64)
    target = gmm.tilted(direction, 1.0)
    schedule = NoiseSchedule.linear(num_steps=steps)
    model = RewardSteering(
        gmm.denoiser(schedule),
        schedule,
        linear_reward(direction),
        lam=1.0,
        event_shape=(2,),
        groups=groups,
        dtype=torch.float64,
    )

    def tv(result: smckit.Result) -> Any:
        masses = target.component_masses(result.particles["x"], result.log_weights)
        return 0.5 * (masses - target.weights).abs().sum(-1)  # (groups,)

    def death_fraction(result: smckit.Result) -> float:
        fractions = [np.mean(np.asarray(i["death_fraction"])) for i in result.history.info if "death_fraction" in i]
        return float(np.mean(fractions)) if fractions else float("nan")

    resamplers = {
        "multinomial": "multinomial",
        "systematic": "systematic",
        "residual": "residual",
        "fleming-viot": "fleming-viot",
        # Below the natural death rate here (about 0.085 per step): gentler selection, a tilt w**beta with beta < 1.
        "fvd absorption 0.05 (RM)": ("fleming-viot", {"absorption": 0.05}),
        "fvd absorption 0.05 (exact, keep_target)": (
            "fleming-viot",
            {"absorption": 0.05, "controller": "exact", "keep_target": True},
        ),
        # Above it: stronger selection (beta > 1).
        "fvd absorption 0.2 (RM)": ("fleming-viot", {"absorption": 0.2}),
        "fvd absorption 0.2 (exact, keep_target)": (
            "fleming-viot",
            {"absorption": 0.2, "controller": "exact", "keep_target": True},
        ),
    }
    start = time.perf_counter()
    table = compare_resamplers(
        model,
        n,
        resamplers=resamplers,
        seeds=seeds,
        statistics={"tv_to_exact": tv, "fvd_deaths": death_fraction},
        policy=smckit.Always(),
    )
    elapsed = time.perf_counter() - start
    exact = ", ".join(f"{w:.3f}" for w in target.weights.tolist())
    setup = (
        f"2-D mixture of 4 components (prior masses 0.4, 0.3, 0.2, 0.1; exact tilted masses {exact}), "
        f"r(x) = <(1, 0.5), x>, lam = 1, DDPM with {steps} timesteps, resampling at every step, "
        f"{groups} groups x {n} particles, seeds {seeds}; lineages are per group at the final step, "
        f"tv_to_exact is the total-variation distance of the weighted component masses (mean over groups), "
        f"fvd_deaths the mean death fraction per resampling ({elapsed:.0f} s in all)"
    )
    return setup, table.to_markdown(digits=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repeats and seeds")
    parser.add_argument("--backends", default="numpy,torch")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--part", choices=("all", "throughput", "mixture"), default="all")
    parser.add_argument("--out", default=None, help="also write the tables (Markdown) to this file")
    args = parser.parse_args()

    sizes = [10**4, 10**5] if args.quick else [10**4, 10**5, 10**6, 10**7]
    repeats = 3 if args.quick else args.repeats
    seeds = [0, 1] if args.quick else [0, 1, 2, 3]
    steps = 20 if args.quick else 50

    header = f"Machine: {machine()}"
    print(header, flush=True)
    sections = []
    if args.part in ("all", "throughput"):
        print("\n## Throughput, ns per particle (median)\n", flush=True)
        sections.append(
            "## Throughput, ns per particle (median)\n\n" + throughput(sizes, args.backends.split(","), repeats)
        )
    if args.part in ("all", "mixture"):
        print("\n## Gaussian-mixture diffusion: lineages and accuracy\n", flush=True)
        setup, m_table = mixture_table(steps, 64, 16, seeds)
        print(setup + "\n\n" + m_table, flush=True)
        sections.append("## Gaussian-mixture diffusion: lineages and accuracy\n\n" + setup + "\n\n" + m_table)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(f"# Fleming-Viot benchmark\n\nCommand: `python benchmarks/bench_fvd.py`\n\n{header}\n\n")
            fh.write("\n\n".join(sections) + "\n")


if __name__ == "__main__":
    main()
