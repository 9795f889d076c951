"""The schema of a run's ``metrics.json``: written by ``lightning_reg.app.train``, read by the report, the study report
and the run-directory checks. :func:`summarize_run` builds the record from what fit and test left
(:class:`FitResult`, :class:`Evaluation`).

One :class:`RunMetrics` mapping (a ``TypedDict``, so the file stays plain JSON and :func:`lightning_reg.app.train.train`
keeps returning a dict) with a ``schema_version`` ``"MAJOR.MINOR"``. A reader accepts every minor version of
the major versions it knows (new minor versions only add fields) and files written before the field existed
(read as version ``"0.0"`` and upgraded: see :func:`upgrade`); it refuses a newer major version with
:class:`SchemaVersionError`.

Epoch fields (epochs count from 0, as Lightning does), two distinct meanings:

* ``last_epoch``: the last epoch trained, whatever ended the fit (``max_epochs``, early stopping, pruning,
  a time limit). Files before schema 1.0 called it ``stopped_epoch``.
* ``early_stop_epoch``: the epoch in which an early-stopping callback decided to stop, ``None`` when none did.
  It is the ``stopped_epoch`` of :class:`~lightning_reg.EarlyStopping`'s own summary (under ``callbacks``), or
  of Lightning's ``EarlyStopping``; the earliest when several stopped. When early stopping ended the fit it
  is the same epoch as ``last_epoch`` (a stop that ``min_epochs`` defers counts in the epoch it takes effect);
  ``last_epoch`` alone does not tell an early stop from a fit that ran to ``max_epochs``.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "metrics.json"
    >>> _ = write_metrics(path, {"status": "completed", "last_epoch": 4, "fit_seconds": float("nan")})
    >>> record = read_metrics(path)
    >>> record["schema_version"], record["last_epoch"], record["fit_seconds"]
    ('1.0', 4, 'nan')
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from typing_extensions import Required, TypedDict

from lightning_reg.atomic import write_text
from lightning_reg.errors import mask_secrets

__all__ = [
    "FILE_NAME",
    "LEGACY_VERSION",
    "SCHEMA_VERSION",
    "STATUSES",
    "BestRecord",
    "Evaluation",
    "FitResult",
    "MetricsFileError",
    "RunMetrics",
    "SchemaVersionError",
    "diverged_losses",
    "early_stop_epoch_of",
    "json_safe",
    "lookup_metric",
    "parse_version",
    "read_metrics",
    "summarize_run",
    "upgrade",
    "write_metrics",
]

#: The file's name inside a run directory.
FILE_NAME = "metrics.json"
#: The version this package writes. Bump the minor version for added fields, the major one for renamed,
#: removed or reinterpreted fields (and teach :func:`upgrade` the older majors).
SCHEMA_VERSION = "1.0"
#: The version given to files written before ``schema_version`` existed.
LEGACY_VERSION = "0.0"
#: What ``status`` says: trained to its end; trained, but a loss was not finite at the end of fit; stopped by
#: the Optuna pruner; raised an error (``error`` and ``traceback`` say which); stopped by SIGTERM (a preemption)
#: after writing ``checkpoints/last.ckpt``, to be resumed with ``ckpt_path=last``.
STATUSES = ("completed", "diverged", "pruned", "failed", "interrupted")


class MetricsFileError(ValueError):
    """A ``metrics.json`` that cannot be read: not JSON, not an object, or of a schema version this package does not know.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "metrics.json"
        >>> _ = path.write_text("[0.9]")
        >>> read_metrics(path)
        Traceback (most recent call last):
        ...
        lightning_reg.metrics_file.MetricsFileError: ...metrics.json must hold a JSON object; got list.
    """


class SchemaVersionError(MetricsFileError):
    """A ``metrics.json`` of a newer major schema version (or with a malformed ``schema_version``): refused.

    Example:
        >>> try:
        ...     upgrade({"schema_version": "2.0", "status": "completed"})
        ... except MetricsFileError as err:  # what readers catch
        ...     print(type(err).__name__)
        SchemaVersionError
        >>> upgrade({"schema_version": "1.7", "status": "completed"})["schema_version"]  # a newer minor is read
        '1.7'
    """


class BestRecord(TypedDict):
    """``metrics.json["best"]``: the best epoch by the checkpoint's monitor (or ``optimized_metric``).

    Example:
        >>> import tempfile
        >>> best: BestRecord = {"monitor": "val/acc", "mode": "max", "score": 0.97, "epoch": 3,
        ...                     "metrics": {"epoch": 3.0, "val/acc": 0.97}, "checkpoint": "checkpoints/epoch_003.ckpt",
        ...                     "tested": "checkpoints/epoch_003.ckpt"}
        >>> path = write_metrics(Path(tempfile.mkdtemp()) / "metrics.json", {"status": "completed", "best": best})
        >>> read_metrics(path)["best"] == best
        True
    """

    monitor: str | None
    mode: str
    score: float | None  # the checkpoint callback's best score
    epoch: int | None  # the epoch of the best history row
    metrics: dict[str, float] | None  # that history row
    checkpoint: str | None  # the best checkpoint's path
    tested: str | None  # what the test stage evaluated: a checkpoint path, "restored-best-weights" or "final-weights"


class RunMetrics(TypedDict, total=False):
    """One run's ``metrics.json``. A failed run's file holds ``schema_version``, ``status``, ``error``,
    ``traceback``, ``seed`` and ``config`` only.

    Example:
        >>> record: RunMetrics = {"schema_version": SCHEMA_VERSION, "status": "failed", "error": "ValueError: x"}
        >>> sorted(record)
        ['error', 'schema_version', 'status']
    """

    schema_version: Required[str]
    status: str  # one of STATUSES (absent only in a damaged file: readers take it as "failed")
    seed: int | None
    final: dict[str, float]  # scalar callback metrics at the end of fit
    test: dict[str, float]  # test/* metrics of the test stage ({} when not tested)
    best: BestRecord
    last_epoch: int  # the last epoch trained (counted from 0)
    early_stop_epoch: int | None  # the epoch early stopping fired in; None when it did not
    epochs_completed: int  # trainer.current_epoch after fit
    global_step: int
    should_stop: bool
    fit_seconds: float
    world_size: int
    callbacks: dict[str, Any]  # each callback's run_summary(), by state key
    history: list[dict[str, float]]  # one row per epoch (MetricsHistory)
    config: dict[str, Any]  # the resolved config
    pruned_epoch: int  # only in pruned runs: the epoch the pruner stopped
    optimized_metric: str | list[str] | None
    optimized_value: float | list[float | None] | None
    error: str  # failed runs: "Type: message"
    traceback: str  # failed runs


def parse_version(version: Any, source: str = FILE_NAME) -> tuple[int, int]:
    """``"MAJOR.MINOR"`` as two integers; :class:`SchemaVersionError` for anything else.

    Example:
        >>> parse_version("1.2")
        (1, 2)
        >>> parse_version(1)
        Traceback (most recent call last):
        ...
        lightning_reg.metrics_file.SchemaVersionError: metrics.json: `schema_version` must be a string "MAJOR.MINOR" (such as '1.0'); got 1.
    """
    parts = version.split(".") if isinstance(version, str) else []
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise SchemaVersionError(
            f'{source}: `schema_version` must be a string "MAJOR.MINOR" (such as {SCHEMA_VERSION!r}); got {version!r}.'
        )
    return int(parts[0]), int(parts[1])


def early_stop_epoch_of(callback_reports: Mapping[str, Any] | None) -> int | None:
    """The earliest epoch an early-stopping callback stopped in, from ``metrics.json["callbacks"]``; else ``None``.

    A report counts when it says ``"stopped": true`` and gives an integer ``stopped_epoch``, as
    :meth:`lightning_reg.EarlyStopping.run_summary` does.

    Example:
        >>> early_stop_epoch_of({"EarlyStopping{...}": {"stopped": True, "stopped_epoch": 7}, "MaxNorm": {}})
        7
        >>> early_stop_epoch_of({"EarlyStopping{...}": {"stopped": False, "stopped_epoch": None}}) is None
        True
    """
    epochs = [
        int(r["stopped_epoch"])
        for r in (callback_reports or {}).values()
        if isinstance(r, Mapping)
        and r.get("stopped") is True
        and isinstance(r.get("stopped_epoch"), int)
        and not isinstance(r.get("stopped_epoch"), bool)
    ]
    return min(epochs) if epochs else None


def upgrade(data: Any, source: str = FILE_NAME) -> RunMetrics:
    """A parsed ``metrics.json`` in the current schema; refuses what this package cannot read.

    Files without ``schema_version`` (before 1.0) had ``stopped_epoch`` for the last epoch trained: it
    becomes ``last_epoch``, and ``early_stop_epoch`` is taken from the callbacks' summaries. A file of a
    newer major version raises :class:`SchemaVersionError`; a newer minor version is read as it is.

    Example:
        >>> old = upgrade({"status": "completed", "stopped_epoch": 9,
        ...                "callbacks": {"EarlyStopping": {"stopped": True, "stopped_epoch": 9}}})
        >>> old["schema_version"], old["last_epoch"], old["early_stop_epoch"], "stopped_epoch" in old
        ('1.0', 9, 9, False)
        >>> upgrade({"schema_version": "2.0", "status": "completed"}, "run/metrics.json")
        Traceback (most recent call last):
        ...
        lightning_reg.metrics_file.SchemaVersionError: run/metrics.json has schema_version '2.0'; this lightning_reg reads versions 0.x to 1.x. Upgrade lightning_reg to read it.
    """
    if not isinstance(data, Mapping):
        raise MetricsFileError(f"{source} must hold a JSON object; got {type(data).__name__}.")
    out: dict[str, Any] = dict(data)
    version = out.get("schema_version", LEGACY_VERSION)
    major, _ = parse_version(version, source)
    current = parse_version(SCHEMA_VERSION)[0]
    if major > current:
        raise SchemaVersionError(
            f"{source} has schema_version {version!r}; this lightning_reg reads versions 0.x to {current}.x. "
            "Upgrade lightning_reg to read it."
        )
    if major == 0:
        if "stopped_epoch" in out:
            out.setdefault("last_epoch", out.pop("stopped_epoch"))
        if "callbacks" in out:
            out.setdefault("early_stop_epoch", early_stop_epoch_of(out.get("callbacks")))
        out["schema_version"] = SCHEMA_VERSION
    return cast(RunMetrics, out)


def read_metrics(path: Path | str) -> RunMetrics:
    """Read and :func:`upgrade` a ``metrics.json``.

    Raises :class:`MetricsFileError` when the file is unreadable or not a JSON object, and its subclass
    :class:`SchemaVersionError` when it is of a newer major version.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MetricsFileError(f"unreadable {path}: {err}") from None
    return upgrade(data, str(path))


def json_safe(obj: Any) -> Any:
    """``obj`` as strict JSON: non-finite floats as strings (``"nan"``), passwords in URLs masked.

    Example:
        >>> json_safe({"loss": float("inf"), "db": "postgresql://u:pw@h/db", 1: [0.5]})
        {'loss': 'inf', 'db': 'postgresql://u:***@h/db', '1': [0.5]}
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, str) and "://" in obj:
        return mask_secrets(obj)
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_metrics(path: Path | str, record: Mapping[str, Any]) -> Path:
    """Write ``record`` (a :class:`RunMetrics`) to ``path`` with the current ``schema_version``; return the path.

    Atomically (:func:`lightning_reg.atomic.write_text`): a full disk raises
    :class:`~lightning_reg.atomic.WriteError` and leaves no file, or the previous one, never an empty one.
    """
    path = Path(path)
    data = {"schema_version": SCHEMA_VERSION, **{k: v for k, v in record.items() if k != "schema_version"}}
    return write_text(path, json.dumps(json_safe(data), indent=2))


@dataclass
class FitResult:
    """What :func:`~lightning_reg.app.fit.fit` leaves for the later steps, collected before testing (testing a checkpoint restores
    callback state from that checkpoint).

    Example:
        >>> fitted = FitResult({"val/acc": 0.9}, 1.5, [{"epoch": 0.0, "val/acc": 0.9}], {}, 1, 2, False, "val/acc",
        ...                    "max", {"epoch": 0.0, "val/acc": 0.9}, "epoch_000.ckpt", None)
        >>> fitted.epochs_completed, fitted.best_row["val/acc"], fitted.early_stop_epoch
        (1, 0.9, None)
    """

    metrics: dict[str, float]
    seconds: float
    history: list[dict[str, float]]
    callback_reports: dict[str, Any]
    epochs_completed: int
    global_step: int
    should_stop: bool
    monitor: str | None
    mode: str
    best_row: dict[str, float] | None
    best_path: str
    pruned_epoch: int | None
    early_stop_epoch: int | None = None


@dataclass
class Evaluation:
    """What :func:`~lightning_reg.app.fit.evaluate` tested (``None`` when it did not) and the ``test/*`` metrics it got.

    Example:
        >>> Evaluation(), Evaluation("epoch_003.ckpt", {"test/acc": 0.91}).metrics
        (Evaluation(tested=None, metrics={}), {'test/acc': 0.91})
    """

    tested: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def diverged_losses(metrics: dict[str, float]) -> list[str]:
    """The ``*loss`` metrics that are not finite (a diverged run).

    Example:
        >>> diverged_losses({"train/loss": float("nan"), "val/loss": 0.3, "val/acc": float("nan")})
        ['train/loss']
    """
    return sorted(k for k, v in metrics.items() if k.endswith("loss") and not math.isfinite(v))


def lookup_metric(summary: Mapping[str, Any], name: str | None) -> float | None:
    """Find ``name`` among test, best and final metrics, in that order (``val/*`` prefers the best epoch)."""
    if not name:
        return None
    if name.startswith("val/") and summary["best"]["metrics"] and name in summary["best"]["metrics"]:
        return summary["best"]["metrics"][name]
    for section in ("test", "final"):
        if name in summary[section]:
            return summary[section][name]
    top = summary.get(name)  # run-level numbers such as fit_seconds (a second objective)
    if isinstance(top, (int, float)) and not isinstance(top, bool):
        return float(top)
    return None


def summarize_run(
    config: Mapping[str, Any], fitted: FitResult, tested: Evaluation, *, best_score: float | None, world_size: int
) -> RunMetrics:
    """The run's :class:`RunMetrics` (what ``metrics.json`` holds) from the resolved config (plain containers), what
    fit and test left, the best checkpoint's score and the world size."""
    diverged = diverged_losses(fitted.metrics)
    best: BestRecord = {
        "monitor": fitted.monitor,
        "mode": fitted.mode,
        "score": best_score,
        "epoch": int(fitted.best_row["epoch"]) if fitted.best_row else None,
        "metrics": fitted.best_row,
        "checkpoint": fitted.best_path or None,
        "tested": tested.tested,
    }
    summary: RunMetrics = {
        "schema_version": SCHEMA_VERSION,
        "status": "diverged" if diverged else ("completed" if fitted.pruned_epoch is None else "pruned"),
        "seed": config["seed"],
        "final": fitted.metrics,
        "test": tested.metrics,
        "best": best,
        "last_epoch": max(fitted.epochs_completed - 1, 0),
        "early_stop_epoch": fitted.early_stop_epoch,
        "epochs_completed": fitted.epochs_completed,
        "global_step": fitted.global_step,
        "should_stop": fitted.should_stop,
        "fit_seconds": fitted.seconds,
        "world_size": world_size,
        "callbacks": fitted.callback_reports,
        "history": fitted.history,
        "config": dict(config),
    }
    if fitted.pruned_epoch is not None:
        summary["pruned_epoch"] = fitted.pruned_epoch
    optimized = config.get("optimized_metric")
    if isinstance(optimized, (list, tuple)):
        names = [str(m) for m in optimized]
        summary["optimized_metric"] = names
        summary["optimized_value"] = [lookup_metric(summary, m) for m in names]
    else:
        summary["optimized_metric"] = optimized
        summary["optimized_value"] = lookup_metric(summary, optimized)
    return summary
