"""Throughput of the resampling schemes, in nanoseconds per particle, against particles and blackjax.

Every library resamples the same log-weights (standard normal, fixed seed) of one row of N particles into N
ancestors; the time is the median over ``--repeats`` calls after a warm-up call, divided by N.

- smckit: numpy and torch (CPU), from log-weights, every scheme; with numba installed these run the compiled
  kernels, and "numpy-ref" times the array-API reference path (``use_numba(False)``), the code accelerators run.
- particles (numba; needs numpy<2, so it runs in its own venv ``benchmarks/.venv-particles`` through a
  subprocess): every scheme, timed twice: "from lw" includes ``exp_and_normalise`` (the same work as smckit),
  "from W" starts from normalised weights (the scheme alone).
- blackjax (JAX on the CPU, own venv ``benchmarks/.venv-blackjax``): systematic and multinomial, jitted,
  "from lw" includes the softmax; ``block_until_ready`` ends each timing.

Set the venvs up once::

    python -m venv benchmarks/.venv-particles
    benchmarks/.venv-particles/bin/pip install particles 'numpy<2' numba
    python -m venv benchmarks/.venv-blackjax
    benchmarks/.venv-blackjax/bin/pip install blackjax jax

Usage::

    python benchmarks/bench_resamplers.py                      # N = 1e4, 1e6, 1e7
    python benchmarks/bench_resamplers.py --quick --out out/resamplers.md
    python benchmarks/bench_resamplers.py --sizes 1e5 1e7 --repeats 9 --torch-threads 1
    python benchmarks/bench_resamplers.py --sizes 1e7 --rounds 3 --backends numpy torch --no-blackjax

The output (printed, and written to ``--out`` as markdown) records the machine, the library versions and the
command line. Run it on a quiet machine: the figures are only as good as the machine is idle.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SCHEMES = ("multinomial", "systematic", "stratified", "residual", "ssp", "killing")
BLACKJAX_SCHEMES = ("systematic", "multinomial")
SEED = 20240601


def log_weights(n: int) -> np.ndarray:
    """The benchmark input: standard normal log-weights (identical in every process)."""
    return np.random.default_rng(SEED).standard_normal(n)


def median_ns(fn: Any, n: int, repeats: int) -> float:
    fn()  # warm-up: compilation, allocations, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / n * 1e9


# -- smckit ----------------------------------------------------------------------------------------------------
def bench_smckit(sizes: list[int], repeats: int, backends: list[str]) -> dict[str, float]:
    from smckit.random import RNG
    from smckit.resamplers import BUILTIN, use_numba

    out: dict[str, float] = {}
    for n in sizes:
        lw = log_weights(n)
        for backend in backends:
            sync: Any = None
            if backend in ("torch", "cuda"):
                import torch

                x: Any = torch.from_numpy(lw).to("cuda" if backend == "cuda" else "cpu")
                sync = torch.cuda.synchronize if backend == "cuda" else None
            else:
                x = lw
            for name in SCHEMES:
                scheme = BUILTIN[name][0]()
                rng = RNG(0)

                def call(s: Any = scheme, x: Any = x, r: Any = rng, sync: Any = sync, compiled: bool = True) -> None:
                    with use_numba(compiled):
                        s(x, r)
                    if sync is not None:
                        sync()

                if backend == "numpy-ref":
                    call = functools.partial(call, compiled=False)

                out[f"smckit-{backend}|{name}|{n}"] = median_ns(call, n, repeats)
                print(f"  smckit {backend:5s} {name:11s} N={n:>9d}: {out[f'smckit-{backend}|{name}|{n}']:8.1f} ns")
    return out


# -- particles and blackjax, each in its own venv --------------------------------------------------------------
_COMMON = textwrap.dedent(
    f"""
    import json, sys, time
    import numpy as np
    SEED = {SEED}
    def log_weights(n):
        return np.random.default_rng(SEED).standard_normal(n)
    def median_ns(fn, n, repeats):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
        return float(np.median(times)) / n * 1e9
    sizes, repeats, schemes = json.loads(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    out = {{}}
    """
)

_PARTICLES = _COMMON + textwrap.dedent(
    """
    import numba, particles
    from particles import resampling as rs
    out["versions"] = {"particles": getattr(particles, "__version__", "?"), "numba": numba.__version__,
                       "numpy": np.__version__}
    try:
        from importlib.metadata import version
        out["versions"]["particles"] = version("particles")
    except Exception:
        pass
    for n in sizes:
        lw = log_weights(n)
        W = rs.exp_and_normalise(lw)
        for name in schemes:
            f = getattr(rs, name)
            out[f"particles-lw|{name}|{n}"] = median_ns(lambda: f(rs.exp_and_normalise(lw), n), n, repeats)
            out[f"particles-W|{name}|{n}"] = median_ns(lambda: f(W, n), n, repeats)
    print("RESULT" + json.dumps(out))
    """
)

_BLACKJAX = _COMMON + textwrap.dedent(
    """
    import jax, jax.numpy as jnp, blackjax
    from blackjax.smc import resampling as r
    out["versions"] = {"blackjax": blackjax.__version__, "jax": jax.__version__}
    for n in sizes:
        lw = jnp.asarray(log_weights(n))
        key = jax.random.PRNGKey(0)
        for name in schemes:
            f = getattr(r, name)
            from_lw = jax.jit(lambda k, x, f=f, n=n: f(k, jax.nn.softmax(x), n))
            from_w = jax.jit(lambda k, w, f=f, n=n: f(k, w, n))
            W = jax.nn.softmax(lw).block_until_ready()
            out[f"blackjax-lw|{name}|{n}"] = median_ns(lambda: from_lw(key, lw).block_until_ready(), n, repeats)
            out[f"blackjax-W|{name}|{n}"] = median_ns(lambda: from_w(key, W).block_until_ready(), n, repeats)
    print("RESULT" + json.dumps(out))
    """
)


def bench_external(
    label: str,
    venv: Path,
    script: str,
    sizes: list[int],
    repeats: int,
    schemes: tuple[str, ...],
    env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], str]:
    """Run ``script`` with the venv's python; returns (results, status)."""
    python = venv / "bin" / "python"
    if not python.exists():
        return {}, f"{label}: venv {venv} not found (see the module docstring to create it)"
    cmd = [str(python), "-c", script, json.dumps(sizes), str(repeats), json.dumps(list(schemes))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return {}, f"{label}: timed out"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    if proc.returncode != 0 or not lines:
        return {}, f"{label}: failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
    return json.loads(lines[-1][len("RESULT") :]), "ok"


# -- machine and report ----------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "logical cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    try:
        info["load average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch threads"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        import smckit

        info["smckit"] = smckit.__version__
    except ImportError:
        pass
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        info["numba"] = "not installed (smckit runs its array-API path)"
    return info


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def report(
    results: dict[str, Any],
    sizes: list[int],
    info: dict[str, Any],
    statuses: list[str],
    argv: list[str],
    repeats: int,
    rounds: int = 1,
) -> str:
    versions = {k: v for r in ("particles", "blackjax") for k, v in results.get(f"{r}-versions", {}).items()}
    lines = [
        "## Resampling throughput (ns per particle, lower is better)",
        "",
        f"Command: `{' '.join(shlex.quote(a) for a in argv)}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        "Other libraries: " + (", ".join(f"{k} {v}" for k, v in versions.items()) or "none"),
        "",
        f"Median of {repeats} calls after a warm-up"
        + (f", then the median over {rounds} rounds in which the libraries take turns" if rounds > 1 else "")
        + "; one row of N particles resampled into N ancestors; "
        "input: standard normal log-weights. particles and blackjax 'lw' columns include the exponentiation "
        "and normalisation (as smckit does); 'W' columns start from normalised weights.",
        "",
    ]
    lines += [f"- {s}" for s in statuses if s != "ok"]
    cols = ["smckit-numpy", "smckit-numpy-ref", "smckit-torch", "particles-lw", "particles-W", "blackjax-lw",
            "blackjax-W"]
    if any(k.startswith("smckit-cuda|") for k in results):
        cols.insert(3, "smckit-cuda")
    lines += [
        "",
        "| scheme | N | " + " | ".join(cols) + " | numpy / particles-lw | torch / numpy | numpy-ref / numpy |",
        "|---|---:|" + "---:|" * (len(cols) + 3),
    ]

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}" if a and b else "-"

    for name in SCHEMES:
        for n in sizes:
            vals = [results.get(f"{c}|{name}|{n}") for c in cols]
            get = dict(zip(cols, vals))
            np_, part = get["smckit-numpy"], get["particles-lw"]
            ratios = [ratio(np_, part), ratio(get["smckit-torch"], np_), ratio(get["smckit-numpy-ref"], np_)]
            cells = [fmt(v) for v in vals] + ratios
            lines.append(f"| {name} | {n:.0e} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e4, 1e6, 1e7], help="particle counts")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per measurement (median)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds in which the libraries take turns; figures are their median"
    )
    parser.add_argument("--quick", action="store_true", help="N = 1e4, 1e5 and 3 repeats: checks the script works")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["numpy", "numpy-ref", "torch"],
        choices=["numpy", "numpy-ref", "torch", "cuda"],
        help="smckit backends; 'numpy-ref' is numpy without the compiled kernels, 'cuda' is torch on the GPU "
        "(synchronised after each call)",
    )
    parser.add_argument("--no-particles", action="store_true")
    parser.add_argument("--no-blackjax", action="store_true")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads for smckit-torch")
    args = parser.parse_args(argv)
    sizes = [10**4, 10**5] if args.quick else [int(s) for s in args.sizes]
    repeats = 3 if args.quick else args.repeats
    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    info = machine()
    print("machine:", info)
    results: dict[str, Any] = {}
    statuses: list[str] = []
    rounds: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        # Libraries take turns within each round, so a slow spell of the machine hits all of them alike; each
        # figure is the median over the rounds.
        measured: dict[str, Any] = {}
        print(f"round {round_ + 1} of {args.rounds}: smckit ...")
        measured.update(bench_smckit(sizes, repeats, args.backends))
        if not args.no_particles:
            print("particles ...")
            part, status = bench_external("particles", HERE / ".venv-particles", _PARTICLES, sizes, repeats, SCHEMES)
            statuses.append(status)
            results["particles-versions"] = part.pop("versions", {})
            measured.update(part)
        if not args.no_blackjax:
            print("blackjax ...")
            bj, status = bench_external(
                "blackjax",
                HERE / ".venv-blackjax",
                _BLACKJAX,
                sizes,
                repeats,
                BLACKJAX_SCHEMES,
                env={"JAX_PLATFORMS": "cpu"},
            )
            statuses.append(status)
            results["blackjax-versions"] = bj.pop("versions", {})
            measured.update(bj)
        for key, value in measured.items():
            rounds.setdefault(key, []).append(float(value))
    results.update({key: float(np.median(values)) for key, values in rounds.items()})
    statuses = sorted(set(statuses))
    text = report(results, sizes, info, statuses, [sys.executable, *sys.argv], repeats, args.rounds)
    print()
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
