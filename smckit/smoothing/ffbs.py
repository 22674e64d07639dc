"""Forward filtering, backward sampling: independent trajectories from the smoothing distribution.

After a run with ``history="full"``, draw ``x_{T-1}`` from the final weighted particles, then, for
t = T-1 .. 1, the parent at t - 1 from the backward kernel ``B_t(. | x_t)`` (:mod:`smckit.smoothing.backward`).
Given the particles, the trajectories are independent and exactly distributed as the particle approximation of
the smoothing distribution; unlike the genealogy, they do not coalesce.
"""

from __future__ import annotations

import math
from typing import Any

from smckit.backend import device_of, namespace
from smckit.errors import InvalidArgumentError
from smckit.random import RNG, as_rng
from smckit.smoothing.backward import BackwardKernel
from smckit.smoothing.categorical import Categorical
from smckit.smoothing.trajectories import Trajectories, full_history, stack_states
from smckit.state import take

__all__ = ["backward_sampling"]


def backward_sampling(
    result: Any,
    model: Any,
    n_paths: int,
    *,
    method: str = "reject",
    seed: RNG | int | None = None,
    max_tries: int = 1000,
) -> Trajectories:
    """Forward filtering backward sampling (FFBS).

    Parameters
    ----------
    result : smckit.Result
        A run of ``model`` with ``history="full"``.
    model : FeynmanKac
        The model that ran; it must define ``log_transition(t, prev, state)`` (the bundled filters
        :class:`smckit.models.Bootstrap` and :class:`smckit.models.Guided` do) and, for ``method="reject"``,
        ``log_transition_max(t)``.
    n_paths : int
        Trajectories to draw per batch row.
    method : {"reject", "quadratic"}
        ``"quadratic"``: exact backward weights, O(n) per trajectory and step. ``"reject"``: rejection
        sampling, O(1 / acceptance rate) per trajectory and step, completed exactly (by the quadratic sampler)
        for the draws where rejection would cost more; same law.
    seed : int, RNG or None
    max_tries : int
        Rejection rounds per step before the remaining draws are made exactly.

    Returns
    -------
    Trajectories
        Paths with leaves ``(T, *batch, n_paths, *event)``, uniform log-weights, and ``info`` with per-step
        ``acceptance`` (rejection only: accepted / proposed, NaN where nothing was proposed) and ``fallbacks``
        (draws completed exactly).

    Raises
    ------
    InvalidArgumentError
        If the run kept no particle history, ``n_paths < 1``, the method is unknown, or the model lacks
        ``log_transition`` (or ``log_transition_max`` for rejection).

    Examples
    --------
    >>> import smckit
    >>> from smckit.models import Bootstrap, LinearGaussian
    >>> from smckit.smoothing import backward_sampling
    >>> ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
    >>> _, y = ssm.simulate(20, seed=0)
    >>> model = Bootstrap(ssm, y)
    >>> res = smckit.run(model, 200, seed=1, history="full")
    >>> paths = backward_sampling(res, model, 50, seed=2)
    >>> paths.paths.shape, paths.estimate(lambda x: x).shape
    ((20, 50, 1), (20, 1))
    """
    if int(n_paths) < 1:
        raise InvalidArgumentError(f"n_paths must be positive, got {n_paths}")
    n_paths = int(n_paths)
    kernel = BackwardKernel(model, method=method, max_tries=max_tries, what="backward_sampling")
    hist = full_history(result, what="backward_sampling")
    rng = as_rng(seed)
    last = hist.log_weights[-1]
    xp = namespace(last)
    index = Categorical(last, where="backward_sampling: the final weights").draw(n_paths, rng)
    steps = [take(hist.states[-1], index)]
    acceptance, fallbacks = [math.nan], [0]
    for t in range(hist.num_steps - 1, 0, -1):
        before = (kernel.proposals, kernel.accepted, kernel.fallbacks)
        index = kernel.draw(t, hist.states[t - 1], hist.log_weights[t - 1], steps[-1], rng)
        steps.append(take(hist.states[t - 1], index))
        proposed = kernel.proposals - before[0]
        acceptance.append((kernel.accepted - before[1]) / proposed if proposed else math.nan)
        fallbacks.append(kernel.fallbacks - before[2])
    uniform = xp.full((*hist.batch, n_paths), -math.log(n_paths), dtype=last.dtype, device=device_of(last))
    info = {"method": method, "acceptance": acceptance[::-1], "fallbacks": fallbacks[::-1]}
    return Trajectories(stack_states(steps[::-1]), uniform, info)
