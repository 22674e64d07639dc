"""The plugin system: loading, registry rules, strict mode, environment switches, and a real plugin install.

Most tests run against fake plugins: modules in tests/plugin_fixtures/ named by fake installed distributions
(dist-info folders in a temporary directory, see smckit_fixture_support.py), with a fake built-in module in
place of smckit's own, so that they do not depend on the standard resamplers or on what else is installed.
The tests named ``test_real_*`` use smckit's real built-ins and the real example plugin.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import smckit
from smckit.errors import (
    AmbiguousPluginError,
    InvalidArgumentError,
    PluginConflictError,
    PluginError,
    PluginLoadError,
    UnknownPluginError,
)
from smckit.plugins import SMCKitPluginWarning, hookimpl, loader

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "plugin_fixtures"
FAKE_BUILTIN = "smckit_fixture_builtin"
STANDARD_RESAMPLERS = ("multinomial", "systematic", "stratified", "residual", "ssp", "killing")


pytestmark = pytest.mark.usefixtures("clean_plugins")  # the fixtures live in conftest.py


def _record(name):
    matches = [r for r in smckit.plugins.plugins() if r.name == name]
    assert len(matches) == 1, f"expected one plugin record named {name!r}, got {smckit.plugins.plugins()}"
    return matches[0]


# -- built-ins ----------------------------------------------------------------------------------------------
def test_builtin_names_resolve_bare_qualified_and_by_alias(fake):
    make = smckit.plugins.make_resampler
    assert make("builtin-scheme").origin == "builtin"
    assert make("builtin-scheme", scale=2.0).scale == 2.0
    for name in ("pysmckit:builtin-scheme", "smckit:builtin-scheme", "PySMCKit:bs", "bs"):
        assert type(make(name)) is type(make("builtin-scheme")), name
    entry = smckit.plugins.get_registry().resolve("resampler", "bs")
    assert (entry.builtin, entry.distribution, entry.qualified_name) == (True, "pysmckit", "pysmckit:builtin-scheme")
    assert entry.version == smckit.__version__
    assert entry.description == "A built-in scheme for the tests."  # first docstring line when none given
    record = _record(FAKE_BUILTIN)
    assert (record.builtin, record.status, record.provides) == (
        True,
        "loaded",
        {"resampler": ("builtin-scheme",), "potential": ("builtin-potential",)},
    )


def test_kinds_are_separate_namespaces(fake):
    assert smckit.plugins.make_potential("builtin-potential").origin == "builtin"
    with pytest.raises(UnknownPluginError):
        smckit.plugins.make_proposal("builtin-potential")
    with pytest.raises(InvalidArgumentError, match="unknown plugin kind"):
        smckit.plugins.available("sampler")


def test_optional_builtin_whose_dependency_is_missing_is_unavailable_not_failed(fake, monkeypatch):
    monkeypatch.setattr(loader, "BUILTIN_MODULES", (FAKE_BUILTIN, "smckit_fixture_no_such_module"))
    monkeypatch.setitem(loader.OPTIONAL_BUILTINS, "smckit_fixture_no_such_module", ("smckit_fixture_no_such_module",))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SMCKitPluginWarning)  # no warning for a missing optional built-in
        record = _record("smckit_fixture_no_such_module")
    assert (record.status, record.ok) == ("unavailable", True)
    assert "No module named" in record.error


def test_broken_builtin_is_reported_like_any_plugin(fake, monkeypatch):
    monkeypatch.setattr(loader, "BUILTIN_MODULES", (FAKE_BUILTIN, "smckit_fixture_broken_import"))
    with pytest.warns(SMCKitPluginWarning, match="broken on purpose"):
        record = _record("smckit_fixture_broken_import")
    assert (record.status, record.builtin) == ("failed", True)
    assert smckit.plugins.make_resampler("builtin-scheme").origin == "builtin"


# -- loading third-party plugins ----------------------------------------------------------------------------
def test_broken_plugins_are_reported_while_the_others_load(fake):
    fake.install("aaa-broken-import", "1.0", {"broken-import": "smckit_fixture_broken_import"})
    fake.install("bbb-broken-hook", "2.0", {"broken-hook": "smckit_fixture_broken_hook"})
    fake.install("ccc-missing", "3.0", {"missing": "smckit_fixture_does_not_exist"})
    fake.install("good-a", "1.5", {"a": "smckit_fixture_good_a"})
    with pytest.warns(SMCKitPluginWarning) as caught:
        records = {r.name: r for r in smckit.plugins.plugins()}
    messages = "\n".join(str(w.message) for w in caught)
    for needle in (
        "broken-import (aaa-broken-import 1.0)",
        "broken on purpose",
        "broken-hook (bbb-broken-hook 2.0)",
        "hook failure on purpose",
        "missing (ccc-missing 3.0)",
        "smckit_fixture_does_not_exist",
    ):
        assert needle in messages
    assert records["broken-import"].status == "failed"
    assert records["broken-import"].error.startswith("ImportError: this smckit test plugin is broken on purpose")
    assert records["broken-hook"].status == "failed"
    assert records["broken-hook"].error == "RuntimeError: hook failure on purpose"
    assert records["missing"].status == "failed" and records["missing"].error.startswith("ModuleNotFoundError")
    assert (records["a"].status, records["a"].distribution, records["a"].version) == ("loaded", "good-a", "1.5")
    assert records["a"].provides == {"resampler": ("dup", "only-a"), "potential": ("pot-a",), "proposal": ("prop-a",)}
    # The good plugin works; nothing of the plugin whose hook raised was kept.
    assert smckit.plugins.make_resampler("only-a", level=3).options == {"level": 3}
    assert smckit.plugins.make_resampler("a-alias").origin == "a"
    with pytest.raises(UnknownPluginError):
        smckit.plugins.make_resampler("half-registered")
    assert [r.name for r in smckit.plugins.get_registry().failures] == ["broken-import", "broken-hook", "missing"]


def test_duplicate_bare_name_is_ambiguous_and_qualified_names_work(fake):
    fake.install("good-a", "1.0", {"a": "smckit_fixture_good_a"})
    fake.install("Good_B", "1.0", {"b": "smckit_fixture_good_b"})
    with pytest.warns(SMCKitPluginWarning, match="resampler name 'dup' is claimed by 2 plugins"):
        smckit.plugins.get_registry()
    with pytest.raises(AmbiguousPluginError) as err:
        smckit.plugins.make_resampler("dup")
    assert "'good-a:dup'" in str(err.value) and "'Good_B:dup'" in str(err.value)
    make = smckit.plugins.make_resampler
    assert make("good-a:dup").origin == "a"
    assert make("Good_B:dup").origin == "b"
    assert make("good-b:dup").origin == "b"  # distribution names compare in normal form (PEP 503)
    assert make("only-b").origin == "b"  # unshared names stay usable bare
    resamplers = smckit.plugins.available("resampler")
    assert resamplers == sorted(["builtin-scheme", "good-a:dup", "Good_B:dup", "only-a", "only-b"])
    # An ambiguity is a conflict of both claimants, whichever loaded first; nothing else is affected.
    records = {r.name: r for r in smckit.plugins.plugins()}
    statuses = [records[name].status for name in ("a", "b", FAKE_BUILTIN)]
    assert statuses == ["conflict", "conflict", "loaded"]
    assert records["a"].conflicts == records["b"].conflicts
    (message,) = records["a"].conflicts
    assert "('Good_B:dup', 'good-a:dup')" in message and "AmbiguousPluginError" in message  # loading order
    conflicts = smckit.plugins.get_registry().conflicts
    assert [(c.kind, c.name, c.plugin, c.distribution, c.reason, c.owner) for c in conflicts] == [
        ("resampler", "dup", "b", "Good_B", "ambiguous", "good-a:dup"),
        ("resampler", "dup", "a", "good-a", "ambiguous", "Good_B:dup"),
    ]


def test_an_alias_that_another_plugin_uses_as_a_name_is_ambiguous_until_one_is_removed(fake):
    fake.install("good-a", "1.0", {"a": "smckit_fixture_good_a"})  # registers "only-a" with the alias "a-alias"

    class Clash:
        @hookimpl
        def smckit_register_resamplers(self, register):
            register("a-alias", lambda: "clash")

    with pytest.warns(SMCKitPluginWarning, match="'a-alias' is claimed by 2 plugins"):
        record = smckit.plugins.register_plugin(Clash(), name="clash")
    assert record.status == "conflict" and _record("a").status == "conflict"
    with pytest.raises(AmbiguousPluginError, match="'good-a:only-a', 'clash:a-alias'"):
        smckit.plugins.make_resampler("a-alias")
    smckit.plugins.unregister_plugin("clash")  # the ambiguity, derived from what is registered, goes with it
    assert _record("a").status == "loaded" and _record("a").conflicts == ()
    assert smckit.plugins.make_resampler("a-alias").origin == "a"


def test_strict_mode_turns_an_ambiguous_name_into_an_error(fake, monkeypatch):
    fake.install("good-a", "1.0", {"a": "smckit_fixture_good_a"})
    fake.install("good-b", "1.0", {"b": "smckit_fixture_good_b"})
    monkeypatch.setenv(loader.ENV_STRICT, "1")
    with pytest.raises(PluginConflictError, match="resampler name 'dup' is claimed by 2 plugins"):
        smckit.plugins.get_registry()


def test_records_list_aliases(fake):
    fake.install("good-a", "1.0", {"a": "smckit_fixture_good_a"})
    record = _record("a")
    assert record.provides["resampler"] == ("dup", "only-a")
    assert record.aliases == {"resampler": {"only-a": ("a-alias",)}}
    assert record.as_dict()["aliases"] == {"resampler": {"only-a": ["a-alias"]}}


def test_third_party_cannot_replace_a_builtin(fake):
    fake.install("shadow-dist", "0.3", {"shadow": "smckit_fixture_shadow"})
    with pytest.warns(SMCKitPluginWarning, match="belongs to smckit's built-in") as caught:
        registry = smckit.plugins.get_registry()
    assert len(caught) == 2  # the name "builtin-scheme" and the alias "bs"
    # The bare name and the alias keep meaning the built-in...
    assert smckit.plugins.make_resampler("builtin-scheme").origin == "builtin"
    assert smckit.plugins.make_resampler("bs").origin == "builtin"
    # ...the plugin's registrations stay reachable under its qualified names only.
    assert smckit.plugins.make_resampler("shadow-dist:builtin-scheme").origin == "shadow"
    assert smckit.plugins.make_resampler("shadow-dist:bs").origin == "shadow"
    assert smckit.plugins.make_resampler("shadow-own").origin == "shadow"
    assert "shadow-dist:builtin-scheme" in smckit.plugins.available("resampler")
    record = _record("shadow")
    assert (record.status, record.ok) == ("conflict", False)
    assert [(c.name, c.reason, c.owner) for c in registry.conflicts] == [
        ("builtin-scheme", "builtin", "pysmckit:builtin-scheme"),
        ("bs", "builtin", "pysmckit:builtin-scheme"),
    ]


def test_strict_mode_turns_a_builtin_conflict_into_an_error(fake, monkeypatch):
    fake.install("shadow-dist", "0.3", {"shadow": "smckit_fixture_shadow"})
    monkeypatch.setenv(loader.ENV_STRICT, "1")
    with pytest.raises(PluginConflictError, match="builtin-scheme"):
        smckit.plugins.get_registry()


@pytest.mark.parametrize("how", ["env", "argument"])
def test_strict_mode_raises_on_a_broken_plugin(fake, monkeypatch, how):
    fake.install("good-a", "1.0", {"a": "smckit_fixture_good_a"})
    fake.install("zzz-broken", "1.0", {"broken": "smckit_fixture_broken_hook"})
    if how == "env":
        monkeypatch.setenv(loader.ENV_STRICT, "yes")
        load = smckit.plugins.get_registry
    else:

        def load():
            return smckit.plugins.load(strict=True)

    with pytest.raises(PluginLoadError, match="hook failure on purpose") as err:
        load()
    assert err.value.plugin == "broken"
    assert isinstance(err.value.cause, RuntimeError)
    assert loader._state is None  # nothing half-loaded is cached: the next use tries again


def test_unknown_name_lists_available_names_close_matches_and_failures(fake):
    fake.install("good-a", "1.0", {"a": "smckit_fixture_good_a"})
    fake.install("broken-dist", "0.9", {"broken": "smckit_fixture_broken_import"})
    with pytest.warns(SMCKitPluginWarning):
        smckit.plugins.get_registry()
    with pytest.raises(UnknownPluginError) as err:
        smckit.plugins.make_resampler("only_a")
    message = str(err.value)
    assert "Available resamplers: builtin-scheme, dup, only-a." in message
    assert "Did you mean 'only-a'" in message
    assert "broken (broken-dist 0.9) failed to load: ImportError: this smckit test plugin is broken" in message
    with pytest.raises(UnknownPluginError, match="no resampler is registered as 'good-a:nope'"):
        smckit.plugins.make_resampler("good-a:nope")
    with pytest.raises(UnknownPluginError):
        smckit.plugins.make_resampler("other-dist:dup")


def test_autoload_switch_skips_entry_points_but_not_builtins(fake, monkeypatch):
    fake.install("good-a", "1.0", {"a": "smckit_fixture_good_a"})
    fake.install("broken-dist", "1.0", {"broken": "smckit_fixture_broken_import"})
    monkeypatch.setenv(loader.ENV_DISABLE_AUTOLOAD, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SMCKitPluginWarning)  # the broken plugin is not even imported
        records = {r.name: r for r in smckit.plugins.plugins()}
    assert records[FAKE_BUILTIN].status == "loaded"
    assert (records["a"].status, records["broken"].status) == ("disabled", "disabled")
    assert smckit.plugins.available("resampler") == ["builtin-scheme"]
    with pytest.raises(UnknownPluginError, match="autoload is off"):
        smckit.plugins.make_resampler("only-a")
    # The switch is read at load time: after a reset the plugins load again.
    monkeypatch.setenv(loader.ENV_DISABLE_AUTOLOAD, "0")
    smckit.plugins.reset()
    with pytest.warns(SMCKitPluginWarning):
        assert smckit.plugins.make_resampler("only-a").origin == "a"


def test_loading_is_lazy_and_cached(fake, monkeypatch):
    fake.install("good-a", "1.0", {"a": "smckit_fixture_good_a"})
    calls = []
    discover = fake.entry_points

    def counting():
        calls.append(1)
        return discover()

    monkeypatch.setattr(loader, "_entry_points", counting)
    assert loader._state is None and calls == []
    smckit.plugins.make_resampler("only-a")
    smckit.plugins.make_potential("pot-a")
    smckit.plugins.available()
    assert len(calls) == 1
    smckit.plugins.reset()
    smckit.plugins.make_resampler("only-a")
    assert len(calls) == 2


def test_invalid_registrations_fail_the_plugin_with_a_clear_message(fake):
    fake.install("bad-name", "1.0", {"bad": "smckit_fixture_bad_name"})
    fake.install("reentrant", "1.0", {"re": "smckit_fixture_reentrant"})
    with pytest.warns(SMCKitPluginWarning):
        records = {r.name: r for r in smckit.plugins.plugins()}
    assert records["bad"].status == "failed" and "without spaces or ':'" in records["bad"].error
    assert records["re"].status == "failed" and "while plugins were being loaded" in records["re"].error


def test_unknown_hook_names_are_noted(fake):
    fake.install("typo-dist", "1.0", {"typo": "smckit_fixture_typo"})
    with pytest.warns(SMCKitPluginWarning, match="smckit_register_resampler"):
        record = _record("typo")
    assert record.status == "loaded" and record.provides == {}
    assert any("unknown hook" in note for note in record.notes)


def test_wrong_options_name_the_factory_signature(fake):
    with pytest.raises(InvalidArgumentError, match=r"does not accept the options \['sclae'\].*scale"):
        smckit.plugins.make_resampler("builtin-scheme", sclae=2.0)


# -- programmatic registration ------------------------------------------------------------------------------
class NotebookPlugin:
    """A plugin defined in a notebook: an object with hook implementations."""

    @hookimpl
    def smckit_register_resamplers(self, register):
        register("notebook-scheme", lambda: "from the notebook", aliases=("nb",))

    @hookimpl
    def smckit_register_proposals(self, register):
        register("builtin-scheme", lambda: "a proposal, not a resampler: no conflict")


def test_register_plugin_by_hand(fake):
    record = smckit.plugins.register_plugin(NotebookPlugin(), name="mine", version="0.0")
    assert (record.name, record.distribution, record.status) == ("mine", "mine", "loaded")
    assert smckit.plugins.make_resampler("nb") == "from the notebook"
    assert smckit.plugins.make_resampler("mine:notebook-scheme") == "from the notebook"
    assert smckit.plugins.make_proposal("builtin-scheme").startswith("a proposal")
    with pytest.raises(InvalidArgumentError, match="already registered"):
        smckit.plugins.register_plugin(NotebookPlugin(), name="mine")
    smckit.plugins.unregister_plugin("mine")
    with pytest.raises(UnknownPluginError):
        smckit.plugins.make_resampler("nb")
    assert all(r.name != "mine" for r in smckit.plugins.plugins())
    smckit.plugins.register_plugin(NotebookPlugin(), name="mine")  # the name is free again
    # A plugin registered by hand survives a reload of the entry points, but not a reset.
    smckit.plugins.load()
    assert smckit.plugins.make_resampler("nb") == "from the notebook"
    smckit.plugins.reset()
    with pytest.raises(UnknownPluginError):
        smckit.plugins.make_resampler("nb")


def test_register_plugin_raises_on_a_broken_plugin_and_warns_on_a_conflict(fake):
    class Broken:
        @hookimpl
        def smckit_register_resamplers(self, register):
            raise ValueError("nope")

    class Shadow:
        @hookimpl
        def smckit_register_resamplers(self, register):
            register("builtin-scheme", lambda: "shadow")

    with pytest.raises(PluginLoadError, match="nope"):
        smckit.plugins.register_plugin(Broken())
    with pytest.warns(SMCKitPluginWarning, match="belongs to smckit's built-in"):
        smckit.plugins.register_plugin(Shadow())
    assert smckit.plugins.make_resampler("builtin-scheme").origin == "builtin"
    assert smckit.plugins.make_resampler("Shadow:builtin-scheme") == "shadow"


def test_a_name_registered_twice_by_one_distribution_keeps_the_first(fake):
    class Twice:
        @hookimpl
        def smckit_register_resamplers(self, register):
            register("twice", lambda: "first")
            register("twice", lambda: "second")
            register("other", lambda: "other", aliases=("twice",))

    with pytest.warns(SMCKitPluginWarning, match="registered the resampler name 'twice' twice"):
        record = smckit.plugins.register_plugin(Twice(), name="twice-plugin")
    assert record.status == "conflict" and record.provides == {"resampler": ("twice", "other")}
    assert smckit.plugins.make_resampler("twice") == "first"
    assert smckit.plugins.make_resampler("twice-plugin:twice") == "first"
    assert smckit.plugins.get_registry().resolve("resampler", "other").aliases == ()


def test_plugin_errors_share_one_base_class():
    for cls in (UnknownPluginError, AmbiguousPluginError, PluginConflictError, PluginLoadError):
        assert issubclass(cls, PluginError) and issubclass(cls, smckit.SMCError)
    assert issubclass(SMCKitPluginWarning, UserWarning)


# -- the real built-ins -------------------------------------------------------------------------------------
def test_real_standard_resamplers_are_registered_as_builtins():
    """Needs smckit/resamplers/__init__.py to register the standard schemes through smckit_register_resamplers."""
    registry = smckit.plugins.load(autoload=False)
    record = next(r for r in registry.records if r.name == "smckit.resamplers")
    assert record.status == "loaded", f"smckit.resamplers did not load: {record.error}"
    provided = set(record.provides.get("resampler", ()))
    missing = [name for name in STANDARD_RESAMPLERS if name not in provided]
    assert not missing, f"smckit.resamplers registers {sorted(provided)}, missing {missing}"
    for name in STANDARD_RESAMPLERS:
        entry = registry.resolve("resampler", name)
        assert entry.builtin and entry.distribution == "pysmckit"
        assert registry.resolve("resampler", f"pysmckit:{name}") is entry
        assert registry.resolve("resampler", f"smckit:{name}") is entry
        assert callable(smckit.plugins.make_resampler(name))


def test_real_import_and_first_lookup_do_not_import_torch():
    """numpy-only users never pay for torch: not at ``import smckit``, not when the registry first loads.

    A failure of the second assertion means a registration module (smckit.resamplers or
    smckit.diffusion.registry) imports torch at module level; import it inside the factories instead.
    """
    code = (
        "import sys, smckit\n"
        "at_import = 'torch' in sys.modules\n"
        "import smckit.plugins as p\n"
        "p.get_registry()\n"
        "print(at_import, 'torch' in sys.modules, [r.name for r in p.plugins() if 'torch' in sys.modules])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMCKIT_")}
    env[loader.ENV_DISABLE_AUTOLOAD] = "1"  # only smckit's own registration modules
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    at_import, after_load, _ = out.stdout.split(" ", 2)
    assert at_import == "False", "import smckit imports torch"
    assert after_load == "False", f"loading smckit's built-in plugins imports torch: {out.stdout}"


# -- the example plugin, installed for real ------------------------------------------------------------------
EXAMPLE = ROOT / "plugins" / "smckit-example"


@pytest.fixture(scope="session")
def example_site(tmp_path_factory):
    """plugins/smckit-example, pip-installed (no deps) into a temporary folder; returns that folder.

    The source is copied first so that build artefacts stay out of the repository. ``--target`` keeps the
    environment unchanged: subprocesses see the plugin through PYTHONPATH. Without build isolation pip needs
    setuptools (and, for setuptools < 70.1, wheel) in this environment; if that fails, pip is retried with
    isolation (which downloads setuptools).
    """
    work = tmp_path_factory.mktemp("smckit-example")
    source = work / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*"))
    site = work / "site"
    base = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--disable-pip-version-check"]
    attempts = []
    for isolation in (["--no-build-isolation", "--no-index"], []):
        out = subprocess.run([*base, *isolation, "--target", str(site), str(source)], capture_output=True, text=True)
        attempts.append(f"$ pip install {' '.join(isolation)}\n{out.stdout}\n{out.stderr}")
        if out.returncode == 0:
            return site
    pytest.fail("pip could not install plugins/smckit-example:\n" + "\n".join(attempts))


def _run_with(site, code_or_args, *, module=False):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMCKIT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    args = ["-m", *code_or_args] if module else ["-c", code_or_args]
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=site)


@pytest.mark.slow
def test_real_example_plugin_installs_and_is_listed(example_site):
    out = _run_with(example_site, ["smckit", "plugins", "--json"], module=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    (record,) = [r for r in report["plugins"] if r["distribution"] == "smckit-example"]
    assert record["name"] == "example" and record["version"] == "0.1.0" and record["status"] == "loaded"
    assert record["module"] == "smckit_example.plugin"
    assert record["provides"] == {"resampler": ["shuffled-systematic"]}
    assert "shuffled-systematic" in report["available"]["resampler"]


@pytest.mark.slow
def test_real_example_plugin_runs_by_name_in_smckit_run(example_site):
    # A linear Gaussian model with the Kalman filter's exact log-likelihood as a sanity reference: the SMC
    # estimate has a standard deviation of about 0.42 for n = 1000, T = 30 (measured over 40 seeds), so a
    # bound of 1.7 is 4 sd. The exact check is that each name gives the same run as the class itself.
    code = """
import json, numpy as np, smckit
from smckit.models import Bootstrap, LinearGaussian, kalman_filter
from smckit_example import ShuffledSystematic
ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
_, y = ssm.simulate(30, seed=1)
exact = float(kalman_filter(ssm, y).log_likelihood)
out = {}
for name in ("shuffled-systematic", "smckit-example:shuffled-systematic", "shuffled", "direct"):
    scheme = ShuffledSystematic() if name == "direct" else name
    result = smckit.run(Bootstrap(ssm, y), 1000, resampler=scheme, policy=smckit.Always(), seed=0)
    out[name] = [float(result.log_evidence) - exact, int(np.sum(np.asarray(result.history.resampled)))]
print(json.dumps(out))
"""
    out = _run_with(example_site, code)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for name, (error, resamplings) in results.items():
        assert abs(error) < 1.7, f"{name}: log-evidence off by {error}"
        assert resamplings == 29, f"{name}: the resampler ran {resamplings} times, expected 29 (Always, T = 30)"
    assert len({tuple(v) for v in results.values()}) == 1, f"the names do not all mean the example's scheme: {results}"


@pytest.mark.slow
def test_real_example_plugin_passes_its_own_tests(example_site, tmp_path):
    """Runs plugins/smckit-example/tests against the installed copy (needs smckit.testing.check_resampler)."""
    tests = tmp_path / "tests"
    shutil.copytree(EXAMPLE / "tests", tests, ignore=shutil.ignore_patterns("__pycache__"))
    out = _run_with(example_site, ["pytest", "-q", "-p", "no:cacheprovider", str(tests)], module=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
