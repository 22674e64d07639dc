"""Smoothing and whole trajectories: what a filtering run says about the past.

A run of a Feynman-Kac model approximates, at each step t, the filter (the law of x_t given the potentials up to
t). Smoothing asks about the past given everything: the law of ``x_{0:T-1}`` under the final path measure, or its
marginals ``p(x_s | y_{0:T-1})``. Four tools, by cost and quality:

- :func:`genealogy_paths`: the ancestral lines of the final particles; free, but they coalesce going back in
  time, so early marginals rest on few distinct states (use for recent steps, or as a quick look);
- :func:`backward_sampling`: forward filtering, backward sampling: independent trajectories from the particle
  approximation of the smoother, by exact backward weights (``"quadratic"``, O(n) per trajectory and step) or by
  rejection (``"reject"``, O(1) expected, completed exactly when acceptance collapses);
- :class:`FixedLag`: ``E[phi(x_s) | y_{0:s+L}]`` online, from the genealogy over a fixed lag L;
- :class:`PaRIS`: online smoothed expectations of additive functionals ``sum_s h_s(x_{s-1}, x_s)``
  (Olsson and Westerborn, 2017), O(n) memory.

Backward sampling and PaRIS need the model's transition log-density, an optional model method
``log_transition(t, prev, state)`` (and, for rejection, ``log_transition_max(t)``), which the bundled filters
:class:`smckit.models.Bootstrap` and :class:`smckit.models.Guided` define. The offline tools read a run made with
``history="full"``; the online ones are trackers (:class:`Tracker`), driven during a run by the engine or
afterwards by :func:`replay`.
"""

from smckit.smoothing.backward import BackwardKernel
from smckit.smoothing.categorical import Categorical
from smckit.smoothing.ffbs import backward_sampling
from smckit.smoothing.fixed_lag import FixedLag
from smckit.smoothing.paris import PaRIS
from smckit.smoothing.trackers import Tracker, replay
from smckit.smoothing.trajectories import Trajectories, genealogy_paths

__all__ = [
    "genealogy_paths",
    "backward_sampling",
    "FixedLag",
    "PaRIS",
    "Tracker",
    "replay",
    "Trajectories",
    "BackwardKernel",
    "Categorical",
]
