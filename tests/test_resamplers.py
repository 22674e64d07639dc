"""The standard resampling schemes: the conformance kit on every scheme, backend and dtype, and the properties
specific to each scheme (hypothesis), the counting merge, the accelerator guard, errors and the engine."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import smckit
from smckit.errors import ExtinctionError, InvalidArgumentError, InvalidWeightsError, ShapeError
from smckit.random import RNG
from smckit.resamplers import (
    BUILTIN,
    SSP,
    Capabilities,
    Killing,
    Multinomial,
    Resampled,
    Residual,
    Stratified,
    Systematic,
    kit,
    refill,
    smckit_register_resamplers,
    use_numba,
)
from smckit.testing import check_resampler
from smckit.testing.strategies import (
    finite_log_weights,
    log_weights,
    one_hot_log_weights,
    to_backend,
    zero_tail_log_weights,
)

SCHEMES = [Multinomial, Systematic, Stratified, Residual, SSP, Killing]
BACKENDS = st.sampled_from(["numpy", "torch"])
ids = [s.name for s in SCHEMES]


@pytest.fixture(scope="module", autouse=True, params=["compiled", "reference"])
def kernel_path(request):
    """Every test here runs twice: with the compiled CPU kernels (numba) and on the array-API reference path
    (the code accelerators run). Module-scoped, so hypothesis sees no function-scoped fixture."""
    with use_numba(request.param == "compiled"):
        yield request.param


def host(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def counts_of(ancestors, n):
    a = host(ancestors).reshape(-1, ancestors.shape[-1])
    return np.stack([np.bincount(row, minlength=n) for row in a])


def expected_counts(values, n_out):
    rows = np.asarray(values, dtype=np.float64).reshape(-1, values.shape[-1])
    w = np.exp(rows - rows.max(axis=-1, keepdims=True))
    return n_out * w / w.sum(axis=-1, keepdims=True)


# -- the conformance kit on every built-in ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_conformance_kit(scheme, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    report = check_resampler(scheme, backends=(backend,), dtypes=("float64", "float32"))
    assert not report.skipped, report.skipped
    assert any("statistics" in p for p in report.passed)
    assert any("large float32" in p for p in report.passed)


# -- exact properties per scheme (hypothesis) ------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(values=log_weights(max_n=48), seed=st.integers(0, 2**32 - 1), backend=st.sampled_from(["numpy", "torch"]))
@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_exact_properties(scheme, values, seed, backend):
    """Shapes, integer dtype, range, zero weights, row sums, output weights, declared bounds."""
    n = values.shape[-1]
    out = scheme()(to_backend(values, backend), RNG(seed))
    assert isinstance(out, Resampled)
    assert tuple(out.ancestors.shape) == values.shape
    assert tuple(out.log_weights.shape) == values.shape
    a = host(out.ancestors)
    assert a.dtype == np.int64
    assert host(out.log_weights).dtype == values.dtype
    assert np.all(host(out.log_weights) == 0)
    assert a.min() >= 0 and a.max() < n
    counts = counts_of(out.ancestors, n)
    assert np.all(counts.sum(axis=-1) == n)
    assert np.all(counts[np.isneginf(values.reshape(-1, n))] == 0)
    e = expected_counts(values, n)
    if scheme.capabilities.count_bounds == "floor_ceil":
        assert np.all((counts >= np.floor(e - 1e-9)) & (counts <= np.ceil(e + 1e-9)))
    if scheme.capabilities.count_bounds == "at_least_floor":
        assert np.all(counts >= np.floor(e - 1e-9))
    if scheme.capabilities.sorted_ancestors:
        assert np.all(np.diff(a.reshape(-1, n), axis=-1) >= 0)


@settings(max_examples=40, deadline=None)
@given(values=finite_log_weights(max_n=40), seed=st.integers(0, 2**32 - 1), n_out=st.integers(1, 100))
@pytest.mark.parametrize("scheme", [Multinomial, Systematic, Stratified, Residual], ids=lambda s: s.name)
def test_n_out_differs(scheme, values, seed, n_out):
    out = scheme()(values, RNG(seed), n_out=n_out)
    n = values.shape[-1]
    assert out.ancestors.shape == (*values.shape[:-1], n_out)
    counts = counts_of(out.ancestors, n)
    assert np.all(counts.sum(axis=-1) == n_out)
    assert np.all(counts[np.isneginf(values.reshape(-1, n))] == 0)
    e = expected_counts(values, n_out)
    if scheme is Systematic:
        assert np.all((counts >= np.floor(e - 1e-9)) & (counts <= np.ceil(e + 1e-9)))
    if scheme is Residual:
        assert np.all(counts >= np.floor(e - 1e-9))
    if scheme is Stratified:  # the documented (not declared) bound
        assert np.all((counts >= np.floor(e - 1e-9) - 1) & (counts <= np.ceil(e + 1e-9) + 1))


@pytest.mark.parametrize("scheme", [SSP, Killing], ids=lambda s: s.name)
@pytest.mark.parametrize("n_out", [1, 4, 6, True, 0, -2, 2.0])
def test_fixed_size_schemes_refuse_other_sizes(scheme, n_out):
    values = np.zeros(5)
    with pytest.raises(InvalidArgumentError, match="n_out"):
        scheme()(values, RNG(0), n_out=n_out)
    assert scheme()(values, RNG(0), n_out=5).ancestors.shape == (5,)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 60),
    zeros=st.lists(st.integers(0, 59), max_size=40),
    tiny=st.lists(st.integers(0, 59), max_size=10),
    seed=st.integers(0, 2**32 - 1),
    backend=st.sampled_from(["numpy", "torch"]),
)
def test_ssp_sums_to_n_with_many_zero_and_tiny_weights(n, zeros, tiny, seed, backend):
    """PITFALLS: SSP once returned the wrong number of offspring when several weights were zero or tiny."""
    values = np.log(np.arange(1.0, n + 1.0)) % 1.7
    values[[t % n for t in tiny]] = -300.0
    values[[z % n for z in zeros]] = -np.inf
    if np.all(np.isneginf(values)):
        values[seed % n] = 0.0
    out = SSP()(to_backend(values, backend), RNG(seed))
    counts = counts_of(out.ancestors, n)[0]
    assert counts.sum() == n
    assert np.all(counts[np.isneginf(values)] == 0)
    e = expected_counts(values, n)[0]
    assert np.all((counts == np.floor(e)) | (counts == np.ceil(e)))


@settings(max_examples=30, deadline=None)
@given(values=one_hot_log_weights(max_n=30), seed=st.integers(0, 2**32 - 1))
@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_one_hot_rows_copy_the_hot_particle(scheme, values, seed):
    out = scheme()(values, RNG(seed))
    hot = np.argmax(np.isfinite(values), axis=-1)
    assert np.all(host(out.ancestors) == hot[..., None])


@settings(max_examples=30, deadline=None)
@given(values=zero_tail_log_weights(max_n=40), seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(["f4", "f8"]))
@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_zero_weights_at_both_ends_never_chosen(scheme, values, seed, dtype):
    values = values.astype(dtype)
    a = host(scheme()(values, RNG(seed)).ancestors)
    assert np.all(np.isfinite(np.take_along_axis(values, a, axis=-1)))


@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_float32_million_particles_zero_tail(scheme, backend):
    """A float32 cumulative sum of 10**6 weights ends visibly below 1; zero weights sit at the end."""
    n = 10**6
    rng = np.random.default_rng(1)
    values = rng.uniform(-1.0, 0.0, n).astype(np.float32)
    values[-11:] = -np.inf
    values[rng.choice(n, 1000, replace=False)] = -np.inf
    naive = np.cumsum(np.exp(values) / np.exp(values).sum(dtype=np.float32), dtype=np.float32)
    assert naive[-1] < 1.0 - 1e-6 or naive[-1] > 1.0 + 1e-6  # the trap is really there
    a = host(scheme()(to_backend(values, backend), RNG(2)).ancestors)
    assert a.shape == (n,) and a.min() >= 0 and a.max() < n
    assert not np.isneginf(values[a]).any()


@settings(max_examples=30, deadline=None)
@given(values=log_weights(max_n=30, shift=False), shift=st.sampled_from([512.0, -512.0, 700.0, 1e5]))
@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_shift_invariance_bitwise(scheme, values, shift):
    """An exact shift leaves every intermediate value unchanged: identical ancestors, not only counts."""
    shifted = values + values.dtype.type(shift)
    assert np.array_equal(shifted - values.dtype.type(shift), values)
    a = host(scheme()(values, RNG(7)).ancestors)
    b = host(scheme()(shifted, RNG(7)).ancestors)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_batch_rows_are_resampled_row_by_row(scheme):
    """A degenerate row, an equal row and an ordinary row in one batch each keep their own properties."""
    ninf = -np.inf
    values = np.array([[ninf, ninf, 1.0, ninf], [0.0, 0.0, 0.0, 0.0], [0.0, -1.0, ninf, -2.0]])
    batch = np.broadcast_to(values, (5, 3, 4)).copy()
    out = scheme()(batch, RNG(3))
    a = host(out.ancestors)
    assert a.shape == (5, 3, 4)
    assert np.all(a[:, 0] == 2)
    assert np.all(a[:, 2] != 2)
    if scheme in (Systematic, SSP, Killing, Residual):  # equal weights: exactly one offspring each
        assert np.all(np.sort(a[:, 1], axis=-1) == np.arange(4))


def test_killing_keeps_survivors_in_place_and_reports_deaths():
    values = np.log(np.array([[0.1, 0.4, 0.2, 0.3, 1.0, 0.25]] * 50))
    values[:, 4] = -np.inf
    out = Killing()(values, RNG(4))
    a, reborn = host(out.ancestors), host(out.reborn)
    slots = np.broadcast_to(np.arange(6), a.shape)
    assert np.all(a[~reborn] == slots[~reborn])
    assert np.all(reborn[:, 4])  # weight zero: always killed
    assert np.array_equal(host(out.info["deaths"]), reborn.sum(axis=-1))
    equal = Killing()(np.zeros((3, 7)), RNG(4))
    assert np.all(host(equal.ancestors) == np.arange(7)) and not host(equal.reborn).any()


def test_residual_reports_the_multinomial_draws():
    values = np.log(np.array([[0.5, 0.25, 0.25, 1.0], [0.3, 0.3, 0.3, 0.1]]))
    values[0, 3] = -np.inf
    out = Residual()(values, RNG(0))
    assert host(out.info["residual_draws"]).tolist() == [0, 4 - (1 + 1 + 1 + 0)]
    assert np.array_equal(host(out.ancestors)[0], [0, 0, 1, 2])


@pytest.mark.slow
def test_multinomial_counts_have_multinomial_variance():
    """Not only unbiased: each count's variance is n W (1 - W) (a systematic scheme would be far below).

    R = 20000 replicates in one batch; the sample variance of a count has relative standard error about
    sqrt((kurtosis - 1) / R) <= sqrt(3 / R) ~ 0.012 for these weights, so 6 standard errors is 0.075.
    """
    w = np.array([0.05, 0.3, 0.15, 0.25, 0.2, 0.05])
    R, n = 20000, len(w)
    for backend in ["numpy", "torch"]:
        counts = counts_of(Multinomial()(to_backend(np.log(np.tile(w, (R, 1))), backend), RNG(11)).ancestors, n)
        ratio = counts.var(axis=0, ddof=1) / (n * w * (1 - w))
        assert np.all(np.abs(ratio - 1) < 6 * math.sqrt(3 / R)), ratio


@pytest.mark.slow
@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_unbiased_with_extreme_weights(scheme):
    """Mean counts equal n W_i for weights spanning 300 orders of magnitude.

    z-tests on R = 20000 replicates with the empirical variance floored by f(1 - f) (the least variance of an
    integer count with fractional mean f); Bonferroni over the 10 particles at family-wise level 1e-6.
    """
    values = np.array([0.0, -1.0, -5.0, -20.0, -700.0, -np.inf, 0.5, -2.0, -3.0, -0.1])
    R, n = 20000, len(values)
    counts = counts_of(scheme()(np.tile(values, (R, 1)), RNG(5)).ancestors, n)
    e = expected_counts(values, n)[0]
    frac = e - np.floor(e)
    se = np.sqrt(np.maximum(counts.var(axis=0, ddof=1), frac * (1 - frac)) / R)
    z_star = NormalDist().inv_cdf(1 - 1e-6 / (2 * n))
    ok = np.where(se > 0, np.abs(counts.mean(axis=0) - e) <= z_star * np.maximum(se, 1e-300), counts.mean(0) == e)
    assert np.all(ok), (counts.mean(axis=0), e)


# -- the counting merge and the accelerator guard -------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 4),
    m=st.integers(1, 50),
    n=st.integers(1, 50),
    scale=st.sampled_from([0.5, 1.0, 3.0, 40.0]),
    ties=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_count_below_matches_searchsorted(rows, m, n, scale, ties, seed):
    rng = np.random.default_rng(seed)
    values = np.sort(rng.uniform(0, scale * m, (rows, m)), axis=-1)
    queries = np.sort(rng.uniform(0, scale * m * 1.1, (rows, n)), axis=-1)
    if ties:
        values = np.floor(values)
        queries = np.floor(queries)
    expected = np.stack([np.searchsorted(values[r], queries[r], side="left") for r in range(rows)])
    got = kit.count_below(values, queries, m + 1)
    assert np.array_equal(got, expected)
    torch = pytest.importorskip("torch")
    got_t = kit.count_below(torch.as_tensor(values), torch.as_tensor(queries), m + 1)
    assert np.array_equal(got_t.numpy(), expected)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=log_weights(max_n=40, dtype=np.float64), seed=st.integers(0, 2**32 - 1), backend=BACKENDS)
@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_guard_for_parallel_scans(monkeypatch, scheme, values, seed, backend):
    """Off the host, cumulative sums need not be monotone nor equal across zero weights. Simulate such a scan
    (each cumulative sum perturbed by a few ulps, independently) and check that the guard still keeps zero
    weights out, counts non-negative and summing to n."""
    noise = np.random.default_rng(seed)
    real_prepare = kit.prepare

    def parallel_prepare(*args, **kwargs):
        prep = real_prepare(*args, **kwargs)
        prep.sequential_scan = prep.compiled = False
        return prep

    def sloppy_cumsum(self, w):
        s = self.xp.cumulative_sum(w, axis=-1)
        like = "torch" if hasattr(s, "detach") else "numpy"  # a CPU tensor on the compiled path runs as numpy
        return s * to_backend(1.0 + noise.integers(-4, 5, tuple(s.shape)) * 2.0**-52, like)

    monkeypatch.setattr("smckit.resamplers.kit.prepare", parallel_prepare)
    monkeypatch.setattr(kit.Prepared, "cumsum", sloppy_cumsum)
    n = values.shape[-1]
    a = host(scheme()(to_backend(values, backend), RNG(seed)).ancestors)  # torch: the searchsorted merge
    assert a.min() >= 0 and a.max() < n
    assert np.all(np.isfinite(np.take_along_axis(values, a, axis=-1)))


def test_guard_fixes_a_non_monotone_cumulative_count():
    values = np.log(np.array([[0.5, 1.0, 0.2, 0.3, 1.0]]))
    values[:, [1, 4]] = -np.inf
    prep = kit.prepare(values, RNG(0), None, name="t", variable_size=True)
    prep.sequential_scan = False
    cum = np.array([[3, 2, 4, 4, 5]])  # a zero weight with a count, a decrease, the end reached early
    fixed = kit.guard_cumulative(prep, cum, prep.w, 5)
    assert np.diff(fixed, prepend=0).tolist() == [[3, 0, 1, 1, 0]]
    assert kit.ancestors_from_cumulative(prep, fixed, 5).tolist() == [[0, 0, 0, 2, 3]]


# -- arithmetic that is what it says (issue 17) ---------------------------------------------------------------
def test_ssp_does_not_hinge_on_the_last_bit():
    """Here the fractional parts of n W pair up to exactly 1 in exact arithmetic ((0.6, 0.4), (0.8, 0.2), ...), so
    the rounded sums land on either side of 1 depending on the last bit of exp. Moving every log-weight by one ulp
    must leave the ancestors as they are: with the former rule (a discontinuous choice at ``a + b > 1``, ancestors
    in settling order) they changed for every one of these seeds."""
    lw = np.log(np.array([0.15, 0.35, 0.2, 0.3, 0.05, 0.45, 0.1, 0.4]))
    moved = np.nextafter(lw, np.where(np.arange(8) % 2, np.inf, -np.inf))
    for seed in range(50):
        assert np.array_equal(SSP()(lw, RNG(seed)).ancestors, SSP()(moved, RNG(seed)).ancestors), seed


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_integer_expected_counts_are_kept_exactly(backend):
    """Weights k_i / N: residual, systematic and SSP resampling give exactly k_i copies. n W_i is then an integer
    up to rounding (2.9999999999999996 for 3); residual resampling used to floor it to k_i - 1 and leave the last
    copy to its multinomial stage (172 of these 200 residual calls had wrong counts). A common shift of the log-weights
    moves the rounding around."""
    gen = np.random.default_rng(0)
    for trial in range(100):
        n = int(gen.integers(2, 200))
        p = gen.dirichlet(np.full(n, 0.5))
        shift = gen.uniform(-50.0, 50.0)
        for scheme, draws in (
            (Residual, int(gen.integers(1, 3 * n))),
            (Systematic, int(gen.integers(1, 3 * n))),
            (SSP, n),
        ):
            k = gen.multinomial(draws, p)
            with np.errstate(divide="ignore"):
                values = np.log(k / draws) + shift
            n_out = None if scheme is SSP else draws
            out = scheme()(to_backend(values, backend), RNG(trial), n_out=n_out)
            assert np.array_equal(counts_of(out.ancestors, n)[0], k), (scheme.name, trial)


@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_half_precision_log_weights(scheme):
    """float16 (numpy, torch) and bfloat16 (torch) log-weights give the ancestors of float32 arrays holding the same
    values (widening is exact, and the weights are float64 either way) and zero output log-weights in their own
    dtype; 70,000 equal float16 weights (whose float16 sum is +inf) are equal weights."""
    torch = pytest.importorskip("torch")
    values = np.random.default_rng(0).standard_normal((3, 50)).astype(np.float16)
    values[0, :5] = -np.inf
    values[1, -3:] = -np.inf
    wide = values.astype(np.float32)
    pairs = [
        (values, wide),
        (torch.from_numpy(values), torch.from_numpy(wide)),
        (torch.from_numpy(wide).bfloat16(), torch.from_numpy(wide).bfloat16().float()),
    ]
    for half, reference in pairs:
        out, ref = scheme()(half, RNG(1)), scheme()(reference, RNG(1))
        assert np.array_equal(host(out.ancestors), host(ref.ancestors))
        assert out.log_weights.dtype == half.dtype and not bool((out.log_weights != 0).any())
    equal = scheme()(np.zeros(70_000, np.float16), RNG(2))
    counts = counts_of(equal.ancestors, 70_000)
    assert counts.sum() == 70_000
    if scheme in (Systematic, SSP, Residual, Killing):  # equal weights: exactly one offspring each
        assert np.all(counts == 1)


@settings(max_examples=20, deadline=None)
@given(
    counts=st.lists(st.integers(0, 4), min_size=1, max_size=12).filter(lambda c: sum(c) > 0),
    backend=BACKENDS,
)
def test_expand_repeats_sources_by_counts(counts, backend):
    """kit.expand: sources repeated by their counts, in order."""
    prep = kit.prepare(to_backend(np.zeros(len(counts)), backend), RNG(0), None, name="t", variable_size=True)
    like = "numpy" if isinstance(prep.w, np.ndarray) else "torch"  # (numpy views of a tensor on the compiled path)
    sources = np.arange(len(counts))[::-1].copy()
    got = kit.expand(prep, to_backend(sources[None], like), to_backend(np.asarray([counts]), like), sum(counts))
    assert host(got).tolist() == [np.repeat(sources, counts).tolist()]


# -- input validation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_invalid_inputs(scheme):
    r = scheme()
    with pytest.raises(InvalidArgumentError, match="numpy array or a torch tensor"):
        r([0.0, 1.0], RNG(0))
    with pytest.raises(InvalidArgumentError, match="floating"):
        r(np.array([0, 1]), RNG(0))
    with pytest.raises(ShapeError):
        r(np.zeros((3, 0)), RNG(0))
    with pytest.raises(ShapeError):
        r(np.float64(1.0) * np.ones(()), RNG(0))
    with pytest.raises(ExtinctionError, match=r"batch rows \[\(1,\)\]"):
        r(np.array([[0.0, 1.0], [-np.inf, -np.inf]]), RNG(0))
    with pytest.raises(InvalidWeightsError, match="NaN"):
        r(np.array([0.0, np.nan]), RNG(0))
    with pytest.raises(InvalidWeightsError):
        r(np.array([0.0, np.inf]), RNG(0))
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(InvalidArgumentError):
            r(np.zeros(3), RNG(0), n_out=bad)


@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_torch_outputs_keep_device_dtype_and_ignore_autograd(scheme):
    torch = pytest.importorskip("torch")
    lw = torch.tensor([0.1, -0.3, 2.0, -float("inf")], dtype=torch.float32, requires_grad=True)
    out = scheme()(lw, RNG(0))
    assert out.ancestors.dtype == torch.int64 and out.log_weights.dtype == torch.float32
    assert out.ancestors.device == lw.device and not out.log_weights.requires_grad
    assert out.info is not None and isinstance(out.info, dict)


@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_accepts_a_seed_and_is_reproducible(scheme):
    values = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    a = host(scheme()(values, 123).ancestors)
    b = host(scheme()(values, RNG(123)).ancestors)
    assert np.array_equal(a, b)


# -- registration and the engine ------------------------------------------------------------------------------
def test_builtin_hook_registers_the_six_schemes():
    seen = {}

    def register(name, factory, *, aliases=(), description=""):
        seen[name] = (factory, description)

    smckit_register_resamplers(register)
    assert list(seen) == ["multinomial", "systematic", "stratified", "residual", "ssp", "killing"]
    for name, (factory, description) in seen.items():
        r = factory()
        assert r.name == name and isinstance(r.capabilities, Capabilities) and description
        assert BUILTIN[name][0] is factory


class _RandomWalk(smckit.FeynmanKac):
    num_steps = 6

    def initial(self, n, rng):
        return rng.normal((n,))

    def propose(self, t, state, rng):
        return state + rng.normal(state.shape)

    def log_potential(self, t, prev, state):
        return -0.5 * (state - 1.0) ** 2


@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_engine_runs_with_every_scheme_object(scheme):
    result = smckit.run(_RandomWalk(), 64, resampler=scheme(), seed=0)
    assert np.isfinite(result.log_evidence)
    assert result.history.ancestors.shape == (6, 64)


def test_engine_runs_with_a_registered_name():
    """Needs the plugin registry (smckit.plugins.make_resampler)."""
    result = smckit.run(_RandomWalk(), 64, resampler="systematic", seed=0)
    assert np.isfinite(result.log_evidence)


# -- refill: the birth step of killing and birth-death schemes ------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(st.sampled_from([0.0, 1e-300, 0.5, 1.0, 7.0]), min_size=1, max_size=30),
    kill=st.lists(st.booleans(), min_size=30, max_size=30),
    seed=st.integers(0, 2**32 - 1),
    backend=BACKENDS,
)
def test_refill_keeps_survivors_and_draws_sorted_positive_parents(weights, kill, seed, backend):
    w = np.asarray(weights)
    if not (w > 0).any():
        w[0] = 1.0
    killed = np.asarray(kill[: w.size])
    got = refill(to_backend(w, backend), to_backend(killed, backend), RNG(seed))
    assert type(got) is type(to_backend(w, backend))
    a = host(got)
    assert a.dtype == np.int64 and a.shape == w.shape
    assert np.array_equal(a[~killed], np.flatnonzero(~killed))
    drawn = a[killed]
    assert np.all(w[drawn] > 0)
    assert np.all(np.diff(drawn) >= 0)


def test_refill_draws_have_the_parent_law():
    """Per killed slot, the parent is drawn from q / sum(q): the counts over 4000 rows match within 5 sigma."""
    rows, n = 4000, 6
    q = np.array([0.0, 1.0, 2.0, 0.0, 3.0, 4.0])
    killed = np.zeros((rows, n), dtype=bool)
    killed[:, [0, 3, 5]] = True
    a = refill(np.broadcast_to(q, (rows, n)).copy(), killed, RNG(4))
    counts = np.bincount(a[killed], minlength=n)
    total = killed.sum()
    p = q / q.sum()
    z = (counts - total * p) / np.sqrt(np.maximum(total * p * (1 - p), 1e-12))
    assert counts[[0, 3]].sum() == 0
    assert np.all(np.abs(z[p > 0]) < 5.0)


def test_refill_rejects_bad_input():
    w, killed = np.array([1.0, 2.0]), np.array([True, False])
    with pytest.raises(InvalidWeightsError, match="no positive weight"):
        refill(np.zeros(2), killed, 0)
    with pytest.raises(InvalidWeightsError, match="non-negative"):
        refill(np.array([1.0, -1.0]), killed, 0)
    with pytest.raises(InvalidArgumentError, match="boolean"):
        refill(w, np.array([1, 0]), 0)
    with pytest.raises(ShapeError, match="one shape"):
        refill(w, np.array([True]), 0)
    torch = pytest.importorskip("torch")
    with pytest.raises(InvalidArgumentError, match="one backend"):
        refill(torch.tensor([1.0, 2.0]), killed, 0)
    assert refill(w, np.zeros(2, dtype=bool), 0).tolist() == [0, 1]
