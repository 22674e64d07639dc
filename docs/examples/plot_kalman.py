"""
A particle filter against the Kalman filter
===========================================

The linear Gaussian state-space model is the one model whose filter is known exactly, so it is where a particle
filter can be checked. We run a bootstrap particle filter on simulated data and compare its filtering means and
intervals, step by step, with the Kalman filter's, and its log-likelihood estimates with the exact
log-likelihood.
"""

import matplotlib.pyplot as plt
import numpy as np

import smckit
from smckit.models import Bootstrap, LinearGaussian, kalman_filter

ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
x, y = ssm.simulate(100, seed=1)
exact = kalman_filter(ssm, y)

# %%
# Filtering means and intervals
# -----------------------------
# :class:`smckit.SMC` runs the filter one step at a time; after each step we take the weighted mean and standard
# deviation of the particles, which estimate those of the filter :math:`p(x_t \mid y_{0:t})`.

means, sds = [], []
smc = smckit.SMC(Bootstrap(ssm, y), 1000, resampler="systematic", seed=0)
for step in smc:
    w = np.exp(step.log_weights)
    m = np.sum(w * step.state[:, 0])
    means.append(m)
    sds.append(np.sqrt(np.sum(w * (step.state[:, 0] - m) ** 2)))
means, sds = np.array(means), np.array(sds)
result = smc.result

kf_mean = exact.filtered_means[:, 0]
kf_sd = np.sqrt(exact.filtered_covs[:, 0, 0])
t = np.arange(len(y))

fig, ax = plt.subplots(figsize=(8, 3.5))
ax.plot(t, x[:, 0], color="0.6", lw=1, label="hidden state $x_t$")
ax.plot(t, y[:, 0], ".", color="0.6", ms=3, label="observation $y_t$")
ax.fill_between(t, kf_mean - 2 * kf_sd, kf_mean + 2 * kf_sd, color="C0", alpha=0.2, label="Kalman, $\\pm 2$ sd")
ax.plot(t, kf_mean, color="C0", lw=1.5, label="Kalman mean")
ax.plot(t, means, "--", color="C3", lw=1.2, label="particle filter mean")
ax.plot(t, means - 2 * sds, ":", color="C3", lw=0.8)
ax.plot(t, means + 2 * sds, ":", color="C3", lw=0.8)
ax.set_xlabel("step $t$")
ax.legend(loc="upper left", ncol=3, fontsize=8)
fig.tight_layout()

print(f"largest gap between the means: {np.max(np.abs(means - kf_mean)):.3f} (filter sd about {kf_sd.mean():.2f})")

# %%
# The log-likelihood
# ------------------
# ``result.log_evidence`` estimates :math:`\log p(y_{0:T-1})`. Its exponential is unbiased for the likelihood;
# the spread of the log-estimate over independent runs shrinks as :math:`1/\sqrt{n}`. A batch of 100 replicates
# runs as one vectorised run.

fig, axes = plt.subplots(1, 2, figsize=(8, 3))
for ax, n in zip(axes, (100, 1000)):
    reps = smckit.run(Bootstrap(ssm, y, batch_shape=(100,)), n, seed=1)
    ax.hist(reps.log_evidence, bins=25, color="C3", alpha=0.7)
    ax.axvline(exact.log_likelihood, color="C0", lw=2, label="Kalman")
    ax.set_title(f"n = {n}: sd {np.std(reps.log_evidence):.2f}", fontsize=9)
    ax.set_xlabel("log-likelihood estimate")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %%
# The effective sample size and the resampling steps
# --------------------------------------------------
# By default the filter resamples when the ESS falls below half the particles (grey lines).

ax = result.history.plot_ess(relative=True)
ax.figure.set_size_inches(8, 2.5)
ax.figure.tight_layout()
print(f"resampled at {len(result.history.resampling_steps)} of {result.num_steps} steps")
