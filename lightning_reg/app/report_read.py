"""The sweep report, reading: each run of a multirun as a :class:`RunRecord`, from its ``metrics.json`` (and its
CSV log when the JSON has no history) and its Hydra override list.

A run's configuration is its Hydra override list minus ``seed``, ``paths.*`` and ``hydra.*`` (:func:`config_key`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
    "ReportError",
    "RunRecord",
    "config_key",
    "find_run_dirs",
    "load_run",
    "load_runs",
    "read_csv_history",
    "summarize_metrics",
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
        lightning_reg.app.report_read.ReportError: no runs found under '...': expected job directories with metrics.json ...
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
