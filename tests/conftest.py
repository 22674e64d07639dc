"""Shared fixtures: backends, dtypes and hypothesis profiles."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# CI uses a deterministic, derandomised profile so that a run never flakes; locally hypothesis explores.
settings.register_profile("ci", derandomize=True, max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


try:  # torch's intra-op threads fight each other on small CI machines; tests use small tensors anyway
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is an optional dependency
    pass

BACKENDS = ["numpy", "torch"]
DTYPES = ["float64", "float32"]


class Backend:
    """A tiny adapter that builds arrays of one backend and dtype, so tests are written once."""

    def __init__(self, name: str, dtype: str):
        self.name = name
        self.dtype_name = dtype
        if name == "torch":
            import torch

            self.xp = torch
            self.dtype = getattr(torch, dtype)
        else:
            self.xp = np
            self.dtype = np.dtype(dtype)

    def asarray(self, x, dtype=None):
        if self.name == "torch":
            import torch

            return torch.as_tensor(np.asarray(x), dtype=dtype or self.dtype)
        return np.asarray(x, dtype=dtype or self.dtype)

    def to_numpy(self, x):
        return x.detach().cpu().numpy() if self.name == "torch" else np.asarray(x)

    def like(self):
        """A zero-size array fixing backend, device and dtype for RNG draws (``rng.normal(..., like=...)``)."""
        return self.asarray(np.zeros(0))

    def __repr__(self) -> str:
        return f"{self.name}-{self.dtype_name}"


@pytest.fixture(params=[(b, d) for b in BACKENDS for d in DTYPES], ids=lambda p: f"{p[0]}-{p[1]}")
def backend(request) -> Backend:
    """Every backend (numpy, torch CPU) in float64 and float32."""
    if request.param[0] == "torch":
        pytest.importorskip("torch")
    return Backend(*request.param)


@pytest.fixture(params=BACKENDS)
def backend64(request) -> Backend:
    """Every backend in float64 (for tests whose tolerances need double precision)."""
    if request.param == "torch":
        pytest.importorskip("torch")
    return Backend(request.param, "float64")


# -- plugin state (test_cli.py and test_plugins.py) ------------------------------------------------------------
PLUGIN_FIXTURES = Path(__file__).resolve().parent / "plugin_fixtures"


@pytest.fixture
def clean_plugins(monkeypatch):
    """A fresh, environment-independent plugin state for a test; restored afterwards."""
    from smckit.plugins import loader

    for var in (loader.ENV_STRICT, loader.ENV_DISABLE_AUTOLOAD):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(loader, "_entry_points", lambda: [])
    loader.reset()
    yield
    loader.reset()


@pytest.fixture
def fake(monkeypatch, tmp_path, clean_plugins):
    """Fake distributions (see smckit_fixture_support) and a fake built-in instead of smckit's own."""
    from smckit.plugins import loader

    monkeypatch.syspath_prepend(str(PLUGIN_FIXTURES))
    import smckit_fixture_support as support

    monkeypatch.setattr(loader, "BUILTIN_MODULES", ("smckit_fixture_builtin",))
    return support.FakePlugins(tmp_path / "site", monkeypatch)
