"""Smoothing cost: smckit's backward samplers against the `particles` library's, on the same model and data.

Forward filtering backward sampling on the stochastic volatility model (particles' StochVol defaults), T steps,
after one bootstrap filter run per library (systematic resampling when the ESS falls below N/2; not timed). Timed:
drawing the trajectories only, reported as ns per path-step (time / (paths * T)):

- ``reject``: rejection sampling with an exact fallback, N paths. smckit:
  ``backward_sampling(result, model, N, method="reject")``; particles: ``pf.hist.backward_sampling_reject(N)``
  (the hybrid of Dau and Chopin, 2022, with its default ``max_trials = N``);
- ``quadratic``: exact backward weights, O(N) per path-step, ``--quadratic-paths`` paths (default 100: particles
  loops over paths in Python, so N paths would take minutes). smckit: ``method="quadratic"``; particles:
  ``pf.hist.backward_sampling_ON2``;
- ``PaRIS`` (smckit only, ns per particle-step): ``replay(result, PaRIS(model, h))`` with two backward draws per
  particle and step, the work the engine's tracker does online. particles' ``Paris`` collector (a Python loop
  over particles) took 381 s at N = 1e3, T = 50 on this machine: ``--particles-paris`` times it at the smallest N.

`particles` needs numpy < 2, so it runs in its own virtual environment (``benchmarks/.venv-particles``, created on
first use by ``bench_filter.ensure_particles_venv``: ``python -m venv benchmarks/.venv-particles`` then
``benchmarks/.venv-particles/bin/pip install particles "numpy<2"``), in a subprocess.

Usage::

    python benchmarks/bench_smoothing.py                  # N = 1e3 and 1e4, T = 50, 3 repeats
    python benchmarks/bench_smoothing.py --quick          # N = 1e3, T = 20, 1 repeat
    python benchmarks/bench_smoothing.py --markdown t.md  # also write the table

Times are medians over the repeats (after a warm-up draw).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_filter import PARAMS, ensure_particles_venv, machine

import smckit
from smckit.models import Bootstrap, StochasticVolatility
from smckit.smoothing import PaRIS, backward_sampling, replay

PARTICLES_SCRIPT = r"""
import json, sys, time
import numpy as np
import particles
from particles import collectors, state_space_models as ssms
from importlib.metadata import version

class StochVol(ssms.StochVol):
    def upper_bound_log_pt(self, t):  # the transition density's maximum, as smckit's log_transition_max
        return -np.log(self.sigma) - 0.5 * np.log(2 * np.pi)

    def add_func(self, t, xp, x):
        return x

args = json.loads(sys.argv[1])
y = np.load(args["data"])
fk = ssms.Bootstrap(ssm=StochVol(**args["params"]), data=y)
out = {"version": version("particles"), "numpy": np.__version__, "reject": [], "quadratic": [], "paris": []}
np.random.seed(0)
pf = particles.SMC(fk=fk, N=args["N"], resampling="systematic", ESSrmin=0.5, store_history=True)
pf.run()
for r in range(args["repeats"] + 1):
    t0 = time.perf_counter()
    pf.hist.backward_sampling_reject(args["N"])
    t1 = time.perf_counter()
    pf.hist.backward_sampling_ON2(args["quadratic_paths"])
    t2 = time.perf_counter()
    if r > 0:  # the first round is a warm-up
        out["reject"].append(t1 - t0)
        out["quadratic"].append(t2 - t1)
if args["paris"]:
    t0 = time.perf_counter()
    particles.SMC(fk=fk, N=args["N"], resampling="systematic", ESSrmin=0.5, collect=[collectors.Paris(Nparis=2)]).run()
    t1 = time.perf_counter()
    particles.SMC(fk=fk, N=args["N"], resampling="systematic", ESSrmin=0.5).run()
    out["paris"].append((t1 - t0) - (time.perf_counter() - t1))  # the collector's cost: with minus without
print(json.dumps(out))
"""


def time_particles(python: Path, data: Path, n: int, args: argparse.Namespace, paris: bool) -> dict[str, Any]:
    payload = {
        "data": str(data),
        "params": PARAMS,
        "N": n,
        "repeats": args.repeats,
        "quadratic_paths": args.quadratic_paths,
        "paris": paris,
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [str(python), "-c", PARTICLES_SCRIPT, json.dumps(payload)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the particles benchmark failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_smckit(model: Bootstrap, n: int, args: argparse.Namespace) -> dict[str, Any]:
    res = smckit.run(model, n, seed=0, history="full", policy=smckit.ESSBelow(0.5))
    out: dict[str, Any] = {"reject": [], "quadratic": [], "paris": [], "acceptance": [], "fallbacks": []}
    for r in range(args.repeats + 1):
        t0 = time.perf_counter()
        traj = backward_sampling(res, model, n, method="reject", seed=r)
        t1 = time.perf_counter()
        backward_sampling(res, model, args.quadratic_paths, method="quadratic", seed=r)
        t2 = time.perf_counter()
        replay(res, PaRIS(model, lambda t, prev, x: x[..., 0], seed=r))
        t3 = time.perf_counter()
        if r > 0:
            out["reject"].append(t1 - t0)
            out["quadratic"].append(t2 - t1)
            out["paris"].append(t3 - t2)
            out["acceptance"].append(float(np.nanmean(traj.info["acceptance"])))
            out["fallbacks"].append(int(sum(traj.info["fallbacks"])))
    return out


def ns(times: list[float], per: int) -> float:
    return float(np.median(times)) / per * 1e9 if times else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e3, 1e4])
    parser.add_argument("--steps", type=int, default=50, help="T, the number of time steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quadratic-paths", type=int, default=100, help="paths drawn by the quadratic samplers")
    parser.add_argument("--quick", action="store_true", help="N = 1e3, T = 20, 1 repeat")
    parser.add_argument("--no-particles", action="store_true", help="skip the particles library")
    parser.add_argument("--particles-paris", action="store_true", help="also time particles' Paris at the first N")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.steps, args.repeats = [1e3], 20, 1
    sizes = [int(s) for s in args.sizes]
    T = args.steps
    command = "python " + " ".join([os.path.relpath(__file__), *(argv if argv is not None else sys.argv[1:])])

    sv = StochasticVolatility(**PARAMS)
    _, y = sv.simulate(T, seed=0)
    model = Bootstrap(sv, y)
    python = None if args.no_particles else ensure_particles_venv()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows, particles_version = [], None
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "y.npy"
        np.save(data, y[:, 0])
        for i, n in enumerate(sizes):
            ours = time_smckit(model, n, args)
            theirs: dict[str, Any] = {}
            if python is not None:
                theirs = time_particles(python, data, n, args, paris=args.particles_paris and i == 0)
                particles_version = f"{theirs['version']} (numpy {theirs['numpy']})"
            row = {
                "N": n,
                "reject_p": ns(theirs.get("reject", []), n * T),
                "reject_s": ns(ours["reject"], n * T),
                "quad_p": ns(theirs.get("quadratic", []), args.quadratic_paths * T),
                "quad_s": ns(ours["quadratic"], args.quadratic_paths * T),
                "paris_p": ns(theirs.get("paris", []), n * T),
                "paris_s": ns(ours["paris"], n * T),
                "acceptance": float(np.mean(ours["acceptance"])),
                "fallbacks": float(np.mean(ours["fallbacks"])) / (n * (T - 1)),
            }
            rows.append(row)
            print(f"N={n}: " + ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "N"), file=sys.stderr)
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    info = machine()
    if particles_version:
        info["particles"] = particles_version
    lines = [
        f"Backward sampling after a bootstrap filter, stochastic volatility model (mu={PARAMS['mu']}, "
        f"rho={PARAMS['rho']}, sigma={PARAMS['sigma']}), T={T}, systematic resampling when ESS < N/2. "
        f"ns per path-step (PaRIS: per particle-step), median of {args.repeats} draws after a warm-up; "
        f"quadratic samplers draw {args.quadratic_paths} paths.",
        "",
        f"Command: `{command}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        f"Load average (1 min) at start / end: {load_start:.2f} / {load_end:.2f} on {info['cores']} cores.",
        "",
        "| N | reject: particles | reject: smckit | ratio | quadratic: particles | quadratic: smckit | ratio "
        "| PaRIS: smckit | acceptance | exact fallbacks |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['N']:.0e} | {r['reject_p']:.0f} | {r['reject_s']:.0f} | {r['reject_s'] / r['reject_p']:.2f} | "
            f"{r['quad_p']:.0f} | {r['quad_s']:.0f} | {r['quad_s'] / r['quad_p']:.2f} | {r['paris_s']:.0f} | "
            f"{r['acceptance']:.2f} | {r['fallbacks']:.2%} |"
        )
    if not np.isnan(rows[0]["paris_p"]):
        lines += ["", f"particles' Paris collector at N={rows[0]['N']}: {rows[0]['paris_p']:.0f} ns per particle-step."]
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
