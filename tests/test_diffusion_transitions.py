"""Gaussian reverse steps, the denoiser wrapper and the diffusers bridge.

The bridge tests build a tiny random-init diffusers UNet2DModel and compare the adapter's reverse step with the
scheduler's own ``step`` at every timestep, in float64, to 1e-6 (the whole configuration space is covered in
test_diffusion_parity.py with a cheap stand-in network).
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from smckit.diffusion import DDIM, DDPM, Denoiser, DenoiserOutput, Guided, NoiseSchedule, RewardSteering  # noqa: E402
from smckit.diffusion.transitions import from_diffusers as transition_from_diffusers  # noqa: E402
from smckit.errors import InvalidArgumentError  # noqa: E402
from smckit.random import RNG  # noqa: E402

pytestmark = pytest.mark.diffusion
F64 = torch.float64
TOL = 1e-6
SPACINGS = ["leading", "linspace"]


# -- fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    model = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    return model.to(F64).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def evaluate(unet):
    """``evaluate(t) -> (x, unet(x, t).sample)`` for a fixed random x per timestep, cached: float64 convolutions
    are slow on a CPU, and every scheduler configuration visits the same few timesteps."""
    cache = {}

    def run(t):
        if t not in cache:
            x = 2.0 * torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1000 + t), dtype=F64)
            cache[t] = (x, unet(x, t).sample)
        return cache[t]

    return run


def make_scheduler(kind: str, spacing: str, **config):
    cls = diffusers.DDPMScheduler if kind == "ddpm" else diffusers.DDIMScheduler
    sched = cls(num_train_timesteps=1000, timestep_spacing=spacing, **config)
    sched.set_timesteps(10)
    # diffusers keeps alphas_cumprod in float32 and computes the step's coefficients in float32 scalars; in float64
    # the comparison is then limited by float32 round-off times |x0| (up to ~150 at t = 999). Casting the
    # scheduler's tables to float64 (the values themselves are unchanged) makes both sides use the same numbers.
    sched.alphas_cumprod = sched.alphas_cumprod.to(F64)
    sched.one = torch.tensor(1.0, dtype=F64)
    if kind == "ddim":
        sched.final_alpha_cumprod = sched.final_alpha_cumprod.to(F64)
    return sched


def ddpm_reference(sched, output, t, x):
    """Mean and std of DDPMScheduler.step: it only returns a sample, so draw twice with known noise and solve."""
    draws = []
    for seed in (11, 12):
        prev = sched.step(output, t, x, generator=torch.Generator().manual_seed(seed)).prev_sample
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
        draws.append((prev, noise))
    (p1, n1), (p2, n2) = draws
    dn = n1 - n2
    std = float(((p1 - p2) * dn).sum() / (dn * dn).sum())  # least squares: p1 - p2 = std * (n1 - n2)
    return p1 - std * n1, std


def ddim_reference(sched, output, t, x, eta):
    """Mean, std and x0 estimate of DDIMScheduler.step: with zero and with unit variance noise."""
    zero = sched.step(output, t, x, eta=eta, variance_noise=torch.zeros_like(x))
    one = sched.step(output, t, x, eta=eta, variance_noise=torch.ones_like(x))
    std = float((one.prev_sample - zero.prev_sample).mean())
    return zero.prev_sample, std, zero.pred_original_sample


def check_against_scheduler(evaluate, unet, sched, eta=None):
    schedule = NoiseSchedule.from_diffusers(sched)
    denoiser = Denoiser.from_unet(unet, sched)
    transition = transition_from_diffusers(sched, eta=eta or 0.0)
    assert schedule.timesteps == tuple(int(t) for t in sched.timesteps)
    for t in schedule.timesteps:
        x, raw = evaluate(t)
        out = denoiser.convert(raw, x, schedule.alpha_bar(t))
        step = transition.step(schedule, t, x, out)
        if isinstance(sched, diffusers.DDPMScheduler):
            mean, std = ddpm_reference(sched, raw, t, x)
            x0 = sched.step(raw, t, x, generator=torch.Generator().manual_seed(0)).pred_original_sample
        else:
            mean, std, x0 = ddim_reference(sched, raw, t, x, eta)
        assert torch.allclose(out.x0_hat, x0, atol=TOL, rtol=0), f"x0_hat at t={t}"
        assert torch.allclose(step.mean, mean, atol=TOL, rtol=0), f"mean at t={t}: {(step.mean - mean).abs().max()}"
        assert abs(step.std - std) < TOL, f"std at t={t}: {step.std} vs {std}"
    return schedule


# -- the diffusers bridge --------------------------------------------------------------------------------------
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("clip", [True, False], ids=["clip", "noclip"])
def test_ddpm_matches_scheduler_step(evaluate, unet, spacing, clip):
    sched = make_scheduler("ddpm", spacing, clip_sample=clip)
    schedule = check_against_scheduler(evaluate, unet, sched)
    assert schedule.final_alpha_cumprod == 1.0


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("clip", [True, False], ids=["clip", "noclip"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_matches_scheduler_step(evaluate, unet, spacing, clip, eta):
    sched = make_scheduler("ddim", spacing, clip_sample=clip)
    check_against_scheduler(evaluate, unet, sched, eta=eta)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_prediction_types_match_scheduler(evaluate, unet, kind, prediction_type):
    sched = make_scheduler(kind, "leading", clip_sample=True, prediction_type=prediction_type)
    check_against_scheduler(evaluate, unet, sched, eta=0.5 if kind == "ddim" else None)


def test_thresholding_matches_scheduler(evaluate, unet):
    sched = make_scheduler("ddpm", "leading", thresholding=True, sample_max_value=2.0)
    denoiser = Denoiser.from_unet(unet, sched)
    assert denoiser.thresholding
    check_against_scheduler(evaluate, unet, sched)


def test_clipping_changes_the_step(evaluate, unet):
    """The clip option is live (at a noisy timestep the clipped and unclipped means differ), and the wrapper
    calls the network as ``unet(x, t).sample``."""
    x, raw = evaluate(900)
    means = []
    for clip in (True, False):
        sched = make_scheduler("ddpm", "leading", clip_sample=clip)
        schedule = NoiseSchedule.from_diffusers(sched)
        denoiser = Denoiser.from_unet(unet, sched)
        out = denoiser(x, 900, schedule.alpha_bar(900))
        expected = denoiser.convert(raw, x, schedule.alpha_bar(900))
        assert torch.equal(out.x0_hat, expected.x0_hat) and torch.equal(out.eps, expected.eps)
        means.append(DDPM().step(schedule, 900, x, out).mean)
        assert bool(out.x0_hat.abs().max() <= 1.0) == clip
    assert not torch.allclose(*means)


def test_unet2d_condition_model_with_encoder_hidden_states():
    """UNet2DConditionModel through from_unet: per-group encoder_hidden_states reach every particle of the group."""
    torch.manual_seed(0)
    unet = (
        diffusers.UNet2DConditionModel(
            sample_size=8,
            in_channels=1,
            out_channels=1,
            block_out_channels=(4, 8),
            layers_per_block=1,
            norm_num_groups=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=6,
            attention_head_dim=2,
        )
        .to(F64)
        .eval()
        .requires_grad_(False)
    )
    sched = make_scheduler("ddim", "leading", clip_sample=False)
    schedule = NoiseSchedule.from_diffusers(sched)
    states = torch.randn(2, 5, 6, dtype=F64, generator=torch.Generator().manual_seed(1))
    model = RewardSteering(
        Denoiser.from_unet(unet, sched),
        schedule,
        event_shape=(1, 8, 8),
        groups=2,
        sampler="ddim",
        conditioning={"encoder_hidden_states": states},
        dtype=F64,
        denoiser_chunk_size=2,  # 6 samples in chunks of 2: the conditioning is sliced with them
    )
    state = model.initial(3, RNG(0))
    t = schedule.timesteps[0]
    for g in range(2):
        direct = unet(state["x"][g], t, encoder_hidden_states=states[g].expand(3, 5, 6)).sample
        assert torch.allclose(state["eps"][g], direct, atol=1e-10, rtol=0)
    other = unet(state["x"][0], t, encoder_hidden_states=states[1].expand(3, 5, 6)).sample
    assert not torch.allclose(state["eps"][0], other)  # the conditioning matters, so the check above has teeth


def test_from_diffusers_transition_kinds():
    assert isinstance(transition_from_diffusers(make_scheduler("ddpm", "leading")), DDPM)
    large = transition_from_diffusers(make_scheduler("ddpm", "leading", variance_type="fixed_large"))
    assert isinstance(large, DDPM) and large.variance == "large"
    assert transition_from_diffusers(make_scheduler("ddim", "leading"), eta=0.3).eta == 0.3
    with pytest.raises(InvalidArgumentError):
        transition_from_diffusers(make_scheduler("ddpm", "leading", variance_type="learned_range"))
    with pytest.raises(InvalidArgumentError):
        transition_from_diffusers(diffusers.EulerDiscreteScheduler())


# -- the transitions on their own ----------------------------------------------------------------------------
def _output(x, a, eps):
    return DenoiserOutput(eps, (x - math.sqrt(1 - a) * eps) / math.sqrt(a))


def test_ddim_eta_one_equals_ddpm_without_clipping():
    gen = torch.Generator().manual_seed(0)
    x, eps = torch.randn(4, 3, generator=gen, dtype=F64), torch.randn(4, 3, generator=gen, dtype=F64)
    a, a_prev = 0.3, 0.55
    out = _output(x, a, eps)
    ddpm, ddim = DDPM()(x, out, a, a_prev), DDIM(1.0)(x, out, a, a_prev)
    assert torch.allclose(ddpm.mean, ddim.mean, atol=1e-12, rtol=0)
    assert ddpm.std == pytest.approx(ddim.std, abs=1e-14)
    assert DDIM(0.0)(x, out, a, a_prev).std == 0.0


def test_log_prob_matches_torch_normal():
    gen = torch.Generator().manual_seed(1)
    x, eps = torch.randn(2, 5, 2, 3, generator=gen, dtype=F64), torch.randn(2, 5, 2, 3, generator=gen, dtype=F64)
    step = DDPM()(x, _output(x, 0.4, eps), 0.4, 0.6, event_ndim=2)
    y = step.sample(torch.randn(x.shape, generator=gen, dtype=F64))
    expected = torch.distributions.Normal(step.mean, step.std).log_prob(y).sum(dim=(-2, -1))
    assert step.log_prob(y).shape == (2, 5)
    assert torch.allclose(step.log_prob(y), expected, atol=1e-10, rtol=0)


def test_last_step_is_deterministic_point_mass():
    gen = torch.Generator().manual_seed(2)
    x, eps = torch.randn(3, 2, generator=gen, dtype=F64), torch.randn(3, 2, generator=gen, dtype=F64)
    out = _output(x, 0.9, eps)
    for transition in (DDPM(), DDPM("large"), DDIM(0.7)):
        # final level abar = 1: the mean is x0_hat and the std is 0; with a final level below 1, still std 0
        step = transition(x, out, 0.9, 1.0, final=True)
        assert step.std == 0.0
        assert torch.allclose(step.mean, out.x0_hat, atol=1e-12, rtol=0)
        assert torch.equal(step.sample(None), step.mean)
        assert torch.equal(step.log_prob(step.mean), torch.zeros(3, dtype=F64))
        assert transition(x, out, 0.9, 0.95, final=True).std == 0.0
    assert DDPM("large")(x, out, 0.9, 0.95).std > 0.0


def test_guided_correction_is_the_exact_log_ratio():
    """log p(x) - log q(x) of the guided draw equals the difference of the two Gaussian log-densities."""
    gen = torch.Generator().manual_seed(3)
    x, eps = torch.randn(6, 4, generator=gen, dtype=F64), torch.randn(6, 4, generator=gen, dtype=F64)
    grad, noise = torch.randn(6, 4, generator=gen, dtype=F64), torch.randn(6, 4, generator=gen, dtype=F64)
    guided = Guided("ddpm", scale=1.7)
    step = guided(x, _output(x, 0.2, eps), 0.2, 0.35)
    x_new, correction = guided.propose(step, noise, grad, 0.35)
    shifted = DDPM()(x, _output(x, 0.2, eps), 0.2, 0.35)
    q_mean = step.mean + 1.7 * step.std**2 * grad
    log_q = torch.distributions.Normal(q_mean, step.std).log_prob(x_new).sum(-1)
    assert torch.allclose(x_new, q_mean + step.std * noise, atol=1e-12, rtol=0)
    assert torch.allclose(correction, shifted.log_prob(x_new) - log_q, atol=1e-9, rtol=0)
    # the last step has no noise, so no shift and no correction
    final = guided(x, _output(x, 0.2, eps), 0.2, 1.0, final=True)
    assert guided.propose(final, None, grad, 1.0) == (final.mean, None)


def test_denoiser_conversions_are_consistent():
    """epsilon, sample and v outputs describing the same (x0, eps) give the same estimates."""
    gen = torch.Generator().manual_seed(4)
    x0, eps = torch.randn(5, 3, generator=gen, dtype=F64), torch.randn(5, 3, generator=gen, dtype=F64)
    a = 0.37
    x = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    v = math.sqrt(a) * eps - math.sqrt(1 - a) * x0
    for kind, output in (("epsilon", eps), ("sample", x0), ("v_prediction", v)):
        out = Denoiser(lambda x, t, o=output: o, kind)(x, 5, a)
        assert torch.allclose(out.eps, eps, atol=1e-12, rtol=0), kind
        assert torch.allclose(out.x0_hat, x0, atol=1e-12, rtol=0), kind
    clipped = Denoiser(
        lambda x, t: eps, "epsilon", clip_sample=True, clip_sample_range=0.5, use_clipped_model_output=True
    )
    out = clipped(x, 5, a)
    assert out.x0_hat.abs().max() <= 0.5
    assert torch.allclose(math.sqrt(a) * out.x0_hat + math.sqrt(1 - a) * out.eps, x, atol=1e-12, rtol=0)


def test_invalid_arguments():
    with pytest.raises(InvalidArgumentError):
        Denoiser(lambda x, t: x, "score")
    with pytest.raises(InvalidArgumentError):
        DDIM(1.5)
    with pytest.raises(InvalidArgumentError):
        DDPM("tiny")
    x = torch.zeros(2, 2, dtype=F64)
    with pytest.raises(InvalidArgumentError):
        DDPM()(x, DenoiserOutput(x, x), 0.5, 0.4)  # the next level must be less noisy
    with pytest.raises(InvalidArgumentError):
        Denoiser(lambda x, t: x[:, :1], "epsilon")(x, 3, 0.5)  # wrong output shape


# -- guidance that is never silent ------------------------------------------------------------------------------
def test_guiding_a_deterministic_step_is_refused():
    """DDIM with eta = 0 (and the flow step with eta = 0) has no noise to shift: guidance is an error, not a no-op."""
    from smckit.diffusion.flow import FlowStep

    for base in (DDIM(0.0), FlowStep(0.0), "ddim"):
        with pytest.raises(InvalidArgumentError, match="deterministic"):
            Guided(base, scale=1.0)
    schedule = NoiseSchedule.linear(num_steps=5)
    with pytest.raises(InvalidArgumentError, match="deterministic"):
        RewardSteering(lambda x, t: x, schedule, lambda x: x.sum(1), event_shape=(2,), sampler="ddim", guidance=1.0)
    assert Guided(DDIM(0.3), scale=1.0).base.eta == 0.3  # a stochastic DDIM step is fine


def test_guided_correction_is_exact_for_any_gradient():
    """The correction depends only on the shift, not on where the gradient came from: the exact log-ratio of the
    two Gaussians for a gradient through the denoiser too (a shift that is any function of x_t)."""
    gen = torch.Generator().manual_seed(5)
    x, eps = torch.randn(4, 3, generator=gen, dtype=F64), torch.randn(4, 3, generator=gen, dtype=F64)
    grad, noise = torch.randn(4, 3, generator=gen, dtype=F64), torch.randn(4, 3, generator=gen, dtype=F64)
    guided = Guided("ddim", scale=0.8, gradient="denoiser", eta=0.6)
    step = guided(x, _output(x, 0.3, eps), 0.3, 0.5)
    x_new, correction = guided.propose(step, noise, grad)
    q = torch.distributions.Normal(step.mean + 0.8 * step.std**2 * grad, step.std)
    assert torch.allclose(correction, step.log_prob(x_new) - q.log_prob(x_new).sum(-1), atol=1e-9, rtol=0)
    with pytest.raises(InvalidArgumentError, match="gradient"):
        Guided("ddpm", gradient="score")


def test_gradient_through_the_denoiser():
    """guidance_gradient="denoiser" stores grad_x r(x0_hat(x)) in the state, computed by autograd through the
    network: for a linear denoiser x0_hat = (x - sqrt(1-a) W x) / sqrt(a) and r(x0) = <c, x0> it is
    (I - sqrt(1-a) W)^T c / sqrt(a); the default gradient (at x0_hat) is c itself."""
    weight = torch.tensor([[0.5, 0.2], [-0.1, 0.3]], dtype=F64)
    c = torch.tensor([1.0, -2.0], dtype=F64)
    schedule = NoiseSchedule.linear(num_steps=4)
    model = RewardSteering(
        lambda x, t: x @ weight.T,
        schedule,
        lambda x0: x0 @ c,
        event_shape=(2,),
        dtype=F64,
        guidance=1.0,
        guidance_gradient="denoiser",
    )
    state = model.initial(3, RNG(0))
    a = schedule.level(0)
    expected = (torch.eye(2, dtype=F64) - math.sqrt(1 - a) * weight).T @ c / math.sqrt(a)
    assert torch.allclose(state["reward_grad"], expected.expand(1, 3, 2), atol=1e-12, rtol=0)
    assert torch.allclose(state["reward"], state["x0_hat"] @ c, atol=1e-12, rtol=0)
    assert model.denoiser_calls == 3  # the gradient came with the estimates, in the same network call
    nxt = model.propose(1, state, RNG(1))
    assert tuple(nxt["reward_grad"].shape) == (1, 3, 2) and tuple(nxt["log_correction"].shape) == (1, 3)
    assert bool((nxt["log_correction"] != 0).all())
