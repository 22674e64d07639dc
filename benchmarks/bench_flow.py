"""Flow-matching steering on the analytic Gaussian mixture: lineages, accuracy and time per resampler.

The same mixture, reward and sizes as the DDPM table of bench_fvd.py (section "Gaussian-mixture diffusion:
lineages and accuracy" of RESULTS.md), written as a flow ``x_s = (1 - s) x0 + s eps`` with its exact velocity
(GaussianMixture.flow_denoiser) and steered with the flow step (smckit.diffusion.flow.FlowStep, eta 0.5) on a uniform
grid of S levels; resampling at every step. Per resampler: distinct final lineages per group, mean ESS, the
log-evidence and its error against the exact log-normaliser, the total-variation distance of the weighted component
masses from the exact tilted masses, and the wall time per run (smckit.diagnostics.compare_resamplers, same seeds for
all). A DDPM row (50 steps, systematic) gives the reference of bench_fvd.py's table.

Run:  python benchmarks/bench_flow.py [--quick] [--steps 50] [--out flow_results.md]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import smckit
from smckit.diagnostics import compare_resamplers


def mixture_setup() -> tuple[Any, Any, Any]:
    import torch

    from smckit.diffusion import GaussianMixture

    gmm = GaussianMixture(
        [0.4, 0.3, 0.2, 0.1], [[-2.0, -2.0], [2.0, -2.0], [-2.0, 2.0], [2.0, 2.0]], 0.3, dtype=torch.float64
    )
    direction = torch.tensor([1.0, 0.5], dtype=torch.float64)
    return gmm, direction, gmm.tilted(direction, 1.0)


def model(kind: str, steps: int, groups: int, eta: float) -> Any:
    import torch

    from smckit.diffusion import NoiseSchedule, RewardSteering
    from smckit.diffusion.flow import FlowSchedule
    from smckit.diffusion.gmm import linear_reward

    gmm, direction, _ = mixture_setup()
    options: dict[str, Any] = {}
    if kind == "flow":
        schedule: Any = FlowSchedule.uniform(steps)
        denoiser = gmm.flow_denoiser(schedule)
        options["eta"] = eta
    else:
        schedule = NoiseSchedule.linear(num_steps=steps)
        denoiser = gmm.denoiser(schedule)
    return RewardSteering(
        denoiser,
        schedule,
        linear_reward(direction),
        lam=1.0,
        event_shape=(2,),
        groups=groups,
        dtype=torch.float64,
        **options,
    )


def table(steps: int, n: int, groups: int, seeds: list[int], eta: float) -> tuple[str, str]:
    import torch

    gmm, direction, target = mixture_setup()
    log_z = gmm.log_normalizer(direction, 1.0)

    def tv(result: smckit.Result) -> Any:
        masses = target.component_masses(result.particles["x"], result.log_weights)
        return 0.5 * (masses - target.weights).abs().sum(-1)

    def evidence_error(result: smckit.Result) -> Any:
        return torch.as_tensor(result.log_evidence, dtype=torch.float64) - log_z

    rows = {
        "multinomial": "multinomial",
        "systematic": "systematic",
        "stratified": "stratified",
        "residual": "residual",
        "ssp": "ssp",
        "killing": "killing",
        "fleming-viot": "fleming-viot",
        "fleming-viot, rebirth noise 0.3": ("fleming-viot", {"rebirth_noise": 0.3}),
    }
    lines = []
    for kind, label, spec, s in [("flow", k, v, steps) for k, v in rows.items()] + [
        ("ddpm", "systematic (DDPM, 50 steps)", "systematic", 50)
    ]:
        start = time.perf_counter()
        result = compare_resamplers(
            model(kind, s, groups, eta),
            n,
            resamplers={label: spec},
            seeds=seeds,
            statistics={"tv_to_exact": tv, "log_evidence_error": evidence_error},
            policy=smckit.Always(),
        )
        seconds = (time.perf_counter() - start) / len(seeds)
        md = result.to_markdown(digits=3).splitlines()
        if not lines:
            lines = [md[0][:-1] + "| seconds per run |", md[1] + " --- |"]
        lines.append(md[2] + f" {seconds:.2f} |")
        print(lines[-1], flush=True)
    exact = ", ".join(f"{w:.3f}" for w in target.weights.tolist())
    setup = (
        f"2-D mixture of 4 components (prior masses 0.4, 0.3, 0.2, 0.1; exact tilted masses {exact}), "
        f"r(x) = <(1, 0.5), x>, lam = 1, flow matching on a uniform grid of {steps} levels (FlowStep eta = {eta}), "
        f"resampling at every step, {groups} groups x {n} particles, seeds {seeds}; lineages are per group at the "
        "final step, tv_to_exact the total-variation distance of the weighted component masses, log_evidence_error "
        "the log-evidence minus the exact log-normaliser (means over groups); the last row is the DDPM sampler of "
        "bench_fvd.py"
    )
    return setup, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds instead of 4")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--eta", type=float, default=0.5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    seeds = [0, 1] if args.quick else [0, 1, 2, 3]
    setup, text = table(args.steps, 64, 16, seeds, args.eta)
    report = f"### Flow matching on the Gaussian mixture\n\n{setup}\n\n{text}\n"
    print("\n" + report)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(report)


if __name__ == "__main__":
    main()
