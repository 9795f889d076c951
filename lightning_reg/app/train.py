"""Hydra entry point: ``python -m lightning_reg.train`` (or ``lightning-reg-train``).

Hydra composes ``conf/train.yaml`` with the command line's overrides; :func:`train` then runs one job in
named steps: :func:`~lightning_reg.app.build.prepare_run` (check the config and the run directory, set threads and
the seed), :func:`~lightning_reg.app.build.build` (data, model with optimizer/scheduler, callbacks, loggers,
trainer), :func:`~lightning_reg.app.fit.fit`, :func:`~lightning_reg.app.fit.evaluate` (test the best weights),
:func:`~lightning_reg.app.fit.summarize` (the :class:`~lightning_reg.metrics_file.RunMetrics`) and
:func:`~lightning_reg.app.job.write_summary` (``metrics.json`` in the run directory). :func:`run_job` runs it under
the multirun policy of :mod:`lightning_reg.app.job` and returns the optimized metric so that sweepers (Optuna) can
use it.

The names of the steps' modules are importable from here too.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from lightning_reg.app import job
from lightning_reg.app.build import CONF_DIR, Parts, build, build_model, prepare_run
from lightning_reg.app.config import conf_dir, run_hydra, threads_per_job
from lightning_reg.app.fit import evaluate, fit, summarize
from lightning_reg.app.job import SIGTERM_EXIT, RunSetup, finished_job_value, write_summary
from lightning_reg.app.run_log import quiet_third_party
from lightning_reg.core.checks import check_resume_checkpoint
from lightning_reg.metrics_file import Evaluation, FitResult, RunMetrics, diverged_losses, lookup_metric

__all__ = [
    "CONF_DIR",
    "SIGTERM_EXIT",
    "Evaluation",
    "FitResult",
    "Parts",
    "RunSetup",
    "build",
    "build_model",
    "conf_dir",
    "diverged_losses",
    "evaluate",
    "finished_job_value",
    "fit",
    "lookup_metric",
    "main",
    "prepare_run",
    "run_job",
    "summarize",
    "threads_per_job",
    "train",
    "write_summary",
]

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


def run_job(cfg: DictConfig) -> float | list[float] | None:
    """One Hydra job: :func:`train` under the multirun policy (:func:`lightning_reg.app.job.run`); returns the
    optimized metric for sweepers."""
    quiet_third_party()  # again here: a joblib worker runs this function without importing this module
    return job.run(cfg, train)


def main() -> Any:
    """Train from the command line, as :func:`lightning_reg.train.main` does, with this module's :func:`run_job`."""
    return run_hydra(run_job)


if __name__ == "__main__":
    # Run under the module's own name, so that run_job pickles by reference for the joblib workers.
    import importlib

    importlib.import_module("lightning_reg.app.train").main()
