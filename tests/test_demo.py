"""`smckit demo`: the quick run end to end through the command line, its option checks, and its pieces."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from smckit.cli import main as cli_main  # noqa: E402
from smckit.errors import InvalidArgumentError, UnknownPluginError  # noqa: E402
from smckit.examples import comparison, demo  # noqa: E402


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code = cli_main(["demo", "--quick", "--no-progress", "--out", str(out), "--class", "7", "--seed", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert (out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "table.md").read_text()
    assert table.strip() in printed
    payload = json.loads((out / "table.json").read_text())
    rows = {row["method"]: row for row in payload["rows"]}
    assert set(rows) == set(comparison.METHODS)
    q = demo.QUICK
    calls = q["groups"] * q["particles"] * q["steps"]
    for method, row in rows.items():
        if row.get("skipped"):  # only Fleming-Viot may be skipped, when its plugin is absent
            assert method.startswith("fleming-viot") and "smckit-fvd" in row["note"]
            continue
        assert row["denoiser_calls"] == calls, method  # the equal-budget promise
        assert -30.0 < row["mean_reward"] <= 0.0
        assert 0.0 <= row["target_share"] <= 1.0
        assert 1.0 <= row["lineages"] <= q["particles"]
        assert np.isfinite(row["fid"]) and row["fid"] >= 0.0
    assert rows["best-of-n"]["lineages"] == q["particles"]
    assert rows["systematic"]["mean_reward_se"] >= 0.0  # standard errors over the groups
    # the small frontier: its figure beside the sample grid, and one sentence on what it shows
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert payload["frontier"]["finding"] in printed and "equal denoiser calls" in payload["frontier"]["finding"]
    assert "Frontier" in printed and "±" in (out / "frontier.md").read_text()
    assert payload["setup"]["classes"] == [7] * q["groups"]
    assert demo.TIMING in printed and demo.TIMING in table and payload["timing"] == demo.TIMING


def test_demo_help_documents_the_comparison(capsys):
    assert cli_main(["demo", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--device", "--particles", "--class", "--seed", "--quick", "--out"):
        assert option in text
    assert "denoiser calls" in text and "best-of-N" in text


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"classes": [10]}, "Setup.classes"),
        ({"classes": []}, "Setup.classes"),
        ({"classes": [1], "particles": 4, "keep": 5}, "Setup.keep"),
        ({"classes": [1], "steps": 0}, "Setup.steps"),
        ({"classes": [1], "policy": "sometimes"}, "Setup.policy"),
        ({"classes": [1], "fv_noise": 2.0}, "Setup.fv_noise"),
        ({"classes": [1], "fv_absorption": 1.0}, "Setup.fv_absorption"),
        ({"classes": [1], "seed": -1}, "Setup.seed"),
        ({"classes": [1], "lam": float("nan")}, "Setup.lam"),
    ],
)
def test_setup_validation(fields, named):
    with pytest.raises(InvalidArgumentError, match=named.replace(".", r"\.")):
        comparison.Setup(**fields)


def test_setup_sizes():
    setup = comparison.Setup(classes=(1, 2), particles=8, keep=2, steps=5)
    assert setup.classes == [1, 2] and setup.groups == 2 and setup.denoiser_calls == 80


# -- the command line is checked before any work ----------------------------------------------------------
# Each case: the arguments, and the option the message must name. The same values go through the Python entry
# point (demo.main) with argparse left out, where the same checks raise InvalidArgumentError.
BAD_OPTIONS = {
    "class out of 0..9": (["--class", "12"], "--class", {"digit": 12}),
    "zero steps": (["--steps", "0"], "--steps", {"steps": 0}),
    "steps beyond the schedule": (["--steps", "5000"], "--steps", {"steps": 5000}),
    "fractional steps": (["--steps", "2.5"], "--steps", {"steps": 2.5}),
    "negative threads": (["--threads", "-3"], "--threads", {"threads": -3}),
    "rebirth noise above 1": (["--fv-noise", "2"], "--fv-noise", {"fv_noise": 2.0}),
    "absorption of 1": (["--fv-absorption", "1"], "--fv-absorption", {"fv_absorption": 1.0}),
    "misspelt method": (["--methods", "multinomal"], "--methods", {"methods": "multinomal"}),
    "no method": (["--methods", ","], "--methods", {"methods": ","}),
    "method twice": (["--methods", "systematic,systematic"], "--methods", {"methods": "systematic,systematic"}),
    "keep above particles": (["--quick", "--keep", "20"], "--keep", {"quick": True, "keep": 20}),
    "keep of 0": (["--keep", "0"], "--keep", {"keep": 0}),
    "zero particles": (["--particles", "0"], "--particles", {"particles": 0}),
    "zero groups": (["--groups", "0"], "--groups", {"groups": 0}),
    "negative seed": (["--seed", "-1"], "--seed", {"seed": -1}),
    "infinite lam": (["--lam", "inf"], "--lam", {"lam": float("inf")}),
    "not a device": (["--device", "gpu"], "--device", {"device": "gpu"}),
}


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the demo starts working (loads the model or runs) before its options are checked."""

    def fail(*args, **kwargs):
        raise AssertionError("the demo started before its options were checked")

    monkeypatch.setattr(demo, "run", fail)
    monkeypatch.setattr(demo, "_run", fail)


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_option_is_a_usage_error(case, capsys, no_work):
    argv, option, _ = BAD_OPTIONS[case]
    assert cli_main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: smckit demo")
    assert "smckit demo: error:" in err and option in err.splitlines()[-1]
    assert "Traceback" not in err


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_option_in_the_python_entry_point(case, no_work):
    _, option, values = BAD_OPTIONS[case]
    args = demo.build_parser().parse_args([])
    for key, value in values.items():
        setattr(args, key, value)
    with pytest.raises(InvalidArgumentError, match=option):
        demo.main(args)


def test_unknown_method_lists_the_valid_ones(capsys, no_work):
    assert cli_main(["demo", "--methods", "systematic,multinomal"]) == 2
    message = capsys.readouterr().err.splitlines()[-1]
    assert "'multinomal'" in message
    for method in (*comparison.METHODS, "stratified"):  # the demo's methods and the other registered resamplers
        assert method in message


def test_cuda_without_cuda_is_refused_up_front(monkeypatch, capsys, no_work):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli_main(["demo", "--device", "cuda"]) == 2
    message = capsys.readouterr().err.splitlines()[-1]
    assert "--device cuda" in message and "CUDA is not available" in message and "--device cpu" in message
    args = demo.build_parser().parse_args(["--device", "cuda:0"])
    with pytest.raises(InvalidArgumentError, match="--device cuda:0: CUDA is not available"):
        demo.main(args)


def test_out_that_is_a_file_is_refused(tmp_path, capsys, no_work):
    path = tmp_path / "results"
    path.write_text("")
    assert cli_main(["demo", "--out", str(path)]) == 2
    assert "--out" in capsys.readouterr().err.splitlines()[-1]


def test_unknown_attribute_in_the_python_entry_point(no_work):
    with pytest.raises(InvalidArgumentError, match="'step'"):
        demo.main(argparse.Namespace(step=3))


def test_good_options(no_work):
    options = demo.options_from_args(argparse.Namespace(quick=True, particles=2, methods=["stratified", "best-of-n"]))
    assert options.setup.keep == 2  # the default keep (4 with --quick) lowered to the 2 particles given
    assert options.methods == ("stratified", "best-of-n")
    assert (options.setup.steps, options.setup.groups, options.threads) == (20, 4, 1)
    assert options.frontier and not demo.options_from_args(argparse.Namespace(no_frontier=True)).frontier
    full = demo.options_from_args(demo.build_parser().parse_args(["--class", "7", "--keep", "64"]))
    assert full.setup.classes == [7] * 8 and full.setup.keep == 64 and full.methods == comparison.METHODS


# -- the wall-time column does not charge the first method with the warm-up --------------------------------
def test_every_method_is_warmed_up_before_any_is_timed(monkeypatch, tmp_path, capsys):
    events = []

    def fake_warm_up(bundle, setup, methods):
        events.append(("warm", tuple(methods)))

    def fake_run(bundle, setup, method, *, bar=None):
        events.append(("timed", method))
        raise UnknownPluginError("not run in this test")

    monkeypatch.setattr(demo, "warm_up", fake_warm_up)
    monkeypatch.setattr(demo, "run_method", fake_run)

    def fake_frontier(bundle, setup, out):
        events.append(("frontier", setup.lam))
        return out / "frontier.png", "frontier table", "one sentence"

    monkeypatch.setattr(demo, "run_frontier", fake_frontier)
    argv = ["--quick", "--methods", "systematic,best-of-n", "--no-progress", "--out", str(tmp_path)]
    assert demo.command_line(argv) == 0
    assert events == [
        ("warm", ("systematic", "best-of-n")),
        ("timed", "systematic"),
        ("timed", "best-of-n"),
        ("frontier", 1.0),
    ]
    events.clear()
    assert demo.command_line([*argv, "--no-frontier"]) == 0
    assert ("frontier", 1.0) not in events
    assert demo.TIMING in capsys.readouterr().out


def test_warm_up_runs_each_method_briefly_and_passes_over_missing_plugins(monkeypatch):
    calls = []

    def fake_run(bundle, setup, method, *, bar=None):
        calls.append((method, setup.steps, setup.policy, setup.particles, setup.groups))
        if method == "fleming-viot":
            raise UnknownPluginError("no resampler named 'fleming-viot'")

    monkeypatch.setattr(comparison, "run_method", fake_run)
    setup = comparison.Setup(classes=[3, 3], particles=16, keep=4, steps=20)
    comparison.warm_up(None, setup, ["fleming-viot", "systematic"])
    # every resampler runs at least once (policy "always"), on arrays of the timed runs' shapes
    assert calls == [("fleming-viot", 2, "always", 16, 2), ("systematic", 2, "always", 16, 2)]


def test_run_method_equal_budget_and_selection():
    from smckit.examples.digits import load_digits_model

    bundle = load_digits_model()
    setup = comparison.Setup(classes=[2, 5], particles=6, keep=3, steps=4, seed=0)
    reference = comparison.real_features(bundle.classifier, setup.classes)
    rows = {}
    for method in ("multinomial", "best-of-n"):
        res = comparison.run_method(bundle, setup, method)
        assert res.samples.shape == (2, 3, 8, 8)
        assert res.rewards.shape == (2, 3) and res.features.shape[:2] == (2, 3)
        assert res.denoiser_calls == setup.denoiser_calls
        assert 0.0 <= res.model_s <= res.extra["loop_s"] <= res.wall_s
        rows[method] = comparison.summarise(res, reference)
    # best-of-N keeps the top rewards of its particles: its kept rewards are sorted within each group
    res = comparison.run_method(bundle, setup, "best-of-n")
    assert np.all(np.diff(res.rewards, axis=1) <= 1e-6)
    table = demo.format_table([*rows.values(), {"method": "fleming-viot", "skipped": True, "note": "x"}])
    assert table.count("\n") == 4 and "—" in table


def test_missing_plugin_row_is_skipped(monkeypatch, tmp_path, capsys):
    real = demo.run_method

    def fake(bundle, setup, method, *, bar=None):
        if method.startswith("fleming-viot"):
            raise UnknownPluginError("no resampler named 'fleming-viot'")
        return real(bundle, setup, method, bar=bar)

    monkeypatch.setattr(demo, "run_method", fake)
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(
        [
            *("--particles", "4", "--groups", "2", "--keep", "2", "--steps", "3"),
            "--no-progress",
            "--no-frontier",
            "--out",
            str(tmp_path),
        ]
    )
    assert demo.main(args) == 0
    printed = capsys.readouterr().out
    assert "smckit-fvd" in printed and "not installed" in printed
    assert (tmp_path / "samples.png").exists()


def test_frontier_sweeps_centre_on_the_demos_lam():
    assert demo.frontier_sweeps(2.0)["lam"] == (1.0, 2.0, 4.0)
    assert demo.frontier_sweeps(0.0)["lam"] == (0.5, 1.0, 2.0)  # no tilt given: the default strengths
    assert set(demo.frontier_sweeps(1.0)) == {"lam", "absorption", "top"}


def test_table_cells_show_standard_errors_when_there_are_some():
    row = {"method": "systematic", "mean_reward": -0.5, "mean_reward_se": 0.125, "fid": 3.0, "fid_se": float("nan")}
    table = demo.format_table([row], [("method", "m", "{}"), ("mean_reward", "r", "{:.3f}"), ("fid", "f", "{:.1f}")])
    assert "-0.500 ± 0.125" in table and "| 3.0 |" in table
