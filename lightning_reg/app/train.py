"""Hydra entry point: ``python -m lightning_reg.train`` (or ``lightning-reg-train``).

Hydra composes ``conf/train.yaml`` with the command line's overrides; :func:`train` then runs one job in
named steps: :func:`prepare_run` (check the config and the run directory, set threads and the seed),
:func:`build` (data, model with optimizer/scheduler, callbacks, loggers, trainer), :func:`fit`,
:func:`evaluate` (test the best weights), :func:`summarize` (the :class:`~lightning_reg.metrics_file.RunMetrics`)
and :func:`write_summary` (``metrics.json`` in the run directory). :func:`main` returns the optimized metric so
that sweepers (Optuna) can use it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from lightning_reg._lightning_internals import missing_target_reason, trainer_callbacks, weights_only_kwargs
from lightning_reg.app.config import conf_dir, find_conf_dir, instantiate_node, threads_per_job
from lightning_reg.app.distributed import hydra_ddp_children, is_child_rank, write_job_config
from lightning_reg.app.run_dir import FINISHED, RunDirError, archive_failed_record, check_run_dir, run_state
from lightning_reg.app.run_log import quiet_third_party, say
from lightning_reg.atomic import is_filesystem_error
from lightning_reg.callbacks.checkpoint import SaveOnSigterm
from lightning_reg.callbacks.history import MetricsHistory, to_float
from lightning_reg.callbacks.monitor_check import MonitorCheck
from lightning_reg.callbacks.restore_best_weights import RestoreBestWeights
from lightning_reg.callbacks.rng_state import RNGState
from lightning_reg.core.checks import (
    check_optimizer_args,
    check_resume_checkpoint,
    check_scheduler_args,
    check_seed,
    check_trainer_args,
)
from lightning_reg.errors import ConfigError, check_bool, check_int, mask_secrets
from lightning_reg.metrics_file import (
    FILE_NAME,
    SCHEMA_VERSION,
    BestRecord,
    MetricsFileError,
    RunMetrics,
    SchemaVersionError,
    early_stop_epoch_of,
    json_safe,
    read_metrics,
    write_metrics,
)
from lightning_reg.study import trial_callbacks

__all__ = [
    "CONF_DIR",
    "FitResult",
    "Parts",
    "RunSetup",
    "Evaluation",
    "build",
    "build_model",
    "conf_dir",
    "diverged_losses",
    "evaluate",
    "finished_job_value",
    "fit",
    "lookup_metric",
    "main",
    "run_job",
    "prepare_run",
    "summarize",
    "threads_per_job",
    "train",
    "write_summary",
]

log = logging.getLogger("lightning_reg.app.train")
quiet_third_party()  # Lightning's litlogger tip, torch's LeafSpec warning, Alembic's plugin lines (run_log.py)

#: The packaged ``conf/`` folder. Found without raising: when it is missing this is where it should be, and
#: :func:`~lightning_reg.app.config.conf_dir` (called by :func:`main`) says so when the configs are needed.
CONF_DIR = str(find_conf_dir() or Path(__file__).resolve().parents[1] / "conf")


def _callbacks(trainer: pl.Trainer) -> list[pl.Callback]:
    return list(trainer.callbacks)  # type: ignore[attr-defined]  # set by Lightning's callback connector


def _check_missing(cfg: DictConfig) -> None:
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra"))
    if missing:
        example = " ".join(f"{k}=<value>" for k in missing)
        raise ConfigError(f"required config value(s) missing: {', '.join(missing)}. Set them, e.g. `{example}`.")


def _resolve_model_target(cfg: DictConfig) -> Any:
    target = cfg.model.get("_target_") if isinstance(cfg.model, DictConfig) else None
    if not target:
        raise ConfigError("`model._target_` must name a LightningModule class; got no `_target_` in `model`.")
    try:
        obj = get_object(target)
    except Exception as err:  # noqa: BLE001 - hydra raises ImportError or ValueError with its own text
        raise ConfigError(
            f"`model._target_` must name an importable LightningModule class; got {target!r} ({err})."
        ) from None
    if inspect.isclass(obj) and not issubclass(obj, pl.LightningModule):
        raise ConfigError(
            f"`model._target_` must name a LightningModule subclass; got {target!r}, a subclass of "
            f"{', '.join(b.__name__ for b in obj.__mro__[1:3])}."
        )
    return obj


def build_model(cfg: DictConfig, datamodule: Any) -> pl.LightningModule:
    """Instantiate ``cfg.model``, passing optimizer/scheduler and data shape only where the model takes them."""
    target = _resolve_model_target(cfg)
    try:
        params: dict[str, inspect.Parameter] = dict(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        params = {}
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {}
    for key in ("input_shape", "num_classes"):
        if key in cfg.model and cfg.model[key] is None and hasattr(datamodule, key):
            kwargs[key] = getattr(datamodule, key)
    for key in ("optimizer", "scheduler"):
        node = cfg.get(key)
        if not node:
            continue
        if key in params or takes_kwargs:
            kwargs[key] = instantiate_node(node, key)
        else:
            log.warning(
                "%s does not take `%s`; it configures its own optimizers, so the `%s` config group is not used.",
                target.__name__,
                key,
                key,
            )
    try:
        model = instantiate_node(cfg.model, "model", **kwargs)
    except ConfigError as err:
        passed = [k for k in ("optimizer", "scheduler") if k in kwargs and k not in params and f"'{k}'" in str(err)]
        if takes_kwargs and passed:
            key = passed[0]
            raise ConfigError(
                f"model: {target.__name__}.__init__ takes **kwargs, so the entry point passed `{key}` (the "
                f"`{key}` config group) to it, and a class it forwards to rejected it: {err}. Give "
                f"{target.__name__} an explicit `{key}` argument, or opt out with {key}=null on the command line."
            ) from None
        raise
    if not isinstance(model, pl.LightningModule):
        raise ConfigError(
            f"`model._target_` must build a LightningModule; {cfg.model._target_!r} returned {type(model).__name__}."
        )
    return model


def _instantiate_dict(node: Any, group: str, base: type) -> list[Any]:
    out: list[Any] = []
    if not node:
        return out
    for name, sub in node.items():
        if not sub or "_target_" not in sub:
            continue
        why = missing_target_reason(str(sub["_target_"]))
        if why is not None:
            raise ConfigError(
                f"`{group}.{name}._target_` = {sub['_target_']!r}: {why}. Upgrade Lightning "
                f"(pip install 'lightning>=2.6') or remove `{group}.{name}`."
            )
        obj = instantiate_node(sub, f"{group}.{name}")
        if not isinstance(obj, base):
            raise ConfigError(f"`{group}.{name}._target_` must build a {base.__name__}; got {type(obj).__name__}.")
        out.append(obj)
    return out


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        f = to_float(v)
        if f is not None:
            out[k] = f
    return dict(sorted(out.items()))


def _str_keys(container: Any) -> dict[str, Any]:
    return {str(k): v for k, v in container.items()} if isinstance(container, dict) else {}


def _plain(node: Any) -> dict[str, Any]:
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else None
    if not isinstance(plain, dict):
        return {}
    return {str(k): v for k, v in plain.items() if not str(k).startswith("_")}


def _check_settings(cfg: DictConfig) -> None:
    """Values that Lightning or torch would accept and then misuse (lr=0, max_epochs=0, step_size=0...)."""
    check_seed(cfg.get("seed"))
    if isinstance(cfg.get("trainer"), DictConfig):
        check_trainer_args(_plain(cfg.trainer))
    opt = cfg.get("optimizer")
    if isinstance(opt, DictConfig) and opt.get("_target_"):
        try:
            target = get_object(opt._target_)
        except Exception:  # noqa: BLE001 - reported by instantiate with Hydra's own message
            target = None
        if target is not None:
            check_optimizer_args(target, _plain(opt))
    sched = cfg.get("scheduler")
    if isinstance(sched, DictConfig) and isinstance(sched.get("scheduler"), DictConfig):
        check_scheduler_args(_plain(sched.scheduler))


@dataclass
class Parts:
    """Everything :func:`build` instantiates from a config.

    Example:
        >>> import tempfile
        >>> from lightning_reg.app.config import compose_train_config
        >>> cfg = compose_train_config(["trainer=debug", "logger=none", f"paths.output_dir={tempfile.mkdtemp()}"])
        >>> parts = build(cfg)  # nothing is trained yet
        >>> type(parts.datamodule).__name__, type(parts.model).__name__, parts.history in parts.trainer.callbacks
        ('DigitsDataModule', 'MLPClassifier', True)
    """

    datamodule: pl.LightningDataModule
    model: pl.LightningModule
    trainer: pl.Trainer
    history: MetricsHistory


def build(cfg: DictConfig) -> Parts:
    """Instantiate data, model (with optimizer/scheduler), callbacks, loggers and trainer; no training.

    Every bad value surfaces here as a :class:`~lightning_reg.errors.ConfigError`, before any step runs.
    """
    _check_missing(cfg)
    _check_settings(cfg)
    datamodule = instantiate_node(cfg.data, "data")
    model = build_model(cfg, datamodule)
    if check_bool("test", cfg.get("test", True)) and type(model).test_step is pl.LightningModule.test_step:
        raise ConfigError(
            f"`test=true` needs a test_step, and {type(model).__name__} defines none; add one, or set test=false."
        )
    history = MetricsHistory()
    callbacks = _instantiate_dict(cfg.get("callbacks"), "callbacks", pl.Callback) + [history, RNGState()]
    # SIGTERM (a preemption): last.ckpt written before the run ends, for ckpt_path=last.
    callbacks.append(SaveOnSigterm(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"))
    optimized = cfg.get("optimized_metric")
    names = list(optimized) if OmegaConf.is_list(optimized) or isinstance(optimized, (list, tuple)) else [optimized]
    # Logged metrics are namespaced (val/acc); run-level numbers such as fit_seconds are not logged.
    callbacks.append(MonitorCheck(extra=[("optimized_metric", str(m)) for m in names if m and "/" in str(m)]))
    loggers = _instantiate_dict(cfg.get("logger"), "logger", pl.loggers.Logger)
    trainer: pl.Trainer = instantiate_node(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    # Lightning added the trial's pruning through our callbacks_factory entry point; without the package's entry
    # points (run from a source tree that was never installed) it is added here.
    if not any(type(cb).__name__ == "TrialPruning" for cb in _callbacks(trainer)):
        trainer_callbacks(trainer).extend(trial_callbacks(cfg.get("optimized_metric")))
    return Parts(datamodule, model, trainer, history)


@dataclass
class RunSetup:
    """What :func:`prepare_run` settles before anything is built: where the run writes, what it resumes.

    Example:
        >>> import tempfile
        >>> from lightning_reg.app.config import compose_train_config
        >>> run = Path(tempfile.mkdtemp())
        >>> (run / "checkpoints").mkdir()
        >>> (run / "checkpoints" / "last.ckpt").touch()  # an unfinished run
        >>> setup = prepare_run(compose_train_config([f"paths.output_dir={run}", "ckpt_path=last"]))
        >>> setup.ckpt_path == run / "checkpoints" / "last.ckpt", setup.metrics_path == run / "metrics.json"
        (True, True)
    """

    output_dir: Path
    ckpt_path: Path | None = None

    @property
    def metrics_path(self) -> Path:
        return self.output_dir / FILE_NAME


@dataclass
class FitResult:
    """What :func:`fit` leaves for the later steps, collected before testing (testing a checkpoint restores
    callback state from that checkpoint).

    Example:
        >>> import tempfile
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


def prepare_run(cfg: DictConfig) -> RunSetup:
    """Check the composed config and the run directory, then set the thread count and the seed.

    Raises :class:`~lightning_reg.errors.ConfigError` or :class:`~lightning_reg.app.run_dir.RunDirError` before
    anything is built or written.
    """
    _check_missing(cfg)
    output_dir = Path(cfg.paths.output_dir)
    setup = RunSetup(output_dir, _check_output_dir(cfg, output_dir))
    _check_settings(cfg)
    threads = cfg.get("torch_threads")
    if threads is not None:
        torch.set_num_threads(check_int("torch_threads", threads, low=1))
        if threads == threads_per_job():
            # One of several joblib jobs: processes it starts (DDP ranks, DataLoader workers) read OpenMP's
            # variable, so they get the same share; a value in the environment wins.
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    pl.seed_everything(cfg.seed, workers=True)
    return setup


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


def train(cfg: DictConfig) -> RunMetrics:
    """Run one training job from a composed config and return what goes into ``metrics.json``.

    The steps: check the config and the run directory (:func:`prepare_run`), build the parts (:func:`build`),
    fit (:func:`fit`), test the best weights (:func:`evaluate`), summarize (:func:`summarize`) and write
    ``metrics.json`` (:func:`write_summary`).

    Example:
        >>> from hydra import compose, initialize_config_dir
        >>> with initialize_config_dir(CONF_DIR, version_base="1.3"):  # doctest: +SKIP
        ...     cfg = compose("train", overrides=["trainer=debug", "paths.output_dir=/tmp/run"])
        >>> metrics = train(cfg)  # doctest: +SKIP
    """
    setup = prepare_run(cfg)
    parts = build(cfg)
    if setup.ckpt_path is not None:
        check_resume_checkpoint(setup.ckpt_path, parts.model)
    fitted = fit(cfg, parts, setup)
    tested = evaluate(cfg, parts, fitted)
    summary = summarize(cfg, parts.trainer, fitted, tested)
    write_summary(summary, parts.trainer, fitted, setup)
    return summary


def _is_multirun() -> bool:
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _check_output_dir(cfg: DictConfig, output_dir: Path) -> Path | None:
    """The run-directory lifecycle (:mod:`lightning_reg.app.run_dir`): return the checkpoint to resume from, or
    raise before anything is written. DDP children run in their parent's (already checked) directory."""
    ckpt = cfg.get("ckpt_path")
    if is_child_rank():
        return check_run_dir(output_dir, ckpt, allow_new_last=True) if ckpt else None
    return check_run_dir(output_dir, ckpt, allow_new_last=_is_multirun())


def finished_job_value(cfg: DictConfig) -> tuple[bool, float | None]:
    """For a job of a resumed sweep whose directory already holds its result: ``(True, its optimized value)``.

    A finished job is skipped only when its ``metrics.json`` records the same config as this job; any other
    finished directory is refused (:class:`~lightning_reg.app.run_dir.RunDirError`).
    """
    output_dir = Path(cfg.paths.output_dir)
    if run_state(output_dir) != FINISHED:
        return False, None
    try:
        stored: dict[str, Any] = dict(read_metrics(output_dir / FILE_NAME))
    except SchemaVersionError:
        raise  # written by a newer lightning_reg: not this one's to judge
    except MetricsFileError:
        stored = {}
    now = json_safe(OmegaConf.to_container(cfg, resolve=True))
    before = stored.get("config")
    if isinstance(before, dict):
        before = {k: v for k, v in before.items() if k != "ckpt_path"}
        now = {k: v for k, v in now.items() if k != "ckpt_path"}
    if before != now:
        check_run_dir(output_dir, None)  # raises RunDirError: finished by another config
    value = stored.get("optimized_value")
    status = stored.get("status")
    log.info("%s already finished (status %s): skipped; its metrics.json is kept", output_dir, status)
    print(f"lightning_reg: {output_dir} already finished (status {status}); skipped, metrics.json kept", flush=True)
    return True, (float(value) if isinstance(value, (int, float)) and status == "completed" else None)


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


#: The exit status of a run or worker ended by SIGTERM (128 + 15, what a shell reports for a process killed by it).
SIGTERM_EXIT = 143


def _record_interrupted(cfg: DictConfig) -> None:
    """SIGTERM ended the run: ``metrics.json`` says ``status: interrupted`` (atomically), and one line says how
    to resume. ``last.ckpt`` was written by :class:`~lightning_reg.callbacks.checkpoint.SaveOnSigterm`."""
    out = Path(cfg.paths.output_dir)
    last = out / "checkpoints" / "last.ckpt"
    record: RunMetrics = {
        "schema_version": SCHEMA_VERSION,
        "status": "interrupted",
        "error": "SIGTERM: the run was stopped (preempted, cancelled or killed) and can be resumed",
        "seed": cfg.get("seed"),
        "config": _str_keys(OmegaConf.to_container(cfg, resolve=False)),
    }
    try:
        if not (out / FILE_NAME).exists():
            out.mkdir(parents=True, exist_ok=True)
            write_metrics(out / FILE_NAME, record)
    except Exception as err:  # noqa: BLE001 - the exit status must still say SIGTERM
        log.error("the interruption is not recorded in metrics.json: %s", err)
    resume = f"resume with ckpt_path=last ({last})" if last.is_file() else "no checkpoint was written"
    say(f"lightning_reg: interrupted by SIGTERM; metrics.json says status 'interrupted'; {resume}", error=True)


def _has_last(cfg: DictConfig) -> bool:
    return (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()


def _record_failure(cfg: DictConfig, err: BaseException) -> None:
    try:
        out = Path(cfg.paths.output_dir)
        if (out / FILE_NAME).exists():
            return
        out.mkdir(parents=True, exist_ok=True)
        config = OmegaConf.to_container(cfg, resolve=False)
        record: RunMetrics = {
            "schema_version": SCHEMA_VERSION,
            "status": "failed",
            "error": mask_secrets(f"{type(err).__name__}: {err}"),
            "traceback": mask_secrets(traceback.format_exc()),
            "seed": cfg.get("seed"),
            "config": _str_keys(config),
        }
        write_metrics(out / FILE_NAME, record)
    except Exception as record_err:  # noqa: BLE001 - never mask the real error
        if is_filesystem_error(record_err):  # the full disk again: one line, and no (empty) metrics.json
            log.error("the failure is not recorded: %s", record_err)
        else:
            log.exception("could not record the failure in metrics.json")


@contextlib.contextmanager
def _clean_process_after_job() -> Iterator[None]:
    """Leave the process as the job found it, so the next job of a multirun starts clean.

    A DDP fit leaves its process group and Lightning's launcher variables (``LOCAL_RANK``, ``MASTER_PORT``,
    ``WORLD_SIZE``...) in rank 0's process; the next job would then take its ranks for externally launched
    ones, start no children and wait for them until the connection times out.
    """
    saved = dict(os.environ)
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(saved)


def main() -> Any:
    """Train from the command line: :func:`lightning_reg.train.main`, the entry point, which imports this module
    only when a job runs (so that a launcher's parent process, ``--help`` and ``--cfg`` do not import Lightning)."""
    from lightning_reg.train import main as entry_main

    return entry_main()


def run_job(cfg: DictConfig) -> float | list[float] | None:
    """One Hydra job: train, record a failure in ``metrics.json``; return the optimized metric for sweepers."""
    quiet_third_party()  # again here: a joblib worker runs this function without importing this module
    multirun = _is_multirun()
    try:
        if multirun and not is_child_rank():
            done, value = finished_job_value(cfg)
            if done:
                return value
        with _clean_process_after_job() if multirun and not is_child_rank() else contextlib.nullcontext():
            summary = train(cfg)
    except SIGTERMException:
        # Lightning ends fit with this SystemExit (status 0) after SIGTERM: here it becomes status 143, after
        # last.ckpt (SaveOnSigterm) and metrics.json. A sweep worker stops too and requeues the trial.
        if not is_child_rank():
            _record_interrupted(cfg)
        raise SystemExit(SIGTERM_EXIT) from None
    except Exception as err:
        if is_child_rank():
            raise
        if isinstance(err, RunDirError):
            # The directory belongs to another run: nothing of this job is written into it.
            print(f"lightning_reg: {'run refused' if multirun else 'error'}: {err}", file=sys.stderr, flush=True)
            if multirun:
                log.error("run refused, nothing written into %s: %s", cfg.paths.output_dir, err)
                return None
            sys.exit(2)
        if multirun or not isinstance(err, ConfigError):
            _record_failure(cfg, err)
        # A full disk, no permission, a database gone longer than storage_retry: the cause in one line.
        disk = is_filesystem_error(err) or type(err).__name__ == "StorageOutage"
        if multirun:
            # Hydra's sweepers abort the whole sweep (and skip the end-of-sweep report) when a job raises.
            # A failed job is recorded in its metrics.json instead, listed by the report, and returns None,
            # which the Optuna sweeper counts as a failed trial.
            log.error(
                "run failed and is recorded in %s: %s: %s",
                Path(cfg.paths.output_dir) / FILE_NAME,
                type(err).__name__,
                err,
                exc_info=not (isinstance(err, ConfigError) or disk),
            )
            print(mask_secrets(f"lightning_reg: run failed: {type(err).__name__}: {err}"), file=sys.stderr, flush=True)
            return None
        if isinstance(err, ConfigError):
            say(mask_secrets(f"lightning_reg: error: {err}"), error=True)
            sys.exit(2)
        if disk:
            resume = " Free space (or fix the permission) and resume with ckpt_path=last."
            say(mask_secrets(f"lightning_reg: error: {err}.{resume if _has_last(cfg) else ''}"), error=True)
            sys.exit(1)
        raise
    optimized = summary.get("optimized_value")
    if isinstance(optimized, list):
        return None if any(v is None for v in optimized) else [float(v) for v in optimized if v is not None]
    return float(optimized) if optimized is not None else None


if __name__ == "__main__":
    main()
