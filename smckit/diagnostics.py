"""Compare resampling schemes on one model: the same seeds, one table of diversity, ESS, evidence and statistics.

:func:`compare_resamplers` runs a model under several resamplers with the same list of seeds and tabulates,
per resampler, the distinct lineages left at the final step, the mean ESS, the mean and standard deviation of the
log-evidence and any user-supplied statistics of the final weighted sample. :func:`distinct_lineages` is the
diversity figure of one run.

Example
-------
>>> import numpy as np, smckit
>>> from smckit.diagnostics import compare_resamplers
>>> from smckit.models import LinearGaussian, Bootstrap
>>> ssm = LinearGaussian.scalar(rho=0.9, sigma_x=1.0, sigma_y=0.5)
>>> _, y = ssm.simulate(20, seed=1)
>>> table = compare_resamplers(Bootstrap(ssm, y), 200, resamplers={"sys": "systematic", "mult": "multinomial"},
...                            seeds=range(3), policy=smckit.Always())
>>> [row["resampler"] for row in table.rows]
['sys', 'mult']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smckit.engine import run
from smckit.errors import InvalidArgumentError
from smckit.history import Result
from smckit.model import FeynmanKac
from smckit.policy import Policy

__all__ = ["Comparison", "compare_resamplers", "distinct_lineages"]

BASE_COLUMNS = (
    "resampler",
    "runs",
    "lineages",
    "lineages_sd",
    "ess",
    "ess_fraction",
    "log_evidence",
    "log_evidence_sd",
)

ResamplerSpec = Any
"""A registered name, ``(name, options)``, a resampler object, or a zero-argument factory returning one."""


def distinct_lineages(result: Result, step: int = -1) -> np.ndarray:
    """Number of distinct step-0 ancestors among the particles at ``step`` (default: the last), per row.

    Parameters
    ----------
    result : Result
        A run made with ``history="ancestors"`` or ``"full"``.
    step : int
        The step to look at (negative counts from the end).

    Returns
    -------
    ndarray of int64, shape (*batch,)

    Raises
    ------
    ValueError
        If the run kept no ancestors.
    """
    return np.asarray(result.history.lineages()[step])


@dataclass
class Comparison:
    """The table made by :func:`compare_resamplers`: one row (a dict) per resampler.

    Attributes
    ----------
    rows : list of dict
        Keys: ``resampler`` (the label), ``runs``, ``lineages`` (mean distinct final lineages over seeds and
        batch rows), ``lineages_sd``, ``ess`` (mean ESS over steps, rows and seeds), ``ess_fraction``
        (``ess / n``), ``log_evidence`` (mean over seeds and rows), ``log_evidence_sd`` (standard deviation over
        seeds and rows), and per statistic ``name`` the mean and ``name_sd`` the standard deviation over seeds.
    columns : list of str
        The keys in display order.
    n : int
        Particles per population.
    seeds : list
        The seeds every resampler ran with.
    per_seed : dict
        Label -> list (one per seed) of dicts with the same quantities for each run, for further analysis.
    """

    rows: list[dict[str, Any]]
    columns: list[str]
    n: int
    seeds: list[Any]
    per_seed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __getitem__(self, label: str) -> dict[str, Any]:
        """The row of the resampler labelled ``label``."""
        for row in self.rows:
            if row["resampler"] == label:
                return row
        raise KeyError(f"no resampler labelled {label!r}; the table has {[r['resampler'] for r in self.rows]}")

    def column(self, name: str) -> list[Any]:
        """The values of one column, in row order."""
        return [row[name] for row in self.rows]

    def to_markdown(self, digits: int = 4) -> str:
        """The table as GitHub-flavoured Markdown, numbers with ``digits`` significant digits."""
        head = "| " + " | ".join(self.columns) + " |"
        rule = "| " + " | ".join("---" for _ in self.columns) + " |"
        body = ["| " + " | ".join(_fmt(row.get(c), digits) for c in self.columns) + " |" for row in self.rows]
        return "\n".join([head, rule, *body])

    def __str__(self) -> str:
        return self.to_markdown()


def compare_resamplers(
    model: FeynmanKac,
    n: int,
    *,
    resamplers: Mapping[str, ResamplerSpec],
    seeds: Iterable[Any] = (0,),
    statistics: Mapping[str, Callable[[Result], Any]] | None = None,
    policy: Policy | None = None,
) -> Comparison:
    """Run ``model`` under each resampler with the same seeds and tabulate the outcome.

    Parameters
    ----------
    model : FeynmanKac
        The model; each run starts from it afresh (its methods must not keep state across runs).
    n : int
        Particles per population (batch row).
    resamplers : mapping label -> spec
        A spec is a registered name (``"systematic"``), a pair ``(name, options)`` given to
        :func:`smckit.plugins.make_resampler`, a zero-argument factory returning a resampler, or a resampler
        object. Names, pairs and factories build a fresh resampler for every run, so stateful schemes (an
        adaptive Fleming-Viot controller) start each seed alike; an object is reused, after calling its
        ``reset()`` if it has one.
    seeds : iterable
        The seeds; every resampler runs once per seed with exactly these.
    statistics : mapping name -> callable, optional
        Each maps a :class:`~smckit.Result` to a number or an array of shape ``(*batch,)`` (averaged over the
        batch), e.g. ``lambda r: r.estimate(lambda x: x[..., 0])``. Mean and standard deviation over seeds are
        tabulated.
    policy : Policy, optional
        The resampling policy of every run (the model's default if ``None``).

    Returns
    -------
    Comparison
        One row per resampler, in the order given.

    Raises
    ------
    InvalidArgumentError
        If ``resamplers`` or ``seeds`` is empty, or a spec has an unusable type.
    """
    seeds = list(seeds)
    if not resamplers:
        raise InvalidArgumentError("compare_resamplers needs at least one resampler: resamplers={'label': spec}")
    if not seeds:
        raise InvalidArgumentError("compare_resamplers needs at least one seed")
    statistics = dict(statistics or {})
    clash = (set(statistics) | {f"{k}_sd" for k in statistics}) & set(BASE_COLUMNS)
    if clash:
        raise InvalidArgumentError(f"statistic names {sorted(clash)} clash with the table's own columns")

    rows: list[dict[str, Any]] = []
    per_seed: dict[str, list[dict[str, Any]]] = {}
    for label, spec in resamplers.items():
        runs = []
        for seed in seeds:
            result = run(model, n, resampler=_build(spec, label), policy=policy, seed=seed)
            runs.append(_summarise(result, statistics))
        per_seed[label] = runs
        rows.append(_aggregate(label, runs, int(n), statistics))
    columns = list(BASE_COLUMNS)
    for name in statistics:
        columns += [name, f"{name}_sd"]
    return Comparison(rows=rows, columns=columns, n=int(n), seeds=seeds, per_seed=per_seed)


# -- helpers ------------------------------------------------------------------------------------------------
def _build(spec: ResamplerSpec, label: str) -> Any:
    if isinstance(spec, str):
        return spec  # the engine builds a fresh object from the registry
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], Mapping):
        from smckit.plugins import make_resampler

        return make_resampler(spec[0], **dict(spec[1]))
    if hasattr(spec, "capabilities") and callable(spec):
        reset = getattr(spec, "reset", None)
        if callable(reset):
            reset()
        return spec
    if callable(spec):
        return spec()
    raise InvalidArgumentError(
        f"resampler {label!r}: expected a name, a (name, options) pair, a factory or a resampler object, "
        f"got {type(spec).__name__}"
    )


def _host(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)


def _summarise(result: Result, statistics: Mapping[str, Callable[[Result], Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "lineages": float(np.mean(distinct_lineages(result))),
        "ess": float(np.mean(result.history.ess)),
        "log_evidence": _host(result.log_evidence).ravel(),
    }
    for name, fn in statistics.items():
        out[name] = float(np.mean(_host(fn(result))))
    return out


def _aggregate(label: str, runs: list[dict[str, Any]], n: int, statistics: Mapping[str, Any]) -> dict[str, Any]:
    def sd(values: np.ndarray) -> float:
        return float(np.std(values, ddof=1)) if values.size > 1 else math.nan

    lineages = np.array([r["lineages"] for r in runs])
    ess = np.array([r["ess"] for r in runs])
    evidence = np.concatenate([r["log_evidence"] for r in runs])
    row: dict[str, Any] = {
        "resampler": label,
        "runs": len(runs),
        "lineages": float(lineages.mean()),
        "lineages_sd": sd(lineages),
        "ess": float(ess.mean()),
        "ess_fraction": float(ess.mean()) / n,
        "log_evidence": float(evidence.mean()),
        "log_evidence_sd": sd(evidence),
    }
    for name in statistics:
        values = np.array([r[name] for r in runs])
        row[name] = float(values.mean())
        row[f"{name}_sd"] = sd(values)
    return row


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}g}"
    return str(value)
