"""One method of the digits steering comparison, at an equal number of denoiser calls, and its summary.

The target is ``p(x0) p(y = c | x0)^lam``: the digits DDPM's law tilted by the bundled classifier's probability of
class ``c`` (``lam = 1`` is the class-conditional law ``p(x0 | c)`` when the classifier is calibrated). Every method
runs ``groups`` independent populations of ``particles`` particles through ``steps`` DDPM steps, one denoiser call
per particle and step, so each spends ``groups * particles * steps`` denoiser calls and returns ``keep`` samples
per group:

- the SMC methods run :class:`~smckit.diffusion.RewardSteering` (DDPM steps with ``x0_hat`` clipped to
  [-1, 1], ``diff`` potential, resampling when the ESS falls below half the particles, or at every step with
  policy ``always``) with the named resampler (Fleming-Viot with rebirth noise ``fv_noise``, in its unbiased
  default mode and, as in the FVD paper, with a target death fraction ``fv_absorption`` whose unused weight is
  carried forward so that the target does not change); the returned samples are ``keep`` draws, by systematic
  resampling, from each group's final weighted particles (an equally weighted sample of the SMC approximation of
  the target);
- best-of-N runs the same sampler without a reward (``lam = 0``: no weights, no resampling) and returns the
  ``keep`` particles of highest reward in each group (top-``keep`` of ``particles``; ``keep = 1`` is the usual
  best-of-N). Its reward is evaluated once, on the final samples.

:func:`summarise` turns a method's samples into a table row: mean reward ``log p(c | x0)``; the share the
classifier assigns to class ``c`` (the reward's own classifier, so this measures steering, not an independent
judge); the Fréchet distance between the returned samples and scikit-learn's real digits of class ``c`` in the
classifier's penultimate-layer feature space (lower is better; biased upward at small sample sizes, so compare
rows only at equal sizes); distinct lineages (step-0 ancestors among each group's final particles, averaged over
groups: ``particles`` means no collapse); wall time; denoiser calls (per-sample network evaluations).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import smckit
from smckit.backend import to_host
from smckit.errors import InvalidArgumentError, UnknownPluginError
from smckit.model import FeynmanKac
from smckit.random import RNG

__all__ = [
    "LABELS",
    "METHODS",
    "RANGES",
    "MethodResult",
    "Range",
    "Setup",
    "TimedModel",
    "make_resampler",
    "real_features",
    "run_method",
    "summarise",
    "warm_up",
]

METHODS = ("multinomial", "systematic", "fleming-viot", "fleming-viot-absorption", "best-of-n")
"""The methods the demo compares, at an equal number of denoiser calls."""

LABELS = {
    "multinomial": "multinomial SMC (FK steering)",
    "systematic": "systematic SMC",
    "fleming-viot": "Fleming-Viot SMC",
    "fleming-viot-absorption": "Fleming-Viot SMC, absorption target",
    "best-of-n": "best-of-N",
}
"""The table's name of each method."""


# -- valid settings -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    """The valid values of one numeric setting: integers or finite reals, between optional bounds.

    Attributes
    ----------
    kind : {int, float}
        Integers (bool excluded), or finite real numbers (integers accepted).
    low, high : float or None
        The bounds; None leaves that side open-ended.
    open_low, open_high : bool
        Whether a bound itself is excluded.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def describe(self) -> str:
        """What a valid value is, in words (``"an integer >= 1"``, ``"a number in (0, 1)"``)."""
        noun = "an integer" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            if self.kind is int:
                return f"{noun} in {self.low:g}..{self.high:g}"
            left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
            return f"a number in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{noun} {'>' if self.open_low else '>='} {self.low:g}"
        if self.high is not None:
            return f"{noun} {'<' if self.open_high else '<='} {self.high:g}"
        return noun

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not valid (``"must be an integer >= 1, got 0"``), or None when it is."""
        if self.kind is int:
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)
        if ok and self.low is not None:
            ok = value > self.low if self.open_low else value >= self.low
        if ok and self.high is not None:
            ok = value < self.high if self.open_high else value <= self.high
        return None if ok else f"must be {self.describe()}, got {value!r}"

    def check(self, value: Any, name: str) -> Any:
        """``value`` as ``kind`` when valid.

        Parameters
        ----------
        value : int or float
        name : str
            The setting's name, for the message (``"Setup.steps"``, ``"--steps"``).

        Returns
        -------
        int or float

        Raises
        ------
        InvalidArgumentError
            Naming the setting, the valid values and the value given.
        """
        problem = self.problem(value)
        if problem is not None:
            raise InvalidArgumentError(f"{name} {problem}")
        return self.kind(value)


RANGES: dict[str, Range] = {
    "digit": Range(int, 0, 9),
    "particles": Range(int, 1),
    "keep": Range(int, 1),
    "steps": Range(int, 1),
    "lam": Range(float),
    "ess_threshold": Range(float, 0.0, 1.0, open_low=True),
    "fv_noise": Range(float, 0.0, 1.0),
    "fv_absorption": Range(float, 0.0, 1.0, open_low=True, open_high=True),
    "seed": Range(int, 0),
}
"""The valid values of :class:`Setup`'s numeric fields (``digit``: each entry of ``classes``); the demo's options
are checked against the same ranges."""


@dataclass
class Setup:
    """What every method of one comparison shares.

    Attributes
    ----------
    classes : list of int
        The target class of each group (G groups).
    particles : int
        N, particles per group.
    keep : int
        K, samples returned per group (K <= N).
    steps : int
        S, DDPM sampling steps (denoiser calls per particle).
    lam : float
        Strength of the tilt ``p(x0) p(c | x0)^lam``.
    policy : {"ess", "always"}
        When the SMC rows resample: ESS below ``ess_threshold * N``, or at every step.
    ess_threshold : float
        See ``policy``; in (0, 1].
    fv_noise : float
        Fleming-Viot rebirth noise in [0, 1] (schedule-consistent re-noising of the reborn particles; 0: exact
        clones).
    fv_absorption : float
        Target death fraction in (0, 1) of the ``fleming-viot-absorption`` row (the FVD paper's configuration:
        the selection exponent is solved per step so that this fraction dies; ``keep_target`` carries the unused
        weight, so the target stays the tilted distribution).
    potential : str
        The reward potential of the SMC rows (``diff``, ``max``, ``sum``, ``rt``).
    seed : int
        The same seed drives every method (common random numbers); non-negative.
    device : str
        torch device.

    Raises
    ------
    InvalidArgumentError
        When a field is outside its :data:`RANGES` entry, ``keep > particles`` or ``policy`` is unknown.
    """

    classes: list[int]
    particles: int = 64
    keep: int = 8
    steps: int = 50
    lam: float = 1.0
    policy: str = "ess"
    ess_threshold: float = 0.5
    fv_noise: float = 0.1
    fv_absorption: float = 0.1
    potential: str = "diff"
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        try:
            classes = list(self.classes)
        except TypeError:
            classes = []
        if not classes:
            raise InvalidArgumentError(f"Setup.classes must be a non-empty list of digits 0..9, got {self.classes!r}")
        self.classes = [RANGES["digit"].check(c, "each of Setup.classes") for c in classes]
        for name, rule in RANGES.items():
            if name != "digit":
                setattr(self, name, rule.check(getattr(self, name), f"Setup.{name}"))
        if self.keep > self.particles:
            raise InvalidArgumentError(
                f"Setup.keep must be at most Setup.particles = {self.particles}, got {self.keep}"
            )
        if self.policy not in ("ess", "always"):
            raise InvalidArgumentError(f"Setup.policy must be 'ess' or 'always', got {self.policy!r}")

    @property
    def groups(self) -> int:
        """G, the number of independent populations."""
        return len(self.classes)

    @property
    def denoiser_calls(self) -> int:
        """The budget of every method: G * N * S per-sample denoiser calls."""
        return self.groups * self.particles * self.steps


@dataclass
class MethodResult:
    """The outcome of one method.

    Attributes
    ----------
    method : str
    samples : ndarray, shape (G, K, 8, 8)
        The returned samples, pixels in [-1, 1] (host copy).
    targets : ndarray of int, shape (G,)
    rewards : ndarray, shape (G, K)
        ``log p(c | x0)`` of the returned samples.
    predicted : ndarray of int, shape (G, K)
        The classifier's class of each returned sample.
    features : ndarray, shape (G, K, d)
        Penultimate-layer features of the returned samples.
    lineages : ndarray, shape (G,)
        Distinct step-0 ancestors among each group's N final particles.
    resamplings : float
        Resampling steps per group (mean).
    wall_s : float
        Wall time of the whole method (model set-up, sampling, selection).
    model_s : float
        Of which in the model: denoiser, reward, reverse moves.
    denoiser_calls : int
    note : str
    extra : dict
        ``loop_s``: wall time of the SMC loop alone; ``loop_s - model_s`` is the SMC bookkeeping (resampling,
        rebirth, weights, ESS, history).
    """

    method: str
    samples: np.ndarray
    targets: np.ndarray
    rewards: np.ndarray
    predicted: np.ndarray
    features: np.ndarray
    lineages: np.ndarray
    resamplings: float
    wall_s: float
    model_s: float
    denoiser_calls: int
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class TimedModel(FeynmanKac):
    """A Feynman-Kac model that times the calls into another one (to separate model time from SMC bookkeeping).

    ``model_seconds`` accumulates the wall time of ``initial``, ``propose`` and ``log_potential``; ``rebirth``
    (the Fleming-Viot re-noising) counts as bookkeeping. On CUDA each timed call synchronises the device first
    and last, so the split is meaningful (at the price of those synchronisations).
    """

    def __init__(self, inner: FeynmanKac, *, synchronize: Any = None):
        self.inner = inner
        self.num_steps = inner.num_steps
        self.default_policy = inner.default_policy
        self.model_seconds = 0.0
        self._sync = synchronize or (lambda: None)

    def _timed(self, fn: Any, *args: Any) -> Any:
        self._sync()
        start = time.perf_counter()
        out = fn(*args)
        self._sync()
        self.model_seconds += time.perf_counter() - start
        return out

    def initial(self, n: int, rng: RNG) -> Any:
        return self._timed(self.inner.initial, n, rng)

    def propose(self, t: int, state: Any, rng: RNG) -> Any:
        return self._timed(self.inner.propose, t, state, rng)

    def log_potential(self, t: int, prev: Any, state: Any) -> Any:
        return self._timed(self.inner.log_potential, t, prev, state)

    def done(self, t: int, state: Any) -> bool:
        return self.inner.done(t, state)

    def rebirth(self, t: int, state: Any, mask: Any, scale: float, rng: RNG) -> Any:
        return self.inner.rebirth(t, state, mask, scale, rng)  # type: ignore[attr-defined]


# -- running one method -------------------------------------------------------------------------------------
def _synchronizer(device: Any) -> Any:
    import torch

    if torch.device(device).type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


def make_resampler(method: str, setup: Setup) -> Any:
    """The resampler of an SMC row (``fleming-viot`` needs the smckit-fvd plugin).

    Parameters
    ----------
    method : str
        A method of :data:`METHODS` other than ``best-of-n``, or any registered resampler name.
    setup : Setup
        Supplies the Fleming-Viot options.

    Returns
    -------
    Resampler

    Raises
    ------
    UnknownPluginError
        When the scheme is not registered (e.g. the plugin is not installed).
    """
    from smckit.plugins import make_resampler as registry_make

    if method == "fleming-viot":
        return registry_make("fleming-viot", rebirth_noise=setup.fv_noise)
    if method == "fleming-viot-absorption":
        return registry_make(
            "fleming-viot",
            absorption=setup.fv_absorption,
            controller="exact",
            keep_target=True,
            rebirth_noise=setup.fv_noise,
        )
    return registry_make(method)


def run_method(bundle: Any, setup: Setup, method: str, *, bar: Any = None) -> MethodResult:
    """Run one method of the comparison.

    Parameters
    ----------
    bundle : DigitsBundle
        ``(denoiser, schedule, classifier)`` from :func:`~smckit.examples.digits.load_digits_model`, on
        ``setup.device``.
    setup : Setup
    method : {"multinomial", "systematic", "fleming-viot", "fleming-viot-absorption", "best-of-n"}
        Or any other registered resampler name (run as an SMC row).
    bar : tqdm, optional
        Advanced by one per SMC step.

    Returns
    -------
    MethodResult
        ``wall_s`` times the model set-up, the loop and the selection of the returned samples; run
        :func:`warm_up` first so that one-off costs (numba compilation, first torch calls) are not in it.

    Raises
    ------
    UnknownPluginError
        For an SMC row whose resampler is not registered.
    """
    import torch

    from smckit.diffusion import Denoiser, RewardSteering
    from smckit.examples.digits import IMAGE_SHAPE, class_reward

    denoiser, schedule, classifier = bundle
    device = torch.device(setup.device)
    dtype = next(classifier.parameters()).dtype
    sync = _synchronizer(device)
    targets = torch.as_tensor(setup.classes, dtype=torch.int64, device=device)
    reward = class_reward(classifier)
    best_of_n = method == "best-of-n"
    resampler = None if best_of_n else make_resampler(method, setup)

    if sync:
        sync()
    start = time.perf_counter()
    model = RewardSteering(
        Denoiser(denoiser, "epsilon", clip_sample=True),
        schedule.with_steps(setup.steps, spacing="leading"),
        None if best_of_n else reward,
        event_shape=IMAGE_SHAPE,
        lam=0.0 if best_of_n else setup.lam,
        potential=setup.potential,
        reward_conditioning=None if best_of_n else {"target": targets},
        groups=setup.groups,
        dtype=dtype,
        device=device,
    )
    timed = TimedModel(model, synchronize=sync)
    policy = smckit.Never() if best_of_n else _policy(setup)
    smc = smckit.SMC(timed, setup.particles, resampler=resampler or "systematic", policy=policy, seed=setup.seed)
    loop_start = time.perf_counter()
    for _ in smc:
        if bar is not None:
            bar.update(1)
    if sync:
        sync()
    loop_s = time.perf_counter() - loop_start
    result = smc.result
    x = result.particles["x"]  # (G, N, 1, 8, 8): the final samples x0
    select_rng = RNG(np.random.SeedSequence([setup.seed, 7]))
    with torch.no_grad():
        if best_of_n:
            r_all = reward(x, targets[:, None])
            pick = torch.topk(r_all, setup.keep, dim=1).indices  # (G, K)
        else:
            final_draw = make_resampler("systematic", setup)
            pick = final_draw(result.log_weights, select_rng, n_out=setup.keep).ancestors.to(torch.int64)
        chosen = torch.take_along_dim(x, pick.reshape(*pick.shape, 1, 1, 1), dim=1)
        logits = classifier(chosen)
        rewards = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None, None].expand(-1, setup.keep, 1))
        features = classifier.features(chosen)
    if sync:
        sync()
    wall = time.perf_counter() - start
    lineages = np.full(setup.groups, setup.particles, dtype=np.int64) if best_of_n else result.history.lineages()[-1]
    return MethodResult(
        method=method,
        samples=to_host(chosen, np.float64).reshape(setup.groups, setup.keep, 8, 8),
        targets=np.asarray(setup.classes, dtype=np.int64),
        rewards=to_host(rewards.squeeze(-1), np.float64),
        predicted=to_host(logits.argmax(-1)),
        features=to_host(features, np.float64),
        lineages=np.asarray(lineages),
        resamplings=float(result.history.resampled.sum(axis=0).mean()),
        wall_s=wall,
        model_s=timed.model_seconds,
        denoiser_calls=int(model.denoiser_calls),
        extra={"loop_s": loop_s},
    )


def warm_up(bundle: Any, setup: Setup, methods: Sequence[str]) -> None:
    """Run each method once, untimed, on a two-step copy of ``setup`` that resamples at every step.

    The first call of a resampler compiles its numba kernels, and torch's first calls on a device initialise
    it; without a shared warm-up these one-off costs land in the wall time of whichever method runs first. The
    copy keeps the particle and group counts (and so every array's shape, dtype and device), so the timed runs
    meet no code path the warm-up skipped.

    Parameters
    ----------
    bundle : DigitsBundle
        As for :func:`run_method`.
    setup : Setup
        The comparison to warm up for.
    methods : sequence of str
        The methods that will be timed; one whose resampler is not registered is passed over (its timed run
        reports it).
    """
    tiny = dataclasses.replace(setup, steps=min(setup.steps, 2), policy="always")
    for method in methods:
        try:
            run_method(bundle, tiny, method)
        except UnknownPluginError:
            continue


def _policy(setup: Setup) -> smckit.Policy:
    return smckit.Always() if setup.policy == "always" else smckit.ESSBelow(setup.ess_threshold)


# -- metrics ------------------------------------------------------------------------------------------------
def real_features(classifier: Any, classes: Sequence[int], device: Any = None) -> dict[int, np.ndarray]:
    """Penultimate-layer features of scikit-learn's real digits of each class.

    Parameters
    ----------
    classifier : DigitsClassifier
    classes : sequence of int
        The classes to collect (duplicates are collected once).
    device : torch device, optional

    Returns
    -------
    dict of int to ndarray
        ``{c: features}``, each of shape (m_c, d), float64 on the host.
    """
    import torch

    from smckit.examples.digits import real_digits

    dtype = next(classifier.parameters()).dtype
    out = {}
    with torch.no_grad():
        for c in sorted(set(int(c) for c in classes)):
            images, _ = real_digits(c, device=device, dtype=dtype)
            out[c] = to_host(classifier.features(images), np.float64)
    return out


def summarise(result: MethodResult, reference: dict[int, np.ndarray]) -> dict[str, Any]:
    """One table row: mean reward, target share, FID (mean over the target classes), lineages, time, calls.

    Parameters
    ----------
    result : MethodResult
        One method's samples over its groups (features of shape (G, K, d)).
    reference : dict of int to numpy array
        Per class, the reference features of shape (M, d) the FID compares with.

    Returns
    -------
    dict
        ``method``, ``mean_reward``, ``target_share``, ``fid``, ``lineages``, ``resamplings``, ``wall_s``,
        ``bookkeeping_share``, ``denoiser_calls`` and ``note``; ``mean_reward_se``, ``target_share_se`` and
        ``lineages_se`` are standard errors over the groups (independent populations; nan for one group).
    """
    from smckit.examples.digits import fid

    fids = []
    for c in sorted(set(result.targets.tolist())):
        rows = result.targets == c
        fids.append(fid(result.features[rows].reshape(-1, result.features.shape[-1]), reference[c]))
    share = float((result.predicted == result.targets[:, None]).mean())
    hits = (result.predicted == result.targets[:, None]).mean(axis=1)
    return {
        "method": result.method,
        "mean_reward": float(result.rewards.mean()),
        "mean_reward_se": _group_se(result.rewards.mean(axis=1)),
        "target_share": share,
        "target_share_se": _group_se(hits),
        "fid": float(np.mean(fids)),
        "lineages": float(result.lineages.mean()),
        "lineages_se": _group_se(result.lineages),
        "resamplings": result.resamplings,
        "wall_s": result.wall_s,
        "bookkeeping_share": _bookkeeping_share(result),
        "denoiser_calls": result.denoiser_calls,
        "note": result.note,
    }


def _group_se(per_group: np.ndarray) -> float:
    """The standard error of a mean over the groups (independent populations): sd / sqrt(G); nan for one group."""
    values = np.asarray(per_group, dtype=np.float64)
    return float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else float("nan")


def _bookkeeping_share(result: MethodResult) -> float:
    loop = float(result.extra.get("loop_s", result.wall_s))
    return max(loop - result.model_s, 0.0) / loop if loop > 0 else 0.0
