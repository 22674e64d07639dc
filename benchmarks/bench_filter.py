"""Bootstrap particle filter on the stochastic volatility model: smckit against the `particles` library.

Time per particle-step (wall time of a whole run / (N * T)) for T = 100 and N = 1e3, 1e4, 1e5, with smckit on
numpy (and torch on the CPU) and with `particles` (Chopin's reference SMC package), side by side in one run.
Both use systematic resampling when the ESS falls below N/2, the same model and the same data. `particles`
needs numpy < 2, so it runs in its own virtual environment (``benchmarks/.venv-particles``, created on first
use) in a subprocess, interleaved with the smckit runs size by size.

Columns:

- ``particles``: ``particles.SMC(fk=Bootstrap(StochVol), resampling="systematic", ESSrmin=0.5)``, no history;
- ``smckit numpy``: ``smckit.run(Bootstrap(sv, y), N, history="none")``; ``(+anc)``: the default
  ``history="ancestors"`` (ancestors copied every step);
- ``model only``: the model's own work per step (``propose`` + ``log_potential``) in a bare loop, numpy: the
  floor under the engine; the gap to ``smckit numpy`` is the engine (weights, checks, resampling, history);
- ``smckit torch``: the same run on torch CPU tensors (float64, ``--torch-threads`` intra-op threads).

Usage::

    python benchmarks/bench_filter.py                       # N = 1e3, 1e4, 1e5, 5 repeats
    python benchmarks/bench_filter.py --quick               # N = 1e3, 1e4, 3 repeats
    python benchmarks/bench_filter.py --profile             # also a cProfile of smckit numpy at the largest N
    python benchmarks/bench_filter.py --markdown table.md   # also write the table (with machine and command)

Times are medians over the repeats (after one warm-up run). On a shared machine they are noisy: the load
average at the start and the end of the run is printed with the table.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import smckit
from smckit.models import Bootstrap, StochasticVolatility

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-particles"
PARAMS = {"mu": -1.02, "rho": 0.9702, "sigma": 0.178}  # particles' StochVol defaults (Pitt & Shephard, 1999)

PARTICLES_SCRIPT = r"""
import json, sys, time
import numpy as np
import particles
from particles import state_space_models as ssms

args = json.loads(sys.argv[1])
y = np.load(args["data"])
model = ssms.StochVol(**args["params"])
fk = ssms.Bootstrap(ssm=model, data=y)
from importlib.metadata import version
out = {"version": version("particles"), "numpy": np.__version__, "times": [], "logLt": []}
for r in range(args["repeats"] + 1):
    np.random.seed(r)
    pf = particles.SMC(fk=fk, N=args["N"], resampling="systematic", ESSrmin=0.5, store_history=False)
    t0 = time.perf_counter()
    pf.run()
    elapsed = time.perf_counter() - t0
    if r > 0:  # the first run is a warm-up
        out["times"].append(elapsed)
        out["logLt"].append(float(pf.logLt))
print(json.dumps(out))
"""


# -- the particles environment ---------------------------------------------------------------------------------
def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_particles_venv() -> Path:
    """Create ``benchmarks/.venv-particles`` with particles and numpy<2 unless it already works (idempotent).

    Several scripts may share the environment: creation happens under a file lock, and an environment that
    already imports ``particles`` is left alone.
    """
    python = venv_python()

    def works() -> bool:
        return (
            python.exists()
            and subprocess.run([str(python), "-c", "import particles"], capture_output=True).returncode == 0
        )

    if works():
        return python
    lock_path = Path(tempfile.gettempdir()) / "smckit-venv-particles.lock"
    with open(lock_path, "w") as lock:
        with contextlib.suppress(ImportError):
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        if not works():  # another process may have finished it while we waited
            if not python.exists():
                print(f"creating {VENV} ...", file=sys.stderr)
                subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", "particles", "numpy<2"], check=True)
    return python


def time_particles(python: Path, data: Path, n: int, repeats: int) -> dict[str, Any]:
    args = json.dumps({"data": str(data), "params": PARAMS, "N": n, "repeats": repeats})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([str(python), "-c", PARTICLES_SCRIPT, args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"the particles benchmark failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- smckit ----------------------------------------------------------------------------------------------------
def time_smckit(model: Bootstrap, n: int, repeats: int, history: str) -> tuple[list[float], list[float]]:
    times, log_z = [], []
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        res = smckit.run(model, n, seed=r, history=history)
        elapsed = time.perf_counter() - t0
        if r > 0:
            times.append(elapsed)
            log_z.append(
                float(np.asarray(res.log_evidence.cpu() if hasattr(res.log_evidence, "cpu") else res.log_evidence))
            )
    return times, log_z


def time_model_only(model: Bootstrap, n: int, repeats: int) -> list[float]:
    """The model's own work per run: initial, then propose + log_potential at every step, nothing else."""
    times = []
    for r in range(repeats + 1):
        rng = smckit.RNG(r)
        t0 = time.perf_counter()
        x = model.initial(n, rng)
        model.log_potential(0, None, x)
        for t in range(1, model.num_steps):
            prev = x
            x = model.propose(t, prev, rng)
            model.log_potential(t, prev, x)
        elapsed = time.perf_counter() - t0
        if r > 0:
            times.append(elapsed)
    return times


def profile_smckit(model: Bootstrap, n: int, top: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    smckit.run(model, n, seed=0, history="none")
    profiler.disable()
    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


# -- report ----------------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "smckit": smckit.__version__,
    }
    with contextlib.suppress(ImportError):
        import torch

        info["torch"] = torch.__version__
    return info


def ns(times: list[float], n: int, steps: int) -> float:
    return float(np.median(times)) / (n * steps) * 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e3, 1e4, 1e5])
    parser.add_argument("--steps", type=int, default=100, help="T, the number of time steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="N = 1e3, 1e4 and 3 repeats")
    parser.add_argument("--no-particles", action="store_true", help="skip the particles library")
    parser.add_argument("--no-torch", action="store_true", help="skip smckit on torch")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of smckit numpy at the largest N")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--json", type=Path, help="also write the raw timings as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = [1e3, 1e4], 3
    sizes = [int(s) for s in args.sizes]
    command = "python " + " ".join([os.path.relpath(__file__), *(argv if argv is not None else sys.argv[1:])])

    sv = StochasticVolatility(**PARAMS)
    _, y = sv.simulate(args.steps, seed=0)
    numpy_model = Bootstrap(sv, y)
    torch_model = None
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(args.torch_threads)
            torch_model = Bootstrap(sv, torch.as_tensor(y))
        except ImportError:
            print("torch is not installed: skipping the torch column", file=sys.stderr)

    python = None if args.no_particles else ensure_particles_venv()
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "y.npy"
        np.save(data, y[:, 0])
        for n in sizes:
            entry: dict[str, Any] = {}
            if python is not None:
                entry["particles"] = time_particles(python, data, n, args.repeats)
            entry["numpy"], entry["numpy_logZ"] = time_smckit(numpy_model, n, args.repeats, "none")
            entry["numpy_anc"], _ = time_smckit(numpy_model, n, args.repeats, "ancestors")
            entry["model_only"] = time_model_only(numpy_model, n, args.repeats)
            if torch_model is not None:
                entry["torch"], _ = time_smckit(torch_model, n, args.repeats, "none")
            raw[n] = entry
            T = args.steps
            p = ns(entry["particles"]["times"], n, T) if "particles" in entry else float("nan")
            row = {
                "N": n,
                "particles": p,
                "numpy": ns(entry["numpy"], n, T),
                "numpy_anc": ns(entry["numpy_anc"], n, T),
                "model_only": ns(entry["model_only"], n, T),
                "torch": ns(entry["torch"], n, T) if "torch" in entry else float("nan"),
            }
            row["ratio"] = row["numpy"] / p
            rows.append(row)
            print(f"N={n}: " + ", ".join(f"{k}={v:.1f}" for k, v in row.items() if k != "N"), file=sys.stderr)
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None

    info = machine()
    if python is not None and raw:
        first = next(iter(raw.values()))["particles"]
        info["particles"] = f"{first['version']} (numpy {first['numpy']})"
    lines = [
        f"Bootstrap filter, stochastic volatility model (mu={PARAMS['mu']}, rho={PARAMS['rho']}, "
        f"sigma={PARAMS['sigma']}), T={args.steps}, systematic resampling when ESS < N/2; "
        f"ns per particle-step, median of {args.repeats} runs after a warm-up.",
        "",
        f"Command: `{command}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        f"Load average (1 min) at start / end: {load_start[0] if load_start else '?'} / "
        f"{load_end[0] if load_end else '?'} on {info['cores']} cores (a shared machine makes timings noisy).",
        "",
        "| N | particles | smckit numpy | smckit numpy (+anc) | model only (numpy) | "
        f"smckit torch CPU ({args.torch_threads} thr) | smckit numpy / particles |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['N']:.0e} | {r['particles']:.1f} | {r['numpy']:.1f} | {r['numpy_anc']:.1f} | "
            f"{r['model_only']:.1f} | {r['torch']:.1f} | {r['ratio']:.2f} |"
        )
    if python is not None and raw:
        last = raw[sizes[-1]]
        lines += [
            "",
            f"Sanity (same model and data, N={sizes[-1]}): mean log-likelihood particles "
            f"{np.mean(last['particles']['logLt']):.3f}, smckit {np.mean(last['numpy_logZ']):.3f}.",
        ]
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "command": command, "rows": rows}, indent=2))
    if args.profile:
        print(f"\ncProfile of smckit numpy, N={sizes[-1]}:\n")
        print(profile_smckit(numpy_model, sizes[-1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
