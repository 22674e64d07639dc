"""
Steering a diffusion model towards one digit
============================================

The bundled 8x8 digits model (:mod:`smckit.examples.digits`) is a small DDPM trained on scikit-learn's
handwritten digits, with a digit classifier. Steering with the reward :math:`r(x_0) = \\log p(y = c \\mid x_0)`
and :math:`\\lambda = 1` targets :math:`p(x_0)\\, p(c \\mid x_0) \\propto p(x_0 \\mid c)`: samples of class
:math:`c` from a model that was trained without labels.

We compare, at the same number of denoiser calls, the methods of ``smckit demo`` (:doc:`/cli`): multinomial
SMC (FK steering), systematic SMC, Fleming-Viot SMC (the ``smckit-fvd`` plugin, when installed) and best-of-N
(sample without steering, keep the particles of highest reward). The sizes are the demo's ``--quick``
settings, so this runs in seconds on a CPU.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

from smckit.examples.comparison import Setup, run_method
from smckit.examples.demo import QUICK
from smckit.examples.digits import load_digits_model
from smckit.plugins import available

torch.set_num_threads(1)  # the networks are tiny: one thread is fastest on a busy machine

bundle = load_digits_model()  # the denoiser, its noise schedule and the classifier; bundled, no download
setup = Setup(classes=[3] * QUICK["groups"], particles=QUICK["particles"], keep=QUICK["keep"], steps=QUICK["steps"])
print(
    f"{setup.groups} groups x {setup.particles} particles x {setup.steps} steps = {setup.denoiser_calls} "
    "denoiser calls per method"
)

methods = ["multinomial", "systematic", "best-of-n"]
if "fleming-viot" in available("resampler"):
    methods.insert(2, "fleming-viot")
results = [run_method(bundle, setup, method) for method in methods]

# %%
# The samples
# -----------
# Each panel shows, for one method, the samples it returns: one row per independent population (group), 4
# samples per group. The title gives the share the classifier assigns to class 3 and the number of distinct
# lineages left among each group's 16 particles.

fig, axes = plt.subplots(1, len(results), figsize=(2.4 * len(results), 2.9), squeeze=False)
for ax, res in zip(axes[0], results):
    g, k = res.samples.shape[:2]
    mosaic = np.full((g * 9 + 1, k * 9 + 1), np.nan)
    for i in range(g):
        for j in range(k):
            mosaic[1 + 9 * i : 9 + 9 * i, 1 + 9 * j : 9 + 9 * j] = res.samples[i, j]
    ax.imshow(np.ma.masked_invalid(mosaic), cmap="gray_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
    share = float((res.predicted == res.targets[:, None]).mean())
    ax.set_title(f"{res.method}\nclass 3: {share:.0%}, lineages {res.lineages.mean():.1f}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %%
# The numbers
# -----------
# The mean reward :math:`\\log p(3 \\mid x_0)` of the returned samples, and the distinct lineages. With 16
# particles the SMC rows can end with every particle of a group descending from one initial draw (one lineage);
# their samples still differ because the DDPM steps after the last resampling are random. With so few particles
# and steps the differences between methods are noisy; ``smckit demo`` (64 particles, 50 steps, 8 groups) and
# the :doc:`benchmarks </benchmarks>` give the full comparison.

for res in results:
    print(
        f"{res.method:13s} mean reward {res.rewards.mean():7.3f}   lineages {res.lineages.mean():5.1f}   "
        f"denoiser calls {res.denoiser_calls}"
    )
