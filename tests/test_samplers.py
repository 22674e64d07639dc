"""SMC samplers on a conjugate model: tempering (ESS, CESS), waste-free chains, data tempering, every move, policies.

Reference problem: y_1..y_K ~ N(mu, sigma^2) with the normal-inverse-gamma prior sigma^2 ~ IG(a0, b0),
mu | sigma^2 ~ N(m0, sigma^2 / k0), sampled in x = (mu, log sigma^2) (the prior density carries the Jacobian
sigma^2). Posterior and evidence are closed form:

    k = k0 + K,  m = (k0 m0 + K ybar) / k,  a = a0 + K / 2,  b = b0 + S / 2 + k0 K (ybar - m0)^2 / (2 k),
    mu | y has mean m and variance b / ((a - 1) k);  log sigma^2 | y has mean log b - digamma(a), variance trigamma(a);
    log p(y) = lgamma(a) - lgamma(a0) + a0 log b0 - a log b + log(k0 / k) / 2 - K log(2 pi) / 2.

Statistical tolerances: B independent rows (batch) of n particles; a row's estimate has Monte Carlo error, their
mean has standard error SE = std / sqrt(B); we allow 4 SE plus the estimator's O(1/n) bias (self-normalised
averages and an adaptive schedule), bounded by 0.05 posterior standard deviations / 0.03 in the evidence ratio
at n = 200 (the measured biases are several times smaller).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

import smckit
from smckit.errors import InvalidArgumentError
from smckit.models import (
    HMC,
    MALA,
    AdaptiveTempering,
    DataTempering,
    Posterior,
    RandomWalk,
    tempering_trace,
)
from smckit.random import RNG

M0, K0, A0, B0 = 0.0, 1.0, 3, 2.0
DATA = np.random.default_rng(42).normal(1.0, 0.5, size=20)
K_DATA = len(DATA)


def closed_form(y=DATA):
    K, ybar = len(y), float(np.mean(y))
    k, a = K0 + K, A0 + K / 2
    m = (K0 * M0 + K * ybar) / k
    b = B0 + 0.5 * float(np.sum((y - ybar) ** 2)) + K0 * K * (ybar - M0) ** 2 / (2 * k)
    log_z = (
        special.gammaln(a)
        - special.gammaln(A0)
        + A0 * math.log(B0)
        - a * math.log(b)
        + 0.5 * math.log(K0 / k)
        - 0.5 * K * math.log(2 * math.pi)
    )
    mean = np.array([m, math.log(b) - special.digamma(a)])
    var = np.array([b / ((a - 1) * k), special.polygamma(1, a)])
    return mean, var, log_z


def _xp(x):
    import array_api_compat

    return array_api_compat.array_namespace(x)


def log_prior(x):
    xp = _xp(x)
    mu, s = x[..., 0], x[..., 1]
    return (
        -0.5 * math.log(2 * math.pi)
        + 0.5 * math.log(K0)
        - 0.5 * s
        - 0.5 * K0 * (mu - M0) ** 2 * xp.exp(-s)
        + A0 * math.log(B0)
        - math.lgamma(A0)
        - (A0 + 1) * s
        - B0 * xp.exp(-s)
        + s
    )


def grad_log_prior(x):
    xp = _xp(x)
    mu, s = x[..., 0], x[..., 1]
    e = xp.exp(-s)
    return xp.stack([-K0 * (mu - M0) * e, -A0 - 0.5 + e * (0.5 * K0 * (mu - M0) ** 2 + B0)], axis=-1)


def _data(x, start, stop):
    return _xp(x).asarray(DATA[start:stop], dtype=x.dtype, device=getattr(x, "device", None))


def log_likelihood(x, start=0, stop=K_DATA):
    xp = _xp(x)
    y = _data(x, start, stop)
    mu, s = x[..., 0:1], x[..., 1:2]
    return xp.sum(-0.5 * math.log(2 * math.pi) - 0.5 * s - 0.5 * (y - mu) ** 2 * xp.exp(-s), axis=-1)


def grad_log_likelihood(x, start=0, stop=K_DATA):
    xp = _xp(x)
    y = _data(x, start, stop)
    mu, s = x[..., 0:1], x[..., 1:2]
    r2 = (y - mu) ** 2 * xp.exp(-s)
    return xp.stack([xp.sum((y - mu) * xp.exp(-s), axis=-1), xp.sum(-0.5 + 0.5 * r2, axis=-1)], axis=-1)


def sample_prior(shape, rng, like=None):
    """sigma^2 = b0 / Gamma(a0) with a0 = 3 exponentials, mu | sigma^2 ~ N(m0, sigma^2 / k0)."""
    xp = _xp(like)
    gamma = xp.sum(rng.exponential((*shape, A0), like=like), axis=-1)
    s = math.log(B0) - xp.log(gamma)
    mu = M0 + xp.exp(0.5 * s) / math.sqrt(K0) * rng.normal(shape, like=like)
    return xp.stack([mu, s], axis=-1)


def posterior(*, gradients=True, sequential=False):
    kw = {"grad_log_prior": grad_log_prior, "grad_log_likelihood": grad_log_likelihood} if gradients else {}
    if sequential:
        kw["num_data"] = len(DATA)
    return Posterior(log_prior, log_likelihood, sample_prior, **kw)


def check(res, n, *, exact=None, bias_evidence=0.03, bias_moment=0.05):
    mean, var, log_z = exact or closed_form()
    x = np.asarray(res.particles.x)
    w = np.asarray(res.weights)[..., None]
    B = x.shape[0]
    est_mean = np.sum(w * x, axis=-2)
    est_var = np.sum(w * (x - est_mean[:, None]) ** 2, axis=-2)
    for est, target in ((est_mean, mean), (est_var, var)):
        se = est.std(axis=0, ddof=1) / math.sqrt(B)
        assert np.all(np.abs(est.mean(axis=0) - target) < 4 * se + bias_moment * np.sqrt(var)), (
            est.mean(0),
            target,
            se,
        )
    ratio = np.exp(np.asarray(res.log_evidence) - log_z)
    se = ratio.std(ddof=1) / math.sqrt(B)
    assert abs(ratio.mean() - 1.0) < 4 * se + bias_evidence, (ratio.mean(), se)


MOVES = {"rw": lambda: RandomWalk(), "mala": lambda: MALA(), "hmc": lambda: HMC(n_leapfrog=5)}


@pytest.mark.parametrize("move", sorted(MOVES))
@pytest.mark.parametrize("policy", [smckit.Always(), smckit.ESSBelow(0.5)], ids=["always", "ess-below"])
def test_tempering_exact_under_every_move_and_policy(move, policy):
    B, n = 30, 200
    model = AdaptiveTempering(posterior(), move=MOVES[move](), n_moves=3, policy=policy, batch_shape=(B,))
    check(smckit.run(model, n, seed=1, history="none"), n)


@pytest.mark.parametrize("move", ["rw", "mala"])
def test_waste_free_exact(move):
    B, n = 30, 200  # M = 20 chains of length 10
    model = AdaptiveTempering(posterior(), move=MOVES[move](), chain_length=10, batch_shape=(B,))
    res = smckit.run(model, n, seed=2, history="none")
    check(res, n)
    # All M P states are kept: far more distinct particles than the M chains' starting points.
    distinct = [len(np.unique(np.asarray(res.particles.x)[b, :, 0])) for b in range(B)]
    assert min(distinct) > 2 * 20


def test_cess_criterion_under_ess_below():
    """The conditional ESS of the weights actually applied, (sum W G)^2 / sum W G^2 with W the engine's incoming
    weights, equals the target at every inner step (within the bisection tolerance)."""
    B, n, target = 4, 300, 0.9
    model = AdaptiveTempering(
        posterior(), criterion="cess", target_ess=target, policy=smckit.ESSBelow(0.5), batch_shape=(B,)
    )
    res = smckit.run(model, n, seed=3, history="full")
    hist = res.history
    assert hist.resampled[1:].any() and not hist.resampled[1:].all()  # the policy skipped some resamplings
    lam = tempering_trace(hist.particles)["exponent"]
    for t in range(1, hist.num_steps):
        incoming = np.where(hist.resampled[t][:, None], -math.log(n), hist.log_weights[t - 1])
        W = np.exp(incoming - special.logsumexp(incoming, axis=-1, keepdims=True))
        G = np.exp(hist.particles[t].log_g)
        cess = (W * G).sum(-1) ** 2 / (W * G * G).sum(-1)
        inner = lam[t] < 1.0
        assert np.all(np.abs(cess[inner] - target) <= model.tol + 1e-9), (t, cess)
    check(res, n, bias_evidence=0.2, bias_moment=0.3)  # four rows only: a loose sanity check


class Seeing(AdaptiveTempering):
    """Records the incoming log-weights the sampler chooses each exponent from."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = {}

    def advance(self, t, ev, log_w, state):
        self.seen[t] = np.array(log_w)
        return super().advance(t, ev, log_w, state)


def incoming_weights(hist, n):
    """The engine's incoming log-weights of every step t >= 1: uniform where the row resampled."""
    return {
        t: np.where(np.asarray(hist.resampled[t])[..., None], -math.log(n), hist.log_weights[t - 1])
        for t in range(1, hist.num_steps)
    }


def test_ess_criterion_is_relative_to_the_incoming_weights():
    """Under ESSBelow, ESS(applied) / ESS(incoming) = target at every inner step; the weights the sampler sees are
    the engine's incoming ones (normalised) at every step."""
    B, n, target = 3, 400, 0.8
    model = Seeing(posterior(), target_ess=target, policy=smckit.ESSBelow(0.5), batch_shape=(B,))
    res = smckit.run(model, n, seed=4, history="full")
    hist = res.history
    lam = tempering_trace(hist.particles)["exponent"]
    for t, expected in incoming_weights(hist, n).items():
        seen = model.seen[t] - special.logsumexp(model.seen[t], axis=-1, keepdims=True)
        np.testing.assert_allclose(seen, expected, atol=1e-10)
        incoming = np.where(hist.resampled[t], n, hist.ess[t - 1])
        inner = lam[t] < 1.0
        assert np.all(np.abs(hist.ess[t][inner] / incoming[inner] - target) <= model.tol + 1e-9)


@pytest.mark.parametrize("policy", [smckit.ESSBelow(0.5), smckit.Every(2)], ids=["ess-below", "every-2"])
def test_a_policy_given_to_run_works(policy):
    """smckit.run(sampler, policy=...) replaces the sampler's policy: the sampler sees the engine's incoming
    weights, tunes each exponent on them, and moves exactly the rows that resampled (rows still tempering: a row
    waiting at exponent 1 has equal weights whether it resampled or not, and moves either way)."""
    B, n, target = 3, 300, 0.7
    model = Seeing(posterior(), target_ess=target, batch_shape=(B,))
    res = smckit.run(model, n, seed=8, policy=policy, history="full")
    hist = res.history
    assert hist.resampled[1:].any() and not hist.resampled[1:].all()  # not the sampler's default (Always)
    trace = tempering_trace(hist.particles)
    assert np.all(trace["exponent"][-1] == 1.0)
    for t, expected in incoming_weights(hist, n).items():
        seen = model.seen[t] - special.logsumexp(model.seen[t], axis=-1, keepdims=True)
        np.testing.assert_allclose(seen, expected, atol=1e-10)
        incoming = np.where(hist.resampled[t], n, hist.ess[t - 1])
        inner = trace["exponent"][t] < 1.0
        assert np.all(np.abs(hist.ess[t][inner] / incoming[inner] - target) <= model.tol + 1e-9)
        # every move of a row (n particles, 5 random-walk steps each) rejected: negligible probability
        tempering = trace["exponent"][t - 1] < 1.0
        np.testing.assert_array_equal(trace["acceptance"][t][tempering] > 0, hist.resampled[t][tempering])


def test_data_tempering_evidence_of_every_prefix():
    """IBIS: the log-evidence after step k estimates log p(y_0..y_k); checked at k = 4 and at the end."""
    B, n = 30, 200
    model = DataTempering(posterior(sequential=True), move=MALA(), batch_shape=(B,))
    res = smckit.run(model, n, seed=5, history="ancestors")
    check(res, n)
    prefix = np.cumsum(res.history.log_evidence_increments, axis=0)[4]
    ratio = np.exp(prefix - closed_form(DATA[:5])[2])
    assert abs(ratio.mean() - 1) < 4 * ratio.std(ddof=1) / math.sqrt(B) + 0.03
    assert res.history.resampled[1:].any() and not res.history.resampled[1:].all()


@pytest.mark.parametrize("move", sorted(MOVES))
def test_moves_leave_the_posterior_invariant(move):
    """Exact posterior draws stay posterior-distributed after three moves at exponent 1 (means and variances
    within 4 i.i.d. standard errors: the draws are independent of each other)."""
    n = 20000
    mean, var, _ = closed_form()
    K, ybar = len(DATA), float(np.mean(DATA))
    k, a = K0 + K, A0 + K / 2
    b = B0 + 0.5 * float(np.sum((DATA - ybar) ** 2)) + K0 * K * (ybar - M0) ** 2 / (2 * k)
    rng = np.random.default_rng(0)
    s = np.log(b / rng.gamma(a, size=n))
    mu = (K0 * M0 + K * ybar) / k + np.exp(0.5 * s) / math.sqrt(k) * rng.normal(size=n)
    x = np.stack([mu, s], axis=-1)
    model = AdaptiveTempering(posterior(), move=MOVES[move]())
    post = model.posterior
    state = smckit.models.TemperingState(
        x, post.log_prior(x), post.log_likelihood(x), np.ones(n), np.zeros(n), np.zeros(n)
    )
    ev, acc = model.move_particles(state, RNG(1), n_moves=3)
    assert 0.2 < float(acc.mean()) < 0.98
    sd = np.sqrt(var)
    assert np.all(np.abs(ev.x.mean(0) - mean) < 4 * sd / math.sqrt(n))
    assert np.all(np.abs(ev.x.var(0) - var) < 4 * var * math.sqrt(2 / n))


def test_step_sizes_adapt_to_the_target_acceptance():
    B, n = 4, 400
    model = AdaptiveTempering(posterior(), move=MALA(step_size=5.0), target_ess=0.8, batch_shape=(B,))
    res = smckit.run(model, n, seed=6, history="full")
    trace = tempering_trace(res.history.particles)
    h = trace["step_size"]
    assert np.all(h[-1] < 2.0)  # far too large a first step shrinks
    assert abs(trace["acceptance"][-1].mean() - MALA.target_acceptance) < 0.25


def test_torch_autograd_gradients():
    torch = pytest.importorskip("torch")
    x = torch.tensor(np.random.default_rng(1).normal(size=(3, 5, 2)), dtype=torch.float64)
    auto = posterior(gradients=False).evaluate(x, grad=True)
    np.testing.assert_allclose(auto.grad_log_prior.numpy(), grad_log_prior(x.numpy()), rtol=1e-10)
    np.testing.assert_allclose(auto.grad_log_likelihood.numpy(), grad_log_likelihood(x.numpy()), rtol=1e-10)
    like = torch.zeros(0, dtype=torch.float64)
    model = AdaptiveTempering(posterior(gradients=False), move=HMC(n_leapfrog=3), batch_shape=(20,), like=like)
    res = smckit.run(model, 100, seed=7, history="none")
    assert isinstance(res.particles.x, torch.Tensor)
    ratio = np.exp(res.log_evidence.numpy() - closed_form()[2])
    assert abs(ratio.mean() - 1) < 4 * ratio.std(ddof=1) / math.sqrt(20) + 0.05


def test_progress_bar_runs():
    model = AdaptiveTempering(posterior(), progress=True)
    assert float(smckit.run(model, 100, seed=0).particles.exponent[0]) == 1.0


def test_refusals():
    with pytest.raises(InvalidArgumentError, match="gradients"):
        AdaptiveTempering(posterior(gradients=False), move=MALA())
    with pytest.raises(InvalidArgumentError, match="multiple"):
        smckit.run(AdaptiveTempering(posterior(), chain_length=7), 100, seed=0)
    with pytest.raises(InvalidArgumentError, match="Policy"):
        AdaptiveTempering(posterior(), policy="always")
    with pytest.raises(InvalidArgumentError, match="observe_weights"):  # a wrapper that hides the engine's hook
        model = AdaptiveTempering(posterior())
        model.propose(1, model.initial(10, RNG(0)), RNG(0))
    with pytest.raises(InvalidArgumentError, match="num_data"):
        DataTempering(posterior())
    with pytest.raises(InvalidArgumentError, match="criterion"):
        AdaptiveTempering(posterior(), criterion="kl")
    with pytest.raises(InvalidArgumentError):
        HMC(n_leapfrog=0)
