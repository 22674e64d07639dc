"""Every check that needs a GPU, in one script of under 8 minutes on one card; figures to JSON and markdown.

1. The card: name, memory, compute capability, torch and CUDA versions.
2. The CUDA test subset: the tests that exercise the device when one is present (pytest ``-k "cuda or device or
   half"`` over the engine, resampler, Fleming-Viot, half-precision and pipeline tests), pass/fail counts.
3. The card's copy bandwidth, measured here: a device-to-device copy of a large buffer (bytes read + written / s).
4. Resampler throughput at N = 1e8 particles (one row, float32 log-weights on the card): seconds per call and the
   bandwidth it achieves under a minimal traffic model, as a fraction of the copy bandwidth. The model counts the
   bytes every scheme must move per particle: read its log-weight (4 B) and write its ancestor (8 B, int64), so
   12 B per particle; a scheme that reads the weights twice or writes temporaries moves more and shows a lower
   fraction.
5. Steering with a Stable-Diffusion-1.5-sized ``UNet2DConditionModel`` (random weights, bfloat16, 64x64x4 latents)
   and a real-sized VAE (SD 1.5's configuration: 512x512 images) through ``smckit.diffusion.from_pipeline``, with
   classifier-free guidance and a reward on the decoded images, resampling at every step, for multinomial,
   systematic and Fleming-Viot: time per step (plain run), its split into UNet, VAE decode, reward, model, resampler
   and engine (an instrumented run, see benchmarks/bench_pipeline.py), the engine and resampler share (goal: at
   most 2% together), peak memory, and the implicit host synchronisations per step (torch's sync debug mode).

``--dry-run`` runs every part on the CPU at toy sizes (the tiny pipeline, N = 1e5, a one-test subset) in a few
seconds: that is how the script is tested without a GPU (tests/test_pipeline_gpu_check.py).

Run:  python benchmarks/gpu_check.py --out gpu_check_out/            (on a CUDA machine; then copy the markdown
      into benchmarks/RESULTS.md with the card's name)
      python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check    (anywhere)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_pipeline import PARTS, make_resampler, profile  # noqa: E402

TEST_FILES = [
    "tests/test_engine.py",
    "tests/test_resamplers.py",
    "tests/test_fvd.py",
    "tests/test_diffusion_half.py",
    "tests/test_pipeline.py",
]
TEST_SELECTION = "cuda or device or half"
DRY_TESTS = ["tests/test_rewards.py::test_to_images_formats"]
SCHEMES = ("multinomial", "systematic", "stratified", "residual", "ssp", "killing", "fleming-viot")
STEERING_SCHEMES = ("multinomial", "systematic", "fleming-viot")
BYTES_PER_PARTICLE = 4 + 8  # read a float32 log-weight, write an int64 ancestor


def card(device: Any) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
        )
    else:
        info.update(name=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    return info


def run_tests(args: list[str], timeout: float) -> dict[str, Any]:
    """Run pytest on ``args`` in a subprocess; counts from its summary line."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        output, rc = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        output, rc = f"{exc.stdout or ''}\ntimed out after {timeout:.0f} s", -1
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", output)}
    return {
        "command": " ".join(command[1:]),
        "returncode": rc,
        "seconds": round(time.perf_counter() - start, 1),
        "counts": counts,
        "tail": output.strip().splitlines()[-15:],
    }


def copy_bandwidth(device: Any, nbytes: int, repeats: int) -> dict[str, Any]:
    """Bytes read and written per second by ``dst.copy_(src)`` on the device (the best of ``repeats``)."""
    import torch

    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats + 1):  # the first copy warms up
        sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - start)
    del src, dst
    return {"bytes": nbytes, "seconds": best, "gb_per_s": 2 * nbytes / best / 1e9}


def sync(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def resampler_throughput(device: Any, n: int, repeats: int, copy_gbs: float) -> list[dict[str, Any]]:
    """Seconds per resampling of one row of ``n`` particles, per scheme, and the fraction of the copy bandwidth."""
    import torch

    from smckit.random import RNG

    log_w = torch.randn(1, n, device=device, dtype=torch.float32, generator=None)
    rows = []
    for name in SCHEMES:
        try:
            scheme = make_resampler(name, rebirth_noise=0.0)
        except Exception as exc:  # a plugin that is not installed
            rows.append({"scheme": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        rng = RNG(0)
        best = float("inf")
        try:
            for _ in range(repeats + 1):
                sync(device)
                start = time.perf_counter()
                out = scheme(log_w, rng)
                sync(device)
                best = min(best, time.perf_counter() - start)
            del out
        except Exception as exc:  # e.g. out of memory: recorded, the other schemes still run
            rows.append({"scheme": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        achieved = BYTES_PER_PARTICLE * n / best / 1e9
        rows.append(
            {
                "scheme": name,
                "seconds": best,
                "particles_per_s": n / best,
                "gb_per_s_at_12_bytes": achieved,
                "fraction_of_copy_bandwidth": achieved / copy_gbs,
            }
        )
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return rows


def sd15_pipeline(device: Any, dtype: Any) -> Any:
    """A StableDiffusionPipeline with SD 1.5's UNet and VAE configurations and random weights (no download).

    The text encoder is a one-layer CLIP of SD's width (768) with the tiny letter tokenizer: it only makes the
    prompt embeddings, once per prompt, so its size does not matter here.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from smckit.diffusion.tiny import LETTERS, MAX_LENGTH, tiny_tokenizer

    with torch.device(device):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # SD 1.5: the rest are the defaults
        vae = AutoencoderKL(
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            block_out_channels=[128, 256, 512, 512],
            layers_per_block=2,
            latent_channels=4,
            sample_size=512,
            scaling_factor=0.18215,
        )
        text = CLIPTextModel(
            CLIPTextConfig(
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
                hidden_size=768,
                intermediate_size=3072,
                num_attention_heads=12,
                num_hidden_layers=1,
                vocab_size=2 + 2 * len(LETTERS),
                max_position_embeddings=MAX_LENGTH,
            )
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tiny_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype)


def count_host_syncs(model: Any, n: int, resampler: str, device: Any) -> float | None:
    """Implicit host synchronisations per move step, from torch's sync debug mode (CUDA only)."""
    import torch

    import smckit

    if torch.device(device).type != "cuda":
        return None
    smc = smckit.SMC(model, n, resampler=make_resampler(resampler), policy=smckit.Always(), seed=1)
    next(smc)
    steps = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in smc:
                steps += 1
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    return len(syncs) / max(steps, 1)


def steering(device: Any, dry: bool, particles: int, prompts: int, steps: int) -> dict[str, Any]:
    import torch

    import smckit
    from smckit.diffusion import from_pipeline

    if dry:
        from smckit.diffusion.tiny import tiny_pipeline

        pipe, setup = tiny_pipeline("sd"), "tiny SD pipeline (float32, 8x8x4 latents, 16x16 images)"
    else:
        pipe = sd15_pipeline(device, torch.bfloat16)
        setup = "SD-1.5-sized UNet2DConditionModel and VAE, random weights, bfloat16, 64x64x4 latents, 512x512 images"
    names = [f"prompt {chr(ord('a') + i)}" for i in range(prompts)]

    def build() -> Any:
        return from_pipeline(
            pipe,
            names,
            reward=lambda images: images.float().mean(dim=(1, 2, 3)),
            lam=10.0,
            num_inference_steps=steps,
            eta=0.5,
            chunk_size=8,
        )

    rows = []
    smckit.run(build(), particles, policy=smckit.Always(), seed=0)  # warm-up: kernels, allocator, autotuning
    for name in STEERING_SCHEMES:
        sync(device)
        start = time.perf_counter()
        plain = smckit.run(build(), particles, resampler=make_resampler(name), policy=smckit.Always(), seed=0)
        sync(device)
        wall = time.perf_counter() - start
        row = profile(build(), pipe.unet, particles, name, device=device, seed=0)
        row["plain_step_s"] = wall / steps  # S moves plus the initial draw, per move
        row["host_syncs_per_step"] = count_host_syncs(build(), particles, name, device)
        row["final_ess"] = [round(float(e), 2) for e in plain.history.ess[-1].reshape(-1).tolist()]
        rows.append(row)
    return {
        "setup": setup,
        "prompts": prompts,
        "particles_per_prompt": particles,
        "steps": steps,
        "guidance_scale": 7.5,
        "unet_inputs_per_call": 2 * prompts * particles,
        "rows": rows,
    }


def markdown(report: dict[str, Any]) -> str:
    c = report["card"]
    lines = [
        f"### GPU check: {c.get('name')} ({c.get('memory_gib', '?')} GiB, torch {c['torch']}, CUDA {c.get('cuda')})",
        "",
        f"Command: `{report['command']}`; {report['seconds']:.0f} s in all.",
        "",
    ]
    t = report.get("tests")
    if t:
        lines += [
            f"CUDA test subset: {t['counts']} (exit code {t['returncode']}, {t['seconds']} s): `{t['command']}`",
            "",
        ]
    bw = report["copy_bandwidth"]
    lines += [f"Copy bandwidth (device to device, {bw['bytes'] / 2**30:.2f} GiB): {bw['gb_per_s']:.0f} GB/s.", ""]
    n = report["resampler_n"]
    lines += [
        f"Resampling one row of N = {n:.0e} float32 log-weights (12 B per particle moved at least):",
        "",
        "| scheme | ms per call | particles/s | GB/s at 12 B | fraction of copy bandwidth |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in report["resamplers"]:
        if "error" in r:
            lines.append(f"| {r['scheme']} | {r['error']} | | | |")
            continue
        lines.append(
            f"| {r['scheme']} | {1e3 * r['seconds']:.2f} | {r['particles_per_s']:.3g} | "
            f"{r['gb_per_s_at_12_bytes']:.3g} | {100 * r['fraction_of_copy_bandwidth']:.1f}% |"
        )
    s = report["steering"]
    lines += [
        "",
        f"Steering, {s['setup']}: {s['prompts']} prompts x {s['particles_per_prompt']} particles, {s['steps']} DDIM "
        f"steps (eta 0.5), guidance {s['guidance_scale']} ({s['unet_inputs_per_call']} UNet inputs per step), reward "
        "on decoded images in chunks of 8, resampling at every step. Parts from an instrumented run (synchronised "
        "around each part), the plain step time from an uninstrumented one:",
        "",
        "| resampler | plain step (ms) | " + " | ".join(f"{p} (ms)" for p in PARTS) + " | engine + resampler "
        "| peak memory (GiB) | host syncs per step |",
        "|" + " --- |" * (len(PARTS) + 5),
    ]
    for r in s["rows"]:
        cells = [r["resampler"], f"{1e3 * r['plain_step_s']:.1f}"]
        cells += [f"{1e3 * r['parts_s'][p]:.2f}" for p in PARTS]
        cells.append(f"{100 * r['engine_and_resampler_share']:.2f}%")
        cells.append(f"{r['peak_memory_gib']:.1f}" if "peak_memory_gib" in r else "n/a")
        syncs = r.get("host_syncs_per_step")
        cells.append("n/a" if syncs is None else f"{syncs:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes, a few seconds (tests the script)")
    parser.add_argument("--device", default=None, help="default cuda (cpu with --dry-run)")
    parser.add_argument("--n", type=float, default=None, help="particles for the resampler throughput (1e8)")
    parser.add_argument("--particles", type=int, default=None, help="particles per prompt for steering (16)")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps for steering (20)")
    parser.add_argument("--no-tests", action="store_true", help="skip the CUDA test subset")
    parser.add_argument("--tests", nargs="*", default=None, help="pytest arguments replacing the default subset")
    parser.add_argument("--test-timeout", type=float, default=180.0)
    args = parser.parse_args(argv)

    import torch

    dry = args.dry_run
    device = torch.device(args.device or ("cpu" if dry else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available: run on a GPU machine, or pass --dry-run")
    if dry:
        torch.set_num_threads(1)
    n = int(args.n or (1e5 if dry else 1e8))
    particles = args.particles or (4 if dry else 16)
    steps = args.steps or (3 if dry else 20)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report: dict[str, Any] = {"command": " ".join(["python benchmarks/gpu_check.py", *(argv or sys.argv[1:])])}
    report["card"] = card(device)
    report["dry_run"] = dry
    if not args.no_tests:
        selection = (
            args.tests if args.tests is not None else (DRY_TESTS if dry else [*TEST_FILES, "-k", TEST_SELECTION])
        )
        report["tests"] = run_tests(selection, args.test_timeout)
    report["copy_bandwidth"] = copy_bandwidth(device, (8 if dry else 4096) * 2**20, repeats=3 if dry else 10)
    report["resampler_n"] = n
    report["resamplers"] = resampler_throughput(device, n, 2 if dry else 5, report["copy_bandwidth"]["gb_per_s"])
    report["steering"] = steering(device, dry, particles, args.prompts, steps)
    report["seconds"] = time.perf_counter() - start
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    text = markdown(report)
    (out / "gpu_check.md").write_text(text, encoding="utf-8")
    print(text)
    return report


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
