"""Fleming-Viot resampling: independent Bernoulli survival, rebirth of the dead from the excess weight.

With normalised weights ``W_i`` in a row of n particles and ``m_i = n W_i`` (the weight relative to the mean):

1. survival: particle i survives, in its own slot, with probability ``s_i = min(1, m_i)``, independently of the
   others. Every particle at or above the mean weight survives; at equal weights nobody dies.
2. birth: each dead slot is refilled by a copy of a parent drawn independently with probability
   proportional to the excess ``(m_j - 1)+`` (default), so that ``E[count_i] = min(1, m_i) + (m_i - 1)+ = m_i``:
   the expected number of deaths, ``sum_j (1 - m_j)+``, equals the total excess ``sum_j (m_j - 1)+`` because
   the m_j average to one. Alternatives: parents uniform among the survivors (classical Fleming-Viot) or
   proportional to weight among the survivors; neither is unbiased.
3. selection strength: the log-weights are multiplied by an exponent beta before step 1 (``W ∝ w**beta``); with
   a target absorption rate, beta is chosen per row so that the death fraction tracks it
   (:mod:`smckit_fvd.controller`).

Reference: Shekhar, Mukherjee, Zhang and Zhang, *Fleming-Viot Diffusion*, arXiv 2604.06779 v1 (April 2026).
Version 2 of that arXiv identifier is a different method (VASR).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from smckit import Capabilities, InvalidArgumentError, Resampled
from smckit.backend import Array, device_of, is_torch, namespace
from smckit.random import RNG, as_rng
from smckit.resamplers import kit
from smckit.weights import logsumexp

from smckit_fvd.controller import CONTROLLERS, AbsorptionController, make_controller, temper

__all__ = ["FlemingViot", "PARENT_RULES"]

PARENT_RULES = ("excess", "survivors-uniform", "survivors-weighted")
"""The rules for choosing the parent of a dead slot: among particles with excess weight (unbiased, the default),
uniformly among survivors (classical Fleming-Viot), or by weight among survivors."""


class FlemingViot:
    """Fleming-Viot resampler: Bernoulli survival with probability ``min(1, n W_i)``, rebirth of the dead.

    Parameters
    ----------
    parent : {"excess", "survivors-uniform", "survivors-weighted"}
        How a dead slot picks its parent. ``"excess"`` (default): proportional to ``(n W_j - 1)+``, which
        makes the offspring counts unbiased (``E[count_i] = n W_i``). ``"survivors-uniform"``: uniformly among
        the survivors (classical Fleming-Viot). ``"survivors-weighted"``: proportional to ``W_j`` among the
        survivors. The last two are not unbiased.
    absorption : float in (0, 1) or None
        Target absorption rate alpha*: the fraction of particles killed per resampling that the selection
        exponent beta is tuned to. ``None`` (default): beta stays at ``beta`` (1 unless given).
    controller : {"robbins-monro", "exact"} or AbsorptionController
        How beta is tuned when ``absorption`` is set: the stochastic-approximation rule on observed deaths
        (stateful across calls) or bisection on the expected deaths at each call (stateless).
    beta : float
        The fixed selection exponent without ``absorption``, or the Robbins-Monro starting value with it.
    keep_target : bool
        Carry the part of the weight that selection did not use, ``(1 - beta) log W`` of the parent (plus a
        per-row constant), as the post-resampling log-weight, so that the weighted population still targets
        the untempered weights: copies of i arrive in proportion to ``W_i**beta`` and carry ``W_i**(1 - beta)``.
        Without it (default) the output weights are equal, and for beta != 1 the population is tilted to
        ``w**beta``.
    rebirth_noise : float
        Scale the engine passes to ``model.rebirth(t, state, reborn, scale, rng)`` for the refilled slots
        (0: clones are exact copies).
    controller_options : dict, optional
        Extra keyword options of the controller (``step_size``, ``step_exponent``, ``iterations``,
        ``beta_bounds``).

    Attributes
    ----------
    name : str
        ``"fleming-viot"``.
    capabilities : Capabilities
        ``unbiased`` only for the excess rule with no tilt left in the target (no absorption, beta = 1, or
        ``keep_target``); never a count bound; ``n_out`` must equal n.
    rebirth_noise : float
        See above.
    controller : AbsorptionController or None
        The absorption controller (``None`` without ``absorption``).

    Raises
    ------
    InvalidArgumentError
        For an unknown parent rule or controller, an absorption rate outside (0, 1), a non-positive beta or a
        negative rebirth noise.

    Notes
    -----
    The engine hands the resampler the *accumulated* normalised log-weights: under a policy that skips steps,
    they hold the potentials of every step since the last resampling, and beta applies to all of them. With
    resampling at every step they are exactly the incremental log-potentials.

    The Robbins-Monro controller keeps its state (beta per row, step counter) on this object. A registered name
    passed to :func:`smckit.run` builds a fresh object per run; an object passed directly carries its state into
    the next run (call :meth:`reset` between runs) and must not be shared by runs that execute concurrently.
    With a per-row policy (``ESSBelow``), the engine resamples every row and restores those that did not need it,
    so the controller also learns from those rows; prefer a static policy (``Always``, ``Every``) with
    ``absorption``.

    Each call costs O(n) per row, with no Python loop over particles: the dead slots are refilled by
    :func:`smckit.resamplers.refill` (compiled on the CPU when numba is installed). Survivors keep their slot;
    dead slots receive their parents in increasing parent order, so the ancestors are not exchangeable (the
    counts have the stated law).

    Examples
    --------
    >>> import numpy as np
    >>> from smckit.random import RNG
    >>> out = FlemingViot()(np.log(np.array([0.1, 0.2, 0.3, 0.4])), RNG(0))
    >>> out.ancestors.shape, int(out.info["deaths"])
    ((4,), 1)
    """

    name = "fleming-viot"

    def __init__(
        self,
        *,
        parent: str = "excess",
        absorption: float | None = None,
        controller: str | AbsorptionController = "robbins-monro",
        beta: float = 1.0,
        keep_target: bool = False,
        rebirth_noise: float = 0.0,
        controller_options: dict[str, Any] | None = None,
    ):
        if parent not in PARENT_RULES:
            raise InvalidArgumentError(f"unknown parent rule {parent!r}; choose one of {PARENT_RULES}")
        beta = float(beta)
        if not (beta > 0.0 and np.isfinite(beta)):
            raise InvalidArgumentError(f"beta must be a positive finite number, got {beta}")
        rebirth_noise = float(rebirth_noise)
        if not (rebirth_noise >= 0.0 and np.isfinite(rebirth_noise)):
            raise InvalidArgumentError(f"rebirth_noise must be a non-negative finite number, got {rebirth_noise}")
        self.parent = parent
        self.beta = beta
        self.keep_target = bool(keep_target)
        self.rebirth_noise = rebirth_noise
        self.absorption = None if absorption is None else float(absorption)
        self.controller: AbsorptionController | None = None
        if isinstance(controller, AbsorptionController):
            if absorption is not None and controller.target != self.absorption:
                raise InvalidArgumentError(
                    f"absorption={absorption} disagrees with the controller's target {controller.target}"
                )
            self.controller = controller
            self.absorption = controller.target
        elif absorption is not None:
            options = dict(controller_options or {})
            if controller in ("robbins-monro", "rm"):
                options.setdefault("beta0", beta)
            self.controller = make_controller(controller, float(absorption), **options)
        elif controller not in CONTROLLERS:
            raise InvalidArgumentError(f"unknown absorption controller {controller!r}; choose one of {CONTROLLERS}")
        elif controller_options:
            raise InvalidArgumentError("controller_options need absorption=... (a target rate)")
        tilted = self.controller is not None or beta != 1.0
        self.capabilities = Capabilities(
            unbiased=parent == "excess" and (self.keep_target or not tilted),
            count_bounds=None,
            variable_size=False,
            uniform_output_weights=not self.keep_target,
            sorted_ancestors=False,
            backends=("numpy", "torch"),
        )

    def reset(self) -> None:
        """Forget the controller's state (Robbins-Monro: back to the initial beta)."""
        if self.controller is not None:
            self.controller.reset()

    # -- the resampling ---------------------------------------------------------------------------------
    def __call__(self, log_weights: Array, rng: RNG, *, n_out: int | None = None) -> Resampled:
        """Resample one population per row.

        Parameters
        ----------
        log_weights : array, shape (*batch, n)
            Unnormalised log-weights (``-inf``: weight zero); every row needs a finite entry. numpy or torch, any
            floating dtype: float16 and bfloat16 are widened to float32 (exactly) before anything is summed.
        rng : smckit.random.RNG, int, numpy.random.SeedSequence or None
            The random source (a seed makes one); draws are made on the backend and device of ``log_weights``.
        n_out : int, optional
            Must be n (or ``None``): the scheme keeps the population size.

        Returns
        -------
        Resampled
            ``ancestors`` (*batch, n) int64 (survivors: their own index); ``log_weights`` (*batch, n) zeros in
            the input's dtype, or with ``keep_target`` ``(1 - beta) log W`` of the parent plus
            ``log sum_j W_j**beta``, a scale chosen so that ``E[sum_{k: ancestors_k = i} exp(log_weights_k)] =
            n W_i``, in the input's dtype except for float16 and bfloat16 input, where they are float32 (half
            precision cannot hold these logarithms to the accuracy the weights need); ``reborn`` (*batch, n) bool,
            the refilled slots; ``info`` with ``deaths`` (*batch,) int64, ``death_fraction`` (*batch,),
            ``beta`` (*batch,) (both float32 for half-precision input) and ``absorption_target`` (float or None).

        Raises
        ------
        InvalidArgumentError
            If ``n_out`` differs from n, or ``log_weights`` is not a floating-point numpy array or torch tensor.
        ShapeError
            If ``log_weights`` has no particle axis or zero particles.
        InvalidWeightsError
            For NaN or ``+inf`` log-weights (checked on the CPU only: on an accelerator the check would stall the
            device, and the engine has already validated the weights it passes).
        ExtinctionError
            For a row whose log-weights are all ``-inf`` (CPU only, as above).
        """
        log_weights, _ = kit.check_input(log_weights, n_out, name=self.name, variable_size=False)
        rng = as_rng(rng)
        n = int(log_weights.shape[-1])
        xp = namespace(log_weights)
        shape = tuple(log_weights.shape)
        # l_i - max_j l_j, in float32 or wider: the largest is 0; shift-invariant from here on.
        log_w = kit.shift(kit.float32_or_wider(log_weights), name=self.name)
        tilted = self.controller is not None or self.beta != 1.0
        if self.controller is not None:
            beta = self.controller.beta(log_w)
        else:
            beta = xp.full(shape[:-1], self.beta, dtype=log_w.dtype, device=device_of(log_w))
        selection = temper(log_w, beta) if tilted else log_w  # still 0 at each row's largest weight
        # m_i = n W_i(beta) (see relative_weights), in the memory of `selection`, a temporary of this call (log_w is
        # read again only when tilted, and then `selection` is a new array).
        m = kit.exp_(selection)
        m *= float(n) / xp.sum(m, axis=-1, keepdims=True)

        # 1. survival: u < min(1, m) <=> u < m since u < 1; so m >= 1 survives surely (the largest always does).
        dead = kit.uniform(rng, shape, like=m) >= m
        deaths = xp.sum(dead, axis=-1, dtype=xp.int64)

        # 2. birth: each dead slot copies an independent draw from q (sorted over the dead slots of a row).
        ancestors = kit.refill(self._parent_weights(m, dead), dead, rng)

        # 3. output weights, diagnostics, controller feedback.
        if self.keep_target and tilted:
            # The weight selection left unused, W**(1 - beta), times sum_j W_j**beta: a copy of i arrives
            # n W_i**beta / sum_j W_j**beta times on average, so E[sum over copies of i of exp(log-weight)] = n W_i.
            log_norm = log_w - xp.expand_dims(logsumexp(log_w), axis=-1)  # log W
            kept = temper(log_norm, 1.0 - beta) + xp.expand_dims(logsumexp(temper(log_norm, beta)), axis=-1)
            out_log_w = xp.take_along_axis(kept, ancestors, axis=-1)
        else:
            out_log_w = xp.zeros(shape, dtype=log_weights.dtype, device=device_of(log_weights))
        death_fraction = xp.astype(deaths, log_w.dtype) / float(n)
        if self.controller is not None:
            self.controller.observe(death_fraction)
        info = {
            "deaths": deaths,
            "death_fraction": death_fraction,
            "beta": beta,
            "absorption_target": self.absorption,
        }
        return Resampled(ancestors=ancestors, log_weights=out_log_w, reborn=dead, info=info)

    def _parent_weights(self, m: Array, dead: Array) -> Array:
        """Unnormalised parent probabilities q (*batch, n) of the chosen rule (zero where no parent may be)."""
        xp = namespace(m)
        if self.parent == "survivors-uniform":
            return xp.astype(~dead, m.dtype)
        if self.parent == "survivors-weighted":
            return xp.where(dead, xp.zeros_like(m), m)
        excess = _clamp_at_zero_in_place(m - 1.0)
        # Round-off can leave a row with deaths but no excess (every m within an ulp of 1): its dead slots then
        # copy survivors uniformly. In exact arithmetic, deaths imply a positive excess. (On the host the rare
        # fallback is decided first; on an accelerator that would wait for the device, so it is always computed.)
        has_excess = xp.sum(excess, axis=-1, keepdims=True) > 0.0
        if str(device_of(m)) == "cpu" and bool(xp.all(has_excess)):
            return excess
        return xp.where(has_excess, excess, xp.astype(~dead, m.dtype))

    def __repr__(self) -> str:
        parts = [f"parent={self.parent!r}"]
        if self.controller is not None:
            parts.append(f"absorption={self.absorption}, controller={self.controller!r}")
        elif self.beta != 1.0:
            parts.append(f"beta={self.beta}")
        if self.keep_target:
            parts.append("keep_target=True")
        if self.rebirth_noise:
            parts.append(f"rebirth_noise={self.rebirth_noise}")
        return f"FlemingViot({', '.join(parts)})"


def _clamp_at_zero_in_place(x: Array) -> Array:
    """``max(x, 0)`` written over ``x`` (numpy or torch); returns ``x``."""
    if is_torch(x):
        return x.clamp_(min=0.0)
    return np.maximum(x, 0.0, out=x)
