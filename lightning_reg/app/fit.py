"""Fit and test: :func:`fit` (``trainer.fit``, DDP children started under Hydra) and :func:`evaluate` (test the best
weights), what they leave (:class:`FitResult`, :class:`Evaluation`), the run's summary (:func:`summarize`) and
``metrics.json`` (:func:`write_summary`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lightning_reg._lightning_internals import weights_only_kwargs
from lightning_reg.app.build import Parts, _callbacks
from lightning_reg.app.distributed import hydra_ddp_children, is_child_rank, write_job_config
from lightning_reg.app.job import RunSetup, _str_keys
from lightning_reg.app.run_dir import archive_failed_record
from lightning_reg.app.run_log import say
from lightning_reg.callbacks.history import to_float
from lightning_reg.callbacks.restore_best_weights import RestoreBestWeights
from lightning_reg.errors import check_bool
from lightning_reg.metrics_file import SCHEMA_VERSION, BestRecord, RunMetrics, early_stop_epoch_of, write_metrics

__all__ = [
    "Evaluation",
    "FitResult",
    "diverged_losses",
    "evaluate",
    "fit",
    "lookup_metric",
    "summarize",
    "write_summary",
]

log = logging.getLogger("lightning_reg.app.fit")


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        f = to_float(v)
        if f is not None:
            out[k] = f
    return dict(sorted(out.items()))


@dataclass
class FitResult:
    """What :func:`fit` leaves for the later steps, collected before testing (testing a checkpoint restores
    callback state from that checkpoint).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from lightning_reg.app.build import build
        >>> from lightning_reg.app.config import compose_train_config
        >>> cfg = compose_train_config(["trainer=debug", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        ...                             "logger=none", f"paths.output_dir={tempfile.mkdtemp()}"])
        >>> fitted = fit(cfg, build(cfg), RunSetup(Path(cfg.paths.output_dir)))  # one epoch of two steps
        >>> fitted.epochs_completed, fitted.global_step, fitted.monitor, fitted.mode, Path(fitted.best_path).name
        (1, 2, 'val/acc', 'max', 'epoch_000.ckpt')
        >>> [row["epoch"] for row in fitted.history], sorted(k for k in fitted.metrics if k.startswith("val/"))
        ([0.0], ['val/acc', 'val/loss'])
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
    trial_callback: Any = None


@dataclass
class Evaluation:
    """What :func:`evaluate` tested (``None`` when it did not) and the ``test/*`` metrics it got.

    Example:
        >>> import contextlib, io, tempfile
        >>> from pathlib import Path
        >>> from lightning_reg.app.build import build
        >>> from lightning_reg.app.config import compose_train_config
        >>> cfg = compose_train_config(["trainer=debug", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        ...                             "logger=none", f"paths.output_dir={tempfile.mkdtemp()}"])
        >>> parts = build(cfg)
        >>> with contextlib.redirect_stdout(io.StringIO()):  # Lightning prints a table of the test metrics
        ...     tested = evaluate(cfg, parts, fit(cfg, parts, RunSetup(Path(cfg.paths.output_dir))))
        >>> Path(tested.tested).name, sorted(tested.metrics)  # the best checkpoint of the monitored val/acc
        ('epoch_000.ckpt', ['test/acc', 'test/loss'])
    """

    tested: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def fit(cfg: DictConfig, parts: Parts, setup: RunSetup) -> FitResult:
    """``trainer.fit`` (resuming ``setup.ckpt_path``; DDP children started under Hydra), then collect its results."""
    trainer = parts.trainer
    started = time.perf_counter()
    if not is_child_rank():
        setup.output_dir.mkdir(parents=True, exist_ok=True)
        if setup.ckpt_path is not None:
            archive_failed_record(setup.output_dir)
    if HydraConfig.initialized() and not is_child_rank():
        ddp_ctx: contextlib.AbstractContextManager[Any] = hydra_ddp_children(
            write_job_config(cfg, setup.output_dir), setup.output_dir
        )
    else:
        ddp_ctx = contextlib.nullcontext()
    with ddp_ctx:
        trainer.fit(
            parts.model, datamodule=parts.datamodule, ckpt_path=str(setup.ckpt_path) if setup.ckpt_path else None
        )
    metrics = _scalars(trainer.callback_metrics)
    seconds = time.perf_counter() - started
    callback_reports: dict[str, Any] = {}
    for cb in _callbacks(trainer):
        report = getattr(cb, "run_summary", None)
        if callable(report):
            callback_reports[getattr(cb, "state_key", type(cb).__name__)] = report()
    ckpt_cb = trainer.checkpoint_callback
    monitor = getattr(ckpt_cb, "monitor", None) or cfg.get("optimized_metric")
    mode = getattr(ckpt_cb, "mode", "max")
    trial_cb = next((cb for cb in _callbacks(trainer) if type(cb).__name__ == "TrialPruning"), None)
    return FitResult(
        metrics=metrics,
        seconds=seconds,
        history=[dict(r) for r in parts.history.history],
        callback_reports=callback_reports,
        epochs_completed=trainer.current_epoch,
        global_step=trainer.global_step,
        should_stop=bool(trainer.should_stop),
        monitor=monitor,
        mode=mode,
        best_row=parts.history.best(monitor, mode) if monitor else None,
        best_path=getattr(ckpt_cb, "best_model_path", "") or "",
        pruned_epoch=getattr(trial_cb, "pruned_epoch", None),
        early_stop_epoch=_early_stop_epoch(_callbacks(trainer), callback_reports),
        trial_callback=trial_cb,
    )


def _early_stop_epoch(callbacks: list[pl.Callback], reports: dict[str, Any]) -> int | None:
    """The epoch early stopping fired in: from our EarlyStopping's summary, or Lightning's own ``stopped_epoch``
    (which is 0 until it stops, so a stop of Lightning's callback in epoch 0 is not told apart)."""
    epochs = [e for e in (early_stop_epoch_of(reports),) if e is not None]
    for cb in callbacks:
        if isinstance(cb, pl.callbacks.EarlyStopping) and not callable(getattr(cb, "run_summary", None)):
            if int(cb.stopped_epoch) > 0:
                epochs.append(int(cb.stopped_epoch))
    return min(epochs) if epochs else None


def evaluate(cfg: DictConfig, parts: Parts, fitted: FitResult) -> Evaluation:
    """Test the best weights (``test=true`` and not pruned): those a callback restored, else the best checkpoint
    of a monitored ``ModelCheckpoint``, else the final weights."""
    trainer = parts.trainer
    if not check_bool("test", cfg.get("test", True)) or fitted.pruned_epoch is not None:
        return Evaluation()
    restored = [
        cb
        for cb in _callbacks(trainer)
        if isinstance(cb, RestoreBestWeights)
        and cb.restored_epoch is not None
        or getattr(cb, "restore_best_weights", False)
    ]
    if restored or not getattr(trainer.checkpoint_callback, "monitor", None):
        # Weights a callback restored (or, with no monitored checkpoint, the final ones) are what to test:
        # loading a checkpoint file here would overwrite them.
        path = ""
    else:
        path = fitted.best_path
    kwargs: dict[str, Any] = dict(weights_only_kwargs(True if path else None))
    trainer.test(parts.model, datamodule=parts.datamodule, ckpt_path=path or None, **kwargs)
    metrics = {k: v for k, v in _scalars(trainer.callback_metrics).items() if k.startswith("test/")}
    return Evaluation(path or ("restored-best-weights" if restored else "final-weights"), metrics)


def diverged_losses(metrics: dict[str, float]) -> list[str]:
    """The ``*loss`` metrics that are not finite (a diverged run).

    Example:
        >>> diverged_losses({"train/loss": float("nan"), "val/loss": 0.3, "val/acc": float("nan")})
        ['train/loss']
    """
    return sorted(k for k, v in metrics.items() if k.endswith("loss") and not math.isfinite(v))


def summarize(cfg: DictConfig, trainer: pl.Trainer, fitted: FitResult, tested: Evaluation) -> RunMetrics:
    """The run's :class:`~lightning_reg.metrics_file.RunMetrics` (what ``metrics.json`` holds); warns when it diverged."""
    diverged = diverged_losses(fitted.metrics)
    if diverged:
        log.error("the run diverged: %s not finite at the end of fit; status 'diverged'", ", ".join(diverged))
        print(
            f"lightning_reg: warning: the run DIVERGED ({', '.join(diverged)} not finite); metrics.json status "
            "'diverged'. Lower optimizer.lr or clip gradients.",
            file=sys.stderr,
            flush=True,
        )
    ckpt_cb = trainer.checkpoint_callback
    best: BestRecord = {
        "monitor": fitted.monitor,
        "mode": fitted.mode,
        "score": to_float(getattr(ckpt_cb, "best_model_score", None)) if ckpt_cb else None,
        "epoch": int(fitted.best_row["epoch"]) if fitted.best_row else None,
        "metrics": fitted.best_row,
        "checkpoint": fitted.best_path or None,
        "tested": tested.tested,
    }
    config = OmegaConf.to_container(cfg, resolve=True)
    summary: RunMetrics = {
        "schema_version": SCHEMA_VERSION,
        "status": "diverged" if diverged else ("completed" if fitted.pruned_epoch is None else "pruned"),
        "seed": cfg.seed,
        "final": fitted.metrics,
        "test": tested.metrics,
        "best": best,
        "last_epoch": max(fitted.epochs_completed - 1, 0),
        "early_stop_epoch": fitted.early_stop_epoch,
        "epochs_completed": fitted.epochs_completed,
        "global_step": fitted.global_step,
        "should_stop": fitted.should_stop,
        "fit_seconds": fitted.seconds,
        "world_size": trainer.world_size,
        "callbacks": fitted.callback_reports,
        "history": fitted.history,
        "config": _str_keys(config),
    }
    if fitted.pruned_epoch is not None:
        summary["pruned_epoch"] = fitted.pruned_epoch
    optimized = cfg.get("optimized_metric")
    if OmegaConf.is_list(optimized) or isinstance(optimized, (list, tuple)):
        names = [str(m) for m in optimized]
        summary["optimized_metric"] = names
        summary["optimized_value"] = [lookup_metric(summary, m) for m in names]
    else:
        summary["optimized_metric"] = optimized
        summary["optimized_value"] = lookup_metric(summary, optimized)
    return summary


def write_summary(summary: RunMetrics, trainer: pl.Trainer, fitted: FitResult, setup: RunSetup) -> None:
    """Record the trial (Optuna sweeps), write ``metrics.json`` and print where the results went (rank 0)."""
    if fitted.trial_callback is not None:
        fitted.trial_callback.record(summary["status"], fitted.epochs_completed, str(setup.output_dir.absolute()))
    if not trainer.is_global_zero:
        return
    write_metrics(setup.metrics_path, summary)
    test = summary["test"]
    log_dirs = sorted({str(lg.log_dir) for lg in trainer.loggers if getattr(lg, "log_dir", None)})
    stop = summary["early_stop_epoch"]
    say(
        f"\nlightning_reg: test/acc={test.get('test/acc', float('nan')):.4f} "
        f"test/loss={test.get('test/loss', float('nan')):.4f} "
        f"(last epoch {summary['last_epoch']}{', early stop' if stop is not None else ''}, "
        f"{fitted.seconds:.1f}s of training)\n"
        f"lightning_reg: logs in {', '.join(log_dirs) or '(no logger)'}\n"
        f"lightning_reg: metrics.json written to {setup.metrics_path}"
    )


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
