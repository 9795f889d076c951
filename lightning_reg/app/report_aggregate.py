"""The sweep report, aggregation: runs grouped by configuration (ignoring the seed), mean ± sample std (n - 1) per
metric, ranked by mean test accuracy and compared to a baseline (:func:`aggregate`); :func:`build` reads and aggregates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_reg.app.report_read import ReportError, RunRecord, _read_yaml, load_runs
from lightning_reg.reporting import mean_std

__all__ = ["METRICS", "ConfigSummary", "Report", "aggregate", "build", "pretty_override"]


@dataclass
class ConfigSummary:
    """All runs of one configuration and their statistics (``mean``/``std`` keyed by metric name).

    Example:
        >>> runs = [RunRecord(Path("0"), "completed", seed=1, overrides=["model.dropout=0.5", "seed=1"], test_acc=0.9),
        ...         RunRecord(Path("1"), "failed", seed=2, overrides=["model.dropout=0.5", "seed=2"], error="boom")]
        >>> (summary,) = aggregate(runs).configs  # the seeds differ only: one configuration
        >>> summary.label, summary.seeds, summary.n_ok, summary.n_failed, summary.mean["test_acc"]
        ('model.dropout=0.5', [1, 2], 1, 1, 0.9)
    """

    key: tuple[str, ...]
    label: str
    runs: list[RunRecord]
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    is_baseline: bool = False
    delta: float = math.nan
    delta_in_std: float = math.nan

    @property
    def n_ok(self) -> int:
        return sum(r.ok for r in self.runs)

    @property
    def n_failed(self) -> int:
        return len(self.runs) - self.n_ok

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]


@dataclass
class Report:
    """The aggregated sweep: configurations ranked by mean test accuracy, plus sweep-level facts.

    Example:
        >>> rep = aggregate([RunRecord(Path("0"), "completed", overrides=["variant/x=baseline"], test_acc=0.8),
        ...                  RunRecord(Path("1"), "completed", overrides=["variant/x=l2"], test_acc=0.85),
        ...                  RunRecord(Path("2"), "missing", overrides=["variant/x=dropout"])])
        >>> [c.label for c in rep.configs], rep.baseline.label, [str(r.path) for r in rep.failed]
        (['l2', 'baseline', 'dropout'], 'baseline', ['2'])
    """

    root: Path
    experiment: str
    runs: list[RunRecord]
    configs: list[ConfigSummary]
    common_overrides: list[str]
    baseline: ConfigSummary | None
    sweeper: str = "basic"
    direction: str | None = None
    optimized_metric: str | None = None
    best_trial: dict[str, Any] | None = None

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.runs if not r.ok]


METRICS = ("test_acc", "test_loss", "best_val_acc", "best_epoch", "last_epoch", "gap", "wall_s", "objective")


def pretty_override(override: str) -> str:
    """``variant/<experiment>=l2`` reads as ``l2``; every other override is shown as written."""
    key, _, value = override.partition("=")
    key = key.lstrip("+")
    if key == "variant" or key.startswith("variant/"):
        return value
    return f"{key}={value}"


def _labels(keys: Sequence[tuple[str, ...]]) -> tuple[dict[tuple[str, ...], str], list[str]]:
    """Label each configuration by the overrides that vary between configurations."""
    if not keys:
        return {}, []
    common = set(keys[0]).intersection(*map(set, keys[1:])) if len(keys) > 1 else set()
    labels = {}
    for k in keys:
        varying = [pretty_override(o) for o in k if o not in common]
        labels[k] = ", ".join(varying) if varying else (", ".join(map(pretty_override, k)) or "(defaults)")
    common_list = sorted(common) if len(keys) > 1 else list(keys[0])
    return labels, common_list


def _find_baseline(configs: Sequence[ConfigSummary], baseline: str | None) -> ConfigSummary | None:
    if baseline is not None:
        for c in configs:
            if baseline == c.label or baseline in c.key or baseline in map(pretty_override, c.key):
                return c
        labels = ", ".join(repr(c.label) for c in configs)
        raise ReportError(f"`baseline` must name one of the configurations {labels}; got {baseline!r}.")
    for c in configs:
        if "baseline" in map(pretty_override, c.key):
            return c
    return None


def aggregate(runs: Sequence[RunRecord], baseline: str | None = None, root: Path | None = None) -> Report:
    """Group ``runs`` by configuration, compute mean ± std per metric, rank by test accuracy, compare to baseline.

    ``baseline`` names the baseline configuration (its label or one of its overrides); by default it is
    the configuration with a ``variant…=baseline`` override, if any. Each row's ``delta`` is its mean test
    accuracy minus the baseline's, and ``delta_in_std`` is that difference divided by the baseline's std.

    Example:
        >>> runs = [RunRecord(Path(str(i)), "completed", seed=s, overrides=[f"variant/x={v}", f"seed={s}"],
        ...                   test_acc=a) for i, (v, s, a) in enumerate(
        ...         [("baseline", 1, 0.80), ("baseline", 2, 0.82), ("l2", 1, 0.85), ("l2", 2, 0.87)])]
        >>> rep = aggregate(runs)
        >>> [(c.label, round(c.mean["test_acc"], 2), round(c.delta_in_std, 2)) for c in rep.configs]
        [('l2', 0.86, 3.54), ('baseline', 0.81, 0.0)]
    """
    groups: dict[tuple[str, ...], list[RunRecord]] = {}
    for r in runs:
        groups.setdefault(r.config_key, []).append(r)
    labels, common = _labels(list(groups))
    configs = []
    for key, members in groups.items():
        c = ConfigSummary(key=key, label=labels[key], runs=sorted(members, key=lambda r: (r.seed is None, r.seed or 0)))
        ok = [r for r in members if r.ok]
        for m in METRICS:
            c.mean[m], c.std[m], _ = mean_std([getattr(r, m) for r in ok])
        configs.append(c)
    configs.sort(
        key=lambda c: (
            math.isnan(c.mean["test_acc"]),
            -c.mean["test_acc"] if not math.isnan(c.mean["test_acc"]) else 0,
            c.label,
        )
    )
    base = _find_baseline(configs, baseline)
    if base is not None:
        base.is_baseline = True
        b_mean, b_std = base.mean["test_acc"], base.std["test_acc"]
        for c in configs:
            c.delta = c.mean["test_acc"] - b_mean
            c.delta_in_std = c.delta / b_std if b_std and math.isfinite(b_std) and b_std > 0 else math.nan
    return Report(
        root=Path(root) if root else Path("."),
        experiment=runs[0].experiment if runs else "",
        runs=list(runs),
        configs=configs,
        common_overrides=common,
        baseline=base,
    )


def _sweep_info(report: Report) -> None:
    """Fill in the sweeper, direction and best trial from the multirun's own files, where present."""
    for candidate in [report.root, *report.root.parents][:3]:
        multirun = _read_yaml(candidate / "multirun.yaml")
        if isinstance(multirun, dict):
            sweeper = (multirun.get("hydra") or {}).get("sweeper") or {}
            target = str(sweeper.get("_target_", ""))
            report.sweeper = "optuna" if "optuna" in target.lower() else "basic"
            report.direction = sweeper.get("direction") if report.sweeper == "optuna" else None
            report.optimized_metric = multirun.get("optimized_metric")
            break
    results = _read_yaml(report.root / "optimization_results.yaml")
    if isinstance(results, dict):
        report.sweeper = "optuna"
        report.best_trial = {"params": results.get("best_params"), "value": results.get("best_value")}


def build(root: Path, baseline: str | None = None) -> Report:
    """Load and aggregate every run under ``root``."""
    report = aggregate(load_runs(root), baseline=baseline, root=Path(root))
    _sweep_info(report)
    return report
