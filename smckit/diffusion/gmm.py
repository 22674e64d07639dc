"""An analytic Gaussian-mixture diffusion: exact denoiser, exact tilted targets.

The data law is ``p0(x) = sum_k w_k N(x; mu_k, diag(v_k))`` in d dimensions. Under the forward process
``x_t = sqrt(a) x0 + sqrt(1 - a) eps`` (``a = abar_t``) the noised law is again a mixture,
``p_t(x) = sum_k w_k N(x; sqrt(a) mu_k, diag(a v_k + 1 - a))``, so the score, the noise prediction
``eps(x_t) = -sqrt(1 - a) grad log p_t(x_t)`` and the Tweedie estimate are exact at every noise level
(:meth:`GaussianMixture.denoiser`). The same holds for the flow-matching path ``x_s = (1 - s) x0 + s eps``: the
law at level s is the mixture with means ``(1 - s) mu_k`` and variances ``(1 - s)^2 v_k + s^2``, and the exact
velocity ``E[eps - x0 | x_s]`` follows from the posterior mean of ``x0`` (:meth:`GaussianMixture.velocity`,
:meth:`GaussianMixture.flow_denoiser`). Both denoisers compute in the mixture's dtype and answer in the particles'
(so float16 and bfloat16 particles get a float32 or float64 exact model).

Under a linear reward ``r(x) = <c, x>`` the tilted law ``p0(x) exp(lam r(x)) / Z`` is a mixture too
(:meth:`GaussianMixture.tilted`): component k keeps its covariance, its mean moves to ``mu_k + lam v_k * c`` and
its weight is multiplied by ``exp(lam <c, mu_k> + lam^2 <c * c, v_k> / 2)``, then renormalised. So the output of
a steered sampler can be checked against the truth.

Component masses of a weighted sample (:func:`component_masses`): the default estimator averages the posterior
responsibilities ``gamma_k(x) = P(component k | x)`` under the mixture being estimated, with the particle weights:
``m_k = sum_i W_i gamma_k(x_i)``. For exact draws ``E[gamma_k(X)] = w_k``, so it is unbiased, and its Monte Carlo
error is computable: ``Var(gamma_k(X)) / n`` for n independent draws, and :meth:`GaussianMixture.mass_std` gives
that standard deviation (it is never larger than the hard-assignment estimator's ``sqrt(w_k (1 - w_k) / n)``, by
Rao-Blackwell). The ``"nearest"`` estimator (hard assignment to the most probable component) is also provided;
its expectation is ``w_k`` only up to the overlap of the components.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from smckit.errors import BackendError, InvalidArgumentError, ShapeError

__all__ = ["GaussianMixture", "component_masses", "linear_reward"]

Tensor = Any
LOG_2PI = math.log(2 * math.pi)


class GaussianMixture:
    """A Gaussian mixture with diagonal (or isotropic) covariances, as torch tensors.

    Parameters
    ----------
    weights : sequence or tensor, shape (K,)
        Positive; normalised here.
    means : sequence or tensor, shape (K, d)
    variances : float, or sequence or tensor of shape (K,) (isotropic per component) or (K, d) (diagonal)
        Positive.
    dtype : torch.dtype, optional
        Default: float64 for sequences, the dtype of tensor inputs otherwise.
    device : str or torch.device, optional
        Default: the CPU, or the device of tensor inputs.

    Raises
    ------
    InvalidArgumentError
        For non-positive weights or variances.
    ShapeError
        For inconsistent shapes.

    Examples
    --------
    >>> import torch
    >>> from smckit.diffusion import GaussianMixture
    >>> gmm = GaussianMixture([1.0, 3.0], [[-2.0, 0.0], [2.0, 0.0]], 0.5)
    >>> gmm.weights.tolist()
    [0.25, 0.75]
    >>> tilted = gmm.tilted(torch.tensor([1.0, 0.0], dtype=torch.float64), lam=1.0)
    >>> tilted.means[:, 0].tolist()
    [-1.5, 2.5]
    """

    def __init__(self, weights: Any, means: Any, variances: Any, *, dtype: Any = None, device: Any = None):
        import torch

        ref = next((v for v in (means, weights, variances) if isinstance(v, torch.Tensor)), None)
        dtype = dtype or (ref.dtype if ref is not None else torch.float64)
        device = device or (ref.device if ref is not None else "cpu")
        w = torch.as_tensor(weights, dtype=dtype, device=device).reshape(-1)
        mu = torch.as_tensor(means, dtype=dtype, device=device)
        if mu.ndim != 2 or mu.shape[0] != w.shape[0]:
            raise ShapeError(f"means must have shape (K, d) with K = {w.shape[0]} weights, got {tuple(mu.shape)}")
        k, d = mu.shape
        v = torch.as_tensor(variances, dtype=dtype, device=device)
        if v.ndim == 0:
            v = v.expand(k, d)
        elif v.ndim == 1 and v.shape[0] == k:
            v = v[:, None].expand(k, d)
        elif tuple(v.shape) != (k, d):
            raise ShapeError(f"variances must be a scalar, (K,) or (K, d) = ({k}, {d}); got {tuple(v.shape)}")
        if bool((w <= 0).any()) or bool((v <= 0).any()):
            raise InvalidArgumentError("mixture weights and variances must be positive")
        self.weights = w / w.sum()
        self.means = mu
        self.variances = v.contiguous()

    # -- basic properties -----------------------------------------------------------------------------
    @property
    def num_components(self) -> int:
        """K."""
        return int(self.means.shape[0])

    @property
    def dim(self) -> int:
        """d."""
        return int(self.means.shape[1])

    @property
    def dtype(self) -> Any:
        return self.means.dtype

    @property
    def device(self) -> Any:
        return self.means.device

    def to(self, device: Any = None, dtype: Any = None) -> GaussianMixture:
        """A copy on ``device`` with ``dtype``."""
        return GaussianMixture(
            self.weights.to(device=device, dtype=dtype),
            self.means.to(device=device, dtype=dtype),
            self.variances.to(device=device, dtype=dtype),
        )

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.num_components}, d={self.dim}, {self.dtype}, {self.device})"

    # -- densities ------------------------------------------------------------------------------------
    def _check(self, x: Tensor) -> None:
        if x.shape[-1] != self.dim:
            raise ShapeError(f"points must have shape (..., {self.dim}), got {tuple(x.shape)}")
        if x.device != self.device or x.dtype != self.dtype:
            raise BackendError(
                f"points are {x.dtype} on {x.device} but the mixture is {self.dtype} on {self.device}; "
                "use mixture.to(device, dtype)"
            )

    def component_log_prob(self, x: Tensor) -> Tensor:
        """``log w_k + log N(x; mu_k, diag(v_k))``, shape (..., K), for points of shape (..., d)."""
        self._check(x)
        diff = x[..., None, :] - self.means
        quad = (diff * diff / self.variances).sum(-1)
        log_det = self.variances.log().sum(-1)
        return self.weights.log() - 0.5 * (quad + log_det + self.dim * LOG_2PI)

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)``, shape (...)."""
        return self.component_log_prob(x).logsumexp(-1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior component probabilities ``gamma_k(x)``, shape (..., K)."""
        return self.component_log_prob(x).softmax(-1)

    def score(self, x: Tensor) -> Tensor:
        """``grad log p(x)``, shape (..., d)."""
        gamma = self.responsibilities(x)
        per_component = -(x[..., None, :] - self.means) / self.variances
        return (gamma[..., None] * per_component).sum(-2)

    # -- diffusion ------------------------------------------------------------------------------------
    def noised(self, alpha_bar: float) -> GaussianMixture:
        """The law of ``sqrt(a) x0 + sqrt(1 - a) eps``: means ``sqrt(a) mu_k``, variances ``a v_k + 1 - a``."""
        a = float(alpha_bar)
        return self.scaled(math.sqrt(a), math.sqrt(1.0 - a))

    def scaled(self, alpha: float, sigma: float) -> GaussianMixture:
        """The law of ``alpha x0 + sigma eps``: means ``alpha mu_k``, variances ``alpha^2 v_k + sigma^2``.

        Parameters
        ----------
        alpha, sigma : float
            The signal and noise coefficients.

        Returns
        -------
        GaussianMixture
        """
        out = object.__new__(GaussianMixture)
        out.weights = self.weights
        out.means = float(alpha) * self.means
        out.variances = float(alpha) ** 2 * self.variances + float(sigma) ** 2
        return out

    def posterior_mean(self, x: Tensor, alpha: float, sigma: float) -> Tensor:
        """``E[x0 | alpha x0 + sigma eps = x]``, shape of ``x`` (..., d): exact, also at ``alpha = 0``.

        Per component the posterior mean is ``mu_k + v_k alpha (x - alpha mu_k) / (alpha^2 v_k + sigma^2)``;
        they are averaged with the responsibilities under :meth:`scaled`.

        Parameters
        ----------
        x : tensor, shape (..., d)
        alpha, sigma : float

        Returns
        -------
        tensor, shape (..., d)
        """
        noisy = self.scaled(alpha, sigma)
        gamma = noisy.responsibilities(x)
        gain = float(alpha) * self.variances / noisy.variances
        per_component = self.means + gain * (x[..., None, :] - noisy.means)
        return (gamma[..., None] * per_component).sum(-2)

    def velocity(self, x_s: Tensor, sigma: float) -> Tensor:
        """The exact flow-matching velocity ``E[eps - x0 | x_s]`` at level ``s = sigma`` in (0, 1], shape of x_s.

        Parameters
        ----------
        x_s : tensor, shape (..., d)
        sigma : float

        Returns
        -------
        tensor, shape (..., d)
        """
        s = float(sigma)
        x0_hat = self.posterior_mean(x_s, 1.0 - s, s)
        return (x_s - (1.0 - s) * x0_hat) / s - x0_hat

    def noise_prediction(self, x_t: Tensor, alpha_bar: float) -> Tensor:
        """The exact ``E[eps | x_t] = -sqrt(1 - a) grad log p_t(x_t)``, shape of ``x_t``."""
        return -math.sqrt(1.0 - float(alpha_bar)) * self.noised(alpha_bar).score(x_t)

    def denoiser(self, schedule: Any, **options: Any) -> Any:
        """The exact epsilon-prediction :class:`Denoiser` under ``schedule`` (options as for Denoiser).

        Parameters
        ----------
        schedule : NoiseSchedule
        **options
            :class:`~smckit.diffusion.Denoiser` options.

        Returns
        -------
        Denoiser
            Computing in the mixture's dtype, answering in the input's.
        """
        from smckit.diffusion.denoiser import Denoiser

        def eps(x_t: Tensor, t: int, **conditioning: Any) -> Tensor:
            return self.noise_prediction(x_t.to(self.dtype), schedule.alpha_bar(t)).to(x_t.dtype)

        eps.__qualname__ = "GaussianMixture.noise_prediction"
        return Denoiser(eps, "epsilon", **options)

    def flow_denoiser(self, schedule: Any, **options: Any) -> Any:
        """The exact velocity :class:`~smckit.diffusion.flow.FlowDenoiser` under a flow ``schedule``.

        Parameters
        ----------
        schedule : FlowSchedule
            Its network times are mapped back to its levels.
        **options
            :class:`~smckit.diffusion.flow.FlowDenoiser` options.

        Returns
        -------
        FlowDenoiser
            Computing in the mixture's dtype, answering in the input's.
        """
        from smckit.diffusion.flow import FlowDenoiser

        levels = {t: schedule.level(i) for i, t in enumerate(schedule.timesteps)}

        def velocity(x_s: Tensor, t: float, **conditioning: Any) -> Tensor:
            return self.velocity(x_s.to(self.dtype), levels[float(t)]).to(x_s.dtype)

        velocity.__qualname__ = "GaussianMixture.velocity"
        return FlowDenoiser(velocity, **options)

    def log_normalizer(self, direction: Any, lam: float) -> float:
        """``log E[exp(lam <direction, X>)]`` for X drawn from the mixture: the exact log-evidence of the tilt.

        ``sum_k w_k exp(lam <c, mu_k> + lam^2 <c * c, v_k> / 2)``, in log space.

        Parameters
        ----------
        direction : sequence or tensor, shape (d,)
        lam : float

        Returns
        -------
        float
        """
        import torch

        c = torch.as_tensor(direction, dtype=self.dtype, device=self.device).reshape(-1)
        lam = float(lam)
        log_terms = self.weights.log() + lam * (self.means @ c) + 0.5 * lam * lam * (self.variances @ (c * c))
        return float(log_terms.logsumexp(0))

    # -- tilting and sampling -------------------------------------------------------------------------
    def tilted(self, direction: Any, lam: float) -> GaussianMixture:
        """The mixture ``p(x) exp(lam <direction, x>) / Z`` (exact; see the module notes).

        Parameters
        ----------
        direction : sequence or tensor, shape (d,)
            The reward's coefficient vector c in ``r(x) = <c, x>``.
        lam : float
        """
        import torch

        c = torch.as_tensor(direction, dtype=self.dtype, device=self.device).reshape(-1)
        if c.shape[0] != self.dim:
            raise ShapeError(f"the reward direction must have {self.dim} entries, got {c.shape[0]}")
        lam = float(lam)
        log_w = self.weights.log() + lam * (self.means @ c) + 0.5 * lam * lam * (self.variances @ (c * c))
        means = self.means + lam * self.variances * c
        return GaussianMixture(log_w.softmax(-1), means, self.variances)

    def sample(self, shape: Sequence[int] | int, rng: Any) -> Tensor:
        """Exact draws, shape (*shape, d), from an :class:`smckit.random.RNG` (on the mixture's device)."""
        import torch

        shape = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
        u = rng.uniform(shape, like=self.means)
        cdf = self.weights.cumsum(0)
        k = torch.searchsorted(cdf, u.reshape(-1).contiguous(), right=True).clamp(max=self.num_components - 1)
        z = rng.normal((*shape, self.dim), like=self.means)
        return self.means[k].reshape(*shape, self.dim) + self.variances[k].sqrt().reshape(*shape, self.dim) * z

    def mass_std(self, n_draws: int, rng: Any) -> Tensor:
        """The standard deviation of ``gamma_k(X)``, X exact draws (``n_draws`` of them), shape (K,).

        ``mass_std / sqrt(n)`` is the Monte Carlo error of the responsibility estimator with n independent draws.
        """
        gamma = self.responsibilities(self.sample(n_draws, rng))
        return gamma.std(0)

    def component_masses(self, x: Tensor, log_weights: Tensor | None = None, method: str = "responsibility") -> Tensor:
        """Weighted component masses of particles under this mixture (see :func:`component_masses`).

        Parameters
        ----------
        x : tensor, shape (*batch, n, d)
        log_weights : tensor, shape (*batch, n), optional
            Unnormalised log-weights (default: equal weights).
        method : {"responsibility", "nearest"}

        Returns
        -------
        tensor, shape (*batch, K)
        """
        return component_masses(self, x, log_weights, method)


def component_masses(
    mixture: GaussianMixture, x: Tensor, log_weights: Tensor | None = None, method: str = "responsibility"
) -> Tensor:
    """Weighted component masses of particles under ``mixture``.

    Parameters
    ----------
    mixture : GaussianMixture
        The mixture whose components are counted (for a steered run: the exact tilted mixture).
    x : tensor, shape (*batch, n, d)
    log_weights : tensor, shape (*batch, n), optional
        Unnormalised log-weights (default: equal weights).
    method : {"responsibility", "nearest"}
        ``responsibility``: ``sum_i W_i gamma_k(x_i)`` (unbiased for exact draws; see the module notes);
        ``nearest``: the weighted share of particles whose most probable component is k.

    Returns
    -------
    tensor, shape (*batch, K)
    """
    gamma = mixture.responsibilities(x)
    if method == "nearest":
        import torch

        gamma = torch.nn.functional.one_hot(gamma.argmax(-1), mixture.num_components).to(gamma.dtype)
    elif method != "responsibility":
        raise InvalidArgumentError(f"method must be 'responsibility' or 'nearest', got {method!r}")
    if log_weights is None:
        return gamma.mean(-2)
    w = log_weights.softmax(-1).to(gamma.dtype)
    return (w[..., None] * gamma).sum(-2)


def linear_reward(direction: Any) -> Any:
    """The reward ``r(x) = <direction, x>`` on batches of shape (B, d); ``direction`` a tensor (d,)."""

    def reward(x: Tensor, **conditioning: Any) -> Tensor:
        return x @ direction.to(dtype=x.dtype)

    return reward
