"""`smckit demo`: the quick run end to end through the command line, and its pieces."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from smckit.cli import main as cli_main  # noqa: E402
from smckit.examples import demo  # noqa: E402
from smckit.errors import InvalidArgumentError  # noqa: E402


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
    assert set(rows) == set(demo.METHODS)
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
    assert payload["setup"]["classes"] == [7] * q["groups"]


def test_demo_help_documents_the_comparison(capsys):
    assert cli_main(["demo", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--device", "--particles", "--class", "--seed", "--quick", "--out"):
        assert option in text
    assert "denoiser calls" in text and "best-of-N" in text


def test_setup_validation():
    with pytest.raises(InvalidArgumentError):
        demo.Setup(classes=[10])
    with pytest.raises(InvalidArgumentError):
        demo.Setup(classes=[1], particles=4, keep=5)
    with pytest.raises(InvalidArgumentError):
        demo.Setup(classes=[1], policy="sometimes")
    setup = demo.Setup(classes=[1, 2], particles=8, keep=2, steps=5)
    assert setup.groups == 2 and setup.denoiser_calls == 80


def test_run_method_equal_budget_and_selection():
    from smckit.examples.digits import load_digits_model

    bundle = load_digits_model()
    setup = demo.Setup(classes=[2, 5], particles=6, keep=3, steps=4, seed=0)
    reference = demo.real_features(bundle.classifier, setup.classes)
    rows = {}
    for method in ("multinomial", "best-of-n"):
        res = demo.run_method(bundle, setup, method)
        assert res.samples.shape == (2, 3, 8, 8)
        assert res.rewards.shape == (2, 3) and res.features.shape[:2] == (2, 3)
        assert res.denoiser_calls == setup.denoiser_calls
        assert 0.0 <= res.model_s <= res.extra["loop_s"] <= res.wall_s
        rows[method] = demo.summarise(res, reference)
    # best-of-N keeps the top rewards of its particles: its kept rewards are sorted within each group
    res = demo.run_method(bundle, setup, "best-of-n")
    assert np.all(np.diff(res.rewards, axis=1) <= 1e-6)
    table = demo.format_table([*rows.values(), {"method": "fleming-viot", "skipped": True, "note": "x"}])
    assert table.count("\n") == 4 and "—" in table


def test_missing_plugin_row_is_skipped(monkeypatch, tmp_path, capsys):
    from smckit.errors import UnknownPluginError

    real = demo.run_method

    def fake(bundle, setup, method, *, bar=None):
        if method.startswith("fleming-viot"):
            raise UnknownPluginError("no resampler named 'fleming-viot'")
        return real(bundle, setup, method, bar=bar)

    monkeypatch.setattr(demo, "run_method", fake)
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(
        ["--particles", "4", "--groups", "2", "--keep", "2", "--steps", "3", "--no-progress", "--out", str(tmp_path)]
    )
    assert demo.main(args) == 0
    printed = capsys.readouterr().out
    assert "smckit-fvd" in printed and "not installed" in printed
    assert (tmp_path / "samples.png").exists()
