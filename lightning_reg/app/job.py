"""The multirun policy of one job and its records (:func:`run`): a finished job is skipped, a failed or interrupted one
leaves a ``metrics.json`` that says so, the exit status says how it ended, and the process is left clean for the
next job; a finished one writes its ``metrics.json`` and reports to its Optuna trial (:func:`write_summary`).

:class:`RunSetup` is what the run-directory check (:mod:`lightning_reg.app.run_dir`) settles before anything is built.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from lightning_reg.app.distributed import is_child_rank
from lightning_reg.app.run_dir import FINISHED, RunDirError, check_run_dir, run_state
from lightning_reg.app.run_log import say
from lightning_reg.atomic import is_filesystem_error
from lightning_reg.errors import ConfigError, mask_secrets
from lightning_reg.metrics_file import (
    FILE_NAME,
    SCHEMA_VERSION,
    FitResult,
    MetricsFileError,
    RunMetrics,
    SchemaVersionError,
    json_safe,
    read_metrics,
    write_metrics,
)

__all__ = ["SIGTERM_EXIT", "RunSetup", "finished_job_value", "run", "trial_callback", "write_summary"]

log = logging.getLogger("lightning_reg.app.job")


def trial_callback(callbacks: Iterable[Any]) -> Any:
    """The callback that reports this job's curve to its Optuna trial (``TrialPruning``, added by the sweeper's
    ``callbacks_factory`` entry point), or ``None``. Found by class name, so that a run outside a sweep never
    imports Optuna."""
    return next((cb for cb in callbacks if type(cb).__name__ == "TrialPruning"), None)


def _str_keys(container: Any) -> dict[str, Any]:
    return {str(k): v for k, v in container.items()} if isinstance(container, dict) else {}


@dataclass
class RunSetup:
    """What :func:`~lightning_reg.app.build.prepare_run` settles before anything is built: where the run writes, what
    it resumes.

    Example:
        >>> import tempfile
        >>> from lightning_reg.app.build import prepare_run
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
    if status == "pruned":
        raise _pruned(stored.get("pruned_epoch"))
    return True, (float(value) if isinstance(value, (int, float)) and status == "completed" else None)


def _is_pruned(err: BaseException) -> bool:
    optuna = sys.modules.get("optuna")  # no Optuna imported: nothing was pruned
    return optuna is not None and isinstance(err, optuna.TrialPruned)


def _pruned(epoch: Any) -> Exception:
    """``optuna.TrialPruned``: how a pruned job returns to its sweeper (the one channel of a job's outcome)."""
    import optuna  # only a pruned job, in an Optuna sweep, gets here

    return optuna.TrialPruned(f"pruned after epoch {epoch}")


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


def write_summary(summary: RunMetrics, trainer: pl.Trainer, fitted: FitResult, setup: RunSetup) -> None:
    """Write ``metrics.json`` and print where the results went (rank 0)."""
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


def run(cfg: DictConfig, train: Callable[[DictConfig], RunMetrics]) -> float | list[float] | None:
    """One Hydra job under the multirun policy: ``train(cfg)``, unless the job already finished; a failure is
    recorded in ``metrics.json``, SIGTERM and bad input end in their exit status; returns the optimized metric for
    sweepers (``None`` for a failed, refused or unfinished job) and raises ``optuna.TrialPruned`` for a pruned one:
    the job's outcome reaches the sweeper in its return only.

    ``train`` is :func:`lightning_reg.app.train.train`; passed in, so that this policy does not import the steps.
    """
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
        if is_child_rank() or _is_pruned(err):
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
    if summary.get("status") == "pruned" and not is_child_rank():
        # After metrics.json: the sweeper tells the trial PRUNED from this, as from any Optuna objective.
        raise _pruned(summary.get("pruned_epoch"))
    optimized = summary.get("optimized_value")
    if isinstance(optimized, list):
        return None if any(v is None for v in optimized) else [float(v) for v in optimized if v is not None]
    return float(optimized) if optimized is not None else None
