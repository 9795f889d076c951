"""Hydra entry point: ``python -m lightning_reg.train`` (or ``lightning-reg-train``).

It composes ``conf/train.yaml``, instantiates data, model, optimizer, scheduler, callbacks, loggers and
trainer, fits, tests the best checkpoint, writes ``metrics.json`` into the run directory and returns
the optimized metric so that sweepers (Optuna) can use it.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from lightning_reg._lightning_internals import missing_target_reason, weights_only_kwargs
from lightning_reg.callbacks.history import MetricsHistory, _to_float
from lightning_reg.callbacks.monitor_check import MonitorCheck
from lightning_reg.callbacks.rng_state import RNGState
from lightning_reg.checks import (
    check_optimizer_args,
    check_resume_checkpoint,
    check_scheduler_args,
    check_seed,
    check_trainer_args,
)
from lightning_reg.distributed import hydra_ddp_children, is_child_rank, write_job_config
from lightning_reg.errors import ConfigError, check_bool, check_int, mask_secrets
from lightning_reg.run_dir import FINISHED, RunDirError, archive_failed_record, check_run_dir, run_state
from lightning_reg.run_log import quiet_third_party, say
from lightning_reg.study import trial_callbacks

log = logging.getLogger("lightning_reg.train")
quiet_third_party()  # Lightning's litlogger tip, torch's LeafSpec warning, Alembic's plugin lines (run_log.py)


def conf_dir() -> Path:
    """Where ``train.yaml`` lives: inside the installed package (wheel) or at the repository top (editable)."""
    here = Path(__file__).resolve().parent
    for cand in (here / "conf", here.parent / "conf"):
        if (cand / "train.yaml").is_file():
            return cand
    raise FileNotFoundError(f"lightning_reg's conf/ directory was not found next to {here}; reinstall the package.")


CONF_DIR = str(conf_dir())


def _as_config_error(key: str, err: BaseException) -> ConfigError:
    if isinstance(err, ConfigError):
        return ConfigError(f"{key}: {err}")
    return ConfigError(f"{key}: {type(err).__name__}: {err}")


def _instantiate(node: Any, key: str, **kwargs: Any) -> Any:
    """Instantiate a config node; errors from the target come out as one ConfigError prefixed by ``key``.

    Objects in ``kwargs`` (callbacks, optimizer factories, scheduler specs) are passed to the target
    as they are, not merged into the config (Hydra would turn a dataclass into a dict).
    """
    try:
        target = instantiate(node, _convert_="all", **({"_partial_": True} if kwargs else {}))
    except InstantiationException as err:
        raise _as_config_error(key, err.__cause__ or err) from None
    if not kwargs:
        return target
    try:
        return target(**kwargs)
    except (ConfigError, TypeError, ValueError) as err:
        raise _as_config_error(key, err) from None
    except Exception as err:  # noqa: BLE001 - e.g. Lightning's MisconfigurationException
        if type(err).__name__ == "MisconfigurationException":
            raise _as_config_error(key, err) from None
        raise


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
        params = inspect.signature(target).parameters
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
            kwargs[key] = _instantiate(node, key)
        else:
            log.warning(
                "%s does not take `%s`; it configures its own optimizers, so the `%s` config group is not used.",
                target.__name__,
                key,
                key,
            )
    try:
        model = _instantiate(cfg.model, "model", **kwargs)
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
    out = []
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
        obj = _instantiate(sub, f"{group}.{name}")
        if not isinstance(obj, base):
            raise ConfigError(f"`{group}.{name}._target_` must build a {base.__name__}; got {type(obj).__name__}.")
        out.append(obj)
    return out


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        f = _to_float(v)
        if f is not None:
            out[k] = f
    return dict(sorted(out.items()))


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, str) and "://" in obj:
        return mask_secrets(obj)
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _plain(node: Any) -> dict[str, Any]:
    if not isinstance(node, DictConfig):
        return {}
    return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if not str(k).startswith("_")}


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
    """Everything :func:`build` instantiates from a config."""

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
    datamodule = _instantiate(cfg.data, "data")
    model = build_model(cfg, datamodule)
    if check_bool("test", cfg.get("test", True)) and type(model).test_step is pl.LightningModule.test_step:
        raise ConfigError(
            f"`test=true` needs a test_step, and {type(model).__name__} defines none; add one, or set test=false."
        )
    history = MetricsHistory()
    callbacks = _instantiate_dict(cfg.get("callbacks"), "callbacks", pl.Callback) + [history, RNGState()]
    optimized = cfg.get("optimized_metric")
    names = list(optimized) if OmegaConf.is_list(optimized) or isinstance(optimized, (list, tuple)) else [optimized]
    # Logged metrics are namespaced (val/acc); run-level numbers such as fit_seconds are not logged.
    callbacks.append(MonitorCheck(extra=[("optimized_metric", str(m)) for m in names if m and "/" in str(m)]))
    callbacks += trial_callbacks(cfg.get("optimized_metric"))
    loggers = _instantiate_dict(cfg.get("logger"), "logger", pl.loggers.Logger)
    trainer: pl.Trainer = _instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    return Parts(datamodule, model, trainer, history)


def threads_per_job() -> int | None:
    """CPU cores ÷ concurrent jobs when this run is one of several that a joblib launcher runs at once, else None.

    The ``lightning_reg_threads_per_job`` resolver: the joblib experiments set ``torch_threads`` to it, so two jobs
    on two cores get one thread each instead of two each (which oversubscribed the cores and gave no speed-up).
    A ``torch_threads=N`` override replaces it. Cores are those this process may run on (its affinity mask).
    """
    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().get("launcher") or {}
    target = str(launcher.get("_target_", ""))
    n_jobs = launcher.get("n_jobs")
    if "joblib" not in target.lower() or not isinstance(n_jobs, int):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = cores if n_jobs < 0 else n_jobs  # joblib: -1 means one job per core
    return max(1, cores // max(1, min(jobs, cores)))


if not OmegaConf.has_resolver("lightning_reg_threads_per_job"):
    OmegaConf.register_new_resolver("lightning_reg_threads_per_job", threads_per_job)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job from a composed config and return what goes into ``metrics.json``.

    Example:
        >>> from hydra import compose, initialize_config_dir
        >>> with initialize_config_dir(CONF_DIR, version_base="1.3"):  # doctest: +SKIP
        ...     cfg = compose("train", overrides=["trainer=debug", "paths.output_dir=/tmp/run"])
        >>> metrics = train(cfg)  # doctest: +SKIP
    """
    _check_missing(cfg)
    output_dir = Path(cfg.paths.output_dir)
    metrics_path = output_dir / "metrics.json"
    ckpt_path = _check_output_dir(cfg, output_dir)
    _check_settings(cfg)
    threads = cfg.get("torch_threads")
    if threads is not None:
        torch.set_num_threads(check_int("torch_threads", threads, low=1))
        if threads == threads_per_job():
            # One of several joblib jobs: processes it starts (DDP ranks, DataLoader workers) read OpenMP's
            # variable, so they get the same share; a value in the environment wins.
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    pl.seed_everything(cfg.seed, workers=True)
    parts = build(cfg)
    datamodule, model, trainer, history = parts.datamodule, parts.model, parts.trainer, parts.history
    if ckpt_path is not None:
        check_resume_checkpoint(ckpt_path, model)

    started = time.perf_counter()
    if not is_child_rank():
        output_dir.mkdir(parents=True, exist_ok=True)
        if ckpt_path is not None:
            archive_failed_record(output_dir)
    if HydraConfig.initialized() and not is_child_rank():
        ddp_ctx = hydra_ddp_children(write_job_config(cfg, output_dir), output_dir)
    else:
        ddp_ctx = contextlib.nullcontext()
    with ddp_ctx:
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    fit_metrics = _scalars(trainer.callback_metrics)
    fit_seconds = time.perf_counter() - started
    # Collect callback state (history, summaries, best epoch) now: testing a checkpoint restores callback
    # state from that checkpoint.
    rows = [dict(r) for r in history.history]
    callback_reports: dict[str, Any] = {}
    for cb in trainer.callbacks:
        report = getattr(cb, "run_summary", None)
        if callable(report):
            callback_reports[getattr(cb, "state_key", type(cb).__name__)] = report()
    epochs_completed, global_step, should_stop = trainer.current_epoch, trainer.global_step, trainer.should_stop
    ckpt_cb = trainer.checkpoint_callback
    monitor = getattr(ckpt_cb, "monitor", None) or cfg.get("optimized_metric")
    mode = getattr(ckpt_cb, "mode", "max")
    best_row = history.best(monitor, mode) if monitor else None

    best_path = getattr(ckpt_cb, "best_model_path", "") or ""
    test_metrics: dict[str, float] = {}
    tested = None
    restored = [cb for cb in trainer.callbacks if getattr(cb, "restore_best_weights", False)]
    if restored or not getattr(ckpt_cb, "monitor", None):
        # Weights a callback restored (or, with no monitored checkpoint, the final ones) are what to test:
        # loading a checkpoint file here would overwrite them.
        best_path_to_test = ""
    else:
        best_path_to_test = best_path
    trial_cb = next((cb for cb in trainer.callbacks if type(cb).__name__ == "TrialPruning"), None)
    pruned_epoch = getattr(trial_cb, "pruned_epoch", None)
    if check_bool("test", cfg.get("test", True)) and pruned_epoch is None:
        tested = best_path_to_test or ("restored-best-weights" if restored else "final-weights")
        trainer.test(
            model,
            datamodule=datamodule,
            ckpt_path=best_path_to_test or None,
            **weights_only_kwargs(True if best_path_to_test else None),
        )
        test_metrics = {k: v for k, v in _scalars(trainer.callback_metrics).items() if k.startswith("test/")}

    diverged = sorted(k for k, v in fit_metrics.items() if k.endswith("loss") and not math.isfinite(v))
    if diverged:
        log.error("the run diverged: %s not finite at the end of fit; status 'diverged'", ", ".join(diverged))
        print(
            f"lightning_reg: warning: the run DIVERGED ({', '.join(diverged)} not finite); metrics.json status "
            "'diverged'. Lower optimizer.lr or clip gradients.",
            file=sys.stderr,
            flush=True,
        )
    summary: dict[str, Any] = {
        "status": "diverged" if diverged else ("completed" if pruned_epoch is None else "pruned"),
        "seed": cfg.seed,
        "final": fit_metrics,
        "test": test_metrics,
        "best": {
            "monitor": monitor,
            "mode": mode,
            "score": _to_float(getattr(ckpt_cb, "best_model_score", None)) if ckpt_cb else None,
            "epoch": int(best_row["epoch"]) if best_row else None,
            "metrics": best_row,
            "checkpoint": best_path or None,
            "tested": tested,
        },
        "stopped_epoch": max(epochs_completed - 1, 0),
        "epochs_completed": epochs_completed,
        "global_step": global_step,
        "should_stop": bool(should_stop),
        "fit_seconds": fit_seconds,
        "world_size": trainer.world_size,
        "callbacks": callback_reports,
        "history": rows,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if pruned_epoch is not None:
        summary["pruned_epoch"] = pruned_epoch
    optimized = cfg.get("optimized_metric")
    if OmegaConf.is_list(optimized) or isinstance(optimized, (list, tuple)):
        optimized = [str(m) for m in optimized]
        summary["optimized_metric"] = optimized
        summary["optimized_value"] = [lookup_metric(summary, m) for m in optimized]
    else:
        summary["optimized_metric"] = optimized
        summary["optimized_value"] = lookup_metric(summary, optimized)
    if trial_cb is not None:
        trial_cb.record(summary["status"], epochs_completed, str(output_dir.absolute()))
    if trainer.is_global_zero:
        metrics_path.write_text(json.dumps(_json_safe(summary), indent=2))
        log_dirs = sorted({str(lg.log_dir) for lg in trainer.loggers if getattr(lg, "log_dir", None)})
        say(
            f"\nlightning_reg: test/acc={test_metrics.get('test/acc', float('nan')):.4f} "
            f"test/loss={test_metrics.get('test/loss', float('nan')):.4f} "
            f"(stopped after epoch {summary['stopped_epoch']}, {fit_seconds:.1f}s of training)\n"
            f"lightning_reg: logs in {', '.join(log_dirs) or '(no logger)'}\n"
            f"lightning_reg: metrics.json written to {metrics_path}"
        )
    return summary


def _is_multirun() -> bool:
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _check_output_dir(cfg: DictConfig, output_dir: Path) -> Path | None:
    """The run-directory lifecycle (:mod:`lightning_reg.run_dir`): return the checkpoint to resume from, or
    raise before anything is written. DDP children run in their parent's (already checked) directory."""
    ckpt = cfg.get("ckpt_path")
    if is_child_rank():
        return check_run_dir(output_dir, ckpt, allow_new_last=True) if ckpt else None
    return check_run_dir(output_dir, ckpt, allow_new_last=_is_multirun())


def finished_job_value(cfg: DictConfig) -> tuple[bool, float | None]:
    """For a job of a resumed sweep whose directory already holds its result: ``(True, its optimized value)``.

    A finished job is skipped only when its ``metrics.json`` records the same config as this job; any other
    finished directory is refused (:class:`~lightning_reg.run_dir.RunDirError`).
    """
    output_dir = Path(cfg.paths.output_dir)
    if run_state(output_dir) != FINISHED:
        return False, None
    try:
        stored = json.loads((output_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        stored = {}
    now = _json_safe(OmegaConf.to_container(cfg, resolve=True))
    before = stored.get("config") if isinstance(stored, dict) else None
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


def lookup_metric(summary: dict[str, Any], name: str | None) -> float | None:
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


def _record_failure(cfg: DictConfig, err: BaseException) -> None:
    try:
        out = Path(cfg.paths.output_dir)
        if (out / "metrics.json").exists():
            return
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(
            json.dumps(
                {
                    "status": "failed",
                    "error": mask_secrets(f"{type(err).__name__}: {err}"),
                    "traceback": mask_secrets(traceback.format_exc()),
                    "seed": cfg.get("seed"),
                    "config": _json_safe(OmegaConf.to_container(cfg, resolve=False)),
                },
                indent=2,
            )
        )
    except Exception:  # noqa: BLE001 - never mask the real error
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


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | list[float] | None:
    """Train from the command line; return the optimized metric for sweepers."""
    from hydra.types import RunMode

    quiet_third_party()  # again here: a joblib worker runs this function without importing this module

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        if multirun and not is_child_rank():
            done, value = finished_job_value(cfg)
            if done:
                return value
        with _clean_process_after_job() if multirun and not is_child_rank() else contextlib.nullcontext():
            summary = train(cfg)
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
        if multirun:
            # Hydra's sweepers abort the whole sweep (and skip the end-of-sweep report) when a job raises.
            # A failed job is recorded in its metrics.json instead, listed by the report, and returns None,
            # which the Optuna sweeper counts as a failed trial.
            log.error(
                "run failed and is recorded in %s: %s: %s",
                Path(cfg.paths.output_dir) / "metrics.json",
                type(err).__name__,
                err,
                exc_info=not isinstance(err, ConfigError),
            )
            print(mask_secrets(f"lightning_reg: run failed: {type(err).__name__}: {err}"), file=sys.stderr, flush=True)
            return None
        if isinstance(err, ConfigError):
            say(mask_secrets(f"lightning_reg: error: {err}"), error=True)
            sys.exit(2)
        raise
    value = summary.get("optimized_value")
    if isinstance(value, list):
        return None if any(v is None for v in value) else [float(v) for v in value]
    return float(value) if value is not None else None


if __name__ == "__main__":
    main()
