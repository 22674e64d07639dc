"""The conformance kit itself: it passes correct schemes and fails broken ones, each with the right check."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from smckit.errors import ExtinctionError, InvalidArgumentError, InvalidWeightsError
from smckit.random import RNG
from smckit.resamplers import Capabilities, Multinomial, Resampled, Systematic
from smckit.testing import CHECKS, ConformanceError, ConformanceReport, check_resampler

FAST = {"backends": ("numpy",), "dtypes": ("float64",), "large": False, "examples": 15, "replicates": 600}


def _only(*groups):
    return [c for c in CHECKS if c not in groups]


class _Wrapped:
    """A broken scheme built on a correct one; subclasses override ``transform`` or ``__call__``."""

    name = "broken"
    capabilities = Capabilities()

    def __init__(self, inner=None):
        self.inner = inner or Multinomial()

    def transform(self, ancestors, log_weights):
        return ancestors

    def __call__(self, log_weights, rng, *, n_out=None):
        out = self.inner(log_weights, rng, n_out=n_out)
        return Resampled(self.transform(out.ancestors, log_weights), out.log_weights, out.reborn, out.info)


class CopiesOfOneDraw(_Wrapped):
    """n copies of one multinomial draw: unbiased, with n times multinomial's variance (PITFALLS)."""

    name = "copies-of-one-draw"

    def __call__(self, log_weights, rng, *, n_out=None):
        one = self.inner(log_weights, rng, n_out=1).ancestors
        shape = (*one.shape[:-1], n_out or log_weights.shape[-1])
        return Resampled(np.broadcast_to(one, shape).copy(), np.zeros(shape))


class OffByOne(_Wrapped):
    name = "off-by-one"

    def transform(self, ancestors, log_weights):
        return (ancestors + 1) % log_weights.shape[-1]


class OffByOneNoWrap(_Wrapped):
    name = "off-by-one-no-wrap"

    def transform(self, ancestors, log_weights):
        return ancestors + 1


class FloatAncestors(_Wrapped):
    name = "float-ancestors"

    def transform(self, ancestors, log_weights):
        return ancestors.astype(np.float64)


class DropsOne(_Wrapped):
    name = "drops-one"

    def transform(self, ancestors, log_weights):
        return ancestors[..., 1:]


class SumsInInputDtype:
    """Systematic resampling that sums the weights in the input's dtype: in float16 the sum of 70,000 equal weights
    overflows (PITFALLS), the cumulative weights become 0 and every position falls past the end."""

    name = "sums-in-input-dtype"
    capabilities = Capabilities(count_bounds="floor_ceil")

    def __call__(self, log_weights, rng, *, n_out=None):
        lw = np.asarray(log_weights)
        n = lw.shape[-1]
        out = []
        for row in lw.reshape(-1, n):
            w = np.exp(row - row.max())
            with np.errstate(over="ignore"):
                cum = np.cumsum(w) / np.sum(w)
            out.append(np.searchsorted(cum, (np.arange(n) + rng.uniform(1)[0]) / n))
        return Resampled(np.stack(out).reshape(lw.shape), np.zeros(lw.shape, lw.dtype))


class ClaimsFloorCeil(_Wrapped):
    """Multinomial declaring the systematic bound."""

    name = "claims-floor-ceil"
    capabilities = Capabilities(count_bounds="floor_ceil")


class ClaimsSorted(_Wrapped):
    name = "claims-sorted"
    capabilities = Capabilities(sorted_ancestors=True)

    def transform(self, ancestors, log_weights):
        return ancestors[..., ::-1].copy()


class ClaimsFixedSize(_Wrapped):
    """Declares variable_size=False but accepts any n_out."""

    name = "claims-fixed-size"
    capabilities = Capabilities(variable_size=False)


class NaiveFloat32Systematic:
    """Float32 cumulative sum, unguarded search, clamped index: picks zero weights at the end of the vector."""

    name = "naive-float32"
    capabilities = Capabilities(count_bounds=None)

    def __call__(self, log_weights, rng, *, n_out=None):
        x = np.asarray(log_weights, dtype=np.float32)
        if np.all(np.isneginf(x)):
            raise ExtinctionError("all zero", step=-1)
        n = x.shape[-1]
        w = np.exp(x - x.max(axis=-1, keepdims=True))
        w = w / w.sum(axis=-1, keepdims=True, dtype=np.float32)
        c = np.cumsum(w, axis=-1, dtype=np.float32)
        u = (rng.uniform((1,))[0] + np.arange(n)) / n
        a = np.minimum(np.searchsorted(c, u, side="right"), n - 1)
        return Resampled(a, np.zeros(x.shape, x.dtype))


class DeterministicSystematic(Systematic):
    """Systematic with the uniform fixed at 0.5: floor/ceil bounds hold, the mean does not."""

    name = "fixed-uniform"

    def __call__(self, log_weights, rng, *, n_out=None):
        class Half(RNG):
            def uniform(self, shape, *, like=None, dtype=None):
                return np.full(shape, 0.5)

        return super().__call__(log_weights, Half(0), n_out=n_out)


class SharedUniform(Systematic):
    """Systematic with one uniform shared by every batch row: each row fine, rows not independent."""

    name = "shared-uniform"

    def __call__(self, log_weights, rng, *, n_out=None):
        u = rng.uniform((1, 1))

        class Shared(RNG):
            def uniform(self, shape, *, like=None, dtype=None):
                return np.broadcast_to(u, shape)

        return super().__call__(log_weights, Shared(0), n_out=n_out)


class NotShiftInvariant(_Wrapped):
    """Consumes random numbers depending on the level of the weights."""

    name = "not-shift-invariant"

    def __call__(self, log_weights, rng, *, n_out=None):
        lw = np.asarray(log_weights)
        level = np.max(lw[np.isfinite(lw)])
        rng.uniform((int(abs(level)) % 7 + 1,), like=log_weights)  # from the stream the inner scheme uses
        return self.inner(log_weights, rng, n_out=n_out)


class NoErrors(_Wrapped):
    """Returns index 0 for an all -inf row instead of raising."""

    name = "no-errors"

    def __call__(self, log_weights, rng, *, n_out=None):
        lw = np.asarray(log_weights)
        if np.isneginf(lw).all() or np.isnan(lw).any() or np.isposinf(lw).any():
            shape = (*lw.shape[:-1], n_out or lw.shape[-1])
            return Resampled(np.zeros(shape, np.int64), np.zeros(shape))
        return self.inner(log_weights, rng, n_out=n_out)


class NumpyOnly(_Wrapped):
    """Returns numpy arrays for torch input."""

    name = "numpy-only"

    def __call__(self, log_weights, rng, *, n_out=None):
        lw = np.asarray(log_weights.detach().cpu() if hasattr(log_weights, "detach") else log_weights)
        return self.inner(lw, rng, n_out=n_out)


class FixedSizeKilling(_Wrapped):
    """A correct scheme keeping n: the kit must accept it and check that n_out != n is refused."""

    name = "fixed-size"
    capabilities = Capabilities(variable_size=False)

    def __call__(self, log_weights, rng, *, n_out=None):
        if n_out is not None and n_out != log_weights.shape[-1]:
            raise InvalidArgumentError("n_out must equal n")
        return self.inner(log_weights, rng)


@pytest.mark.parametrize(
    ("broken", "kwargs", "message"),
    [
        (CopiesOfOneDraw, {}, "variance"),
        (OffByOne, {}, "weight zero"),
        (OffByOneNoWrap, {}, "out of range"),
        (FloatAncestors, {}, "integer dtype"),
        (DropsOne, {}, "shape"),
        (ClaimsFloorCeil, {}, "count_bounds='floor_ceil'"),
        (ClaimsSorted, {}, "sorted_ancestors"),
        (ClaimsFixedSize, {}, "variable_size=False"),
        (DeterministicSystematic, {"skip": _only("statistics")}, "unbiasedness"),
        (SharedUniform, {"skip": _only("statistics"), "replicates": 4000}, "rows independent"),
        (NotShiftInvariant, {"skip": _only("shift")}, "shift invariance"),
        (NoErrors, {"skip": _only("errors")}, "errors"),
        (SumsInInputDtype, {"skip": _only("half")}, "half precision float16, equal n=70000"),
    ],
    ids=lambda p: p.name if isinstance(p, type) else None,
)
def test_broken_resamplers_fail_the_kit(broken, kwargs, message):
    with pytest.raises(ConformanceError, match=message) as info:
        check_resampler(broken, **{**FAST, **kwargs})
    assert broken.name in str(info.value)
    assert isinstance(info.value, AssertionError)


def test_naive_float32_fails_the_large_case():
    with pytest.raises(ConformanceError, match=r"float32 n=1000000.*weight zero were selected"):
        check_resampler(NaiveFloat32Systematic, backends=("numpy",), dtypes=("float32",), skip=_only("large"))


def test_torch_output_must_stay_torch():
    pytest.importorskip("torch")
    with pytest.raises(ConformanceError, match="came back as ndarray"):
        check_resampler(NumpyOnly, **{**FAST, "backends": ("torch",)})


def test_a_correct_fixed_size_scheme_passes():
    report = check_resampler(FixedSizeKilling(), **FAST)
    assert isinstance(report, ConformanceReport)
    assert "statistics [numpy float64]" in report.passed


def test_instances_factories_and_report():
    report = check_resampler(Systematic(), **FAST)
    assert report.name == "systematic" and "interface" in report.passed
    assert "conformance of 'systematic'" in str(report)
    report = check_resampler(lambda: Systematic(), **{**FAST, "statistical": False})
    assert not any("statistics" in p for p in report.passed)


def test_unknown_check_and_bad_interface():
    with pytest.raises(ValueError, match="unknown check group"):
        check_resampler(Systematic, skip=["nope"])

    class NoCaps:
        name = "nocaps"

        def __call__(self, log_weights, rng, *, n_out=None):
            return None

    with pytest.raises(ConformanceError, match="capabilities"):
        check_resampler(NoCaps)


def test_undeclared_backend_is_skipped_and_reported():
    class NumpyScheme(_Wrapped):
        name = "numpy-scheme"
        capabilities = Capabilities(backends=("numpy",))

    report = check_resampler(NumpyScheme, **{**FAST, "backends": ("numpy", "torch")})
    assert any(s.startswith("torch") for s in report.skipped)


def test_kit_runs_without_hypothesis(monkeypatch):
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    monkeypatch.delitem(sys.modules, "smckit.testing.strategies", raising=False)
    report = check_resampler(Systematic, **{**FAST, "statistical": False})
    assert any("hypothesis not installed" in p for p in report.passed)
    with pytest.raises(ConformanceError, match="shift invariance"):
        check_resampler(NotShiftInvariant, **{**FAST, "skip": _only("shift")})


def test_errors_are_the_documented_ones():
    r = Systematic()
    with pytest.raises(ExtinctionError):
        r(np.full(3, -np.inf), RNG(0))
    with pytest.raises(InvalidWeightsError):
        r(np.array([np.nan, 0.0]), RNG(0))
