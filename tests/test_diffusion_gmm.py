"""RewardSteering on the analytic Gaussian mixture: exact targets, potentials, shapes, dtypes, devices, rebirth.

Statistical tests use G = 16 independent groups (replicates) of N = 1000 particles in one batch and compare
component masses (the responsibility estimator of ``smckit.diffusion.gmm``) with the truth. Two error sources:

- Monte Carlo error: for independent draws it is ``mass_std / sqrt(G N)`` (``GaussianMixture.mass_std`` from
  exact draws); for SMC it is the spread of the G replicate estimates, ``sd / sqrt(G)``. Tolerances are 4 of
  these standard errors (two-sided normal p = 6e-5; with a spread estimated from 16 replicates, t_15: p = 1e-3).
- Discretisation error: a 50-step DDPM sampler with the exact denoiser does not sample the mixture exactly (its
  reverse kernel is Gaussian, the true one a mixture). Measured with 128k particles (64 groups x 2000, seed 5,
  linear schedule, ``DDPM("large")``): component-mass bias <= 0.004 at lambda = 0 and <= 0.008 at lambda = 1 for
  20 to 100 steps (0.003 at 100 steps); the allowances below are 0.005 and 0.01.

So each tilted run is checked twice: against the same discrete sampler's own tilted law (plain samples
importance-weighted by exp(lam r)), which SMC targets exactly: no discretisation allowance; and against the exact
tilted mixture, with the allowance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import smckit  # noqa: E402
from smckit.diffusion import DDPM, Denoiser, GaussianMixture, NoiseSchedule, RewardSteering  # noqa: E402
from smckit.diffusion.gmm import component_masses, linear_reward  # noqa: E402
from smckit.errors import BackendError, InvalidArgumentError, ShapeError  # noqa: E402
from smckit.random import RNG  # noqa: E402
from smckit.state import take  # noqa: E402

pytestmark = pytest.mark.diffusion
F64 = torch.float64
GROUPS, PARTICLES, STEPS = 16, 1000, 50
LAM = 1.0
BIAS_LAM0, BIAS_TILT = 0.005, 0.01


def mixture(dtype=F64):
    return GaussianMixture([0.5, 0.3, 0.2], [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], [0.25, 0.5, 0.3], dtype=dtype)


DIRECTION = torch.tensor([1.0, 0.5], dtype=F64)


def steering(lam=LAM, steps=STEPS, groups=GROUPS, dtype=F64, **options):
    gmm = mixture(dtype)
    schedule = NoiseSchedule.linear(num_steps=steps)
    options.setdefault("sampler", DDPM("large"))
    return RewardSteering(
        gmm.denoiser(schedule),
        schedule,
        linear_reward(DIRECTION.to(dtype)),
        lam=lam,
        event_shape=(2,),
        groups=groups,
        dtype=dtype,
        **options,
    )


@pytest.fixture(scope="module")
def plain_samples():
    """G x N samples of the 50-step sampler itself (lambda = 0: all potentials are 0, nothing resamples)."""
    result = smckit.run(steering(lam=0.0), PARTICLES, seed=100, resampler="systematic")
    assert not result.history.resampled.any()
    return result.particles["x"]


def masses_and_se(target, x, log_weights=None):
    per_group = component_masses(target, x, log_weights)  # (G, K)
    return per_group.mean(0), per_group.std(0) / math.sqrt(per_group.shape[0])


# -- statistical tests ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_lambda_zero_reproduces_component_masses(plain_samples):
    gmm = mixture()
    est = component_masses(gmm, plain_samples.reshape(-1, 2))
    # independent draws: the MC error of the responsibility average is exactly mass_std / sqrt(G N)
    se = gmm.mass_std(200_000, RNG(7)) / math.sqrt(GROUPS * PARTICLES)
    assert torch.all((est - gmm.weights).abs() <= 4 * se + BIAS_LAM0), (est, gmm.weights, se)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("resampler", "options", "seed"),
    [
        ("multinomial", {}, 1),
        ("systematic", {}, 2),
        ("systematic", {"guidance": LAM}, 3),
    ],
    ids=["multinomial", "systematic", "guided"],
)
def test_tilted_component_masses(plain_samples, resampler, options, seed):
    result = smckit.run(steering(**options), PARTICLES, seed=seed, resampler=resampler)
    check_tilted(result, plain_samples, LAM)


def check_tilted(result, plain_samples, lam):
    tilted = mixture().tilted(DIRECTION, lam)
    assert result.history.resampled.any()  # the potentials are doing something
    est, se = masses_and_se(tilted, result.particles["x"], result.log_weights)
    # 1. the discrete sampler's own tilted law, by importance weighting its plain samples: exact target of SMC
    is_est, is_se = masses_and_se(tilted, plain_samples, lam * (plain_samples @ DIRECTION))
    tol = 4 * torch.sqrt(se**2 + is_se**2)
    assert torch.all((est - is_est).abs() <= tol), (est, is_est, tol)
    # 2. the exact tilted mixture, up to the sampler's discretisation error
    assert torch.all((est - tilted.weights).abs() <= 4 * se + BIAS_TILT), (est, tilted.weights, se)


@pytest.mark.slow
def test_fleming_viot_tilted_component_masses(plain_samples):
    pytest.importorskip("smckit_fvd")
    result = smckit.run(steering(), PARTICLES, seed=5, resampler="fleming-viot")
    check_tilted(result, plain_samples, LAM)


def test_tilting_has_an_effect():
    """The tilted and untilted masses differ by far more than the tolerances above, so the tests have teeth."""
    gmm = mixture()
    assert (gmm.tilted(DIRECTION, LAM).weights - gmm.weights).abs().max() > 0.4
    assert (gmm.tilted(DIRECTION, 1.1 * LAM).weights - gmm.tilted(DIRECTION, LAM).weights).abs().max() > 0.015


# -- exact identities ----------------------------------------------------------------------------------------
def run_by_hand(model, n, seed, resample_at=(), rebirth_scale=0.0):
    """Run the model's steps without the engine, resampling at the given steps with uniform random ancestors and
    permuting a per-particle running sum of the log-potentials with the particles (the path sum)."""
    rng = RNG(seed)
    state = model.initial(n, rng)
    log_g = [model.log_potential(0, None, state)]
    path_sum = log_g[0].clone()
    first_reward = state["reward"].clone()
    for t in range(1, model.num_steps):
        if t in resample_at:
            ancestors = rng.integers(n, (model.groups, n), like=path_sum)
            state, path_sum, first_reward = take((state, path_sum, first_reward), ancestors)
            if rebirth_scale:
                state = model.rebirth(t, state, torch.ones_like(ancestors, dtype=torch.bool), rebirth_scale, rng)
        prev = state
        state = model.propose(t, prev, rng)
        log_g.append(model.log_potential(t, prev, state))
        path_sum = path_sum + log_g[-1]
    return state, log_g, path_sum, first_reward


def test_diff_potential_telescopes():
    model = steering(lam=0.7, steps=12, groups=3)
    state, log_g, path_sum, first_reward = run_by_hand(model, 50, seed=0)
    r0 = first_reward  # r(x0_hat) at the first step
    rx0 = state["x"] @ DIRECTION
    assert torch.allclose(torch.stack(log_g[1:]).sum(0), 0.7 * (rx0 - r0), atol=1e-12, rtol=0)
    assert torch.allclose(log_g[0], 0.7 * r0, atol=1e-14, rtol=0)
    assert torch.allclose(path_sum, 0.7 * rx0, atol=1e-12, rtol=0)
    assert torch.equal(state["x0_hat"], state["x"]) and torch.equal(state["reward"], rx0)


@pytest.mark.parametrize("potential", ["diff", "max", "sum", "rt"])
def test_every_potential_multiplies_to_the_target_along_resampled_paths(potential):
    """Whatever the potential, the log-potentials along each ancestral path sum to lam * r(x0)."""
    model = steering(lam=0.4, steps=10, groups=2, potential=potential, sampler="ddim", eta=0.5)
    state, _, path_sum, _ = run_by_hand(model, 40, seed=1, resample_at=(3, 6, 7))
    assert torch.allclose(path_sum, 0.4 * (state["x"] @ DIRECTION), atol=1e-11, rtol=0)


def test_potential_definitions():
    r = [torch.tensor([[0.5, -1.0]], dtype=F64), torch.tensor([[0.2, 0.3]], dtype=F64)]
    from smckit.diffusion import make_potential

    expected = {"diff": [0.5, -0.3], "rt": [0.5, 0.2], "max": [0.5, 0.5], "sum": [0.5, 0.7]}
    for name, (first, second) in expected.items():
        pot = make_potential(name)
        h0, m0 = pot.initial(r[0])
        h1, _ = pot.update(r[1], h0, m0)
        assert float(h0[0, 0]) == pytest.approx(first) and float((h1 - h0)[0, 0]) == pytest.approx(second), name


# -- shapes, dtypes, chunking, conditioning --------------------------------------------------------------------
class GaussianData:
    """Data N(0, s^2 I) on images: the exact noise prediction is sqrt(1-a) x / (a s^2 + 1 - a)."""

    def __init__(self, schedule, s=0.7):
        self.schedule, self.s = schedule, s
        self.calls: list[tuple[int, dict]] = []

    def __call__(self, x, t, **conditioning):
        self.calls.append((x.shape[0], {k: v.clone() for k, v in conditioning.items()}))
        a = self.schedule.alpha_bar(t)
        return math.sqrt(1 - a) * x / (a * self.s**2 + 1 - a)


class CountingReward:
    def __init__(self):
        self.batches: list[int] = []

    def __call__(self, x, *, target):
        self.batches.append(x.shape[0])
        return x.flatten(1).mean(1) * target.to(x.dtype)


def image_model(chunk_size=None, denoiser_chunk_size=None, **options):
    schedule = NoiseSchedule.linear(num_steps=6)
    data = GaussianData(schedule)
    reward = CountingReward()
    labels = torch.tensor([3, 7, 1])
    model = RewardSteering(
        data,
        schedule,
        reward,
        event_shape=(1, 4, 4),
        groups=3,
        dtype=F64,
        lam=2.0,
        chunk_size=chunk_size,
        denoiser_chunk_size=denoiser_chunk_size,
        conditioning={"class_labels": labels},
        reward_conditioning={"target": torch.tensor([1.0, -1.0, 0.5], dtype=F64)},
        **options,
    )
    return model, data, reward


def test_groups_by_particles_shapes_and_conditioning():
    model, data, _ = image_model()
    assert model.num_steps == 7
    result = smckit.run(model, 5, seed=0, resampler="systematic", history="full")
    x = result.particles
    assert tuple(x["x"].shape) == (3, 5, 1, 4, 4) == tuple(x["x0_hat"].shape) == tuple(x["eps"].shape)
    for key in ("reward", "twist", "memory"):
        assert tuple(x[key].shape) == (3, 5)
    assert tuple(result.log_weights.shape) == (3, 5) and tuple(result.log_evidence.shape) == (3,)
    # per-group conditioning is broadcast to the particles of its group
    batch, cond = data.calls[0]
    assert batch == 15
    assert torch.equal(cond["class_labels"], torch.tensor([3, 7, 1]).repeat_interleave(5))
    assert model.denoiser_calls == 6 * 15  # one evaluation per timestep per particle
    # the reward saw its per-group conditioning: the third group's rewards are half the mean pixel
    assert torch.allclose(x["reward"][2], 0.5 * x["x"][2].flatten(1).mean(1), atol=1e-14, rtol=0)


def test_chunked_calls_give_the_same_run():
    full, _, _ = image_model()
    chunked, data, reward = image_model(chunk_size=4, denoiser_chunk_size=6)
    a = smckit.run(full, 5, seed=3, resampler="systematic")
    b = smckit.run(chunked, 5, seed=3, resampler="systematic")
    assert max(reward.batches) == 4 and max(n for n, _ in data.calls) == 6
    assert sum(reward.batches) == 7 * 15  # one reward per particle per step, in chunks
    for key in a.particles:
        assert torch.allclose(a.particles[key], b.particles[key], atol=1e-12, rtol=0), key
    assert torch.allclose(a.log_weights, b.log_weights, atol=1e-12, rtol=0)


def test_decode_feeds_the_reward():
    seen = []

    def decode(z):
        seen.append(z.shape)
        return 2.0 * z

    model, _, _ = image_model(decode=decode)
    state = model.initial(4, RNG(0))
    assert seen and seen[0] == (12, 1, 4, 4)
    target = torch.tensor([1.0, -1.0, 0.5], dtype=F64)[:, None]
    assert torch.allclose(state["reward"], target * 2.0 * state["x0_hat"].flatten(2).mean(2), atol=1e-14, rtol=0)


def test_float32_end_to_end():
    model = steering(steps=10, groups=4, dtype=torch.float32, guidance=0.5)
    result = smckit.run(model, 200, seed=0, resampler="systematic")
    for key, value in result.particles.items():
        assert value.dtype == torch.float32, key
    assert result.log_weights.dtype == torch.float32
    assert torch.isfinite(result.log_weights).all()
    masses = component_masses(
        mixture(torch.float32).tilted(DIRECTION.float(), LAM), result.particles["x"], result.log_weights
    )
    assert masses.dtype == torch.float32 and torch.allclose(masses.sum(-1), torch.ones(4), atol=1e-5)


def test_invalid_arguments():
    gmm, schedule = mixture(), NoiseSchedule.linear(num_steps=5)
    with pytest.raises(InvalidArgumentError):
        RewardSteering(gmm.denoiser(schedule), schedule, None, event_shape=(2,), guidance=1.0)
    with pytest.raises(InvalidArgumentError):
        RewardSteering(gmm.denoiser(schedule), schedule, None, event_shape=(2,), eta=0.5)  # eta without ddim
    with pytest.raises(ShapeError):
        RewardSteering(
            gmm.denoiser(schedule), schedule, None, event_shape=(2,), groups=2, conditioning={"c": torch.zeros(3)}
        )
    with pytest.raises(ShapeError):
        model = RewardSteering(gmm.denoiser(schedule), schedule, lambda x: x, event_shape=(2,), dtype=F64)
        model.initial(3, RNG(0))  # the reward must return one number per sample
    with pytest.raises(InvalidArgumentError):
        RewardSteering(gmm.denoiser(schedule), schedule, None, event_shape=(2,), sampler="guided")
    with pytest.raises(BackendError):  # a network that answers in another dtype is an error, not a silent cast
        Denoiser(lambda x, t: x.float())(torch.zeros(2, 2, dtype=F64), 3, 0.5)
    with pytest.raises(BackendError):  # conditioning must already be on the model's device
        RewardSteering(
            gmm.denoiser(schedule), schedule, None, event_shape=(2,), conditioning={"c": torch.zeros(1, device="meta")}
        )
    model = steering(steps=5, groups=1)
    with pytest.raises(InvalidArgumentError):
        model.rebirth(1, model.initial(2, RNG(0)), torch.ones(1, 2, dtype=torch.bool), 1.5, RNG(0))


# -- device discipline ------------------------------------------------------------------------------------------
SYNCS = {
    torch.Tensor.item,
    torch.Tensor.cpu,
    torch.Tensor.tolist,
    torch.Tensor.numpy,
    torch.Tensor.__bool__,
    torch.Tensor.__float__,
    torch.Tensor.__int__,
}


class DeviceGuard(torch.overrides.TorchFunctionMode):
    """Records every torch call whose tensor output is not on ``device``, and every host synchronisation.

    Used inside ``with torch.device("meta")``: a factory call without ``device=`` then makes a meta tensor, and
    this guard, the innermost mode, sees it come back; so a tensor created without ``device=`` (or on another
    device) is caught even on a CPU-only machine, where the default device would otherwise hide it.
    """

    def __init__(self, device):
        super().__init__()
        self.device = torch.device(device)
        self.violations: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in SYNCS:
            self.violations.append(f"host sync {func.__name__}")
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor) and value.device != self.device:
                self.violations.append(f"{getattr(func, '__name__', func)} made a tensor on {value.device}")
        return out


def test_device_guard_catches_a_missing_device():
    x = torch.ones(3)
    with torch.device("meta"), DeviceGuard("cpu") as guard:
        _ = torch.zeros(3)  # no device=: lands on meta
        _ = bool(x.sum() > 0)
    assert any("zeros" in v for v in guard.violations) and any("__bool__" in v for v in guard.violations)
    with torch.device("meta"), DeviceGuard("cpu") as clean:
        _ = torch.zeros(3, device=x.device) + x
    assert clean.violations == []


def test_device_discipline_of_every_model_method():
    """initial, propose (DDPM and guided, chunked, conditioned), log_potential and rebirth create every tensor on
    the input's device and never synchronise with the host."""
    model, _, _ = image_model(chunk_size=4, denoiser_chunk_size=6, guidance=0.5)
    models = [model, steering(steps=6, groups=2, sampler="ddim", eta=0.3)]
    for m in models:
        with torch.device("meta"), DeviceGuard("cpu") as guard:
            state, _, path_sum, _ = run_by_hand(m, 5, seed=0, resample_at=(2, 4), rebirth_scale=0.5)
        assert guard.violations == [], guard.violations
        assert state["x"].device.type == "cpu" and path_sum.device.type == "cpu"


# -- clones and rebirth ----------------------------------------------------------------------------------------
def cloned_run(scale, steps=15):
    """Four clones of one particle per group (DDIM eta = 0), reborn at step 1 with the given noise, then run."""
    model = steering(steps=steps, groups=2, sampler="ddim", eta=0.0)
    rng = RNG(0)
    state = take(model.initial(4, rng), torch.zeros(2, 4, dtype=torch.int64))
    reborn = torch.tensor([[False, True, True, True]] * 2)
    reborn_state = model.rebirth(1, state, reborn, scale, rng)
    for t in range(1, model.num_steps):
        reborn_state = model.propose(t, reborn_state, rng)
    return model, state, reborn_state


def test_deterministic_clones_stay_identical_without_rebirth_noise():
    _, _, final = cloned_run(0.0)
    x = final["x"]
    assert torch.equal(x, x[:, :1].expand_as(x))  # DDIM eta = 0 and scale 0: the clones retrace one path


def test_rebirth_noise_makes_clones_diverge():
    model, before, final = cloned_run(0.5)
    x = final["x"]
    assert torch.equal(final["x"][:, 0], cloned_run(0.0)[2]["x"][:, 0])  # the particle not reborn is untouched
    distances = (x[:, 1:] - x[:, :1]).norm(dim=-1)
    assert (distances > 1e-3).all()
    del model, before


def test_rebirth_is_schedule_consistent():
    """Reborn particles keep x0_hat; their new implied noise is sqrt(1 - s^2) e + s xi, so at scale 1 it is fresh
    standard normal noise: mean 0 and variance 1 within MC error (n = 20000 values, se of the mean 0.007, of the
    variance 0.01; tolerances 5 se)."""
    model = steering(steps=20, groups=1)
    rng = RNG(1)
    state = model.initial(10_000, rng)
    t = 1
    a = model.schedule.level(t - 1)
    mask = torch.ones(1, 10_000, dtype=torch.bool)
    new = model.rebirth(t, state, mask, 1.0, rng)
    assert torch.equal(new["x0_hat"], state["x0_hat"]) and torch.equal(new["reward"], state["reward"])
    implied = (new["x"] - math.sqrt(a) * new["x0_hat"]) / math.sqrt(1 - a)
    assert abs(float(implied.mean())) < 5 * 0.007 and abs(float(implied.var()) - 1) < 5 * 0.01
    # the stored noise estimate moved with x (no clipping here: it equals the implied noise)
    assert torch.allclose(new["eps"], implied, atol=1e-10, rtol=0)
    assert model.rebirth(t, state, mask, 0.0, rng) is state


def distinct_rows(x):
    """Number of distinct samples per group, for x of shape (G, n, d)."""
    return [int(torch.unique(x[g], dim=0).shape[0]) for g in range(x.shape[0])]


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_fleming_viot_rebirth_noise_with_deterministic_sampler(noise):
    """DDIM with eta = 0 is deterministic, so without rebirth noise a final sample is a function of its lineage's
    root: as many distinct samples as distinct roots. Rebirth noise makes reborn clones diverge, except those made
    at the last resampling: the last DDIM move returns the stored x0_hat, which rebirth keeps. So with noise the
    final samples are exactly as many as the distinct parents of the last resampling, more than the roots."""
    pytest.importorskip("smckit_fvd")
    from smckit.plugins import make_resampler

    model = steering(steps=15, groups=3, sampler="ddim", eta=0.0)
    resampler = make_resampler("fleming-viot", rebirth_noise=noise)
    result = smckit.run(model, 64, seed=0, resampler=resampler, policy=smckit.Always())
    roots = result.history.lineages()[-1]
    distinct = distinct_rows(result.particles["x"])
    assert all(r < 64 for r in roots)  # resampling did clone particles
    if noise == 0.0:
        assert distinct == [int(r) for r in roots]
    else:
        last_parents = [int(np.unique(np.asarray(a)).size) for a in result.history.ancestors[-1]]
        assert distinct == last_parents
        assert all(d > int(r) for d, r in zip(distinct, roots))


def test_deterministic_sampler_clones_with_multinomial_resampling():
    """The same without a rebirth mechanism (documented): multinomial SMC on DDIM eta = 0 leaves clones."""
    result = smckit.run(
        steering(steps=15, groups=3, sampler="ddim"), 64, seed=0, resampler="multinomial", policy=smckit.Always()
    )
    assert distinct_rows(result.particles["x"]) == [int(r) for r in result.history.lineages()[-1]]
