"""Step-for-step parity with the installed diffusers schedulers, in float64, to 1e-6 relative.

For every configuration: the visited timesteps and where each step lands; at every timestep the mean, the noise
scale, the x0 estimate and the log-density of diffusers' own draw; and whole trajectories with shared noise.

The model output comes from a cheap fixed nonlinear function of ``(x, t)`` (the step's arithmetic does not care
where the output came from; the UNet bridge itself is tested in test_diffusion_transitions.py). diffusers keeps
``alphas_cumprod`` in float32; the tests cast its tables to float64 (the values are unchanged) so both sides use
the same numbers and the comparison is limited by float64 round-off, not by float32's.

The configuration space is a product (beta schedules x prediction types x clipping x spacing x offsets x variance
types / eta / set_alpha_to_one x zero terminal SNR x scheduler class): a fixed, evenly spread subset of it runs
in CI (every factor value appears), plus the cases each known past divergence needed; the whole product (about
five minutes) is marked ``long``: ``python -m pytest -m long``.
"""

from __future__ import annotations

import copy
import itertools
import random

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from smckit.diffusion import Denoiser, NoiseSchedule  # noqa: E402
from smckit.diffusion.flow import FlowDenoiser, FlowSchedule, FlowStep  # noqa: E402
from smckit.diffusion.transitions import DDIM, from_diffusers  # noqa: E402
from smckit.errors import InvalidArgumentError  # noqa: E402

pytestmark = pytest.mark.diffusion
F64 = torch.float64
RTOL = 1e-6
SHAPE = (3, 1, 4, 4)
STEPS = 10


def network(x, t):
    """A fixed smooth nonlinear 'model output' of the sample and the timestep."""
    return 0.8 * torch.tanh(1.3 * x + 0.002 * float(t)) + 0.1 * x


def close(a, b, what):
    scale = max(1.0, float(b.abs().max()))
    err = float((a - b).abs().max())
    assert err <= RTOL * scale, f"{what}: max abs difference {err:.3g} (scale {scale:.3g})"


def sample_x(seed, scale=2.0):
    return scale * torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=F64)


def noise(seed):
    # exactly what diffusers' randn_tensor draws on the CPU with this generator
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=F64)


# -- configurations ------------------------------------------------------------------------------------------
BASE = {
    "beta_schedule": ["linear", "scaled_linear", "squaredcos_cap_v2"],
    "prediction_type": ["epsilon", "sample", "v_prediction"],
    "clip": ["none", "clip", "threshold"],
    "timestep_spacing": ["leading", "linspace", "trailing"],
    "steps_offset": [0, 1],
    "rescale_betas_zero_snr": [False, True],
}
DDPM_EXTRA = {"variance_type": ["fixed_small", "fixed_large", "fixed_small_log"], "parallel": [False, True]}
DDIM_EXTRA = {"set_alpha_to_one": [True, False], "eta": [0.0, 0.5, 1.0], "parallel": [False, True]}


def product(extra):
    space = {**BASE, **extra}
    return [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]


def spread(configs, count):
    """``count`` configurations drawn without replacement from the product with a fixed seed (the draw covers
    every factor value: test_spread_covers_every_factor_value)."""
    return random.Random(2).sample(configs, count)


def config_id(c):
    return "-".join(str(v) for v in c.values())


DDPM_ALL, DDIM_ALL = product(DDPM_EXTRA), product(DDIM_EXTRA)
DDPM_KNOWN = [  # fixed_large with a last timestep above 0: diffusers' last step is noisy
    {**DDPM_ALL[0], "variance_type": "fixed_large", "timestep_spacing": "trailing"},
    {**DDPM_ALL[0], "variance_type": "fixed_large", "steps_offset": 1},
    {**DDPM_ALL[0], "prediction_type": "v_prediction", "timestep_spacing": "trailing", "rescale_betas_zero_snr": True},
]
DDIM_KNOWN = [  # the stride rule with linspace spacing; a noisy last step (set_alpha_to_one=False, eta > 0)
    {**DDIM_ALL[0], "timestep_spacing": "linspace"},
    {**DDIM_ALL[0], "timestep_spacing": "trailing", "eta": 1.0},
    {**DDIM_ALL[0], "set_alpha_to_one": False, "eta": 0.5},
    {**DDIM_ALL[0], "prediction_type": "v_prediction", "timestep_spacing": "trailing", "rescale_betas_zero_snr": True},
]


def make_scheduler(kind, c):
    if kind == "ddpm":
        cls = diffusers.DDPMParallelScheduler if c["parallel"] else diffusers.DDPMScheduler
        extra = {"variance_type": c["variance_type"]}
    else:
        cls = diffusers.DDIMParallelScheduler if c["parallel"] else diffusers.DDIMScheduler
        extra = {"set_alpha_to_one": c["set_alpha_to_one"]}
    beta = {"beta_start": 0.00085, "beta_end": 0.012} if c["beta_schedule"] == "scaled_linear" else {}
    sched = cls(
        num_train_timesteps=1000,
        beta_schedule=c["beta_schedule"],
        prediction_type=c["prediction_type"],
        clip_sample=c["clip"] == "clip",
        thresholding=c["clip"] == "threshold",
        sample_max_value=1.5,
        timestep_spacing=c["timestep_spacing"],
        steps_offset=c["steps_offset"],
        rescale_betas_zero_snr=c["rescale_betas_zero_snr"],
        **beta,
        **extra,
    )
    sched.set_timesteps(STEPS)
    sched.alphas_cumprod = sched.alphas_cumprod.to(F64)
    sched.one = torch.tensor(1.0, dtype=F64)
    if kind == "ddim":
        sched.final_alpha_cumprod = sched.final_alpha_cumprod.to(F64)
    return sched


def reference_step(kind, sched, raw, t, x, eta):
    """diffusers' (mean, std, x0, one draw) at timestep t: DDPM draws twice with known noise and solves."""
    if kind == "ddpm":
        (p1, n1), (p2, n2) = [
            (sched.step(raw, t, x, generator=torch.Generator().manual_seed(seed)).prev_sample, noise(seed))
            for seed in (11, 12)
        ]
        dn = n1 - n2
        std = float(((p1 - p2) * dn).sum() / (dn * dn).sum())  # p1 - p2 = std (n1 - n2)
        x0 = sched.step(raw, t, x, generator=torch.Generator().manual_seed(0)).pred_original_sample
        return p1 - std * n1, std, x0, p1
    zero = sched.step(raw, t, x, eta=eta, variance_noise=torch.zeros_like(x))
    drawn = sched.step(raw, t, x, eta=eta, variance_noise=noise(11)) if eta > 0 else zero
    std = float((drawn.prev_sample - zero.prev_sample).sum() / noise(11).sum()) if eta > 0 else 0.0
    return zero.prev_sample, std, zero.pred_original_sample, drawn.prev_sample


def check_configuration(kind, c):
    sched = make_scheduler(kind, c)
    eta = c.get("eta", 0.0)
    schedule = NoiseSchedule.from_diffusers(sched)
    denoiser = _denoiser(sched)
    transition = from_diffusers(sched, eta=eta)
    # visited timesteps, and where each step lands
    assert schedule.timesteps == tuple(int(t) for t in sched.timesteps)
    stride = 1000 // STEPS
    for t in schedule.timesteps:
        landing = int(sched.previous_timestep(t)) if kind == "ddpm" else t - stride
        assert schedule.previous(t) == (None if landing < 0 else landing), t
    if c["prediction_type"] == "epsilon" and schedule.alpha_bar(schedule.timesteps[0]) == 0.0:
        with pytest.raises(InvalidArgumentError, match="pure noise"):
            denoiser.convert(network(sample_x(0), schedule.timesteps[0]), sample_x(0), 0.0)
        return  # diffusers divides by zero here
    # single steps
    for i, t in enumerate(schedule.timesteps):
        x = sample_x(100 + i)
        raw = network(x, t)
        out = denoiser.convert(raw, x, schedule.level(i))
        step = transition.step_at(schedule, i, x, out)
        mean, std, x0, drawn = reference_step(kind, sched, raw, t, x, eta)
        close(out.x0_hat, x0, f"x0 estimate at t={t}")
        close(step.mean, mean, f"mean at t={t}")
        assert abs(step.std - std) <= RTOL * max(1.0, std), f"std at t={t}: {step.std} vs {std}"
        if std > 1e-9:
            expected = torch.distributions.Normal(mean, std).log_prob(drawn).sum(dim=(1, 2, 3))
            close(step.log_prob(drawn), expected, f"log-density at t={t}")
        else:  # a point mass: diffusers adds no noise (or 1e-10 from its variance clamp)
            assert step.std == 0.0 and bool((step.log_prob(drawn) == 0).all())
    # a whole trajectory with shared noise
    x_ref = x_ours = sample_x(7, scale=1.0)
    for i, t in enumerate(schedule.timesteps):
        z = noise(500 + i)
        if kind == "ddpm":
            x_ref = sched.step(network(x_ref, t), t, x_ref, generator=torch.Generator().manual_seed(500 + i))
        else:
            x_ref = sched.step(network(x_ref, t), t, x_ref, eta=eta, variance_noise=z if eta > 0 else None)
        x_ref = x_ref.prev_sample
        out = denoiser.convert(network(x_ours, t), x_ours, schedule.level(i))
        x_ours = transition.step_at(schedule, i, x_ours, out).sample(z)
    close(x_ours, x_ref, "end of the trajectory")


def _denoiser(sched):
    """The Denoiser that Denoiser.from_unet builds from the scheduler's config (here around ``network``)."""
    config = sched.config
    keys = ("prediction_type", "clip_sample", "clip_sample_range", "thresholding", "sample_max_value")
    options = {k: config[k] for k in keys}
    made = Denoiser.from_unet(_Net(), sched)
    plain = Denoiser(network, **options, dynamic_thresholding_ratio=config["dynamic_thresholding_ratio"])
    assert repr(made).split(",")[1:] == repr(plain).split(",")[1:]  # from_unet read the same options
    return plain


class _Net:
    def __call__(self, x, t, **kw):
        class Out:
            sample = network(x, t)

        return Out()


@pytest.mark.parametrize("c", spread(DDPM_ALL, 24) + DDPM_KNOWN, ids=config_id)
def test_ddpm_parity(c):
    check_configuration("ddpm", c)


@pytest.mark.parametrize("c", spread(DDIM_ALL, 30) + DDIM_KNOWN, ids=config_id)
def test_ddim_parity(c):
    check_configuration("ddim", c)


@pytest.mark.long
@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_full_product_parity(kind):
    """Every configuration (1944 DDPM, 3888 DDIM), about five minutes: ``python -m pytest -m long -k full_product``."""
    for c in DDPM_ALL if kind == "ddpm" else DDIM_ALL:
        check_configuration(kind, c)


def test_spread_covers_every_factor_value():
    for chosen, extra in ((spread(DDPM_ALL, 24), DDPM_EXTRA), (spread(DDIM_ALL, 30), DDIM_EXTRA)):
        for key, values in {**BASE, **extra}.items():
            assert {c[key] for c in chosen} == set(values), key


def test_use_clipped_model_output_matches_ddim():
    sched = make_scheduler("ddim", {**DDIM_ALL[0], "clip": "clip"})
    schedule = NoiseSchedule.from_diffusers(sched)
    denoiser = Denoiser(network, clip_sample=True, use_clipped_model_output=True)
    t = schedule.timesteps[0]
    x = sample_x(3)
    out = denoiser.convert(network(x, t), x, schedule.level(0))
    step = DDIM(0.5).step_at(schedule, 0, x, out)
    ref = sched.step(network(x, t), t, x, eta=0.5, use_clipped_model_output=True, variance_noise=torch.zeros_like(x))
    close(step.mean, ref.prev_sample, "mean with use_clipped_model_output")


# -- deliberate departures, and refusals -------------------------------------------------------------------------
def test_list_rule_and_deterministic_last_step_are_options():
    """``previous="list"`` steps to the next visited timestep (not diffusers' stride); deterministic_last makes the
    last DDIM step of ``set_alpha_to_one=False`` noiseless. Both differ from diffusers, so both are opt-in."""
    sched = make_scheduler("ddim", {**DDIM_ALL[0], "timestep_spacing": "linspace"})
    default, listed = NoiseSchedule.from_diffusers(sched), NoiseSchedule.from_diffusers(sched, previous="list")
    assert default.previous(999) == 899 and listed.previous(999) == 888
    assert listed.with_steps(4, "linspace").previous_rule == "list"
    sched = make_scheduler("ddim", {**DDIM_ALL[0], "timestep_spacing": "trailing", "set_alpha_to_one": False})
    default = NoiseSchedule.from_diffusers(sched)
    last = default.num_steps - 1
    assert default.timesteps[last] == 99 and default.landing(last) == default.alpha_bar(0) < 1
    x = sample_x(1)
    out = Denoiser(network).convert(network(x, 0), x, default.level(last))
    assert DDIM(0.5).step_at(default, last, x, out).std > 0  # diffusers' noisy last step
    assert DDIM(0.5).step_at(default, last, x, out, deterministic_last=True).std == 0.0


def test_zero_terminal_snr_schedules():
    sched = diffusers.DDIMScheduler(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    sched.set_timesteps(5)
    schedule = NoiseSchedule.from_diffusers(sched)
    assert schedule.alpha_bar(999) == 0.0 and schedule.timesteps[0] == 999
    leading = diffusers.DDPMScheduler(rescale_betas_zero_snr=True)
    leading.set_timesteps(5)
    assert NoiseSchedule.from_diffusers(leading).timesteps[0] == 800  # never visits the zero level: fine too
    with pytest.raises(InvalidArgumentError, match="pure noise"):
        NoiseSchedule([0.9, 0.5, 0.0, 0.0], [3, 2])  # a step landing on abar = 0


@pytest.mark.parametrize("variance_type", ["learned", "learned_range", "fixed_large_log"])
def test_unsupported_variance_types_are_refused(variance_type):
    sched = diffusers.DDPMScheduler(variance_type=variance_type)
    with pytest.raises(InvalidArgumentError, match="variance_type"):
        from_diffusers(sched)


def test_other_schedulers_are_refused_with_the_route():
    for cls in (diffusers.EulerDiscreteScheduler, diffusers.DPMSolverMultistepScheduler):
        sched = cls()
        for read in (NoiseSchedule.from_diffusers, from_diffusers):
            with pytest.raises(InvalidArgumentError) as info:
                read(sched)
            message = str(info.value)
            assert cls.__name__ in message and "DDIMScheduler.from_config(scheduler.config)" in message
            assert all(name in message for name in ("DDPMParallelScheduler", "DDIMParallelScheduler"))
    with pytest.raises(InvalidArgumentError, match="FlowSchedule"):
        NoiseSchedule.from_diffusers(diffusers.FlowMatchEulerDiscreteScheduler())


# -- flow matching ---------------------------------------------------------------------------------------------
FLOW_CONFIGS = [
    {"shift": 1.0},
    {"shift": 3.0},
    {"use_dynamic_shifting": True, "mu": 0.8},
    {"shift": 3.0, "shift_terminal": 0.1},
    {"shift": 1.0, "stochastic_sampling": True},
    {"use_dynamic_shifting": True, "mu": 1.1, "time_shift_type": "linear", "stochastic_sampling": True},
]


@pytest.mark.parametrize("c", FLOW_CONFIGS, ids=config_id)
def test_flow_match_euler_parity(c):
    """Euler (eta = 0) and stochastic_sampling are the flow step with c = 0 and c = s'. diffusers computes the step
    on a float32 copy of the sample; inputs representable in float32 make both sides exact to float64 round-off."""
    config = {k: v for k, v in c.items() if k != "mu"}
    sched = diffusers.FlowMatchEulerDiscreteScheduler(**config)
    sched.set_timesteps(STEPS, mu=c.get("mu"))
    schedule = FlowSchedule.from_diffusers(sched)
    transition = from_diffusers(sched)
    assert isinstance(transition, FlowStep)
    assert schedule.timesteps == tuple(float(t) for t in sched.timesteps)
    assert schedule.final_sigma == 0.0 and schedule.num_steps == STEPS
    denoiser = FlowDenoiser(network)
    # the scheduler counts its steps: one copy for the single steps, one for the trajectory, each called once per
    # level and in order (calling one twice per level would desynchronise it, the pitfall smckit's step avoids)
    single, trajectory = copy.deepcopy(sched), copy.deepcopy(sched)
    x_ref = x_ours = sample_x(9, scale=1.0)
    for i, t in enumerate(sched.timesteps):
        # diffusers steps a float32 copy of the sample and draws float32 noise: both sides start each step from
        # float32 values and share that noise
        x_ref, x_ours = x_ref.float().double(), x_ours.float().double()
        z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(700 + i)).double()
        raw = network(x_ours, t)
        out = denoiser.convert(raw, x_ours, schedule.level(i))
        step = transition.step_at(schedule, i, x_ours, out)
        ref = single.step(raw, t, x_ours, generator=torch.Generator().manual_seed(700 + i)).prev_sample
        close(out.x0_hat, x_ours - schedule.level(i) * raw, f"x0 estimate at {i}")
        if c.get("stochastic_sampling"):
            assert step.std == pytest.approx(schedule.landing(i), rel=1e-12)
        else:
            assert step.std == 0.0
        close(step.sample(z), ref, f"step {i}")
        # the trajectories, with shared noise
        generator = torch.Generator().manual_seed(700 + i)
        x_ref = trajectory.step(network(x_ref, t), t, x_ref, generator=generator).prev_sample
        x_ours = step.sample(z)
    close(x_ours, x_ref, "end of the trajectory")
