"""The frontier benchmark and its parts: the value-based baseline, the protocol, the finding, and the script itself
in its tiny configuration (a smoke test of every method)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

import smckit  # noqa: E402
from smckit.diffusion.value import SoftValueDecoding  # noqa: E402
from smckit.errors import InvalidArgumentError  # noqa: E402
from smckit.examples import frontier as F  # noqa: E402
from smckit.model import FeynmanKac  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_frontier.py"


# -- the value-based baseline ------------------------------------------------------------------------------------
class Candidates(FeynmanKac):
    """A toy model whose j-th copy of a particle gets the value j mod M: the kept value is the chosen candidate."""

    num_steps = 2
    lam = 1.0

    def __init__(self, m):
        self.m = m

    def initial(self, n, rng):
        return {"reward": torch.zeros(1, n, dtype=torch.float64)}

    def propose(self, t, state, rng):
        n = state["reward"].shape[1]
        return {"reward": (torch.arange(n, dtype=torch.float64) % self.m).reshape(1, n)}

    def log_potential(self, t, prev, state):
        return torch.zeros_like(state["reward"])


@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_soft_selection_keeps_candidate_j_with_probability_softmax_lam_v(lam):
    # With n = 4000 particles each frequency has binomial standard error sqrt(p (1 - p) / n) <= 0.008; 4 of them
    # is the tolerance (two-sided normal p = 6e-5 per frequency).
    m, n = 4, 4000
    result = smckit.run(SoftValueDecoding(Candidates(m), m, lam=lam), n, seed=0)
    kept = result.particles["reward"][0].to(torch.int64)
    freq = torch.bincount(kept, minlength=m).to(torch.float64) / n
    p = torch.softmax(lam * torch.arange(m, dtype=torch.float64), 0)
    assert torch.all((freq - p).abs() <= 4 * torch.sqrt(p * (1 - p) / n)), (freq, p)


def test_greedy_selection_keeps_the_best_candidate_and_no_resampling_happens():
    result = smckit.run(SoftValueDecoding(Candidates(5), 5, lam=math.inf), 50, seed=0)
    assert torch.all(result.particles["reward"] == 4.0)
    assert not result.history.resampled.any()


def test_value_based_spends_the_counted_denoiser_calls_and_raises_the_reward():
    task = F.MixtureTask()
    steps, n, m = 10, 20, 4
    plain = task.steering(1.0, 2, steps)
    value = task.steering(1.0, 2, steps)
    base = smckit.run(SoftValueDecoding(plain, 1), n, seed=3)
    best = smckit.run(SoftValueDecoding(value, m, lam=math.inf), n, seed=3)
    assert plain.denoiser_calls == 2 * n * steps
    assert value.denoiser_calls == 2 * n * (1 + (steps - 1) * m)
    # greedy selection among 4 candidates per step moves the whole population up the reward: a large margin
    r_base, r_best = (task.reward(res.particles["x"]).mean().item() for res in (base, best))
    assert r_best > r_base + 1.0
    assert F.matched_particles(64, steps, m) == round(64 * steps / (1 + (steps - 1) * m))


def test_value_based_refuses_bad_settings():
    task = F.MixtureTask()
    with pytest.raises(InvalidArgumentError, match="candidates"):
        SoftValueDecoding(task.steering(1.0, 1, 3), 0)
    with pytest.raises(InvalidArgumentError, match="lam"):
        SoftValueDecoding(task.steering(1.0, 1, 3), 2, lam=float("nan"))
    with pytest.raises(InvalidArgumentError, match="FeynmanKac"):
        SoftValueDecoding(object(), 2)
    assert getattr(SoftValueDecoding(task.steering(1.0, 1, 3), 2), "rebirth", None) is None


# -- the protocol and the finding ------------------------------------------------------------------------------------
def test_every_method_returns_keep_samples_at_equal_calls():
    task = F.MixtureTask()
    for name, method in F.METHODS.items():
        if name.startswith("fleming-viot"):
            pytest.importorskip("smckit_fvd")
        if name.startswith("vasr"):
            pytest.importorskip("smckit_vasr")
        strength = F.SWEEPS[method.sweep][1]
        out = F.sample(task, method, strength, particles=12, groups=3, steps=6, keep=5, seed=1)
        assert tuple(out.x.shape) == (3, 5, 2), name
        assert out.roots.shape == (3, 5) and out.roots.min() >= 0 and out.roots.max() < 12, name
        budget = 3 * 12 * 6
        # the value-based baseline matches the budget up to the rounding of its particle count
        assert (
            out.denoiser_calls == budget if name != "value-based" else abs(out.denoiser_calls - budget) < 0.2 * budget
        )


def test_the_finding_says_within_the_noise_or_which_way():
    def row(method, reward, diversity, se=0.1):
        return {
            "method": method,
            "label": method,
            "sweep": "lam",
            "strength": 1.0,
            "reward": reward,
            "reward_se": se,
            "diversity": diversity,
            "diversity_se": se,
        }

    close = F.finding([row("systematic", 1.0, 2.0), row("fleming-viot", 1.1, 1.9)])
    assert "reward within the noise" in close and "diversity within the noise" in close
    apart = F.finding([row("systematic", 1.0, 2.0), row("fleming-viot", 2.0, 1.0)])
    assert "more reward than systematic" in apart and "less diversity than systematic" in apart
    assert "No method ran" in F.finding([], lam=1.0)


def test_unknown_methods_and_no_seeds_are_refused():
    with pytest.raises(InvalidArgumentError, match="unknown frontier method"):
        F.run_frontier(F.MixtureTask(), ["multinomal"], particles=4, groups=1, steps=2, keep=2, seeds=[0])
    with pytest.raises(InvalidArgumentError, match="seed"):
        F.run_frontier(F.MixtureTask(), ["systematic"], particles=4, groups=1, steps=2, keep=2, seeds=[])


# -- the script, tiny: a smoke test of every method ----------------------------------------------------------------
def _bench():
    spec = importlib.util.spec_from_file_location("bench_frontier", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_frontier_script_runs_every_method_on_the_mixture(tmp_path):
    out = tmp_path / "frontier.md"
    assert _bench().main(["--quick", "--part", "mixture", "--figures", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    for method in F.METHODS.values():
        assert f"| {method.label} |" in text or method.name in text.split("Skipped")[-1], method.name
    assert "Finding:" in text and "Exact tilted target" in text
    assert (tmp_path / "frontier_mixture.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite(float(text.split("| systematic SMC | lam = 1 | ")[1].split(" ")[0]))


@pytest.mark.slow
def test_the_frontier_script_quick_end_to_end(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "frontier.md"
    assert _bench().main(["--quick", "--figures", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    assert "### Digits" in text and "### Wall time to a stated reward" in text
    assert (tmp_path / "frontier_digits.png").exists()
