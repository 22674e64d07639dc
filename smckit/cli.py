"""The ``smckit`` command line.

Sub-commands:

``smckit plugins [--json] [--check]``
    List the plugins (built-ins and installed third-party ones): name, distribution, version, status and what
    each provides (aliases in brackets). ``--check`` exits with 1 when a plugin failed to load or caused a name
    conflict: a built-in's name claimed, a name registered twice, or a bare name claimed by two plugins.
``smckit demo [...]``
    The diffusion-steering demo (:mod:`smckit.examples.demo`, loaded only by this command); its options are
    the demo's own (``smckit demo --help``), checked before any work. Needs the ``diffusion`` extra.
``smckit bench [--list] [NAME [ARGS...]]``
    List the benchmark scripts of a source checkout (``benchmarks/``), or run one with its arguments.

Plugins add their own sub-commands through the ``smckit_register_commands(subparsers)`` hook. Run as
``smckit ...`` or ``python -m smckit ...``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "benchmarks_dir"]

_PROG = "smckit"


def _version() -> str:
    import smckit

    return str(smckit.__version__)


def build_parser() -> argparse.ArgumentParser:
    """The ``smckit`` argument parser, with the plugins' sub-commands added.

    The parser's defaults carry ``plugin_commands`` (the sub-commands each plugin added) and
    ``plugin_command_errors`` (why a plugin could not add its own), both keyed ``"distribution:plugin-name"``.

    Returns
    -------
    argparse.ArgumentParser

    Raises
    ------
    PluginError
        In strict mode (``SMCKIT_STRICT_PLUGINS=1``), when a plugin fails to load or to add its commands.
    """
    from smckit.plugins.loader import register_commands

    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="smckit: Sequential Monte Carlo on the Feynman-Kac formalism, with resampler plugins.",
    )
    parser.add_argument("--version", action="version", version=f"{_PROG} {_version()} (distribution pysmckit)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    plugins = sub.add_parser(
        "plugins",
        help="list plugins and what they provide",
        description="List smckit's plugins (built-ins first): name, distribution, version, status, what each provides.",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 if a plugin failed to load or caused a name conflict (a built-in's name claimed, "
        "a name registered twice, or one bare name claimed by two plugins)",
    )
    plugins.set_defaults(func=_cmd_plugins)

    # Parsed by the demo module's own parser (see main), so that its options need not be known here.
    sub.add_parser("demo", help="run the diffusion-steering demo (needs the 'diffusion' extra; see 'smckit demo -h')")

    bench = sub.add_parser(
        "bench",
        help="list or run the benchmark scripts of a source checkout",
        description="List the scripts in benchmarks/ (source checkout only), or run one: smckit bench NAME [ARGS...].",
    )
    bench.add_argument("--list", action="store_true", help="list the benchmark scripts (the default without NAME)")
    bench.add_argument("--dir", type=Path, default=None, help="the benchmarks folder (default: <checkout>/benchmarks)")
    bench.add_argument("name", nargs="?", help="the script to run, with or without .py")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    bench.set_defaults(func=_cmd_bench)

    commands, errors = register_commands(sub)
    parser.set_defaults(plugin_commands=commands, plugin_command_errors=errors)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``smckit`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 on success, 1 when a check or a plugin failed, 2 on a usage error.
    """
    from smckit.errors import PluginError
    from smckit.plugins.registry import SMCKitPluginWarning

    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "demo":
        return _cmd_demo(args_list[1:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SMCKitPluginWarning)
        try:
            parser = build_parser()
        except PluginError as exc:
            print(f"{_PROG}: error: {exc}", file=sys.stderr)
            return 1
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    if args.command != "plugins":  # `smckit plugins` reports these itself
        for w in caught:
            print(f"{_PROG}: warning: {w.message}", file=sys.stderr)
    if args.command is None:
        parser.print_help()
        return 0
    func = getattr(args, "func", None)
    if func is None:
        print(f"{_PROG}: error: the command {args.command!r} (from a plugin) did not set a handler", file=sys.stderr)
        return 2
    return int(func(args) or 0)


# -- smckit plugins ------------------------------------------------------------------------------------------
def _cmd_plugins(args: argparse.Namespace) -> int:
    from smckit.plugins import available, get_registry

    registry = get_registry()
    commands: dict[str, list[str]] = getattr(args, "plugin_commands", {}) or {}
    command_errors: dict[str, str] = getattr(args, "plugin_command_errors", {}) or {}
    records = registry.records
    problems = [r for r in records if not r.ok or f"{r.distribution}:{r.name}" in command_errors]
    if args.json:
        report = {
            "smckit_version": _version(),
            "autoload": registry.autoload,
            "strict": registry.strict,
            "plugins": [
                {
                    **r.as_dict(),
                    "commands": commands.get(f"{r.distribution}:{r.name}", []),
                    "command_error": command_errors.get(f"{r.distribution}:{r.name}"),
                }
                for r in records
            ],
            "conflicts": [
                {
                    "kind": c.kind,
                    "name": c.name,
                    "plugin": c.plugin,
                    "distribution": c.distribution,
                    "owner": c.owner,
                    "reason": c.reason,
                    "claimants": list(c.claimants),
                    "message": c.message,
                }
                for c in registry.conflicts
            ],
            "available": available(),
        }
        print(json.dumps(report, indent=2))
    else:
        print(_plugins_table(records, commands))
        details = []
        for r in records:
            if r.error and r.status != "unavailable":
                details.append(f"  error: {r.describe()}: {r.error}")
            elif r.error:
                details.append(f"  unavailable: {r.describe()}: {r.error}")
            details.extend(f"  conflict: {message}" for message in r.conflicts)
            if f"{r.distribution}:{r.name}" in command_errors:
                details.append(f"  error: {r.describe()}: {command_errors[f'{r.distribution}:{r.name}']}")
            details.extend(f"  note: {r.describe()}: {note}" for note in r.notes)
        if not registry.autoload:
            details.append("  plugin autoload is off (SMCKIT_DISABLE_PLUGIN_AUTOLOAD): third-party plugins not loaded")
        if details:
            print()
            print("\n".join(dict.fromkeys(details)))  # an ambiguity is every claimant's: say it once
    if args.check and problems:
        lines = [f"{_PROG} plugins --check: {len(problems)} problem(s):"]
        for r in problems:
            status = r.status if not r.ok else "commands failed"
            why = (r.error,) if r.error else r.conflicts or (command_errors.get(f"{r.distribution}:{r.name}"),)
            lines.append(f"  {r.describe()} [{status}]: {'; '.join(map(str, why))}")
        print("\n".join(lines), file=sys.stderr)
        return 1
    return 0


def _plugins_table(records: Sequence[Any], commands: dict[str, list[str]]) -> str:
    header = ("NAME", "DISTRIBUTION", "VERSION", "STATUS", "PROVIDES")
    rows = [header]
    for r in records:
        provides = [
            f"{kind}: {', '.join(_with_aliases(names, r.aliases.get(kind, {})))}" for kind, names in r.provides.items()
        ]
        cmds = commands.get(f"{r.distribution}:{r.name}", [])
        if cmds:
            provides.append(f"commands: {', '.join(cmds)}")
        rows.append((r.name, r.distribution, r.version or "-", r.status, "; ".join(provides) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths)), row[-1]]).rstrip() for row in rows
    )


def _with_aliases(names: Sequence[str], aliases: dict[str, tuple[str, ...]]) -> list[str]:
    """``["fleming-viot (alias fvd)", ...]``: each name with the other names it answers to."""
    shown = []
    for name in names:
        more = aliases.get(name, ())
        shown.append(f"{name} (alias{'es' if len(more) > 1 else ''} {', '.join(more)})" if more else name)
    return shown


# -- smckit demo ---------------------------------------------------------------------------------------------
def _cmd_demo(argv: list[str]) -> int:
    try:
        demo = importlib.import_module("smckit.examples.demo")
    except ImportError as exc:
        print(
            f"{_PROG} demo: error: the demo needs the diffusion extra (torch, scikit-learn, matplotlib) "
            f"(in a clone of smckit: pip install -e '.[diffusion]'); importing smckit.examples.demo failed: {exc}",
            file=sys.stderr,
        )
        return 2
    return int(demo.command_line(argv, prog=f"{_PROG} demo"))


# -- smckit bench --------------------------------------------------------------------------------------------
def benchmarks_dir() -> Path | None:
    """The ``benchmarks/`` folder of the source checkout smckit runs from, or None (installed from a wheel)."""
    root = Path(__file__).resolve().parent.parent
    folder = root / "benchmarks"
    return folder if folder.is_dir() and (root / "pyproject.toml").is_file() else None


def _scripts(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")}


def _summary(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError, ValueError):
        return ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _cmd_bench(args: argparse.Namespace) -> int:
    folder = args.dir if args.dir is not None else benchmarks_dir()
    if folder is None or not folder.is_dir():
        where = f"{folder} is not a folder" if folder is not None else "no benchmarks/ folder next to smckit"
        print(
            f"{_PROG} bench: error: {where}. The benchmarks ship only with a source checkout of smckit "
            "(git clone the repository and install it with 'pip install -e .'), or pass --dir.",
            file=sys.stderr,
        )
        return 2
    scripts = _scripts(folder)
    if args.list or args.name is None:
        if not scripts:
            print(f"no benchmark scripts in {folder}")
            return 0
        width = max(len(name) for name in scripts)
        print(f"benchmarks in {folder} (run one with: {_PROG} bench NAME [ARGS...]):")
        for name, path in scripts.items():
            print(f"  {name.ljust(width)}  {_summary(path)}".rstrip())
        return 0
    name = args.name[:-3] if args.name.endswith(".py") else args.name
    script = scripts.get(name)
    if script is None:
        known = ", ".join(scripts) or "none"
        print(
            f"{_PROG} bench: error: no benchmark named {args.name!r} in {folder}; available: {known}", file=sys.stderr
        )
        return 2
    print(f"{_PROG} bench: running {script.name} {' '.join(args.args)}".rstrip(), file=sys.stderr, flush=True)
    return subprocess.run([sys.executable, str(script), *args.args], cwd=folder.parent, check=False).returncode


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
