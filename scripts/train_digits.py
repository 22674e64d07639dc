"""Train the bundled 8x8 digits DDPM and classifier and write ``smckit/examples/data/digits.npz``.

Usage::

    python scripts/train_digits.py                 # the shipped weights (default settings, seed 0)
    python scripts/train_digits.py --out my.npz --seed 1

The data are scikit-learn's bundled digits (``sklearn.datasets.load_digits``, no download). Both networks
train on the CPU on a fixed stratified 80% split (the other 20% is held out for the classifier's accuracy),
each in well under a minute on two cores. Results are deterministic for a given seed, torch version and
thread count (``--threads``). The npz holds the weights as float32 arrays, ``alphas_cumprod`` of the linear
DDPM schedule, the held-out indices and a JSON ``metadata`` entry (architecture, schedule, training settings,
library versions, data statistics and the held-out accuracy).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

from smckit.examples.digits import DEFAULT_SETTINGS, default_data_path, train_digits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_data_path(), help="npz to write (default: package data)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SETTINGS["seed"], help="training seed")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixes the summation order)")
    parser.add_argument("--denoiser-steps", type=int, default=DEFAULT_SETTINGS["denoiser"]["steps"])
    parser.add_argument("--classifier-steps", type=int, default=DEFAULT_SETTINGS["classifier"]["steps"])
    args = parser.parse_args(argv)

    settings = copy.deepcopy(DEFAULT_SETTINGS)
    settings["seed"] = args.seed
    settings["denoiser"]["steps"] = args.denoiser_steps
    settings["classifier"]["steps"] = args.classifier_steps
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    meta = train_digits(args.out, settings=settings, log=lambda msg: print(msg, flush=True), threads=args.threads)
    size_kb = args.out.stat().st_size / 1024
    print(json.dumps(meta["results"], indent=2))
    print(f"wrote {args.out} ({size_kb:.0f} KiB) in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
