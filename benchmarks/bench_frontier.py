"""Frontiers of steering methods at equal denoiser calls: reward against diversity and against fidelity.

For every method of :data:`smckit.examples.frontier.METHODS` (multinomial, systematic, Fleming-Viot default /
rebirth noise / absorption target / absorption with keep_target, VASR, VASR-Max, best-of-N, value-based) and a
sweep of its selection strength, over several seeds with standard errors (see :mod:`smckit.examples.frontier` for
the protocol and the metrics):

1. the analytic Gaussian mixture (total variation of the component masses to the exact tilted target);
2. the bundled 8x8 digits DDPM (feature FID against held-out digits of the class, class accuracy);
3. wall time to reach a stated reward on digits: each method at a ladder of budgets (particles per group), the
   wall time per run interpolated (log-linear) at the budget where the mean reward first reaches the target.

Writes Markdown tables (stdout, and ``--out``) and two PNG figures (``--figures``, default benchmarks/figures).

Run:  python benchmarks/bench_frontier.py [--quick] [--out FILE] [--figures DIR]
Needs torch, matplotlib and scikit-learn; the Fleming-Viot and VASR rows need the plugins smckit-fvd and
smckit-vasr (rows whose plugin is missing are listed as skipped).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from smckit.examples import frontier as F

FULL = {
    "mixture": {"particles": 64, "groups": 16, "steps": 30, "keep": 64, "seeds": [0, 1, 2, 3, 4]},
    "digits": {
        "particles": 32,
        "classes": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        "steps": 25,
        "keep": 8,
        "seeds": [0, 1, 2, 3, 4],
    },
    "speed": {"budgets": [4, 8, 16, 32, 64], "classes": [3, 5, 8, 9], "steps": 25, "seeds": [0, 1, 2], "target": -0.1},
}
QUICK = {
    "mixture": {"particles": 8, "groups": 2, "steps": 5, "keep": 8, "seeds": [0, 1]},
    "digits": {"particles": 4, "classes": [3, 5], "steps": 4, "keep": 2, "seeds": [0, 1]},
    "speed": {"budgets": [2, 4], "classes": [3], "steps": 4, "seeds": [0], "target": -1.0},
}
QUICK_SWEEPS = {"lam": (1.0, 4.0), "absorption": (0.1, 0.4), "top": (2.0, 4.0)}
SPEED_METHODS = ("systematic", "fleming-viot", "vasr", "best-of-n", "value-based")
COLUMNS = {
    "mixture": ("reward", "lineages", "diversity", "tv", "wall_s"),
    "digits": ("reward", "accuracy", "lineages", "diversity", "fid", "wall_s"),
}


def machine() -> str:
    import torch

    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )


def table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """Markdown: one line per (method, strength), each metric as mean ± standard error."""
    head = "| method | sweep | " + " | ".join(columns) + " | denoiser calls / run |"
    lines = [head, "|---|---|" + "---:|" * (len(columns) + 1)]
    for row in rows:
        cells = []
        for key in columns:
            se = row[key + "_se"]
            cells.append(f"{row[key]:.3g}" + (f" ± {se:.2g}" if math.isfinite(se) else ""))
        sweep = f"{row['sweep']} = {row['strength']:g}"
        lines.append(f"| {row['label']} | {sweep} | " + " | ".join(cells) + f" | {row['denoiser_calls']:,} |")
    return "\n".join(lines)


def frontier_section(task: Any, sizes: dict[str, Any], sweeps: dict | None, figures: Path, fidelity: str) -> str:
    start = time.perf_counter()
    groups = sizes.get("groups", len(sizes.get("classes", [])))
    rows, skipped = F.run_frontier(
        task,
        list(F.METHODS),
        particles=sizes["particles"],
        groups=groups,
        steps=sizes["steps"],
        keep=sizes["keep"],
        seeds=sizes["seeds"],
        sweeps=sweeps,
        progress=lambda msg: print(f"  {task.name}: {msg}", file=sys.stderr, flush=True),
    )
    elapsed = time.perf_counter() - start
    lams = (sweeps or F.SWEEPS)["lam"]
    references = None
    if task.reference(1.0) is not None:
        references = {lam: task.reference(lam) for lam in lams}
    title = (
        f"{task.name}: {groups} groups x {sizes['particles']} particles x {sizes['steps']} steps, "
        f"{len(sizes['seeds'])} seeds, equal denoiser calls"
    )
    png = F.plot_frontier(
        rows,
        figures / f"frontier_{task.name}.png",
        fidelity=fidelity,
        title=title,
        references=references,
        deficit=task.name == "digits",
    )
    text = [
        f"{title}; {sizes['keep']} returned samples per group; {elapsed:.0f} s in all. Figure: `{png.name}`.",
        "",
        table(rows, COLUMNS[task.name]),
    ]
    if references:
        ref = "; ".join(
            f"lam {lam:g}: reward {r['reward']:.3g}, diversity {r['diversity']:.3g}" for lam, r in references.items()
        )
        text += ["", f"Exact tilted target (4000 exact draws): {ref}."]
    if skipped:
        text += ["", f"Skipped (plugin not installed): {', '.join(skipped)}."]
    text += ["", "Finding: " + F.finding(rows)]
    return "\n".join(text)


def speed_section(task: Any, sizes: dict[str, Any]) -> str:
    """Wall time per run to reach the stated reward, per method, from a ladder of budgets."""
    target = sizes["target"]
    lines = [
        f"Target reward {target:g} (mean log p(c | x0) of the returned samples), lam = 1, {len(task.classes)} "
        f"classes, {sizes['steps']} steps, budgets {sizes['budgets']} particles per group (calls matched per budget), "
        f"{len(sizes['seeds'])} seeds; wall time per run after a shared warm-up.",
        "",
        "| method | " + " | ".join(f"N={b}: reward / s" for b in sizes["budgets"]) + " | time to target (s) |",
        "|---|" + "---:|" * (len(sizes["budgets"]) + 1),
    ]
    for name in SPEED_METHODS:
        ladder = []
        for budget in sizes["budgets"]:
            rows, skipped = F.run_frontier(
                task,
                [name],
                particles=budget,
                groups=len(task.classes),
                steps=sizes["steps"],
                keep=min(budget, 4),
                seeds=sizes["seeds"],
                sweeps={"lam": (1.0,), "top": (4.0,)},
                warm_up=budget == sizes["budgets"][0],
            )
            if skipped:
                break
            ladder.append((rows[0]["reward"], rows[0]["wall_s"]))
        if not ladder:
            lines.append(f"| {F.METHODS[name].label} | skipped (plugin not installed) |")
            continue
        cells = " | ".join(f"{r:.3f} / {w:.3f}" for r, w in ladder)
        lines.append(f"| {F.METHODS[name].label} | {cells} | {_time_to(ladder, target)} |")
    return "\n".join(lines)


def _time_to(ladder: list[tuple[float, float]], target: float) -> str:
    for i, (reward, wall) in enumerate(ladder):
        if reward >= target:
            if i == 0:
                return f"<= {wall:.3f}"
            (r0, w0) = ladder[i - 1]
            frac = (target - r0) / (reward - r0)
            return f"{math.exp(math.log(w0) + frac * (math.log(wall) - math.log(w0))):.3f}"
    return "not reached"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds): the smoke test's configuration")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown to this file")
    parser.add_argument("--figures", type=Path, default=Path(__file__).with_name("figures"))
    parser.add_argument("--part", choices=("all", "mixture", "digits", "speed"), default="all")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    sweeps = QUICK_SWEEPS if args.quick else None
    args.figures.mkdir(parents=True, exist_ok=True)
    sections = [f"Machine: {machine()}"]
    if args.part in ("all", "mixture"):
        body = frontier_section(F.MixtureTask(), sizes["mixture"], sweeps, args.figures, "tv")
        sections.append("### Gaussian mixture\n\n" + body)
        print(sections[-1] + "\n", flush=True)
    bundle = None
    if args.part in ("all", "digits"):
        task = F.DigitsTask(sizes["digits"]["classes"])
        bundle = task.bundle
        sections.append("### Digits\n\n" + frontier_section(task, sizes["digits"], sweeps, args.figures, "fid"))
        print(sections[-1] + "\n", flush=True)
    if args.part in ("all", "speed"):
        task = F.DigitsTask(sizes["speed"]["classes"], bundle=bundle)
        sections.append("### Wall time to a stated reward (digits)\n\n" + speed_section(task, sizes["speed"]))
        print(sections[-1] + "\n", flush=True)
    if args.out:
        args.out.write_text("\n\n".join(sections) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
