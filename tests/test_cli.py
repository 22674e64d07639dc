"""The ``smckit`` command line: plugins (table, --json, --check), demo, bench, plugin commands, --version.

Fake plugins come from tests/plugin_fixtures (see smckit_fixture_support.py); subprocess tests see them through
PYTHONPATH, in-process tests through a replaced entry-point discovery function.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

import smckit
from smckit.cli import main
from smckit.plugins import loader

FIXTURES = Path(__file__).resolve().parent / "plugin_fixtures"


pytestmark = pytest.mark.usefixtures("clean_plugins")  # the fixtures live in conftest.py


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"smckit {smckit.__version__} (distribution pysmckit)"


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("plugins", "demo", "bench"):
        assert command in out


def test_usage_error_returns_2(capsys):
    assert main(["no-such-command"]) == 2
    assert "invalid choice" in capsys.readouterr().err


# -- smckit plugins -----------------------------------------------------------------------------------------
def test_plugins_table_and_check(fake, capsys):
    fake.install("good-a", "1.5", {"a": "smckit_fixture_good_a"})
    assert main(["plugins", "--check"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "PROVIDES"]
    assert lines[1].split()[:4] == ["smckit_fixture_builtin", "pysmckit", smckit.__version__, "loaded"]
    assert lines[2].split()[:4] == ["a", "good-a", "1.5", "loaded"]
    assert "resampler: dup, only-a (alias a-alias); potential: pot-a; proposal: prop-a" in lines[2]


def test_plugins_check_fails_on_a_broken_plugin_and_on_a_conflict(fake, capsys):
    fake.install("broken-dist", "1.0", {"broken": "smckit_fixture_broken_import"})
    assert main(["plugins"]) == 0  # listing alone succeeds
    out = capsys.readouterr()
    assert "failed" in out.out and "broken on purpose" in out.out
    assert out.err == ""  # the table reports the failure; no duplicate warning on stderr
    loader.reset()
    assert main(["plugins", "--check"]) == 1
    assert "broken (broken-dist 1.0) [failed]" in capsys.readouterr().err

    loader.reset()
    fake.install("shadow-dist", "1.0", {"shadow": "smckit_fixture_shadow"})
    assert main(["plugins", "--check"]) == 1
    out = capsys.readouterr()
    assert "conflict:" in out.out and "shadow (shadow-dist 1.0) [conflict]" in out.err


def test_plugins_check_fails_when_two_plugins_claim_one_bare_name(fake, capsys):
    fake.install("good-a", "1.0", {"a": "smckit_fixture_good_a"})
    fake.install("good-b", "2.0", {"b": "smckit_fixture_good_b"})
    assert main(["plugins"]) == 0  # listing alone succeeds and shows the conflict once
    out = capsys.readouterr().out
    assert out.count("resampler name 'dup' is claimed by 2 plugins ('good-a:dup', 'good-b:dup')") == 1
    assert [line.split()[3] for line in out.splitlines()[2:4]] == ["conflict", "conflict"]
    assert main(["plugins", "--check"]) == 1
    err = capsys.readouterr().err
    for who in ("a (good-a 1.0) [conflict]: the resampler name 'dup'", "b (good-b 2.0) [conflict]: the resampler name"):
        assert who in err
    assert main(["plugins", "--json", "--check"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(c["plugin"], c["reason"], c["claimants"]) for c in report["conflicts"]] == [
        ("a", "ambiguous", ["good-a:dup", "good-b:dup"]),
        ("b", "ambiguous", ["good-a:dup", "good-b:dup"]),
    ]
    assert report["available"]["resampler"] == ["builtin-scheme", "good-a:dup", "good-b:dup", "only-a", "only-b"]


def test_plugins_table_shows_aliases(fake, capsys):
    fake.install("good-a", "1.5", {"a": "smckit_fixture_good_a"})
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "resampler: builtin-scheme (alias bs); potential: builtin-potential" in out
    assert "resampler: dup, only-a (alias a-alias)" in out


def test_real_fleming_viot_alias_is_listed():
    pytest.importorskip("smckit_fvd")  # installed from plugins/smckit-fvd (see CONTRIBUTING.md)
    out = subprocess.run([sys.executable, "-m", "smckit", "plugins"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    (line,) = [line for line in out.stdout.splitlines() if "smckit-fvd" in line]
    assert "resampler: fleming-viot (alias fvd)" in line


def test_plugins_json_in_a_subprocess(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    import smckit_fixture_support as support

    plugins = support.FakePlugins(tmp_path / "site")
    plugins.install("good-a", "1.5", {"a": "smckit_fixture_good_a"})
    plugins.install("broken-dist", "0.1", {"broken": "smckit_fixture_broken_hook"})
    run = [sys.executable, "-m", "smckit", "plugins", "--json"]
    out = subprocess.run(run, capture_output=True, text=True, env=plugins.env(), check=False)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["smckit_version"] == smckit.__version__ and report["autoload"] is True
    records = {(r["distribution"], r["name"]): r for r in report["plugins"]}
    good = records["good-a", "a"]
    assert (good["status"], good["version"], good["module"], good["builtin"]) == (
        "loaded",
        "1.5",
        "smckit_fixture_good_a",
        False,
    )
    assert good["provides"] == {"resampler": ["dup", "only-a"], "potential": ["pot-a"], "proposal": ["prop-a"]}
    broken = records["broken-dist", "broken"]
    assert broken["status"] == "failed" and broken["error"] == "RuntimeError: hook failure on purpose"
    assert records["pysmckit", "smckit.resamplers"]["builtin"] is True
    assert "only-a" in report["available"]["resampler"] and "pot-a" in report["available"]["potential"]

    checked = subprocess.run([*run, "--check"], capture_output=True, text=True, env=plugins.env(), check=False)
    assert checked.returncode == 1 and json.loads(checked.stdout)["plugins"] == report["plugins"]

    disabled = subprocess.run(
        run, capture_output=True, text=True, env=plugins.env(SMCKIT_DISABLE_PLUGIN_AUTOLOAD="1"), check=False
    )
    report = json.loads(disabled.stdout)
    assert report["autoload"] is False
    assert {r["status"] for r in report["plugins"] if not r["builtin"]} == {"disabled"}

    strict = subprocess.run(
        run, capture_output=True, text=True, env=plugins.env(SMCKIT_STRICT_PLUGINS="1"), check=False
    )
    assert strict.returncode == 1 and "hook failure on purpose" in strict.stderr


# -- plugin-provided commands -------------------------------------------------------------------------------
def test_plugin_adds_a_command(fake, capsys):
    fake.install("cmd-dist", "1.0", {"cmd": "smckit_fixture_commands"})
    assert main(["hello", "--who", "plugin"]) == 3
    assert capsys.readouterr().out.strip() == "hello plugin"
    assert main(["plugins"]) == 0
    assert "commands: hello" in capsys.readouterr().out


def test_plugin_cannot_replace_a_builtin_command(fake, capsys, tmp_path):
    fake.install("bad-cmd", "1.0", {"bad": "smckit_fixture_bad_command"})
    assert main(["plugins", "--json", "--check"]) == 1  # the built-in command ran, not the plugin's (99)
    out = capsys.readouterr()
    (record,) = [r for r in json.loads(out.out)["plugins"] if r["name"] == "bad"]
    assert "could not add its smckit commands" in record["command_error"]
    assert "bad (bad-cmd 1.0) [commands failed]" in out.err
    assert main(["bench", "--dir", str(tmp_path)]) == 0  # other commands warn on stderr
    assert "smckit: warning: plugin bad (bad-cmd 1.0) could not add its smckit commands" in capsys.readouterr().err


# -- smckit demo --------------------------------------------------------------------------------------------
def test_demo_without_its_dependencies_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "smckit.examples.demo", None)  # makes the import fail
    assert main(["demo", "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "pip install -e '.[diffusion]'" in err and "smckit.examples.demo" in err


def test_demo_delegates_its_command_line(monkeypatch):
    calls = []
    demo = types.ModuleType("smckit.examples.demo", "A fake demo.")

    def command_line(argv, prog):
        calls.append((list(argv), prog))
        return 7

    demo.command_line = command_line
    monkeypatch.setitem(sys.modules, "smckit.examples.demo", demo)
    assert main(["demo", "--steps", "3"]) == 7
    assert calls == [(["--steps", "3"], "smckit demo")]


def _imports_of_examples(path: Path) -> list[int]:
    """Lines of ``path`` that import smckit.examples (import statements, or the name given to import_module)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value] if node.value.startswith("smckit.examples") and " " not in node.value else []
        if any(n == "smckit.examples" or n.startswith("smckit.examples.") for n in names):
            lines.append(node.lineno)
    return lines


def test_the_core_never_imports_the_examples():
    # smckit.examples is application code: only the demo command may load it (docstrings' :mod: roles are no
    # imports; a bare module name as a string constant is how import_module would load it, so it counts).
    package = Path(smckit.__file__).resolve().parent
    found = {
        str(path.relative_to(package)): lines
        for path in sorted(package.rglob("*.py"))
        if "examples" not in path.relative_to(package).parts and (lines := _imports_of_examples(path))
    }
    assert list(found) == ["cli.py"] and len(found["cli.py"]) == 1, found
    cli_source = (package / "cli.py").read_text(encoding="utf-8").splitlines()
    (line,) = found["cli.py"]
    enclosing = [text for text in cli_source[:line] if text.startswith("def ")][-1]
    assert enclosing.startswith("def _cmd_demo(")


# -- smckit bench -------------------------------------------------------------------------------------------
def test_bench_lists_and_runs_scripts(tmp_path, capsys):
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "echo_args.py").write_text(
        '"""Echo the arguments (test benchmark)."""\nimport sys\nprint(sys.argv[1:])\nsys.exit(3)\n'
    )
    (bench / "_helper.py").write_text("")
    assert main(["bench", "--dir", str(bench)]) == 0
    out = capsys.readouterr().out
    assert "echo_args  Echo the arguments (test benchmark)." in out and "_helper" not in out
    run = [sys.executable, "-m", "smckit", "bench", "--dir", str(bench), "echo_args.py", "--n", "5", "-x"]
    result = subprocess.run(run, capture_output=True, text=True, check=False)
    assert result.returncode == 3 and result.stdout.strip() == "['--n', '5', '-x']"
    assert main(["bench", "--dir", str(bench), "nope"]) == 2
    assert "available: echo_args" in capsys.readouterr().err


def test_bench_outside_a_source_checkout(tmp_path, capsys):
    assert main(["bench", "--dir", str(tmp_path / "missing")]) == 2
    assert "source checkout" in capsys.readouterr().err


def test_python_dash_m_smckit():
    out = subprocess.run([sys.executable, "-m", "smckit", "--version"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip().startswith("smckit ")
