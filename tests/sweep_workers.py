"""Start real sweep worker processes (``python -m lightning_reg.train -m ...``) and read their study."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[1]

#: Tiny, fast trials: 3 training and 2 validation batches of digits per epoch.
FAST = ["trainer=debug", "trainer.enable_model_summary=false"]

#: Prune every trial after epoch 1 (val/acc never exceeds 1.1): deterministic pruning for the DDP and
#: multi-node tests.
ALWAYS_PRUNE = [
    "hydra/sweeper/lightning_reg_pruner=none",
    "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
    "+hydra.sweeper.pruner.lower=1.1",
    "+hydra.sweeper.pruner.n_warmup_steps=1",
]


def env(extra_path: Path | None = None, **more: str) -> dict[str, str]:
    e = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HYDRA_FULL_ERROR": "1",
        "PYTHONPATH": os.pathsep.join(
            p for p in [str(REPO), str(extra_path or ""), os.environ.get("PYTHONPATH", "")] if p
        ),
    }
    for key in (
        "LOCAL_RANK",
        "NODE_RANK",
        "GROUP_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "WORLD_SIZE",
        "RANK",
        "LIGHTNING_REG_TRIAL",
        "SLURM_NODEID",
        "SLURM_JOB_ID",
    ):
        e.pop(key, None)
    e.update(more)
    return e


def command(sweep: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lightning_reg.train",
        "-m",
        *overrides,
        f"hydra.sweep.dir={sweep}",
        f"paths.log_dir={sweep.parent / 'outputs'}",
    ]


def start(sweep: Path, *overrides: str, log: Path, extra_path: Path | None = None, **more_env: str) -> subprocess.Popen:
    fh = log.open("w")
    return subprocess.Popen(
        command(sweep, *overrides),
        cwd=sweep.parent,
        env=env(extra_path, **more_env),
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_all(procs: Sequence[subprocess.Popen], logs: Sequence[Path], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    for p, log in zip(procs, logs):
        try:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"worker timed out; its log:\n{log.read_text()[-4000:]}") from None
        assert p.returncode == 0, f"worker exited {p.returncode}; its log:\n{log.read_text()[-6000:]}"


def load(storage: str, name: str) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=storage)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
