"""Steer the bundled 8x8 digits diffusion model to one digit class: multinomial SMC (FK steering), systematic SMC,
Fleming-Viot SMC (two configurations) and best-of-N, at an equal number of denoiser calls.

The target is ``p(x0) p(y = c | x0)^lam``: the digits DDPM's law tilted by the bundled classifier's probability of
class ``c`` (``lam = 1`` is the class-conditional law ``p(x0 | c)`` when the classifier is calibrated). Every method
runs ``groups`` independent populations of ``particles`` particles through ``steps`` DDPM steps, one denoiser call
per particle and step, so each spends ``groups * particles * steps`` denoiser calls (the table's last column) and
returns ``keep`` samples per group:

- the four SMC rows run :class:`~smckit.diffusion.RewardSteering` (DDPM steps with ``x0_hat`` clipped to
  [-1, 1], ``diff`` potential, resampling when the ESS falls below half the particles, or at every step with
  ``--policy always``) with the named resampler (Fleming-Viot with rebirth noise ``--fv-noise``, in its
  unbiased default mode and, as in the FVD paper, with a target death fraction ``--fv-absorption`` whose
  unused weight is carried forward so that the target does not change); the
  returned samples are ``keep`` draws, by systematic resampling, from each group's final weighted particles (an
  equally weighted sample of the SMC approximation of the target);
- best-of-N runs the same sampler without a reward (``lam = 0``: no weights, no resampling) and returns the
  ``keep`` particles of highest reward in each group (top-``keep`` of ``particles``; ``keep = 1`` is the usual
  best-of-N). Its reward is evaluated once, on the final samples.

Columns: mean reward ``log p(c | x0)`` of the returned samples; the share the classifier assigns to class ``c``
(the reward's own classifier, so this measures steering, not an independent judge); the Fréchet distance between
the returned samples and scikit-learn's real digits of class ``c`` in the classifier's penultimate-layer feature
space (lower is better; biased upward at small sample sizes, so compare rows only at equal sizes); distinct
lineages (step-0 ancestors among each group's final particles, averaged over groups: ``particles`` means no
collapse); wall time (noisy on a shared machine); denoiser calls (per-sample network evaluations).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import smckit
from smckit.errors import InvalidArgumentError, UnknownPluginError
from smckit.model import FeynmanKac
from smckit.random import RNG

__all__ = [
    "METHODS",
    "MethodResult",
    "Setup",
    "TimedModel",
    "add_arguments",
    "format_table",
    "main",
    "make_resampler",
    "real_features",
    "run_method",
    "save_grid",
    "summarise",
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
DEFAULTS = {"particles": 64, "groups": 8, "keep": 8, "steps": 50}
QUICK = {"particles": 16, "groups": 4, "keep": 4, "steps": 20}


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
        See ``policy``.
    fv_noise : float
        Fleming-Viot rebirth noise (schedule-consistent re-noising of the reborn particles; 0: exact clones).
    fv_absorption : float
        Target death fraction of the ``fleming-viot-absorption`` row (the FVD paper's configuration: the
        selection exponent is solved per step so that this fraction dies; ``keep_target`` carries the unused
        weight, so the target stays the tilted distribution).
    potential : str
        The reward potential of the SMC rows (``diff``, ``max``, ``sum``, ``rt``).
    seed : int
        The same seed drives every method (common random numbers).
    device : str
        torch device.
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
        if not self.classes or any(not 0 <= int(c) <= 9 for c in self.classes):
            raise InvalidArgumentError(f"classes must be a non-empty list of digits 0..9, got {self.classes}")
        if self.particles < 1 or not 1 <= self.keep <= self.particles or self.steps < 1:
            raise InvalidArgumentError(
                f"need particles >= 1, 1 <= keep <= particles and steps >= 1; got particles={self.particles}, "
                f"keep={self.keep}, steps={self.steps}"
            )
        if self.policy not in ("ess", "always"):
            raise InvalidArgumentError(f"policy must be 'ess' or 'always', got {self.policy!r}")

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
        samples=_host(chosen).reshape(setup.groups, setup.keep, 8, 8),
        targets=np.asarray(setup.classes, dtype=np.int64),
        rewards=_host(rewards.squeeze(-1)),
        predicted=_host(logits.argmax(-1)),
        features=_host(features),
        lineages=np.asarray(lineages),
        resamplings=float(result.history.resampled.sum(axis=0).mean()),
        wall_s=wall,
        model_s=timed.model_seconds,
        denoiser_calls=int(model.denoiser_calls),
        extra={"loop_s": loop_s},
    )


def _policy(setup: Setup) -> smckit.Policy:
    return smckit.Always() if setup.policy == "always" else smckit.ESSBelow(setup.ess_threshold)


def _host(x: Any) -> np.ndarray:
    return np.asarray(x.detach().to("cpu").double().numpy() if x.is_floating_point() else x.detach().to("cpu").numpy())


# -- metrics and output ---------------------------------------------------------------------------------------
def real_features(classifier: Any, classes: Sequence[int], device: Any = None) -> dict[int, np.ndarray]:
    """Penultimate-layer features of scikit-learn's real digits of each class, ``{c: (m_c, d)}``."""
    import torch

    from smckit.examples.digits import real_digits

    dtype = next(classifier.parameters()).dtype
    out = {}
    with torch.no_grad():
        for c in sorted(set(int(c) for c in classes)):
            images, _ = real_digits(c, device=device, dtype=dtype)
            out[c] = _host(classifier.features(images))
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
        ``bookkeeping_share``, ``denoiser_calls`` and ``note``.
    """
    from smckit.examples.digits import fid

    fids = []
    for c in sorted(set(result.targets.tolist())):
        rows = result.targets == c
        fids.append(fid(result.features[rows].reshape(-1, result.features.shape[-1]), reference[c]))
    share = float((result.predicted == result.targets[:, None]).mean())
    return {
        "method": result.method,
        "mean_reward": float(result.rewards.mean()),
        "target_share": share,
        "fid": float(np.mean(fids)),
        "lineages": float(result.lineages.mean()),
        "resamplings": result.resamplings,
        "wall_s": result.wall_s,
        "bookkeeping_share": _bookkeeping_share(result),
        "denoiser_calls": result.denoiser_calls,
        "note": result.note,
    }


def _bookkeeping_share(result: MethodResult) -> float:
    loop = float(result.extra.get("loop_s", result.wall_s))
    return max(loop - result.model_s, 0.0) / loop if loop > 0 else 0.0


COLUMNS = (
    ("method", "method", "{}"),
    ("mean_reward", "mean reward log p(c|x0)", "{:.3f}"),
    ("target_share", "share class c", "{:.1%}"),
    ("fid", "feature FID", "{:.2f}"),
    ("lineages", "distinct lineages", "{:.1f}"),
    ("wall_s", "wall time (s)", "{:.2f}"),
    ("denoiser_calls", "denoiser calls", "{:,}"),
)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]] = COLUMNS) -> str:
    """A markdown table of summary rows (skipped rows show their note)."""
    head = "| " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"
    lines = [head, rule]
    for row in rows:
        if row.get("skipped"):
            cells = [LABELS.get(row["method"], row["method"])] + ["—"] * (len(columns) - 1)
        else:
            cells = [
                LABELS.get(row[key], row[key]) if key == "method" else fmt.format(row[key]) for key, _, fmt in columns
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_grid(results: Sequence[MethodResult], path: str | Path, *, max_rows: int = 8, max_cols: int = 8) -> Path:
    """A PNG with one panel per method: up to ``max_rows`` groups (rows) of up to ``max_cols`` samples each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(2.6 * len(results), 3.0), squeeze=False)
    for ax, res in zip(axes[0], results):
        imgs = res.samples[:max_rows, :max_cols]
        g, k = imgs.shape[:2]
        mosaic = np.full((g * 9 + 1, k * 9 + 1), np.nan)
        for i in range(g):
            for j in range(k):
                mosaic[1 + 9 * i : 9 + 9 * i, 1 + 9 * j : 9 + 9 * j] = imgs[i, j]
        ax.imshow(np.ma.masked_invalid(mosaic), cmap="gray_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
        share = float((res.predicted == res.targets[:, None]).mean())
        ax.set_title(
            f"{LABELS.get(res.method, res.method)}\nshare {share:.0%}, lineages {res.lineages.mean():.1f}", fontsize=8
        )
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- command line ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``parser`` (``smckit demo`` and ``python -m smckit.examples.demo``)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "Fairness: every method spends groups x particles x steps denoiser calls and returns keep samples per group; "
        "SMC rows return keep systematic draws from the final weighted particles, best-of-N the keep highest-reward "
        "of its particles. FID is the Frechet distance in the classifier's feature space to the real digits of the "
        "class (biased upward at small sizes). Timings are wall-clock and noisy on shared machines."
    )
    parser.add_argument("--class", dest="digit", type=int, default=3, help="target digit 0..9 (default 3)")
    parser.add_argument(
        "--particles", type=int, default=None, help=f"particles per group N (default {DEFAULTS['particles']})"
    )
    parser.add_argument(
        "--groups", type=int, default=None, help=f"independent populations G (default {DEFAULTS['groups']})"
    )
    parser.add_argument(
        "--keep", type=int, default=None, help=f"samples returned per group K (default {DEFAULTS['keep']})"
    )
    parser.add_argument("--steps", type=int, default=None, help=f"DDPM steps S (default {DEFAULTS['steps']})")
    parser.add_argument("--lam", type=float, default=1.0, help="tilt strength: target p(x0) p(c|x0)^lam (default 1)")
    parser.add_argument(
        "--policy", choices=("ess", "always"), default="ess", help="SMC resampling: ESS < N/2 (default) or every step"
    )
    parser.add_argument(
        "--fv-noise", type=float, default=0.1, help="Fleming-Viot rebirth noise in [0, 1] (default 0.1)"
    )
    parser.add_argument(
        "--fv-absorption",
        type=float,
        default=0.1,
        help="target death fraction of the 'fleming-viot-absorption' row (default 0.1)",
    )
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    parser.add_argument("--seed", type=int, default=0, help="seed shared by every method (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument(
        "--quick", action="store_true", help="a small run for tests: " + ", ".join(f"{k} {v}" for k, v in QUICK.items())
    )
    parser.add_argument("--out", type=Path, default=Path("smckit-demo"), help="output folder (default ./smckit-demo)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads while the demo runs (default 1: the networks are tiny, and extra threads mostly "
        "spin on a busy machine; 0 keeps torch's setting)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def main(args: argparse.Namespace) -> int:
    """Run the demo with parsed ``args``; print the table, write the PNG grid and the table. Returns 0."""
    import torch

    previous = torch.get_num_threads()
    if getattr(args, "threads", 0):
        torch.set_num_threads(int(args.threads))
    try:
        return _main(args)
    finally:
        torch.set_num_threads(previous)


def _main(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from smckit.examples.digits import load_digits_model

    sizes = dict(QUICK if args.quick else DEFAULTS)
    for key in sizes:
        if getattr(args, key) is not None:
            sizes[key] = int(getattr(args, key))
    setup = Setup(
        classes=[int(args.digit)] * sizes["groups"],
        particles=sizes["particles"],
        keep=min(sizes["keep"], sizes["particles"]),
        steps=sizes["steps"],
        lam=float(args.lam),
        policy=args.policy,
        fv_noise=float(args.fv_noise),
        fv_absorption=float(args.fv_absorption),
        seed=int(args.seed),
        device=str(args.device),
    )
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    device = torch.device(args.device)
    bundle = load_digits_model(device=device)
    reference = real_features(bundle.classifier, setup.classes, device=device)

    print(
        f"smckit demo: steer the digits DDPM to class {args.digit} with target p(x0) p(c|x0)^{setup.lam:g}; "
        f"{setup.groups} groups x {setup.particles} particles x {setup.steps} steps = {setup.denoiser_calls:,} "
        f"denoiser calls per method, {setup.keep} samples kept per group, device {device}"
    )
    results: list[MethodResult] = []
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(methods) * (setup.steps + 1), unit="step", desc="smckit demo", disable=args.no_progress)
    for method in methods:
        bar.set_postfix_str(method)
        try:
            res = run_method(bundle, setup, method, bar=bar)
        except UnknownPluginError as exc:
            note = (
                "skipped: the Fleming-Viot resampler comes from the smckit-fvd plugin, which is not installed "
                "(pip install smckit-fvd)"
                if method.startswith("fleming-viot")
                else f"skipped: {exc}"
            )
            rows.append({"method": method, "skipped": True, "note": note})
            bar.update(setup.steps + 1)
            continue
        results.append(res)
        rows.append(summarise(res, reference))
    bar.close()

    table = format_table(rows)
    print(table)
    for row in rows:
        if row.get("skipped"):
            print(f"note: {LABELS.get(row['method'], row['method'])}: {row['note']}")
    print(
        "SMC rows: keep systematic draws from the final weighted particles; best-of-N: the top-keep rewards of its "
        "particles. FID: classifier-feature Frechet distance to real digits of the class, from "
        f"{setup.groups * setup.keep} samples (biased upward at small sizes). Wall times are noisy."
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = save_grid(results, out / "samples.png") if results else None
    (out / "table.md").write_text(table + "\n")
    payload = {"setup": asdict(setup), "rows": rows, "torch": torch.__version__, "device": str(device)}
    (out / "table.json").write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    print(f"wrote {png or '(no samples)'}, {out / 'table.md'} and {out / 'table.json'}")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"cannot serialise {type(value).__name__}")


if __name__ == "__main__":  # python -m smckit.examples.demo
    import sys

    _parser = argparse.ArgumentParser(prog="python -m smckit.examples.demo", description=__doc__.split("\n\n")[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
