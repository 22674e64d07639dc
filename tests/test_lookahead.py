"""RewardLookahead: auxiliary resampling weights from the reward of the x0 estimate (smckit.diffusion.lookahead).

The statistical test runs G = 16 groups of N = 500 particles of a 20-step DDPM on the analytic mixture of
``smckit.diffusion.gmm`` and compares the weighted component masses with the exact tilted target: the Monte Carlo
error is the spread of the 16 group estimates, sd / sqrt(16), and the tolerance is 4 of those (t_15: p = 1e-3)
plus 0.01 for the sampler's discretisation (tests/test_diffusion_gmm.py measured <= 0.008 at lambda = 1 for 20 to
100 steps).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import smckit  # noqa: E402
from smckit.diffusion import GaussianMixture, NoiseSchedule, RewardSteering  # noqa: E402
from smckit.diffusion.gmm import component_masses, linear_reward  # noqa: E402
from smckit.diffusion.lookahead import RewardLookahead  # noqa: E402
from smckit.errors import InvalidArgumentError, ShapeError  # noqa: E402
from smckit.models import Bootstrap, LinearGaussian  # noqa: E402

pytestmark = pytest.mark.diffusion
F64 = torch.float64
DIRECTION = torch.tensor([1.0, 0.5], dtype=F64)


def mixture():
    return GaussianMixture([0.5, 0.3, 0.2], [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], [0.25, 0.5, 0.3], dtype=F64)


def steering(lam=1.0, steps=20, groups=16):
    schedule = NoiseSchedule.linear(num_steps=steps)
    return RewardSteering(
        mixture().denoiser(schedule),
        schedule,
        linear_reward(DIRECTION),
        lam=lam,
        event_shape=(2,),
        groups=groups,
        dtype=F64,
    )


def test_the_look_ahead_is_the_scaled_reward_of_the_x0_estimate():
    model = steering(lam=0.7, groups=2)
    state = model.initial(5, smckit.random.RNG(0))
    torch.testing.assert_close(RewardLookahead(model).log_lookahead(1, state), 0.7 * state["reward"])
    torch.testing.assert_close(RewardLookahead(model, 2.5).log_lookahead(1, state), 2.5 * state["reward"])
    # a model that already has a look-ahead keeps it: the log-weights add
    twice = RewardLookahead(RewardLookahead(model, 1.0), 2.0)
    torch.testing.assert_close(twice.log_lookahead(1, state), 3.0 * state["reward"])


@pytest.mark.parametrize("resampler", ["systematic", "multinomial"])
def test_the_tilted_target_is_unchanged(resampler):
    lam = 1.0
    tilted = mixture().tilted(DIRECTION, lam)
    result = smckit.run(RewardLookahead(steering(lam)), 500, resampler=resampler, policy=smckit.Always(), seed=3)
    per_group = component_masses(tilted, result.particles["x"], result.log_weights)  # (G, K)
    est, se = per_group.mean(0), per_group.std(0) / math.sqrt(per_group.shape[0])
    assert torch.all((est - tilted.weights).abs() <= 4 * se + 0.01), (est, tilted.weights, se)
    # the copies carry 1 / eta of their parent: the final weights are not uniform
    assert float(result.log_weights.std()) > 0.01


def test_the_look_ahead_selects_harder_than_the_weights_alone():
    # Same seeds, resampling at every step: eta = exp(lam r) adds selection, so fewer lineages survive.
    plain = smckit.run(steering(2.0), 200, resampler="systematic", policy=smckit.Always(), seed=1)
    ahead = smckit.run(RewardLookahead(steering(2.0)), 200, resampler="systematic", policy=smckit.Always(), seed=1)
    assert ahead.history.lineages()[-1].mean() < plain.history.lineages()[-1].mean()


def test_a_zero_look_ahead_is_plain_resampling():
    plain = smckit.run(steering(1.0, groups=3), 64, resampler="systematic", policy=smckit.Always(), seed=2)
    zero = smckit.run(RewardLookahead(steering(1.0, groups=3), 0.0), 64, policy=smckit.Always(), seed=2)
    np.testing.assert_array_equal(plain.history.ancestors, zero.history.ancestors)
    np.testing.assert_allclose(plain.log_evidence, zero.log_evidence, rtol=0, atol=1e-12)


def test_it_delegates_to_the_wrapped_model():
    model = steering(groups=2)
    wrapped = RewardLookahead(model)
    smckit.run(wrapped, 8, resampler="systematic", policy=smckit.Always(), seed=0)
    assert wrapped.denoiser_calls == model.denoiser_calls == 2 * 8 * 20
    assert wrapped.num_steps == model.num_steps and wrapped.schedule is model.schedule
    assert "RewardLookahead(" in repr(wrapped) and "lam=1" in repr(wrapped)


def test_rebirth_noise_goes_to_the_wrapped_model():
    pytest.importorskip("smckit_fvd")
    from smckit.plugins import make_resampler

    res = smckit.run(
        RewardLookahead(steering(groups=2)),
        32,
        resampler=make_resampler("fleming-viot", rebirth_noise=0.5),
        policy=smckit.Always(),
        seed=0,
    )
    assert res.history.resampled.any()


def test_bad_uses_are_refused_with_a_clear_error():
    with pytest.raises(InvalidArgumentError, match="wraps a FeynmanKac"):
        RewardLookahead(object())
    with pytest.raises(InvalidArgumentError, match="finite"):
        RewardLookahead(steering(), float("nan"))
    ssm = LinearGaussian.scalar()
    _, y = ssm.simulate(3, seed=0)
    with pytest.raises(InvalidArgumentError, match="no lam"):
        RewardLookahead(Bootstrap(ssm, y))
    with pytest.raises(ShapeError, match=r"state\['reward'\]"):
        smckit.run(RewardLookahead(Bootstrap(ssm, y), 1.0), 8, policy=smckit.Always(), seed=0)
    with pytest.raises(InvalidArgumentError, match="no rebirth"):
        RewardLookahead(Bootstrap(ssm, y), 1.0).rebirth(1, None, None, 0.1, None)
