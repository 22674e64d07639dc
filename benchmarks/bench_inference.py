"""Parameter inference and SMC samplers: smckit against `particles` and blackjax on the same models, one run.

Two problems with exact answers:

- **static**: prior N(0, I_d), likelihood N(y; x, Sigma) with a correlated Sigma (d = 5), so the posterior is
  Gaussian and the evidence is N(y; 0, I + Sigma). Samplers: smckit's waste-free adaptive tempering (random walk
  with the particles' covariance) and its resample-move tempering with HMC; `particles`' waste-free
  ``AdaptiveTempering``; blackjax's ``adaptive_tempered_smc`` with HMC (fixed step size, identity mass).
- **ssm**: x_t = rho x_{t-1} + N(0, 1), y_t = x_t + N(0, 0.5^2), T = 100, rho ~ U(-1, 1); the posterior of rho
  and the evidence on a grid of the Kalman likelihood. Methods: PMMH (smckit; `particles.mcmc.PMMH`) and SMC^2
  (smckit; `particles.smc_samplers.SMC2`).

Metrics, over R independent runs of each method: wall time per run; the error of the log-evidence (mean and
spread); the effective sample size of the posterior-mean estimate, ``ESS = posterior variance / MSE`` of the
run's posterior mean (a method-agnostic measure of accuracy), and so the **time to ESS 1000** =
``time * 1000 / ESS`` (lower is better). For PMMH the ESS is the chain's own (Geyer), and its error is checked
against the grid.

`particles` needs numpy < 2 and blackjax needs jax: both run in another interpreter (``--other-python``, e.g. a
virtual environment with ``pip install particles blackjax``), in a subprocess, on the same data; without it only
smckit's rows are printed.

Usage::

    python benchmarks/bench_inference.py --other-python /path/to/venv/bin/python [--quick] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import smckit
from smckit.inference import pmmh, smc2
from smckit.models import HMC, AdaptiveTempering, Bootstrap, LinearGaussian, MultivariateNormal, Posterior

D = 5
SX, SY, S0 = 1.0, 0.5, 1.0


# -- the problems -----------------------------------------------------------------------------------------------
def static_problem() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    sigma = 0.05 * (0.5 * np.eye(D) + 0.5 * np.ones((D, D)))
    y = rng.normal(size=D)
    prec = np.eye(D) + np.linalg.inv(sigma)
    cov = np.linalg.inv(prec)
    mean = cov @ np.linalg.solve(sigma, y)
    total = np.eye(D) + sigma
    _, logdet = np.linalg.slogdet(total)
    log_z = -0.5 * y @ np.linalg.solve(total, y) - 0.5 * logdet - 0.5 * D * math.log(2 * math.pi)
    return {"y": y, "sigma": sigma, "mean": mean, "var": np.diag(cov), "log_z": float(log_z)}


def kalman_grid(y: np.ndarray) -> dict[str, Any]:
    rho = np.linspace(-1, 1, 4003)[1:-1]
    m, p, total = np.zeros_like(rho), np.full_like(rho, S0**2), np.zeros_like(rho)
    for t in range(y.shape[0]):
        if t > 0:
            m, p = rho * m, rho**2 * p + SX**2
        s = p + SY**2
        total += -0.5 * (y[t, 0] - m) ** 2 / s - 0.5 * np.log(2 * math.pi * s)
        k = p / s
        m, p = m + k * (y[t, 0] - m), (1 - k) * p
    log_post = total - math.log(2.0)
    top = log_post.max()
    w = np.exp(log_post - top)
    log_z = top + math.log(np.trapezoid(w, rho))
    w /= w.sum()
    mean = float(w @ rho)
    return {"mean": mean, "var": float(w @ (rho - mean) ** 2), "log_z": log_z}


# -- smckit -----------------------------------------------------------------------------------------------------
def smckit_static(problem: dict[str, Any], method: str, n: int, seed: int) -> tuple[float, float, np.ndarray]:
    y, sigma = problem["y"], problem["sigma"]
    chol_inv = np.linalg.inv(np.linalg.cholesky(sigma))
    prec = np.linalg.inv(sigma)
    log_norm = -0.5 * np.linalg.slogdet(sigma)[1] - 0.5 * D * math.log(2 * math.pi)

    def log_lik(x: np.ndarray) -> np.ndarray:
        z = (x - y) @ chol_inv.T
        return log_norm - 0.5 * np.sum(z * z, axis=-1)

    prior = MultivariateNormal(np.zeros(D), np.eye(D))
    post = Posterior(
        prior.logpdf, log_lik, prior.sample, grad_log_prior=lambda x: -x, grad_log_likelihood=lambda x: -(x - y) @ prec
    )
    if method == "waste-free RW":
        model = AdaptiveTempering(post, chain_length=max(n // 100, 5))
    else:
        model = AdaptiveTempering(post, move=HMC(n_leapfrog=5), n_moves=2)
    start = time.perf_counter()
    res = smckit.run(model, n, seed=seed, history="none")
    elapsed = time.perf_counter() - start
    return elapsed, float(res.log_evidence), np.asarray(res.estimate(lambda s: s.x))


def ar1_data(T: int) -> np.ndarray:
    return LinearGaussian.scalar(rho=0.7, sigma_x=SX, sigma_y=SY, sigma0=S0).simulate(T, seed=3)[1]


class _AR1:
    """The AR(1) model with one rho per batch row (vectorised over the theta-particles)."""

    @staticmethod
    def model_of(y: np.ndarray) -> Any:
        from smckit.models.ssm import StateSpaceModel

        class AR1(StateSpaceModel):
            dim_x = dim_y = 1

            def __init__(self, rho: np.ndarray):
                self.rho = np.asarray(rho).reshape(-1, 1, 1)

            def sample_initial(self, shape, rng, *, like):  # type: ignore[no-untyped-def]
                return S0 * rng.normal((*shape, 1), like=like)

            def logpdf_initial(self, x):  # type: ignore[no-untyped-def]
                return -0.5 * (x[..., 0] / S0) ** 2 - math.log(S0 * math.sqrt(2 * math.pi))

            def sample_transition(self, t, x_prev, rng):  # type: ignore[no-untyped-def]
                return self.rho * x_prev + SX * rng.normal(x_prev.shape, like=x_prev)

            def logpdf_transition(self, t, x_prev, x):  # type: ignore[no-untyped-def]
                z = (x - self.rho * x_prev)[..., 0] / SX
                return -0.5 * z * z - math.log(SX * math.sqrt(2 * math.pi))

            def sample_observation(self, t, x, rng):  # type: ignore[no-untyped-def]
                return x + SY * rng.normal(x.shape, like=x)

            def logpdf_observation(self, t, x, yy):  # type: ignore[no-untyped-def]
                z = (yy - x)[..., 0] / SY
                return -0.5 * z * z - math.log(SY * math.sqrt(2 * math.pi))

        def model_of(theta: np.ndarray) -> Any:
            return Bootstrap(AR1(theta[:, 0]), y, batch_shape=(theta.shape[0],))

        return model_of


def log_prior(theta: np.ndarray) -> np.ndarray:
    return np.where(np.abs(theta[..., 0]) < 1, -math.log(2.0), -np.inf)


def smckit_pmmh(y: np.ndarray, n_iter: int, nx: int, seed: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    chains = pmmh(_AR1.model_of(y), log_prior, [[0.5]], n_particles=nx, n_iter=n_iter, seed=seed, vectorized=True)
    return time.perf_counter() - start, chains.theta[0, :, 0]


def smckit_smc2(y: np.ndarray, n_theta: int, nx: int, seed: int) -> tuple[float, float, float]:
    def sample_prior(shape, rng, like=None):  # type: ignore[no-untyped-def]
        return 2.0 * rng.uniform((*shape, 1)) - 1.0

    start = time.perf_counter()
    out = smc2(_AR1.model_of(y), log_prior, sample_prior, n_theta=n_theta, n_x=nx, seed=seed, vectorized=True)
    return time.perf_counter() - start, out.log_evidence, float(out.mean()[0])


# -- the other libraries (run in another interpreter) -----------------------------------------------------------
OTHER_SCRIPT = r"""
import json, math, sys, time
import numpy as np
cfg = json.loads(sys.argv[1])
out = {}
y_s, sigma = np.array(cfg["y_static"]), np.array(cfg["sigma"])
D = len(y_s)
chol_inv = np.linalg.inv(np.linalg.cholesky(sigma))
log_norm = -0.5 * np.linalg.slogdet(sigma)[1] - 0.5 * D * math.log(2 * math.pi)
try:
    import particles
    from particles import distributions as dists, smc_samplers as ss, state_space_models as ssm, mcmc
    prior = dists.StructDist({f"x{j}": dists.Normal() for j in range(D)})
    class Static(ss.StaticModel):
        def logpyt(self, theta, t):
            x = np.stack([theta[f"x{j}"] for j in range(D)], axis=-1)
            z = (x - y_s) @ chol_inv.T
            return log_norm - 0.5 * np.sum(z * z, axis=-1)
    rows = []
    for r in range(cfg["R"]):
        static = Static(data=np.zeros((1, 1)), prior=prior)
        fk = ss.AdaptiveTempering(model=static, len_chain=max(cfg["n_static"] // 100, 5))
        np.random.seed(r)
        alg = particles.SMC(fk=fk, N=cfg["n_static"], verbose=False)
        t0 = time.perf_counter(); alg.run(); dt = time.perf_counter() - t0
        x = np.stack([alg.X.theta[f"x{j}"] for j in range(D)], axis=-1)
        rows.append([dt, float(alg.logLt), (alg.W @ x).tolist()])
    out["particles waste-free tempering"] = rows
    class AR1(ssm.StateSpaceModel):
        default_params = {"rho": 0.7}
        def PX0(self): return dists.Normal(scale=cfg["S0"])
        def PX(self, t, xp): return dists.Normal(loc=self.rho * xp, scale=cfg["SX"])
        def PY(self, t, xp, x): return dists.Normal(loc=x, scale=cfg["SY"])
    y = np.array(cfg["y_ssm"])[:, 0]
    rprior = dists.StructDist({"rho": dists.Uniform(-1.0, 1.0)})
    rows = []
    for r in range(cfg["R_pmmh"]):
        np.random.seed(r)
        theta0 = np.array([(0.5,)], dtype=[("rho", float)])
        alg = mcmc.PMMH(ssm_cls=AR1, prior=rprior, data=y, Nx=cfg["nx_pmmh"], niter=cfg["n_iter"], theta0=theta0)
        t0 = time.perf_counter(); alg.run(); dt = time.perf_counter() - t0
        rows.append([dt, alg.chain.theta["rho"].tolist()])
    out["particles PMMH"] = rows
    rows = []
    for r in range(cfg["R"]):
        fk = ss.SMC2(ssm_cls=AR1, prior=rprior, data=y, init_Nx=cfg["nx_smc2"], ar_to_increase_Nx=0.1, wastefree=False)
        np.random.seed(r)
        alg = particles.SMC(fk=fk, N=cfg["n_theta"], verbose=False)
        t0 = time.perf_counter(); alg.run(); dt = time.perf_counter() - t0
        rows.append([dt, float(alg.logLt), float(alg.W @ alg.X.theta["rho"])])
    out["particles SMC^2"] = rows
except Exception as exc:
    out["particles"] = repr(exc)
try:
    import jax, jax.numpy as jnp, blackjax
    from blackjax.smc import resampling
    jax.config.update("jax_enable_x64", True)
    ys, ci = jnp.array(y_s), jnp.array(chol_inv)
    def loglik(x):
        z = (x - ys) @ ci.T
        return log_norm - 0.5 * jnp.sum(z * z)
    def logprior(x):
        return -0.5 * jnp.sum(x * x) - 0.5 * D * math.log(2 * math.pi)
    # blackjax shares a parameter among particles when its leading axis has length 1
    params = dict(step_size=jnp.array([0.1]), inverse_mass_matrix=jnp.eye(D)[None] * 0.05,
                  num_integration_steps=jnp.array([5]))
    smc = blackjax.adaptive_tempered_smc(logprior, loglik, blackjax.hmc.build_kernel(), blackjax.hmc.init, params,
                                          resampling.systematic, 0.5, num_mcmc_steps=2)
    def run(key, x0):
        state = smc.init(x0)
        def cond(c): return c[1].tempering_param < 1
        def body(c):
            k, s, z = c
            k, sub = jax.random.split(k)
            s, info = smc.step(sub, s)
            return k, s, z + info.log_likelihood_increment
        _, s, z = jax.lax.while_loop(cond, body, (key, state, 0.0))
        return z, jnp.sum(s.weights[:, None] * s.particles, axis=0)
    run = jax.jit(run)
    n = cfg["n_static"]
    key = jax.random.PRNGKey(0)
    z, m = run(key, jax.random.normal(key, (n, D)))  # compile
    rows = []
    for r in range(cfg["R"]):
        k0, k1 = jax.random.split(jax.random.PRNGKey(100 + r))
        x0 = jax.random.normal(k0, (n, D))
        t0 = time.perf_counter(); z, m = run(k1, x0); z.block_until_ready(); dt = time.perf_counter() - t0
        rows.append([dt, float(z), np.asarray(m).tolist()])
    out["blackjax tempered SMC (HMC)"] = rows
except Exception as exc:
    out["blackjax"] = repr(exc)
print(json.dumps(out))
"""


def effective_size(estimates: np.ndarray, truth: np.ndarray, var: np.ndarray) -> float:
    mse = np.mean((np.atleast_2d(estimates) - truth) ** 2, axis=0)
    return float(np.mean(var / np.maximum(mse, 1e-300)))


def geyer_ess(chain: np.ndarray) -> float:
    from smckit.inference import effective_sample_size

    return float(effective_sample_size(chain[None, :, None])[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other-python", help="interpreter with particles and blackjax")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--markdown", help="write the tables here")
    args = parser.parse_args()
    R = 3 if args.quick else 10
    n_static = 1000 if args.quick else 2000
    n_iter = 300 if args.quick else 2000
    T = 50 if args.quick else 100
    n_theta = 300 if args.quick else 500
    cfg = {
        "R": R,
        "R_pmmh": 1,
        "n_static": n_static,
        "n_iter": n_iter,
        "nx_pmmh": 100,
        "n_theta": n_theta,
        "nx_smc2": 50,
        "SX": SX,
        "SY": SY,
        "S0": S0,
    }
    problem = static_problem()
    y = ar1_data(T)
    grid = kalman_grid(y)
    cfg |= {"y_static": problem["y"].tolist(), "sigma": problem["sigma"].tolist(), "y_ssm": y.tolist()}
    rows: list[tuple[str, str, float, float, float, float]] = []

    def static_row(name: str, runs: list[tuple[float, float, Any]]) -> None:
        times = np.array([r[0] for r in runs])
        err = np.array([r[1] for r in runs]) - problem["log_z"]
        ess = effective_size(np.array([r[2] for r in runs]), problem["mean"], problem["var"])
        t = float(np.median(times))
        rows.append(("static", name, t, float(np.mean(err)), float(np.std(err)), t * 1000 / ess))

    for method in ("waste-free RW", "HMC"):
        smckit_static(problem, method, n_static, 999)  # warm-up
        static_row(f"smckit tempering, {method}", [smckit_static(problem, method, n_static, s) for s in range(R)])
    t, chain = smckit_pmmh(y, n_iter, 100, 1)
    ess = geyer_ess(chain[n_iter // 10 :])
    rows.append(
        ("ssm", "smckit PMMH", t, float(chain[n_iter // 10 :].mean() - grid["mean"]), float("nan"), t * 1000 / ess)
    )
    runs = [smckit_smc2(y, n_theta, 50, s) for s in range(R)]
    err = np.array([r[1] for r in runs]) - grid["log_z"]
    ess = effective_size(np.array([[r[2]] for r in runs]), np.array([grid["mean"]]), np.array([grid["var"]]))
    t = float(np.median([r[0] for r in runs]))
    rows.append(("ssm", "smckit SMC^2", t, float(err.mean()), float(err.std()), t * 1000 / ess))

    other: dict[str, Any] = {}
    if args.other_python:
        proc = subprocess.run([args.other_python, "-c", OTHER_SCRIPT, json.dumps(cfg)], capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
        else:
            other = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, runs in other.items():
        if isinstance(runs, str):
            print(f"{name}: not available ({runs})")
        elif name == "particles PMMH":
            t, chain = runs[0][0], np.array(runs[0][1])
            ess = geyer_ess(chain[n_iter // 10 :])
            rows.append(
                ("ssm", name, t, float(chain[n_iter // 10 :].mean() - grid["mean"]), float("nan"), t * 1000 / ess)
            )
        elif name == "particles SMC^2":
            err = np.array([r[1] for r in runs]) - grid["log_z"]
            ess = effective_size(np.array([[r[2]] for r in runs]), np.array([grid["mean"]]), np.array([grid["var"]]))
            t = float(np.median([r[0] for r in runs]))
            rows.append(("ssm", name, t, float(err.mean()), float(err.std()), t * 1000 / ess))
        else:
            static_row(name, [(r[0], r[1], np.array(r[2])) for r in runs])

    lines = [
        f"R = {R} runs per method; static: d = {D}, n = {n_static}; ssm: T = {T}, PMMH {n_iter} iterations with "
        f"100 particles (error column: posterior mean minus the grid's), SMC^2 {n_theta} theta-particles, n_x from 50. "
        f"Machine: {platform.processor() or platform.machine()}, python {platform.python_version()}.",
        "",
        "| problem | method | time per run (s) | log-evidence error (mean) | (sd) | time to ESS 1000 (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for problem_name, name, t, mean_err, sd_err, t_ess in rows:
        lines.append(f"| {problem_name} | {name} | {t:.3g} | {mean_err:+.3g} | {sd_err:.3g} | {t_ess:.3g} |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")


if __name__ == "__main__":
    main()
