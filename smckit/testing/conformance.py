"""The conformance kit: every exact property and the declared statistical properties of a resampler.

Plugin authors call :func:`check_resampler` from their own tests:

.. code-block:: python

    from smckit.testing import check_resampler
    from my_plugin import MyScheme

    def test_my_scheme_conforms():
        check_resampler(MyScheme)             # a class / factory, or an instance

It is a plain function: it raises :class:`ConformanceError` (an ``AssertionError``) with a message naming the
scheme, the backend, the dtype, the check and the input, and returns a :class:`ConformanceReport` otherwise.
hypothesis is optional: when it is installed the exact checks also run on generated inputs
(:mod:`smckit.testing.strategies`, derandomised, so every run sees the same examples); without it they run on
a fixed set of numpy-generated inputs.

Exact checks (every scheme):
    the interface (``name``, ``capabilities``); output shapes, integer ancestors, backend and device kept;
    indices in range; a zero weight (``-inf``) is never selected, also at the start and at the end of the
    vector and in float32 with n = 10**6 (where a float32 cumulative sum ends below the last uniform); one-hot
    rows; n = 1; ``n_out != n`` (allowed or refused with InvalidArgumentError, as declared); errors on rows
    that are all ``-inf`` or hold NaN; the same seed gives the same ancestors; shift invariance (a shift of the
    log-weights that is exact in floating point leaves the offspring counts unchanged); batch rows checked one
    by one, degenerate rows next to ordinary ones; half precision: float16 (numpy, torch) and bfloat16 (torch)
    log-weights are accepted and keep every exact property, 70,000 equal weights included (their float16 sum
    overflows: a scheme must widen before it sums, e.g. with :func:`smckit.resamplers.kit.float32_or_wider`).
Declared exact checks:
    ``count_bounds`` ("floor_ceil": every count is floor or ceil of ``n_out W_i``; "at_least_floor": at
    least the floor); ``sorted_ancestors``; ``uniform_output_weights``.
Statistical checks (fixed seeds; tolerances from the Monte Carlo error, see :func:`_check_statistics`):
    when ``unbiased`` is declared, mean offspring counts equal ``n_out W_i`` (Bonferroni-corrected z-tests),
    for n_out = n and, if allowed, n_out != n; the summed count variance is not above multinomial's (this
    rejects "n copies of one draw", which is unbiased too); batch rows are uncorrelated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from smckit.backend import to_host
from smckit.errors import ExtinctionError, InvalidArgumentError, InvalidWeightsError, SMCError
from smckit.random import RNG
from smckit.resamplers.base import Capabilities, Resampled

__all__ = ["CHECKS", "ConformanceError", "ConformanceReport", "check_resampler"]

CHECKS = (
    "interface",
    "fixed",
    "errors",
    "generated",
    "shift",
    "large",
    "half",
    "statistics",
)
"""Names of the check groups; pass some of them in ``skip=`` to leave them out."""

# Weights of the statistical checks: a zero, a tiny weight, and n_out * W_i away from integers for most i.
_STAT_WEIGHTS = np.array([0.05, 0.30, 0.0, 0.15, 0.001, 0.25, 0.199, 0.05])


class ConformanceError(AssertionError):
    """A resampler broke a property the conformance kit checks."""


@dataclass
class ConformanceReport:
    """What :func:`check_resampler` ran.

    Attributes
    ----------
    name : str
        The scheme's name.
    passed : list of str
        ``"check [backend dtype device]"`` for every check group that ran and passed.
    skipped : list of str
        Check groups that did not run, with the reason.
    """

    name: str
    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"conformance of {self.name!r}: {len(self.passed)} check group(s) passed"]
        lines += [f"  ok    {p}" for p in self.passed]
        lines += [f"  skip  {s}" for s in self.skipped]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Target:
    backend: str
    dtype: str
    device: str

    def __str__(self) -> str:
        return f"{self.backend} {self.dtype}" + (f" {self.device}" if self.backend == "torch" else "")

    def convert(self, values: np.ndarray, dtype: str | None = None) -> Any:
        dtype = dtype or self.dtype
        if dtype == "bfloat16":  # torch only (numpy has no bfloat16): through float32, which holds it exactly
            import torch

            return torch.as_tensor(np.asarray(values, dtype=np.float32), device=self.device).to(torch.bfloat16)
        arr = np.asarray(values, dtype=dtype)
        if self.backend == "numpy":
            return arr
        import torch

        return torch.as_tensor(arr, device=self.device)


def _describe(values: np.ndarray, limit: int = 12) -> str:
    flat = np.asarray(values, dtype=np.float64)
    body = np.array2string(flat.reshape(-1)[:limit], precision=4, separator=", ")
    more = "" if flat.size <= limit else f" ... ({flat.size} values)"
    return f"log-weights of shape {flat.shape}: {body}{more}"


class _Checker:
    """Runs the checks for one resampler on one target (backend, dtype, device)."""

    def __init__(self, resampler: Any, target: _Target, seed: int):
        self.res = resampler
        self.caps: Capabilities = resampler.capabilities
        self.name = str(resampler.name)
        self.t = target
        self.seed = seed

    # -- helpers --------------------------------------------------------------------------------------
    def fail(self, check: str, message: str, values: np.ndarray | None = None) -> None:
        where = f"[{self.name!r} on {self.t}] {check}: {message}"
        if values is not None:
            where += f"\n  input: {_describe(values)}"
        raise ConformanceError(where)

    def call(self, values: np.ndarray, seed: int, n_out: int | None = None, check: str = "call") -> Resampled:
        x = self.t.convert(values)
        try:
            out = self.res(x, RNG(seed)) if n_out is None else self.res(x, RNG(seed), n_out=n_out)
        except Exception as exc:  # report what raised, on which input
            self.fail(check, f"raised {type(exc).__name__}: {exc}", values)
        if not isinstance(out, Resampled):
            self.fail(check, f"returned {type(out).__name__}, expected smckit.Resampled", values)
        return out

    def counts(self, ancestors: np.ndarray, n: int) -> np.ndarray:
        """Offspring counts, shape (rows, n), from ancestors of shape (*batch, n_out)."""
        flat = ancestors.reshape(-1, ancestors.shape[-1]).astype(np.int64)
        rows = flat.shape[0]
        offset = (np.arange(rows, dtype=np.int64) * n)[:, None]
        return np.bincount((flat + offset).ravel(), minlength=rows * n).reshape(rows, n)

    # -- the per-output validation -------------------------------------------------------------------
    def validate(self, values: np.ndarray, out: Resampled, n_out: int, check: str) -> np.ndarray:
        """Every exact property of one output; returns the counts, shape (rows, n)."""
        values = np.asarray(values, dtype=np.float64)
        batch, n = values.shape[:-1], values.shape[-1]
        anc = out.ancestors
        shape = (*batch, n_out)
        torch_in = self.t.backend == "torch"
        for what, arr in (("ancestors", anc), ("log_weights", out.log_weights)):
            if torch_in != hasattr(arr, "detach"):
                self.fail(check, f"{what} came back as {type(arr).__name__} for a {self.t.backend} input", values)
            if torch_in and arr.device.type != self.t.device.split(":")[0]:
                self.fail(check, f"{what} moved to {arr.device}; it must stay on {self.t.device}", values)
            if tuple(arr.shape) != shape:
                self.fail(check, f"{what} has shape {tuple(arr.shape)}, expected {shape}", values)
        a = to_host(anc)
        if not np.issubdtype(a.dtype, np.integer):
            self.fail(check, f"ancestors have dtype {a.dtype}, expected an integer dtype", values)
        if a.size and (a.min() < 0 or a.max() >= n):
            self.fail(check, f"ancestor indices out of range [0, {n}): min {a.min()}, max {a.max()}", values)
        counts = self.counts(a, n)
        rows = values.reshape(-1, n)
        zero = np.isneginf(rows)
        if np.any(counts[zero] > 0):
            r, i = np.argwhere(zero & (counts > 0))[0]
            self.fail(check, f"particle {i} of row {r} has weight zero (-inf) but got {counts[r, i]} offspring", values)
        lw_out = to_host(out.log_weights)
        if not np.issubdtype(lw_out.dtype, np.floating):
            self.fail(check, f"log_weights have dtype {lw_out.dtype}, expected floating point", values)
        if np.isnan(lw_out).any() or np.isposinf(lw_out).any():
            self.fail(check, "output log_weights hold NaN or +inf", values)
        if self.caps.uniform_output_weights and lw_out.size:
            flat = lw_out.reshape(-1, n_out)
            if not np.all(np.isfinite(flat)) or np.any(flat != flat[:, :1]):
                self.fail(check, "uniform_output_weights is declared but the output log-weights are not equal", values)
        if out.reborn is not None:
            rb = to_host(out.reborn)
            if rb.dtype != np.bool_ or tuple(rb.shape) != shape:
                self.fail(check, f"reborn must be None or a bool array of shape {shape}, got {rb.dtype} {rb.shape}")
        if not isinstance(out.info, dict):
            self.fail(check, f"info must be a dict, got {type(out.info).__name__}", values)
        if self.caps.sorted_ancestors and a.size and np.any(np.diff(a.reshape(-1, n_out), axis=-1) < 0):
            self.fail(check, "sorted_ancestors is declared but the ancestors are not sorted", values)
        self.check_bounds(rows, counts, n_out, check, values)
        return counts

    def check_bounds(self, rows: np.ndarray, counts: np.ndarray, n_out: int, check: str, values: np.ndarray) -> None:
        bound = self.caps.count_bounds
        if bound is None:
            return
        expected = n_out * _normalised(rows)
        # W is recomputed here in float64 from the same input; the two computations differ by a few ulps of
        # n_out * W_i, far below the tolerance, which only matters when n_out * W_i is (nearly) an integer.
        tol = 1e-9 * max(1.0, float(n_out))
        low = np.floor(expected - tol)
        high = np.ceil(expected + tol)
        if bound == "floor_ceil":
            bad = (counts < low) | (counts > high)
            rule = "floor or ceil of n_out*W_i"
        elif bound == "at_least_floor":
            bad = counts < low
            rule = "at least floor(n_out*W_i)"
        else:
            self.fail("interface", f"unknown count_bounds {bound!r}; expected 'floor_ceil', 'at_least_floor' or None")
            return
        if bad.any():
            r, i = np.argwhere(bad)[0]
            self.fail(
                check,
                f"count_bounds={bound!r} is declared ({rule}) but particle {i} of row {r} got {counts[r, i]} "
                f"offspring with n_out*W_i = {expected[r, i]:.6g}",
                values,
            )

    # -- check groups ---------------------------------------------------------------------------------
    def run_fixed(self) -> None:
        """Hand-picked inputs: one-hot, n = 1, equal weights, zeros at both ends, batches, n_out."""
        ninf = -np.inf
        cases: list[tuple[str, np.ndarray]] = [
            ("n=1", np.array([0.25])),
            ("n=1 batch", np.array([[3.0], [-2.0], [1e5]])),
            ("one-hot", np.array([ninf, ninf, 0.0, ninf, ninf])),
            ("one-hot first", np.array([5.0, ninf, ninf, ninf])),
            ("one-hot last", np.array([ninf, ninf, ninf, -7.5])),
            ("one-hot large", np.array([ninf, 1e5, ninf])),
            ("equal", np.zeros(16)),
            ("zeros at the end", np.concatenate([np.linspace(-1.0, 0.0, 29), np.full(3, ninf)])),
            ("zeros at the start", np.concatenate([np.full(3, ninf), np.linspace(-1.0, 0.0, 29)])),
            ("dominant", np.array([0.0, -50.0, -60.0, -745.0, -800.0, ninf])),
            ("subnormal", np.array([-740.0, 0.0, -742.0, -744.0])),
            ("shifted +700", np.log(np.arange(1.0, 9.0)) + 700.0),
            (
                "mixed rows",
                np.array([[0.0, 0.0, 0.0, 0.0, 0.0], [ninf, ninf, 2.0, ninf, ninf], [0.0, -1.0, ninf, -2.0, ninf]]),
            ),
            ("batch (2, 2)", np.log(np.arange(1.0, 25.0)).reshape(2, 2, 6) - np.arange(2.0)[:, None, None]),
        ]
        for label, values in cases:
            n = values.shape[-1]
            sizes: list[int | None] = [None]
            if self.caps.variable_size:
                sizes += [1, n + 3, 2 * n + 1]
            for j, n_out in enumerate(sizes):
                check = f"fixed input {label!r}" + ("" if n_out is None else f", n_out={n_out}")
                out = self.call(values, self.seed + j, n_out, check)
                self.validate(values, out, n if n_out is None else n_out, check)
        if not self.caps.variable_size:
            values = np.zeros(6)
            try:
                self.res(self.t.convert(values), RNG(self.seed), n_out=9)
            except InvalidArgumentError:
                pass
            except Exception as exc:
                self.fail("n_out", f"variable_size=False, n_out != n must raise InvalidArgumentError, got {exc!r}")
            else:
                self.fail("n_out", "variable_size=False is declared but n_out=9 != n=6 was accepted", values)
        # Reproducibility: one seed, one result.
        values = np.log(_STAT_WEIGHTS + 0.01)
        a = to_host(self.call(values, self.seed, None, "reproducible").ancestors)
        b = to_host(self.call(values, self.seed, None, "reproducible").ancestors)
        if not np.array_equal(a, b):
            self.fail("reproducible", "two calls with the same seed gave different ancestors", values)

    def run_errors(self) -> None:
        """All -inf rows raise ExtinctionError; NaN and +inf raise InvalidWeightsError (host backends)."""
        if self.t.device != "cpu":
            return
        for label, values, expected in (
            ("all -inf", np.full(5, -np.inf), ExtinctionError),
            ("one row all -inf", np.array([[0.0, 1.0], [-np.inf, -np.inf]]), ExtinctionError),
            ("NaN", np.array([0.0, np.nan, 1.0]), InvalidWeightsError),
            ("+inf", np.array([0.0, np.inf, 1.0]), InvalidWeightsError),
        ):
            try:
                self.res(self.t.convert(values), RNG(self.seed))
            except expected:
                continue
            except SMCError as exc:
                self.fail("errors", f"input {label!r}: expected {expected.__name__}, got {type(exc).__name__}: {exc}")
            except Exception as exc:
                self.fail("errors", f"input {label!r}: expected {expected.__name__}, got {exc!r}")
            self.fail("errors", f"input {label!r} was accepted; expected {expected.__name__}", values)

    def run_generated(self, examples: int, shift: bool, generated: bool) -> str:
        """Exact properties and shift invariance on generated inputs (hypothesis when installed)."""

        def one(values: np.ndarray, offset: float, seed: int) -> None:
            n = values.shape[-1]
            if generated:
                out = self.call(values, seed, None, "generated input")
                counts = self.validate(values, out, n, "generated input")
                if self.caps.variable_size:
                    n_out = 2 * n + 1
                    self.validate(values, self.call(values, seed, n_out, "generated input"), n_out, "generated n_out")
            if shift:
                shifted = values + offset
                if not np.array_equal(shifted - offset, values):  # not exact: nothing to compare
                    return
                if not generated:
                    counts = self.counts(to_host(self.call(values, seed, None, "shift").ancestors), n)
                moved = self.counts(to_host(self.call(shifted, seed, None, "shift").ancestors), n)
                if not np.array_equal(counts, moved):
                    self.fail(
                        "shift invariance",
                        f"adding {offset:g} to every log-weight (exactly representable) changed the offspring counts "
                        f"with the same seed:\n  before {counts.tolist()}\n  after  {moved.tolist()}",
                        values,
                    )

        # A fixed, non-degenerate case first, so the check never rests on generated inputs that happen to be
        # one-hot or of size one (where every scheme is trivially shift-invariant).
        # (Quarter-integers: shifting them by 512 and back is exact, in float32 too.)
        fixed = np.array([[-3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.25]], dtype=self.t.dtype)
        one(fixed, 512.0, self.seed)
        try:
            from hypothesis import HealthCheck, given, settings
            from hypothesis import strategies as st

            from smckit.testing.strategies import log_weights, shifts
        except ImportError:
            rng = np.random.default_rng(self.seed)
            for k in range(examples):
                one(_fallback_example(rng, self.t.dtype), float(rng.choice([512.0, -700.0, 1e5])), self.seed + k)
            return "numpy examples (hypothesis not installed)"

        @settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(
            values=log_weights(max_n=32, dtype=np.dtype(self.t.dtype).type, shift=True),
            offset=shifts(),
            seed=st.integers(0, 2**31 - 1),
        )
        def generated_case(values: np.ndarray, offset: float, seed: int) -> None:
            one(values, offset, seed)

        generated_case()
        return "hypothesis examples"

    def run_large(self, n: int) -> None:
        """float32, n = 10**6: a float32 cumulative sum ends below the last uniform; zeros at both ends."""
        rng = np.random.default_rng(self.seed)
        values = rng.uniform(-1.0, 0.0, n).astype(np.float32)
        values[rng.choice(n, n // 100, replace=False)] = -np.inf
        values[:3] = -np.inf
        values[-7:] = -np.inf
        for j in range(2):
            check = f"float32 n={n} with zero weights at both ends"
            x = self.t.convert(values, "float32")
            try:
                out = self.res(x, RNG(self.seed + j))
            except Exception as exc:
                self.fail(check, f"raised {type(exc).__name__}: {exc}")
            a = to_host(out.ancestors)
            if tuple(a.shape) != (n,):
                self.fail(check, f"ancestors have shape {a.shape}, expected ({n},)")
            if a.min() < 0 or a.max() >= n:
                self.fail(check, f"ancestor indices out of range [0, {n}): min {a.min()}, max {a.max()}")
            chosen_zero = np.isneginf(values[a])
            if chosen_zero.any():
                idx = np.unique(a[chosen_zero])
                self.fail(check, f"particles with weight zero were selected: indices {idx[:10].tolist()}")

    def run_half(self) -> None:
        """float16 and (torch) bfloat16 log-weights: accepted, with every exact property of :meth:`validate`.

        Inputs: 70,000 equal weights (a float16 sum of their weights is +inf), a spread of weights over a few
        orders of magnitude with zeros at both ends, and a batch of mixed rows. The properties are checked against
        the values the scheme was given (the input rounded to the half-precision dtype).
        """
        ninf = -np.inf
        spread = np.concatenate([[ninf], np.linspace(-12.0, 3.0, 37), [ninf, ninf]])
        mixed = np.array([[0.0, 0.0, 0.0, 0.0, 0.0], [ninf, ninf, 2.0, ninf, ninf], [0.0, -1.0, ninf, -2.5, ninf]])
        cases = [("equal n=70000", np.zeros(70_000)), ("spread", spread), ("mixed rows", mixed)]
        for dtype in ("float16", "bfloat16") if self.t.backend == "torch" else ("float16",):
            for j, (label, values) in enumerate(cases):
                check = f"half precision {dtype}, {label}"
                x = self.t.convert(values, dtype)
                seen = to_host(x).astype(np.float64)  # (bfloat16 comes back as float32, exactly)
                try:
                    out = self.res(x, RNG(self.seed + j))
                except Exception as exc:
                    self.fail(check, f"raised {type(exc).__name__}: {exc}", seen)
                if not isinstance(out, Resampled):
                    self.fail(check, f"returned {type(out).__name__}, expected smckit.Resampled", seen)
                self.validate(seen, out, seen.shape[-1], check)

    def run_statistics(self, replicates: int) -> None:
        """Unbiasedness, variance against multinomial, independence of rows; see the module docstring.

        Layout: ``calls`` calls, each on a batch of ``3 * per`` rows that interleaves three row types: the
        weights ``W`` of ``_STAT_WEIGHTS``, equal weights, and a one-hot row. Each row type gets
        ``R = calls * per`` replicates of its counts.

        Tolerances. For particle i with expected count ``e_i = n_out W_i``, the mean of R counts has standard
        error ``s_i / sqrt(R)`` with ``s_i`` the empirical standard deviation; an integer count with mean
        ``e_i`` has variance at least ``f(1 - f)`` (``f`` the fractional part of ``e_i``: floor/ceil
        rounding is the least variable), which floors ``s_i**2`` so that rare events seen zero times cannot
        fake a zero error. ``|z_i| <= z*`` with ``z*`` the two-sided Bonferroni bound for a family-wise level
        of 1e-6 over all particles, row types and sizes tested (about 6.2). The summed variance
        ``sum_i Var(count_i)`` must not exceed multinomial's ``n_out sum_i W_i (1 - W_i)`` by more than
        ``6 sqrt(2 / R)`` relative (six standard errors of a variance estimated from R replicates; the
        standard schemes are all below multinomial, killing included, at about 0.7 of it for these weights);
        "n copies of one draw" has ``n_out`` times multinomial's variance. Rows: the correlation of a
        particle's counts in two rows of one call, over the calls, is ~N(0, 1/calls) for independent rows;
        the bound is ``z* / sqrt(calls)``.
        """
        n = len(_STAT_WEIGHTS)
        per = 20
        calls = max(4, math.ceil(replicates / per))
        R = calls * per
        with np.errstate(divide="ignore"):
            base = np.log(_STAT_WEIGHTS)  # one -inf
        equal = np.zeros(n)
        hot = np.full(n, -np.inf)
        hot[5] = 0.0
        types = {"W": base, "equal": equal, "one-hot": hot}
        batch = np.stack([types[k] for _ in range(per) for k in types])  # (3 * per, n), types interleaved
        sizes = [n] + ([2 * n + 1] if self.caps.variable_size else [])
        tests = len(sizes) * len(types) * n
        z_star = NormalDist().inv_cdf(1.0 - 1e-6 / (2 * tests))
        root = RNG(self.seed).seed_sequence
        for n_out in sizes:
            counts = np.empty((calls, 3 * per, n), dtype=np.int64)
            for c, seq in enumerate(root.spawn(calls)):
                check = f"statistics, n_out={n_out}"
                x = self.t.convert(batch)
                try:
                    out = self.res(x, RNG(seq)) if n_out == n else self.res(x, RNG(seq), n_out=n_out)
                except Exception as exc:
                    self.fail(check, f"raised {type(exc).__name__}: {exc}", batch)
                counts[c] = self.validate(batch, out, n_out, check)
            for t, (label, values) in enumerate(types.items()):
                rows = counts[:, t :: len(types), :].reshape(R, n)  # (R, n)
                w = _normalised(values[None, :])[0]
                self.check_mean(rows, n_out * w, z_star, f"row type {label!r}, n_out={n_out}")
                if label == "W":
                    self.check_variance(rows, n_out, w, f"n_out={n_out}")
                    self.check_rows_independent(counts[:, t, :], counts[:, t + len(types), :], z_star, n_out)

    def check_mean(self, counts: np.ndarray, expected: np.ndarray, z_star: float, label: str) -> None:
        if not self.caps.unbiased:
            return
        R = counts.shape[0]
        mean = counts.mean(axis=0)
        var = counts.var(axis=0, ddof=1)
        frac = expected - np.floor(expected)
        var = np.maximum(var, frac * (1.0 - frac))
        se = np.sqrt(var / R)
        for i in range(len(expected)):
            if se[i] == 0.0:
                if abs(mean[i] - expected[i]) > 1e-9 * max(1.0, expected[i]):
                    self.fail(
                        "unbiasedness",
                        f"{label}: particle {i} always got {mean[i]:g} offspring, expected mean {expected[i]:.6g}",
                    )
                continue
            z = (mean[i] - expected[i]) / se[i]
            if abs(z) > z_star:
                self.fail(
                    "unbiasedness",
                    f"{label}: particle {i} has mean count {mean[i]:.5f} over {R} replicates, expected "
                    f"{expected[i]:.5f} (z = {z:.2f}, bound {z_star:.2f}; unbiased=True is declared)",
                )

    def check_variance(self, counts: np.ndarray, n_out: int, w: np.ndarray, label: str) -> None:
        if not self.caps.unbiased:
            return
        R = counts.shape[0]
        total = counts.var(axis=0, ddof=1).sum()
        multinomial = n_out * float(np.sum(w * (1.0 - w)))
        limit = multinomial * (1.0 + 6.0 * math.sqrt(2.0 / R))
        if total > limit:
            self.fail(
                "variance",
                f"{label}: the summed offspring-count variance is {total:.3f}, above multinomial's "
                f"{multinomial:.3f} (limit {limit:.3f} with the Monte Carlo error of {R} replicates): draws are "
                "not independent enough (e.g. n copies of one draw); unbiasedness alone does not make a resampler",
            )

    def check_rows_independent(self, first: np.ndarray, second: np.ndarray, z_star: float, n_out: int) -> None:
        calls = first.shape[0]
        for i in range(first.shape[1]):
            a, b = first[:, i].astype(float), second[:, i].astype(float)
            if a.std() == 0.0 or b.std() == 0.0:
                continue
            r = float(np.corrcoef(a, b)[0, 1])
            if abs(r) > z_star / math.sqrt(calls):
                self.fail(
                    "rows independent",
                    f"n_out={n_out}: particle {i}'s counts in two batch rows with the same weights have correlation "
                    f"{r:.3f} over {calls} calls (bound {z_star / math.sqrt(calls):.3f}): batch rows must be "
                    "resampled independently",
                )


def _normalised(rows: np.ndarray) -> np.ndarray:
    """Normalised weights per row, float64, from log-weights (rows with a finite entry)."""
    rows = np.asarray(rows, dtype=np.float64)
    top = rows.max(axis=-1, keepdims=True)
    w = np.exp(rows - top)
    return w / w.sum(axis=-1, keepdims=True)


def _fallback_example(rng: np.random.Generator, dtype: str) -> np.ndarray:
    """A random input of the kinds :mod:`smckit.testing.strategies` draws, without hypothesis."""
    batch = [(), (3,), (2, 2)][int(rng.integers(3))]
    n = int(rng.integers(1, 33))
    values = np.round(rng.uniform(-64.0, 64.0, (*batch, n)) * 64.0) / 64.0
    kind = int(rng.integers(4))
    if kind == 0:
        values[rng.random(values.shape) < 0.3] = -np.inf
    elif kind == 1:
        values[..., max(1, n // 2) :] = -np.inf
    elif kind == 2:
        hot = values[..., :1].copy()
        values[...] = -np.inf
        values[..., int(rng.integers(n)) : int(rng.integers(n)) + 1] = hot
    flat = values.reshape(-1, n)
    flat[~np.isfinite(flat).any(axis=-1), 0] = 0.0
    return flat.reshape(values.shape).astype(dtype)


def _resolve(resampler_or_factory: Any) -> Any:
    obj = resampler_or_factory
    if isinstance(obj, type) or not hasattr(obj, "capabilities"):
        if not callable(obj):
            raise ConformanceError(f"expected a resampler or a factory, got {type(obj).__name__}")
        obj = obj()
    return obj


def _targets(
    caps: Capabilities, backends: Iterable[str], dtypes: Iterable[str], devices: Sequence[str] | None
) -> tuple[list[_Target], list[str]]:
    targets: list[_Target] = []
    skipped: list[str] = []
    for backend in backends:
        if backend not in caps.backends:
            skipped.append(f"{backend}: not among the declared backends {caps.backends}")
            continue
        if backend == "numpy":
            devs: Sequence[str] = ["cpu"]
        elif backend == "torch":
            try:
                import torch
            except ImportError:
                skipped.append("torch: not installed")
                continue
            devs = devices if devices is not None else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        else:
            raise ValueError(f"unknown backend {backend!r}; expected 'numpy' or 'torch'")
        targets += [_Target(backend, str(np.dtype(d)), dev) for dev in devs for d in dtypes]
    return targets, skipped


def check_resampler(
    resampler_or_factory: Any | Callable[[], Any],
    *,
    backends: Sequence[str] = ("numpy", "torch"),
    dtypes: Sequence[str] = ("float64", "float32"),
    devices: Sequence[str] | None = None,
    seed: int = 0,
    examples: int = 25,
    large: bool = True,
    large_n: int = 10**6,
    statistical: bool = True,
    replicates: int = 2000,
    skip: Iterable[str] = (),
) -> ConformanceReport:
    """Check a resampler against every exact property and the statistical properties it declares.

    Parameters
    ----------
    resampler_or_factory : resampler, or a callable (e.g. the class) that returns one with no arguments
    backends : sequence of {"numpy", "torch"}
        Backends to test (those not in ``capabilities.backends`` are skipped and reported).
    dtypes : sequence of str
        Input dtypes to test.
    devices : sequence of str, optional
        torch devices (default: "cpu", plus "cuda" when available).
    seed : int
        Base seed; every check derives its own fixed seeds from it.
    examples : int
        Generated inputs per target for the exact checks.
    large : bool
        Whether to run the float32 n = ``large_n`` case (a second or so per backend).
    large_n : int
        Size of the large case (10**6 by default: a float32 cumulative sum then ends visibly below 1).
        The ``"half"`` group (float16 and bfloat16 inputs) runs once per backend and device, whatever ``dtypes``.
    statistical : bool
        Whether to run the statistical checks.
    replicates : int
        Replicates per row type in the statistical checks (rounded up to a multiple of 20).
    skip : iterable of str
        Check groups of :data:`CHECKS` to leave out.

    Returns
    -------
    ConformanceReport

    Raises
    ------
    ConformanceError
        (an AssertionError) at the first property that fails, with the scheme, backend, dtype, check and input.
    """
    skip = set(skip)
    unknown = skip - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown check group(s) {sorted(unknown)}; known: {', '.join(CHECKS)}")
    res = _resolve(resampler_or_factory)
    name = getattr(res, "name", None)
    if not isinstance(name, str) or not name:
        raise ConformanceError(f"a resampler needs a non-empty str attribute 'name', got {name!r}")
    report = ConformanceReport(name)
    caps = getattr(res, "capabilities", None)
    if not isinstance(caps, Capabilities):
        raise ConformanceError(
            f"[{name!r}] interface: 'capabilities' must be a smckit.Capabilities, got {type(caps).__name__}"
        )
    if not callable(res):
        raise ConformanceError(f"[{name!r}] interface: the resampler is not callable")
    if caps.count_bounds not in (None, "floor_ceil", "at_least_floor"):
        raise ConformanceError(f"[{name!r}] interface: unknown count_bounds {caps.count_bounds!r}")
    report.passed.append("interface")
    targets, skipped = _targets(caps, backends, dtypes, devices)
    report.skipped += skipped
    large_done: set[tuple[str, str]] = set()
    half_done: set[tuple[str, str]] = set()
    for target in targets:
        checker = _Checker(res, target, seed)
        if "fixed" not in skip:
            checker.run_fixed()
            report.passed.append(f"fixed inputs [{target}]")
        if "errors" not in skip:
            if target.device == "cpu":
                checker.run_errors()
                report.passed.append(f"errors [{target}]")
            else:
                report.skipped.append(f"errors [{target}]: not checked off the host (it would stall the device)")
        gen, shift = "generated" not in skip, "shift" not in skip
        if gen or shift:
            how = checker.run_generated(examples, shift, gen)
            report.passed.append(
                f"{'generated' if gen else ''}{' + ' if gen and shift else ''}"
                f"{'shift' if shift else ''} [{target}] ({how})"
            )
        if large and "large" not in skip and (target.backend, target.device) not in large_done:
            large_done.add((target.backend, target.device))
            checker.run_large(large_n)
            report.passed.append(f"large float32 n={large_n} [{target.backend} {target.device}]")
        if "half" not in skip and (target.backend, target.device) not in half_done:
            half_done.add((target.backend, target.device))
            checker.run_half()
            report.passed.append(f"half precision [{target.backend} {target.device}]")
        if statistical and "statistics" not in skip:
            checker.run_statistics(replicates)
            report.passed.append(f"statistics [{target}]")
    return report
