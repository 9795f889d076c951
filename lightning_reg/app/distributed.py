"""DDP under Hydra: child ranks load the parent's resolved job config instead of re-running argv.

Lightning's subprocess launcher starts ranks 1..N-1 by re-running ``sys.argv`` with ``hydra.run.dir``
set. Under ``--multirun`` that re-runs the whole sweep in every child, and with a sampling sweeper
(Optuna) each rank can draw different trial parameters (lightning-hydra-template #393, #639). We write
the job's fully resolved config next to its outputs and have every child compose exactly that file, so
all ranks train the same trial.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lightning_reg.atomic import atomic_write

DDP_CONFIG_NAME = "ddp_job_config"


def is_child_rank() -> bool:
    """True in a process started by a DDP launcher for a local rank other than 0."""
    return int(os.environ.get("LOCAL_RANK", "0")) != 0


def write_job_config(cfg: DictConfig, output_dir: Path) -> Path:
    """Write the resolved job config to ``output_dir/.lightning_reg/ddp_job_config.yaml``."""
    target = output_dir / ".lightning_reg"
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{DDP_CONFIG_NAME}.yaml"
    resolved = OmegaConf.to_container(cfg, resolve=True)
    with atomic_write(path) as fh:
        OmegaConf.save(OmegaConf.create(resolved), fh)
    return path


def child_command(config_file: Path, output_dir: Path, local_rank: int) -> tuple[Sequence[str], str]:
    """The command and cwd that start local rank ``local_rank`` on the saved job config."""
    command = [
        sys.executable,
        "-m",
        "lightning_reg.train",
        "--config-path",
        str(config_file.parent.resolve()),
        "--config-name",
        config_file.stem,
        f"hydra.run.dir={output_dir.resolve()}",
        "hydra.output_subdir=null",
        f"hydra.job.name=train_ddp_process_{local_rank}",
    ]
    return command, os.getcwd()


def hydra_ddp_children(config_file: Path, output_dir: Path) -> contextlib.AbstractContextManager[None]:
    """While active, Lightning's subprocess DDP launcher starts children on ``config_file``."""
    from lightning_reg._lightning_internals import hydra_subprocess_command

    def _cmd(local_rank: int) -> tuple[Sequence[str], str]:
        return child_command(config_file, output_dir, local_rank)

    return hydra_subprocess_command(_cmd)


__all__ = ["DDP_CONFIG_NAME", "child_command", "hydra_ddp_children", "is_child_rank", "write_job_config"]
