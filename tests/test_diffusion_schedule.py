"""Noise schedules (built directly and read from diffusers) and the adapter's plugin registrations."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from smckit.diffusion.schedule import NoiseSchedule, spaced_timesteps
from smckit.errors import InvalidArgumentError

pytestmark = pytest.mark.diffusion


def test_linear_schedule_values():
    s = NoiseSchedule.linear(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02)
    betas = np.linspace(1e-4, 0.02, 1000)
    assert s.num_train_timesteps == 1000 and s.num_steps == 1000
    assert s.timesteps == tuple(range(999, -1, -1))
    np.testing.assert_allclose(s.alpha_bars, np.cumprod(1 - betas), rtol=1e-14)
    assert s.alpha_bar(0) == pytest.approx(1 - 1e-4, rel=1e-14)
    assert s.alpha_bar(None) == 1.0 == s.level(s.num_steps)


def test_cosine_schedule_values():
    s = NoiseSchedule.cosine(num_train_timesteps=100)

    def f(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - f((i + 1) / 100) / f(i / 100), 0.999) for i in range(100)]
    np.testing.assert_allclose(s.alpha_bars, np.cumprod(1 - np.array(betas)), rtol=1e-12)


def test_previous_timestep_comes_from_the_list():
    s = NoiseSchedule.linear(num_steps=4, spacing="linspace")
    assert s.timesteps == (999, 666, 333, 0)
    assert [s.previous(t) for t in s.timesteps] == [666, 333, 0, None]
    assert [s.level(i) for i in range(5)] == [s.alpha_bar(t) for t in (999, 666, 333, 0)] + [1.0]
    with pytest.raises(InvalidArgumentError):
        s.previous(500)


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("num_steps", [1, 7, 10, 50])
def test_spacing_matches_diffusers(spacing, num_steps):
    diffusers = pytest.importorskip("diffusers")
    for cls in (diffusers.DDPMScheduler, diffusers.DDIMScheduler):
        sched = cls(num_train_timesteps=1000, timestep_spacing=spacing)
        sched.set_timesteps(num_steps)
        assert spaced_timesteps(1000, num_steps, spacing) == tuple(int(t) for t in sched.timesteps)


def test_with_steps_and_with_timesteps():
    s = NoiseSchedule.linear()
    t = s.with_steps(10, "leading", steps_offset=1)
    assert t.timesteps == tuple(range(901, 0, -100))
    np.testing.assert_array_equal(t.alpha_bars, s.alpha_bars)
    u = s.with_timesteps([500, 20])
    assert u.timesteps == (500, 20) and u.previous(20) is None


def test_from_diffusers():
    diffusers = pytest.importorskip("diffusers")
    torch = pytest.importorskip("torch")
    ddpm = diffusers.DDPMScheduler(num_train_timesteps=1000)
    full = NoiseSchedule.from_diffusers(ddpm)  # without set_timesteps: every training timestep
    assert full.timesteps == tuple(range(999, -1, -1))
    ddpm.set_timesteps(20)
    s = NoiseSchedule.from_diffusers(ddpm)
    assert s.timesteps == tuple(int(t) for t in ddpm.timesteps)
    np.testing.assert_array_equal(s.alpha_bars, ddpm.alphas_cumprod.double().numpy())
    assert s.final_alpha_cumprod == 1.0
    for t in s.timesteps:
        prev = int(ddpm.previous_timestep(t))
        assert s.previous(t) == (None if prev < 0 else prev)

    ddim = diffusers.DDIMScheduler(num_train_timesteps=1000, set_alpha_to_one=False, timestep_spacing="linspace")
    with pytest.raises(InvalidArgumentError, match="set_timesteps"):
        NoiseSchedule.from_diffusers(ddim)
    ddim.set_timesteps(8)
    s = NoiseSchedule.from_diffusers(ddim)
    assert s.final_alpha_cumprod == pytest.approx(float(ddim.alphas_cumprod[0]), rel=0)
    assert s.timesteps[-1] == 0 and s.previous(0) is None
    with pytest.raises(InvalidArgumentError, match="not supported"):
        NoiseSchedule.from_diffusers(diffusers.EulerDiscreteScheduler())
    del torch


def test_to_device_and_dtype():
    torch = pytest.importorskip("torch")
    s = NoiseSchedule.linear(num_steps=5)
    t = s.to("cpu", torch.float32)
    assert isinstance(t.alphas_cumprod, torch.Tensor) and t.alphas_cumprod.dtype == torch.float32
    assert t.timesteps == s.timesteps
    # the computations keep the float64 host copy of what was given
    np.testing.assert_allclose(t.alpha_bars, s.alpha_bars, rtol=1e-7)
    x0, noise = torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    assert torch.allclose(
        s.add_noise(x0, 500, noise), torch.full((3,), math.sqrt(s.alpha_bar(500)), dtype=torch.float64)
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alphas_cumprod": [0.9, 0.95]},  # increasing
        {"alphas_cumprod": [0.9, 0.0, 0.0], "timesteps": [2, 1]},  # a step lands on pure noise (abar = 0)
        {"alphas_cumprod": [0.9, -0.1]},  # negative
        {"alphas_cumprod": [0.9, 0.8], "timesteps": [0, 1]},  # ascending
        {"alphas_cumprod": [0.9, 0.8], "timesteps": [2, 0]},  # out of range
        {"alphas_cumprod": [0.9, 0.8], "timesteps": []},
        {"alphas_cumprod": [1.0, 0.8], "timesteps": [1, 0]},  # no noise at a sampling timestep
        {"alphas_cumprod": [0.9, 0.8], "final_alpha_cumprod": 0.5},  # final level noisier than the last step
    ],
)
def test_invalid_schedules(kwargs):
    with pytest.raises(InvalidArgumentError):
        NoiseSchedule(**kwargs)
    with pytest.raises(InvalidArgumentError):
        spaced_timesteps(10, 11)
    with pytest.raises(InvalidArgumentError):
        spaced_timesteps(10, 5, "log")


def test_registry_module_does_not_import_torch():
    code = (
        "import sys; import smckit.diffusion.registry, smckit.diffusion.schedule; "
        "assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_potentials_and_proposals_are_registered():
    pytest.importorskip("torch")
    from smckit.diffusion import DDIM, DDPM, DiffPotential, Guided, MaxPotential, RtPotential, SumPotential
    from smckit.plugins import available, make_potential, make_proposal

    assert {"diff", "max", "sum", "rt"} <= set(available("potential"))
    assert {"ddpm", "ddim", "guided"} <= set(available("proposal"))
    for name, cls in (("diff", DiffPotential), ("max", MaxPotential), ("sum", SumPotential), ("rt", RtPotential)):
        assert isinstance(make_potential(name), cls)
    assert isinstance(make_proposal("ddpm", variance="large"), DDPM)
    assert make_proposal("ddim", eta=0.25).eta == 0.25
    guided = make_proposal("guided", base="ddim", scale=2.0, eta=0.5)
    assert isinstance(guided, Guided) and guided.base.eta == 0.5 and isinstance(guided.base, DDIM)
