"""``python -m lightning_reg.train`` (or ``lightning-reg-train``): the main job's entry point (Hydra).

This module stays light: it imports Hydra and the configs' glue, not Lightning or torch. The job's code,
:mod:`lightning_reg.app.train`, is imported by :func:`run_job` when a job runs, so the process that only
composes and launches (the joblib launcher's parent, a SLURM submitter, ``--help``, ``--cfg job``) starts in
well under a second instead of paying Lightning's import (about 5 s on 2 cores), and each joblib worker pays it
once, in parallel with the other.
"""

from __future__ import annotations

import sys
from typing import Any

from omegaconf import DictConfig

from lightning_reg.app.config import conf_dir  # also registers the ``lightning_reg_threads_per_job`` resolver

__all__ = ["main", "run_job"]


def run_job(cfg: DictConfig) -> float | list[float] | None:
    """One Hydra job: :func:`lightning_reg.app.train.run_job`, imported here, where the job runs.

    A joblib worker unpickles this function by reference (``lightning_reg.train.run_job``), so it too imports
    only this module before Hydra composes the job's config.
    """
    from lightning_reg.app.train import run_job as run

    return run(cfg)


def main() -> Any:
    """Train from the command line.

    Looks for the packaged configs first: a broken installation is one clear error (exit status 2), not a
    failure at import. Hydra then composes ``train.yaml`` and runs :func:`run_job` once, or once per job of a
    multirun. The task function's module name (``train``) is Hydra's job name: the run log is ``train.log``.
    """
    import hydra

    try:
        config_path = str(conf_dir())
    except FileNotFoundError as err:
        print(f"lightning_reg: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    from lightning_reg.app.hydra_callbacks import sweeper_option_typo

    typo = sweeper_option_typo(sys.argv[1:], config_path)
    if typo is not None:
        print(f"lightning_reg: error: {typo}", file=sys.stderr, flush=True)
        sys.exit(2)
    return hydra.main(version_base="1.3", config_path=config_path, config_name="train")(run_job)()


if __name__ == "__main__":
    # Run under the module's own name, so that run_job's module is ``lightning_reg.train`` (picklable by
    # reference for the joblib workers), not ``__main__``.
    import importlib

    importlib.import_module("lightning_reg.train").main()
