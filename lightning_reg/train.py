"""``python -m lightning_reg.train`` (or ``lightning-reg-train``): the main job's entry point (Hydra).

This module stays light: it imports Hydra and the configs' glue, not Lightning or torch. The job's code,
:mod:`lightning_reg.app.train`, is imported by :func:`run_job` when a job runs, so the process that only
composes and launches (the joblib launcher's parent, a SLURM submitter, ``--help``, ``--cfg job``) starts in
well under a second instead of paying Lightning's import (about 5 s on 2 cores), and each joblib worker pays it
once, in parallel with the other.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from lightning_reg.app.config import run_hydra  # also registers the ``lightning_reg_threads_per_job`` resolver

__all__ = ["main", "run_job"]


def run_job(cfg: DictConfig) -> float | list[float] | None:
    """One Hydra job: :func:`lightning_reg.app.train.run_job`, imported here, where the job runs.

    A joblib worker unpickles this function by reference (``lightning_reg.train.run_job``), so it too imports
    only this module before Hydra composes the job's config.
    """
    from lightning_reg.app.train import run_job as run

    return run(cfg)


def main() -> Any:
    """Train from the command line: Hydra composes ``train.yaml`` and runs :func:`run_job` once, or once per job
    of a multirun (:func:`~lightning_reg.app.config.run_hydra`)."""
    return run_hydra(run_job)


if __name__ == "__main__":
    # Run under the module's own name, so that run_job's module is ``lightning_reg.train`` (picklable by
    # reference for the joblib workers), not ``__main__``.
    import importlib

    importlib.import_module("lightning_reg.train").main()
