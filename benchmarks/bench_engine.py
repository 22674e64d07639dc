"""The engine's own cost per step: wall time, and kernel launches and host syncs on torch.

The model does almost nothing (``propose`` returns its state, ``log_potential`` a fixed array of standard normal
draws), so what is measured is the loop: weighting, evidence, checks, records, the policy, and, when it resamples,
the scheme and the gather of the state. Three policies: ``Never`` (bookkeeping only), ``ESSBelow(0.5)`` (the
default; with these potentials it resamples at about every second step) and ``Always``.

Columns:

- ``us/step``: median wall time of a run of T steps divided by T, numpy and torch on the CPU (1 thread);
- ``launches/step`` (torch): aten operations dispatched per step by the engine, counted with a
  ``TorchDispatchMode``; view and metadata operations (which launch no kernel) are left out. On CUDA each of the
  others is one kernel launch (or a few, for a reduction);
- ``syncs/step`` (torch): operations that read a device value back on the host (``_local_scalar_dense``, copies
  to the CPU) inside the step. On a CPU tensor these are free; on CUDA each would stall the device. They are
  counted as on an accelerator: the run's checks are deferred as they are on a GPU (``SMC._defer``), and the read
  of the previous step's flags from pinned host memory is not counted (it waits for an already finished step).

Usage::

    python benchmarks/bench_engine.py                      # n = 1e2 .. 1e6, numpy and torch
    python benchmarks/bench_engine.py --quick              # n = 1e2, 1e4
    python benchmarks/bench_engine.py --baseline PATH      # also time the smckit found at PATH (a checkout), in
                                                           # alternation with this one, for a before/after table
    python benchmarks/bench_engine.py --launches-only      # only the counts (no timing)

The launch and sync counts are deterministic; the timings are medians on a shared machine (print the load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STEPS = 50
VIEWS = {
    "view", "_unsafe_view", "expand", "squeeze", "unsqueeze", "select", "slice", "t", "transpose", "as_strided",
    "detach", "alias", "permute", "reshape", "_reshape_alias", "lift_fresh", "unbind", "split",
}  # fmt: skip
POLICIES = ("never", "ess-below", "always")


def _model(lib: str, n: int, batch: tuple[int, ...]):
    import smckit

    class Null(smckit.FeynmanKac):
        """Particles that never move, weighted by fixed standard normal log-potentials."""

        num_steps = STEPS

        def __init__(self):
            g = np.random.default_rng(0).standard_normal((*batch, n))
            self.state = np.zeros((*batch, n))
            self.log_g = g
            if lib == "torch":
                import torch

                self.state, self.log_g = torch.as_tensor(self.state), torch.as_tensor(g)

        def initial(self, n_, rng):
            return self.state

        def propose(self, t, state, rng):
            return state

        def log_potential(self, t, prev, state):
            return self.log_g

    return Null()


def _policy(name: str):
    import smckit

    return {"never": smckit.Never(), "ess-below": smckit.ESSBelow(0.5), "always": smckit.Always()}[name]


def time_engine(lib: str, n: int, policy: str, repeats: int) -> float:
    """Median microseconds per step of a whole run."""
    import smckit

    model = _model(lib, n, ())
    smckit.run(model, n, policy=_policy(policy), seed=0)
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        smckit.run(model, n, policy=_policy(policy), seed=r)
        times.append(time.perf_counter() - start)
    return 1e6 * float(np.median(times)) / STEPS


def count_launches(
    n: int, policy: str, batch: tuple[int, ...] = (4,), model: object = None, steps: int = STEPS
) -> dict[str, float]:
    """Per step: the engine's launches (the scheme's and the model's own counted apart), gathers, host reads."""
    from torch.utils._python_dispatch import TorchDispatchMode

    import smckit
    import smckit.engine.loop as loop
    import smckit.engine.population as population

    counts = {"launches": 0, "scheme": 0, "model": 0, "syncs": 0, "gathers": 0}
    inside = {"scheme": False, "model": False}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name == "_local_scalar_dense" or (name in ("_to_copy", "copy_") and _to_cpu(args, kwargs)):
                if not _in_pending_read():
                    counts["syncs"] += 1
            elif name not in VIEWS:
                counts["scheme" if inside["scheme"] else "model" if inside["model"] else "launches"] += 1
            if name in ("index_select", "take", "gather", "index") and not (inside["scheme"] or inside["model"]):
                counts["gathers"] += 1
            return func(*args, **(kwargs or {}))

    class Scheme:
        """The run's resampler, with its calls marked so that its own operations are counted apart."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, *args, **kwargs):
            inside["scheme"] = True
            try:
                return self.inner(*args, **kwargs)
            finally:
                inside["scheme"] = False

    def counted_to_host(x, *args, **kwargs):  # a read back on the host: a sync on an accelerator
        if not _in_pending_read():
            counts["syncs"] += 1
        return host(x, *args, **kwargs)

    def marked(method):
        def call(*args, **kwargs):
            inside["model"] = True
            try:
                return method(*args, **kwargs)
            finally:
                inside["model"] = False

        return call

    host = population.to_host
    model = _model("torch", n, batch) if model is None else model
    for name in ("propose", "log_potential", "rebirth"):
        if hasattr(model, name):
            setattr(model, name, marked(getattr(model, name)))
    smc = smckit.SMC(model, n, policy=_policy(policy), seed=0)
    next(smc)
    smc._defer = smc.population.defer = True  # as on an accelerator
    smc.population.resampler = Scheme(smc.population.resampler)
    population.to_host = loop.to_host = counted_to_host
    try:
        with Count():
            for _ in range(steps - 1):
                next(smc)
    finally:
        population.to_host = loop.to_host = host
    out = {k: v / (steps - 1) for k, v in counts.items()}
    out["resampling steps"] = int(smc.result.history.resampled.reshape(steps, -1).any(axis=1).sum())
    return out


def steering_model():
    """The bundled Gaussian-mixture steering model (30 DDPM steps, 4 groups, torch float32 on the CPU)."""
    import torch

    from smckit.diffusion import GaussianMixture, NoiseSchedule, RewardSteering
    from smckit.diffusion.gmm import linear_reward

    gmm = GaussianMixture([0.8, 0.2], [[-2.0, 0.0], [2.0, 0.0]], 0.25, dtype=torch.float32)
    schedule = NoiseSchedule.linear(num_steps=30)
    direction = torch.tensor([1.0, 0.0])
    return RewardSteering(
        gmm.denoiser(schedule),
        schedule,
        linear_reward(direction),
        event_shape=(2,),
        lam=1.0,
        groups=4,
        dtype=torch.float32,
    )


def digits_split(resampler: str, *, groups: int = 8, particles: int = 64, steps: int = 50) -> dict[str, float]:
    """The digits steering loop's wall time, split into model (denoiser and reward), scheme and engine.

    The model is the bundled 8x8 digits DDPM steered to one class per group by its classifier's log-probability
    (``lam = 1``, the ``diff`` potential, ESSBelow(0.5)), as in ``smckit demo``; torch on the CPU, float32.
    """
    import torch

    import smckit
    from smckit.diffusion import Denoiser, RewardSteering
    from smckit.examples.digits import IMAGE_SHAPE, class_reward, load_digits_model

    denoiser, schedule, classifier = load_digits_model()
    targets = torch.arange(groups) % 10
    model = RewardSteering(
        Denoiser(denoiser, "epsilon", clip_sample=True),
        schedule.with_steps(steps, spacing="leading"),
        class_reward(classifier),
        event_shape=IMAGE_SHAPE,
        lam=1.0,
        reward_conditioning={"target": targets},
        groups=groups,
    )
    spent = {"model": 0.0, "scheme": 0.0}

    def timed(fn, key):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - start

        return call

    for name in ("initial", "propose", "log_potential"):
        setattr(model, name, timed(getattr(model, name), "model"))
    smc = smckit.SMC(model, particles, resampler=resampler, seed=0)
    smc.population.resampler = _Timed(
        smc.population.resampler, lambda dt: spent.__setitem__("scheme", spent["scheme"] + dt)
    )
    with torch.no_grad():
        start = time.perf_counter()
        for _ in smc:
            pass
        total = time.perf_counter() - start
    engine = total - spent["model"] - spent["scheme"]
    return {
        "total_ms_per_step": 1e3 * total / steps,
        "model": spent["model"] / total,
        "scheme": spent["scheme"] / total,
        "engine": engine / total,
    }


class _Timed:
    """A resampler whose calls report their wall time."""

    def __init__(self, inner, report):
        self.inner, self.report = inner, report

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.report(time.perf_counter() - start)


def _to_cpu(args, kwargs) -> bool:
    device = (kwargs or {}).get("device")
    return (
        device is not None
        and str(device) == "cpu"
        and any(getattr(a, "device", None) is not None and a.device.type != "cpu" for a in args)
    )


def _in_pending_read() -> bool:
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "read" and "_Pending" in repr(frame.f_locals.get("self", "")):
            return True
        frame = frame.f_back
    return False


def _machine() -> str:
    load = os.getloadavg()[0]
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load:.2f}"


def _child(args: argparse.Namespace) -> None:
    """Run in a subprocess with the smckit under test on sys.path: print one JSON line of timings."""
    import torch

    torch.set_num_threads(1)
    out = {}
    for lib in args.libs:
        for n in args.sizes:
            for policy in args.policies:
                out[f"{lib}|{int(n)}|{policy}"] = time_engine(lib, int(n), policy, args.repeats)
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e2, 1e3, 1e4, 1e5, 1e6])
    parser.add_argument("--libs", nargs="+", default=["numpy", "torch"], choices=["numpy", "torch"])
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="alternations between this checkout and --baseline")
    parser.add_argument("--baseline", type=Path, help="a checkout of smckit to compare with (its smckit/ folder)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--launches-only", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats, args.rounds = [1e2, 1e4], 3, 1
    if args.child:
        _child(args)
        return

    import torch

    import smckit

    torch.set_num_threads(1)
    print(f"# smckit engine overhead per step (T = {STEPS}), {_machine()}, torch {torch.__version__}")
    print(f"# command: python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}\n")
    print("## kernel launches and host syncs per step (torch, 4 rows, checks deferred as on an accelerator)\n")
    print("| n | policy | engine launches/step | gathers/step | syncs/step | scheme launches/step | resampling steps |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in (1000,):
        for policy in POLICIES:
            c = count_launches(n, policy)
            print(
                f"| {n} | {policy} | {c['launches']:.1f} | {c['gathers']:.2f} | {c['syncs']:.2f} | "
                f"{c['scheme']:.1f} | {c['resampling steps']} of {STEPS} |"
            )
    model = steering_model()
    print("\n## the bundled Gaussian-mixture steering model (30 DDPM steps, 4 groups of 256, torch float32)\n")
    print("| policy | engine launches/step | gathers/step | syncs/step | scheme launches/step | model launches/step |")
    print("|---|---:|---:|---:|---:|---:|")
    for policy in POLICIES:
        c = count_launches(256, policy, model=steering_model(), steps=model.num_steps)
        print(
            f"| {policy} | {c['launches']:.1f} | {c['gathers']:.2f} | {c['syncs']:.2f} | {c['scheme']:.1f} | "
            f"{c['model']:.1f} |"
        )
    if args.launches_only:
        return
    print("\n## the digits steering loop (8 groups x 64 particles, 50 DDPM steps, torch CPU): share of loop time\n")
    print("| scheme | ms per step | model (denoiser + reward) | scheme | engine |")
    print("|---|---:|---:|---:|---:|")
    for scheme in ("multinomial", "systematic", "fleming-viot"):
        digits_split(scheme)  # warm-up: numba compilation, first torch calls
        runs = [digits_split(scheme) for _ in range(args.rounds)]
        med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
        print(
            f"| {scheme} | {med['total_ms_per_step']:.2f} | {100 * med['model']:.1f}% | {100 * med['scheme']:.1f}% | "
            f"{100 * med['engine']:.1f}% |"
        )
    checkouts = {"this": Path(smckit.__file__).resolve().parents[1]}
    if args.baseline is not None:
        checkouts["baseline"] = args.baseline.resolve()
    child = [
        sys.executable,
        __file__,
        "--child",
        "--repeats",
        str(args.repeats),
        "--sizes",
        *map(str, args.sizes),
        "--libs",
        *args.libs,
        "--policies",
        *args.policies,
    ]
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in checkouts}
    for _ in range(args.rounds):
        for name, root in checkouts.items():  # alternate, so that a slow spell of the machine hits both
            env = dict(os.environ, PYTHONPATH=f"{root}:{root / 'plugins' / 'smckit-fvd'}")
            done = subprocess.run(child, env=env, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"\n## microseconds per step (median over {args.rounds} rounds of {args.repeats} runs)\n")
    head = "| lib | n | policy | this |" + (" baseline | this / baseline |" if "baseline" in runs else "")
    print(head)
    print("|---|---:|---|---:|" + ("---:|---:|" if "baseline" in runs else ""))
    for key in runs["this"][0]:
        lib, n, policy = key.split("|")
        this = float(np.median([r[key] for r in runs["this"]]))
        row = f"| {lib} | {int(n):.0e} | {policy} | {this:.1f} |"
        if "baseline" in runs:
            base = float(np.median([r[key] for r in runs["baseline"]]))
            row += f" {base:.1f} | {this / base:.2f} |"
        print(row)
    print(f"\n# load at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
