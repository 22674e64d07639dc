"""Run every benchmark script in this folder, one after the other (``--quick`` passes through).

Usage: ``python benchmarks/run_all.py [--quick] [--only NAME ...]``. Each script prints its own table with the
command and the machine; ``RESULTS.md`` collects the figures of the full runs.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
SCRIPTS = tuple(sorted(path.stem for path in HERE.glob("bench_*.py")))  # every benchmark here takes --quick


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the scripts' small sizes: checks that they run")
    parser.add_argument("--only", nargs="+", choices=SCRIPTS, help="run only these")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only or SCRIPTS:
        cmd = [sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if args.quick else [])]
        print(f"\n=== {' '.join(cmd)}", flush=True)
        if subprocess.call(cmd) != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
