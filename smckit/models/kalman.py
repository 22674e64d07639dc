"""The Kalman filter: exact filtering and log-likelihood of a linear Gaussian state-space model (numpy).

Time convention (as in the particle filters): ``x_0 ~ N(mu0, P0)`` is observed through ``y_0``, so the
predictive law of x_0 is the prior itself. For t = 0 .. T-1::

    predict:  m_t|t-1 = A m_t-1|t-1,           P_t|t-1 = A P_t-1|t-1 A^T + Q       (t >= 1)
    update:   S_t = C P_t|t-1 C^T + R,          K_t = P_t|t-1 C^T S_t^{-1}
              m_t|t = m_t|t-1 + K_t (y_t - C m_t|t-1),   P_t|t = (I - K_t C) P_t|t-1 (I - K_t C)^T + K_t R K_t^T
    evidence: log p(y_t | y_0:t-1) = log N(y_t; C m_t|t-1, S_t)

The covariances do not depend on the data, so they are computed once and shared by every batch row.

The Rauch-Tung-Striebel smoother runs backwards over the filter's output, for t = T-2 .. 0::

    gain:     J_t = P_t|t A^T P_t+1|t^{-1}
    smooth:   m_t|T = m_t|t + (m_t+1|T - m_t+1|t) J_t^T,    P_t|T = P_t|t + J_t (P_t+1|T - P_t+1|t) J_t^T
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from smckit.errors import ShapeError
from smckit.models.linear_gaussian import LinearGaussian

__all__ = ["KalmanResult", "KalmanSmootherResult", "kalman_filter", "rts_smoother"]


@dataclass(frozen=True)
class KalmanResult:
    """The exact filter of a linear Gaussian model.

    Attributes
    ----------
    log_likelihood : ndarray, shape (*batch,)
        ``log p(y_0:T-1)``.
    log_likelihood_increments : ndarray, shape (*batch, T)
        ``log p(y_t | y_0:t-1)``; their sum is ``log_likelihood``.
    filtered_means : ndarray, shape (*batch, T, dx)
        ``E[x_t | y_0:t]``.
    filtered_covs : ndarray, shape (T, dx, dx)
        ``Cov[x_t | y_0:t]`` (the same for every batch row).
    predicted_means : ndarray, shape (*batch, T, dx)
        ``E[x_t | y_0:t-1]`` (the prior mean at t = 0).
    predicted_covs : ndarray, shape (T, dx, dx)
        ``Cov[x_t | y_0:t-1]``.
    """

    log_likelihood: np.ndarray
    log_likelihood_increments: np.ndarray
    filtered_means: np.ndarray
    filtered_covs: np.ndarray
    predicted_means: np.ndarray
    predicted_covs: np.ndarray


def kalman_filter(ssm: LinearGaussian, y: Any) -> KalmanResult:
    """Run the Kalman filter on observations ``y``.

    Parameters
    ----------
    ssm : LinearGaussian
    y : array_like, shape (*batch, T, dy) or (T,) when dy = 1
        Observations; torch tensors are copied to numpy float64 (this reference runs on the CPU).

    Returns
    -------
    KalmanResult

    Raises
    ------
    ShapeError
        If the observations' last axis is not ``dy``.

    Examples
    --------
    >>> ssm = LinearGaussian.scalar(rho=0.5, sigma_x=1.0, sigma_y=1.0)
    >>> res = kalman_filter(ssm, np.zeros((3, 1)))
    >>> res.filtered_means.shape, res.log_likelihood.shape
    ((3, 1), ())
    """
    y = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y, dtype=np.float64)
    if y.ndim == 1 and ssm.dim_y == 1:
        y = y[:, None]
    if y.ndim < 2 or y.shape[-1] != ssm.dim_y:
        raise ShapeError(f"observations must have shape (*batch, T, {ssm.dim_y}), got {y.shape}")
    A, C, Q, R = ssm.A, ssm.C, ssm.Q, ssm.R
    num_steps, dy = y.shape[-2], ssm.dim_y
    batch = y.shape[:-2]

    pred_means, pred_covs, filt_means, filt_covs, increments = [], [], [], [], []
    m = np.broadcast_to(ssm.mu0, (*batch, ssm.dim_x))
    P = ssm.P0
    identity = np.eye(ssm.dim_x)
    for t in range(num_steps):
        if t > 0:
            m = m @ A.T
            P = A @ P @ A.T + Q
        pred_means.append(m)
        pred_covs.append(P)
        S = C @ P @ C.T + R
        S = 0.5 * (S + S.T)
        chol_s = np.linalg.cholesky(S)
        K = np.linalg.solve(S, C @ P).T  # P C^T S^{-1}, using the symmetry of S and P
        resid = y[..., t, :] - m @ C.T
        z = np.linalg.solve(chol_s, resid[..., None])[..., 0]  # chol_s^{-1} resid, per row
        increments.append(
            -0.5 * np.sum(z * z, axis=-1) - np.sum(np.log(np.diag(chol_s))) - 0.5 * dy * math.log(2 * math.pi)
        )
        m = m + resid @ K.T
        I_KC = identity - K @ C
        P = I_KC @ P @ I_KC.T + K @ R @ K.T  # Joseph form: symmetric and positive whatever the round-off
        filt_means.append(m)
        filt_covs.append(P)

    inc = np.stack(increments, axis=-1)
    return KalmanResult(
        log_likelihood=np.sum(inc, axis=-1),
        log_likelihood_increments=inc,
        filtered_means=np.stack(filt_means, axis=-2),
        filtered_covs=np.stack(filt_covs),
        predicted_means=np.stack(pred_means, axis=-2),
        predicted_covs=np.stack(pred_covs),
    )


@dataclass(frozen=True)
class KalmanSmootherResult:
    """The exact smoother of a linear Gaussian model.

    Attributes
    ----------
    smoothed_means : ndarray, shape (*batch, T, dx)
        ``E[x_t | y_0:T-1]``.
    smoothed_covs : ndarray, shape (T, dx, dx)
        ``Cov[x_t | y_0:T-1]`` (the same for every batch row).
    filter : KalmanResult
        The forward pass it was computed from.
    """

    smoothed_means: np.ndarray
    smoothed_covs: np.ndarray
    filter: KalmanResult


def rts_smoother(ssm: LinearGaussian, y: Any) -> KalmanSmootherResult:
    """The Rauch-Tung-Striebel smoother: the exact marginals ``p(x_t | y_0:T-1)``.

    Parameters
    ----------
    ssm : LinearGaussian
    y : array_like, shape (*batch, T, dy) or (T,) when dy = 1
        Observations (copied to numpy float64).

    Returns
    -------
    KalmanSmootherResult

    Raises
    ------
    ShapeError
        If the observations' last axis is not ``dy``.

    Examples
    --------
    >>> ssm = LinearGaussian.scalar(rho=0.5, sigma_x=1.0, sigma_y=1.0)
    >>> res = rts_smoother(ssm, np.zeros((3, 1)))
    >>> res.smoothed_means.shape, res.smoothed_covs.shape
    ((3, 1), (3, 1, 1))
    """
    kf = kalman_filter(ssm, y)
    num_steps = kf.filtered_means.shape[-2]
    means = [kf.filtered_means[..., -1, :]]
    covs = [kf.filtered_covs[-1]]
    for t in range(num_steps - 2, -1, -1):
        P_f, P_p = kf.filtered_covs[t], kf.predicted_covs[t + 1]
        J = np.linalg.solve(P_p, ssm.A @ P_f).T  # P_f A^T P_p^{-1}, by the symmetry of P_p and P_f
        means.append(kf.filtered_means[..., t, :] + (means[-1] - kf.predicted_means[..., t + 1, :]) @ J.T)
        P = P_f + J @ (covs[-1] - P_p) @ J.T
        covs.append(0.5 * (P + P.T))
    return KalmanSmootherResult(
        smoothed_means=np.stack(means[::-1], axis=-2), smoothed_covs=np.stack(covs[::-1]), filter=kf
    )
