"""The Kalman filter: exact filtering and log-likelihood of a linear Gaussian state-space model (numpy).

Time convention (as in the particle filters): ``x_0 ~ N(mu0, P0)`` is observed through ``y_0``, so the
predictive law of x_0 is the prior itself. For t = 0 .. T-1::

    predict:  m_t|t-1 = A m_t-1|t-1,           P_t|t-1 = A P_t-1|t-1 A^T + Q       (t >= 1)
    update:   S_t = C P_t|t-1 C^T + R,          K_t = P_t|t-1 C^T S_t^{-1}
              m_t|t = m_t|t-1 + K_t (y_t - C m_t|t-1),   P_t|t = (I - K_t C) P_t|t-1 (I - K_t C)^T + K_t R K_t^T
    evidence: log p(y_t | y_0:t-1) = log N(y_t; C m_t|t-1, S_t)

The covariances do not depend on the data, so they are computed once and shared by every batch row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from smckit.errors import ShapeError
from smckit.models.linear_gaussian import LinearGaussian

__all__ = ["KalmanResult", "kalman_filter"]


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
