"""The entry point's console and ``train.log`` through ``python -m lightning_reg.train`` in a subprocess (piped,
as in CI or ``| tee``): other packages' noise is gone, nothing else is, and each run's ``train.log`` holds its log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: Lines that are not ours and that every run printed before lightning_reg.app.run_log filtered them.
NOISE = {
    "Lightning's litlogger tip": "litlogger",
    "torch's LeafSpec FutureWarning": "LeafSpec",
    "Alembic's plugin lines": "setup plugin",
}
#: Variables that ask Rich and colorlog for colour on a pipe; a user who sets them gets colour, as asked.
FORCE_COLOUR = ("FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "PY_COLORS")


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    for key in (*FORCE_COLOUR, "LOCAL_RANK", "LIGHTNING_REG_TRIAL"):
        env.pop(key, None)
    return env


def _train(*args: str, cwd: Path, timeout: float = 300) -> tuple[subprocess.CompletedProcess, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_reg.train", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc, proc.stdout + proc.stderr


def _assert_quiet(out: str) -> None:
    for what, marker in NOISE.items():
        assert marker not in out, f"{what} still printed:\n{out[-4000:]}"
    assert "\x1b" not in out, f"ANSI escape codes in piped output:\n{out[-2000:]!r}"


@pytest.mark.slow
def test_main_job_console_is_quiet_and_every_run_dir_has_its_log(tmp_path: Path) -> None:
    """The README's main job (joblib, two runs at a time), cut to two variants, one seed and two epochs."""
    sweep = tmp_path / "sweep"
    proc, out = _train(
        "experiment=regularizers_digits",
        "variant/regularizers_digits=baseline,l2",
        "seed=1",
        "trainer.max_epochs=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, out[-6000:]
    _assert_quiet(out)
    # Lightning's own lines and ours are still on the console, where they were.
    assert "GPU available: False" in proc.stderr and "WeightPenalty(l1=0.0, l2=0.001" in proc.stderr
    assert proc.stdout.count("lightning_reg: test/acc=") == 2
    for job in ("0", "1"):
        log = (sweep / job / "train.log").read_text()
        assert "[lightning.pytorch.utilities.rank_zero][INFO] - GPU available: False" in log, log
        assert f"[lightning_reg.console][INFO] - lightning_reg: metrics.json written to {sweep / job}" in log, log
        assert "lightning_reg: test/acc=" in log
        _assert_quiet(log)
    l2_log = (sweep / "1" / "train.log").read_text()
    assert "WeightPenalty(l1=0.0, l2=0.001, mode='gradient'): penalizing 3 tensors" in l2_log, l2_log
    assert "WeightPenalty" not in (sweep / "0" / "train.log").read_text()  # the baseline has no penalty


@pytest.mark.slow
def test_optuna_sweep_on_sqlite_is_quiet_and_trial_logs_hold_the_pruning_line(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc, out = _train(
        "-m",
        "hparams_search=digits_optuna",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}",
        "trainer=debug",
        # Prune every trial after epoch 1 (val/acc never exceeds 1.1), so each job logs the pruning line.
        "hydra/sweeper/lightning_reg_pruner=none",
        "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
        "+hydra.sweeper.pruner.lower=1.1",
        "+hydra.sweeper.pruner.n_warmup_steps=1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, out[-6000:]
    _assert_quiet(out)
    assert "2 finished trial(s) (2 pruned)" in out
    for trial in ("0", "1"):
        log = (sweep / trial / "train.log").read_text()
        assert f"[lightning_reg.study][INFO] - trial {trial} pruned after epoch 1" in log, log
        assert "GPU available: False" in log and "lightning_reg: metrics.json written to" in log
        _assert_quiet(log)


def test_a_config_error_is_printed_and_kept_in_the_run_log(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc, out = _train("data.test_fraction=0.5", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 2, out[-3000:]
    line = "lightning_reg: error: data: `train_fraction + val_fraction + test_fraction` must equal 1"
    assert line in proc.stderr
    assert f"[lightning_reg.console][ERROR] - {line}" in (run / "train.log").read_text()


ALEMBIC_FIRST = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
if sys.argv[1] == "quiet":
    from lightning_reg.app.run_log import quiet_third_party
    quiet_third_party()
import alembic.command  # registers Alembic's autogenerate plugins, logging one INFO line each
print("imported")
"""


@pytest.mark.parametrize("mode", ["quiet", "plain"])
def test_alembic_plugin_lines_are_dropped_by_name_and_only_by_that_filter(mode: str, tmp_path: Path) -> None:
    """Alembic imported while the root logger is at INFO, before Optuna lowers Alembic's level. The plain run
    shows that the lines do appear without the filter (so the sweep test above can catch them)."""
    pytest.importorskip("alembic.runtime.plugins")  # Alembic >= 1.18 registers (and logs) plugins
    proc = subprocess.run(
        [sys.executable, "-c", ALEMBIC_FIRST, mode], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr[-2000:]
    assert ("setup plugin alembic.autogenerate" in proc.stdout) is (mode == "plain"), proc.stdout
