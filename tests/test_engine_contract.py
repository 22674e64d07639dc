"""The engine's contract with plugins and users: what a resampler returns is checked, checks deferred on an
accelerator name the right step, nothing computed is lost, half precision, trackers, Eve indices, reprs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import smckit
from smckit import (
    BackendError,
    Capabilities,
    ExtinctionError,
    FeynmanKac,
    InvalidArgumentError,
    InvalidWeightsError,
    Resampled,
    ShapeError,
)
from smckit.models import Bootstrap, LinearGaussian
from smckit.plugins import make_resampler

torch = pytest.importorskip("torch")


class Walk(FeynmanKac):
    """A Gaussian random walk with a Gaussian potential; optional faults at one step."""

    def __init__(self, steps=6, batch=(), like=None, nan_at=-1, raise_at=-1, short_at=-1, long_at=-1, interrupt_at=-1):
        self.num_steps = steps
        self.batch = batch
        self.like = np.zeros(0) if like is None else like
        self.nan_at, self.raise_at, self.short_at, self.long_at, self.interrupt_at = (
            nan_at,
            raise_at,
            short_at,
            long_at,
            interrupt_at,
        )

    def initial(self, n, rng):
        return rng.normal((*self.batch, n, 1), like=self.like)

    def propose(self, t, state, rng):
        if t == self.raise_at:
            raise RuntimeError(f"model fault at step {t}")
        if t == self.interrupt_at:
            raise KeyboardInterrupt
        new = 0.9 * state + rng.normal(tuple(state.shape), like=self.like)
        if t == self.short_at:
            return new[..., :-1, :]
        if t == self.long_at:
            return torch.cat([new, new], dim=-2) if torch.is_tensor(new) else np.concatenate([new, new], axis=-2)
        return new

    def log_potential(self, t, prev, state):
        out = -0.5 * state[..., 0] ** 2
        if t == self.nan_at:
            out = out * 1.0
            out[..., 1] = float("nan")
        return out


# -- what a resampler returns --------------------------------------------------------------------------------
class Faulty:
    """A third party's resampler that returns one kind of bad output."""

    def __init__(self, fault, capabilities=None):
        self.fault = fault
        self.name = f"faulty-{fault}"
        self.capabilities = (
            capabilities
            if capabilities is not None
            else Capabilities(uniform_output_weights=fault not in ("nan-weights", "inf-weights"))
        )
        self.inner = make_resampler("multinomial")

    def __call__(self, log_w, rng, *, n_out=None):
        out = self.inner(log_w, rng)
        anc, lw = out.ancestors, out.log_weights * 1.0
        xp = torch if torch.is_tensor(anc) else np
        n = log_w.shape[-1]
        if self.fault == "index-n":
            anc = anc * 1
            anc[..., 0] = n  # would take particle 0 of the next batch row after flattening
        elif self.fault == "index-minus-one":
            anc = anc * 1
            anc[..., 0] = -1
        elif self.fault == "float":
            anc = anc * 1.0
        elif self.fault == "shape":
            anc = anc[..., :-1]
        elif self.fault == "nan-weights":
            lw[..., 0] = float("nan")
        elif self.fault == "inf-weights":
            lw[..., 0] = float("inf")
        elif self.fault == "not-resampled":
            return (anc, lw)
        del xp
        return Resampled(anc, lw)


FAULTS = {
    "index-n": (InvalidArgumentError, "indices must lie in"),
    "index-minus-one": (InvalidArgumentError, "indices must lie in"),
    "float": (BackendError, "integer indices"),
    "shape": (ShapeError, "ancestors of shape"),
    "nan-weights": (InvalidWeightsError, "output log-weights"),
    "inf-weights": (InvalidWeightsError, "output log-weights"),
    "not-resampled": (InvalidArgumentError, "returned a tuple"),
}


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_buggy_resampler_gets_a_clear_error_naming_it_and_the_step(fault, lib):
    like = np.zeros(0) if lib == "numpy" else torch.zeros(0, dtype=torch.float64)
    error, words = FAULTS[fault]
    with pytest.raises(error, match=words) as info:
        smckit.run(Walk(batch=(3,), like=like), 16, resampler=Faulty(fault), policy=smckit.Always(), seed=0)
    assert f"faulty-{fault}" in str(info.value) and "step 1" in str(info.value)
    assert info.value.result is not None and info.value.result.num_steps == 1  # step 0 is kept


def test_capabilities_of_the_wrong_type_are_refused_when_the_resampler_is_first_made():
    with pytest.raises(InvalidArgumentError, match="capabilities of type dict"):
        smckit.SMC(Walk(), 8, resampler=Faulty("none", capabilities={"unbiased": True}))


@pytest.mark.parametrize("fault", ["index-n", "nan-weights"])
def test_deferred_checks_on_an_accelerator_name_the_resampler_step(fault):
    """On an accelerator the range check is a device flag read one step late; ancestors are clamped meanwhile,
    so an index of n never reaches another row. CPU tensors stand in for the device here."""
    smc = smckit.SMC(
        Walk(batch=(3,), like=torch.zeros(0, dtype=torch.float64)),
        16,
        resampler=Faulty(fault),
        policy=smckit.Always(),
        seed=0,
    )
    next(smc)
    smc._defer = smc.population.defer = True
    with pytest.raises(InvalidWeightsError, match="step 1") as info:
        for _ in smc:
            pass
    assert f"faulty-{fault}" in str(info.value)
    assert info.value.result.num_steps == 1


def test_deferred_weight_checks_raise_for_the_step_that_went_bad_with_its_partial_result():
    model = Walk(steps=8, like=torch.zeros(0, dtype=torch.float64), nan_at=4)
    smc = smckit.SMC(model, 32, seed=1)
    next(smc)
    smc._defer = True
    with pytest.raises(InvalidWeightsError, match=r"Walk\.log_potential at step 4") as info:
        smc.run()
    assert info.value.step == 4 and info.value.result.num_steps == 4
    reference = smckit.SMC(Walk(steps=8, like=torch.zeros(0, dtype=torch.float64)), 32, seed=1)
    for _ in range(4):
        next(reference)
    np.testing.assert_array_equal(info.value.result.log_evidence.numpy(), reference.result.log_evidence.numpy())


# -- nothing computed is lost -------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["raise_at", "interrupt_at"])
def test_any_exception_carries_the_finished_steps(fault):
    model = Walk(steps=6, **{fault: 3})
    with pytest.raises((RuntimeError, KeyboardInterrupt)) as info:
        smckit.run(model, 20, seed=0)
    result = info.value.result
    assert result.num_steps == 3 and np.isfinite(result.log_evidence)
    clean = smckit.SMC(Walk(steps=6), 20, seed=0)
    for _ in range(3):
        next(clean)
    assert float(result.log_evidence) == float(clean.result.log_evidence)


def test_smckit_errors_pickle_with_their_fields_and_partial_result():
    for model, error in ((Walk(nan_at=2), InvalidWeightsError), (Walk(), ExtinctionError)):
        try:
            if error is ExtinctionError:
                smckit.run(Extinct(), 10, seed=0)
            else:
                smckit.run(model, 10, seed=0)
        except error as exc:
            back = pickle.loads(pickle.dumps(exc))
            assert type(back) is error and str(back) == str(exc) and back.step == exc.step
            assert back.result.num_steps == exc.result.num_steps
            np.testing.assert_array_equal(back.result.history.ess, exc.result.history.ess)
        else:  # pragma: no cover
            pytest.fail(f"no {error.__name__}")


class Extinct(Walk):
    def log_potential(self, t, prev, state):
        out = super().log_potential(t, prev, state)
        return out - np.inf if t == 2 else out


def test_an_error_raised_in_a_worker_process_reaches_the_parent_whole():
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1) as pool:
        future = pool.submit(_fail_in_worker)
        with pytest.raises(InvalidWeightsError) as info:
            future.result()
    assert info.value.step == 2 and info.value.result.num_steps == 2


def _fail_in_worker():
    smckit.run(Walk(nan_at=2), 10, seed=0)


# -- inputs checked when made, layouts checked at every step ------------------------------------------------
@pytest.mark.parametrize("steps", [0, -3, 2.5, True, "4"])
def test_bad_num_steps_is_refused_up_front(steps):
    model = Walk()
    model.num_steps = steps
    with pytest.raises(InvalidArgumentError, match="num_steps"):
        smckit.SMC(model, 10)


@pytest.mark.parametrize("where", ["short_at", "long_at"])
def test_a_state_leaf_of_the_wrong_length_is_a_shape_error_naming_the_step(where):
    with pytest.raises(ShapeError, match=r"Walk\.propose at step 3"):
        smckit.run(Walk(**{where: 3}), 10, seed=0)


# -- half precision ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_particles_keep_weights_and_evidence_in_float32_or_wider(dtype):
    like = torch.zeros(0, dtype=getattr(torch, dtype))
    result = smckit.run(Walk(batch=(2,), like=like), 64, seed=0)
    assert result.particles.dtype == getattr(torch, dtype)  # the particles keep their dtype
    assert result.log_weights.dtype == torch.float32 and result.log_evidence.dtype == torch.float64
    assert np.all(np.isfinite(result.history.ess)) and result.history.ess.dtype == np.float64
    single = smckit.run(Walk(batch=(2,), like=torch.zeros(0, dtype=torch.float32)), 64, seed=0)
    # Same draws rounded to half precision: the evidence differs by the rounding only (a few 1e-3 here).
    np.testing.assert_allclose(result.log_evidence.numpy(), single.log_evidence.numpy(), atol=0.05)


def test_float16_equal_weights_over_65504_do_not_overflow():
    class Flat(FeynmanKac):
        num_steps = 3

        def initial(self, n, rng):
            return np.zeros((n, 1), dtype=np.float16)

        def propose(self, t, state, rng):
            return state

        def log_potential(self, t, prev, state):
            return np.zeros(state.shape[:-1], dtype=np.float16)

    result = smckit.run(Flat(), 70_000, seed=0)
    assert result.log_weights.dtype == np.float32
    assert float(result.log_evidence) == 0.0 and result.history.ess[-1] == pytest.approx(70_000)


# -- what a run keeps ---------------------------------------------------------------------------------------
def test_eve_indices_are_the_roots_of_the_final_particles():
    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, y = ssm.simulate(30, seed=1)
    result = smckit.run(Bootstrap(ssm, y, batch_shape=(3,)), 50, seed=2)
    np.testing.assert_array_equal(result.eve, result.history.roots()[-1])
    assert smckit.run(Bootstrap(ssm, y), 50, seed=2, history="none").eve is None


class Recording:
    """A tracker that remembers what the engine showed it."""

    def __init__(self):
        self.calls = []

    def start(self, state, log_weights):
        self.calls.append(("start", state.shape, log_weights.shape))

    def update(self, t, prev_state, prev_log_weights, ancestors, state, log_weights):
        self.calls.append((t, None if ancestors is None else np.asarray(ancestors).copy(), np.asarray(prev_state)))

    def value(self):
        return len(self.calls)


def test_trackers_see_every_step_with_the_population_before_resampling():
    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, y = ssm.simulate(12, seed=1)
    tracker = Recording()
    result = smckit.run(Bootstrap(ssm, y), 40, seed=3, trackers={"rec": tracker}, history="full")
    assert result.tracked == {"rec": 12} and tracker.calls[0][0] == "start"
    for t in range(1, 12):
        _, ancestors, prev = tracker.calls[t]
        np.testing.assert_array_equal(prev, np.asarray(result.history.particles[t - 1]))
        if result.history.resampled[t]:
            np.testing.assert_array_equal(ancestors, result.history.ancestors[t])
        else:
            assert ancestors is None
    with pytest.raises(InvalidArgumentError, match="no method"):
        smckit.SMC(Bootstrap(ssm, y), 10, trackers={"bad": object()})


def test_step_estimate_is_the_filtering_mean():
    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, y = ssm.simulate(10, seed=1)
    smc = smckit.SMC(Bootstrap(ssm, y), 100, seed=0)
    steps = list(smc)
    np.testing.assert_allclose(steps[-1].estimate(lambda x: x[..., 0]), smc.result.estimate(lambda x: x[..., 0]))
    assert steps[3].estimate(lambda x: x).shape == (1,)


def test_reprs_are_compact():
    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, y = ssm.simulate(20, seed=1)
    smc = smckit.SMC(Bootstrap(ssm, y, batch_shape=(4,)), 1000, seed=0)
    step = next(smc)
    result = smc.run()
    for text in (repr(result), repr(result.history), repr(step)):
        assert "\n" not in text and len(text) < 300, text
    assert "log_evidence" in repr(result) and "resampling_steps" in repr(result.history)


# -- auxiliary (look-ahead) weights ----------------------------------------------------------------------------
class Auxiliary(Bootstrap):
    """The fully adapted look-ahead of the scalar linear Gaussian model: eta_t(x_{t-1}) = p(y_t | x_{t-1}), the
    predictive density of the next observation, N(y_t; rho x_{t-1}, sigma_x^2 + sigma_y^2)."""

    def __init__(self, ssm, y, rho, var, **kw):
        super().__init__(ssm, y, **kw)
        self.y_next, self.rho, self.var = np.asarray(y)[..., 0], rho, var

    def log_lookahead(self, t, state):
        y = self.y_next[..., t, None] if self.y_next.ndim > 1 else self.y_next[t]
        return -0.5 * (y - self.rho * state[..., 0]) ** 2 / self.var


def test_auxiliary_particle_filter_evidence_is_unbiased_against_kalman():
    """E[Z_hat / Z] = 1 over B independent rows (the same check as the engine's other unbiasedness tests: the mean
    of the B ratios within 3 of its standard errors of 1; std(log Z_hat) < 1 keeps the standard error reliable).
    The look-ahead's constant factors are left out on purpose: the evidence must not depend on them."""
    from smckit.models import kalman_filter

    rho, sx, sy, rows = 0.9, 1.0, 0.5, 400
    ssm = LinearGaussian.scalar(rho=rho, sigma_x=sx, sigma_y=sy)
    _, y = ssm.simulate(15, seed=4)
    exact = float(kalman_filter(ssm, y).log_likelihood)
    model = Auxiliary(ssm, y, rho, sx**2 + sy**2, batch_shape=(rows,))
    result = smckit.run(model, 64, policy=smckit.Always(), seed=5)
    log_z = np.asarray(result.log_evidence)
    ratio = np.exp(log_z - exact)
    assert np.std(log_z) < 1.0
    assert abs(ratio.mean() - 1.0) < 3 * np.std(ratio, ddof=1) / np.sqrt(rows)


def test_a_look_ahead_is_only_asked_for_when_a_row_resamples_and_is_checked():
    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, y = ssm.simulate(10, seed=4)

    class Counting(Auxiliary):
        calls = 0

        def log_lookahead(self, t, state):
            Counting.calls += 1
            return super().log_lookahead(t, state)

    smckit.run(Counting(ssm, y, 0.9, 1.25), 64, policy=smckit.Never(), seed=0)
    assert Counting.calls == 0

    class Broken(Auxiliary):
        def log_lookahead(self, t, state):
            out = super().log_lookahead(t, state)
            out[..., 3] = np.nan
            return out

    with pytest.raises(InvalidWeightsError, match=r"Broken\.log_lookahead at step 1"):
        smckit.run(Broken(ssm, y, 0.9, 1.25), 64, policy=smckit.Always(), seed=0)


def test_smoothing_trackers_run_online_exactly_as_their_offline_replay():
    """The engine's tracker hook shows a tracker what replay() shows it: PaRIS and fixed-lag smoothing online give
    the offline results bit for bit (PaRIS with its own seeded stream)."""
    from smckit.smoothing import FixedLag, PaRIS, replay

    ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, y = ssm.simulate(15, seed=0)
    model = Bootstrap(ssm, y, batch_shape=(2,))
    trackers = {"lag": FixedLag(lambda x: x, lag=3), "paris": PaRIS(model, lambda t, prev, x: x, seed=2)}
    res = smckit.run(model, 100, seed=1, history="full", trackers=trackers)
    np.testing.assert_array_equal(res.tracked["lag"], replay(res, FixedLag(lambda x: x, lag=3)))
    np.testing.assert_array_equal(res.tracked["paris"], replay(res, PaRIS(model, lambda t, prev, x: x, seed=2)))


class WeightAware(Walk):
    """Keeps the incoming log-weights in its state (a dict), as an adaptive sampler would."""

    def initial(self, n, rng):
        x = super().initial(n, rng)
        return {"x": x, "seen": np.zeros(x.shape[:-1])}

    def observe_weights(self, t, state, log_weights):
        return {"x": state["x"], "seen": np.asarray(log_weights) * 1.0}

    def propose(self, t, state, rng):
        return {"x": super().propose(t, state["x"], rng), "seen": state["seen"]}

    def log_potential(self, t, prev, state):
        return super().log_potential(t, prev, state["x"])


@pytest.mark.parametrize("policy", [smckit.Never(), smckit.Always(), smckit.ESSBelow(0.5)])
def test_a_model_can_observe_the_weights_its_next_potential_multiplies(policy):
    smc = smckit.SMC(WeightAware(steps=8, batch=(3,)), 50, policy=policy, seed=0)
    previous = next(smc)
    for step in smc:
        expected = np.asarray(previous.log_weights)
        if np.any(step.resampled):  # the resampled rows start again from uniform weights
            expected = np.where(np.asarray(step.resampled)[..., None], -np.log(50), expected)
        np.testing.assert_allclose(step.state["seen"], expected, atol=1e-12)
        previous = step
