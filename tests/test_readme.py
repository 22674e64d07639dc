"""The README's code runs as written and says what it claims."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_particle_filter_example_runs(capsys, tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # the example saves its plot in the working folder
    blocks = python_blocks()
    assert blocks, "the README lost its particle filter example"
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 15, "the README promises a particle filter in 15 lines"
    exec(compile(code, str(README), "exec"), {})
    out = capsys.readouterr().out
    smc, kalman = (float(v) for v in re.search(r"SMC (\S+) Kalman (\S+)", out).groups())
    # 1000 particles, T = 100: over seeds 0-39 the error of the log-likelihood estimate has mean -0.19 and
    # standard deviation 0.70 on this data set (measured), so 3.0 is more than 4 standard deviations.
    assert abs(smc - kalman) < 3.0
    assert (tmp_path / "ess.png").stat().st_size > 0, "the README's plotting line saves nothing"


def test_readme_quick_start_names_real_commands():
    text = README.read_text()
    assert "smckit demo" in text and "python -m pytest" in text
    assert (README.parent / ".ci" / "constraints.txt").exists()
