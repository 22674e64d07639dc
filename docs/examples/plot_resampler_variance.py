"""
How much noise each resampling scheme adds
==========================================

Every resampling scheme gives particle :math:`i` a random number of offspring :math:`N^i` with
:math:`\\mathbb{E}[N^i] = n W^i` (they are unbiased), but the *variance* of the counts differs, and that variance
is noise added to every estimate computed after the resampling. Here each scheme resamples the same weights
many times, and we compare the mean and the variance of the offspring counts, particle by particle.

All schemes are called the same way: ``resampler(log_weights, rng)``, with a batch of independent rows in one
call; here each row is one replicate.
"""

import matplotlib.pyplot as plt
import numpy as np

import smckit
from smckit.plugins import available, make_resampler

weights = np.array([0.30, 0.02, 0.15, 0.08, 0.005, 0.12, 0.20, 0.045, 0.06, 0.02])
n = weights.size
replicates = 4000
log_w = np.broadcast_to(np.log(weights), (replicates, n))  # one row per replicate

schemes = [
    s
    for s in ("multinomial", "residual", "stratified", "systematic", "ssp", "killing", "fleming-viot")
    if s in available("resampler")
]
rng = smckit.RNG(0)
counts = {}
for name in schemes:
    out = make_resampler(name)(log_w, rng)
    ancestors = np.asarray(out.ancestors)
    counts[name] = (ancestors[..., None] == np.arange(n)).sum(axis=-2)  # (replicates, n) offspring counts

# %%
# Unbiased: the mean counts
# -------------------------
# Every scheme's mean count matches :math:`n W^i` within the Monte Carlo error (the dots lie on the diagonal).

fig, ax = plt.subplots(figsize=(4.5, 4))
for k, name in enumerate(schemes):
    ax.plot(n * weights, counts[name].mean(axis=0), "o", ms=4, color=f"C{k}", label=name)
ax.plot([0, n * weights.max()], [0, n * weights.max()], color="0.5", lw=0.8)
ax.set_xlabel("$n W^i$")
ax.set_ylabel("mean offspring count")
ax.legend(fontsize=7)
fig.tight_layout()

# %%
# The variance of the counts
# --------------------------
# Multinomial resampling has the largest variance, :math:`n W^i (1 - W^i)`. Residual and stratified resampling
# reduce it; systematic resampling and SSP give every particle :math:`\\lfloor n W^i \\rfloor` or
# :math:`\\lceil n W^i \\rceil` offspring, the least variance possible for an unbiased scheme. Killing and
# Fleming-Viot resampling keep survivors in place and refill the dead slots, which trades variance for fewer
# deaths.

width = 0.8 / len(schemes)
fig, ax = plt.subplots(figsize=(9, 3.5))
positions = np.arange(n)
for k, name in enumerate(schemes):
    ax.bar(positions + (k - (len(schemes) - 1) / 2) * width, counts[name].var(axis=0), width, label=name, color=f"C{k}")
offset = -(len(schemes) - 1) / 2 * width  # the multinomial bars come first
ax.plot(positions + offset, n * weights * (1 - weights), "k_", ms=10, label="$nW(1-W)$ (multinomial, exact)")
ax.set_xticks(positions, [f"{n * w:.2f}" for w in weights])
ax.set_xlabel("particle, labelled by $n W^i$")
ax.set_ylabel("variance of the count")
ax.legend(ncol=4, fontsize=7)
fig.tight_layout()

print("total variance of the counts, sum_i Var(N^i):")
for name in schemes:
    print(f"  {name:13s} {counts[name].var(axis=0).sum():.3f}")
