"""Unit tests of the core pieces that the engine is built from: RNG, policies, history, result."""

from __future__ import annotations

import numpy as np
import pytest

import smckit
from smckit import Always, ESSBelow, Every, Never, Window
from smckit.errors import BackendError, InvalidArgumentError, ShapeError
from smckit.history import History, Result
from smckit.random import RNG
from smckit.state import take


# -- RNG -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["uniform", "normal", "exponential"])
def test_rng_same_seed_same_draws(backend, kind):
    a = getattr(RNG(7), kind)((3, 5), like=backend.like())
    b = getattr(RNG(7), kind)((3, 5), like=backend.like())
    c = getattr(RNG(8), kind)((3, 5), like=backend.like())
    assert backend.to_numpy(a).dtype == np.dtype(backend.dtype_name)
    np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))
    assert not np.array_equal(backend.to_numpy(a), backend.to_numpy(c))


def test_rng_draws_follow_like_backend(backend):
    x = RNG(0).normal(4, like=backend.like())
    assert type(x) is type(backend.like())
    i = RNG(0).integers(10, (100,), like=backend.like())
    assert backend.to_numpy(i).min() >= 0 and backend.to_numpy(i).max() < 10


def test_rng_spawn_gives_independent_streams():
    a, b = RNG(3).spawn(2)
    assert not np.array_equal(a.normal(10), b.normal(10))
    # spawning is itself deterministic
    a2, _ = RNG(3).spawn(2)
    np.testing.assert_array_equal(RNG(3).spawn(2)[0].normal(10), a2.normal(10))


def test_rng_rejects_bad_seed():
    with pytest.raises(InvalidArgumentError):
        RNG(-1)
    with pytest.raises(InvalidArgumentError):
        RNG(0).normal(3, dtype=np.int32)


# -- policies ------------------------------------------------------------------------------------------------
def test_policies_decide():
    frac = np.array([0.2, 0.7, 1.0])
    np.testing.assert_array_equal(ESSBelow(0.5).decide(1, frac), [True, False, False])
    # uniform weights (ESS fraction 1 up to float32 round-off) never trigger ESSBelow(1.0)
    assert not ESSBelow(1.0).decide(1, np.float32(0.9999999))
    assert Always().decide(3, frac) is True and Never().decide(3, frac) is False
    assert [Every(3).decide(t, frac) for t in range(1, 7)] == [False, False, True, False, False, True]
    w = Window(2, 4, Always())
    assert [w.decide(t, frac) for t in range(1, 6)] == [False, True, True, False, False]
    assert w.static and not Window(2, 4, ESSBelow(0.5)).static


@pytest.mark.parametrize("bad", [lambda: ESSBelow(0.0), lambda: ESSBelow(1.5), lambda: Every(0), lambda: Window(3, 1)])
def test_policies_reject_bad_arguments(bad):
    with pytest.raises(InvalidArgumentError):
        bad()


# -- history -------------------------------------------------------------------------------------------------
def test_lineages_and_roots_from_hand_made_genealogy():
    # n = 4; step 1: particles 0,1 copy 0 and 2,3 copy 2 -> roots {0, 2}; step 2: everyone copies 3 -> root {2}
    anc = np.array([[0, 1, 2, 3], [0, 0, 2, 2], [3, 3, 3, 3]], dtype=np.int32)
    h = History(
        ess=np.ones(3), resampled=np.array([False, True, True]), log_evidence_increments=np.zeros(3), ancestors=anc
    )
    np.testing.assert_array_equal(h.roots()[-1], [2, 2, 2, 2])
    np.testing.assert_array_equal(h.lineages(), [4, 2, 1])
    np.testing.assert_array_equal(h.resampling_steps, [1, 2])


def test_lineages_batched_rows_are_counted_separately():
    anc = np.stack([np.tile(np.arange(3), (2, 1)), np.array([[0, 0, 0], [1, 2, 2]])]).astype(np.int32)
    h = History(ess=np.ones((2, 2)), resampled=np.zeros((2, 2), bool), log_evidence_increments=np.zeros((2, 2)),
                ancestors=anc)
    np.testing.assert_array_equal(h.lineages(), [[3, 3], [1, 2]])


def test_plots_return_axes():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    anc = np.array([[0, 1, 2], [0, 0, 2], [1, 1, 2]], dtype=np.int32)
    h = History(ess=np.array([3.0, 2.0, 1.5]), resampled=np.array([False, True, True]),
                log_evidence_increments=np.zeros(3), ancestors=anc)
    for plot in (h.plot_ess, h.plot_lineages, h.plot_genealogy):
        ax = plot()
        assert ax.get_xlabel() == "step t" and ax.get_legend() is not None


def _plotted_history(n=1000, batch=(), steps=40):
    from smckit.models import Bootstrap, LinearGaussian

    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, y = ssm.simulate(steps, seed=1)
    return smckit.run(Bootstrap(ssm, y, batch_shape=batch), n, seed=0).history


def test_plot_ess_marks_each_resampling_on_the_ess_it_was_decided_from():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    h = _plotted_history()
    ax = h.plot_ess(threshold=0.5)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    resampled_before = np.flatnonzero(h.resampled[1:])  # resampled before step t + 1: decided at step t
    assert labels == ["ESS", f"resampled before the next step ({resampled_before.size} steps)", "threshold 0.5 n"]
    (marks,) = ax.collections
    np.testing.assert_array_equal(marks.get_offsets()[:, 0], resampled_before)
    assert np.all(marks.get_offsets()[:, 1] < 0.5 * 1000)  # ESSBelow(0.5): every decision was below the line
    (threshold,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert threshold.get_ydata()[0] == 500
    for bad in (0, 1.5, "0.5", True):
        with pytest.raises(InvalidArgumentError, match=r"plot_ess\(threshold=...\).*\(0, 1\]"):
            h.plot_ess(threshold=bad)


def test_plot_genealogy_draws_every_surviving_line_and_a_sample_of_the_rest():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    h = _plotted_history(batch=(2,))
    ax = h.plot_genealogy(row=1, max_particles=50)
    dead, live = ax.collections
    roots = h.roots()[-1, 1]  # step-0 ancestors of row 1's final particles
    assert f"({len(np.unique(roots))} step-0 ancestor" in live.get_label()
    # Every segment into a particle with a descendant at the end is drawn: the last step's n, at least.
    assert len(live.get_segments()) >= 1000 and len(dead.get_segments()) <= 50 * (h.num_steps - 1)
    assert ax.get_ylim() == (-0.5, 999.5) and ax.get_legend() is not None
    with pytest.raises(InvalidArgumentError, match=r"rows 0\.\.1 .*got 2"):
        h.plot_genealogy(row=2)
    with pytest.raises(InvalidArgumentError, match="max_particles"):
        h.plot_genealogy(max_particles=0)


def test_plots_without_ancestors_say_how_to_keep_them():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    h = History(ess=np.ones(2), resampled=np.zeros(2, bool), log_evidence_increments=np.zeros(2), ancestors=None)
    for plot in (h.plot_lineages, h.plot_genealogy):
        with pytest.raises(InvalidArgumentError, match="history='ancestors'"):
            plot()


def test_result_estimate_is_weighted_mean(backend64):
    x = backend64.asarray([[1.0], [3.0]])
    lw = backend64.asarray(np.log([0.25, 0.75]))
    r = Result(particles=x, log_weights=lw, log_evidence=backend64.asarray(0.0), history=None)  # type: ignore[arg-type]
    np.testing.assert_allclose(backend64.to_numpy(r.estimate(lambda s: s)), [2.5])
    np.testing.assert_allclose(float(backend64.to_numpy(r.ess)), 1 / (0.25**2 + 0.75**2))


# -- take ----------------------------------------------------------------------------------------------------
def test_take_rejects_mismatched_batch_and_devices():
    with pytest.raises(ShapeError):
        take(np.zeros((2, 3)), np.zeros((3, 3), dtype=np.int64))
    torch = pytest.importorskip("torch")
    with pytest.raises(BackendError):
        take({"x": torch.zeros(3)}, np.zeros(3, dtype=np.int64))


def test_run_rejects_bad_arguments():
    class Tiny(smckit.FeynmanKac):
        num_steps = 2

        def initial(self, n, rng):
            return rng.normal((n,))

        def propose(self, t, state, rng):
            return state

        def log_potential(self, t, prev, state):
            return -state**2

    for bad in (0, -3, 2.5, True):
        with pytest.raises(InvalidArgumentError):
            smckit.SMC(Tiny(), bad)
    with pytest.raises(InvalidArgumentError):
        smckit.SMC(Tiny(), 10, history="everything")
    with pytest.raises(InvalidArgumentError):
        smckit.SMC(object(), 10)  # type: ignore[arg-type]


# -- reprs ---------------------------------------------------------------------------------------------------
def test_resampler_reprs_are_one_line_with_name_and_options():
    from smckit.plugins import make_resampler
    from smckit.resamplers import kit

    for name in ("multinomial", "systematic", "stratified", "residual", "ssp", "killing"):
        text = repr(make_resampler(name))
        assert "\n" not in text and f"name={name!r}" in text, text

    class Tuned(kit.Scheme):
        name = "tuned"

        def __init__(self, level: int = 2, table=None, *, tag: str = "x"):
            self.level, self._table, self.tag = level, table, tag

    assert repr(Tuned()) == "Tuned(name='tuned')"  # defaults are not repeated
    tuned = Tuned(3, np.zeros((50, 50)), tag="y")
    assert repr(tuned) == "Tuned(name='tuned', level=3, table=<ndarray shape=(50, 50)>, tag='y')"
