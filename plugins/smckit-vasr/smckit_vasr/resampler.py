"""The resampling half of VASR: systematic resampling of the allocation mass, with its concentration recorded.

VASR (Variance-Aware Systematic Resampling; Shekhar, Mukherjee, Zhang and Zhang, arXiv 2604.06779 **v2**, May
2026; version 1 of that identifier is Fleming-Viot, a different method) resamples the mass ``m_i ∝ w_i e^{r_i}``
systematically. In smckit the two halves live where their inputs are:

- the allocation ``e^{r_i}`` needs the particles, so it is the model's look-ahead ``log_lookahead(t, state)``
  (:class:`smckit.diffusion.lookahead.RewardLookahead` for diffusion steering); the engine hands the scheme the
  mass ``W_i eta_i`` and gives each copy ``1 / eta`` of its parent, which keeps the target and the evidence exact;
- the resampling of that mass is this scheme: systematic resampling (one uniform per row, counts ``floor`` or
  ``ceil`` of ``n m_i``, unbiased), the low residual-variance choice the paper argues for.

The scheme is the built-in :class:`~smckit.resamplers.Systematic`, compiled kernel and all, plus one diagnostic
in ``info``: ``mass_ess``, the effective sample size fraction ``(sum m)^2 / (n sum m^2)`` of the mass it resampled
(per row), which shows how hard the allocation selected. Used without a look-ahead it is systematic resampling of
the weights.
"""

from __future__ import annotations

from typing import Any

from smckit import Capabilities
from smckit.resamplers import Systematic, kit

__all__ = ["VASR"]


class VASR(Systematic):
    """Systematic resampling of the VASR allocation mass (see the module notes).

    Unbiased (``E[count_i] = n m_i``, ``m`` the normalised mass it is given) with counts ``floor`` or ``ceil`` of
    ``n m_i``; numpy and torch, any floating dtype, batched. ``info["mass_ess"]`` has shape (*batch,).

    Examples
    --------
    >>> import numpy as np
    >>> from smckit.random import RNG
    >>> out = VASR()(np.array([np.log(2.0), 0.0, 0.0, -np.inf]), RNG(0))  # W = (0.5, 0.25, 0.25, 0)
    >>> np.bincount(out.ancestors, minlength=4).tolist(), round(float(out.info["mass_ess"]), 3)
    ([2, 1, 1, 0], 0.667)
    """

    name = "vasr"
    capabilities = Capabilities(unbiased=True, count_bounds="floor_ceil", variable_size=True, sorted_ancestors=True)

    def reference(self, prep: kit.Prepared) -> kit.Outcome:
        """Ancestors of shape (rows, n_out), as systematic resampling, and ``mass_ess`` of shape (rows,)."""
        return _with_mass_ess(prep, super().reference(prep))

    def compiled(self, prep: kit.Prepared) -> kit.Outcome:
        """The compiled systematic kernel's ancestors, and ``mass_ess`` of shape (rows,)."""
        return _with_mass_ess(prep, super().compiled(prep))


def _with_mass_ess(prep: kit.Prepared, outcome: kit.Outcome) -> kit.Outcome:
    xp: Any = prep.xp
    w = prep.w  # (rows, n) float64, max 1 per row
    ess = xp.sum(w, axis=-1) ** 2 / (prep.n * xp.sum(w * w, axis=-1))
    return kit.Outcome(outcome.ancestors, outcome.reborn, {**outcome.info, "mass_ess": ess})
