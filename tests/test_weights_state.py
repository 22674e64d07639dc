"""Property tests (hypothesis) of the log-space weight helpers and of state.take."""

from __future__ import annotations

import dataclasses
from collections import namedtuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp as scipy_logsumexp

from smckit import weights as W
from smckit.errors import ExtinctionError, InvalidWeightsError, ShapeError
from smckit.state import leaves, take, tree_map
from smckit.testing.strategies import EXACT_SHIFTS, batch_shapes, finite_log_weights, log_weights, to_backend

BACKENDS = st.sampled_from(["numpy", "torch"])


def host(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def ulp_tol(values: np.ndarray, k: float = 8.0) -> float:
    """k ulps of the largest finite magnitude in ``values``, in their dtype (at least k ulps of 1)."""
    finite = np.abs(values[np.isfinite(values)])
    top = max(float(finite.max()) if finite.size else 1.0, 1.0)
    return k * float(np.spacing(values.dtype.type(top)))


def reference_lse(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return scipy_logsumexp(values.astype(np.float64), axis=-1)


# -- weights -------------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(values=log_weights(max_n=40), backend=BACKENDS)
def test_logsumexp_matches_reference(values, backend):
    got = host(W.logsumexp(to_backend(values, backend)))
    assert got.shape == values.shape[:-1]
    assert got.dtype == values.dtype
    np.testing.assert_allclose(got, reference_lse(values), rtol=0, atol=ulp_tol(values))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 20), batch=batch_shapes(), backend=BACKENDS)
def test_all_minus_inf_rows_give_minus_inf_not_nan(n, batch, backend):
    values = np.full((*batch, n), -np.inf)
    out = host(W.logsumexp(to_backend(values, backend)))
    assert np.all(np.isneginf(out))
    assert np.all(host(W.extinct_rows(to_backend(values, backend))))
    with pytest.raises(ExtinctionError):
        W.check_not_extinct(to_backend(values, backend), step=3)


def test_logsumexp_of_zero_weights_does_not_warn():
    assert np.isneginf(W.logsumexp(np.full(3, -np.inf)))


@settings(max_examples=60, deadline=None)
@given(values=log_weights(max_n=40, shift=False), shift=st.sampled_from(EXACT_SHIFTS), backend=BACKENDS)
def test_shift_invariance_of_normalise_and_ess(values, shift, backend):
    """log_normalise and ess ignore a common shift up to their present accuracy: a few ulps of |log w|, which
    includes the shift (see test_normalise_and_ess_are_exactly_shift_invariant for the stricter property)."""
    shifted = values + values.dtype.type(shift)
    x, y = to_backend(values, backend), to_backend(shifted, backend)
    tol = ulp_tol(shifted)
    a, b = host(W.log_normalise(x)), host(W.log_normalise(y))
    assert np.array_equal(np.isneginf(a), np.isneginf(b))
    finite = np.isfinite(a)
    np.testing.assert_allclose(b[finite], a[finite], rtol=0, atol=4 * tol)
    ess_a, ess_b = host(W.ess(x)), host(W.ess(y))
    n = values.shape[-1]
    # ESS = exp(2 lse(w) - lse(2w)): an absolute error d in the log-sums is a relative error about 3d.
    np.testing.assert_allclose(ess_b, ess_a, rtol=min(1.0, 12 * tol), atol=0)
    eps = np.finfo(values.dtype).eps
    assert np.all(ess_a >= 1 - 64 * eps) and np.all(ess_a <= n * (1 + 64 * eps))


@settings(max_examples=60, deadline=None)
@given(values=log_weights(max_n=40, shift=False), shift=st.sampled_from(EXACT_SHIFTS), backend=BACKENDS)
def test_normalise_and_ess_are_exactly_shift_invariant(values, shift, backend):
    """The property a log-space normaliser should have: an exact shift changes nothing, bit for bit."""
    shifted = values + values.dtype.type(shift)
    x, y = to_backend(values, backend), to_backend(shifted, backend)
    np.testing.assert_array_equal(host(W.log_normalise(y)), host(W.log_normalise(x)))
    np.testing.assert_array_equal(host(W.ess(y)), host(W.ess(x)))


@settings(max_examples=60, deadline=None)
@given(values=log_weights(max_n=40), backend=BACKENDS)
def test_normalise_sums_to_one_and_ess_matches_definition(values, backend):
    x = to_backend(values, backend)
    w = host(W.normalise(x)).astype(np.float64)
    eps = float(np.finfo(values.dtype).eps)
    n = values.shape[-1]
    # Each log W_i = log w_i - lse carries a round-off of a few ulps of |log w| (up to 1e5 here), i.e. a
    # relative error of the same size in W_i; summing adds n eps.
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, rtol=0, atol=ulp_tol(values) + 4 * n * eps)
    assert np.all(w[np.isneginf(values)] == 0)
    ref = np.exp(values.astype(np.float64) - reference_lse(values)[..., None])
    ess_ref = 1.0 / np.sum(ref**2, axis=-1)
    # ess = exp(2 lse(w) - lse(2w)) rounds at the magnitude of 2 |log w|: a relative error of a few ulps of it.
    np.testing.assert_allclose(host(W.ess(x)), ess_ref, rtol=2 * ulp_tol(values) + 64 * eps)
    np.testing.assert_allclose(
        host(W.log_mean_exp(x)), reference_lse(values) - np.log(n), rtol=0, atol=ulp_tol(values) + 4 * eps * np.log(n)
    )
    # ESS counts only the particles with positive weight.
    assert np.all(host(W.ess(x)) <= np.isfinite(values).sum(axis=-1) * (1 + 64 * eps))


@settings(max_examples=40, deadline=None)
@given(values=finite_log_weights(max_n=20, batch=st.integers(2, 5).map(lambda k: (k,))), backend=BACKENDS)
def test_weight_rows_are_independent(values, backend):
    """Each row of a batch gives what it gives alone: no normalisation across rows."""
    x = to_backend(values, backend)
    batched = [host(W.log_normalise(x)), host(W.ess(x)), host(W.logsumexp(x))]
    for r in range(values.shape[0]):
        alone = to_backend(values[r], backend)
        np.testing.assert_allclose(batched[0][r], host(W.log_normalise(alone)), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(batched[1][r], host(W.ess(alone)), rtol=1e-12)
        np.testing.assert_allclose(batched[2][r], host(W.logsumexp(alone)), rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    values=finite_log_weights(max_n=20, zeros=False), where=st.integers(0, 19), bad=st.sampled_from([np.nan, np.inf])
)
def test_invalid_values_are_rejected_and_minus_inf_accepted(values, where, bad):
    W.check_finite_or_minus_inf(np.where(np.arange(values.shape[-1]) == 0, -np.inf, values), step=1)
    flat = values.reshape(-1)
    flat[where % flat.size] = bad
    with pytest.raises(InvalidWeightsError) as info:
        W.check_finite_or_minus_inf(flat.reshape(values.shape), step=4)
    assert info.value.step == 4 and info.value.count == 1


# -- state.take ------------------------------------------------------------------------------------------------
Pair = namedtuple("Pair", ["left", "right"])


@dataclasses.dataclass
class Particles:
    position: object
    extra: object
    label: str = dataclasses.field(default="fixed", init=False)


def _identity_leaf(batch, n, event, code, backend):
    """A leaf whose entry for (row r, particle i) encodes r, i and the leaf's own code, broadcast over event."""
    rows = int(np.prod(batch, dtype=np.int64))
    ident = (np.arange(rows)[:, None] * 1000 + np.arange(n)[None, :]) * 10 + code
    ident = ident.reshape(*batch, n, *([1] * len(event)))
    return to_backend(np.broadcast_to(ident, (*batch, n, *event)).astype(np.float64).copy(), backend)


@st.composite
def nested_states(draw):
    batch = draw(batch_shapes(max_rows=4))
    n = draw(st.integers(1, 12))
    backend = draw(BACKENDS)
    events = draw(st.lists(st.lists(st.integers(1, 3), max_size=2).map(tuple), min_size=5, max_size=5))
    mk = [(_identity_leaf(batch, n, e, code, backend)) for code, e in enumerate(events)]
    state = {"x": mk[0], "more": [mk[1], Pair(mk[2], None)], "p": Particles(mk[3], (mk[4],))}
    return state, batch, n, backend


@settings(max_examples=60, deadline=None)
@given(data=nested_states(), n_out=st.integers(1, 15), seed=st.integers(0, 2**32 - 1))
def test_take_permutes_every_leaf_identically(data, n_out, seed):
    state, batch, n, backend = data
    rows = int(np.prod(batch, dtype=np.int64))
    anc = np.random.default_rng(seed).integers(0, n, (*batch, n_out))
    out = take(state, to_backend(anc, backend))
    assert type(out) is dict and isinstance(out["more"][1], Pair) and out["more"][1].right is None
    assert isinstance(out["p"], Particles) and out["p"].label == "fixed"
    expected = (np.arange(rows).reshape(*batch, 1) * 1000 + anc) * 10
    for code, leaf in enumerate(leaves(out)):
        got = host(leaf)
        assert got.shape[: len(batch) + 1] == (*batch, n_out)
        assert type(leaf) is type(leaves(state)[code])
        ident = got.reshape(*batch, n_out, -1)
        assert np.all(ident == (expected + code)[..., None]), f"leaf {code} was not permuted like the others"


@settings(max_examples=40, deadline=None)
@given(data=nested_states(), seed=st.integers(0, 2**32 - 1))
def test_take_rows_are_independent(data, seed):
    """Row r of take(state, ancestors) is take(row r of state, row r of ancestors)."""
    state, batch, n, backend = data
    if not batch:
        return
    anc = np.random.default_rng(seed).integers(0, n, (*batch, n))
    whole = take(state, to_backend(anc, backend))
    for idx in np.ndindex(*batch):
        row_state = tree_map(lambda leaf, idx=idx: leaf[idx], state)
        alone = take(row_state, to_backend(anc[idx], backend))
        for a, b in zip(leaves(alone), leaves(whole)):
            np.testing.assert_array_equal(host(a), host(b)[idx])


def test_take_rejects_a_leaf_with_another_batch_shape():
    state = {"a": np.zeros((2, 5, 3)), "b": np.zeros((3, 5))}
    with pytest.raises(ShapeError, match="expected"):
        take(state, np.zeros((2, 5), dtype=np.int64))
