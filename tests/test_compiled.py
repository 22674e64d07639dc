"""The compiled CPU kernels (numba) against the array-API reference: identical ancestors for the same seed, on
numpy arrays and CPU tensors, and the switches that choose between the two paths."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smckit.random import RNG
from smckit.resamplers import SSP, Killing, Multinomial, Residual, Stratified, Systematic, _compiled, use_numba
from smckit.testing.strategies import log_weights, zero_tail_log_weights

pytest.importorskip("numba")  # an optional dependency ([fast], part of [all]); CI installs it
torch = pytest.importorskip("torch")

SCHEMES = [Multinomial, Systematic, Stratified, Residual, SSP, Killing]
ids = [s.name for s in SCHEMES]


def host(x):
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def assert_same(got, reference):
    assert np.array_equal(host(got.ancestors), host(reference.ancestors))
    assert np.array_equal(host(got.log_weights), host(reference.log_weights))
    assert (got.reborn is None) == (reference.reborn is None)
    if got.reborn is not None:
        assert np.array_equal(host(got.reborn), host(reference.reborn))
    assert got.info.keys() == reference.info.keys()
    for key in got.info:
        assert np.array_equal(host(got.info[key]), host(reference.info[key]))


def n_out_for(scheme, n, data):
    if not scheme.capabilities.variable_size:
        return None
    return data.draw(st.one_of(st.none(), st.integers(1, 2 * n + 3)), label="n_out")


@settings(max_examples=80, deadline=None)
@given(values=log_weights(max_n=60), seed=st.integers(0, 2**32 - 1), data=st.data())
@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_kernels_match_the_reference_bit_for_bit(scheme, values, seed, data):
    """For a numpy array and for a CPU tensor holding the same values, the kernel path returns exactly what the
    numpy reference returns: same draws, same arithmetic, same order."""
    n_out = n_out_for(scheme, values.shape[-1], data)
    rngs = [RNG(seed) for _ in range(3)]
    with use_numba(False):
        reference = scheme()(values, rngs[0], n_out=n_out)
    with use_numba(True):
        from_numpy = scheme()(values, rngs[1], n_out=n_out)
        from_torch = scheme()(torch.from_numpy(values), rngs[2], n_out=n_out)
    assert_same(from_numpy, reference)
    assert_same(from_torch, reference)
    # The kernels draw inside numba from the same numpy Generator: the stream must be left where the reference
    # leaves it, so that everything drawn afterwards is the same too.
    after = [rng.uniform(4).tolist() for rng in rngs]
    assert after[1] == after[0] and after[2] == after[0]
    assert isinstance(from_torch.ancestors, torch.Tensor) and from_torch.ancestors.dtype == torch.int64
    assert from_torch.log_weights.dtype == getattr(torch, str(values.dtype))


@settings(max_examples=25, deadline=None)
@given(values=zero_tail_log_weights(max_n=300), seed=st.integers(0, 2**32 - 1))
@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_kernels_match_with_long_zero_tails(scheme, values, seed):
    """Crowded buckets (many equal cumulative weights) take the kernels' scan fallback."""
    with use_numba(False):
        reference = scheme()(values, RNG(seed))
    assert_same(scheme()(values, RNG(seed)), reference)


@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_kernels_match_on_a_large_batch(scheme):
    values = np.random.default_rng(3).standard_normal((3, 2, 5000)) * 3.0
    values[0, 1, 100:4000] = -np.inf
    with use_numba(False):
        reference = scheme()(values, RNG(11))
    assert_same(scheme()(values, RNG(11)), reference)


def test_the_switch_is_scoped_and_per_thread():
    assert _compiled.enabled()
    seen = {}

    def other_thread():
        seen["other"] = _compiled.enabled()

    with use_numba(False):
        assert not _compiled.enabled()
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        with use_numba(True):
            assert _compiled.enabled()
        assert not _compiled.enabled()
    assert _compiled.enabled()
    assert seen["other"] is True


def test_environment_variable_turns_the_kernels_off():
    code = "from smckit.resamplers import _compiled; print(_compiled.available(), _compiled.enabled())"
    env_off = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"SMCKIT_NUMBA": "0", **_env()}
    )
    assert env_off.stdout.split() == ["True", "False"]


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k != "SMCKIT_NUMBA"}


def test_accelerator_inputs_never_take_the_kernels():
    """Only host memory goes to the kernels: a tensor on another device keeps the array-API path (the meta
    device stands in for an accelerator here)."""
    from smckit.resamplers.kit import prepare

    prep = prepare(torch.zeros(4, device="meta"), RNG(0), None, name="t", variable_size=True)
    assert not prep.compiled and not prep.torch_output


def test_killing_and_residual_draw_only_what_the_rows_need():
    """On the host the multinomial stage draws max(deaths) + 1 (killing) or max(rest) + 1 (residual)
    exponentials, not n + 1: the random stream then advances by exactly that much."""
    values = np.log(np.array([[0.5, 0.5, 1e-300, 1e-300]]))
    rng = RNG(5)
    out = Killing()(values, rng)
    deaths = int(out.info["deaths"][0])
    replay = RNG(5)
    replay.uniform((1, 4))
    replay.exponential((1, deaths + 1))
    assert rng.uniform(3).tolist() == replay.uniform(3).tolist()


def test_refill_survives_extreme_but_valid_weights():
    """Subnormal or huge weights are rescaled by the row maximum: no NaN position, no zero-weight parent."""
    from smckit.resamplers import refill

    killed = np.array([True, False, False])
    for weights in (np.array([0.0, 1e-310, 1e-310]), np.array([0.0, 1e308, 1e308])):
        for flag in (True, False):
            with use_numba(flag):
                a = refill(weights, killed, 0)
            assert a[0] in (1, 2) and a[1:].tolist() == [1, 2]
    with use_numba(False):  # an all-zero row is fine where nothing is killed
        a = refill(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[False, False], [True, False]]), 0)
    assert a[0].tolist() == [0, 1] and a[1, 0] in (0, 1)


def test_refill_matches_the_reference_row_by_row():
    """Rows with different numbers of killed slots: each row draws max(deaths) + 1 exponentials, uses its own
    share, and the stream ends where the reference's ends."""
    from smckit.resamplers import refill

    gen = np.random.default_rng(8)
    weights = gen.exponential(size=(4, 3, 700)) * (gen.random((4, 3, 700)) < 0.6)
    weights[..., 0] += 1.0
    killed = gen.random((4, 3, 700)) < gen.random((4, 3, 1))
    killed[1, 2] = False
    rngs = [RNG(2), RNG(2)]
    with use_numba(False):
        reference = refill(weights, killed, rngs[0])
    got = refill(weights, killed, rngs[1])
    assert np.array_equal(got, reference)
    assert rngs[0].uniform(3).tolist() == rngs[1].uniform(3).tolist()
    assert (weights[(*killed.nonzero()[:2], reference[killed])] > 0).all()


@pytest.mark.parametrize("scheme", [Multinomial, Residual, Killing], ids=["multinomial", "residual", "killing"])
def test_scratch_tables_are_per_thread_and_never_returned(scheme):
    """The sorted-draws tables are kept for a thread's next call: threads running at once must not share them,
    and no output may alias them (a later call would overwrite it)."""
    values = np.random.default_rng(4).standard_normal((2, 20000))
    expected = [scheme()(values, RNG(seed)).ancestors for seed in range(4)]
    got: dict[int, np.ndarray] = {}

    def work(seed):
        for _ in range(3):
            got[seed] = scheme()(values, RNG(seed)).ancestors

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed in range(4):
        assert np.array_equal(got[seed], expected[seed])
    kept = [b for b in _compiled._scratch.__dict__.get("buffers", {}).values()]
    assert kept and not any(np.shares_memory(expected[0], b) for b in kept)


def test_a_kept_buffer_is_reused_only_when_nothing_else_holds_it():
    take = _compiled.buffer
    first = take("test-slot", 10, np.float64)
    assert not np.shares_memory(first, take("test-slot", 10, np.float64))  # still held: a fresh one
    del first
    view = take("test-slot", 10, np.float64).reshape(2, 5)[1:]
    assert not np.shares_memory(view, take("test-slot", 10, np.float64))  # a view keeps its base alive
    del view
    address = _compiled._scratch.buffers["test-slot"].ctypes.data  # (holding the buffer would block its reuse)
    again = take("test-slot", 8, np.float64)
    assert again.ctypes.data == address and again.shape == (8,)
    assert take("test-slot", 8, np.int32).dtype == np.int32  # another dtype: fresh, never a reinterpretation


def test_ssp_and_residual_agree_between_numpy_and_cpu_tensors():
    """torch's CPU exp differs from numpy's in the last bit for about 0.5% of these values, so the array-API
    path sees slightly different weights for a tensor; the ancestors must not change. (Before SSP's pairing was
    made continuous, 16 of these 100 seeds gave different SSP ancestors.) The compiled path must agree too."""
    torch = pytest.importorskip("torch")
    for scheme in (SSP, Residual):
        for seed in range(100):
            values = np.random.default_rng(seed).standard_normal(1000)
            with use_numba(False):
                reference = scheme()(values, RNG(seed)).ancestors
                from_torch = scheme()(torch.from_numpy(values), RNG(seed)).ancestors
            assert np.array_equal(from_torch.numpy(), reference), (scheme.name, seed)
            with use_numba(True):  # (the reference path again where numba is missing)
                assert np.array_equal(scheme()(values, RNG(seed)).ancestors, reference), (scheme.name, seed)
