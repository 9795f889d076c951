"""The sweep report: read every run of a multirun, group runs by configuration (ignoring the seed), compare.

``python -m lightning_reg.report <multirun dir>`` rebuilds it; the Hydra callback
:class:`~lightning_reg.app.hydra_callbacks.ReportCallback` builds it at the end of every multirun. The
functions here only read files and compute: :func:`load_runs` reads each run's ``metrics.json`` (and its
CSV log when the JSON has no history), :func:`aggregate` groups and summarizes, :func:`format_markdown`
and :func:`write_report` write ``report.md``, ``report.csv`` and ``runs.csv``. Plots live in
:mod:`lightning_reg.app.report_plots`.

A run's configuration is its Hydra override list minus ``seed``, ``paths.*`` and ``hydra.*``: the runs that
differ only in their seed form one row, and the row shows mean ± sample std (n - 1) over them.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lightning_reg.atomic import atomic_write, write_text
from lightning_reg.metrics_file import (
    FILE_NAME,
    MetricsFileError,
    RunMetrics,
    SchemaVersionError,
    read_metrics,
    upgrade,
)

__all__ = [
    "IGNORED_KEYS",
    "IGNORED_PREFIXES",
    "METRICS",
    "ConfigSummary",
    "Report",
    "ReportError",
    "RunRecord",
    "aggregate",
    "build",
    "config_key",
    "find_run_dirs",
    "format_failures",
    "format_markdown",
    "format_table",
    "load_run",
    "load_runs",
    "main",
    "make_report",
    "make_study_report",
    "mean_std",
    "pretty_override",
    "read_csv_history",
    "summarize_metrics",
    "table_rows",
    "write_csv",
    "write_report",
    "write_runs_csv",
]

#: Override keys that never define a configuration: the seed and the cross-validation fold repeat a
#: configuration (rows show mean ± std over them), paths and Hydra settings only move files around.
IGNORED_KEYS = ("seed", "data.fold")
IGNORED_PREFIXES = ("paths.", "hydra.", "hydra/")


class ReportError(ValueError):
    """A multirun directory that cannot be reported on (no runs, mixed experiments, unreadable files).

    Example:
        >>> import tempfile
        >>> load_runs(Path(tempfile.mkdtemp()))
        Traceback (most recent call last):
        ...
        lightning_reg.app.report.ReportError: no runs found under '...': expected job directories with metrics.json ...
        >>> issubclass(ReportError, ValueError)
        True
    """


@dataclass
class RunRecord:
    """One run (one Hydra job) as the report sees it.

    Metric fields are ``None`` when the run did not produce them (failed runs, no test stage).

    Example:
        >>> r = RunRecord(path=Path("0"), status="completed", seed=1, overrides=["model.dropout=0.2", "seed=1"])
        >>> r.config_key
        ('model.dropout=0.2',)
    """

    path: Path
    status: str
    seed: int | None = None
    overrides: list[str] = field(default_factory=list)
    experiment: str = ""
    job_num: int | None = None
    test_acc: float | None = None
    test_loss: float | None = None
    best_val_acc: float | None = None
    best_epoch: int | None = None
    last_epoch: int | None = None
    early_stop_epoch: int | None = None
    gap: float | None = None
    wall_s: float | None = None
    objective: float | None = None
    error: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def config_key(self) -> tuple[str, ...]:
        return config_key(self.overrides)

    @property
    def ok(self) -> bool:
        return self.status == "completed"


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


# --------------------------------------------------------------------------- pure helpers


def _key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def config_key(overrides: Sequence[str]) -> tuple[str, ...]:
    """The overrides that define a configuration: all but seed, paths.* and hydra.*, sorted."""
    keep = []
    for o in overrides:
        k = _key_of(o)
        if k in IGNORED_KEYS or k.startswith(IGNORED_PREFIXES):
            continue
        keep.append(o.lstrip("+"))
    return tuple(sorted(keep))


def pretty_override(override: str) -> str:
    """``variant/<experiment>=l2`` reads as ``l2``; every other override is shown as written."""
    key, _, value = override.partition("=")
    key = key.lstrip("+")
    if key == "variant" or key.startswith("variant/"):
        return value
    return f"{key}={value}"


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n - 1) and count of the finite values; NaN where undefined."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return math.nan, math.nan, 0
    mean = statistics.fmean(xs)
    std = statistics.stdev(xs) if len(xs) > 1 else math.nan
    return mean, std, len(xs)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)  # metrics.json writes non-finite floats as "nan"/"inf"
        except ValueError:
            return None
    return None


def summarize_metrics(metrics: RunMetrics | dict[str, Any]) -> dict[str, Any]:
    """The report's per-run numbers from one ``metrics.json`` dict (any schema version this package reads).

    * test accuracy and loss: ``test/acc``, ``test/loss``;
    * best validation accuracy: the highest ``val/acc`` in the per-epoch history, and the first epoch
      (counted from 0, as Lightning does) where it occurred;
    * last epoch: the last epoch trained (``last_epoch``; ``stopped_epoch`` in files before schema 1.0), and
      the epoch early stopping fired in (``early_stop_epoch``; ``None`` when it did not);
    * gap: ``train/acc - val/acc`` of the last epoch that logged both;
    * wall time: ``fit_seconds``.

    Example:
        >>> summarize_metrics({"test": {"test/acc": 0.9}, "history": [
        ...     {"epoch": 0, "train/acc": 0.8, "val/acc": 0.7}, {"epoch": 1, "train/acc": 1.0, "val/acc": 0.75}]})["gap"]
        0.25
    """
    metrics = upgrade(metrics)
    test = metrics.get("test") or {}
    history = metrics.get("history") or []
    out: dict[str, Any] = {
        "test_acc": _num(test.get("test/acc")),
        "test_loss": _num(test.get("test/loss")),
        "last_epoch": None,
        "early_stop_epoch": None,
        "wall_s": _num(metrics.get("fit_seconds")),
        "objective": _num(metrics.get("optimized_value")),
        "best_val_acc": None,
        "best_epoch": None,
        "gap": None,
    }
    last = _num(metrics.get("last_epoch"))
    out["last_epoch"] = int(last) if last is not None else None
    early = _num(metrics.get("early_stop_epoch"))
    out["early_stop_epoch"] = int(early) if early is not None else None
    best = None
    for row in history:
        v = _num(row.get("val/acc"))
        if v is not None and math.isfinite(v) and (best is None or v > best[0]):
            best = (v, row.get("epoch"))
    if best is not None:
        out["best_val_acc"] = best[0]
        epoch = _num(best[1])
        out["best_epoch"] = int(epoch) if epoch is not None else None
    for row in reversed(history):
        tr, va = _num(row.get("train/acc")), _num(row.get("val/acc"))
        if tr is not None and va is not None:
            out["gap"] = tr - va
            break
    if out["last_epoch"] is None and history:
        out["last_epoch"] = int(history[-1].get("epoch", len(history) - 1))
    return out


def read_csv_history(path: Path) -> list[dict[str, float]]:
    """Per-epoch rows from a Lightning ``CSVLogger`` ``metrics.csv`` (train and val rows merged by epoch)."""
    rows: dict[int, dict[str, float]] = {}
    with path.open(newline="") as fh:
        for rec in csv.DictReader(fh):
            epoch = _num(rec.get("epoch"))
            if epoch is None:
                continue
            parsed = {str(k): _num(v) for k, v in rec.items() if k not in ("epoch", "step") and v not in ("", None)}
            values = {k: v for k, v in parsed.items() if v is not None and not k.startswith("test/")}
            if not values:
                continue  # the test stage's row, or a row with nothing per-epoch
            row = rows.setdefault(int(epoch), {"epoch": float(int(epoch))})
            step = _num(rec.get("step"))
            if step is not None:
                row["step"] = max(step, row.get("step", step))
            row.update(values)
    return [rows[e] for e in sorted(rows)]


# --------------------------------------------------------------------------- reading runs


#: libyaml's safe loader when PyYAML has it (about 10x faster on the runs' ``.hydra`` files), else the Python one.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except (OSError, yaml.YAMLError):
        return None


def _job_num(run_dir: Path) -> int | None:
    hydra_yaml = _read_yaml(run_dir / ".hydra" / "hydra.yaml")
    try:
        return int(hydra_yaml["hydra"]["job"]["num"])
    except (TypeError, KeyError, ValueError):
        pass
    return int(run_dir.name) if run_dir.name.isdigit() else None


def _experiment_of(overrides: Sequence[str], config: dict[str, Any] | None) -> str:
    """The experiment a run belongs to: its ``experiment=`` override and ``task_name``; "" when unknown."""
    exp = next((o.split("=", 1)[1] for o in overrides if _key_of(o) == "experiment"), None)
    task = (config or {}).get("task_name")
    if exp and task and task != exp:
        return f"{exp} (task_name={task})"
    return str(exp or task or "")


def load_run(run_dir: Path) -> RunRecord:
    """Read one run directory: ``metrics.json``, ``.hydra/overrides.yaml`` and, when needed, ``csv/metrics.csv``.

    A job directory without ``metrics.json`` (the job was killed, or is still running) becomes a run with
    status ``"missing"``; a ``metrics.json`` with status ``"failed"`` keeps its error message, and an unreadable
    one becomes a failed run. A ``metrics.json`` of a newer schema major version raises :class:`ReportError`.
    """
    run_dir = Path(run_dir)
    overrides = _read_yaml(run_dir / ".hydra" / "overrides.yaml") or []
    metrics_path = run_dir / FILE_NAME
    metrics: dict[str, Any] = {}
    if metrics_path.is_file():
        try:
            metrics = dict(read_metrics(metrics_path))
        except SchemaVersionError as err:
            raise ReportError(str(err)) from None
        except MetricsFileError as err:
            metrics = {"status": "failed", "error": str(err)}
    else:
        metrics = {"status": "missing", "error": "no metrics.json: the job did not finish (killed, or still running)"}
    config = metrics.get("config") if isinstance(metrics.get("config"), dict) else None
    if config is None:
        config = _read_yaml(run_dir / ".hydra" / "config.yaml")
    seed = metrics.get("seed", (config or {}).get("seed"))
    status = str(metrics.get("status", "failed"))
    history = list(metrics.get("history") or [])
    csv_path = run_dir / "csv" / "metrics.csv"
    if csv_path.is_file():
        # The CSV log covers failed runs too, and every epoch even where metrics.json's history was restored
        # from an earlier (best) checkpoint by the test stage; use whichever covers more epochs.
        csv_history = read_csv_history(csv_path)
        if len(csv_history) > len(history):
            history = csv_history
    numbers = summarize_metrics({**metrics, "history": history}) if status == "completed" else {}
    error = metrics.get("error")
    if status != "completed" and not error:
        error = f"run status is {status!r}"
    return RunRecord(
        path=run_dir,
        status=status,
        seed=int(seed) if isinstance(seed, int) else None,
        overrides=[str(o) for o in overrides],
        experiment=_experiment_of([str(o) for o in overrides], config),
        job_num=_job_num(run_dir),
        error=error,
        history=history,
        **numbers,
    )


def find_run_dirs(root: Path) -> list[Path]:
    """Every directory under ``root`` (itself included) holding ``metrics.json`` or a Hydra job's overrides."""
    root = Path(root)
    dirs = {p.parent for p in root.rglob("metrics.json")}
    dirs |= {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")}
    # A multirun's own .hydra (none is written at the sweep level) or the sweep root without runs is not a run.
    return sorted(dirs, key=lambda d: (len(d.parts), _natural(d)))


def _natural(path: Path) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in path.parts]


def load_runs(root: Path) -> list[RunRecord]:
    """All runs under ``root``; raises :class:`ReportError` if there are none or they mix experiments."""
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"multirun directory {str(root)!r} does not exist or is not a directory.")
    runs = [load_run(d) for d in find_run_dirs(root)]
    if not runs:
        raise ReportError(
            f"no runs found under {str(root)!r}: expected job directories with metrics.json or .hydra/overrides.yaml "
            "(pass the directory a multirun wrote, e.g. outputs/<task>/multiruns/<time>)."
        )
    experiments: dict[str, int] = {}
    for r in runs:
        if r.experiment:  # a job killed before Hydra wrote its config cannot tell; it joins the others
            experiments[r.experiment] = experiments.get(r.experiment, 0) + 1
    if len(experiments) > 1:
        listing = ", ".join(f"{name!r} ({n} runs)" for name, n in sorted(experiments.items()))
        raise ReportError(
            f"{str(root)!r} mixes runs of different experiments: {listing}. A report compares the configurations "
            "of one experiment; point it at one multirun directory."
        )
    name = next(iter(experiments), "train")
    for r in runs:
        r.experiment = r.experiment or name
    return runs


# --------------------------------------------------------------------------- aggregation


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


# --------------------------------------------------------------------------- writers


def _fmt(x: float, digits: int = 4, sign: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _pm(c: ConfigSummary, metric: str, digits: int = 4) -> str:
    m, s = c.mean[metric], c.std[metric]
    if not math.isfinite(m):
        return "—"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if math.isfinite(s) else f"{m:.{digits}f}"


def _epoch(c: ConfigSummary, metric: str) -> str:
    m = c.mean[metric]
    if not math.isfinite(m):
        return "—"
    return str(int(m)) if float(m).is_integer() else f"{m:.1f}"


TABLE_HEADER = (
    "#",
    "configuration",
    "runs",
    "test acc",
    "Δ vs baseline",
    "Δ / σ_base",
    "test loss",
    "best val acc",
    "best epoch",
    "last epoch",
    "train−val gap",
    "wall s",
)


def table_rows(report: Report) -> list[list[str]]:
    """The report table as strings, one row per configuration, best mean test accuracy first."""
    rows = []
    for i, c in enumerate(report.configs, 1):
        runs = f"{c.n_ok}/{len(c.runs)}" + (f" ({c.n_failed} failed)" if c.n_failed else "")
        rows.append(
            [
                str(i),
                c.label + (" **(baseline)**" if c.is_baseline else ""),
                runs,
                _pm(c, "test_acc"),
                _fmt(c.delta, sign=True) if report.baseline else "—",
                _fmt(c.delta_in_std, 2, sign=True) if report.baseline else "—",
                _pm(c, "test_loss"),
                _pm(c, "best_val_acc"),
                _epoch(c, "best_epoch"),
                _epoch(c, "last_epoch"),
                _pm(c, "gap", 3),
                _fmt(c.mean["wall_s"], 1),
            ]
        )
    return rows


def format_table(report: Report) -> str:
    """The configuration table in Markdown (also what the end of a multirun prints)."""
    rows = table_rows(report)
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "|".join("---" for _ in TABLE_HEADER) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def format_failures(report: Report) -> str:
    lines = []
    for r in report.failed:
        err = (r.error or "").strip().splitlines()
        first = err[0] if err else ""
        label = next((c.label for c in report.configs if r in c.runs), "")
        lines.append(f"- `{r.path}` ({label}, seed {r.seed}, status {r.status}): {first}")
    return "\n".join(lines)


def format_markdown(report: Report, plots: Sequence[Path] = ()) -> str:
    """The whole ``report.md``."""
    n_ok = sum(r.ok for r in report.runs)
    parts = [
        f"# Sweep report: {report.experiment}",
        "",
        f"Source: `{report.root}`: {len(report.runs)} runs in {len(report.configs)} configurations "
        f"({n_ok} completed, {len(report.runs) - n_ok} failed); sweeper: {report.sweeper}.",
    ]
    if report.common_overrides:
        parts.append("Common to every configuration: " + ", ".join(f"`{o}`" for o in report.common_overrides) + ".")
    parts += [
        "",
        "Mean ± sample std (n − 1) over the completed runs of each configuration (runs differing only in `seed`). "
        "Best val acc is the highest `val/acc` of an epoch and best epoch where it occurred; last epoch is the "
        "last epoch trained, whatever ended the fit (epochs count from 0); the gap is `train/acc − val/acc` at the last epoch; wall s is "
        "the mean fit time. "
        + (
            f"Δ is the difference in mean test accuracy from the baseline `{report.baseline.label}`, and Δ / σ_base "
            "that difference in units of the baseline's std."
            if report.baseline
            else "No baseline configuration was found (name one with `--baseline`)."
        ),
        "",
        format_table(report),
    ]
    if report.best_trial:
        parts += [
            "",
            f"Optuna best trial ({report.direction or 'maximize'} `{report.optimized_metric}`): "
            f"value {report.best_trial.get('value')}, params `{report.best_trial.get('params')}`.",
        ]
    if report.failed:
        parts += ["", f"## Failed runs ({len(report.failed)})", "", format_failures(report)]
    if plots:
        parts += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(parts) + "\n"


def _csv_num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def write_csv(report: Report, path: Path) -> None:
    """One row per configuration, the numbers unrounded (``report.csv``)."""
    with atomic_write(path, newline="") as fh:
        w = csv.writer(fh)
        stat_cols = [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
        w.writerow(
            [
                "rank",
                "configuration",
                "baseline",
                "runs",
                "failed",
                *stat_cols,
                "delta_test_acc",
                "delta_in_baseline_std",
                "seeds",
                "overrides",
            ]
        )
        for i, c in enumerate(report.configs, 1):
            stats = [_csv_num(getattr(c, s)[m]) for m in METRICS for s in ("mean", "std")]
            w.writerow(
                [
                    i,
                    c.label,
                    int(c.is_baseline),
                    len(c.runs),
                    c.n_failed,
                    *stats,
                    _csv_num(c.delta),
                    _csv_num(c.delta_in_std),
                    " ".join(str(s) for s in c.seeds),
                    " ".join(c.key),
                ]
            )


def write_runs_csv(report: Report, path: Path) -> None:
    """One row per run (``runs.csv``), so every table entry can be traced back."""
    with atomic_write(path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["configuration", "run_dir", "status", "seed", *METRICS, "error"])
        for c in report.configs:
            for r in c.runs:
                err = (r.error or "").strip().splitlines()
                w.writerow(
                    [
                        c.label,
                        str(r.path),
                        r.status,
                        r.seed,
                        *(_csv_num(getattr(r, m)) for m in METRICS),
                        err[0] if err else "",
                    ]
                )


def write_report(report: Report, out_dir: Path | None = None, plots: bool = True) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv``, ``runs.csv`` and (with matplotlib) PNG plots into ``out_dir``."""
    out = Path(out_dir or report.root)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    pngs: list[Path] = []
    if plots:
        from lightning_reg.app import report_plots
        from lightning_reg.plotting import MissingMatplotlib

        try:
            pngs = report_plots.plot_all(report, out)
        except MissingMatplotlib as err:
            print(f"lightning_reg.report: {err}", file=sys.stderr)
    for p in pngs:
        files[p.stem] = p
    files["report.md"] = out / "report.md"
    write_text(files["report.md"], format_markdown(report, pngs))
    files["report.csv"] = out / "report.csv"
    write_csv(report, files["report.csv"])
    files["runs.csv"] = out / "runs.csv"
    write_runs_csv(report, files["runs.csv"])
    return files


def make_report(
    root: Path,
    out_dir: Path | None = None,
    baseline: str | None = None,
    plots: bool = True,
    echo: bool = True,
    interrupted: str | None = None,
) -> Report:
    """Build the report for the multirun at ``root``, write its files and (``echo``) print the table.

    ``interrupted``: the multirun did not run to its end; ``report.md`` says so (with this reason) at the top.

    Example:
        >>> make_report("outputs/regularizers_digits/multiruns/2025-01-01_00-00-00")  # doctest: +SKIP
    """
    found = _study_in(Path(root))
    if found is not None:
        return make_study_report(*found, out_dir=Path(out_dir or root), plots=plots, echo=echo)
    report = build(Path(root), baseline=baseline)
    files = write_report(report, out_dir, plots=plots)
    if interrupted:
        note = (
            f"**This multirun was {interrupted}.** The report covers the runs that finished; jobs that "
            "did not finish are listed as failed (no metrics.json), and jobs never started are missing."
        )
        md = files["report.md"]
        title, _, rest = md.read_text().partition("\n")
        write_text(md, f"{title}\n\n{note}\n{rest}")
        if echo:
            print(f"\nlightning_reg report: {note}", flush=True)
    if echo:
        n_failed = len(report.failed)
        print(
            f"\nlightning_reg report: {report.experiment}, {len(report.runs)} runs, "
            f"{len(report.configs)} configurations" + (f", {n_failed} FAILED" if n_failed else ""),
            flush=True,
        )
        print(format_table(report), flush=True)
        if n_failed:
            print("\nFailed runs:\n" + format_failures(report), flush=True)
        print("\n" + "written: " + ", ".join(str(p) for p in files.values()), flush=True)
    return report


def _study_in(root: Path) -> tuple[str, str] | None:
    """The Optuna study of a lightning_reg sweep directory, when it is one (needs optuna)."""
    if not (root / "optuna.db").is_file() and "lightning_reg_optuna" not in (
        (root / "multirun.yaml").read_text() if (root / "multirun.yaml").is_file() else ""
    ):
        return None
    from lightning_reg.study.report import study_of_sweep_dir

    return study_of_sweep_dir(root)


def make_study_report(storage: str, study: str, out_dir: Path, plots: bool = True, echo: bool = True) -> Any:
    """Write the report of an Optuna study (from any storage) into ``out_dir`` and print its trial table."""
    from lightning_reg.study.report import format_study_markdown, load_study_report, write_study_report

    try:
        rep = load_study_report(storage, study)
    except ValueError as err:
        raise ReportError(str(err)) from None
    files = write_study_report(rep, out_dir, plots=plots)
    if echo:
        print("\n" + format_study_markdown(rep).split("\n## Plots")[0].strip(), flush=True)
        print("\nwritten: " + ", ".join(str(p) for p in files.values()), flush=True)
    return rep


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lightning_reg.report <multirun dir> [--out DIR] [--baseline LABEL] [--no-plots]``."""
    parser = argparse.ArgumentParser(
        prog="python -m lightning_reg.report",
        description="Rebuild the comparison report (report.md, report.csv, runs.csv, plots) of a Hydra multirun.",
    )
    parser.add_argument(
        "multirun_dir",
        type=Path,
        nargs="?",
        default=None,
        help="directory a multirun wrote (holds one folder per job); an Optuna sweep's study is found through it",
    )
    parser.add_argument(
        "--storage", default=None, help="an Optuna study's storage URL (with --study), from any machine"
    )
    parser.add_argument("--study", default=None, help="the study's name in --storage")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: multirun_dir)")
    parser.add_argument("--baseline", default=None, help="label or override of the baseline configuration")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)
    if (args.storage is None) != (args.study is None):
        parser.error("--storage and --study go together")
    if args.storage is None and args.multirun_dir is None:
        parser.error("give a multirun directory, or --storage URL --study NAME")
    try:
        if args.storage is not None:
            make_study_report(
                args.storage, args.study, out_dir=args.out or args.multirun_dir or Path("."), plots=not args.no_plots
            )
        else:
            make_report(args.multirun_dir, out_dir=args.out, baseline=args.baseline, plots=not args.no_plots)
    except (ReportError, ValueError) as err:
        print(f"lightning_reg.report: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
