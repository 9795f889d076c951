"""Fit and test: :func:`fit` (``trainer.fit``, DDP children started under Hydra) and :func:`evaluate` (test the best
weights), which leave a :class:`~lightning_reg.metrics_file.FitResult` and an
:class:`~lightning_reg.metrics_file.Evaluation`; :func:`summarize` turns them into the run's ``metrics.json`` record.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any

import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lightning_reg._lightning_internals import weights_only_kwargs
from lightning_reg.app.build import Parts, _callbacks
from lightning_reg.app.distributed import hydra_ddp_children, is_child_rank, write_job_config
from lightning_reg.app.job import RunSetup, _str_keys, trial_callback
from lightning_reg.app.run_dir import archive_failed_record
from lightning_reg.callbacks.history import to_float
from lightning_reg.callbacks.restore_best_weights import RestoreBestWeights
from lightning_reg.errors import check_bool
from lightning_reg.metrics_file import (
    Evaluation,
    FitResult,
    RunMetrics,
    diverged_losses,
    early_stop_epoch_of,
    summarize_run,
)

__all__ = ["evaluate", "fit", "summarize"]

log = logging.getLogger("lightning_reg.app.fit")


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        f = to_float(v)
        if f is not None:
            out[k] = f
    return dict(sorted(out.items()))


def fit(cfg: DictConfig, parts: Parts, setup: RunSetup) -> FitResult:
    """``trainer.fit`` (resuming ``setup.ckpt_path``; DDP children started under Hydra), then collect its results.

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
    trainer = parts.trainer
    started = time.perf_counter()
    if not is_child_rank():
        setup.output_dir.mkdir(parents=True, exist_ok=True)
        if setup.ckpt_path is not None:
            archive_failed_record(setup.output_dir)
    # Lightning starts local DDP ranks (num_devices - 1 children) from the job's own config, written for them here.
    if HydraConfig.initialized() and not is_child_rank() and trainer.num_devices > 1:
        ddp_ctx: contextlib.AbstractContextManager[Any] = hydra_ddp_children(
            write_job_config(cfg, setup.output_dir), setup.output_dir
        )
    else:
        ddp_ctx = contextlib.nullcontext()
    trial_cb = trial_callback(_callbacks(trainer))
    if trial_cb is not None:
        trial_cb.raise_pruned = False  # app/job.run raises optuna.TrialPruned after metrics.json is written
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
    of a monitored ``ModelCheckpoint``, else the final weights.

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


def summarize(cfg: DictConfig, trainer: pl.Trainer, fitted: FitResult, tested: Evaluation) -> RunMetrics:
    """The run's :class:`~lightning_reg.metrics_file.RunMetrics` (what ``metrics.json`` holds,
    :func:`~lightning_reg.metrics_file.summarize_run`); warns when it diverged."""
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
    config = OmegaConf.to_container(cfg, resolve=True)
    return summarize_run(
        _str_keys(config),
        fitted,
        tested,
        best_score=to_float(getattr(ckpt_cb, "best_model_score", None)) if ckpt_cb else None,
        world_size=trainer.world_size,
    )
