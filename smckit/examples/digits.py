"""The bundled 8x8 digits example: a tiny DDPM and a digit classifier, trained on scikit-learn's digits.

scikit-learn ships the UCI 8x8 handwritten digits (1797 images, pixel values 0..16) with the library, so the
example needs no download. Two small torch networks are trained on a fixed 80% split of them by
``scripts/train_digits.py`` (or :func:`train_digits`) and ship as ``smckit/examples/data/digits.npz``:

- :class:`DigitsDenoiser`, an epsilon-prediction network for the DDPM forward process
  ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` on images scaled to [-1, 1] (a residual MLP with a
  sinusoidal time embedding);
- :class:`DigitsClassifier`, a small MLP giving the logits of ``p(y | x_0)`` on clean images; its penultimate
  layer is the feature map of the feature-space FID (:func:`fid`).

The reward of class-conditional steering is ``r(x_0) = log p(y = c | x_0)`` (:func:`class_reward`).

Images have the event shape ``(1, 8, 8)`` (:data:`IMAGE_SHAPE`); the networks also accept flat ``(..., 64)``
inputs and return the layout they were given.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from smckit.backend import to_host
from smckit.errors import InvalidArgumentError, ShapeError

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the digits example needs torch: pip install -e '.[diffusion]' in a clone of smckit") from exc

__all__ = [
    "IMAGE_SHAPE",
    "NUM_CLASSES",
    "DigitsBundle",
    "DigitsClassifier",
    "DigitsDenoiser",
    "class_reward",
    "default_data_path",
    "digits_metadata",
    "fid",
    "load_digits_model",
    "real_digits",
    "train_digits",
]

IMAGE_SHAPE = (1, 8, 8)
"""Event shape of one digit image: one channel, 8 x 8 pixels."""
NUM_PIXELS = 64
NUM_CLASSES = 10
"""The ten digit classes of the bundled example."""

FORMAT_VERSION = 1

DEFAULT_SETTINGS: dict[str, Any] = {
    "seed": 0,
    "test_fraction": 0.2,
    "num_train_timesteps": 1000,
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "denoiser": {"hidden": 128, "depth": 3, "time_dim": 32, "steps": 5000, "batch": 128, "lr": 2e-3, "ema": 0.999},
    "classifier": {
        "hidden": 128,
        "features": 32,
        "steps": 2500,
        "batch": 128,
        "lr": 2e-3,
        "weight_decay": 1e-4,
        "noise_std": 0.25,
    },
}
"""Training settings of the shipped weights (stored in the npz metadata)."""


# -- the networks -------------------------------------------------------------------------------------------
def _flatten_event(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Flatten an image batch (..., 1, 8, 8) or (..., 64) to (..., 64); return it and the batch shape."""
    if x.ndim >= 3 and tuple(x.shape[-3:]) == IMAGE_SHAPE:
        batch = tuple(x.shape[:-3])
    elif x.ndim >= 1 and x.shape[-1] == NUM_PIXELS:
        batch = tuple(x.shape[:-1])
    else:
        raise ShapeError(f"digit images must have shape (..., 1, 8, 8) or (..., 64), got {tuple(x.shape)}")
    return x.reshape(*batch, NUM_PIXELS), batch


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps.

    Parameters
    ----------
    t : tensor, shape (...)
        Timesteps.
    dim : int
        Even embedding size.

    Returns
    -------
    tensor, shape (..., dim)
        ``[sin(t w_k), cos(t w_k)]`` with frequencies ``w_k = max_period^(-k / (dim/2))``.
    """
    half = dim // 2
    k = torch.arange(half, device=t.device, dtype=t.dtype)
    freqs = torch.exp(-math.log(max_period) * k / half)
    angles = t[..., None] * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class DigitsDenoiser(nn.Module):
    """Epsilon-prediction network for 8x8 digits: a residual MLP with a sinusoidal time embedding.

    Parameters
    ----------
    hidden : int
        Width of the residual blocks.
    depth : int
        Number of residual blocks.
    time_dim : int
        Size of the sinusoidal time embedding.

    Notes
    -----
    Call it as ``denoiser(x_t, t)``: ``x_t`` has shape ``(..., 1, 8, 8)`` or ``(..., 64)``; ``t`` is an
    integer timestep in ``[0, num_train_timesteps)``, a scalar or a tensor whose shape is the batch shape
    ``(...)`` or has as many elements (a flat ``(B,)`` vector for a ``(G, P, ...)`` input). Returns the
    predicted noise with the shape of ``x_t``. ``prediction_type`` is ``"epsilon"``.
    """

    prediction_type = "epsilon"

    def __init__(self, hidden: int = 192, depth: int = 3, time_dim: int = 64):
        super().__init__()
        self.hidden, self.depth, self.time_dim = hidden, depth, time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(NUM_PIXELS, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
            )
            for _ in range(depth)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, NUM_PIXELS))

    def forward(self, x_t: torch.Tensor, t: Any, **conditioning: Any) -> torch.Tensor:
        """Predicted noise eps(x_t, t), same shape as ``x_t`` (conditioning keywords are ignored)."""
        flat, batch = _flatten_event(x_t)
        steps = _broadcast_timesteps(t, batch, like=flat)
        emb = self.time_mlp(sinusoidal_embedding(steps, self.time_dim))
        h = self.inp(flat)
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h).reshape(x_t.shape)


def _broadcast_timesteps(t: Any, batch: tuple[int, ...], *, like: torch.Tensor) -> torch.Tensor:
    steps = torch.as_tensor(t, device=like.device).to(like.dtype)
    if steps.ndim > 0 and tuple(steps.shape) != batch and steps.numel() == math.prod(batch):
        steps = steps.reshape(batch)
    try:
        return torch.broadcast_to(steps, batch)
    except RuntimeError as exc:
        raise ShapeError(f"timesteps of shape {tuple(steps.shape)} do not fit the batch shape {batch}") from exc


class DigitsClassifier(nn.Module):
    """A small MLP digit classifier on clean 8x8 images scaled to [-1, 1].

    Parameters
    ----------
    hidden : int
        Width of the first hidden layer.
    features : int
        Width of the penultimate layer, the feature space of :func:`fid`.

    Notes
    -----
    ``classifier(x0)`` maps ``(..., 1, 8, 8)`` or ``(..., 64)`` to logits ``(..., 10)``;
    ``classifier.features(x0)`` gives the penultimate activations ``(..., features)``.
    """

    def __init__(self, hidden: int = 128, features: int = 32):
        super().__init__()
        self.hidden, self.num_features = hidden, features
        self.body = nn.Sequential(nn.Linear(NUM_PIXELS, hidden), nn.SiLU(), nn.Linear(hidden, features), nn.SiLU())
        self.head = nn.Linear(features, NUM_CLASSES)

    def features(self, x0: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features, shape (..., features)."""
        flat, _ = _flatten_event(x0)
        return self.body(flat)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """Logits of p(y | x0), shape (..., 10)."""
        return self.head(self.features(x0))


# -- reward and metrics -------------------------------------------------------------------------------------
def class_reward(
    classifier: DigitsClassifier, c: int | Sequence[int] | torch.Tensor | None = None
) -> Callable[..., torch.Tensor]:
    """The reward ``r(x0) = log p(y = c | x0)`` of class-conditional steering.

    Parameters
    ----------
    classifier : DigitsClassifier
        The classifier giving the logits.
    c : int, sequence of int or tensor of int, optional
        The target class. A tensor (or sequence) gives one class per leading batch row: with ``x0`` of shape
        ``(groups, particles, 1, 8, 8)``, pass ``c`` of shape ``(groups,)`` to steer each group to its own class.
        ``None``: the classes come with each call (``target=``).

    Returns
    -------
    callable
        ``reward(x0, target=None)`` mapping ``(*batch, 1, 8, 8)`` (or ``(*batch, 64)``) to ``(*batch,)`` on x0's
        device and dtype. ``target``, an integer tensor broadcastable to ``(*batch,)`` (aligned on the left),
        overrides ``c``: this is how :class:`~smckit.diffusion.RewardSteering` passes one class per group
        (``reward_conditioning={"target": classes}`` with ``classes`` of shape ``(groups,)``). Gradients flow
        through it (for guided proposals).

    Raises
    ------
    InvalidArgumentError
        If a class is outside 0..9, or no class is given at all.
    """
    default = None if c is None else _check_classes(c)
    on_device: dict[torch.device, torch.Tensor] = {}  # the default classes, copied once per device

    def reward(x0: torch.Tensor, target: Any = None) -> torch.Tensor:
        # Per-call classes are not range-checked here: that would synchronise a GPU at every reward call.
        if target is not None:
            idx = torch.as_tensor(target, device=x0.device)
        elif default is not None:
            if x0.device not in on_device:
                on_device[x0.device] = default.to(x0.device)
            idx = on_device[x0.device]
        else:
            raise InvalidArgumentError("class_reward was built without a class: pass target= to the reward")
        log_p = torch.log_softmax(classifier(x0), dim=-1)
        batch = tuple(log_p.shape[:-1])
        if idx.ndim > len(batch):
            raise ShapeError(f"target classes of shape {tuple(idx.shape)} do not fit the batch shape {batch}")
        idx = torch.broadcast_to(idx.reshape(*idx.shape, *([1] * (len(batch) - idx.ndim))), batch)
        return torch.gather(log_p, -1, idx[..., None]).squeeze(-1)

    reward.__name__ = "log_p_class"
    return reward


def _check_classes(c: Any) -> torch.Tensor:
    target = torch.as_tensor(c)
    if (
        target.dtype.is_floating_point
        or target.dtype == torch.bool
        or bool(((target < 0) | (target >= NUM_CLASSES)).any())
    ):
        raise InvalidArgumentError(f"target classes must be integers in 0..9, got {c!r}")
    return target.to(torch.int64)


def fid(features_a: Any, features_b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula, in any feature space).

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})``, computed in float64 on the host. The trace of the
    matrix square root is taken as ``sum_k sqrt(lambda_k)`` over the eigenvalues of the symmetric PSD matrix
    ``S_a^{1/2} S_b S_a^{1/2}`` (the same eigenvalues as ``S_a S_b``), which stays exact when a covariance is
    singular (fewer samples than features), where a general ``sqrtm`` of ``S_a S_b`` is ill-conditioned.

    Parameters
    ----------
    features_a, features_b : array or tensor, shape (m_a, d) and (m_b, d)
        Feature vectors (e.g. :meth:`DigitsClassifier.features`); each set needs at least two rows.

    Returns
    -------
    float
        Non-negative. Biased upward when m is small compared with d: compare values only at equal sizes.

    Raises
    ------
    ShapeError
        If the sets are not 2-D with the same feature size or have fewer than two rows.
    """
    import scipy.linalg

    a, b = to_host(features_a, np.float64), to_host(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ShapeError(f"fid needs two (m, d) feature sets with m >= 2, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = scipy.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
    inner = scipy.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = float(np.sum(np.sqrt(np.clip(inner, 0.0, None))))
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root)
    return max(value, 0.0)


# -- the data -----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as float64 pixels scaled to [-1, 1], shape (1797, 64), and their labels (1797,)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = data.data.astype(np.float64) / 8.0 - 1.0, data.target.astype(np.int64)
    x.flags.writeable = False  # cached: callers copy
    y.flags.writeable = False
    return x, y


def _split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified split: sorted train and test indices, the same for a given seed."""
    rng = np.random.default_rng(seed)
    test = []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        test.append(rng.permutation(idx)[: round(test_fraction * idx.size)])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(labels.size), test_idx)
    return train_idx, test_idx


def real_digits(
    c: int | None = None,
    *,
    split: str = "all",
    device: Any = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Real digits from scikit-learn's bundled set, scaled to [-1, 1].

    Parameters
    ----------
    c : int, optional
        Keep only this class (all classes when ``None``).
    split : {"all", "train", "test"}
        The whole set, or the training or held-out part of the split the shipped networks were trained on.
    device, dtype
        Where the returned tensors live.

    Returns
    -------
    images : tensor, shape (m, 1, 8, 8)
    labels : tensor of int64, shape (m,)
    """
    if split not in ("all", "train", "test"):
        raise InvalidArgumentError(f"split must be 'all', 'train' or 'test', got {split!r}")
    x, y = _load_sklearn_digits()
    if split != "all":
        meta = digits_metadata()
        train_idx, test_idx = _split(y, meta["settings"]["test_fraction"], meta["settings"]["seed"])
        keep = train_idx if split == "train" else test_idx
        x, y = x[keep], y[keep]
    if c is not None:
        x, y = x[y == c], y[y == c]
    images = torch.tensor(x, dtype=dtype, device=device).reshape(-1, *IMAGE_SHAPE)
    return images, torch.tensor(y, device=device)


# -- loading ------------------------------------------------------------------------------------------------
class DigitsBundle(NamedTuple):
    """What :func:`load_digits_model` returns (unpacks as ``denoiser, schedule, classifier``)."""

    denoiser: DigitsDenoiser
    schedule: Any
    classifier: DigitsClassifier


def default_data_path() -> Path:
    """The shipped weights, ``smckit/examples/data/digits.npz``."""
    return Path(__file__).with_name("data") / "digits.npz"


def _cache_path() -> Path:
    root = os.environ.get("SMCKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "smckit"
    )
    return Path(root) / "digits.npz"


def _resolve_path(path: str | os.PathLike[str] | None, *, train_if_missing: bool) -> Path:
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"no digits weights at {p}; run scripts/train_digits.py --out {p}")
        return p
    for p in (default_data_path(), _cache_path()):
        if p.exists():
            return p
    if not train_if_missing:
        raise FileNotFoundError(f"no digits weights at {default_data_path()} or {_cache_path()}")
    cache = _cache_path()
    cache.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"smckit: the digits weights are not in the package data; training them into {cache} (about a minute)",
        file=sys.stderr,
    )
    train_digits(cache)
    return cache


def digits_metadata(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The metadata stored with the weights: sizes, schedule, training settings, versions, data statistics."""
    with np.load(_resolve_path(path, train_if_missing=True), allow_pickle=False) as npz:
        return json.loads(str(npz["metadata"]))


def load_digits_model(
    device: Any = None,
    dtype: torch.dtype = torch.float32,
    *,
    path: str | os.PathLike[str] | None = None,
) -> DigitsBundle:
    """Load the bundled digits denoiser, its noise schedule and the classifier (offline).

    The weights come from the package data (``smckit/examples/data/digits.npz``); if that file is missing,
    they are trained (about a minute on two CPU cores) and cached under ``$SMCKIT_CACHE`` or
    ``~/.cache/smckit``.

    Parameters
    ----------
    device : str or torch.device, optional
        Where the networks live (default: the CPU).
    dtype : torch.dtype
        Floating dtype of the networks (float32 by default; float64 works too).
    path : path, optional
        An explicit npz file (written by ``scripts/train_digits.py``).

    Returns
    -------
    DigitsBundle
        ``(denoiser, schedule, classifier)``: both networks in eval mode with gradients off for their
        parameters; the schedule is a :class:`smckit.diffusion.schedule.NoiseSchedule` over the
        ``num_train_timesteps`` training steps.

    Raises
    ------
    FileNotFoundError
        If ``path`` is given and does not exist.

    Examples
    --------
    Steer two groups of particles to the digits 3 and 7 (the images were scaled to [-1, 1] in training, so
    clipping ``x0_hat`` there is natural):

    >>> import torch, smckit
    >>> from smckit.diffusion import Denoiser, RewardSteering
    >>> from smckit.examples.digits import IMAGE_SHAPE, class_reward, load_digits_model
    >>> denoiser, schedule, classifier = load_digits_model()
    >>> model = RewardSteering(Denoiser(denoiser, clip_sample=True), schedule.with_steps(10),
    ...                        class_reward(classifier), event_shape=IMAGE_SHAPE, lam=1.0, groups=2,
    ...                        reward_conditioning={"target": torch.tensor([3, 7])})
    >>> result = smckit.run(model, 16, seed=0)
    >>> tuple(result.particles["x"].shape)
    (2, 16, 1, 8, 8)
    """
    file = _resolve_path(path, train_if_missing=True)
    with np.load(file, allow_pickle=False) as npz:
        meta = json.loads(str(npz["metadata"]))
        arrays = {k: npz[k] for k in npz.files if k != "metadata"}
    if meta.get("format_version") != FORMAT_VERSION:
        raise InvalidArgumentError(f"{file} has format version {meta.get('format_version')}, expected {FORMAT_VERSION}")
    denoiser = DigitsDenoiser(**meta["architecture"]["denoiser"])
    classifier = DigitsClassifier(**meta["architecture"]["classifier"])
    for prefix, net in (("denoiser/", denoiser), ("classifier/", classifier)):
        state = {k[len(prefix) :]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(prefix)}
        net.load_state_dict(state)
        net.to(device=device, dtype=dtype).eval().requires_grad_(False)
    schedule = make_schedule(arrays["alphas_cumprod"], device=device, dtype=dtype)
    return DigitsBundle(denoiser, schedule, classifier)


def make_schedule(alphas_cumprod: np.ndarray, *, device: Any = None, dtype: torch.dtype = torch.float32) -> Any:
    """The adapter's noise schedule from the training ``alphas_cumprod`` (shape (num_train_timesteps,))."""
    from smckit.diffusion.schedule import NoiseSchedule

    return NoiseSchedule(torch.as_tensor(alphas_cumprod, dtype=torch.float64, device=device).to(dtype))


# -- training -----------------------------------------------------------------------------------------------
def linear_alphas_cumprod(num_steps: int, beta_start: float, beta_end: float) -> np.ndarray:
    """``prod_{s<=t} (1 - beta_s)`` for linearly spaced betas (the DDPM and diffusers default), float64."""
    return np.cumprod(1.0 - np.linspace(beta_start, beta_end, num_steps, dtype=np.float64))


def _train_denoiser(
    x: torch.Tensor, alphas_cumprod: torch.Tensor, cfg: dict[str, Any], seed: int, log: Callable[[str], None]
) -> DigitsDenoiser:
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DigitsDenoiser(cfg["hidden"], cfg["depth"], cfg["time_dim"])
    ema = {k: v.detach().clone() for k, v in net.state_dict().items()}
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=cfg["steps"], pct_start=0.05)
    num_t = alphas_cumprod.shape[0]
    start = time.perf_counter()
    for step in range(cfg["steps"]):
        idx = torch.randint(0, x.shape[0], (cfg["batch"],), generator=gen)
        t = torch.randint(0, num_t, (cfg["batch"],), generator=gen)
        eps = torch.randn(cfg["batch"], NUM_PIXELS, generator=gen)
        abar = alphas_cumprod[t][:, None]
        x_t = abar.sqrt() * x[idx] + (1 - abar).sqrt() * eps
        loss = torch.mean((net(x_t, t) - eps) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for k, v in net.state_dict().items():
                ema[k].mul_(cfg["ema"]).add_(v, alpha=1 - cfg["ema"])
        if step % 1000 == 0 or step == cfg["steps"] - 1:
            log(f"denoiser step {step:5d}  loss {loss.item():.4f}  {time.perf_counter() - start:.1f}s")
    net.load_state_dict(ema)
    return net.eval()


def _train_classifier(
    x: torch.Tensor, y: torch.Tensor, cfg: dict[str, Any], seed: int, log: Callable[[str], None]
) -> DigitsClassifier:
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DigitsClassifier(cfg["hidden"], cfg["features"])
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=cfg["steps"], pct_start=0.05)
    start = time.perf_counter()
    for step in range(cfg["steps"]):
        idx = torch.randint(0, x.shape[0], (cfg["batch"],), generator=gen)
        # Pixel noise of a random strength: the reward is evaluated on Tweedie estimates x0_hat, which are
        # smoother than real digits early in sampling; mild noise keeps the logits from being overconfident.
        scale = cfg["noise_std"] * torch.rand(cfg["batch"], 1, generator=gen)
        xb = x[idx] + scale * torch.randn(cfg["batch"], NUM_PIXELS, generator=gen)
        loss = nn.functional.cross_entropy(net(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == cfg["steps"] - 1:
            log(f"classifier step {step:5d}  loss {loss.item():.4f}  {time.perf_counter() - start:.1f}s")
    return net.eval()


def train_digits(
    out: str | os.PathLike[str],
    *,
    settings: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Train the denoiser and the classifier on the digits' training split and write them to ``out`` (npz).

    Deterministic for a given seed, torch version and thread count; runs on the CPU with ``threads`` torch
    threads (restored afterwards). One thread is the default: the networks are small, and on a busy machine more
    threads mostly spin (measured 13x slower with 2 threads on 2 loaded cores).

    Parameters
    ----------
    out : path
        The npz file to write (the parent folder must exist).
    settings : dict, optional
        Training settings; defaults to ``DEFAULT_SETTINGS`` (the shipped weights).
    log : callable, optional
        Receives progress lines (default: silent).

    Returns
    -------
    dict
        The metadata written with the weights.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        return _train(out, settings, log)
    finally:
        torch.set_num_threads(previous)


def _train(out: str | os.PathLike[str], settings: dict[str, Any] | None, log: Callable[[str], None] | None) -> dict:
    import sklearn

    cfg = json.loads(json.dumps(settings if settings is not None else DEFAULT_SETTINGS))
    log = log or (lambda _msg: None)
    x_all, y_all = _load_sklearn_digits()
    train_idx, test_idx = _split(y_all, cfg["test_fraction"], cfg["seed"])
    x = torch.as_tensor(x_all[train_idx], dtype=torch.float32)
    y = torch.as_tensor(y_all[train_idx])
    abar64 = linear_alphas_cumprod(cfg["num_train_timesteps"], cfg["beta_start"], cfg["beta_end"])
    abar = torch.as_tensor(abar64, dtype=torch.float32)

    t0 = time.perf_counter()
    denoiser = _train_denoiser(x, abar, cfg["denoiser"], cfg["seed"], log)
    t1 = time.perf_counter()
    classifier = _train_classifier(x, y, cfg["classifier"], cfg["seed"] + 1, log)
    t2 = time.perf_counter()
    with torch.no_grad():
        x_test = torch.as_tensor(x_all[test_idx], dtype=torch.float32)
        accuracy = float((classifier(x_test).argmax(-1).numpy() == y_all[test_idx]).mean())
    log(f"held-out accuracy {accuracy:.4f} on {test_idx.size} digits")

    meta = {
        "format_version": FORMAT_VERSION,
        "description": "tiny DDPM (epsilon prediction) and digit classifier for scikit-learn's 8x8 digits",
        "pixel_scaling": "x = pixel / 8 - 1 (pixels 0..16 -> [-1, 1])",
        "image_shape": list(IMAGE_SHAPE),
        "architecture": {
            "denoiser": {k: cfg["denoiser"][k] for k in ("hidden", "depth", "time_dim")},
            "classifier": {"hidden": cfg["classifier"]["hidden"], "features": cfg["classifier"]["features"]},
        },
        "schedule": {
            "num_train_timesteps": cfg["num_train_timesteps"],
            "beta_schedule": cfg["beta_schedule"],
            "beta_start": cfg["beta_start"],
            "beta_end": cfg["beta_end"],
            "prediction_type": "epsilon",
        },
        "settings": cfg,
        "versions": {"scikit-learn": sklearn.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "data": {
            "source": "sklearn.datasets.load_digits",
            "num_images": int(y_all.size),
            "num_train": int(train_idx.size),
            "num_test": int(test_idx.size),
            "class_counts": np.bincount(y_all, minlength=NUM_CLASSES).tolist(),
            "pixel_mean": float(x_all.mean()),
            "pixel_std": float(x_all.std()),
        },
        "results": {
            "classifier_test_accuracy": accuracy,
            "denoiser_train_seconds": round(t1 - t0, 1),
            "classifier_train_seconds": round(t2 - t1, 1),
            "torch_threads": torch.get_num_threads(),
        },
    }
    arrays: dict[str, np.ndarray] = {"alphas_cumprod": abar64, "test_index": test_idx.astype(np.int32)}
    for prefix, net in (("denoiser/", denoiser), ("classifier/", classifier)):
        for k, v in net.state_dict().items():
            arrays[prefix + k] = to_host(v, np.float32)
    tmp = Path(out).with_suffix(".tmp.npz")
    arrays["metadata"] = np.array(json.dumps(meta))
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, out)
    return meta
