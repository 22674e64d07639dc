"""The SMC engine: weight accumulation and evidence, determinism, shift invariance, batch rows, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import smckit
from smckit import (
    Always,
    BackendError,
    ESSBelow,
    Every,
    ExtinctionError,
    FeynmanKac,
    InvalidArgumentError,
    InvalidWeightsError,
    Never,
    Resampled,
    ShapeError,
)
from smckit.backend import namespace
from smckit.models import Bootstrap, LinearGaussian, kalman_filter
from smckit.plugins import make_resampler
from smckit.weights import ess as ess_of
from smckit.weights import log_mean_exp, log_normalise

POLICIES = {"never": Never(), "always": Always(), "ess-below": ESSBelow(0.5), "every-2": Every(2)}


def _np(x) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)


class Static(FeynmanKac):
    """Particles x ~ N(0, 1) that never move, weighted by G_t(x) = exp(a_t x - a_t^2 / 2).

    The evidence is exact: Z_T = E[exp(A x - sum a_t^2 / 2)] = exp((A^2 - sum a_t^2) / 2), A = sum a_t.
    """

    def __init__(self, a, batch=(), like=None):
        self.a = [float(v) for v in a]
        self.num_steps = len(self.a)
        self.batch = tuple(batch)
        self.like = np.zeros(0) if like is None else like

    def g(self, t, x):
        return self.a[t] * x - 0.5 * self.a[t] ** 2

    def initial(self, n, rng):
        return rng.normal((*self.batch, n), like=self.like)

    def propose(self, t, state, rng):
        return state

    def log_potential(self, t, prev, state):
        return self.g(t, state)

    @property
    def log_evidence(self) -> float:
        return 0.5 * (sum(self.a) ** 2 - sum(v * v for v in self.a))


class Shifted(FeynmanKac):
    """Another model's potentials plus a constant c."""

    def __init__(self, inner, c):
        self.inner, self.c, self.num_steps = inner, c, inner.num_steps

    def initial(self, n, rng):
        return self.inner.initial(n, rng)

    def propose(self, t, state, rng):
        return self.inner.propose(t, state, rng)

    def log_potential(self, t, prev, state):
        return self.inner.log_potential(t, prev, state) + self.c


class Scripted(Static):
    """A Static model whose potential at step ``bad_step`` is replaced by ``fn(t, log_g)``."""

    def __init__(self, a, bad_step, fn, batch=(), like=None):
        super().__init__(a, batch, like)
        self.bad_step, self.fn = bad_step, fn

    def log_potential(self, t, prev, state):
        log_g = super().log_potential(t, prev, state)
        return self.fn(t, log_g) if t == self.bad_step else log_g


def lg_model(T=10, batch=(), sigma_y=1.0, like=None):
    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=sigma_y)
    _, y = ssm.simulate(T, seed=17)
    if like is not None:
        y = namespace(like).asarray(y, dtype=like.dtype)
    return ssm, y, Bootstrap(ssm, y, batch_shape=batch)


# -- weights accumulate across steps that do not resample ------------------------------------------------------
def _segment_evidence(history, model: Static, row) -> tuple[float, np.ndarray]:
    """The log-evidence and final log-weights of one row recomputed from the history, segment by segment.

    Between two resamplings the particles of a Static model do not move, the incoming weights are uniform (the
    standard schemes return equal weights), and the weights are the product of the potentials of the segment:
    the segment's factor is the mean over the particles of exp(sum of its log-potentials).
    """
    T = model.num_steps
    starts = [0] + [t for t in range(1, T) if history.resampled[(t, *row)]]
    ends = [*starts[1:], T]
    log_z, last = 0.0, None
    for s, e in zip(starts, ends):
        x = _np(history.particles[e - 1])[row]  # the population throughout the segment
        total = sum(model.g(t, x) for t in range(s, e))
        log_z += float(log_mean_exp(total))
        last = total
    return log_z, _np(log_normalise(last))


@pytest.mark.parametrize("policy", list(POLICIES), ids=list(POLICIES))
def test_log_weights_accumulate_between_resamplings(backend, policy):
    """Exact: the engine's evidence and final weights equal the segment-by-segment recomputation."""
    a = [0.9, -0.4, 1.1, 0.3, -0.8, 1.2, 0.5, -0.6]
    model = Static(a, batch=(3,), like=backend.like())
    res = smckit.run(model, 64, seed=11, policy=POLICIES[policy], history="full")
    rtol = 1e-10 if backend.dtype_name == "float64" else 2e-5
    for row in range(3):
        log_z, log_w = _segment_evidence(res.history, model, (row,))
        assert _np(res.log_evidence)[row] == pytest.approx(log_z, rel=rtol, abs=rtol)
        np.testing.assert_allclose(_np(res.log_weights)[row], log_w, rtol=rtol, atol=10 * rtol)
    n_resampled = res.history.resampled[1:].sum(axis=0)
    if policy == "ess-below":  # the test must see both kinds of steps
        assert np.all(n_resampled > 0) and np.all(n_resampled < len(a) - 1)


def test_never_resampling_is_importance_sampling_over_paths():
    """Under Never with moving particles, log Z = log mean_i exp(sum_t log g(y_t | x_t^i)) over whole paths."""
    ssm, y, model = lg_model(T=6, batch=(2,))
    res = smckit.run(model, 50, seed=3, policy=Never(), history="full")
    paths = np.stack([_np(p) for p in res.history.particles])  # (T, 2, n, 1)
    total = sum(_np(ssm.logpdf_observation(t, paths[t], y[t])) for t in range(6))
    np.testing.assert_allclose(res.log_evidence, log_mean_exp(total), rtol=1e-12)
    assert np.all(res.history.ancestors == np.arange(50))


@pytest.mark.parametrize("policy", ["never", "always", "ess-below"])
def test_evidence_is_unbiased_under_each_policy(policy):
    """E[Z_hat / Z] = 1 for every policy: B rows, mean ratio within 3 standard errors of 1 (Kalman reference)."""
    B, n, T = 400, 128, 8
    ssm, y, model = lg_model(T=T, batch=(B,), sigma_y=2.0)  # weak potentials: Never stays usable
    res = smckit.run(model, n, seed=5, policy=POLICIES[policy], history="none")
    ratio = np.exp(res.log_evidence - kalman_filter(ssm, y).log_likelihood)
    se = ratio.std(ddof=1) / math.sqrt(B)
    assert np.std(res.log_evidence) < 1.0
    assert abs(ratio.mean() - 1.0) < 3 * se, (ratio.mean(), se)


def test_static_model_evidence_is_unbiased_under_each_policy():
    """The same on a model whose evidence is known without a Kalman filter (the potentials of Static)."""
    B, n = 500, 100
    for name in ("never", "always", "ess-below"):
        model = Static([0.5, -0.3, 0.7, 0.4], batch=(B,))
        res = smckit.run(model, n, seed=8, policy=POLICIES[name], history="none")
        ratio = np.exp(res.log_evidence - model.log_evidence)
        assert abs(ratio.mean() - 1.0) < 3 * ratio.std(ddof=1) / math.sqrt(B), name


def test_final_step_never_resamples_and_history_is_consistent():
    _, _, model = lg_model(T=5, batch=(2,))
    res = smckit.run(model, 40, seed=0, policy=Always())
    h = res.history
    assert h.num_steps == 5 and h.resampled.shape == (5, 2)
    assert not h.resampled[0].any() and h.resampled[1:].all()
    assert not np.allclose(res.log_weights, -math.log(40))  # the last weights were not reset
    np.testing.assert_allclose(h.ess[-1], _np(ess_of(res.log_weights)), rtol=1e-12)
    np.testing.assert_allclose(h.log_evidence_increments.sum(0), res.log_evidence, rtol=1e-12)
    np.testing.assert_allclose(_np(np.exp(res.log_weights).sum(-1)), 1.0, rtol=1e-12)


# -- determinism and shift invariance (hypothesis) ---------------------------------------------------------------
_backend_names = st.sampled_from(["numpy", "torch"])
_batches = st.sampled_from([(), (3,), (2, 2)])
_policies = st.sampled_from(list(POLICIES))


def _like(name, dtype="float64"):
    if name == "torch":
        torch = pytest.importorskip("torch")
        return torch.zeros(0, dtype=getattr(torch, dtype))
    return np.zeros(0, dtype=dtype)


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 40),
    batch=_batches,
    policy=_policies,
    lib=_backend_names,
    resampler=st.sampled_from(["systematic", "multinomial"]),
)
def test_equal_seeds_give_bit_identical_results(seed, n, batch, policy, lib, resampler):
    runs = []
    for _ in range(2):
        _, _, model = lg_model(T=6, batch=batch, like=_like(lib))
        runs.append(smckit.run(model, n, seed=seed, policy=POLICIES[policy], resampler=resampler))
    a, b = runs
    for x, y in ((a.particles, b.particles), (a.log_weights, b.log_weights), (a.log_evidence, b.log_evidence)):
        np.testing.assert_array_equal(_np(x), _np(y))
    np.testing.assert_array_equal(a.history.ancestors, b.history.ancestors)
    np.testing.assert_array_equal(a.history.ess, b.history.ess)
    np.testing.assert_array_equal(a.history.resampled, b.history.resampled)


def test_different_seeds_give_different_results():
    _, _, model = lg_model(T=6)
    a = smckit.run(model, 50, seed=1)
    b = smckit.run(model, 50, seed=2)
    assert float(a.log_evidence) != float(b.log_evidence)


@given(
    c=st.floats(-1e3, 1e3, allow_nan=False),
    seed=st.integers(0, 2**32 - 1),
    policy=_policies,
    batch=_batches,
    lib=_backend_names,
)
def test_constant_shift_of_potentials_shifts_evidence_by_c_per_step(c, seed, policy, batch, lib):
    """log Z(G e^c) = log Z(G) + c T exactly (float64: normalised weights, hence resampling, are unchanged)."""
    T = 6
    _, _, model = lg_model(T=T, batch=batch, like=_like(lib))
    base = smckit.run(model, 30, seed=seed, policy=POLICIES[policy])
    shifted = smckit.run(Shifted(model, c), 30, seed=seed, policy=POLICIES[policy])
    diff = _np(shifted.log_evidence) - _np(base.log_evidence)
    scale = max(1.0, abs(c) * T, float(np.max(np.abs(_np(base.log_evidence)))))
    np.testing.assert_allclose(diff, c * T, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(_np(shifted.log_weights), _np(base.log_weights), atol=1e-9)
    np.testing.assert_allclose(
        shifted.history.log_evidence_increments - base.history.log_evidence_increments, c, atol=1e-9 * max(1.0, abs(c))
    )


# -- batch rows are independent populations ------------------------------------------------------------------------
class TwoRows(FeynmanKac):
    """Row 0 has a flat potential, row 1 a sharp one; particles do not move."""

    num_steps = 6

    def initial(self, n, rng):
        return rng.normal((2, n))

    def propose(self, t, state, rng):
        return state

    def log_potential(self, t, prev, state):
        return np.stack([np.zeros_like(state[0]), -4.0 * state[1] ** 2])


def test_each_row_resamples_on_its_own_ess():
    res = smckit.run(TwoRows(), 100, seed=0, policy=ESSBelow(0.5))
    h = res.history
    assert not h.resampled[:, 0].any() and h.resampled[1:, 1].any()
    t = int(np.flatnonzero(h.resampled[:, 1])[0])
    assert np.any(h.ancestors[t, 1] != np.arange(100))  # the sharp row did resample
    assert np.all(h.ancestors[:, 0] == np.arange(100))  # the flat row kept its particles
    np.testing.assert_allclose(res.log_weights[0], -math.log(100), rtol=1e-12)
    assert res.log_evidence[0] == 0.0 and res.log_evidence[1] < -1.0
    np.testing.assert_allclose(h.ess[:, 0], 100.0, rtol=1e-12)


def test_batch_rows_are_uncorrelated():
    """Identical rows (same data) give distinct, uncorrelated estimates.

    Batch (R, 2): the sample correlation of log Z between the two columns over R independent pairs has standard
    deviation about 1/sqrt(R) under independence; a bug sharing random draws between rows (the same normals or
    the same resampling uniforms) drives it towards 1. Bound: 4/sqrt(R).
    """
    R = 300
    _, _, model = lg_model(T=15, batch=(R, 2))
    for policy in ("always", "ess-below"):
        log_z = smckit.run(model, 64, seed=21, policy=POLICIES[policy], history="none").log_evidence
        assert len(np.unique(log_z)) == 2 * R
        r = np.corrcoef(log_z[:, 0], log_z[:, 1])[0, 1]
        assert abs(r) < 4 / math.sqrt(R), (policy, r)


def test_batched_rows_have_the_spread_of_separate_runs():
    """The variance of log Z over B batched rows matches that of K separate unbatched runs (two-sided F-test at
    level 1e-3, with the quantiles of F(B-1, K-1))."""
    B, K, n = 300, 60, 64
    _, _, model = lg_model(T=15, batch=(B,))
    batched = smckit.run(model, n, seed=31, history="none").log_evidence
    _, _, single = lg_model(T=15)
    separate = np.array([float(smckit.run(single, n, seed=1000 + k, history="none").log_evidence) for k in range(K)])
    f = batched.var(ddof=1) / separate.var(ddof=1)
    lo, hi = stats.f.ppf([5e-4, 1 - 5e-4], B - 1, K - 1)
    assert lo < f < hi, (f, lo, hi)
    # ... and the same centre (Welch, 4 standard errors).
    se = math.sqrt(batched.var(ddof=1) / B + separate.var(ddof=1) / K)
    assert abs(batched.mean() - separate.mean()) < 4 * se


# -- bad input -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "+inf"])
@pytest.mark.parametrize("step", [0, 3])
def test_nan_or_plus_inf_potential_raises_naming_step_and_count(backend, bad, step):
    def poison(t, log_g):
        xp = namespace(log_g)
        idx = xp.arange(log_g.shape[-1], device=None if backend.name == "numpy" else log_g.device)
        mask = xp.broadcast_to((idx % 7) == 2, log_g.shape)  # entries 2, 9, 16, ... of every row
        return xp.where(mask, xp.full_like(log_g, bad), log_g)

    model = Scripted([0.3] * 6, step, poison, batch=(2,), like=backend.like())
    with pytest.raises(InvalidWeightsError) as info:
        smckit.run(model, 20, seed=0)
    err = info.value
    assert err.step == step and err.count == 2 * 3  # 3 poisoned entries (2, 9, 16) in each of 2 rows
    assert f"step {step}" in str(err)


@pytest.mark.parametrize("step", [1, 4])
def test_row_extinction_raises_with_the_partial_result(backend, step):
    def kill_row(t, log_g):
        xp = namespace(log_g)
        row = xp.reshape(xp.arange(3, device=None if backend.name == "numpy" else log_g.device), (3, 1))
        return xp.where(xp.broadcast_to(row == 1, log_g.shape), xp.full_like(log_g, -math.inf), log_g)

    model = Scripted([0.3] * 6, step, kill_row, batch=(3,), like=backend.like())
    with pytest.raises(ExtinctionError) as info:
        smckit.run(model, 25, seed=0)
    err = info.value
    assert err.step == step and err.rows == ((1,),)
    assert f"step {step}" in str(err)
    partial = err.result
    assert partial is not None and partial.history.num_steps == step  # steps 0 .. step-1, nothing lost
    assert tuple(partial.particles.shape) == (3, 25) and tuple(partial.log_evidence.shape) == (3,)
    assert np.all(np.isfinite(_np(partial.log_evidence)))


def test_extinction_at_step_zero():
    model = Scripted([0.3] * 3, 0, lambda t, g: np.full_like(g, -np.inf), batch=(2,))
    with pytest.raises(ExtinctionError) as info:
        smckit.run(model, 10, seed=0)
    assert info.value.step == 0 and info.value.rows == ((0,), (1,))


def test_minus_inf_entries_are_zero_weights_not_errors():
    model = Scripted([0.3] * 4, 2, lambda t, g: np.where(np.arange(g.shape[-1]) < 5, -np.inf, g), batch=(2,))
    res = smckit.run(model, 10, seed=0, policy=Never())
    assert np.all(np.isfinite(res.log_evidence))
    assert np.all(np.isneginf(res.log_weights[:, :5])) and np.all(np.isfinite(res.log_weights[:, 5:]))


@pytest.mark.parametrize(
    "fn,step",
    [
        (lambda t, g: g[..., :-1], 0),  # particle axis too short at step 0
        (lambda t, g: g[..., :-1], 2),  # ... at a later step
        (lambda t, g: g[0], 2),  # batch axis dropped
        (lambda t, g: g[..., None], 1),  # extra trailing axis
        (lambda t, g: float(np.sum(g)), 1),  # not an array
    ],
)
def test_wrong_potential_shapes_raise_shape_error(fn, step):
    model = Scripted([0.3] * 4, step, fn, batch=(2,))
    with pytest.raises(ShapeError, match=f"step {step}"):
        smckit.run(model, 10, seed=0)


def test_wrong_state_or_ancestor_shapes_raise_shape_error():
    class WrongInitial(Static):
        def initial(self, n, rng):
            return {"x": rng.normal((n,)), "y": rng.normal((n + 1,))}

        def log_potential(self, t, prev, state):
            return state["x"]

    with pytest.raises(ShapeError):
        smckit.run(WrongInitial([0.1, 0.2]), 10, seed=0)

    class HalfResampler:
        name, capabilities = "half", smckit.Capabilities()

        def __call__(self, log_w, rng, *, n_out=None):
            return Resampled(np.zeros((*log_w.shape[:-1], log_w.shape[-1] // 2), dtype=np.int64), log_w[..., ::2])

    with pytest.raises(ShapeError):
        smckit.run(Static([0.1, 0.2, 0.3]), 10, seed=0, resampler=HalfResampler(), policy=Always())


def test_mixed_backends_and_dtypes_raise_backend_error():
    torch = pytest.importorskip("torch")
    # A numpy potential for a torch state.
    model = Scripted([0.3] * 3, 0, lambda t, g: g.numpy(), like=torch.zeros(0, dtype=torch.float64))
    with pytest.raises(BackendError):
        smckit.run(model, 10, seed=0)
    # A torch potential for a numpy state.
    model = Scripted([0.3] * 3, 0, lambda t, g: torch.as_tensor(g))
    with pytest.raises(BackendError):
        smckit.run(model, 10, seed=0)
    # float32 at step 0, float64 afterwards (numpy and torch).
    for like in (np.zeros(0, dtype=np.float32), torch.zeros(0, dtype=torch.float32)):
        xp = namespace(like)
        model = Scripted([0.3] * 3, 2, lambda t, g, xp=xp: xp.astype(g, xp.float64), like=like)
        with pytest.raises(BackendError, match="step 2"):
            smckit.run(model, 10, seed=0)
    # Integer potentials are not log-weights.
    model = Scripted([0.3] * 3, 0, lambda t, g: np.zeros(g.shape, dtype=np.int64))
    with pytest.raises(BackendError):
        smckit.run(model, 10, seed=0)


def test_mixed_devices_raise_backend_error():
    torch = pytest.importorskip("torch")
    # Without a GPU, torch's "meta" device stands in for "another device": the engine must refuse it all the same.
    other = "cuda" if torch.cuda.is_available() else "meta"
    model = Scripted([0.3] * 3, 1, lambda t, g: g.to(other), like=torch.zeros(0, dtype=torch.float32))
    with pytest.raises(BackendError, match="step 1"):
        smckit.run(model, 10, seed=0)


class RebirthResampler:
    """Multinomial resampling that marks every particle whose ancestor is not itself as reborn."""

    name, capabilities, rebirth_noise = "reborn-multinomial", smckit.Capabilities(), 0.25

    def __init__(self):
        self.inner = make_resampler("multinomial")

    def __call__(self, log_w, rng, *, n_out=None):
        out = self.inner(log_w, rng)
        reborn = out.ancestors != np.arange(log_w.shape[-1])
        return Resampled(out.ancestors, out.log_weights, reborn=reborn)


def test_rebirth_noise_with_a_model_without_rebirth_is_an_error():
    with pytest.raises(InvalidArgumentError, match="rebirth"):
        smckit.SMC(Static([0.5, 0.5]), 10, resampler=RebirthResampler())

    class WithRebirth(Static):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.calls: list = []

        def rebirth(self, t, state, mask, scale, rng):
            self.calls.append((t, int(mask.sum()), scale))
            return state + scale * mask

    model = WithRebirth([2.0, 2.0, 2.0], batch=(2,))
    smckit.run(model, 30, seed=0, resampler=RebirthResampler(), policy=Always())
    assert [c[0] for c in model.calls] == [1, 2] and all(c[2] == 0.25 for c in model.calls)
    assert all(c[1] > 0 for c in model.calls)


def test_invalid_arguments():
    model = Static([0.1, 0.2])
    for n in (0, -3, 2.5, True):
        with pytest.raises(InvalidArgumentError):
            smckit.run(model, n, seed=0)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        smckit.run(model, 10, history="everything")
    with pytest.raises(InvalidArgumentError):
        smckit.run(object(), 10)  # type: ignore[arg-type]
