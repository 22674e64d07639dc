"""
Filtering, smoothing and error bars on one run
==============================================

One bootstrap particle filter run on the linear Gaussian model, three questions: where is the state given the
data so far (filtering), where was it given all the data (smoothing), and how precise is the log-likelihood
estimate, judged from this run alone. The exact answers (Kalman filter and Rauch-Tung-Striebel smoother) are
drawn beside the particle estimates.
"""

import matplotlib.pyplot as plt
import numpy as np

import smckit
from smckit.models import Bootstrap, LinearGaussian, rts_smoother
from smckit.smoothing import FixedLag, backward_sampling, genealogy_paths, replay

ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=1.0)
x, y = ssm.simulate(80, seed=2)
exact = rts_smoother(ssm, y)
model = Bootstrap(ssm, y)
result = smckit.run(model, 1000, resampler="multinomial", seed=0, history="full")

# %%
# Filtering and smoothing
# -----------------------
# The filtering means come from a lag-0 :class:`~smckit.smoothing.FixedLag` tracker replayed over the run; the
# smoothing means and intervals from 1000 trajectories drawn by backward sampling (rejection sampler).

filtering = replay(result, FixedLag(lambda s: s[..., 0], lag=0))
paths = backward_sampling(result, model, 1000, seed=1).paths[..., 0]
lo, hi = np.quantile(paths, [0.025, 0.975], axis=1)
t = np.arange(len(y))
sd = np.sqrt(exact.smoothed_covs[:, 0, 0])

fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
ax = axes[0]
ax.plot(t, x[:, 0], "k.", ms=3, label="true state")
ax.plot(t, exact.filter.filtered_means[:, 0], color="C0", lw=1, label="Kalman filter")
ax.plot(t, filtering, color="C0", lw=1, ls="--", label="particle filter")
ax.fill_between(
    t,
    exact.smoothed_means[:, 0] - 1.96 * sd,
    exact.smoothed_means[:, 0] + 1.96 * sd,
    color="C1",
    alpha=0.2,
    label="RTS smoother, 95%",
)
ax.plot(t, paths.mean(axis=1), color="C1", lw=1, label="backward sampling mean")
ax.plot(t, lo, color="C1", lw=0.5, ls=":")
ax.plot(t, hi, color="C1", lw=0.5, ls=":", label="backward sampling, 95%")
ax.set_ylabel("x_t")
ax.legend(fontsize=7, ncol=3)

# %%
# Why not the genealogy?
# ----------------------
# The ancestral lines of the final particles also form trajectories, at no cost, but going back in time they
# coalesce: at early steps only a few distinct states remain, while backward sampling keeps hundreds.

genealogy = genealogy_paths(result).paths[..., 0]
distinct = lambda p: [len(np.unique(p[s])) for s in range(len(y))]  # noqa: E731
ax = axes[1]
ax.plot(t, distinct(genealogy), label="genealogy of the final particles")
ax.plot(t, distinct(paths), label="backward sampling")
ax.set_yscale("log")
ax.set_xlabel("step t")
ax.set_ylabel("distinct states")
ax.legend(fontsize=7)
fig.tight_layout()

# %%
# An error bar from the same run
# ------------------------------
# The Lee-Whiteley estimator (:mod:`smckit.variance`) reads the Monte Carlo variance of the log-likelihood off
# the genealogy (the step-0 ancestor of every final particle, ``result.eve``), with no second run.

se = float(np.sqrt(result.log_evidence_variance()))
estimate, truth = float(result.log_evidence), float(exact.filter.log_likelihood)
print(f"log-likelihood: {estimate:.2f} +- {1.96 * se:.2f} (95%), exact {truth:.2f}")
