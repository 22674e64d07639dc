"""Flow matching as a Feynman-Kac model, on the analytic Gaussian mixture written as a flow (its exact velocity).

Statistical tests use G = 16 independent groups of N = 1000 particles, as in test_diffusion_gmm.py, with tolerances
of 4 standard errors (the spread of the G replicate estimates / sqrt(G); t_15: p = 1e-3).

Discretisation (measured with 200,000 plain draws, seed 1, lambda = 1, direction (1, 0.5)): the flow sampler on
the uniform grid needs more steps than DDPM on the linear schedule for the same accuracy. At 50 steps the tilted
masses' total variation from the exact tilt is 0.0022 for DDPM ("large" variance, the version in
test_diffusion_gmm.py) and 0.004 to 0.007 for the flow (eta 0 to 1); at 100 steps with eta = 0.5 the flow's is
0.0022. So the flow here takes 100 steps with eta = 0.5, and its exact-target checks carry the allowances
measured for it: component-mass bias <= 0.002 (allowance 0.01), evidence ratio E[exp(lam r)] / Z = 0.976 +- 0.004
(allowance 0.04).
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import smckit  # noqa: E402
from smckit.diffusion import DDPM, GaussianMixture, NoiseSchedule, RewardSteering  # noqa: E402
from smckit.diffusion.flow import FlowSchedule, FlowStep  # noqa: E402
from smckit.diffusion.gmm import component_masses, linear_reward  # noqa: E402
from smckit.errors import InvalidArgumentError  # noqa: E402
from smckit.random import RNG  # noqa: E402
from smckit.state import take  # noqa: E402

pytestmark = pytest.mark.diffusion
F64 = torch.float64
GROUPS, PARTICLES, FLOW_STEPS, ETA, LAM = 16, 1000, 100, 0.5, 1.0
BIAS_MASS, BIAS_EVIDENCE = 0.01, 0.04
DIRECTION = torch.tensor([1.0, 0.5], dtype=F64)


def mixture(dtype=F64):
    return GaussianMixture([0.5, 0.3, 0.2], [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], [0.25, 0.5, 0.3], dtype=dtype)


def flow_steering(lam=LAM, steps=FLOW_STEPS, eta=ETA, groups=GROUPS, **options):
    schedule = FlowSchedule.uniform(steps)
    return RewardSteering(
        mixture().flow_denoiser(schedule),
        schedule,
        linear_reward(DIRECTION),
        lam=lam,
        event_shape=(2,),
        groups=groups,
        dtype=F64,
        eta=eta,
        **options,
    )


def replicate_mean(per_group):
    return per_group.mean(0), per_group.std(0) / math.sqrt(per_group.shape[0])


# -- the exact velocity ----------------------------------------------------------------------------------------
def test_mixture_velocity_is_exact():
    """For one Gaussian component the posterior is Gaussian: E[x0 | x_s] = mu + v a (x - a mu) / (a^2 v + s^2) with
    a = 1 - s, and the velocity is E[eps | x] - E[x0 | x]; the denoiser's estimates satisfy x = a x0_hat + s eps_hat."""
    single = GaussianMixture([1.0], [[0.5, -1.0]], [[0.3, 2.0]])
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    for s in (1.0, 0.6, 0.05):
        a = 1.0 - s
        x0 = single.means + single.variances * a * (x - a * single.means) / (a * a * single.variances + s * s)
        assert torch.allclose(single.velocity(x, s), (x - a * x0) / s - x0, atol=1e-12, rtol=0)
    schedule = FlowSchedule.uniform(5)
    out = mixture().flow_denoiser(schedule)(x, schedule.timesteps[2], schedule.level(2))
    s = schedule.level(2)
    assert torch.allclose((1 - s) * out.x0_hat + s * out.eps, x, atol=1e-12, rtol=0)


def test_flow_schedule_construction():
    s = FlowSchedule.uniform(4, shift=3.0)
    u = [1.0, 0.75, 0.5, 0.25]
    assert [round(v, 12) for v in s.sigmas] == [round(3 * v / (1 + 2 * v), 12) for v in u]
    assert s.level(4) == 0.0 and s.landing(3) == 0.0 and s.coefficients(0.25) == (0.75, 0.25)
    assert FlowSchedule([0.9, 0.5, 0.0], [9.0, 5.0]).final_sigma == 0.0
    for bad in ([0.5, 0.9], [1.5], [0.5, 0.5]):
        with pytest.raises(InvalidArgumentError):
            FlowSchedule(bad)
    with pytest.raises(InvalidArgumentError):
        FlowStep(1.5)
    with pytest.raises(InvalidArgumentError):
        FlowStep(0.5, noise="loud")


def test_flow_step_is_ddim_in_rescaled_coordinates():
    """The flow x = (1 - s) x0 + s eps is the variance-preserving diffusion y = x / r, r = sqrt((1 - s)^2 + s^2),
    abar = (1 - s)^2 / r^2, with the same (x0, eps): so the flow step with eta is r' times DDIM's step with eta
    (noise="posterior"), mean and std alike; and given the true (x0, eps) it lands on (1 - s') x0 + s' (unit noise)."""
    from smckit.diffusion import DDIM, DenoiserOutput

    gen = torch.Generator().manual_seed(4)
    x0, eps = torch.randn(5, 3, generator=gen, dtype=F64), torch.randn(5, 3, generator=gen, dtype=F64)
    for s, s_next in ((1.0, 0.7), (0.8, 0.3), (0.2, 0.05), (0.1, 0.0)):
        r, r_next = math.hypot(1 - s, s), math.hypot(1 - s_next, s_next)
        abar, abar_next = ((1 - s) / r) ** 2, ((1 - s_next) / r_next) ** 2
        x = (1 - s) * x0 + s * eps
        out = DenoiserOutput(eps, x0)
        for eta in (0.0, 0.4, 1.0):
            flow = FlowStep(eta)(x, out, s, s_next)
            ddim = DDIM(eta)(x / r, out, abar, abar_next)
            assert flow.std == pytest.approx(r_next * ddim.std, abs=1e-12)
            # sqrt(1 - abar' - std^2) of a difference that is 0 up to round-off: an error of sqrt(1e-16) at most
            assert torch.allclose(flow.mean, r_next * ddim.mean, atol=1e-7, rtol=0)
            # exact estimates: the step's law is that of (1 - s') x0 + s' z
            assert flow.std**2 + float(((flow.mean - (1 - s_next) * x0) / eps).mean()) ** 2 == pytest.approx(
                s_next**2, abs=1e-12
            )


def test_flow_steering_telescopes_and_rebirth_uses_the_flow_level():
    model = flow_steering(lam=0.7, steps=8, groups=2)
    assert model.num_steps == 9 and isinstance(model.transition, FlowStep)
    rng = RNG(0)
    state = model.initial(20, rng)
    path = model.log_potential(0, None, state)
    for t in range(1, model.num_steps):
        if t == 4:  # clone particle 0 everywhere, then rebirth at scale 1: fresh noise at the flow's level
            state = take(state, torch.zeros(2, 20, dtype=torch.int64))
            path = take(path, torch.zeros(2, 20, dtype=torch.int64))
            reborn = model.rebirth(t, state, torch.ones(2, 20, dtype=torch.bool), 1.0, rng)
            s = model.schedule.level(t - 1)
            assert torch.equal(reborn["x0_hat"], state["x0_hat"])
            implied = (reborn["x"] - (1 - s) * reborn["x0_hat"]) / s
            assert torch.allclose(reborn["eps"], implied, atol=1e-10, rtol=0)
            assert float((reborn["x"][:, 1:] - reborn["x"][:, :1]).abs().min()) > 0  # clones diverged
            state = reborn
        prev, state = state, model.propose(t, state, rng)
        path = path + model.log_potential(t, prev, state)
    assert torch.allclose(path, 0.7 * (state["x"] @ DIRECTION), atol=1e-11, rtol=0)
    assert torch.equal(state["x0_hat"], state["x"])


def test_flow_options_are_checked():
    schedule = FlowSchedule.uniform(5)
    gmm = mixture()
    with pytest.raises(InvalidArgumentError, match="deterministic"):
        RewardSteering(gmm.flow_denoiser(schedule), schedule, linear_reward(DIRECTION), event_shape=(2,), guidance=1)
    with pytest.raises(InvalidArgumentError, match="schedule"):
        RewardSteering(gmm.flow_denoiser(schedule), schedule, event_shape=(2,), sampler="ddpm")
    noise_schedule = NoiseSchedule.linear(num_steps=5)
    with pytest.raises(InvalidArgumentError, match="FlowSchedule"):
        RewardSteering(gmm.flow_denoiser(schedule), noise_schedule, event_shape=(2,))
    guided = RewardSteering(
        gmm.flow_denoiser(schedule), schedule, linear_reward(DIRECTION), event_shape=(2,), eta=0.5, guidance=1.0
    )
    assert guided.proposal.base.eta == 0.5


# -- the tilted target and the evidence ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plain_flow():
    """64,000 plain samples of the flow sampler (lambda = 0): its own law, for the exact-target-of-SMC checks."""
    result = smckit.run(flow_steering(lam=0.0, groups=64), PARTICLES, seed=200)
    return result.particles["x"]


@pytest.mark.slow
def test_flow_steering_reaches_the_tilted_target(plain_flow):
    tilted = mixture().tilted(DIRECTION, LAM)
    flow = smckit.run(flow_steering(), PARTICLES, seed=11, resampler="systematic")
    assert flow.history.resampled.any()
    est, se = replicate_mean(component_masses(tilted, flow.particles["x"], flow.log_weights))
    # 1. the flow sampler's own tilted law (its plain samples, importance-weighted): the exact target of SMC
    is_est, is_se = replicate_mean(component_masses(tilted, plain_flow, LAM * (plain_flow @ DIRECTION)))
    assert torch.all((est - is_est).abs() <= 4 * torch.sqrt(se**2 + is_se**2)), (est, is_est)
    # 2. the exact tilted mixture, up to the discretisation allowance
    assert torch.all((est - tilted.weights).abs() <= 4 * se + BIAS_MASS), (est, tilted.weights, se)
    # 3. total variation no worse than the DDPM version's (50 DDPM steps, as in test_diffusion_gmm.py), within the
    #    Monte Carlo error of the two TV estimates (each at most sum_k se_k / 2)
    schedule = NoiseSchedule.linear(num_steps=50)
    ddpm_model = RewardSteering(
        mixture().denoiser(schedule),
        schedule,
        linear_reward(DIRECTION),
        lam=LAM,
        event_shape=(2,),
        groups=GROUPS,
        dtype=F64,
        sampler=DDPM("large"),
    )
    ddpm = smckit.run(ddpm_model, PARTICLES, seed=12, resampler="systematic")
    d_est, d_se = replicate_mean(component_masses(tilted, ddpm.particles["x"], ddpm.log_weights))
    tv_flow, tv_ddpm = 0.5 * (est - tilted.weights).abs().sum(), 0.5 * (d_est - tilted.weights).abs().sum()
    assert tv_flow <= tv_ddpm + 4 * 0.5 * float(torch.sqrt(se**2 + d_se**2).sum()), (tv_flow, tv_ddpm)


@pytest.mark.slow
def test_flow_evidence_is_unbiased(plain_flow):
    """E[Z_hat] = Z: the per-group evidences' ratio to the sampler's own normalising constant (estimated from its
    plain samples) averages to 1, and to the exact constant of the mixture up to the discretisation allowance."""
    log_z = mixture().log_normalizer(DIRECTION, LAM)
    result = smckit.run(flow_steering(), PARTICLES, seed=13, resampler="systematic")
    ratio = torch.exp(torch.as_tensor(result.log_evidence, dtype=F64) - log_z)  # (G,), unbiased for Z_S / Z
    mean, se = float(ratio.mean()), float(ratio.std()) / math.sqrt(GROUPS)
    own = torch.exp(LAM * (plain_flow.reshape(-1, 2) @ DIRECTION) - log_z)
    own_mean, own_se = float(own.mean()), float(own.std()) / math.sqrt(own.numel())
    assert abs(mean - own_mean) <= 4 * math.hypot(se, own_se), (mean, own_mean, se, own_se)
    assert abs(mean - 1.0) <= 4 * se + BIAS_EVIDENCE, (mean, se)
