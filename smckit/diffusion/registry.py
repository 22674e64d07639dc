"""Registers the diffusion adapter's potentials and proposals through smckit's plugin hooks.

Potentials: ``diff``, ``max``, ``sum``, ``rt`` (:mod:`smckit.diffusion.potentials`). Proposals: ``ddpm``,
``ddim``, ``guided`` (:mod:`smckit.diffusion.transitions`) and ``flow`` (:mod:`smckit.diffusion.flow`). This
module imports neither torch nor the modules it registers: each factory imports its class on first use.
"""

from __future__ import annotations

from typing import Any

from smckit.plugins.hooks import hookimpl

__all__ = ["smckit_register_potentials", "smckit_register_proposals"]


def _lazy(module: str, name: str) -> Any:
    def factory(**options: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(f"smckit.diffusion.{module}"), name)(**options)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"Create smckit.diffusion.{module}.{name} (imported on first use)."
    return factory


@hookimpl
def smckit_register_potentials(register: Any) -> None:
    """Register the reward potentials ``diff``, ``max``, ``sum`` and ``rt``."""
    register(
        "diff",
        _lazy("potentials", "DiffPotential"),
        aliases=("difference",),
        description="lam * (r(x0_hat_t) - r(x0_hat_t+1)): telescopes to lam * r(x0)",
    )
    register("max", _lazy("potentials", "MaxPotential"), description="lam * running max of r(x0_hat) (FK steering)")
    register("sum", _lazy("potentials", "SumPotential"), description="lam * running sum of r(x0_hat) (FK steering)")
    register("rt", _lazy("potentials", "RtPotential"), description="lam * r(x0_hat_t) at every step (FK steering)")


@hookimpl
def smckit_register_proposals(register: Any) -> None:
    """Register the reverse steps ``ddpm``, ``ddim`` and ``flow`` and the gradient-guided ``guided`` proposal."""
    register("ddpm", _lazy("transitions", "DDPM"), description="ancestral DDPM step (variance='small'|'large')")
    register("ddim", _lazy("transitions", "DDIM"), description="DDIM step with stochasticity eta in [0, 1]")
    register(
        "flow",
        _lazy("flow", "FlowStep"),
        description="flow-matching step x' = (1-s') x0 + sqrt(s'^2 - c^2) eps + c z (eta in [0, 1]; eta=0: Euler)",
    )
    register(
        "guided",
        _lazy("transitions", "Guided"),
        aliases=("twisted",),
        description="reward-gradient mean shift with its importance correction (base, scale, gradient='x0'|'denoiser')",
    )
