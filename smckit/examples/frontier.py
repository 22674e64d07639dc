"""Reward-diversity-fidelity frontiers of steering methods at an equal number of denoiser calls.

A single (reward, diversity) point cannot say which scheme is better: under selection, diversity falls as the
selection strength rises, for every scheme. A frontier sweeps each method's strength and draws the curve. For each
method of :data:`METHODS` and each strength of its sweep, :func:`run_frontier` runs ``seeds`` independent runs of
``groups`` populations of ``particles`` particles over ``steps`` sampler steps (so ``groups * particles * steps``
denoiser calls, matched by every method), keeps ``keep`` samples per group, and measures them:

- **reward**: mean reward of the returned samples;
- **lineages**: distinct step-0 ancestors among a group's returned samples (``keep`` at most);
- **diversity**: mean pairwise distance between a group's returned samples (``i != j``; duplicates count 0), in
  the sample space of the Gaussian mixture, in the classifier's feature space for digits;
- **fidelity**: on the Gaussian mixture, the total variation between the component masses of all returned samples
  of a run and the exact masses of the tilted target ``p(x0) exp(lam r(x0))`` (``tv``); on digits, the feature
  FID against held-out real digits of the class (``fid``, from the split the networks were not trained on) and
  the classifier's share of the class (``accuracy``).

Per-group metrics have ``seeds * groups`` independent replicates (each group is its own population with its own
random stream), per-run metrics (``tv``, ``fid``) have ``seeds``; each row reports means and standard errors
``sd / sqrt(replicates)`` (``nan`` with one replicate).

Returned samples, the same protocol for every method: ``keep`` systematic draws from the method's final weighted
set: the SMC particles and their weights; best-of-N's ``particles / top`` highest-reward particles, equally
weighted; the value-based baseline's particles, equally weighted.

The methods (sweep in brackets; ``lam`` is the tilt, and the fidelity is measured against the ``lam`` target, or
against ``lam = 1`` for methods swept otherwise):

- ``multinomial``, ``systematic`` SMC [lam]; ``fleming-viot``, its unbiased default, and ``fleming-viot-noise``,
  with rebirth noise 0.3 [lam] (plugin smckit-fvd);
- ``fleming-viot-absorption``: a target death fraction with the Robbins-Monro controller, which changes the
  target; ``fleming-viot-keep-target``: the same solved exactly per step with ``keep_target``, which does not
  [absorption target, at lam = 1];
- ``vasr``: the look-ahead ``W exp(lam r(x0_hat))`` resampled systematically, exact; ``vasr-max``: the same
  without the payback, biased by design, resampling at every step [lam] (plugin smckit-vasr;
  :mod:`smckit.diffusion.lookahead`);
- ``best-of-n``: the plain sampler, then the top ``particles / top`` by reward [top];
- ``value-based``: soft value-based decoding with ``candidates`` moves per particle and fewer particles, so that
  the denoiser calls match [lam] (:mod:`smckit.diffusion.value`).

Tasks: :class:`MixtureTask` (the analytic Gaussian mixture of :mod:`smckit.diffusion.gmm`, exact targets) and
:class:`DigitsTask` (the bundled 8x8 digits DDPM and its classifier).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import smckit
from smckit.backend import to_host
from smckit.errors import InvalidArgumentError, UnknownPluginError
from smckit.random import RNG

__all__ = [
    "METHODS",
    "SWEEPS",
    "DigitsTask",
    "Method",
    "MixtureTask",
    "Returned",
    "finding",
    "matched_particles",
    "plot_frontier",
    "run_frontier",
    "sample",
]


@dataclass(frozen=True)
class Method:
    """One steering method of the frontier.

    Attributes
    ----------
    name, label : str
        Key and display name.
    sweep : {"lam", "absorption", "top"}
        What its strength is: the tilt, a Fleming-Viot target death fraction, or best-of-N's ``particles / keep``.
    resampler : str or None
        The registered scheme of an SMC method.
    options : dict
        Keyword arguments of the scheme (``absorption`` is filled in from the strength).
    wrap : {None, "lookahead", "vasr-max", "value", "best-of-n"}
        How the steering model is used.
    """

    name: str
    label: str
    sweep: str
    resampler: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    wrap: str | None = None


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("multinomial", "multinomial SMC (FK steering)", "lam", "multinomial"),
        Method("systematic", "systematic SMC", "lam", "systematic"),
        Method("fleming-viot", "Fleming-Viot", "lam", "fleming-viot"),
        Method("fleming-viot-noise", "Fleming-Viot, rebirth noise 0.3", "lam", "fleming-viot", {"rebirth_noise": 0.3}),
        Method("fleming-viot-absorption", "Fleming-Viot, absorption target", "absorption", "fleming-viot"),
        Method(
            "fleming-viot-keep-target",
            "Fleming-Viot, absorption + keep_target",
            "absorption",
            "fleming-viot",
            {"controller": "exact", "keep_target": True},
        ),
        Method("vasr", "VASR", "lam", "vasr", wrap="lookahead"),
        Method("vasr-max", "VASR-Max (biased)", "lam", "vasr", wrap="vasr-max"),
        Method("best-of-n", "best-of-N", "top", wrap="best-of-n"),
        Method("value-based", "value-based (SVDD)", "lam", wrap="value"),
    )
}
"""The frontier's methods, by name."""

SWEEPS: dict[str, tuple[float, ...]] = {
    "lam": (0.5, 1.0, 2.0, 4.0),
    "absorption": (0.05, 0.1, 0.2, 0.4),
    "top": (2.0, 4.0, 8.0, 16.0),
}
"""The default strengths of each kind of sweep."""


# -- tasks ----------------------------------------------------------------------------------------------------
class MixtureTask:
    """The analytic 2-D Gaussian mixture of ``benchmarks/bench_fvd.py`` under the reward ``r(x) = <(1, 0.5), x>``.

    Parameters
    ----------
    reference_draws : int
        Exact draws of the tilted target for the reference points (:meth:`reference`).
    """

    name = "mixture"
    pooled = ("tv",)
    per_group = ("reward", "lineages", "diversity")

    def __init__(self, reference_draws: int = 4000):
        import torch

        from smckit.diffusion import GaussianMixture

        self.dtype = torch.float64
        self.gmm = GaussianMixture(
            [0.4, 0.3, 0.2, 0.1], [[-2.0, -2.0], [2.0, -2.0], [-2.0, 2.0], [2.0, 2.0]], 0.3, dtype=self.dtype
        )
        self.direction = torch.tensor([1.0, 0.5], dtype=self.dtype)
        self.reference_draws = reference_draws
        self.event_shape = (2,)

    def steering(self, lam: float, groups: int, steps: int, *, reward: bool = True) -> Any:
        """A :class:`~smckit.diffusion.RewardSteering` of ``groups`` populations with ``steps`` DDPM steps.

        Parameters
        ----------
        lam : float
        groups, steps : int
        reward : bool
            Whether the model evaluates the reward (best-of-N's sampler does not).

        Returns
        -------
        RewardSteering
        """
        from smckit.diffusion import NoiseSchedule, RewardSteering
        from smckit.diffusion.gmm import linear_reward

        schedule = NoiseSchedule.linear(num_steps=steps)
        return RewardSteering(
            self.gmm.denoiser(schedule),
            schedule,
            linear_reward(self.direction) if reward else None,
            lam=lam if reward else 0.0,
            event_shape=self.event_shape,
            groups=groups,
            dtype=self.dtype,
        )

    def reward(self, x: Any) -> Any:
        """``r(x)`` of samples of shape (G, K, 2), shape (G, K)."""
        return x @ self.direction

    def measure(self, x: Any, lam: float) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Per-group reward and diversity (shape (G,) each), and the run's total variation to the ``lam`` target.

        Parameters
        ----------
        x : tensor, shape (G, K, 2)
        lam : float

        Returns
        -------
        (dict, dict)
        """
        target = self.gmm.tilted(self.direction, lam)
        masses = target.component_masses(x.reshape(-1, 2))
        tv = 0.5 * float((masses - target.weights).abs().sum())
        per_group = {"reward": to_host(self.reward(x).mean(-1), np.float64), "diversity": _pairwise(x)}
        return per_group, {"tv": tv}

    def reference(self, lam: float) -> dict[str, float]:
        """Reward and diversity of exact draws of the ``lam`` target (``tv`` 0): the point every curve aims at.

        Parameters
        ----------
        lam : float

        Returns
        -------
        dict
        """
        x = self.gmm.tilted(self.direction, lam).sample((1, self.reference_draws), RNG(12345))
        return {"reward": float(self.reward(x).mean()), "diversity": float(_pairwise(x[:, :500])[0]), "tv": 0.0}


class DigitsTask:
    """The bundled 8x8 digits DDPM steered to one class per group by ``r = log p(c | x0)``.

    Parameters
    ----------
    classes : sequence of int
        The class of each group (G = its length; the frontier's ``groups`` must equal it).
    device : str, optional
    bundle : DigitsBundle, optional
        Already loaded networks (default: :func:`~smckit.examples.digits.load_digits_model`).
    """

    name = "digits"
    pooled = ("fid",)
    per_group = ("reward", "accuracy", "lineages", "diversity")

    def __init__(self, classes: Sequence[int], device: Any = "cpu", bundle: Any = None):
        import torch

        from smckit.examples.digits import IMAGE_SHAPE, class_reward, load_digits_model, real_digits

        self.classes = [int(c) for c in classes]
        self.device = torch.device(device)
        self.bundle = bundle if bundle is not None else load_digits_model(device=self.device)
        self.classifier = self.bundle.classifier
        self.dtype = next(self.classifier.parameters()).dtype
        self.targets = torch.as_tensor(self.classes, dtype=torch.int64, device=self.device)
        self.class_reward = class_reward(self.classifier)
        self.event_shape = IMAGE_SHAPE
        with torch.no_grad():
            self.held_out = {
                c: to_host(self.classifier.features(real_digits(c, split="test", device=self.device)[0]), np.float64)
                for c in sorted(set(self.classes))
            }

    def steering(self, lam: float, groups: int, steps: int, *, reward: bool = True) -> Any:
        """A :class:`~smckit.diffusion.RewardSteering` of the groups' classes (``x0_hat`` clipped, DDPM).

        Parameters
        ----------
        lam : float
        groups, steps : int
            ``groups`` must be the number of classes given.
        reward : bool

        Returns
        -------
        RewardSteering
        """
        from smckit.diffusion import Denoiser, RewardSteering

        if groups != len(self.classes):
            raise InvalidArgumentError(f"DigitsTask has {len(self.classes)} classes (groups), got groups={groups}")
        return RewardSteering(
            Denoiser(self.bundle.denoiser, "epsilon", clip_sample=True),
            self.bundle.schedule.with_steps(steps, spacing="leading"),
            self.class_reward if reward else None,
            event_shape=self.event_shape,
            lam=lam if reward else 0.0,
            reward_conditioning={"target": self.targets} if reward else None,
            groups=groups,
            dtype=self.dtype,
            device=self.device,
        )

    def reward(self, x: Any) -> Any:
        """``log p(c | x)`` of samples of shape (G, K, 1, 8, 8), shape (G, K)."""
        import torch

        with torch.no_grad():
            return self.class_reward(x, self.targets[:, None])

    def measure(self, x: Any, lam: float) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Per-group reward, accuracy and feature diversity, and the run's FID (mean over the classes).

        Parameters
        ----------
        x : tensor, shape (G, K, 1, 8, 8)
        lam : float
            Not used (the reference is the class's real digits).

        Returns
        -------
        (dict, dict)
        """
        import torch

        from smckit.examples.digits import fid

        with torch.no_grad():
            logits = self.classifier(x)
            features = self.classifier.features(x)
        reward = torch.log_softmax(logits, -1).gather(-1, self.targets[:, None, None].expand(*x.shape[:2], 1))
        accuracy = (logits.argmax(-1) == self.targets[:, None]).to(torch.float64).mean(-1)
        feats = to_host(features, np.float64)
        labels = np.asarray(self.classes)
        fids = [fid(feats[labels == c].reshape(-1, feats.shape[-1]), ref) for c, ref in self.held_out.items()]
        per_group = {
            "reward": to_host(reward.squeeze(-1).mean(-1), np.float64),
            "accuracy": to_host(accuracy, np.float64),
            "diversity": _pairwise(features),
        }
        return per_group, {"fid": float(np.mean(fids))}

    def reference(self, lam: float) -> dict[str, float] | None:
        """None: the digits task has no exact target to mark."""
        return None


def _pairwise(x: Any) -> np.ndarray:
    """Mean distance between distinct samples of each group: x of shape (G, K, ...) -> (G,) (0 when K = 1)."""
    import torch

    flat = x.reshape(x.shape[0], x.shape[1], -1).to(torch.float64)
    k = flat.shape[1]
    if k < 2:
        return np.zeros(flat.shape[0])
    distances = torch.cdist(flat, flat)
    return to_host(distances.sum((-1, -2)) / (k * (k - 1)), np.float64)


# -- one run ------------------------------------------------------------------------------------------------
@dataclass
class Returned:
    """One run's returned samples and costs.

    Attributes
    ----------
    x : tensor, shape (G, K, *event)
    roots : ndarray of int, shape (G, K)
        Step-0 ancestor of each returned sample.
    wall_s : float
        Model set-up, sampling and the draw of the returned samples.
    denoiser_calls : int
    lam : float
        The tilt whose target the fidelity is measured against.
    """

    x: Any
    roots: np.ndarray
    wall_s: float
    denoiser_calls: int
    lam: float


def matched_particles(particles: int, steps: int, candidates: int) -> int:
    """Particles of the value-based baseline that spend (about) the denoiser calls of ``particles`` SMC particles.

    SMC spends ``particles * steps`` per group; the baseline ``n (1 + (steps - 1) candidates)``.

    Parameters
    ----------
    particles, steps, candidates : int

    Returns
    -------
    int
        At least 1.
    """
    return max(1, round(particles * steps / (1 + (steps - 1) * candidates)))


def sample(
    task: Any,
    method: Method,
    strength: float,
    *,
    particles: int,
    groups: int,
    steps: int,
    keep: int,
    seed: int,
    policy: str = "always",
    candidates: int = 4,
) -> Returned:
    """Run one method at one strength and return ``keep`` samples per group (see the module notes).

    Parameters
    ----------
    task : MixtureTask or DigitsTask
    method : Method
    strength : float
        The value of the method's sweep.
    particles, groups, steps, keep, seed : int
    policy : {"always", "ess"}
        When the SMC methods resample (VASR-Max always resamples at every step).
    candidates : int
        M of the value-based baseline.

    Returns
    -------
    Returned

    Raises
    ------
    UnknownPluginError
        When the method's scheme is not registered (its plugin is missing).
    """
    import torch

    from smckit.plugins import make_resampler

    lam = float(strength) if method.sweep == "lam" else 1.0
    resampler = None
    if method.resampler is not None:
        options = dict(method.options)
        if method.sweep == "absorption":
            options["absorption"] = float(strength)
        resampler = make_resampler(method.resampler, **options)
    select_rng = RNG(np.random.SeedSequence([seed, 7]))
    start = time.perf_counter()
    n = particles
    if method.wrap == "best-of-n":
        model: Any = task.steering(0.0, groups, steps, reward=False)
        run_policy: smckit.Policy = smckit.Never()
    else:
        model = task.steering(lam, groups, steps)
        run_policy = smckit.Always() if policy == "always" or method.wrap == "vasr-max" else smckit.ESSBelow(0.5)
    if method.wrap in ("lookahead", "vasr-max"):
        from smckit.diffusion.lookahead import RewardLookahead

        model = RewardLookahead(model)
        if method.wrap == "vasr-max":
            from smckit_vasr import VASRMax

            model = VASRMax(model)
    elif method.wrap == "value":
        from smckit.diffusion.value import SoftValueDecoding

        model = SoftValueDecoding(model, candidates)
        n = matched_particles(particles, steps, candidates)
        run_policy = smckit.Never()
    result = smckit.run(model, n, resampler=resampler or "systematic", policy=run_policy, seed=seed)
    x = result.particles["x"]
    with torch.no_grad():
        if method.wrap == "best-of-n":
            top = max(1, round(particles / float(strength)))
            chosen = torch.topk(task.reward(x), top, dim=1).indices  # (G, top)
            log_w = torch.zeros(chosen.shape, dtype=torch.float64, device=x.device)
            roots = torch.arange(x.shape[1], device=x.device)  # no resampling: every particle is its own root
        else:
            chosen = None
            log_w = result.log_weights
            roots = (
                torch.as_tensor(result.history.roots()[-1], device=x.device)
                if result.history.ancestors is not None
                else torch.arange(x.shape[1], device=x.device)
            )
        pick = make_resampler("systematic")(log_w, select_rng, n_out=keep).ancestors.to(torch.int64)
        if chosen is not None:
            pick = torch.take_along_dim(chosen, pick, dim=1)
        event = (1,) * (x.ndim - 2)
        out = torch.take_along_dim(x, pick.reshape(*pick.shape, *event), dim=1)
        roots = torch.take_along_dim(torch.as_tensor(roots, device=x.device).expand(x.shape[:2]), pick, dim=1)
    wall = time.perf_counter() - start
    return Returned(out, to_host(roots), wall, int(model.denoiser_calls), lam)


# -- the frontier ---------------------------------------------------------------------------------------------
def run_frontier(
    task: Any,
    methods: Sequence[str],
    *,
    particles: int,
    groups: int,
    steps: int,
    keep: int,
    seeds: Sequence[int],
    sweeps: Mapping[str, Sequence[float]] | None = None,
    policy: str = "always",
    candidates: int = 4,
    warm_up: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every method at every strength of its sweep, over ``seeds``: one row per (method, strength).

    Parameters
    ----------
    task : MixtureTask or DigitsTask
    methods : sequence of str
        Names of :data:`METHODS`.
    particles, groups, steps, keep : int
    seeds : sequence of int
    sweeps : dict, optional
        Strengths per kind of sweep (default :data:`SWEEPS`).
    policy : {"always", "ess"}
    candidates : int
        M of the value-based baseline.
    warm_up : bool
        Run every method once, untimed, on two steps first (numba compilation and torch's first calls are then
        charged to no row).
    progress : callable, optional
        Called with a short message after each (method, strength).

    Returns
    -------
    rows : list of dict
        ``method``, ``label``, ``sweep``, ``strength``, ``lam``, ``runs``, ``denoiser_calls``, and for each metric
        its mean and ``<metric>_se``; ``wall_s`` and ``wall_s_se`` per run.
    skipped : list of str
        Methods whose plugin is missing.

    Raises
    ------
    InvalidArgumentError
        For an unknown method name or no seeds.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InvalidArgumentError(f"unknown frontier method(s) {unknown}; choose from {', '.join(METHODS)}")
    if not seeds:
        raise InvalidArgumentError("run_frontier needs at least one seed")
    sweeps = {**SWEEPS, **(sweeps or {})}
    settings: dict[str, Any] = dict(particles=particles, groups=groups, keep=keep, policy=policy, candidates=candidates)
    skipped: list[str] = []
    available = []
    for name in methods:
        try:
            if warm_up:
                sample(task, METHODS[name], sweeps[METHODS[name].sweep][0], steps=min(steps, 2), seed=0, **settings)
            elif (scheme := METHODS[name].resampler) is not None:
                from smckit.plugins import make_resampler

                make_resampler(scheme)
            if METHODS[name].wrap == "vasr-max":
                import smckit_vasr  # noqa: F401
        except (UnknownPluginError, ImportError):
            skipped.append(name)
            continue
        available.append(name)
    rows = []
    for name in available:
        method = METHODS[name]
        for strength in sweeps[method.sweep]:
            per_group: dict[str, list[np.ndarray]] = {}
            pooled: dict[str, list[float]] = {}
            walls, calls = [], 0
            for seed in seeds:
                out = sample(task, method, strength, steps=steps, seed=seed, **settings)
                group_metrics, run_metrics = task.measure(out.x, out.lam)
                group_metrics["lineages"] = np.array([len(np.unique(r)) for r in out.roots], dtype=np.float64)
                for key, value in group_metrics.items():
                    per_group.setdefault(key, []).append(value)
                for key, value in run_metrics.items():
                    pooled.setdefault(key, []).append(value)
                walls.append(out.wall_s)
                calls = out.denoiser_calls
            row: dict[str, Any] = {
                "method": name,
                "label": method.label,
                "sweep": method.sweep,
                "strength": float(strength),
                "lam": out.lam,
                "runs": len(seeds),
                "denoiser_calls": calls,
            }
            replicates: dict[str, list[Any]] = {**per_group, **pooled, "wall_s": walls}
            for key, values in replicates.items():
                flat = np.concatenate([np.atleast_1d(v) for v in values]).astype(np.float64)
                row[key] = float(flat.mean())
                row[key + "_se"] = float(flat.std(ddof=1) / math.sqrt(flat.size)) if flat.size > 1 else float("nan")
            rows.append(row)
            if progress is not None:
                progress(f"{name} {method.sweep}={strength:g}")
    return rows, skipped


# -- reading the frontier ---------------------------------------------------------------------------------------
def plot_frontier(
    rows: Sequence[dict[str, Any]],
    path: Any,
    *,
    fidelity: str,
    title: str = "",
    references: dict[float, dict[str, float]] | None = None,
    deficit: bool = False,
) -> Any:
    """A PNG with two panels: reward against diversity, and reward against fidelity; one curve per method.

    Parameters
    ----------
    rows : sequence of dict
        From :func:`run_frontier`.
    path : str or Path
    fidelity : str
        The fidelity metric of the second panel (``"tv"`` or ``"fid"``; lower is better).
    title : str
    references : dict, optional
        ``{lam: {"reward", "diversity", fidelity}}``: exact-target points, drawn as black crosses.
    deficit : bool
        Plot ``-reward`` on a log scale (for rewards <= 0 such as ``log p(c | x0)``, whose interesting range spans
        decades), and the fidelity on a log scale.

    Returns
    -------
    Path
    """
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    names = list(dict.fromkeys(row["method"] for row in rows))
    cmap = plt.get_cmap("tab10")
    for i, name in enumerate(names):
        mine = [row for row in rows if row["method"] == name]
        style = {"color": cmap(i % 10), "marker": "os^vDP*XhH"[i % 10], "ms": 4, "lw": 1.2, "capsize": 2}
        for ax, metric in zip(axes, ("diversity", fidelity)):
            ax.errorbar(
                [-r["reward"] if deficit else r["reward"] for r in mine],
                [r[metric] for r in mine],
                xerr=[_finite(r["reward_se"]) for r in mine],
                yerr=[_finite(r[metric + "_se"]) for r in mine],
                label=mine[0]["label"],
                **style,
            )
    if references:
        for ax, metric in zip(axes, ("diversity", fidelity)):
            points = [(ref["reward"], ref[metric]) for ref in references.values() if metric in ref]
            if points:
                ax.plot(*zip(*points), "kx", ms=7, label="exact target (per lam)")
    axes[0].set_ylabel("diversity (mean pairwise distance)")
    axes[1].set_ylabel(f"{fidelity} (lower is better)")
    for ax in axes:
        ax.set_xlabel("-mean reward (log scale; left is better)" if deficit else "mean reward")
        ax.grid(alpha=0.3)
        if deficit:
            ax.set_xscale("log")
    if deficit:
        axes[1].set_yscale("log")
    axes[1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def finding(rows: Sequence[dict[str, Any]], *, lam: float = 1.0) -> str:
    """One honest sentence on the frontier at ``lam``: Fleming-Viot against systematic SMC, and who leads.

    Fleming-Viot and systematic differ "clearly" on a metric when their means differ by more than twice the
    standard error of the difference; otherwise the sentence says they are within the noise.

    Parameters
    ----------
    rows : sequence of dict
        From :func:`run_frontier`.
    lam : float

    Returns
    -------
    str
    """
    at = {row["method"]: row for row in rows if row["sweep"] == "lam" and row["strength"] == lam}
    if not at:
        return f"No method ran at lam = {lam:g}."
    best_reward = max(at.values(), key=lambda r: r["reward"])
    most_diverse = max(at.values(), key=lambda r: r["diversity"])
    lead = (
        f"at lam = {lam:g} and equal denoiser calls, {best_reward['label']} reaches the highest reward "
        f"({best_reward['reward']:.3g}) and {most_diverse['label']} the most diverse samples "
        f"({most_diverse['diversity']:.3g})"
    )
    fv, sy = at.get("fleming-viot"), at.get("systematic")
    if fv is None or sy is None:
        return lead[0].upper() + lead[1:] + "."
    verdicts = []
    for metric in ("reward", "diversity"):
        gap = fv[metric] - sy[metric]
        se = math.sqrt(_finite(fv[metric + "_se"]) ** 2 + _finite(sy[metric + "_se"]) ** 2)
        if se > 0 and abs(gap) <= 2 * se:
            verdicts.append(f"{metric} within the noise of systematic's ({gap:+.2g} ± {se:.2g})")
        else:
            verdicts.append(f"{'more' if gap > 0 else 'less'} {metric} than systematic ({gap:+.2g} ± {se:.2g})")
    return f"{lead[0].upper() + lead[1:]}; Fleming-Viot has {' and '.join(verdicts)}."
