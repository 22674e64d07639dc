"""
Lineage collapse: multinomial against Fleming-Viot resampling
=============================================================

Each resampling gives every particle a parent; following the parents back to step 0 shows how many distinct
ancestral lines are still alive. Resampling can only lose lines, so they *collapse*: after enough steps all
particles descend from a handful of ancestors. How fast depends on the scheme. Multinomial resampling kills
about :math:`n/e` particles at every step even when the weights are equal; Fleming-Viot resampling (the
``smckit-fvd`` plugin) kills a particle only when its weight is below the mean, and then with probability
:math:`1 - n W^i`, the fewest deaths an unbiased scheme can have.

The model: a Gaussian random walk with a weak pull towards the origin, resampled at every step, so that the
incremental weights stay close to uniform (as in diffusion steering with many small steps).
"""

import matplotlib.pyplot as plt

import smckit
from smckit.plugins import available


class Walk(smckit.FeynmanKac):
    """x_0 ~ N(0, 1), x_t = 0.9 x_{t-1} + N(0, 0.25), log G_t(x) = -0.1 x^2."""

    def __init__(self, num_steps=50):
        self.num_steps = num_steps

    def initial(self, n, rng):
        return rng.normal((n, 1))

    def propose(self, t, state, rng):
        return 0.9 * state + 0.5 * rng.normal(state.shape, like=state)

    def log_potential(self, t, prev, state):
        return -0.1 * state[..., 0] ** 2


schemes = [s for s in ("multinomial", "systematic", "fleming-viot") if s in available("resampler")]
results = {name: smckit.run(Walk(), 1000, resampler=name, policy=smckit.Always(), seed=0) for name in schemes}

# %%
# Distinct lineages per step
# --------------------------
# :meth:`smckit.History.lineages` counts the distinct step-0 ancestors alive at each step. Systematic
# resampling, whose counts are :math:`\lfloor n W^i \rfloor` or :math:`\lceil n W^i \rceil`, also loses few
# lines with weights this even; what Fleming-Viot resampling adds is that survivors keep their own slot and path,
# that the reborn particles can be perturbed (rebirth noise, for deterministic samplers), and that its death rate
# can be controlled (:doc:`/guide/fleming-viot`).

fig, ax = plt.subplots(figsize=(6, 3.5))
for name, result in results.items():
    result.history.plot_lineages(ax, label=name)
ax.legend()
fig.tight_layout()
for name, result in results.items():
    print(f"{name:13s} lineages left after {result.num_steps} steps: {int(result.history.lineages()[-1])}")

# %%
# The genealogies
# ---------------
# The ancestral trees of a small population (40 particles): surviving lines in black. Under multinomial
# resampling the lines coalesce within a few steps; under Fleming-Viot resampling most particles stay their
# own parent from one step to the next.

small = [name for name in ("multinomial", "fleming-viot") if name in schemes]
fig, axes = plt.subplots(1, len(small), figsize=(9, 3.5), sharey=True, squeeze=False)
for ax, name in zip(axes[0], small):
    result = smckit.run(Walk(25), 40, resampler=name, policy=smckit.Always(), seed=1)
    result.history.plot_genealogy(ax)
    ax.set_title(name)
fig.tight_layout()
