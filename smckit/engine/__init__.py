"""The SMC engine: one loop (:mod:`~smckit.engine.loop`) over a population (:mod:`~smckit.engine.population`),
with its checks (:mod:`~smckit.engine.checks`) and records (:mod:`~smckit.engine.recorder`)."""

from smckit.engine.loop import SMC, Step, run
from smckit.engine.population import Local, Moved, Population
from smckit.engine.recorder import HISTORY_MODES, Recorder

__all__ = ["SMC", "Step", "run", "Population", "Local", "Moved", "Recorder", "HISTORY_MODES"]
