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
import logging
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from lightning_reg.app.build import CONF_DIR, Parts, build, build_model, prepare_run
from lightning_reg.app.config import conf_dir, threads_per_job
from lightning_reg.app.distributed import is_child_rank
from lightning_reg.app.fit import (
    Evaluation,
    FitResult,
    diverged_losses,
    evaluate,
    fit,
    lookup_metric,
    summarize,
    write_summary,
)
from lightning_reg.app.job import (
    SIGTERM_EXIT,
    RunSetup,
    _clean_process_after_job,
    _has_last,
    _is_multirun,
    _record_failure,
    _record_interrupted,
    finished_job_value,
)
from lightning_reg.app.run_dir import RunDirError
from lightning_reg.app.run_log import quiet_third_party, say
from lightning_reg.atomic import is_filesystem_error
from lightning_reg.core.checks import check_resume_checkpoint
from lightning_reg.errors import ConfigError, mask_secrets
from lightning_reg.metrics_file import FILE_NAME, RunMetrics

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
