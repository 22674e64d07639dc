"""benchmarks/gpu_check.py in its CPU --dry-run mode: every part runs at toy sizes and writes its figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import gpu_check

        yield gpu_check
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_dry_run_writes_every_figure(gpu_check, tmp_path):
    report = gpu_check.main(["--dry-run", "--no-tests", "--n", "2e4", "--steps", "2", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["dry_run"] is True and saved["card"]["device"] == "cpu"
    assert saved["copy_bandwidth"]["gb_per_s"] > 0
    schemes = {r["scheme"]: r for r in saved["resamplers"]}
    assert {"multinomial", "systematic"} <= set(schemes)
    assert all(r["seconds"] > 0 and 0 < r["fraction_of_copy_bandwidth"] for r in schemes.values() if "error" not in r)
    rows = report["steering"]["rows"]
    assert [r["resampler"] for r in rows] == list(gpu_check.STEERING_SCHEMES)
    for r in rows:
        # both guidance branches of 2 prompts x 4 particles, at the level each move reaches (the final level, the
        # clean sample, needs no network): 1 call over the 2 moves, the other one was the initial draw's
        assert r["network_evaluations"] == 2 * 2 * 4 * (2 - 1)
        parts = r["parts_s"]
        assert set(parts) == set(gpu_check.PARTS) and parts["network"] > 0 and parts["decode"] > 0
        assert sum(parts.values()) == pytest.approx(r["step_s"], rel=0.05)
    text = (tmp_path / "gpu_check.md").read_text()
    assert "engine + resampler" in text and "fraction of copy bandwidth" in text


def test_the_test_runner_reports_counts(gpu_check):
    out = gpu_check.run_tests(["--version"], timeout=60)
    assert out["returncode"] == 0 and out["counts"] == {}
