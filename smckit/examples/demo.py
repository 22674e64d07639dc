"""Steer the bundled 8x8 digits diffusion model to one digit class: multinomial SMC (FK steering), systematic SMC,
Fleming-Viot SMC (two configurations) and best-of-N, at an equal number of denoiser calls.

``smckit demo`` (or ``python -m smckit.examples.demo``) runs the comparison of :mod:`smckit.examples.comparison`
on one class, prints a table and writes ``samples.png``, ``table.md`` and ``table.json``. Every option is
checked before any work starts: a bad value is a usage error (exit status 2) that names the option, and
:func:`main`, the Python entry point, raises :class:`~smckit.errors.InvalidArgumentError` with the same words.

Columns: mean reward ``log p(c | x0)`` of the returned samples; the share the classifier assigns to class ``c``;
the feature-space Fréchet distance to scikit-learn's real digits of class ``c``; distinct lineages; wall time;
denoiser calls. The wall time of each method is measured after one shared, untimed warm-up run of every method
(:func:`~smckit.examples.comparison.warm_up`), so that numba compilation and torch's first calls are charged to
no row.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smckit.errors import AmbiguousPluginError, InvalidArgumentError, UnknownPluginError
from smckit.examples.comparison import (
    LABELS,
    METHODS,
    RANGES,
    MethodResult,
    Range,
    Setup,
    real_features,
    run_method,
    summarise,
    warm_up,
)

__all__ = [
    "COLUMNS",
    "DEFAULTS",
    "QUICK",
    "Options",
    "add_arguments",
    "build_parser",
    "check_device",
    "check_methods",
    "command_line",
    "format_table",
    "main",
    "options_from_args",
    "frontier_sweeps",
    "run",
    "run_frontier",
    "save_grid",
]

DEFAULTS = {"particles": 64, "groups": 8, "keep": 8, "steps": 50}
"""The sizes of a full run (``keep`` is lowered to ``particles`` when only ``--particles`` is given)."""
QUICK = {"particles": 16, "groups": 4, "keep": 4, "steps": 20}
"""The sizes of ``--quick`` (seconds on a CPU)."""

# The demo's own options beyond Setup's fields (RANGES).
_SIZES = {"particles": RANGES["particles"], "groups": Range(int, 1), "keep": RANGES["keep"], "steps": RANGES["steps"]}
_THREADS = Range(int, 0)
_FLAGS = {"digit": "--class"}  # every other option is "--" + its dest with "-" for "_"

TIMING = (
    "Wall time: each method's model set-up, sampling and selection of the returned samples, measured after one "
    "untimed warm-up run of every method (numba compilation and torch's first calls are charged to no row); "
    "loading the model and computing the FID are not timed. Noisy on a shared machine."
)
"""The table's footnote on what the wall-time column measures."""


@dataclass(frozen=True)
class Options:
    """The demo's checked settings (:func:`options_from_args` builds them).

    Attributes
    ----------
    setup : Setup
        What every method shares.
    methods : tuple of str
        The methods to run, in order.
    out : Path
        The output folder.
    threads : int
        torch CPU threads while the demo runs (0 keeps torch's setting).
    progress : bool
        Whether to show the progress bar.
    frontier : bool
        Whether to run the small frontier (:func:`run_frontier`) after the table.
    """

    setup: Setup
    methods: tuple[str, ...]
    out: Path
    threads: int
    progress: bool
    frontier: bool = True


# -- the command line ---------------------------------------------------------------------------------------
def _flag(dest: str) -> str:
    return _FLAGS.get(dest, "--" + dest.replace("_", "-"))


def _typed(rule: Range) -> Callable[[str], Any]:
    """An argparse ``type`` that converts to ``rule.kind`` and enforces the range (a usage error otherwise)."""

    def parse(text: str) -> Any:
        try:
            value = rule.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule.describe()}, got {text!r}") from None
        problem = rule.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``parser``, each with its type and valid range.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        ``smckit demo``'s parser (:func:`build_parser`), or one of the caller's.
    """
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "Fairness: every method spends groups x particles x steps denoiser calls and returns keep samples per group; "
        "SMC rows return keep systematic draws from the final weighted particles, best-of-N the keep highest-reward "
        "of its particles. FID is the Frechet distance in the classifier's feature space to the real digits of the "
        "class (biased upward at small sizes). Wall times are measured after one untimed warm-up run of every "
        "method, and are noisy on shared machines."
    )
    add = parser.add_argument
    add(
        "--class",
        dest="digit",
        type=_typed(RANGES["digit"]),
        default=3,
        metavar="0..9",
        help="target digit (default 3)",
    )
    for key, what, metavar in (("particles", "particles per group", "N"), ("groups", "independent populations", "G")):
        add(
            f"--{key}",
            type=_typed(_SIZES[key]),
            default=None,
            metavar=metavar,
            help=f"{what} {metavar} >= 1 (default {DEFAULTS[key]}; --quick {QUICK[key]})",
        )
    add(
        "--keep",
        type=_typed(_SIZES["keep"]),
        default=None,
        metavar="K",
        help=f"samples returned per group, 1..N (default {DEFAULTS['keep']}, at most N; --quick {QUICK['keep']})",
    )
    add(
        "--steps",
        type=_typed(_SIZES["steps"]),
        default=None,
        metavar="S",
        help=f"DDPM steps, 1..1000 for the bundled model (default {DEFAULTS['steps']}; --quick {QUICK['steps']})",
    )
    add(
        "--lam",
        type=_typed(RANGES["lam"]),
        default=1.0,
        metavar="X",
        help="tilt strength: target p(x0) p(c|x0)^lam (default 1)",
    )
    add("--policy", choices=("ess", "always"), default="ess", help="SMC resampling: ESS < N/2 (default) or every step")
    add(
        "--fv-noise",
        type=_typed(RANGES["fv_noise"]),
        default=0.1,
        metavar="X",
        help="Fleming-Viot rebirth noise in [0, 1] (default 0.1)",
    )
    add(
        "--fv-absorption",
        type=_typed(RANGES["fv_absorption"]),
        default=0.1,
        metavar="X",
        help="target death fraction in (0, 1) of the 'fleming-viot-absorption' row (default 0.1)",
    )
    add(
        "--methods",
        default=",".join(METHODS),
        metavar="M1,M2,...",
        help="comma-separated subset of " + ", ".join(METHODS) + ", or other registered resamplers",
    )
    add("--seed", type=_typed(RANGES["seed"]), default=0, help="seed shared by every method, >= 0 (default 0)")
    add("--device", default="cpu", help="torch device, e.g. cpu, cuda or cuda:1 (default cpu)")
    add(
        "--quick", action="store_true", help="a small run for tests: " + ", ".join(f"{k} {v}" for k, v in QUICK.items())
    )
    add("--out", type=Path, default=Path("smckit-demo"), help="output folder (default ./smckit-demo)")
    add(
        "--threads",
        type=_typed(_THREADS),
        default=1,
        metavar="T",
        help="torch CPU threads while the demo runs (default 1: the networks are tiny, and extra threads mostly "
        "spin on a busy machine; 0 keeps torch's setting)",
    )
    add("--no-progress", action="store_true", help="hide the progress bar")
    add(
        "--no-frontier",
        action="store_true",
        help="skip the frontier (every frontier method at lam/2, lam and 2 lam, or its own sweep; writes frontier.png)",
    )


def build_parser(prog: str = "python -m smckit.examples.demo") -> argparse.ArgumentParser:
    """The demo's argument parser.

    Parameters
    ----------
    prog : str
        The program name shown in usage and error messages.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").split("\n\n")[0])
    add_arguments(parser)
    return parser


def command_line(argv: Sequence[str], prog: str = "python -m smckit.examples.demo") -> int:
    """Parse, check and run: what ``smckit demo ARGV`` does.

    Parameters
    ----------
    argv : sequence of str
        The demo's arguments.
    prog : str
        The program name for usage and error messages.

    Returns
    -------
    int
        The exit status: 0 after a run or ``--help``, 2 on a usage error (printed with the usage, naming the
        option, before any work).
    """
    parser = build_parser(prog)
    try:
        args = parser.parse_args(list(argv))
        try:
            options = options_from_args(args)
        except InvalidArgumentError as exc:
            parser.error(str(exc))
    except SystemExit as exc:  # --help and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    return run(options)


# -- checking the options -----------------------------------------------------------------------------------
def check_methods(value: str | Sequence[str], name: str = "--methods") -> tuple[str, ...]:
    """The methods to run, from a comma-separated string or a sequence of names.

    Parameters
    ----------
    value : str or sequence of str
        Names of :data:`~smckit.examples.comparison.METHODS` (always accepted: a Fleming-Viot row whose plugin is
        missing is reported as skipped) or of other registered resamplers (run as SMC rows).
    name : str
        The option's name, for the message.

    Returns
    -------
    tuple of str

    Raises
    ------
    InvalidArgumentError
        For an empty list, a name given twice, or a name that is neither a method nor a registered resampler
        (the message lists the valid ones).
    """
    from smckit.plugins import available
    from smckit.plugins import make_resampler as registry_make

    names = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(m, str) for m in names):
        raise InvalidArgumentError(f"{name} must be method names (strings), got {value!r}")
    methods = tuple(m.strip() for m in names if m.strip())
    if not methods:
        raise InvalidArgumentError(f"{name} must name at least one method, got {value!r}")
    for i, method in enumerate(methods):
        if method in methods[:i]:
            raise InvalidArgumentError(f"{name} lists {method!r} twice")
        if method in METHODS:
            continue
        try:
            registry_make(method)
        except AmbiguousPluginError as exc:
            raise InvalidArgumentError(f"{name}: {exc}") from None
        except UnknownPluginError:
            others = [r for r in available("resampler") if r not in METHODS]
            raise InvalidArgumentError(
                f"{name} names an unknown method {method!r}; choose from {', '.join(METHODS)}"
                + (f", or another registered resampler ({', '.join(others)})" if others else "")
            ) from None
    return methods


def check_device(value: Any, name: str = "--device") -> str:
    """A torch device that exists on this machine, as a string.

    Parameters
    ----------
    value : str or torch.device
    name : str
        The option's name, for the message.

    Returns
    -------
    str

    Raises
    ------
    InvalidArgumentError
        If ``value`` is not a torch device, asks for CUDA where it is not available, or names a device torch
        cannot use here (e.g. ``cuda:3`` on a one-GPU machine).
    """
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidArgumentError(
            f"{name} must be a torch device such as cpu, cuda or cuda:1, got {value!r}"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "built without CUDA" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no GPU found"
        raise InvalidArgumentError(
            f"{name} {value}: CUDA is not available on this machine (torch {torch.__version__}, {build}); "
            "use --device cpu"
        )
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise InvalidArgumentError(f"{name} {value}: torch cannot use this device here ({exc})") from None
    return str(device)


def options_from_args(args: argparse.Namespace) -> Options:
    """Check every option and build the run's :class:`Options`; nothing is loaded or run.

    Parameters
    ----------
    args : argparse.Namespace
        From :func:`build_parser` (or built by hand: options left out take their defaults).

    Returns
    -------
    Options

    Raises
    ------
    InvalidArgumentError
        Naming the first bad option (``--steps``, ``--keep``, ``--methods``, ``--device``, ...) and why: a value
        outside its range, ``--keep`` above ``--particles``, ``--steps`` above the bundled schedule's training
        timesteps, an unknown method, an unavailable device, an ``--out`` that is a file, an unknown option.
    """
    defaults = vars(build_parser().parse_args([]))
    given = vars(args)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise InvalidArgumentError(f"unknown demo option(s) {unknown}; the options are {sorted(defaults)}")
    values = {**defaults, **given}

    quick = values["quick"]
    if not isinstance(quick, bool):
        raise InvalidArgumentError(f"--quick must be True or False, got {quick!r}")
    sizes = dict(QUICK if quick else DEFAULTS)
    for key, rule in _SIZES.items():
        if values[key] is not None:
            sizes[key] = rule.check(values[key], _flag(key))
    if values["keep"] is None:
        sizes["keep"] = min(sizes["keep"], sizes["particles"])
    elif sizes["keep"] > sizes["particles"]:
        raise InvalidArgumentError(f"--keep must be at most --particles ({sizes['particles']}), got {sizes['keep']}")
    timesteps = _training_timesteps()
    if sizes["steps"] > timesteps:
        raise InvalidArgumentError(
            f"--steps must be at most the bundled model's {timesteps} training timesteps, got {sizes['steps']}"
        )
    checked = {key: RANGES[key].check(values[key], _flag(key)) for key in ("lam", "fv_noise", "fv_absorption", "seed")}
    if values["policy"] not in ("ess", "always"):
        raise InvalidArgumentError(f"--policy must be 'ess' or 'always', got {values['policy']!r}")
    out = Path(values["out"])
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"--out {out} is a file; the demo writes a folder of results")
    setup = Setup(
        classes=[RANGES["digit"].check(values["digit"], "--class")] * sizes["groups"],
        particles=sizes["particles"],
        keep=sizes["keep"],
        steps=sizes["steps"],
        policy=values["policy"],
        device=check_device(values["device"]),
        **checked,
    )
    return Options(
        setup=setup,
        methods=check_methods(values["methods"]),
        out=out,
        threads=_THREADS.check(values["threads"], "--threads"),
        progress=not values["no_progress"],
        frontier=not values["no_frontier"],
    )


def _training_timesteps() -> int:
    from smckit.examples.digits import digits_metadata

    return int(digits_metadata()["schedule"]["num_train_timesteps"])


# -- running ------------------------------------------------------------------------------------------------
def main(args: argparse.Namespace) -> int:
    """The Python entry point: check ``args`` (as :func:`options_from_args` does), then :func:`run`.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options (see :func:`build_parser`).

    Returns
    -------
    int
        0.

    Raises
    ------
    InvalidArgumentError
        Naming the bad option, before any work.
    """
    return run(options_from_args(args))


def run(options: Options) -> int:
    """Run the comparison: print the table, write ``samples.png``, ``table.md`` and ``table.json``.

    Parameters
    ----------
    options : Options

    Returns
    -------
    int
        0.
    """
    import torch

    previous = torch.get_num_threads()
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        return _run(options)
    finally:
        torch.set_num_threads(previous)


def _run(options: Options) -> int:
    import torch
    from tqdm.auto import tqdm

    from smckit.examples.digits import load_digits_model

    setup, methods, out = options.setup, options.methods, options.out
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(setup.device)
    bundle = load_digits_model(device=device)
    reference = real_features(bundle.classifier, setup.classes, device=device)

    print(
        f"smckit demo: steer the digits DDPM to class {setup.classes[0]} with target p(x0) p(c|x0)^{setup.lam:g}; "
        f"{setup.groups} groups x {setup.particles} particles x {setup.steps} steps = {setup.denoiser_calls:,} "
        f"denoiser calls per method, {setup.keep} samples kept per group, device {device}"
    )
    warm_up(bundle, setup, methods)
    results: list[MethodResult] = []
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(methods) * (setup.steps + 1), unit="step", desc="smckit demo", disable=not options.progress)
    for method in methods:
        bar.set_postfix_str(method)
        try:
            res = run_method(bundle, setup, method, bar=bar)
        except UnknownPluginError as exc:
            note = (
                "skipped: the Fleming-Viot resampler comes from the smckit-fvd plugin, which is not installed "
                "(pip install -e ./plugins/smckit-fvd from a clone of smckit)"
                if method.startswith("fleming-viot")
                else f"skipped: {exc}"
            )
            rows.append({"method": method, "skipped": True, "note": note})
            bar.update(setup.steps + 1)
            continue
        results.append(res)
        rows.append(summarise(res, reference))
    bar.close()

    notes = [f"note: {LABELS.get(row['method'], row['method'])}: {row['note']}" for row in rows if row.get("skipped")]
    footnote = (
        "SMC rows: keep systematic draws from the final weighted particles; best-of-N: the top-keep rewards of its "
        "particles. FID: classifier-feature Frechet distance to real digits of the class, from "
        f"{setup.groups * setup.keep} samples (biased upward at small sizes). {TIMING}"
    )
    report = "\n".join([format_table(rows), *notes, footnote])
    print(report)
    png = save_grid(results, out / "samples.png") if results else None
    (out / "table.md").write_text(report + "\n")
    payload = {
        "setup": asdict(setup),
        "methods": list(methods),
        "rows": rows,
        "timing": TIMING,
        "torch": torch.__version__,
        "device": str(device),
    }
    written = [str(png or "(no samples)"), str(out / "table.md"), str(out / "table.json")]
    if options.frontier:
        figure, text, finding = run_frontier(bundle, setup, out)
        print(text)
        payload["frontier"] = {"figure": str(figure), "finding": finding}
        written.insert(1, str(figure))
    (out / "table.json").write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    print(f"wrote {', '.join(written)}")
    return 0


def frontier_sweeps(lam: float) -> dict[str, tuple[float, ...]]:
    """The demo's small sweeps: ``lam / 2, lam, 2 lam`` (0.5, 1, 2 when ``lam <= 0``), absorption targets
    0.05, 0.1, 0.2 and best-of-N keeping 1/2, 1/4, 1/8 of its particles.

    Parameters
    ----------
    lam : float

    Returns
    -------
    dict
    """
    base = lam if lam > 0 else 1.0
    return {"lam": (base / 2, base, 2 * base), "absorption": (0.05, 0.1, 0.2), "top": (2.0, 4.0, 8.0)}


def run_frontier(bundle: Any, setup: Setup, out: Path) -> tuple[Path, str, str]:
    """A small frontier on the demo's setup (one seed; standard errors over its groups); writes frontier.png and
    frontier.md.

    Every method of :data:`smckit.examples.frontier.METHODS` whose plugin is installed, at the strengths of
    :func:`frontier_sweeps`, with the demo's sizes, policy and seed, after one shared untimed warm-up.

    Parameters
    ----------
    bundle : DigitsBundle
    setup : Setup
    out : Path

    Returns
    -------
    (Path, str, str)
        The figure, the text printed (table and finding), and the one-sentence finding.
    """
    from smckit.examples import frontier

    task = frontier.DigitsTask(setup.classes, device=setup.device, bundle=bundle)
    rows, skipped = frontier.run_frontier(
        task,
        list(frontier.METHODS),
        particles=setup.particles,
        groups=setup.groups,
        steps=setup.steps,
        keep=setup.keep,
        seeds=[setup.seed],
        sweeps=frontier_sweeps(setup.lam),
        policy=setup.policy,
    )
    title = (
        f"digits class {setup.classes[0]}: {setup.groups} groups x {setup.particles} particles x {setup.steps} steps, "
        "equal denoiser calls; error bars: one standard error over the groups"
    )
    figure = frontier.plot_frontier(rows, out / "frontier.png", fidelity="fid", title=title, deficit=True)
    lines = [
        "Frontier (reward against diversity and FID, one seed, ± one standard error over the groups):",
        "",
        "| method | strength | mean reward | share class c | diversity | feature FID | wall time (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['label']} | {row['sweep']} = {row['strength']:g} | {row['reward']:.3f} ± {row['reward_se']:.3f} "
            f"| {row['accuracy']:.0%} ± {row['accuracy_se']:.0%} | {row['diversity']:.2f} ± {row['diversity_se']:.2f} "
            f"| {row['fid']:.1f} | {row['wall_s']:.2f} |"
        )
    if skipped:
        lines.append(f"skipped (plugin not installed): {', '.join(skipped)}")
    finding = frontier.finding(rows, lam=frontier_sweeps(setup.lam)["lam"][1])
    lines += ["", finding]
    text = "\n".join(lines)
    (out / "frontier.md").write_text(text + "\n")
    return figure, text, finding


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"cannot serialise {type(value).__name__}")


# -- output -------------------------------------------------------------------------------------------------
COLUMNS = (
    ("method", "method", "{}"),
    ("mean_reward", "mean reward log p(c|x0)", "{:.3f}"),
    ("target_share", "share class c", "{:.1%}"),
    ("fid", "feature FID", "{:.2f}"),
    ("lineages", "distinct lineages", "{:.1f}"),
    ("wall_s", "wall time (s)", "{:.2f}"),
    ("denoiser_calls", "denoiser calls", "{:,}"),
)
"""The table's columns: (row key, title, format)."""


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]] = COLUMNS) -> str:
    """A markdown table of summary rows (skipped rows show a dash in every column but the method's).

    Parameters
    ----------
    rows : sequence of dict
        From :func:`~smckit.examples.comparison.summarise`, or ``{"method", "skipped": True, "note"}``. A key with
        a finite ``<key>_se`` entry shows as ``mean ± standard error``.
    columns : sequence of (key, title, format)

    Returns
    -------
    str
    """
    head = "| " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"
    lines = [head, rule]
    for row in rows:
        if row.get("skipped"):
            cells = [LABELS.get(row["method"], row["method"])] + ["—"] * (len(columns) - 1)
        else:
            cells = [
                LABELS.get(row[key], row[key]) if key == "method" else _cell(row, key, fmt) for key, _, fmt in columns
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    """``mean ± standard error`` when the row has a finite ``<key>_se``, the mean alone otherwise."""
    se = row.get(key + "_se")
    text = fmt.format(row[key])
    return text + " ± " + fmt.format(se) if se is not None and math.isfinite(se) else text


def save_grid(results: Sequence[MethodResult], path: str | Path, *, max_rows: int = 8, max_cols: int = 8) -> Path:
    """A PNG with one panel per method: up to ``max_rows`` groups (rows) of up to ``max_cols`` samples each.

    Parameters
    ----------
    results : sequence of MethodResult
    path : str or Path
    max_rows, max_cols : int

    Returns
    -------
    Path
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(2.6 * len(results), 3.0), squeeze=False)
    for ax, res in zip(axes[0], results):
        imgs = res.samples[:max_rows, :max_cols]
        g, k = imgs.shape[:2]
        mosaic = np.full((g * 9 + 1, k * 9 + 1), np.nan)
        for i in range(g):
            for j in range(k):
                mosaic[1 + 9 * i : 9 + 9 * i, 1 + 9 * j : 9 + 9 * j] = imgs[i, j]
        ax.imshow(np.ma.masked_invalid(mosaic), cmap="gray_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
        share = float((res.predicted == res.targets[:, None]).mean())
        ax.set_title(
            f"{LABELS.get(res.method, res.method)}\nshare {share:.0%}, lineages {res.lineages.mean():.1f}", fontsize=8
        )
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":  # python -m smckit.examples.demo
    sys.exit(command_line(sys.argv[1:]))
