"""Text-to-image steering through a diffusers pipeline: where the time of a step goes.

A Stable Diffusion pipeline (by default the tiny one of smckit.diffusion.tiny: random weights, 8x8x4 latents, 16x16
images, on the CPU) steered by smckit.diffusion.from_pipeline with classifier-free guidance and a reward on the
decoded images (their mean brightness), resampling at every step. Per resampler, the time per SMC step is split into

- network: the UNet's forward passes (one batched call per chunk, both guidance branches);
- decode: the VAE decoding the Tweedie estimates for the reward;
- reward: the reward on the decoded images;
- model other: the rest of the model's step (the Gaussian reverse step, conditioning gathers, bookkeeping);
- resampler: the scheme's call (ancestors from log-weights);
- engine: everything else in the SMC loop (normalisation, ESS, evidence, the state's gather, checks, records).

Each part is timed around its calls, with the device synchronised at both ends (on a GPU that removes overlap, so
the split is an upper bound of each part's share); the total is the wall time per step of the same run. The
helpers here (``instrument``, ``profile``) are what benchmarks/gpu_check.py uses on a GPU.

Run:  python benchmarks/bench_pipeline.py [--particles 16] [--steps 10] [--repeats 3] [--out pipeline_results.md]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import smckit

PARTS = ("network", "decode", "reward", "model other", "resampler", "engine")


class Clock:
    """Accumulated seconds per named part, each timed with the device synchronised before and after."""

    def __init__(self, device: Any):
        import torch

        dev = torch.device(device)
        self.sync: Callable[[], None] = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: dict[str, float] = {}

    def start(self, part: str) -> None:
        self.sync()
        self._open[part] = time.perf_counter()

    def stop(self, part: str) -> None:
        self.sync()
        self.seconds[part] += time.perf_counter() - self._open.pop(part)

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.start(part)
            try:
                return fn(*args, **kwargs)
            finally:
                self.stop(part)

        return timed


class TimedResampler:
    """A resampler whose calls are timed; every attribute (capabilities, rebirth noise) is the wrapped one's."""

    def __init__(self, resampler: Any, clock: Clock):
        self._resampler = resampler
        self._clock = clock

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._clock.start("resampler")
        try:
            return self._resampler(*args, **kwargs)
        finally:
            self._clock.stop("resampler")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resampler, name)


def make_resampler(name: str, rebirth_noise: float = 0.3) -> Any:
    """A resampler object by name; Fleming-Viot with rebirth noise (the latents of a DDIM eta<1 step need it)."""
    from smckit.plugins import make_resampler as make

    return make(name, rebirth_noise=rebirth_noise) if name == "fleming-viot" else make(name)


def instrument(model: Any, network_module: Any, clock: Clock) -> list[Any]:
    """Time the model's methods, its network's forward passes, its decoder and its reward in place.

    Returns the hook handles (remove them to undo the network's timing).
    """
    for method in ("initial", "propose", "log_potential", "rebirth"):
        setattr(model, method, clock.wrap("model", getattr(model, method)))
    if model.decode is not None:
        model.decode = clock.wrap("decode", model.decode)
    if model.reward is not None:
        model.reward = clock.wrap("reward", model.reward)
    pre = network_module.register_forward_pre_hook(lambda module, args: clock.start("network"))
    post = network_module.register_forward_hook(lambda module, args, out: clock.stop("network"))
    return [pre, post]


def profile(
    model: Any,
    network_module: Any,
    n: int,
    resampler: str,
    *,
    device: Any,
    seed: int = 0,
    policy: Any = None,
) -> dict[str, Any]:
    """Run ``model`` with ``n`` particles per group and return seconds per step per part, and the totals.

    The first step (the initial draw) is excluded from the per-step figures: steps 1 .. T-1 are the moves.
    """
    import torch

    clock = Clock(device)
    handles = instrument(model, network_module, clock)
    timed = TimedResampler(make_resampler(resampler), clock)
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        smc = smckit.SMC(model, n, resampler=timed, policy=policy or smckit.Always(), seed=seed)
        next(smc)  # the initial draw: network and reward once, no move
        clock.sync()
        clock.seconds.clear()
        calls_before = model.denoiser_calls
        steps = 0
        start = time.perf_counter()
        for _ in smc:
            steps += 1
        clock.sync()
        total = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
    seconds = dict(clock.seconds)
    model_time = seconds.get("model", 0.0)
    inside = sum(seconds.get(k, 0.0) for k in ("network", "decode", "reward"))
    per_step = {
        "network": seconds.get("network", 0.0) / steps,
        "decode": seconds.get("decode", 0.0) / steps,
        "reward": seconds.get("reward", 0.0) / steps,
        "model other": max(model_time - inside, 0.0) / steps,
        "resampler": seconds.get("resampler", 0.0) / steps,
        "engine": max(total - model_time - seconds.get("resampler", 0.0), 0.0) / steps,
    }
    out: dict[str, Any] = {
        "resampler": resampler,
        "steps": steps,
        "step_s": total / steps,
        "parts_s": per_step,
        "engine_and_resampler_share": (per_step["engine"] + per_step["resampler"]) / (total / steps),
        "network_evaluations": model.denoiser_calls - calls_before,
    }
    if torch.device(device).type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def table(rows: list[dict[str, Any]], title: str) -> str:
    """A markdown table of :func:`profile` rows (milliseconds per step, and shares)."""
    head = "| resampler | step (ms) | " + " | ".join(f"{p} (ms)" for p in PARTS) + " | engine + resampler |"
    if any("peak_memory_gib" in r for r in rows):
        head += " peak memory (GiB) |"
    lines = [title, "", head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        cells = [r["resampler"], f"{1e3 * r['step_s']:.2f}"]
        cells += [f"{1e3 * r['parts_s'][p]:.2f}" for p in PARTS]
        cells.append(f"{100 * r['engine_and_resampler_share']:.1f}%")
        if "peak_memory_gib" in r:
            cells.append(f"{r['peak_memory_gib']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tiny_model(groups: int, steps: int, seed: int = 0) -> tuple[Any, Any]:
    """The tiny SD pipeline as a steering model: guidance 7.5, DDIM eta 0.5, brightness reward, chunks of 16."""
    from smckit.diffusion import from_pipeline
    from smckit.diffusion.tiny import tiny_pipeline

    pipe = tiny_pipeline("sd", seed=seed)
    prompts = [f"prompt {chr(ord('a') + i)}" for i in range(groups)]
    model = from_pipeline(
        pipe,
        prompts,
        reward=lambda images: images.mean(dim=(1, 2, 3)),
        lam=10.0,
        num_inference_steps=steps,
        eta=0.5,
        chunk_size=16,
    )
    return model, pipe.unet


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--particles", type=int, default=16, help="particles per prompt")
    parser.add_argument("--groups", type=int, default=2, help="prompts")
    parser.add_argument("--steps", type=int, default=10, help="sampling steps")
    parser.add_argument("--repeats", type=int, default=3, help="runs per resampler (the fastest is kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--resamplers", default="multinomial,systematic,fleming-viot")
    parser.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for name in args.resamplers.split(","):
        runs = []
        for repeat in range(args.repeats):
            model, unet = tiny_model(args.groups, args.steps)
            runs.append(profile(model, unet, args.particles, name, device="cpu", seed=repeat))
        rows.append(min(runs, key=lambda r: r["step_s"]))
    title = (
        f"Tiny SD pipeline on the CPU ({torch.get_num_threads()} thread(s)): {args.groups} prompts x "
        f"{args.particles} particles, {args.steps} DDIM steps (eta 0.5), guidance 7.5 (one batched UNet call of "
        f"{2 * args.groups * args.particles} inputs), reward on 16x16 decoded images in chunks of 16, resampling at "
        f"every step; fastest of {args.repeats} runs"
    )
    text = table(rows, title)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return text


if __name__ == "__main__":
    main()
