"""smckit.distributed on CPU with gloo: sharded populations, islands, rows across ranks, errors.

Starting processes is slow (each imports torch), so one group of 4 processes is spawned once per test session
(forkserver: the ranks fork from one server that imported torch once) and runs every distributed check; the
2-process checks run in a subgroup of ranks 0 and 1 of the same group. Each check returns plain data that the
tests below assert on, against single-process references computed here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

from smckit_fvd import FlemingViot  # noqa: E402

import smckit  # noqa: E402
from smckit import Always, FeynmanKac  # noqa: E402
from smckit.distributed import (  # noqa: E402
    Comm,
    ProcessGroupError,
    exchange,
    exchange_islands,
    island_ancestors,
    launch_local,
    offspring_ranges,
    run_islands,
    run_rows,
    run_rows_serial,
    run_sharded,
    stratified_uniforms,
)
from smckit.errors import InvalidArgumentError, ShapeError  # noqa: E402
from smckit.models import Bootstrap, LinearGaussian, kalman_filter  # noqa: E402
from smckit.random import RNG  # noqa: E402
from smckit.resamplers import Systematic  # noqa: E402

pytestmark = [
    pytest.mark.torch,
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"),
]

WORLD = 4
N_COUNTS = 240  # particles per row in the resampling checks (divisible by 2 and 4)
ROWS_COUNTS = 3
LAW_DRAWS = 2000  # uniforms (batch rows) in the statistical check of the offspring counts
SYSTEMATIC_SEED, STRATIFIED_SEED = 11, 12
T_LG, B_LG, N_LG = 10, 400, 128  # linear Gaussian: steps, replicate rows, particles per row (all ranks)


# -- fixtures shared by the workers and the references ---------------------------------------------------------------
def _ssm() -> LinearGaussian:
    return LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=1.0)


def _observations() -> np.ndarray:
    return _ssm().simulate(T_LG, seed=7)[1]


def _row_data() -> np.ndarray:
    """Six independent data sets, shape (6, T, 1): one population per row."""
    return np.stack([_ssm().simulate(T_LG, seed=100 + i)[1] for i in range(6)])


def _count_weights() -> np.ndarray:
    """Log-weights (ROWS_COUNTS, N_COUNTS) with zero weights where round-off bugs hide.

    Row 0: zeros at both ends of the vector and on both sides of every block boundary for 2 and 4 ranks.
    Row 1: 10% zeros at random places. Row 2: all the weight on one particle (every copy crosses ranks).
    """
    rng = np.random.default_rng(3)
    lw = 2.0 * rng.standard_normal((ROWS_COUNTS, N_COUNTS))
    edges = [0, N_COUNTS - 1]
    for r in range(1, 4):
        edges += [r * N_COUNTS // 4 - 1, r * N_COUNTS // 4]
    lw[0, edges] = -np.inf
    lw[1, rng.random(N_COUNTS) < 0.1] = -np.inf
    lw[2] = -np.inf
    lw[2, 77] = 0.0
    return lw


def _block(x: np.ndarray, comm: Comm) -> np.ndarray:
    n = x.shape[-1] // comm.size
    return np.ascontiguousarray(x[..., comm.rank * n : (comm.rank + 1) * n])


def _gather_last(x: np.ndarray, comm: Comm) -> np.ndarray:
    """Concatenate every rank's block along the last axis."""
    return np.concatenate(list(comm.all_gather(x)), axis=-1)


# -- models used to provoke errors (module level: the workers import them) ------------------------------------------
class _Toy(FeynmanKac):
    """A random walk with a Gaussian potential; optional failures for the error checks."""

    num_steps = 5

    def __init__(self, event: int = 1, batch: tuple[int, ...] = (), fail_at: int = -1, nan_at: int = -1):
        self.event, self.batch, self.fail_at, self.nan_at = event, batch, fail_at, nan_at

    def initial(self, n, rng):
        return rng.normal((*self.batch, n, self.event))

    def propose(self, t, state, rng):
        if t == self.fail_at:
            raise RuntimeError(f"boom at step {t}")
        return state + rng.normal(state.shape)

    def log_potential(self, t, prev, state):
        out = -0.5 * np.sum(state**2, axis=-1)
        if t == self.nan_at:
            out[..., 0] = np.nan
        return out


class _DiesOnRank(FeynmanKac):
    """Bootstrap-like toy whose potential is zero for every particle of one island at one step."""

    num_steps = 6

    def __init__(self, rank: int, dead_rank: int, dead_step: int):
        self.dead = rank == dead_rank
        self.dead_step = dead_step

    def initial(self, n, rng):
        return rng.normal((n, 1))

    def propose(self, t, state, rng):
        return 0.5 * state + rng.normal(state.shape)

    def log_potential(self, t, prev, state):
        out = -0.5 * state[..., 0] ** 2
        if t == self.dead_step and self.dead:
            out = np.full_like(out, -np.inf)
        return out


class _LookAhead(Bootstrap):
    """Bootstrap filter with auxiliary weights eta_t(x_{t-1}) = p(y_t | x_{t-1}) (up to a constant)."""

    def log_lookahead(self, t, state):
        y = np.asarray(self.y)[t, 0]
        return -0.5 * (y - 0.9 * state[..., 0]) ** 2 / 2.0


# -- the checks, run on every rank of a group -------------------------------------------------------------------------
def _check_counts(comm: Comm) -> dict:
    lw = _count_weights()
    block = _block(lw, comm)
    u = RNG(SYSTEMATIC_SEED).uniform((ROWS_COUNTS, 1))[:, 0]  # the uniform Systematic()(lw, RNG(11)) draws
    start, end = offspring_ranges(block, comm, scheme="systematic", uniform=u)
    out = {"systematic": _gather_last(end - start, comm)}
    start, end = offspring_ranges(block, comm, scheme="stratified", event_seed=STRATIFIED_SEED)
    out["stratified"] = _gather_last(end - start, comm)
    out["tiles"] = bool(np.all(start[..., 1:] == end[..., :-1]))
    # The law: LAW_DRAWS uniforms at once, as batch rows of the same weights (row 1, with zeros).
    many = np.ascontiguousarray(np.broadcast_to(block[1], (LAW_DRAWS, block.shape[-1])))
    uniforms = np.random.default_rng(13).random(LAW_DRAWS)
    start, end = offspring_ranges(many, comm, scheme="systematic", uniform=uniforms)
    out["law_systematic"] = _gather_last(end - start, comm)
    start, end = offspring_ranges(many, comm, scheme="stratified", event_seed=14)
    out["law_stratified"] = _gather_last(end - start, comm)
    return out


def _check_exchange(comm: Comm) -> dict:
    """Nested states (numpy and torch) whose every leaf encodes the particle's global index."""
    lw = _count_weights()
    n = N_COUNTS // comm.size
    gid = comm.rank * n + np.broadcast_to(np.arange(n), (ROWS_COUNTS, n))
    state = {
        "x": np.stack([gid, -gid], axis=-1).astype(np.float64),
        "extra": (gid.astype(np.int64), (gid[..., None] * np.array([1.0, 2.0, 3.0])).astype(np.float32)),
    }
    u = RNG(SYSTEMATIC_SEED).uniform((ROWS_COUNTS, 1))[:, 0]
    start, end = offspring_ranges(_block(lw, comm), comm, scheme="systematic", uniform=u)
    out: dict = {}
    for name, convert in (("numpy", np.asarray), ("torch", torch.as_tensor)):
        tree = {"x": convert(state["x"]), "extra": tuple(convert(v) for v in state["extra"])}
        new, anc, info = exchange(tree, convert(start), convert(end), comm)
        a = np.asarray(anc)
        leaves = [np.asarray(new["x"]), np.asarray(new["extra"][0]), np.asarray(new["extra"][1])]
        out[name] = {
            "ancestors": _gather_last(a, comm),
            "shapes": [leaf.shape for leaf in leaves],
            "dtypes": [str(leaf.dtype) for leaf in leaves],
            "consistent": bool(
                np.array_equal(leaves[0][..., 0], a)
                and np.array_equal(leaves[0][..., 1], -a)
                and np.array_equal(leaves[1], a)
                and np.array_equal(leaves[2], (a[..., None] * np.array([1.0, 2.0, 3.0])).astype(np.float32))
            ),
            "types": sorted({type(x).__module__.split(".")[0] for x in (new["x"], *new["extra"], anc)}),
            "moved": info["moved"],
        }
    return out


def _check_sharded(comm: Comm, group) -> dict:
    y = _observations()
    model = Bootstrap(_ssm(), y, batch_shape=(B_LG,))
    res = run_sharded(model, N_LG, seed=2024, group=group)
    full = res.gather(dst=0)
    strat = run_sharded(model, N_LG, resampler="stratified", policy=Always(), seed=2025, group=group)
    small = run_sharded(Bootstrap(_ssm(), torch.as_tensor(y)), N_LG, seed=1, group=group, history="full")
    small_full = small.gather(dst=None)
    y_torch = torch.as_tensor(y, dtype=torch.float32)
    strat_torch = run_sharded(
        Bootstrap(_ssm(), y_torch, batch_shape=(3,)), N_LG, resampler="stratified", policy=Always(), seed=3, group=group
    )
    look = run_sharded(_LookAhead(_ssm(), y, batch_shape=(B_LG,)), N_LG, policy=Always(), seed=2026, group=group)
    out = {
        "log_z": np.asarray(res.log_evidence),
        "log_z_stratified": np.asarray(strat.log_evidence),
        "log_z_lookahead": np.asarray(look.log_evidence),
        "n_local": int(res.log_weights.shape[-1]),
        "ancestors": res.history.ancestors,
        "resampled": res.history.resampled,
        "moved": [i.get("moved") for i in res.history.info if i],
        "weights_sum": float(comm.all_reduce(np.asarray(np.exp(res.log_weights).sum(axis=-1)), "sum").max()),
        "torch_types": (type(small.log_evidence).__name__, str(small.log_evidence.dtype)),
        "torch_full_shape": tuple(small_full.particles.shape),
        "torch_full_steps": len(small_full.history.particles),
        "torch_full_step_shape": tuple(small_full.history.particles[-1].shape),
        "torch_stratified": (str(strat_torch.particles.dtype), bool(torch.isfinite(strat_torch.log_evidence).all())),
    }
    if full is not None:
        out["gathered"] = {
            "particles": tuple(full.particles.shape),
            "log_weights": tuple(full.log_weights.shape),
            "ancestors": tuple(full.history.ancestors.shape),
            "weight_sums": np.exp(np.asarray(full.log_weights)).sum(axis=-1),
            "estimate_matches": bool(
                np.allclose(
                    res.estimate(lambda x: x[..., 0]),
                    np.sum(np.exp(full.log_weights) * full.particles[..., 0], axis=-1),
                )
            ),
        }
    else:
        res.estimate(lambda x: x[..., 0])  # a collective: every rank takes part
    return out


def _check_islands(comm: Comm, group) -> dict:
    model = Bootstrap(_ssm(), _observations(), batch_shape=(B_LG,))
    res = run_islands(model, N_LG, interaction=2, seed=77, group=group)
    # Islands copied at known ancestors: every island becomes island 0, except island 1 which stays.
    n = 5
    tree = (np.full((2, n, 1), float(comm.rank)), np.full((2, n), comm.rank, dtype=np.int64))
    anc = np.zeros((2, comm.size), dtype=np.int64)
    anc[1] = np.arange(comm.size)  # row 1: nothing moves
    anc[0, 1] = 1
    moved = exchange_islands(tree, anc, comm)
    dies = run_islands(
        _DiesOnRank(comm.rank, dead_rank=1, dead_step=2), 8 * comm.size, interaction=1000, seed=5, group=group
    )
    on_torch = run_islands(
        Bootstrap(_ssm(), torch.as_tensor(_observations()), batch_shape=(3,)), N_LG, interaction=3, seed=1, group=group
    )
    multinomial = run_islands(model, N_LG, resampler="multinomial", interaction=2, seed=78, group=group)
    # Non-uniform output weights: the island's output mass must enter its island weight (and so the evidence).
    kept = FlemingViot(keep_target=True, beta=0.6)
    fleming_viot = run_islands(model, N_LG, resampler=kept, policy=Always(), interaction=3, seed=79, group=group)
    look = run_islands(
        _LookAhead(_ssm(), _observations(), batch_shape=(B_LG,)),
        N_LG,
        policy=Always(),
        interaction=3,
        seed=80,
        group=group,
    )
    return {
        "log_z_lookahead": np.asarray(look.log_evidence),
        "log_z_multinomial": np.asarray(multinomial.log_evidence),
        "log_z_fleming_viot": np.asarray(fleming_viot.log_evidence),
        "torch": (type(on_torch.log_evidence).__name__, tuple(on_torch.particles.shape)),
        "log_z": np.asarray(res.log_evidence),
        "island_steps": [t for t, i in enumerate(res.history.info) if "island_ancestors" in i],
        "moved_leaf": np.asarray(moved[0])[..., 0, 0],
        "moved_int": np.asarray(moved[1])[..., 0],
        "dies_log_z": float(dies.log_evidence),
        "dies_info_step3": dies.history.info[3].get("island_ancestors"),
    }


def _model_for_rows(rows: range) -> Bootstrap:
    data = _row_data()
    return Bootstrap(_ssm(), data[rows.start : rows.stop])


def _model_for_row_torch(rows: range) -> Bootstrap:
    return Bootstrap(_ssm(), torch.as_tensor(_row_data()[rows[0]]))


def _summary(res) -> dict:
    def host(x):
        return np.asarray(x.cpu() if hasattr(x, "cpu") else x)

    return {
        "log_z": host(res.log_evidence),
        "particles": host(res.particles),
        "log_weights": host(res.log_weights),
        "ancestors": res.history.ancestors,
        "ess": res.history.ess,
        "info_len": len(res.history.info),
    }


def _check_rows(comm: Comm, group) -> dict:
    res = run_rows(_model_for_rows, 6, 64, block_size=2, seed=9, group=group)
    res_torch = run_rows(_model_for_row_torch, 6, 64, seed=10, group=group, resampler="stratified")
    root = run_rows(_model_for_rows, 6, 64, block_size=2, seed=9, group=group, gather="root")
    local = run_rows(_model_for_rows, 6, 64, block_size=2, seed=9, group=group, gather="none")
    return {
        "numpy": _summary(res),
        "torch": _summary(res_torch),
        "torch_type": type(res_torch.log_evidence).__name__,
        "root_is_none": root is None,
        "local_log_z": None if local is None else np.asarray(local.log_evidence),
    }


def _errors(comm: Comm, group) -> dict:
    def outcome(fn):
        try:
            fn()
        except Exception as exc:
            return type(exc).__name__, str(exc)
        return "ok", ""

    r = comm.rank
    return {
        "event": outcome(lambda: run_sharded(_Toy(event=1 if r == 0 else 2), 8 * comm.size, seed=0, group=group)),
        "batch": outcome(lambda: run_sharded(_Toy(batch=(2,) if r else (3,)), 8 * comm.size, seed=0, group=group)),
        "fails": outcome(lambda: run_sharded(_Toy(fail_at=3 if r == 1 else -1), 8 * comm.size, seed=0, group=group)),
        "nan": outcome(lambda: run_sharded(_Toy(nan_at=2 if r == 0 else -1), 8 * comm.size, seed=0, group=group)),
        "seeds": outcome(lambda: run_sharded(_Toy(), 8 * comm.size, seed=r, group=group)),
        "divisible": outcome(lambda: run_sharded(_Toy(), 8 * comm.size + 1, seed=0, group=group)),
        "islands_nan": outcome(
            lambda: run_islands(_Toy(nan_at=2 if r == 0 else -1), 8 * comm.size, seed=0, group=group)
        ),
        "islands_fail": outcome(
            lambda: run_islands(_Toy(fail_at=2 if r == 0 else -1), 8 * comm.size, seed=0, group=group)
        ),
        "rows_fail": outcome(
            lambda: run_rows(lambda rows: _Toy(fail_at=2 if r == 1 else -1), 4, 8, seed=0, group=group)
        ),
        "after": outcome(lambda: comm.barrier()),  # the group still works after all these errors
    }


def _worker() -> dict:
    sub = dist.new_group([0, 1])  # every rank must take part in creating the subgroup
    results = {}
    for size, group in ((4, None), (2, sub)):
        if dist.get_rank() >= size:
            continue
        comm = Comm(group)
        results[size] = {
            "counts": _check_counts(comm),
            "exchange": _check_exchange(comm),
            "sharded": _check_sharded(comm, group),
            "islands": _check_islands(comm, group),
            "rows": _check_rows(comm, group),
            "errors": _errors(comm, group),
        }
    dist.barrier()
    return results


@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    """Every rank's results: ``ranks[r][size][check]`` for sizes 4 and 2 (ranks 0, 1 only)."""
    return launch_local(_worker, WORLD, timeout_s=90)


# -- reference computations --------------------------------------------------------------------------------------------
def _systematic_reference(lw: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    out = Systematic()(lw, RNG(seed))
    anc = np.asarray(out.ancestors)
    counts = np.stack([np.bincount(a, minlength=lw.shape[-1]) for a in anc])
    return counts, anc


def _stratified_reference(lw: np.ndarray, event_seed: int, size: int) -> np.ndarray:
    """Stratified counts on the concatenated weights, with the uniforms the ranks draw (chunk by chunk)."""
    rows, n_total = lw.shape
    n = n_total // size
    u = np.concatenate([stratified_uniforms(event_seed, s, (rows, n)) for s in range(size)], axis=-1)
    w = np.exp(lw - lw.max(axis=-1, keepdims=True))
    cum = np.cumsum(w, axis=-1)
    x = cum / cum[:, -1:] * n_total
    m = np.minimum(np.floor(x), n_total - 1).astype(np.int64)
    g = m + (np.take_along_axis(u, m, axis=-1) < x - m)
    g = np.where(x >= n_total, n_total, g)
    return np.diff(np.concatenate([np.zeros((rows, 1), dtype=np.int64), g], axis=-1), axis=-1)


def _evidence_ratio_check(log_z: np.ndarray, exact: float) -> None:
    """E[Z_hat / Z] = 1, as in the single-process test: the mean of the B i.i.d. row ratios is within 3 of its
    standard errors (estimated from the rows) of 1; std(log Z_hat) < 1 keeps the ratio light-tailed enough
    for that standard error to be reliable. Fixed seeds: the check is deterministic."""
    ratio = np.exp(log_z - exact)
    assert np.std(log_z) < 1.0, "Monte Carlo noise too large for a reliable standard error"
    se = np.std(ratio, ddof=1) / math.sqrt(ratio.size)
    assert abs(ratio.mean() - 1.0) < 3 * se, (ratio.mean(), se)


SIZES = [2, 4]


# -- tests -------------------------------------------------------------------------------------------------------------
def test_missing_process_group_is_a_clear_error():
    assert not dist.is_initialized()
    with pytest.raises(ProcessGroupError, match="not initialised"):
        Comm()
    with pytest.raises(ProcessGroupError, match="torchrun"):
        run_sharded(_Toy(), 8, seed=0)
    with pytest.raises(ProcessGroupError):
        run_rows(lambda rows: _Toy(), 2, 8, seed=0)
    with pytest.raises(ProcessGroupError):
        run_islands(_Toy(), 8, seed=0)


def test_island_ancestors_is_systematic_over_islands():
    with np.errstate(divide="ignore"):
        log_omega = np.log(np.array([[0.5, 0.0, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]]))
    anc = island_ancestors(log_omega, np.array([0.3, 0.9]))
    assert anc.tolist()[0] == [0, 0, 2, 3]  # positions 0.3, 1.3, 2.3, 3.3 on cumulative 2, 2, 3, 4
    assert 1 not in anc[0]  # a dead island is never copied
    # Positions 0.9, 1.9, 2.9, 3.9 on cumulative (0.4, 1.2, 2.4, 4.0).
    assert anc.tolist()[1] == [1, 2, 3, 3]


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_global_systematic_counts_equal_single_process_for_the_same_uniform(ranks, size):
    got = ranks[0][size]["counts"]
    want, _ = _systematic_reference(_count_weights(), SYSTEMATIC_SEED)
    np.testing.assert_array_equal(got["systematic"], want)
    assert np.all(got["systematic"][_count_weights() == -np.inf] == 0)
    assert got["systematic"][2, 77] == N_COUNTS  # all the weight on one particle: all N copies
    for r in range(size):
        np.testing.assert_array_equal(ranks[r][size]["counts"]["systematic"], want)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_global_stratified_counts_equal_single_process_for_the_same_uniforms(ranks, size):
    got = ranks[0][size]["counts"]
    want = _stratified_reference(_count_weights(), STRATIFIED_SEED, size)
    np.testing.assert_array_equal(got["stratified"], want)
    assert np.all(got["stratified"].sum(axis=-1) == N_COUNTS)
    assert got["tiles"]


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_global_resampling_counts_have_the_single_process_law(ranks, size):
    """Over LAW_DRAWS uniforms (row 1 of the weights, with zeros): the counts have the law of single-process
    systematic and stratified resampling on the concatenated weights.

    Systematic: a count is floor(N W_i) plus a Bernoulli(frac(N W_i)), which fixes its law; we check the
    floor/ceil property exactly and the mean within 4 standard errors sqrt(p (1 - p) / M). Stratified: only
    the two strata at the ends of a particle's interval are partially covered, so a count is a constant plus
    at most two independent Bernoullis: its variance is at most 1/2 and its mean is within 4 sqrt(0.5 / M)
    = 0.063 of N W_i. With 240 particles a 4-sigma miss somewhere has probability about 0.015; the seeds are
    fixed, so the test is deterministic. Finally the mean per-particle variance matches the single-process
    Stratified resampler's: each sample variance (M = 2000) has standard error at most 0.5 sqrt(2 / M) =
    0.016, and averaging over ~200 particles brings the difference's standard error near 0.0015; the
    tolerance 0.01 is over 6 of those.
    """
    got = ranks[0][size]["counts"]
    lw = _count_weights()[1]
    w = np.exp(lw - lw.max())
    nw = N_COUNTS * w / w.sum()
    sys_counts = got["law_systematic"]
    assert sys_counts.shape == (LAW_DRAWS, N_COUNTS)
    assert np.all((sys_counts == np.floor(nw)) | (sys_counts == np.ceil(nw)))
    p = nw - np.floor(nw)
    assert np.all(np.abs(sys_counts.mean(axis=0) - nw) <= 4 * np.sqrt(p * (1 - p) / LAW_DRAWS) + 1e-9)
    strat = got["law_stratified"]
    assert np.all(strat.sum(axis=-1) == N_COUNTS)
    assert np.all(strat[:, w == 0] == 0)
    assert np.all(np.abs(strat.mean(axis=0) - nw) <= 4 * math.sqrt(0.5 / LAW_DRAWS))
    from smckit.resamplers import Stratified

    ref = np.asarray(Stratified()(np.broadcast_to(lw, (LAW_DRAWS, N_COUNTS)).copy(), RNG(5)).ancestors)
    ref_counts = np.stack([np.bincount(a, minlength=N_COUNTS) for a in ref])
    assert abs(strat.var(axis=0).mean() - ref_counts.var(axis=0).mean()) < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_exchange_keeps_every_leaf_of_nested_states_and_rebalances(ranks, size):
    _, want = _systematic_reference(_count_weights(), SYSTEMATIC_SEED)
    n = N_COUNTS // size
    for backend, module in (("numpy", ["numpy"]), ("torch", ["torch"])):
        for r in range(size):
            got = ranks[r][size]["exchange"][backend]
            np.testing.assert_array_equal(got["ancestors"], want)
            assert got["consistent"]
            assert got["shapes"] == [(ROWS_COUNTS, n, 2), (ROWS_COUNTS, n), (ROWS_COUNTS, n, 3)]
            assert got["dtypes"] == ["float64", "int64", "float32"]
            assert got["types"] == module
    # Row 2 has one particle with all the weight: every rank but its owner receives all its copies.
    assert sum(ranks[r][size]["exchange"]["numpy"]["moved"] for r in range(size)) >= size - 1


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_sharded_bootstrap_evidence_is_unbiased_against_kalman(ranks, size):
    exact = float(kalman_filter(_ssm(), _observations()).log_likelihood)
    got = ranks[0][size]["sharded"]
    _evidence_ratio_check(got["log_z"], exact)
    _evidence_ratio_check(got["log_z_stratified"], exact)
    _evidence_ratio_check(got["log_z_lookahead"], exact)
    for r in range(1, size):  # every rank holds the same global evidence, bit for bit
        np.testing.assert_array_equal(ranks[r][size]["sharded"]["log_z"], got["log_z"])


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_sharded_history_has_global_ancestors_and_gathers(ranks, size):
    n = N_LG // size
    for r in range(size):
        got = ranks[r][size]["sharded"]
        assert got["n_local"] == n
        anc = got["ancestors"]
        assert anc.shape == (T_LG, B_LG, n)
        assert anc.min() >= 0 and anc.max() < N_LG
        # Where no resampling happened, a particle's ancestor is itself: its global index.
        still = ~got["resampled"]
        np.testing.assert_array_equal(anc[still], np.broadcast_to(r * n + np.arange(n), anc.shape)[still])
        assert got["weights_sum"] == pytest.approx(1.0)
        assert got["torch_types"] == ("Tensor", "torch.float64")
        assert got["torch_full_shape"] == (N_LG, 1)
        assert got["torch_full_steps"] == T_LG and got["torch_full_step_shape"] == (N_LG, 1)
        assert got["torch_stratified"] == ("torch.float32", True)
    # Some ancestors cross rank boundaries (global indices outside the rank's own block).
    crossing = [
        np.any(ranks[r][size]["sharded"]["ancestors"][ranks[r][size]["sharded"]["resampled"]] // n != r)
        for r in range(size)
    ]
    assert any(crossing)
    g = ranks[0][size]["sharded"]["gathered"]
    assert g["particles"] == (B_LG, N_LG, 1) and g["log_weights"] == (B_LG, N_LG)
    assert g["ancestors"] == (T_LG, B_LG, N_LG)
    np.testing.assert_allclose(g["weight_sums"], 1.0, rtol=1e-12)
    assert g["estimate_matches"]


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_island_evidence_is_unbiased_against_kalman(ranks, size):
    exact = float(kalman_filter(_ssm(), _observations()).log_likelihood)
    got = ranks[0][size]["islands"]
    _evidence_ratio_check(got["log_z"], exact)
    _evidence_ratio_check(got["log_z_multinomial"], exact)
    _evidence_ratio_check(got["log_z_fleming_viot"], exact)
    _evidence_ratio_check(got["log_z_lookahead"], exact)
    assert got["island_steps"] == [t for t in range(1, T_LG) if t % 2 == 0]
    assert got["torch"] == ("Tensor", (3, N_LG // size, 1))
    for r in range(1, size):
        np.testing.assert_array_equal(ranks[r][size]["islands"]["log_z"], got["log_z"])


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_exchange_islands_copies_whole_islands(ranks, size):
    for r in range(size):
        got = ranks[r][size]["islands"]
        want_row0 = 1 if r == 1 else 0
        assert got["moved_leaf"].tolist() == [want_row0, r]
        assert got["moved_int"].tolist() == [want_row0, r]


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_a_dead_island_is_replaced_at_the_next_step(ranks, size):
    got = ranks[0][size]["islands"]
    assert math.isfinite(got["dies_log_z"])
    anc = got["dies_info_step3"]
    assert anc is not None and 1 not in anc.tolist()  # island 1 died at step 2: nobody copies it at step 3


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_rows_across_ranks_equal_the_single_process_loop(ranks, size):
    want = _summary(run_rows_serial(_model_for_rows, 6, 64, block_size=2, seed=9))
    want_torch = _summary(run_rows_serial(_model_for_row_torch, 6, 64, seed=10, resampler="stratified"))
    # The reference is itself the plain loop over blocks with the per-block seeds.
    seeds = np.random.SeedSequence(9).spawn(3)
    first = smckit.run(_model_for_rows(range(0, 2)), 64, seed=RNG(seeds[0]))
    np.testing.assert_array_equal(want["log_z"][:2], np.asarray(first.log_evidence))
    for r in range(size):
        got = ranks[r][size]["rows"]
        for key in ("log_z", "particles", "log_weights", "ancestors", "ess"):
            np.testing.assert_array_equal(got["numpy"][key], want[key], err_msg=key)
            np.testing.assert_array_equal(got["torch"][key], want_torch[key], err_msg=key)
        assert got["torch_type"] == "Tensor"
        assert got["numpy"]["log_z"].shape == (6,)
        assert got["root_is_none"] == (r != 0)
    # gather="none": each rank keeps its own blocks (3 blocks of 2 rows over the ranks, contiguous).
    local = [ranks[r][size]["rows"]["local_log_z"] for r in range(size)]
    joined = np.concatenate([x for x in local if x is not None])
    np.testing.assert_array_equal(joined, want["log_z"])
    if size == 4:
        assert local[3] is None  # more ranks than blocks: the last rank has no rows


@pytest.mark.slow
def test_rows_results_do_not_depend_on_the_number_of_ranks(ranks):
    for key in ("log_z", "particles", "ancestors"):
        np.testing.assert_array_equal(ranks[0][2]["rows"]["numpy"][key], ranks[0][4]["rows"]["numpy"][key])


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_errors_reach_every_rank(ranks, size):
    errors = [ranks[r][size]["errors"] for r in range(size)]
    # The rank that holds the NaN words it exactly as a single process does (one loop, one wording).
    with pytest.raises(smckit.InvalidWeightsError) as single:
        smckit.run(_Toy(nan_at=2), 8 * size, seed=0)
    assert errors[0]["nan"] == ("InvalidWeightsError", str(single.value))
    assert errors[0]["islands_nan"] == ("InvalidWeightsError", str(single.value))
    for r, e in enumerate(errors):
        assert e["islands_nan"][0] == "InvalidWeightsError"
        assert e["event"][0] == "ShapeError" and "disagree" in e["event"][1]
        assert e["batch"][0] == "ShapeError"
        assert e["fails"][0] == ("RuntimeError" if r == 1 else "ProcessGroupError")
        assert e["nan"][0] == "InvalidWeightsError"
        assert e["seeds"][0] == "InvalidArgumentError" and "different seeds" in e["seeds"][1]
        assert e["divisible"][0] == "InvalidArgumentError"
        assert e["islands_fail"][0] == ("RuntimeError" if r == 0 else "ProcessGroupError")
        assert e["rows_fail"][0] == ("RuntimeError" if r == 1 else "ProcessGroupError")
        assert e["after"][0] == "ok"
    assert issubclass(ShapeError, smckit.SMCError) and issubclass(InvalidArgumentError, smckit.SMCError)
