"""Tests of smckit.diagnostics: compare_resamplers and distinct_lineages."""

from __future__ import annotations

import numpy as np
import pytest

import smckit
from smckit import InvalidArgumentError
from smckit.diagnostics import Comparison, compare_resamplers, distinct_lineages


class Walk(smckit.FeynmanKac):
    """A Gaussian random walk weighted towards 1: batch of 2 rows, 8 steps."""

    num_steps = 8

    def initial(self, n, rng):
        return rng.normal((2, n))

    def propose(self, t, state, rng):
        return state + 0.5 * rng.normal(state.shape)

    def log_potential(self, t, prev, state):
        return -0.5 * (state - 1.0) ** 2


class Counting:
    """A resampler object that counts resets and calls (wraps systematic)."""

    name = "counting"

    def __init__(self):
        from smckit.plugins import make_resampler

        self.inner = make_resampler("systematic")
        self.capabilities = self.inner.capabilities
        self.resets = 0
        self.calls = 0

    def reset(self):
        self.resets += 1

    def __call__(self, log_weights, rng, *, n_out=None):
        self.calls += 1
        return self.inner(log_weights, rng, n_out=n_out)


def mean_x(result):
    return result.estimate(lambda x: x)  # shape (2,)


def test_distinct_lineages_is_the_last_row_of_the_history():
    result = smckit.run(Walk(), 50, seed=1, policy=smckit.Always())
    np.testing.assert_array_equal(distinct_lineages(result), result.history.lineages()[-1])
    np.testing.assert_array_equal(distinct_lineages(result, step=0), [50, 50])
    assert distinct_lineages(result).shape == (2,)
    with pytest.raises(ValueError, match="ancestors"):
        distinct_lineages(smckit.run(Walk(), 50, seed=1, history="none"))


def test_table_matches_runs_made_by_hand():
    seeds = [3, 4, 5]
    table = compare_resamplers(
        Walk(),
        40,
        resamplers={"sys": "systematic", "mult": ("multinomial", {})},
        seeds=seeds,
        statistics={"mean_x": mean_x},
        policy=smckit.Always(),
    )
    assert isinstance(table, Comparison)
    assert [row["resampler"] for row in table.rows] == ["sys", "mult"]
    assert table.n == 40 and table.seeds == seeds
    for label, name in (("sys", "systematic"), ("mult", "multinomial")):
        runs = [smckit.run(Walk(), 40, resampler=name, seed=s, policy=smckit.Always()) for s in seeds]
        row = table[label]
        lineages = [r.history.lineages()[-1].mean() for r in runs]
        evidence = np.concatenate([np.ravel(r.log_evidence) for r in runs])
        stat = [float(np.mean(mean_x(r))) for r in runs]
        assert row["runs"] == 3
        assert row["lineages"] == pytest.approx(np.mean(lineages))
        assert row["lineages_sd"] == pytest.approx(np.std(lineages, ddof=1))
        assert row["ess"] == pytest.approx(np.mean([r.history.ess.mean() for r in runs]))
        assert row["ess_fraction"] == pytest.approx(row["ess"] / 40)
        assert row["log_evidence"] == pytest.approx(evidence.mean())
        assert row["log_evidence_sd"] == pytest.approx(evidence.std(ddof=1))
        assert row["mean_x"] == pytest.approx(np.mean(stat))
        assert row["mean_x_sd"] == pytest.approx(np.std(stat, ddof=1))
        assert len(table.per_seed[label]) == 3
    assert table.column("runs") == [3, 3]
    # Systematic resampling keeps more lineages than multinomial on the same seeds.
    assert table["sys"]["lineages"] > table["mult"]["lineages"]


def test_deterministic_and_markdown():
    kwargs = {"resamplers": {"a": "systematic", "b": "stratified"}, "seeds": [0, 1], "policy": smckit.Always()}
    first = compare_resamplers(Walk(), 30, **kwargs)
    second = compare_resamplers(Walk(), 30, **kwargs)
    assert first.rows == second.rows
    md = first.to_markdown(digits=3).splitlines()
    assert md[0].startswith("| resampler | runs | lineages |")
    assert set(md[1].replace("|", "").split()) == {"---"}
    assert len(md) == 2 + 2 and md[2].startswith("| a | 2 |")
    assert str(first) == first.to_markdown()
    with pytest.raises(KeyError, match="no resampler labelled"):
        first["c"]


def test_specs_factories_and_objects():
    obj = Counting()
    built = []

    def factory():
        built.append(1)
        return Counting()

    table = compare_resamplers(
        Walk(), 20, resamplers={"object": obj, "factory": factory}, seeds=[0, 1, 2], policy=smckit.Always()
    )
    assert obj.resets == 3 and obj.calls == 3 * (Walk.num_steps - 1)
    assert len(built) == 3  # a fresh resampler per run
    # The same seeds give the same runs whichever way the same scheme was specified.
    assert table["object"]["log_evidence"] == table["factory"]["log_evidence"]


def test_invalid_arguments():
    with pytest.raises(InvalidArgumentError, match="at least one resampler"):
        compare_resamplers(Walk(), 10, resamplers={}, seeds=[0])
    with pytest.raises(InvalidArgumentError, match="at least one seed"):
        compare_resamplers(Walk(), 10, resamplers={"s": "systematic"}, seeds=[])
    with pytest.raises(InvalidArgumentError, match="clash"):
        compare_resamplers(Walk(), 10, resamplers={"s": "systematic"}, statistics={"ess": mean_x})
    with pytest.raises(InvalidArgumentError, match="expected a name"):
        compare_resamplers(Walk(), 10, resamplers={"s": 42})


def test_fleming_viot_keeps_more_lineages():
    pytest.importorskip("smckit_fvd")
    table = compare_resamplers(
        Walk(), 200, resamplers={"mult": "multinomial", "fvd": "fvd"}, seeds=[0, 1], policy=smckit.Always()
    )
    assert table["fvd"]["lineages"] > table["mult"]["lineages"]
