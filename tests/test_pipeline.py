"""Text-to-image and class-conditional steering through diffusers pipelines (smckit.diffusion.pipeline).

Tiny pipelines with random weights built from configs (smckit.diffusion.tiny): a CLIP tokenizer over the letters
written to a temporary folder, CLIP text encoders, UNet2DConditionModel / SD3Transformer2DModel and AutoencoderKL
with a few channels. Nothing is downloaded.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import smckit  # noqa: E402
from smckit.diffusion import conditioning as nests  # noqa: E402
from smckit.diffusion.pipeline import (  # noqa: E402
    ClassifierFreeGuidance,
    from_class_conditional,
    from_pipeline,
    rescale_guidance,
)
from smckit.diffusion.rewards import ClassifierReward, ScoreReward  # noqa: E402
from smckit.diffusion.tiny import tiny_class_unet, tiny_pipeline  # noqa: E402
from smckit.errors import BackendError, InvalidArgumentError, ShapeError  # noqa: E402

pytestmark = pytest.mark.diffusion

PROMPTS = ["a red cat", "a blue dog"]
STEPS = 4
N = 3
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def pipes():
    cache: dict = {}

    def get(family: str, device: str = "cpu", dtype=None):
        key = (family, device, dtype)
        if key not in cache:
            cache[key] = tiny_pipeline(family, device=device, dtype=dtype)
        return cache[key]

    return get


def brightness(images):
    """A differentiable reward: the mean pixel, per image."""
    return images.mean(dim=(1, 2, 3))


# -- the steered images are the pipeline's ---------------------------------------------------------------------
PARITY = [
    ("sd", {"guidance_scale": 1.0}),
    ("sd", {"guidance_scale": 5.0, "guidance_rescale": 0.7, "negative_prompt": ["blurry", "dark"]}),
    ("sdxl", {"guidance_scale": 1.0}),
    ("sdxl", {"guidance_scale": 5.0}),
    ("sd3", {"guidance_scale": 1.0}),
    ("sd3", {"guidance_scale": 7.0}),
]


@pytest.mark.parametrize(("family", "options"), PARITY, ids=[f"{f}-{o['guidance_scale']:g}" for f, o in PARITY])
def test_zero_reward_without_resampling_gives_the_pipelines_images(pipes, family, options):
    pipe = pipes(family)
    model = from_pipeline(pipe, PROMPTS, num_inference_steps=STEPS, **options)
    steps = list(smckit.SMC(model, N, policy=smckit.Never(), seed=0))
    start = steps[0].state["x"]
    ours = model.images(steps[-1], output_type="pt").images
    theirs = pipe(
        PROMPTS,
        num_images_per_prompt=N,
        latents=start.reshape(len(PROMPTS) * N, *start.shape[2:]),
        num_inference_steps=STEPS,
        output_type="pt",
        **options,
    ).images
    # float32 with different but equivalent arithmetic (smckit's float64 coefficients): agreement to ~1e-6 seen
    assert ours.shape == (len(PROMPTS), N, 3, 16, 16)
    torch.testing.assert_close(ours.reshape(theirs.shape), theirs, atol=2e-5, rtol=0)
    # the images depend on the prompt and on guidance, so the agreement above has teeth
    assert (ours[0] - ours[1]).abs().max() > 1e-3
    if options["guidance_scale"] > 1:
        plain = from_pipeline(pipe, PROMPTS, num_inference_steps=STEPS, guidance_scale=1.0)
        other = plain.images(list(smckit.SMC(plain, N, policy=smckit.Never(), seed=0))[-1], output_type="pt")
        assert (other.images - ours).abs().max() > 1e-3
    assert model.denoiser_calls == len(PROMPTS) * N * STEPS * (2 if options["guidance_scale"] > 1 else 1)


# -- classifier-free guidance: one batched call, two evaluations -------------------------------------------------
def test_guidance_batches_both_branches_in_one_call_and_counts_two(pipes):
    pipe = pipes("sdxl")
    batches = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        model = from_pipeline(pipe, PROMPTS, num_inference_steps=STEPS, guidance_scale=4.0, denoiser_chunk_size=4)
        smckit.run(model, N, seed=1)
    finally:
        hook.remove()
    # 6 particles in chunks of 4 and 2, each chunk doubled: one UNet call per chunk per timestep
    assert batches == [8, 4] * STEPS
    assert model.denoiser_calls == 2 * len(PROMPTS) * N * STEPS


def test_guidance_formula_and_rescale():
    def net(x, t, shift):
        return x * shift[:, None]

    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    cond, uncond = {"shift": torch.tensor([2.0, 3.0])}, {"shift": torch.tensor([1.0, 1.0])}
    out = ClassifierFreeGuidance(net, 4.0)(x, 0, cond=cond, uncond=uncond)
    u, c = net(x, 0, **uncond), net(x, 0, **cond)
    torch.testing.assert_close(out, u + 4.0 * (c - u))
    rescaled = ClassifierFreeGuidance(net, 4.0, rescale=1.0)(x, 0, cond=cond, uncond=uncond)
    # with rescale 1 the guided output has the conditional output's standard deviation, per sample
    torch.testing.assert_close(rescaled.std(dim=1), c.std(dim=1))
    torch.testing.assert_close(rescale_guidance(out, c, 0.0), out)
    with pytest.raises(InvalidArgumentError, match="guidance_rescale"):
        ClassifierFreeGuidance(net, 4.0, rescale=1.5)


# -- conditioning: nested, per group, gathered per chunk ---------------------------------------------------------
def test_nested_conditioning_is_gathered_per_chunk_across_groups(pipes):
    """SDXL's added_cond_kwargs: chunks that straddle two groups give each particle its own group's inputs."""
    pipe = pipes("sdxl")
    whole = from_pipeline(pipe, PROMPTS, num_inference_steps=STEPS, guidance_scale=3.0)
    chunked = from_pipeline(pipe, PROMPTS, num_inference_steps=STEPS, guidance_scale=3.0, denoiser_chunk_size=2)
    a = smckit.run(whole, N, seed=3, policy=smckit.Never())
    b = smckit.run(chunked, N, seed=3, policy=smckit.Never())
    torch.testing.assert_close(a.particles["x"], b.particles["x"], atol=1e-5, rtol=0)
    # the structure the UNet receives
    cond = whole.conditioning["cond"]
    assert set(cond) == {"encoder_hidden_states", "added_cond_kwargs"}
    assert cond["added_cond_kwargs"]["time_ids"].shape == (len(PROMPTS), 6)
    assert cond["added_cond_kwargs"]["time_ids"][0].tolist() == [16.0, 16.0, 0.0, 0.0, 16.0, 16.0]


def test_conditioning_helpers():
    g = {"a": torch.arange(3.0), "nest": {"b": torch.ones(3, 2), "scale": 0.5}, "seq": (torch.zeros(3), "s")}
    checked = nests.check(g, 3, torch.device("cpu"), "conditioning")
    rows = torch.tensor([0, 0, 2, 1])
    out = nests.gather(checked, rows)
    assert out["a"].tolist() == [0.0, 0.0, 2.0, 1.0]
    assert out["nest"]["b"].shape == (4, 2) and out["nest"]["scale"] == 0.5 and out["seq"][1] == "s"
    both = nests.concat(out, out)
    assert both["nest"]["b"].shape == (8, 2)
    with pytest.raises(ShapeError, match=r"conditioning\['nest'\]\['b'\]"):
        nests.check({"nest": {"b": torch.ones(2, 2)}}, 3, torch.device("cpu"), "conditioning")
    with pytest.raises(BackendError):
        nests.check({"nest": [torch.ones(3, device="meta")]}, 3, torch.device("cpu"), "conditioning")
    with pytest.raises(ShapeError, match="differ in structure"):
        nests.concat({"a": torch.ones(1)}, {"a": {"b": torch.ones(1)}})


# -- steering end to end, each resampler -----------------------------------------------------------------------
def _resampler(name):
    if name == "fleming-viot":
        pytest.importorskip("smckit_fvd")
        from smckit.plugins import make_resampler

        return make_resampler("fleming-viot", rebirth_noise=0.3)
    return name


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3"])
@pytest.mark.parametrize("resampler", ["multinomial", "systematic", "fleming-viot"])
@pytest.mark.parametrize("guidance_scale", [1.0, 2.0], ids=["plain", "cfg"])
def test_steering_runs_with_every_resampler(pipes, family, resampler, guidance_scale):
    pipe = pipes(family)
    model = from_pipeline(
        pipe,
        PROMPTS,
        reward=brightness,
        lam=20.0,
        num_inference_steps=STEPS,
        guidance_scale=guidance_scale,
        chunk_size=4,
    )
    decoded = []
    hook = pipe.vae.decoder.register_forward_pre_hook(lambda module, args: decoded.append(args[0].shape[0]))
    try:
        result = smckit.run(model, 4, resampler=_resampler(resampler), policy=smckit.Always(), seed=0)
    finally:
        hook.remove()
    assert max(decoded) == 4 and sum(decoded) == 8 * (STEPS + 1)  # every level's estimates, in chunks of 4
    x = result.particles["x"]
    assert x.shape == (2, 4, 4, 8, 8) and x.dtype == torch.float32
    assert result.log_weights.shape == (2, 4) and bool(torch.isfinite(result.log_weights).all())
    assert result.particles["reward"].shape == (2, 4)
    assert model.denoiser_calls == 2 * 4 * STEPS * (2 if guidance_scale > 1 else 1)
    out = model.images(result)
    assert len(out.images) == 2 and all(len(row) == 4 for row in out.images)
    assert out.images[0][0].size == (16, 16)
    torch.testing.assert_close(out.weights.sum(dim=1), torch.ones(2))
    # the final reward is the reward of the returned images
    again = brightness(model.images(result, output_type="pt").images.reshape(8, 3, 16, 16)).reshape(2, 4)
    torch.testing.assert_close(
        again.to(result.particles["reward"].dtype), result.particles["reward"], atol=1e-5, rtol=0
    )


def test_steering_moves_towards_the_reward(pipes):
    """With a strong tilt and resampling, the weighted mean reward rises above plain sampling's (same seeds)."""
    pipe = pipes("sd")
    common = {"num_inference_steps": STEPS, "guidance_scale": 1.0, "eta": 1.0}
    plain = from_pipeline(pipe, PROMPTS, reward=brightness, lam=0.0, **common)
    steered = from_pipeline(pipe, PROMPTS, reward=brightness, lam=200.0, **common)
    r0 = smckit.run(plain, 16, seed=5, policy=smckit.Never())
    r1 = smckit.run(steered, 16, seed=5, policy=smckit.Always())
    mean0 = r0.particles["reward"].mean(dim=1)
    w = torch.softmax(r1.log_weights, dim=1)
    mean1 = (w * r1.particles["reward"]).sum(dim=1)
    assert bool((mean1 > mean0).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_pipeline_keeps_its_dtype_and_wide_weights(pipes, dtype):
    pipe = pipes("sd", dtype=dtype)
    model = from_pipeline(pipe, PROMPTS, reward=brightness, lam=5.0, num_inference_steps=STEPS, guidance_scale=2.0)
    result = smckit.run(model, N, seed=0, resampler="systematic", policy=smckit.Always())
    assert result.particles["x"].dtype == dtype
    assert result.log_weights.dtype == torch.float32 and bool(torch.isfinite(result.log_weights).all())
    assert result.particles["reward"].dtype == torch.float32
    assert model.images(result, output_type="np").images.shape == (2, N, 16, 16, 3)


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_the_pipelines_device(pipes, device):
    pipe = pipes("sd3", device=device)
    model = from_pipeline(pipe, PROMPTS, reward=brightness, num_inference_steps=STEPS, eta=0.5)
    result = smckit.run(model, N, seed=0, resampler="systematic")
    assert result.particles["x"].device.type == device
    assert model.images(result, output_type="pt").images.device.type == device


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3"])
def test_device_discipline(pipes, family):
    """Every tensor of a step (the network's, the VAE's, the reward's included) is made on the particles' device,
    and nothing synchronises with the host: under a meta default device, a tensor made without device= shows."""
    from test_diffusion_gmm import DeviceGuard

    from smckit.random import RNG

    model = from_pipeline(
        pipes(family),
        PROMPTS,
        reward=brightness,
        num_inference_steps=STEPS,
        eta=0.5,
        chunk_size=3,
        denoiser_chunk_size=4,
    )
    mask = torch.tensor([[True, False, True]] * 2)
    with torch.device("meta"), DeviceGuard("cpu") as guard:
        rng = RNG(0)
        state = model.initial(N, rng)
        log_w = model.log_potential(0, None, state)
        for t in range(1, model.num_steps):
            if t == 2:
                state = model.rebirth(t, state, mask, 0.5, rng)
            prev, state = state, model.propose(t, state, rng)
            log_w = log_w + model.log_potential(t, prev, state)
    assert guard.violations == []
    assert log_w.device.type == "cpu" and bool(torch.isfinite(log_w).all())


def test_gradient_guidance_through_the_decoder(pipes):
    pipe = pipes("sd")
    model = from_pipeline(
        pipe, PROMPTS, reward=brightness, lam=5.0, num_inference_steps=STEPS, guidance_scale=1.0, eta=1.0, guidance=2.0
    )
    corrections = torch.stack([step.state["log_correction"] for step in smckit.SMC(model, N, seed=0)])
    # the last step is deterministic (no shift, no correction); the stochastic ones are shifted and corrected
    assert bool(torch.isfinite(corrections).all()) and bool((corrections[1:-1] != 0).all())


def test_prompt_embeds_route_equals_the_prompt_route(pipes):
    pipe = pipes("sd")
    pe, ne = pipe.encode_prompt(PROMPTS, "cpu", 1, True)
    by_text = from_pipeline(pipe, PROMPTS, num_inference_steps=STEPS, guidance_scale=3.0)
    by_embeds = from_pipeline(
        pipe, prompt_embeds=pe, negative_prompt_embeds=ne, num_inference_steps=STEPS, guidance_scale=3.0
    )
    a = smckit.run(by_text, N, seed=2, policy=smckit.Never()).particles["x"]
    b = smckit.run(by_embeds, N, seed=2, policy=smckit.Never()).particles["x"]
    torch.testing.assert_close(a, b)
    assert by_embeds.labels == [None, None]


def test_the_pipelines_scheduler_is_left_alone(pipes):
    pipe = pipes("sd")
    before = pipe.scheduler.num_inference_steps
    model = from_pipeline(pipe, PROMPTS, num_inference_steps=7)
    assert pipe.scheduler.num_inference_steps == before and model.num_steps == 8


# -- refusals --------------------------------------------------------------------------------------------------
def test_refusals(pipes):
    from diffusers import PNDMScheduler

    pipe = pipes("sd")
    with pytest.raises(InvalidArgumentError, match=r"DDIMScheduler.from_config"):
        from_pipeline(pipe, PROMPTS, scheduler=PNDMScheduler.from_config(pipe.scheduler.config))
    ddim = from_pipeline(pipe, PROMPTS, scheduler="ddpm", num_inference_steps=STEPS)
    assert repr(ddim.transition).startswith("DDPM")
    with pytest.raises(InvalidArgumentError, match="guidance_rescale needs"):
        from_pipeline(pipe, PROMPTS, guidance_scale=1.0, guidance_rescale=0.5)
    with pytest.raises(InvalidArgumentError, match="prompt_embeds"):
        from_pipeline(pipe)
    with pytest.raises(ShapeError, match="negative prompts"):
        from_pipeline(pipe, PROMPTS, negative_prompt=["x"])
    with pytest.raises(InvalidArgumentError, match="multiple of 2"):
        from_pipeline(pipe, PROMPTS, height=15)
    scorer = ScoreReward(lambda images, prompts: [0.0] * len(images))
    with pytest.raises(InvalidArgumentError, match="differentiable"):
        from_pipeline(pipe, PROMPTS, reward=scorer, guidance=1.0, eta=1.0)
    with pytest.raises(InvalidArgumentError, match="not a text-to-image pipeline"):
        from_pipeline(object(), PROMPTS)
    with pytest.raises(ShapeError, match="do not belong"):
        small = from_pipeline(pipe, PROMPTS[:1], num_inference_steps=STEPS)
        ddim.images(smckit.run(small, 2, seed=0))


def test_host_side_scorer_gets_each_images_prompt(pipes):
    seen = []

    def score(images, prompts):
        seen.extend(prompts)
        return [float(len(p)) for p in prompts]

    pipe = pipes("sd")
    model = from_pipeline(pipe, PROMPTS, reward=ScoreReward(score), num_inference_steps=STEPS, chunk_size=4)
    result = smckit.run(model, N, seed=0)
    assert set(seen) == set(PROMPTS)
    assert result.particles["reward"][:, 0].tolist() == [len(PROMPTS[0]), len(PROMPTS[1])]


# -- the class-conditional route -------------------------------------------------------------------------------
def test_class_conditional_matches_a_diffusers_loop_with_guidance():
    from diffusers import DDIMScheduler

    unet = tiny_class_unet(11)
    scheduler = DDIMScheduler()
    classes = [3, 7]
    model = from_class_conditional(
        unet, scheduler, classes, num_inference_steps=STEPS, guidance_scale=2.5, null_class=10
    )
    steps = list(smckit.SMC(model, N, policy=smckit.Never(), seed=0))
    x = steps[0].state["x"].reshape(len(classes) * N, 1, 8, 8)
    labels = torch.tensor(classes).repeat_interleave(N)
    reference = DDIMScheduler.from_config(scheduler.config)
    reference.set_timesteps(STEPS)
    with torch.no_grad():
        for t in reference.timesteps:
            both = unet(torch.cat([x, x]), t, class_labels=torch.cat([torch.full_like(labels, 10), labels])).sample
            u, c = both.chunk(2)
            x = reference.step(u + 2.5 * (c - u), t, x).prev_sample
    torch.testing.assert_close(steps[-1].state["x"].reshape(x.shape), x, atol=1e-5, rtol=0)
    assert model.denoiser_calls == 2 * len(classes) * N * STEPS


def test_class_conditional_with_a_classifier_reward():
    from diffusers import DDPMScheduler

    torch.manual_seed(0)
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    model = from_class_conditional(
        tiny_class_unet(10), DDPMScheduler(), [1, 2, 5], reward=ClassifierReward(classifier), num_inference_steps=STEPS
    )
    assert model.reward_conditioning["target"].tolist() == [1, 2, 5]
    result = smckit.run(model, 4, seed=0, resampler="systematic")
    images = model.images(result, output_type="pt").images
    assert images.shape == (3, 4, 1, 8, 8) and float(images.min()) >= 0 and float(images.max()) <= 1
    # the reward is the log-probability of each group's own class
    logp = classifier(images.reshape(12, 1, 8, 8)).log_softmax(-1).reshape(3, 4, 10)
    expected = torch.stack([logp[i, :, c] for i, c in enumerate([1, 2, 5])])
    torch.testing.assert_close(result.particles["reward"], expected, atol=1e-5, rtol=0)
    with pytest.raises(InvalidArgumentError, match="null_class"):
        from_class_conditional(tiny_class_unet(10), DDPMScheduler(), [1], guidance_scale=2.0)
